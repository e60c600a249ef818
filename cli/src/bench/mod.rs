//! `bench`: this crate against the same peers (see
//! `secure_link_cli::benchmark`), interleaved in one run, medians and ratios in
//! a table; one file per scenario.

mod connections;
mod handshakes;
mod latency;
mod memory;
mod plot;
mod throughput;

use std::future::Future;

use indicatif::{ProgressBar, ProgressStyle};
use secure_link_cli::benchmark::{Peer, Setup, Transport};

use crate::shared::Error;

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// What to measure. The default tour runs a short pass of every
    /// scenario in well under a minute; name a scenario for its full
    /// defaults.
    #[arg(long, value_enum, default_value_t = Scenario::Tour)]
    scenario: Scenario,
    /// Message sizes in bytes (repeatable; default: per scenario).
    #[arg(long = "size", value_name = "BYTES")]
    sizes: Vec<usize>,
    /// Messages (or round trips) per run (default: per scenario).
    #[arg(long)]
    count: Option<usize>,
    /// The byte stream under TLS (throughput; latency is always TCP).
    #[arg(long, value_enum, default_value_t = TransportArg::Tcp)]
    transport: TransportArg,
    /// Batched (feed + flush), per message (send), or both (throughput).
    #[arg(long, value_enum, default_value_t = throughput::ModeArg::Both)]
    mode: throughput::ModeArg,
    /// Latency: the server end on a thread (and core) of its own, as
    /// between two nodes (apart), or both ends on one thread (together).
    /// Throughput: the ends on the multi-threaded runtime (apart), or both
    /// on one current-thread runtime (together): the CPU every message
    /// costs with nothing overlapping, scheduled the same way every run,
    /// so that an instruction count (callgrind) repeats.
    #[arg(long, value_enum, default_value_t = latency::EndsArg::Apart)]
    ends: latency::EndsArg,
    /// Interleaved rounds; the table shows medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Run only these implementations (repeatable; default: all). Columns
    /// of the others show "-"; useful under a profiler.
    #[arg(long = "peer", value_enum)]
    peers: Vec<PeerArg>,
    /// Also write SVG charts of the results into this directory.
    #[arg(long, value_name = "DIR")]
    plot: Option<std::path::PathBuf>,
    /// One memory case, PEER:CONNECTIONS:BYTES, run in a child process.
    #[arg(long, hide = true)]
    memory_case: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PeerArg {
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
enum TransportArg {
    Duplex,
    Tcp,
}

pub(crate) async fn run(args: Args) -> Result<(), Error> {
    if let Some(case) = &args.memory_case {
        let case = case.clone();
        return tokio::task::spawn_blocking(move || memory::run_case(&case))
            .await
            .map_err(|err| Error::msg(format!("the memory case failed: {err}")))?;
    }
    if args.rounds == 0 {
        return Err(Error::msg("nothing to run: give at least one round"));
    }
    // Table order, each once, whatever the order and repeats on the command line.
    let peers: Vec<Peer> = Peer::ALL
        .into_iter()
        .filter(|&peer| args.peers.is_empty() || args.peers.iter().any(|&p| Peer::from(p) == peer))
        .collect();
    let transport = match args.transport {
        TransportArg::Duplex => Transport::Duplex,
        TransportArg::Tcp => Transport::Tcp,
    };
    let setup = Setup::new()?;
    let charts = match args.scenario {
        Scenario::Throughput => throughput::run(&setup, &args, &peers, transport, false).await?,
        Scenario::Latency => latency::run(&setup, &args, &peers, false).await?,
        Scenario::Connections => connections::run(&setup, &args, &peers, false).await?,
        Scenario::Memory => memory::run(&args, &peers, false).await?,
        Scenario::Handshakes => handshakes::run(&args, false).await?,
        Scenario::Tour => {
            let mut charts = throughput::run(&setup, &args, &peers, transport, true).await?;
            charts.extend(latency::run(&setup, &args, &peers, true).await?);
            charts.extend(connections::run(&setup, &args, &peers, true).await?);
            charts.extend(memory::run(&args, &peers, true).await?);
            charts.extend(handshakes::run(&args, true).await?);
            charts
        }
    };
    if let Some(dir) = &args.plot {
        for path in plot::write_all(dir, &charts)? {
            outln!("chart: {}", path.display());
        }
    }
    Ok(())
}

/// Runs `job` on a current-thread runtime of its own, on a blocking
/// thread: every task of the run on one thread, scheduled the same way
/// every time. `what` names the run in an error.
async fn on_one_thread<T, F, Fut>(what: &'static str, job: F) -> Result<T, Error>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, secure_link::LinkError>>,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(job()).map_err(Error::from)
    })
    .await
    .map_err(|err| Error::msg(format!("{what} failed: {err}")))?
}

/// Raises this process's descriptor limit as far as allowed and returns
/// it: the connection scenarios hold both ends of every connection, two
/// descriptors each.
fn raise_descriptor_limit() -> u64 {
    #[cfg(unix)]
    return rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    #[cfg(not(unix))]
    1024
}

/// A progress bar over `total` runs (stderr; hidden when not a terminal).
fn progress(total: usize) -> ProgressBar {
    ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} runs, {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    )
}

/// `value` with `decimals` decimals, or "-" for a peer that did not run.
fn cell(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

fn human(size: usize) -> String {
    match size {
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 && s % (1 << 10) == 0 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}
