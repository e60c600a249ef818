//! `bench --scenario throughput`: messages of one size client -> server,
//! batched or one flush per message; MB/s and ratios against the peers.

use std::collections::HashMap;

use secure_link_cli::benchmark::{Mode, Peer, Sample, Setup, Transport, median, transfer};

use super::latency::EndsArg;
use super::plot::{Chart, Series};
use super::{Args, cell, human, on_one_thread, progress};
use crate::shared::Error;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(super) enum ModeArg {
    Batched,
    PerMessage,
    Both,
}

pub(super) async fn run(
    setup: &Setup,
    args: &Args,
    peers: &[Peer],
    transport: Transport,
    tour: bool,
) -> Result<Vec<Chart>, Error> {
    let modes: &[Mode] = match (tour, args.mode) {
        (true, _) => &[Mode::Batched],
        (false, ModeArg::Batched) => &[Mode::Batched],
        (false, ModeArg::PerMessage) => &[Mode::PerMessage],
        (false, ModeArg::Both) => &[Mode::Batched, Mode::PerMessage],
    };
    let default_sizes: &[usize] = if tour {
        &[64, 1024, 64 * 1024]
    } else {
        &[64, 1024, 16 * 1024, 64 * 1024, 1024 * 1024]
    };
    let sizes = args.sizes_or(default_sizes);
    let rounds = if tour { 1 } else { args.rounds };
    // Bytes per run: about 64 MiB (8 MiB on the tour).
    let volume: usize = if tour { 8 << 20 } else { 64 << 20 };
    let count_for = |mode: Mode, size: usize| {
        args.count
            .unwrap_or(match mode {
                Mode::Batched => volume / size.max(1),
                // Capped: one flush per message is slow for small ones.
                Mode::PerMessage => (volume / size.max(1)).min(20_000),
            })
            .max(1)
    };

    let total = rounds * modes.len() * sizes.len() * peers.len();
    let progress = progress(total);
    let mut samples: HashMap<(Mode, usize, Peer), Vec<Sample>> = HashMap::new();
    // Interleaved: every round runs every case once, so drift in machine
    // load affects all peers alike.
    for _ in 0..rounds {
        for &mode in modes {
            for &size in sizes {
                for &peer in peers {
                    progress.set_message(format!("{mode:?} {size} B {peer}"));
                    let count = count_for(mode, size);
                    let sample = match args.ends {
                        EndsArg::Apart => {
                            transfer(setup, peer, transport, mode, size, count).await?
                        }
                        EndsArg::Together => {
                            let setup = setup.clone();
                            on_one_thread("a throughput run", move || async move {
                                transfer(&setup, peer, transport, mode, size, count).await
                            })
                            .await?
                        }
                    };
                    samples.entry((mode, size, peer)).or_default().push(sample);
                    progress.inc(1);
                }
            }
        }
    }
    progress.finish_and_clear();

    outln!(
        "secure-link bench, throughput: client -> server over {transport:?}, {}, medians of {rounds} interleaved round(s)",
        match args.ends {
            EndsArg::Apart => "the ends on the multi-threaded runtime",
            EndsArg::Together => "both ends on one current-thread runtime",
        }
    );
    outln!("ours: this crate; P1: tokio-rustls + LengthDelimitedCodec (no HMAC, same TLS config);");
    outln!(
        "P2: hand-written HMAC codec (keyed per frame), default Framed, same TLS config; P2b: P2 keyed once;"
    );
    outln!("P3: P2 on tokio-rustls defaults\n");
    for &mode in modes {
        outln!("{mode:?}");
        outln!(
            "{:>9} {:>11} {:>12} {:>11} {:>11} {:>11} {:>11} {:>8} {:>8} {:>8} {:>8}",
            "size",
            "ours MB/s",
            "ours msg/s",
            "P1 MB/s",
            "P2 MB/s",
            "P2b MB/s",
            "P3 MB/s",
            "ours/P1",
            "ours/P2",
            "ours/P2b",
            "ours/P3"
        );
        for &size in sizes {
            let median_of = |peer| {
                samples
                    .get(&(mode, size, peer))
                    .and_then(|runs| median(runs))
            };
            let mb = |peer| median_of(peer).map(|s| s.mb_per_s());
            let ours = median_of(Peer::Ours);
            let (o, p1, p2, p2b, p3) = (
                mb(Peer::Ours),
                mb(Peer::P1),
                mb(Peer::P2),
                mb(Peer::P2b),
                mb(Peer::P3),
            );
            let ratio = |peer: Option<f64>| o.zip(peer).map(|(o, p)| o / p);
            outln!(
                "{:>9} {:>11} {:>12} {:>11} {:>11} {:>11} {:>11} {:>8} {:>8} {:>8} {:>8}",
                human(size),
                cell(o, 1),
                cell(ours.map(|s| s.messages_per_s()), 0),
                cell(p1, 1),
                cell(p2, 1),
                cell(p2b, 1),
                cell(p3, 1),
                cell(ratio(p1), 2),
                cell(ratio(p2), 2),
                cell(ratio(p2b), 2),
                cell(ratio(p3), 2)
            );
        }
        outln!();
        outln!("{mode:?}: CPU per payload byte (ns, both ends) x cores busy (CPU time / elapsed)");
        outln!(
            "{:>9} {:>14} {:>14} {:>14} {:>14} {:>14}",
            "size",
            "ours",
            "P1",
            "P2",
            "P2b",
            "P3"
        );
        for &size in sizes {
            let cpu = |peer| {
                let sample = samples
                    .get(&(mode, size, peer))
                    .and_then(|runs| median(runs))?;
                Some(format!(
                    "{:.3} x {:.2}",
                    sample.cpu_ns_per_byte()?,
                    sample.cores_busy()?
                ))
            };
            let cells = Peer::ALL.map(|peer| cpu(peer).unwrap_or_else(|| "-".into()));
            outln!(
                "{:>9} {:>14} {:>14} {:>14} {:>14} {:>14}",
                human(size),
                cells[0],
                cells[1],
                cells[2],
                cells[3],
                cells[4]
            );
        }
        outln!();
    }
    let charts = modes
        .iter()
        .map(|&mode| Chart {
            file: format!("throughput-{}", mode_name(mode)),
            title: format!(
                "Throughput over {transport:?}, {} (medians)",
                mode_name(mode)
            ),
            x_label: "message size (bytes)".into(),
            y_label: "MB/s of payload".into(),
            log_x: true,
            series: peers
                .iter()
                .map(|&peer| Series {
                    name: peer.to_string(),
                    points: sizes
                        .iter()
                        .filter_map(|&size| {
                            let runs = samples.get(&(mode, size, peer))?;
                            Some((size as f64, median(runs)?.mb_per_s()))
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    Ok(charts)
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Batched => "batched",
        Mode::PerMessage => "per-message",
    }
}
