//! `bench`: this crate against the same peers (see
//! `secure_link_cli::benchmark`), interleaved in one run, medians and ratios in
//! a table; one file per scenario.

mod args;
mod connections;
mod handshakes;
mod latency;
mod memory;
mod plot;
mod resilient;
mod run;
mod table;
mod throughput;

pub(crate) use args::Args;
use args::PeerArg;
pub(crate) use run::run;
use run::{on_one_thread, progress, raise_descriptor_limit};
use table::{cell, human};
