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
    /// Messages per run (default: about 64 MiB per run batched, 4 MiB or
    /// 20,000 messages per message).
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
    let setup = Setup::new()?;
    let count_for = |mode: Mode, size: usize| {
        args.count
            .unwrap_or(match mode {
                Mode::Batched => (64 << 20) / size.max(1),
                Mode::PerMessage => ((4 << 20) / size.max(1)).min(20_000),
            })
            .max(1)
    };

    let total = args.rounds * modes.len() * args.sizes.len() * Peer::ALL.len();
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
                for peer in Peer::ALL {
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
            let m = |peer| median_of(peer).map_or(0.0, |s| s.mb_per_s());
            let ours = median_of(Peer::Ours);
            let (o, p1, p2, p3) = (m(Peer::Ours), m(Peer::P1), m(Peer::P2), m(Peer::P3));
            outln!(
                "{:>9} {:>11.1} {:>12.0} {:>11.1} {:>11.1} {:>11.1} {:>8.2} {:>8.2} {:>8.2}",
                human(size),
                o,
                ours.map_or(0.0, |s| s.messages_per_s()),
                p1,
                p2,
                p3,
                o / p1,
                o / p2,
                o / p3
            );
        }
        outln!();
    }
    Ok(())
}

fn human(size: usize) -> String {
    match size {
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 && s % (1 << 10) == 0 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}
