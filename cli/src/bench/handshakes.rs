//! `bench --scenario handshakes`: full TLS 1.3 handshakes per second over
//! 127.0.0.1 TCP, one at a time, per server key and key exchange group;
//! ours against tokio-rustls alone on the same configurations.

use std::collections::HashMap;
use std::time::Duration;

use secure_link_cli::benchmark::{Handshaker, handshake_cases, handshakes};

use super::plot::Chart;
use super::{Args, cell, progress};
use crate::shared::Error;

pub(super) async fn run(args: &Args, tour: bool) -> Result<Vec<Chart>, Error> {
    let count = args.count.unwrap_or(if tour { 100 } else { 500 }).max(1);
    let rounds = if tour { 1 } else { args.rounds };
    let cases = handshake_cases();
    let who = [Handshaker::Ours, Handshaker::TokioRustls];
    let progress = progress(rounds * cases.len() * who.len());
    let mut times: HashMap<_, Vec<Duration>> = HashMap::new();
    for _ in 0..rounds {
        for &(key, group) in &cases {
            for &handshaker in &who {
                progress.set_message(format!("handshakes {key:?} {group:?} {handshaker:?}"));
                let elapsed = handshakes(handshaker, key, group, count).await?;
                times
                    .entry((key, group, handshaker))
                    .or_default()
                    .push(elapsed);
                progress.inc(1);
            }
        }
    }
    progress.finish_and_clear();
    outln!(
        "secure-link bench, handshakes: full TLS 1.3 handshakes over 127.0.0.1 TCP, one at a time, \
         {count} per run, medians of {rounds} round(s)"
    );
    outln!(
        "{:>10} {:>16} {:>12} {:>16} {:>10}",
        "server key",
        "key exchange",
        "ours hs/s",
        "tokio-rustls hs/s",
        "ours/raw"
    );
    for &(key, group) in &cases {
        let rate = |handshaker| {
            times.get(&(key, group, handshaker)).and_then(|runs| {
                let mut runs = runs.clone();
                runs.sort();
                runs.get(runs.len() / 2)
                    .map(|median| count as f64 / median.as_secs_f64().max(1e-9))
            })
        };
        let (ours, raw) = (rate(Handshaker::Ours), rate(Handshaker::TokioRustls));
        outln!(
            "{:>10} {:>16} {:>12} {:>16} {:>10}",
            format!("{key:?}"),
            format!("{group:?}"),
            cell(ours, 0),
            cell(raw, 0),
            cell(ours.zip(raw).map(|(o, r)| o / r), 2)
        );
    }
    outln!();
    Ok(Vec::new())
}
