//! `bench --scenario connections`: N clients on their own TCP connections
//! to one server, all sending at once; aggregate messages/s and MB/s, how
//! each implementation scales against its own 10-client figure, the CPU
//! per message and the p99 of a request/response probe beside the load.

use std::collections::HashMap;
use std::time::Duration;

use secure_link_cli::benchmark::{Latency, Peer, Sample, Setup, fan_in, median};

use super::plot::{Chart, Series};
use super::{Args, cell, human, progress, raise_descriptor_limit};
use crate::shared::Error;

/// Ours against the raw-TLS ceiling: "we scale no worse than raw TLS
/// framing" is the comparison that matters here.
const PEERS: [Peer; 2] = [Peer::Ours, Peer::P1];

pub(super) async fn run(
    setup: &Setup,
    args: &Args,
    peers: &[Peer],
    tour: bool,
) -> Result<Vec<Chart>, Error> {
    let limit = raise_descriptor_limit();
    let wanted: &[usize] = if tour {
        &[1, 10, 100]
    } else {
        &[1, 10, 100, 1_000, 5_000]
    };
    let counts: Vec<usize> = wanted
        .iter()
        .copied()
        .filter(|&n| (2 * n as u64) + 64 <= limit)
        .collect();
    let skipped: Vec<usize> = wanted
        .iter()
        .copied()
        .filter(|n| !counts.contains(n))
        .collect();
    let sizes = args.sizes_or(&[64, 1024]);
    let total = args.count.unwrap_or(if tour { 20_000 } else { 1_000_000 });
    let rounds = if tour { 1 } else { args.rounds };
    let peers: Vec<Peer> = PEERS.into_iter().filter(|p| peers.contains(p)).collect();
    let progress = progress(rounds * counts.len() * sizes.len() * peers.len());
    let mut samples: HashMap<(usize, usize, Peer), Vec<Sample>> = HashMap::new();
    // CPU per message of each run, and every probe round trip of every run.
    let mut cpu: HashMap<(usize, usize, Peer), Vec<Duration>> = HashMap::new();
    let mut probes: HashMap<(usize, usize, Peer), Vec<Duration>> = HashMap::new();
    for _ in 0..rounds {
        for &size in sizes {
            for &clients in &counts {
                for &peer in &peers {
                    progress.set_message(format!("{clients} clients {size} B {peer}"));
                    let per_client = (total / clients).max(10);
                    let run = fan_in(setup, peer, clients, size, per_client).await?;
                    let case = (size, clients, peer);
                    samples.entry(case).or_default().push(run.sample);
                    cpu.entry(case)
                        .or_default()
                        .extend(run.sample.cpu_per_message());
                    probes
                        .entry(case)
                        .or_default()
                        .extend(run.probe.round_trips);
                    progress.inc(1);
                }
            }
        }
    }
    progress.finish_and_clear();
    outln!(
        "secure-link bench, connections: N clients over 127.0.0.1 TCP to one server, all sending at once \
         (batched), about {total} messages per run, medians of {rounds} round(s)"
    );
    if !skipped.is_empty() {
        outln!("skipped (descriptor limit {limit}): {skipped:?} clients");
    }
    outln!(
        "x10: aggregate against the same implementation's 10-client figure; \
         CPU: process CPU (both ends) per message, median run; \
         p99: round trips of a 64 B probe on one more connection beside the load\n"
    );
    for &size in sizes {
        outln!("{}", human(size));
        outln!(
            "{:>8} {:>11} {:>9} {:>8} {:>8} {:>8} {:>11} {:>9} {:>8} {:>8} {:>8} {:>11}",
            "clients",
            "ours msg/s",
            "ours MB/s",
            "ours x10",
            "CPU µs",
            "p99 µs",
            "P1 msg/s",
            "P1 MB/s",
            "P1 x10",
            "CPU µs",
            "p99 µs",
            "x10 ours/P1"
        );
        let median_of = |clients, peer| {
            samples
                .get(&(size, clients, peer))
                .and_then(|runs| median(runs))
        };
        let rate = |clients, peer| median_of(clients, peer).map(|s| s.messages_per_s());
        for &clients in &counts {
            let scale = |peer| {
                rate(clients, peer)
                    .zip(rate(10, peer))
                    .map(|(n, ten)| n / ten)
            };
            let (ours_x10, p1_x10) = (scale(Peer::Ours), scale(Peer::P1));
            let cpu_us = |peer| {
                cpu.get(&(size, clients, peer))
                    .and_then(|runs| median_duration(runs))
                    .map(|d| d.as_secs_f64() * 1e6)
            };
            let p99_us = |peer| {
                probes
                    .get(&(size, clients, peer))
                    .and_then(|trips| {
                        let mut trips = trips.clone();
                        trips.sort();
                        Latency { round_trips: trips }.p99()
                    })
                    .map(|d| d.as_secs_f64() * 1e6)
            };
            outln!(
                "{:>8} {:>11} {:>9} {:>8} {:>8} {:>8} {:>11} {:>9} {:>8} {:>8} {:>8} {:>11}",
                clients,
                cell(rate(clients, Peer::Ours), 0),
                cell(median_of(clients, Peer::Ours).map(|s| s.mb_per_s()), 1),
                cell(ours_x10, 2),
                cell(cpu_us(Peer::Ours), 2),
                cell(p99_us(Peer::Ours), 0),
                cell(rate(clients, Peer::P1), 0),
                cell(median_of(clients, Peer::P1).map(|s| s.mb_per_s()), 1),
                cell(p1_x10, 2),
                cell(cpu_us(Peer::P1), 2),
                cell(p99_us(Peer::P1), 0),
                cell(ours_x10.zip(p1_x10).map(|(o, p)| o / p), 2)
            );
        }
        outln!();
    }
    let charts = sizes
        .iter()
        .map(|&size| Chart {
            file: format!("connections-{}", human(size).replace(' ', "")),
            title: format!("Aggregate rate of N clients to one server, {}", human(size)),
            x_label: "clients".into(),
            y_label: "messages/s (millions)".into(),
            log_x: true,
            series: peers
                .iter()
                .map(|&peer| Series {
                    name: peer.to_string(),
                    points: counts
                        .iter()
                        .filter_map(|&clients| {
                            let runs = samples.get(&(size, clients, peer))?;
                            Some((clients as f64, median(runs)?.messages_per_s() / 1e6))
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    Ok(charts)
}

fn median_duration(runs: &[Duration]) -> Option<Duration> {
    let mut sorted = runs.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied()
}
