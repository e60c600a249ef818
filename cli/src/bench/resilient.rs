//! `bench --scenario resilient`: the resilient mode against the plain link
//! in the same run (batched, client -> server, TCP), the acknowledgements
//! it sends on their own, and what a cut and a black hole cost.

use std::collections::HashMap;
use std::time::Duration;

use secure_link_cli::benchmark::{ResilientSample, Setup, median, recovery, resilient_transfer};

use super::{Args, cell, human, progress};
use crate::shared::Error;

/// The dead-peer measurement's timings (short, so that the run is).
const HEARTBEAT: Duration = Duration::from_secs(1);
const DEAD_TIME: Duration = Duration::from_secs(3);

pub(super) async fn run(setup: &Setup, args: &Args, tour: bool) -> Result<(), Error> {
    let default_sizes: &[usize] = if tour {
        &[64, 1024, 64 * 1024]
    } else {
        &[64, 1024, 16 * 1024, 64 * 1024]
    };
    let sizes = args.sizes_or(default_sizes);
    let rounds = if tour { 1 } else { args.rounds };
    let volume: usize = if tour { 16 << 20 } else { 256 << 20 };
    let count_for = |size: usize| args.count.unwrap_or(volume / size.max(1)).max(1);

    let progress = progress(rounds * sizes.len() * 2);
    let mut samples: HashMap<(usize, bool), Vec<ResilientSample>> = HashMap::new();
    for _ in 0..rounds {
        for &size in sizes {
            for resilient in [false, true] {
                progress.set_message(format!("{size} B {}", label(resilient)));
                let sample = resilient_transfer(setup, resilient, size, count_for(size)).await?;
                samples.entry((size, resilient)).or_default().push(sample);
                progress.inc(1);
            }
        }
    }
    progress.finish_and_clear();

    outln!(
        "secure-link bench, resilient: client -> server over TCP, batched, medians of {rounds} interleaved round(s)"
    );
    outln!(
        "plain: the lab's format; resilient: the same link with sessions (flush = acknowledged)\n"
    );
    outln!(
        "{:>9} {:>11} {:>11} {:>12} {:>9} {:>10} {:>12}",
        "size",
        "plain MB/s",
        "resil. MB/s",
        "resil. msg/s",
        "overhead",
        "CPU/byte x",
        "acks per 16"
    );
    for &size in sizes {
        let of = |resilient| {
            let runs = samples.get(&(size, resilient))?;
            let plain: Vec<_> = runs.iter().map(|r| r.sample).collect();
            let middle = median(&plain)?;
            let acks = runs
                .iter()
                .find(|r| r.sample.elapsed == middle.elapsed)
                .map_or(0, |r| r.standalone_acks);
            Some((middle, acks))
        };
        let plain = of(false);
        let resilient = of(true);
        let overhead = plain
            .zip(resilient)
            .map(|((p, _), (r, _))| (1.0 - r.mb_per_s() / p.mb_per_s()) * 100.0);
        let acks = resilient.map(|(r, acks)| acks as f64 * 16.0 / r.messages as f64);
        // CPU per byte, both ends and the drivers, resilient over plain:
        // steadier than throughput on a shared machine.
        let cpu_per_byte = |s: &secure_link_cli::benchmark::Sample| {
            s.cpu.map(|cpu| cpu.as_secs_f64() / s.bytes.max(1) as f64)
        };
        let cpu = plain.zip(resilient).and_then(|((p, _), (r, _))| {
            Some(cpu_per_byte(&r)? / cpu_per_byte(&p)?.max(f64::MIN_POSITIVE))
        });
        outln!(
            "{:>9} {:>11} {:>11} {:>12} {:>8}% {:>10} {:>12}",
            human(size),
            cell(plain.map(|(p, _)| p.mb_per_s()), 1),
            cell(resilient.map(|(r, _)| r.mb_per_s()), 1),
            cell(resilient.map(|(r, _)| r.messages_per_s()), 0),
            cell(overhead, 1),
            cell(cpu, 2),
            cell(acks, 3)
        );
    }
    outln!();
    if tour {
        return Ok(());
    }
    let recovered = recovery(setup, HEARTBEAT, DEAD_TIME).await?;
    outln!(
        "after a cut: first resumed delivery {:.0} ms (the first reconnect waits up to {} ms)",
        recovered.resumed_after.as_secs_f64() * 1e3,
        recovered.backoff_ceiling.as_millis()
    );
    outln!(
        "a black hole, heartbeat {} s, dead time {} s: client found it dead after {:.2} s, server after {:.2} s",
        recovered.heartbeat_interval.as_secs(),
        recovered.dead_time.as_secs(),
        recovered.client_dead_after.as_secs_f64(),
        recovered.server_dead_after.as_secs_f64()
    );
    Ok(())
}

fn label(resilient: bool) -> &'static str {
    if resilient { "resilient" } else { "plain" }
}
