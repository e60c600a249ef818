//! The link benchmark shared by `secure-link bench` and `benches/link.rs`:
//! this crate against the same peers on the same machine, in the same run,
//! one file per scenario (`throughput.rs`, `latency.rs`, `connections.rs`,
//! `memory.rs`, `handshakes.rs`), one for the peers (`peers.rs`), and
//! beside them what a run compares (`kinds.rs`), the setup every run
//! shares (`setup.rs`), a measured transfer (`sample.rs`) and what runs
//! take from the machine (`system.rs`).
//!
//! * **ours**: [`SecureConnector`] / [`SecureAcceptor`].
//! * **P1**: tokio-rustls + tokio-util `LengthDelimitedCodec` on the same
//!   TLS configurations, with the same 128 KiB write buffer: no HMAC at all,
//!   the ceiling.
//! * **P2**: tokio-rustls + a straightforward hand-written
//!   `len | payload | HMAC` codec (keyed per message) with default `Framed`
//!   settings, on the same TLS configurations.
//! * **P2b**: P2 as a careful author writes it: HMAC keyed once and the
//!   keyed state cloned per frame; still default `Framed`.
//! * **P3**: P2 on tokio-rustls' out-of-the-box configuration (the
//!   provider's default suites and key exchange, TLS 1.2 and 1.3, session
//!   tickets).
//!
//! Not part of the stable API.

mod connections;
mod handshakes;
mod kinds;
mod latency;
mod memory;
mod peers;
mod resilient;
mod sample;
mod setup;
mod system;
mod throughput;

pub use connections::{FanIn, fan_in};
pub use handshakes::{Handshaker, KxGroup, ServerKey, cases as handshake_cases, handshakes};
pub use kinds::{Mode, Peer, Transport};
pub use latency::{Ends, Latency, round_trips};
pub use memory::{IdleMemory, Meter, SETTLE, idle_connections};
pub use resilient::{Recovery, ResilientSample, recovery, resilient_transfer};
pub use sample::{Sample, median};
pub use setup::Setup;
pub use system::tcp_pair;
pub(crate) use system::{DUPLEX_BUFFER, cpu_since, cpu_time};
pub use throughput::transfer;
