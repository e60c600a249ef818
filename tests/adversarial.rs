//! Hostile input from the network: the server keeps serving others, never
//! delivers a forged or partial message, loses nothing honest, and bounds
//! what an attacker can make it hold. Figures printed here (run with
//! `--nocapture`) are recorded in SECURITY.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use common::{KEY, Tap, drain, endpoints};
use futures::SinkExt;
use secure_link::{HmacFrameCodec, LinkError, SecureAcceptor, SecureConnector, SecureServer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::Encoder;

/// What a test server saw on one connection.
#[derive(Debug)]
struct Seen {
    messages: Vec<Bytes>,
    end: Option<LinkError>,
}

async fn read_all<IO: AsyncRead + AsyncWrite + Unpin>(mut server: SecureServer<IO>) -> Seen {
    let (messages, end) = drain(&mut server).await;
    if end.is_none() {
        let _ = server.close().await;
    }
    Seen { messages, end }
}

/// A TCP server on 127.0.0.1 that serves every connection in its own task
/// and reports each outcome (`Err` for a failed handshake).
async fn spawn_server(
    acceptor: SecureAcceptor,
) -> (SocketAddr, mpsc::UnboundedReceiver<Result<Seen, LinkError>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let outcome = match acceptor.accept(tcp).await {
                    Ok(server) => Ok(read_all(server).await),
                    Err(err) => Err(err),
                };
                let _ = tx.send(outcome);
            });
        }
    });
    (addr, rx)
}

/// Makes room for `sockets` open sockets in this process, or panics saying
/// why the test cannot run.
fn allow_sockets(sockets: u64) {
    let want = sockets + 256;
    let got = rlimit::increase_nofile_limit(want).unwrap();
    assert!(
        got >= want,
        "the open-file limit is {got}; this test needs {want}"
    );
}

async fn honest_client(connector: &SecureConnector, addr: SocketAddr, messages: &[&str]) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut client = connector.connect("localhost", tcp).await.unwrap();
    for message in messages {
        client
            .feed(Bytes::copy_from_slice(message.as_bytes()))
            .await
            .unwrap();
    }
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_500_silent_connections_do_not_delay_an_honest_client() {
    const SILENT: usize = 500;
    allow_sockets(2 * SILENT as u64);
    let (connector, acceptor) = endpoints(KEY);
    // Far above what the honest client needs, even on a loaded machine; the
    // test shows it served while every silent connection is still held.
    let handshake_timeout = Duration::from_secs(20);
    let connector = connector
        .with_handshake_timeout(Duration::from_secs(120))
        .with_close_timeout(Duration::from_secs(120));
    let (addr, mut outcomes) =
        spawn_server(acceptor.with_handshake_timeout(handshake_timeout)).await;

    let opened = Instant::now();
    let mut silent = Vec::with_capacity(SILENT);
    for _ in 0..SILENT {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }

    let started = Instant::now();
    honest_client(&connector, addr, &["still served"]).await;
    let seen = outcomes.recv().await.unwrap().unwrap();
    let latency = started.elapsed();
    assert_eq!(seen.messages, ["still served"]);
    assert!(seen.end.is_none(), "{:?}", seen.end);
    println!("honest client served in {latency:?} beside {SILENT} silent connections");
    // Served beside them, not after them: none has been dropped yet.
    let mut buf = [0u8; 1];
    for tcp in &silent {
        let read = tcp.try_read(&mut buf);
        assert!(
            matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a silent connection ended before the honest client was served ({latency:?}): {read:?}"
        );
    }

    // Every silent connection is dropped at the handshake timeout: the
    // server closes it (EOF) and reports HandshakeTimeout.
    let closes = silent.into_iter().map(|mut tcp| async move {
        let mut buf = [0u8; 1];
        tokio::time::timeout(handshake_timeout * 4, tcp.read(&mut buf)).await
    });
    for closed in futures::future::join_all(closes).await {
        assert_eq!(
            closed
                .expect("a silent connection was never dropped")
                .unwrap(),
            0
        );
    }
    let dropped_after = opened.elapsed();
    println!("{SILENT} silent connections dropped after {dropped_after:?}");
    assert!(dropped_after >= handshake_timeout);
    for _ in 0..SILENT {
        let outcome = outcomes.recv().await.unwrap();
        assert!(
            matches!(outcome, Err(LinkError::HandshakeTimeout)),
            "{outcome:?}"
        );
    }
}

#[tokio::test]
async fn random_bytes_instead_of_a_client_hello_fail_that_connection_only() {
    let (connector, acceptor) = endpoints(KEY);
    let (addr, mut outcomes) = spawn_server(acceptor).await;

    let mut garbage = TcpStream::connect(addr).await.unwrap();
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    garbage.write_all(&noise).await.unwrap();
    let outcome = outcomes.recv().await.unwrap();
    assert!(matches!(outcome, Err(LinkError::Tls(_))), "{outcome:?}");

    honest_client(&connector, addr, &["after the noise"]).await;
    let seen = outcomes.recv().await.unwrap().unwrap();
    assert_eq!(seen.messages, ["after the noise"]);
}

/// Runs on paused time: a flip in a record's length field leaves the server
/// waiting for bytes that never come, until one of its deadlines fires;
/// virtual time gets there at once, and deterministically.
#[tokio::test(start_paused = true)]
async fn flipped_bits_anywhere_on_the_wire_never_deliver_a_forged_message() {
    let (connector, acceptor) = endpoints(KEY);
    let acceptor = acceptor
        .with_handshake_timeout(Duration::from_secs(5))
        .with_first_message_timeout(Duration::from_secs(5))
        .with_idle_timeout(Duration::from_secs(5));
    let sent = ["first message", "second message", "third message"];

    // The length of the client's side of a clean session.
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let (tap, log) = Tap::new(client_io);
    let clean = tokio::spawn({
        let acceptor = acceptor.clone();
        async move { read_all(acceptor.accept(server_io).await.unwrap()).await }
    });
    let mut client = connector.connect("localhost", tap).await.unwrap();
    for message in sent {
        client.send(Bytes::from(message)).await.unwrap();
    }
    client.close().await.unwrap();
    assert_eq!(clean.await.unwrap().messages, sent);
    let wire_len = log.bytes().len();
    // Offsets of the outer content type and legacy version bytes of each
    // record header. RFC 8446 §5.1 says the version "MUST be ignored", and
    // rustls authenticates the header as the fixed values a TLS 1.3 record
    // must carry, so a flip there may go unnoticed: the data is unchanged.
    let mut ignorable = std::collections::HashSet::new();
    let mut at = 0;
    for (_, len) in log.tls_records() {
        ignorable.extend(at..at + 3);
        at += 5 + len;
    }

    let mut runs = 0;
    let mut delivered_before_flip = 0;
    let mut unnoticed_header_flips = 0;
    let mut failed_handshakes = 0;
    let mut failed_connections = 0;
    for offset in 0..wire_len {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let (tap, _) = Tap::new(client_io);
        let tap = tap.flipping_bit_at(offset);
        let acceptor = acceptor.clone();
        let server = tokio::spawn(async move {
            match acceptor.accept(server_io).await {
                Ok(server) => Ok(read_all(server).await),
                Err(err) => Err(err),
            }
        });
        let client_side = async {
            let mut client = connector.connect("localhost", tap).await?;
            for message in sent {
                client.send(Bytes::from(message)).await?;
            }
            client.close().await
        };
        let client_result = tokio::time::timeout(Duration::from_secs(60), client_side)
            .await
            .unwrap_or_else(|_| panic!("flip at {offset}: client hung"));
        let server_result = tokio::time::timeout(Duration::from_secs(60), server)
            .await
            .unwrap_or_else(|_| panic!("flip at {offset}: server hung"))
            .expect("server task panicked");
        runs += 1;
        match server_result {
            // accept() failed (the handshake, or a record rustls read in
            // the same pass: the client writes everything before the
            // server runs): nothing was delivered.
            Err(err) => {
                assert!(
                    matches!(
                        err,
                        LinkError::Tls(_) | LinkError::Truncated | LinkError::HandshakeTimeout
                    ),
                    "flip at {offset}: handshake ended with {err:?}"
                );
                failed_handshakes += 1;
            }
            // A clean end: everything arrived, unaltered, and the flip was
            // in a byte TLS 1.3 does not use.
            Ok(Seen {
                messages,
                end: None,
            }) => {
                assert_eq!(
                    messages, sent,
                    "flip at {offset}: clean end, messages differ"
                );
                assert!(
                    ignorable.contains(&offset),
                    "flip at {offset} went unnoticed"
                );
                assert!(client_result.is_ok(), "flip at {offset}: {client_result:?}");
                unnoticed_header_flips += 1;
            }
            // The connection failed: what came before the flip is intact,
            // and the failure is one a damaged record or frame causes.
            Ok(Seen {
                messages,
                end: Some(err),
            }) => {
                assert_eq!(
                    messages,
                    &sent[..messages.len()],
                    "flip at {offset} altered a delivered message"
                );
                assert!(
                    matches!(
                        err,
                        LinkError::Tls(_)
                            | LinkError::Truncated
                            | LinkError::InvalidHmac
                            | LinkError::FrameTooLarge { .. }
                            | LinkError::FirstMessageTimeout(_)
                            | LinkError::IdleTimeout(_)
                    ),
                    "flip at {offset}: the connection ended with {err:?}"
                );
                failed_connections += 1;
                delivered_before_flip += messages.len();
            }
        }
    }
    println!(
        "{runs} single-bit flips over a {wire_len}-byte session: no altered message delivered; \
         {failed_handshakes} failed accept(), {failed_connections} failed the connection later \
         ({delivered_before_flip} intact messages delivered before the flip), \
         {unnoticed_header_flips} flips in unauthenticated header bytes (type/version) changed nothing"
    );
    assert_eq!(runs, wire_len, "one run per byte of the session");
    assert_eq!(
        failed_handshakes + failed_connections + unnoticed_header_flips,
        wire_len
    );
    assert!(unnoticed_header_flips <= ignorable.len());
}

/// Encodes frames by hand: (declared length, payload, tag source key).
fn frame(payload: &[u8], key: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    HmacFrameCodec::new(key)
        .with_max_frame_len(usize::MAX)
        .encode(Bytes::copy_from_slice(payload), &mut out)
        .unwrap();
    out
}

/// Writes `wire` through an authenticated TLS connection (correct key,
/// trusted certificate) and returns what the server made of it.
async fn server_verdict(max_frame_len: usize, wire: &[u8], close_notify: bool) -> Seen {
    let (connector, acceptor) = endpoints(KEY);
    let acceptor = acceptor.with_max_frame_len(max_frame_len);
    let (client_io, server_io) = tokio::io::duplex(1024 * 1024);
    let (client, server) = tokio::join!(
        connector.connect("localhost", client_io),
        acceptor.accept(server_io)
    );
    let (client, server) = (client.unwrap(), server.unwrap());
    let reader = tokio::spawn(read_all(server));
    let mut tls = client.into_inner();
    tls.write_all(wire).await.unwrap();
    if close_notify {
        tls.shutdown().await.unwrap();
    } else {
        tls.flush().await.unwrap();
        drop(tls);
    }
    reader.await.unwrap()
}

#[tokio::test]
async fn zero_length_and_maximum_length_frames_are_delivered() {
    const MAX: usize = 64 * 1024;
    let mut wire = frame(b"", KEY);
    wire.extend_from_slice(&frame(&vec![0xab; MAX], KEY));
    wire.extend_from_slice(&frame(b"", KEY));
    let seen = server_verdict(MAX, &wire, true).await;
    assert!(seen.end.is_none(), "{:?}", seen.end);
    assert_eq!(seen.messages.len(), 3);
    assert!(seen.messages[0].is_empty() && seen.messages[2].is_empty());
    assert_eq!(&seen.messages[1][..], &vec![0xab; MAX][..]);
}

#[tokio::test]
async fn one_byte_over_the_limit_is_refused_and_nothing_after_it_is_delivered() {
    const MAX: usize = 64 * 1024;
    let mut wire = frame(b"before", KEY);
    wire.extend_from_slice(&frame(&vec![1; MAX + 1], KEY));
    wire.extend_from_slice(&frame(b"after", KEY));
    let seen = server_verdict(MAX, &wire, true).await;
    assert_eq!(seen.messages, ["before"]);
    assert!(
        matches!(seen.end, Some(LinkError::FrameTooLarge { len, max }) if len == MAX as u64 + 1 && max == MAX as u64),
        "{:?}",
        seen.end
    );
}

#[tokio::test]
async fn a_wrong_tag_ends_the_stream_and_later_valid_frames_are_ignored() {
    let mut wire = frame(b"genuine", KEY);
    let mut forged = frame(b"forged", KEY);
    let last = forged.len() - 1;
    forged[last] ^= 0x80;
    wire.extend_from_slice(&forged);
    wire.extend_from_slice(&frame(b"genuine but too late", KEY));
    let seen = server_verdict(1024, &wire, true).await;
    assert_eq!(seen.messages, ["genuine"]);
    assert!(
        matches!(seen.end, Some(LinkError::InvalidHmac)),
        "{:?}",
        seen.end
    );
}

#[tokio::test]
async fn a_frame_signed_with_another_key_is_invalid_hmac() {
    let wire = frame(b"forged", b"attacker key");
    let seen = server_verdict(1024, &wire, true).await;
    assert!(seen.messages.is_empty());
    assert!(
        matches!(seen.end, Some(LinkError::InvalidHmac)),
        "{:?}",
        seen.end
    );
}

#[tokio::test]
async fn truncated_frames_are_errors_whether_or_not_close_notify_follows() {
    let whole = frame(b"this frame is cut short", KEY);
    for cut in [1, 3, 4, 5, whole.len() - 32, whole.len() - 1] {
        for close_notify in [true, false] {
            let mut wire = frame(b"complete", KEY);
            wire.extend_from_slice(&whole[..cut]);
            let seen = server_verdict(1024, &wire, close_notify).await;
            assert_eq!(seen.messages, ["complete"], "cut {cut}");
            assert!(
                matches!(seen.end, Some(LinkError::Truncated)),
                "cut {cut}, close_notify {close_notify}: {:?}",
                seen.end
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_connections_of_100_messages_lose_nothing() {
    const CLIENTS: usize = 1000;
    const MESSAGES: usize = 100;
    allow_sockets(2 * CLIENTS as u64);
    let (connector, acceptor) = endpoints(KEY);
    // 1,000 handshakes at once on 2 cores in a debug build: every deadline
    // far above what they need (the defaults, 10 s for a handshake and 2 s
    // for close(), were met only most of the time).
    let patience = Duration::from_secs(300);
    let connector = connector
        .with_handshake_timeout(patience)
        .with_close_timeout(patience);
    let acceptor = acceptor
        .with_handshake_timeout(patience)
        .with_first_message_timeout(patience)
        .with_idle_timeout(patience);
    let (addr, mut outcomes) = spawn_server(acceptor).await;

    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let connector = connector.clone();
        clients.spawn(async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let mut client = connector.connect("localhost", tcp).await.unwrap();
            for i in 0..MESSAGES {
                let mut message = BytesMut::with_capacity(16);
                message.put_u64(c as u64);
                message.put_u64(i as u64);
                client.feed(message.freeze()).await.unwrap();
            }
            client.close().await.unwrap();
        });
    }
    while let Some(done) = clients.join_next().await {
        done.unwrap();
    }
    let mut seen_clients = vec![false; CLIENTS];
    for _ in 0..CLIENTS {
        let seen = outcomes.recv().await.unwrap().unwrap();
        assert!(seen.end.is_none(), "{:?}", seen.end);
        assert_eq!(seen.messages.len(), MESSAGES);
        let client = u64::from_be_bytes(seen.messages[0][..8].try_into().unwrap()) as usize;
        assert!(!seen_clients[client]);
        seen_clients[client] = true;
        for (i, message) in seen.messages.iter().enumerate() {
            assert_eq!(
                u64::from_be_bytes(message[..8].try_into().unwrap()) as usize,
                client
            );
            assert_eq!(
                u64::from_be_bytes(message[8..].try_into().unwrap()) as usize,
                i
            );
        }
    }
    println!(
        "{CLIENTS} connections x {MESSAGES} messages: 0 lost, {:?}, peak RSS {}",
        started.elapsed(),
        peak_rss()
    );
}

/// The process's peak resident set size, from /proc (Linux).
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.trim_start_matches("VmHWM:").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}
