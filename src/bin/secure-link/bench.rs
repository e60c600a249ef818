//! `bench`: this crate against three peers (see `secure_link::benchmark`),
//! interleaved in one run, medians and ratios in a table.

use std::collections::HashMap;

use indicatif::{ProgressBar, ProgressStyle};
use secure_link::benchmark::{Mode, Peer, Sample, Setup, Transport, median, transfer};

use crate::Error;

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Message sizes in bytes (repeatable).
    #[arg(long = "size", value_name = "BYTES", default_values_t = [64, 1024, 16 * 1024, 64 * 1024, 1024 * 1024])]
    sizes: Vec<usize>,
    /// Messages per run (default: about 64 MiB per run, at most 20,000
    /// messages per message).
    #[arg(long)]
    count: Option<usize>,
    /// The byte stream under TLS.
    #[arg(long, value_enum, default_value_t = TransportArg::Tcp)]
    transport: TransportArg,
    /// Batched (feed + flush), per message (send), or both.
    #[arg(long, value_enum, default_value_t = ModeArg::Both)]
    mode: ModeArg,
    /// Interleaved rounds; the table shows medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Run only these implementations (repeatable; default: all four).
    /// Columns of the others show "-"; useful under a profiler.
    #[arg(long = "peer", value_enum)]
    peers: Vec<PeerArg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PeerArg {
    Ours,
    P1,
    P2,
    P3,
}

impl From<PeerArg> for Peer {
    fn from(peer: PeerArg) -> Self {
        match peer {
            PeerArg::Ours => Peer::Ours,
            PeerArg::P1 => Peer::P1,
            PeerArg::P2 => Peer::P2,
            PeerArg::P3 => Peer::P3,
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum TransportArg {
    Duplex,
    Tcp,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    Batched,
    PerMessage,
    Both,
}

pub(crate) async fn run(args: Args) -> Result<(), Error> {
    let transport = match args.transport {
        TransportArg::Duplex => Transport::Duplex,
        TransportArg::Tcp => Transport::Tcp,
    };
    let modes: &[Mode] = match args.mode {
        ModeArg::Batched => &[Mode::Batched],
        ModeArg::PerMessage => &[Mode::PerMessage],
        ModeArg::Both => &[Mode::Batched, Mode::PerMessage],
    };
    if args.sizes.is_empty() || args.rounds == 0 {
        return Err(Error::msg(
            "nothing to run: give at least one --size and one round",
        ));
    }
    // Table order, each once, whatever the order and repeats on the command line.
    let peers: Vec<Peer> = Peer::ALL
        .into_iter()
        .filter(|&peer| args.peers.is_empty() || args.peers.iter().any(|&p| Peer::from(p) == peer))
        .collect();
    let setup = Setup::new()?;
    let count_for = |mode: Mode, size: usize| {
        args.count
            .unwrap_or(match mode {
                Mode::Batched => (64 << 20) / size.max(1),
                // Capped: one flush per message is slow for small ones.
                Mode::PerMessage => ((64 << 20) / size.max(1)).min(20_000),
            })
            .max(1)
    };

    let total = args.rounds * modes.len() * args.sizes.len() * peers.len();
    let progress = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} runs, {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut samples: HashMap<(Mode, usize, Peer), Vec<Sample>> = HashMap::new();
    // Interleaved: every round runs every case once, so drift in machine
    // load affects all peers alike.
    for _ in 0..args.rounds {
        for &mode in modes {
            for &size in &args.sizes {
                for &peer in &peers {
                    progress.set_message(format!("{mode:?} {size} B {peer}"));
                    let sample =
                        transfer(&setup, peer, transport, mode, size, count_for(mode, size))
                            .await?;
                    samples.entry((mode, size, peer)).or_default().push(sample);
                    progress.inc(1);
                }
            }
        }
    }
    progress.finish_and_clear();

    outln!(
        "secure-link bench: client -> server over {transport:?}, medians of {} interleaved rounds",
        args.rounds
    );
    outln!("ours: this crate; P1: tokio-rustls + LengthDelimitedCodec (no HMAC, same TLS config);");
    outln!(
        "P2: hand-written HMAC codec, default Framed, same TLS config; P3: P2 on tokio-rustls defaults\n"
    );
    for &mode in modes {
        outln!("{mode:?}");
        outln!(
            "{:>9} {:>11} {:>12} {:>11} {:>11} {:>11} {:>8} {:>8} {:>8}",
            "size",
            "ours MB/s",
            "ours msg/s",
            "P1 MB/s",
            "P2 MB/s",
            "P3 MB/s",
            "ours/P1",
            "ours/P2",
            "ours/P3"
        );
        for &size in &args.sizes {
            let median_of = |peer| {
                samples
                    .get(&(mode, size, peer))
                    .and_then(|runs| median(runs))
            };
            let mb = |peer| median_of(peer).map(|s| s.mb_per_s());
            let ours = median_of(Peer::Ours);
            let (o, p1, p2, p3) = (mb(Peer::Ours), mb(Peer::P1), mb(Peer::P2), mb(Peer::P3));
            let ratio = |peer: Option<f64>| o.zip(peer).map(|(o, p)| o / p);
            outln!(
                "{:>9} {:>11} {:>12} {:>11} {:>11} {:>11} {:>8} {:>8} {:>8}",
                human(size),
                cell(o, 1),
                cell(ours.map(|s| s.messages_per_s()), 0),
                cell(p1, 1),
                cell(p2, 1),
                cell(p3, 1),
                cell(ratio(p1), 2),
                cell(ratio(p2), 2),
                cell(ratio(p3), 2)
            );
        }
        outln!();
    }
    Ok(())
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
