//! `bench`'s flags.

use secure_link_cli::benchmark::Peer;

use super::{latency, throughput};

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// What to measure. The default tour runs a short pass of every
    /// scenario in well under a minute; name a scenario for its full
    /// defaults.
    #[arg(long, value_enum, default_value_t = Scenario::Tour)]
    pub(super) scenario: Scenario,
    /// Message sizes in bytes (repeatable; default: per scenario).
    #[arg(long = "size", value_name = "BYTES")]
    pub(super) sizes: Vec<usize>,
    /// Messages (or round trips) per run (default: per scenario).
    #[arg(long)]
    pub(super) count: Option<usize>,
    /// The byte stream under TLS (throughput; latency is always TCP).
    #[arg(long, value_enum, default_value_t = TransportArg::Tcp)]
    pub(super) transport: TransportArg,
    /// Batched (feed + flush), per message (send), or both (throughput).
    #[arg(long, value_enum, default_value_t = throughput::ModeArg::Both)]
    pub(super) mode: throughput::ModeArg,
    /// Latency: the server end on a thread (and core) of its own, as
    /// between two nodes (apart), or both ends on one thread (together).
    /// Throughput: the ends on the multi-threaded runtime (apart), or both
    /// on one current-thread runtime (together): the CPU every message
    /// costs with nothing overlapping, scheduled the same way every run,
    /// so that an instruction count (callgrind) repeats.
    #[arg(long, value_enum, default_value_t = latency::EndsArg::Apart)]
    pub(super) ends: latency::EndsArg,
    /// Interleaved rounds; the table shows medians.
    #[arg(long, default_value_t = 3)]
    pub(super) rounds: usize,
    /// Run only these implementations (repeatable; default: all). Columns
    /// of the others show "-"; useful under a profiler.
    #[arg(long = "peer", value_enum)]
    pub(super) peers: Vec<PeerArg>,
    /// Also write SVG charts of the results into this directory.
    #[arg(long, value_name = "DIR")]
    pub(super) plot: Option<std::path::PathBuf>,
    /// One memory case, PEER:CONNECTIONS:BYTES, run in a child process.
    #[arg(long, hide = true)]
    pub(super) memory_case: Option<String>,
}

impl Args {
    /// The sizes given with `--size`, or `default` when there are none.
    pub(super) fn sizes_or<'a>(&'a self, default: &'a [usize]) -> &'a [usize] {
        if self.sizes.is_empty() {
            default
        } else {
            &self.sizes
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Scenario {
    /// Throughput, latency, connections, memory and handshakes, short.
    Tour,
    /// Messages client -> server, MB/s and messages/s.
    Throughput,
    /// Request/response round trips over TCP, one outstanding: p50, p99, max.
    Latency,
    /// N concurrent clients to one server: aggregate rate and scaling.
    Connections,
    /// What an idle authenticated connection holds, per end, after a small
    /// and a large exchange.
    Memory,
    /// Full TLS 1.3 handshakes per second, per server key and key exchange.
    Handshakes,
    /// The resilient mode against the plain link: throughput, standalone
    /// acknowledgements, the resume after a cut, dead-peer detection.
    Resilient,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum PeerArg {
    Ours,
    P1,
    P2,
    P2b,
    P3,
}

impl From<PeerArg> for Peer {
    fn from(peer: PeerArg) -> Self {
        match peer {
            PeerArg::Ours => Peer::Ours,
            PeerArg::P1 => Peer::P1,
            PeerArg::P2 => Peer::P2,
            PeerArg::P2b => Peer::P2b,
            PeerArg::P3 => Peer::P3,
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(super) enum TransportArg {
    Duplex,
    Tcp,
}
