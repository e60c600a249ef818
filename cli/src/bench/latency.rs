//! `bench --scenario latency`: request/response round trips over
//! 127.0.0.1 TCP with one request outstanding; p50, p99 and max per peer,
//! and ours against P1 (raw TLS framing) and P2b.

use std::collections::HashMap;
use std::time::Duration;

use secure_link_cli::benchmark::{Ends, Latency, Peer, Setup, Transport, round_trips};

use super::plot::{Chart, Series};
use super::{Args, cell, human, on_one_thread, progress};
use crate::shared::Error;

/// The peers of the latency table: the ceiling, the careful hand-written
/// codec, and ours.
const PEERS: [Peer; 3] = [Peer::Ours, Peer::P1, Peer::P2b];

/// `--ends`: where the two ends of a round trip run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum EndsArg {
    /// The server on a thread of its own: each end has a core.
    Apart,
    /// Both ends on one current-thread runtime: nothing overlaps.
    Together,
}

impl From<EndsArg> for Ends {
    fn from(ends: EndsArg) -> Self {
        match ends {
            EndsArg::Apart => Ends::Apart,
            EndsArg::Together => Ends::Together,
        }
    }
}

pub(super) async fn run(
    setup: &Setup,
    args: &Args,
    peers: &[Peer],
    tour: bool,
) -> Result<Vec<Chart>, Error> {
    let sizes = args.sizes_or(&[64, 1024, 64 * 1024]);
    let count = args.count.unwrap_or(if tour { 500 } else { 5_000 }).max(1);
    let rounds = if tour { 1 } else { args.rounds };
    let peers: Vec<Peer> = PEERS.into_iter().filter(|p| peers.contains(p)).collect();
    let progress = progress(rounds * sizes.len() * peers.len());
    // Every round trip of every round, per case: the percentiles are over
    // all of them (rounds are interleaved, so drift hits every peer).
    let mut all: HashMap<(usize, Peer), Vec<Duration>> = HashMap::new();
    for _ in 0..rounds {
        for &size in sizes {
            for &peer in &peers {
                progress.set_message(format!("latency {size} B {peer}"));
                // One current-thread runtime per case (see round_trips).
                let setup = setup.clone();
                let ends = Ends::from(args.ends);
                let run = on_one_thread("a latency run", move || async move {
                    round_trips(&setup, peer, Transport::Tcp, ends, size, count).await
                })
                .await?;
                all.entry((size, peer)).or_default().extend(run.round_trips);
                progress.inc(1);
            }
        }
    }
    progress.finish_and_clear();

    outln!(
        "secure-link bench, latency: request/response over 127.0.0.1 TCP, one outstanding, \
         {}, {count} round trips x {rounds} round(s) per case",
        match args.ends {
            EndsArg::Apart =>
                "the server on a thread of its own (each end on a current-thread runtime)",
            EndsArg::Together => "both ends on one current-thread runtime",
        }
    );
    outln!("times in microseconds; ours/P1 and ours/P2b compare p50 and p99\n");
    outln!(
        "{:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>11} {:>11}",
        "size",
        "ours p50",
        "ours p99",
        "ours max",
        "P1 p50",
        "P1 p99",
        "P1 max",
        "P2b p50",
        "P2b p99",
        "P2b max",
        "/P1 p50",
        "/P1 p99",
        "/P2b p50",
        "/P2b p99"
    );
    for &size in sizes {
        let latency = |peer| {
            all.get(&(size, peer)).map(|runs| {
                let mut round_trips = runs.clone();
                round_trips.sort();
                Latency { round_trips }
            })
        };
        let micros = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e6);
        let pick =
            |peer, q: fn(&Latency) -> Option<Duration>| micros(latency(peer).as_ref().and_then(q));
        let (o50, o99, omax) = (
            pick(Peer::Ours, Latency::p50),
            pick(Peer::Ours, Latency::p99),
            pick(Peer::Ours, Latency::max),
        );
        let (a50, a99, amax) = (
            pick(Peer::P1, Latency::p50),
            pick(Peer::P1, Latency::p99),
            pick(Peer::P1, Latency::max),
        );
        let (b50, b99, bmax) = (
            pick(Peer::P2b, Latency::p50),
            pick(Peer::P2b, Latency::p99),
            pick(Peer::P2b, Latency::max),
        );
        let ratio = |ours: Option<f64>, other: Option<f64>| ours.zip(other).map(|(o, p)| o / p);
        outln!(
            "{:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>11} {:>11}",
            human(size),
            cell(o50, 0),
            cell(o99, 0),
            cell(omax, 0),
            cell(a50, 0),
            cell(a99, 0),
            cell(amax, 0),
            cell(b50, 0),
            cell(b99, 0),
            cell(bmax, 0),
            cell(ratio(o50, a50), 2),
            cell(ratio(o99, a99), 2),
            cell(ratio(o50, b50), 2),
            cell(ratio(o99, b99), 2)
        );
    }
    outln!();
    let mut series = Vec::new();
    for &peer in &peers {
        for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
            series.push(Series {
                name: format!("{peer} {name}"),
                points: sizes
                    .iter()
                    .filter_map(|&size| {
                        let mut round_trips = all.get(&(size, peer))?.clone();
                        round_trips.sort();
                        let d = Latency { round_trips }.quantile(q)?;
                        Some((size as f64, d.as_secs_f64() * 1e6))
                    })
                    .collect(),
            });
        }
    }
    Ok(vec![Chart {
        file: "latency".into(),
        title: "Request/response round trip over 127.0.0.1 TCP".into(),
        x_label: "message size (bytes)".into(),
        y_label: "round trip (µs)".into(),
        log_x: true,
        series,
    }])
}
