//! Link throughput client -> server (this crate and the peers of
//! `secure_link_cli::benchmark`), over `tokio::io::duplex` and 127.0.0.1 TCP,
//! batched and per message; and handshakes per second.
//!
//! `secure-link bench` prints the same comparison as a table with ratios.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use secure_link_cli::benchmark::{Mode, Peer, Setup, Transport, transfer};

const SIZES: [usize; 5] = [64, 1024, 16 * 1024, 64 * 1024, 1024 * 1024];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn link(c: &mut Criterion) {
    let rt = runtime();
    let setup = Setup::new().unwrap();
    for transport in [Transport::Duplex, Transport::Tcp] {
        for mode in [Mode::Batched, Mode::PerMessage] {
            let mut group = c.benchmark_group(format!("link/{transport:?}/{mode:?}"));
            group
                .sample_size(10)
                .measurement_time(Duration::from_secs(3));
            for size in SIZES {
                // Messages per timed transfer: about 4 MiB batched, 1 MiB
                // per message.
                let count = match mode {
                    Mode::Batched => ((4 << 20) / size).max(4),
                    Mode::PerMessage => ((1 << 20) / size).clamp(4, 5_000),
                };
                group.throughput(Throughput::Bytes((size * count) as u64));
                for peer in Peer::ALL {
                    group.bench_function(BenchmarkId::new(peer.to_string(), size), |b| {
                        b.to_async(&rt).iter_custom(|iters| {
                            let setup = &setup;
                            async move {
                                let mut total = Duration::ZERO;
                                for _ in 0..iters {
                                    total += transfer(setup, peer, transport, mode, size, count)
                                        .await
                                        .unwrap()
                                        .elapsed;
                                }
                                total
                            }
                        })
                    });
                }
            }
            group.finish();
        }
    }
}

fn handshakes(c: &mut Criterion) {
    let rt = runtime();
    let setup = Setup::new().unwrap();
    let (connector, acceptor) = setup.ours();
    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Elements(1));
    group.bench_function("duplex", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (connector, acceptor) = (connector.clone(), acceptor.clone());
            async move {
                let started = Instant::now();
                for _ in 0..iters {
                    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
                    let (client, server) = tokio::join!(
                        connector.connect("localhost", client_io),
                        acceptor.accept(server_io)
                    );
                    client.unwrap();
                    server.unwrap();
                }
                started.elapsed()
            }
        })
    });
    group.finish();
}

criterion_group!(benches, link, handshakes);
criterion_main!(benches);
