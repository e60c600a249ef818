//! `serve`: accept secure links, print each authenticated message as a
//! line. Its flags (`args.rs`), the accept loop (`accept.rs`), one
//! connection (`connection.rs`), the stdout writer (`output.rs`), the
//! signals (`signals.rs`), the metrics endpoint (`metrics.rs`,
//! `scrape.rs`) and the acceptor built from the files, again on SIGHUP
//! (`reload.rs`), are wired together by the main loop (`run.rs`), with the
//! shutdown.

mod accept;
mod args;
mod connection;
mod metrics;
mod output;
mod reload;
mod run;
mod scrape;
mod session;
mod signals;

pub(crate) use args::{Args, LogFormat};
pub(crate) use run::run;
