//! `bench`'s dispatch to its scenarios, and what every scenario runs on:
//! one thread, a raised descriptor limit, a progress bar.

use std::future::Future;

use indicatif::{ProgressBar, ProgressStyle};
use secure_link_cli::benchmark::{Peer, Setup, Transport};

use super::args::{Args, Scenario, TransportArg};
use super::{connections, handshakes, latency, memory, plot, resilient, throughput};
use crate::shared::Error;

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
        Scenario::Resilient => {
            resilient::run(&setup, &args, false).await?;
            Vec::new()
        }
        Scenario::Tour => {
            let mut charts = throughput::run(&setup, &args, &peers, transport, true).await?;
            charts.extend(latency::run(&setup, &args, &peers, true).await?);
            charts.extend(connections::run(&setup, &args, &peers, true).await?);
            charts.extend(memory::run(&args, &peers, true).await?);
            charts.extend(handshakes::run(&args, true).await?);
            resilient::run(&setup, &args, true).await?;
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
pub(super) async fn on_one_thread<T, F, Fut>(what: &'static str, job: F) -> Result<T, Error>
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
pub(super) fn raise_descriptor_limit() -> u64 {
    #[cfg(unix)]
    return rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    #[cfg(not(unix))]
    1024
}

/// A progress bar over `total` runs (stderr; hidden when not a terminal).
pub(super) fn progress(total: usize) -> ProgressBar {
    ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} runs, {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    )
}
