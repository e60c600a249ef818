//! `bench --scenario memory`: what an idle, authenticated connection
//! holds, per end, after a small and after a large exchange; ours against
//! P1 (raw TLS framing) and P2b.
//!
//! Each case runs in a fresh child process (this binary, with the hidden
//! `--memory-case`), so the resident-set growth of one case is not
//! hidden by memory an earlier case freed to the allocator. Heap per end
//! needs the counting allocator: build with `-p secure-link-cli --features count-allocations`.

use secure_link_cli::benchmark::{IdleMemory, Meter, Peer, SETTLE, Setup, idle_connections};

use super::plot::{Chart, Series};
use super::{Args, PeerArg, cell, human, progress, raise_descriptor_limit};
use crate::shared::Error;

/// The peers of the memory table.
const PEERS: [Peer; 3] = [Peer::Ours, Peer::P1, Peer::P2b];

/// The heap rustls' published performance figures give one TLS 1.3
/// session: quoted for scale, not measured here.
const RUSTLS_SESSION_KIB: f64 = 13.0;

/// The per-thread heap meter of this build, if it counts allocations.
fn meter() -> Option<Meter> {
    #[cfg(feature = "count-allocations")]
    {
        fn thread_heap(f: &mut dyn FnMut()) -> i64 {
            allocation_counter::measure(f).bytes_current
        }
        Some(thread_heap)
    }
    #[cfg(not(feature = "count-allocations"))]
    None
}

/// The child's side: one case, printed as one line the parent reads.
pub(super) fn run_case(case: &str) -> Result<(), Error> {
    let bad = || {
        Error::msg(format!(
            "--memory-case {case:?}: expected PEER:CONNECTIONS:BYTES"
        ))
    };
    let mut parts = case.split(':');
    let (Some(peer), Some(connections), Some(exchange), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let peer = <PeerArg as clap::ValueEnum>::from_str(peer, true).map_err(|_| bad())?;
    let connections: usize = connections.parse().map_err(|_| bad())?;
    let exchange: usize = exchange.parse().map_err(|_| bad())?;
    raise_descriptor_limit();
    let setup = Setup::new()?;
    let m = idle_connections(&setup, peer.into(), connections, exchange, SETTLE, meter())?;
    let field = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
    outln!(
        "{} {} {}",
        field(m.server_heap),
        field(m.client_heap),
        field(m.rss)
    );
    Ok(())
}

pub(super) async fn run(args: &Args, peers: &[Peer], tour: bool) -> Result<Vec<Chart>, Error> {
    // (exchange, connections); `--count` sets the connections.
    let mut cases: Vec<(usize, usize)> = match (args.sizes.as_slice(), tour) {
        ([], true) => vec![(1024, 50), (1024, 200), (256 * 1024, 40)],
        ([], false) => vec![(1024, 250), (1024, 1_000), (1024, 2_000), (256 * 1024, 400)],
        (sizes, _) => sizes
            .iter()
            .map(|&s| (s, if tour { 40 } else { 400 }))
            .collect(),
    };
    if let Some(count) = args.count {
        cases.iter_mut().for_each(|case| case.1 = count.max(1));
    }
    let limit = raise_descriptor_limit();
    let peers: Vec<Peer> = PEERS.into_iter().filter(|p| peers.contains(p)).collect();
    let progress = progress(cases.len() * peers.len());
    let exe = std::env::current_exe()
        .map_err(|err| Error::msg(format!("cannot find this program to run a case: {err}")))?;
    let mut rows = Vec::new();
    for &(exchange, wanted) in &cases {
        let connections = wanted.min(((limit.saturating_sub(64)) / 2) as usize).max(1);
        for &peer in &peers {
            progress.set_message(format!("memory {connections} x {exchange} B {peer}"));
            let case = format!("{peer}:{connections}:{exchange}").to_lowercase();
            let measured = tokio::task::spawn_blocking({
                let exe = exe.clone();
                move || child_case(&exe, &case)
            })
            .await
            .map_err(|err| Error::msg(format!("a memory run failed: {err}")))??;
            rows.push((exchange, connections, peer, measured));
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    outln!(
        "secure-link bench, memory: idle authenticated connections over 127.0.0.1 TCP after one \
         request/response exchange, per connection; each case in a fresh process"
    );
    if meter().is_none() {
        outln!("heap columns need a build with -p secure-link-cli --features count-allocations");
    }
    outln!(
        "rustls' own published figure for one TLS 1.3 session: about {RUSTLS_SESSION_KIB:.0} KiB\n"
    );
    outln!(
        "{:>9} {:>12} {:>5} {:>16} {:>16} {:>16}",
        "exchange",
        "connections",
        "peer",
        "server heap KiB",
        "client heap KiB",
        "RSS KiB (both)"
    );
    let kib = |v: Option<f64>| cell(v.map(|b| b / 1024.0), 1);
    for &(exchange, connections, peer, m) in &rows {
        outln!(
            "{:>9} {:>12} {:>5} {:>16} {:>16} {:>16}",
            human(exchange),
            connections,
            peer.to_string(),
            kib(m.server_heap),
            kib(m.client_heap),
            kib(m.rss)
        );
    }
    outln!();
    // Total memory against the number of idle connections, per exchange
    // size measured at more than one count.
    let mut charts = Vec::new();
    for &(exchange, _) in &cases {
        let file = format!("memory-{}", human(exchange).replace(' ', ""));
        if charts.iter().any(|c: &Chart| c.file == file) {
            continue;
        }
        let mut series = Vec::new();
        for &peer in &peers {
            let total = |pick: fn(&IdleMemory) -> Option<f64>| {
                rows.iter()
                    .filter(|r| r.0 == exchange && r.2 == peer)
                    .filter_map(|r| Some((r.1 as f64, pick(&r.3)? * r.1 as f64 / 1_048_576.0)))
                    .collect::<Vec<_>>()
            };
            series.push(Series {
                name: format!("{peer} RSS (both ends)"),
                points: total(|m| m.rss),
            });
            series.push(Series {
                name: format!("{peer} server heap"),
                points: total(|m| m.server_heap),
            });
        }
        series.retain(|s| s.points.len() > 1);
        charts.push(Chart {
            file,
            title: format!("Idle connections after one {} exchange", human(exchange)),
            x_label: "connections".into(),
            y_label: "MiB".into(),
            log_x: false,
            series,
        });
    }
    Ok(charts)
}

/// Runs one case in a child process and reads its line.
fn child_case(exe: &std::path::Path, case: &str) -> Result<IdleMemory, Error> {
    let output = std::process::Command::new(exe)
        .args(["bench", "--scenario", "memory", "--memory-case", case])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|err| Error::msg(format!("cannot run a memory case: {err}")))?;
    if !output.status.success() {
        return Err(Error::msg(format!(
            "memory case {case} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let fields: Vec<Option<f64>> = text.split_whitespace().map(|f| f.parse().ok()).collect();
    match fields.as_slice() {
        &[server_heap, client_heap, rss] => Ok(IdleMemory {
            server_heap,
            client_heap,
            rss,
        }),
        _ => Err(Error::msg(format!(
            "memory case {case}: unexpected output {text:?}"
        ))),
    }
}
