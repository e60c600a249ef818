//! SecureConnector / SecureAcceptor end to end, over tokio::io::duplex and
//! 127.0.0.1 TCP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{KEY, Tap, connected, connected_over, drain, endpoints, pki, tcp_pair};
use futures::{SinkExt, StreamExt, stream};
use secure_link::rustls::{self, CertificateError};
use secure_link::{AuthMode, HmacFrameCodec, LinkError, SecureAcceptor, SecureConnector, tls};
use tokio::io::AsyncWriteExt;

fn messages(list: &[&str]) -> Vec<Bytes> {
    list.iter()
        .map(|m| Bytes::copy_from_slice(m.as_bytes()))
        .collect()
}

#[tokio::test]
async fn messages_arrive_intact_and_in_order_over_duplex() {
    let (connector, acceptor) = endpoints(KEY);
    let (client_io, server_io) = tokio::io::duplex(16 * 1024);
    let sent = messages(&["", "hello", "a bit longer message to transmit"]);
    let big = Bytes::from((0..3_000_000u32).map(|i| i as u8).collect::<Vec<_>>());

    let server = tokio::spawn(async move {
        let mut server = acceptor.accept(server_io).await.unwrap();
        let result = drain(&mut server).await;
        server.close().await.unwrap();
        result
    });
    let mut client = connector.connect("localhost", client_io).await.unwrap();
    for message in &sent {
        client.send(message.clone()).await.unwrap();
    }
    client.send(big.clone()).await.unwrap();
    client.close().await.unwrap();

    let (received, err) = server.await.unwrap();
    assert!(err.is_none(), "{err:?}");
    assert_eq!(received.len(), 4);
    assert_eq!(&received[..3], &sent[..]);
    assert!(received[3] == big, "multi-megabyte message differs");
}

#[tokio::test]
async fn tcp_link_negotiates_tls13_and_delivers() {
    let (connector, acceptor) = endpoints(KEY);
    let (client_tcp, server_tcp) = tcp_pair().await;
    let server = tokio::spawn(async move {
        let mut server = acceptor.accept(server_tcp).await.unwrap();
        let conn = server.get_ref().1;
        assert_eq!(
            conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        // No SNI for an IP address (RFC 6066 forbids it).
        assert_eq!(conn.server_name(), None);
        let result = drain(&mut server).await;
        server.close().await.unwrap();
        result
    });
    let mut client = connector.connect("127.0.0.1", client_tcp).await.unwrap();
    let conn = client.get_ref().1;
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert!(conn.peer_certificates().is_some_and(|c| c.len() == 2));
    client.send("over tcp".into()).await.unwrap();
    client.close().await.unwrap();
    let (received, err) = server.await.unwrap();
    assert!(err.is_none(), "{err:?}");
    assert_eq!(received, messages(&["over tcp"]));
}

#[cfg(feature = "aws-lc-rs")]
#[tokio::test]
async fn post_quantum_hybrid_key_exchange_is_negotiated() {
    let (connector, acceptor) = endpoints(KEY);
    let (client, server) = connected(&connector, &acceptor).await;
    for group in [
        client.get_ref().1.negotiated_key_exchange_group(),
        server.get_ref().1.negotiated_key_exchange_group(),
    ] {
        assert_eq!(
            group.map(|g| g.name()),
            Some(rustls::NamedGroup::X25519MLKEM768)
        );
    }
}

#[tokio::test]
async fn wrong_key_is_invalid_hmac_and_the_stream_ends() {
    let pki = pki();
    let connector = SecureConnector::new(&pki.ca_pem, &b"not the key"[..]).unwrap();
    let acceptor = SecureAcceptor::new(&pki.chain_pem, &pki.key_pem, KEY).unwrap();
    let (mut client, mut server) = connected(&connector, &acceptor).await;
    client.send("first forged".into()).await.unwrap();
    client.send("second forged".into()).await.unwrap();
    assert!(matches!(
        server.next().await,
        Some(Err(LinkError::InvalidHmac))
    ));
    assert!(server.next().await.is_none());
    assert!(server.next().await.is_none());
}

#[tokio::test]
async fn send_flushes_so_the_server_sees_the_message_while_the_link_is_open() {
    let (connector, acceptor) = endpoints(KEY);
    let (mut client, mut server) = connected(&connector, &acceptor).await;
    for i in 0..3 {
        let message = Bytes::from(format!("message {i}"));
        client.send(message.clone()).await.unwrap();
        assert_eq!(server.next().await.unwrap().unwrap(), message);
    }
}

#[tokio::test]
async fn batched_frames_fill_whole_tls_records() {
    let (connector, acceptor) = endpoints(KEY);
    let (client_io, server_io) = tokio::io::duplex(1024 * 1024);
    let (tap, log) = Tap::new(client_io);
    let (mut client, mut server) = connected_over(&connector, &acceptor, (tap, server_io)).await;
    let handshake_records = log.tls_records().len();

    // 2,000 frames of 64 bytes = 200,000 bytes on the wire.
    let frames: Vec<Bytes> = (0..2000).map(|i| Bytes::from(vec![i as u8; 64])).collect();
    let mut source = stream::iter(frames.clone().into_iter().map(Ok));
    let receiver = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < 2000 {
            got.push(server.next().await.unwrap().unwrap());
        }
        got
    });
    client.send_all(&mut source).await.unwrap();
    assert_eq!(receiver.await.unwrap(), frames);

    let data_records: Vec<usize> = log.tls_records()[handshake_records..]
        .iter()
        .map(|&(_, len)| len)
        .collect();
    // 16 KiB of plaintext + content type byte + 16-byte AEAD tag.
    let full = 16 * 1024 + 1 + 16;
    let full_records = data_records.iter().filter(|&&len| len == full).count();
    assert!(
        data_records.len() <= 14,
        "{} records for 200 kB: {data_records:?}",
        data_records.len()
    );
    assert!(
        full_records >= 10,
        "only {full_records} full records: {data_records:?}"
    );
}

#[tokio::test]
async fn close_sends_close_notify_so_the_server_stream_ends_cleanly() {
    let (connector, acceptor) = endpoints(KEY);
    let (mut client, mut server) = connected(&connector, &acceptor).await;
    client.feed("unflushed".into()).await.unwrap();
    let closing = tokio::spawn(async move {
        client.close().await.unwrap();
        client
    });
    assert_eq!(server.next().await.unwrap().unwrap(), "unflushed");
    assert!(
        server.next().await.is_none(),
        "close_notify ends the stream"
    );
    server.close().await.unwrap();
    let mut client = closing.await.unwrap();
    // The server answered with close_notify: a clean end, not truncation.
    assert!(client.next().await.is_none());
}

#[tokio::test]
async fn a_server_that_vanishes_without_close_notify_is_truncation_for_the_client() {
    let (connector, acceptor) = endpoints(KEY);
    let (mut client, mut server) = connected(&connector, &acceptor).await;
    let server = tokio::spawn(async move {
        let result = drain(&mut server).await;
        // The transport goes, no close_notify (a crash; a `SecureServer`
        // dropped here would answer the client's end, tests/close.rs).
        drop(server.into_inner());
        result
    });
    client.send("bye".into()).await.unwrap();
    // close() and the stream both report the unconfirmed end.
    let closed = client.close().await;
    assert!(matches!(closed, Err(LinkError::Truncated)), "{closed:?}");
    assert!(matches!(
        client.next().await,
        Some(Err(LinkError::Truncated))
    ));
    assert!(client.next().await.is_none());
    assert_eq!(server.await.unwrap().0, messages(&["bye"]));
}

#[tokio::test]
async fn client_vanishing_without_close_notify_is_truncated_not_a_clean_end() {
    let (connector, acceptor) = endpoints(KEY);
    let (mut client, mut server) = connected_over(&connector, &acceptor, tcp_pair().await).await;
    client.send("last words".into()).await.unwrap();
    let (tcp, _) = client.into_inner().into_inner();
    drop(tcp); // TCP FIN, no close_notify
    let (received, err) = drain(&mut server).await;
    assert_eq!(received, messages(&["last words"]));
    assert!(matches!(err, Some(LinkError::Truncated)), "{err:?}");
    assert!(server.next().await.is_none());
}

#[tokio::test]
async fn eof_inside_a_frame_is_truncated_even_after_close_notify() {
    let (connector, acceptor) = endpoints(KEY);
    let (client, mut server) = connected(&connector, &acceptor).await;
    // Half a frame through the raw TLS stream, then a proper close_notify.
    let mut tls = client.into_inner();
    tls.write_all(&[0, 0, 0, 100, b'h', b'a', b'l', b'f'])
        .await
        .unwrap();
    tls.shutdown().await.unwrap();
    let (received, err) = drain(&mut server).await;
    assert!(received.is_empty());
    assert!(matches!(err, Some(LinkError::Truncated)), "{err:?}");
}

#[tokio::test]
async fn frame_over_the_servers_limit_is_refused() {
    let pki = pki();
    let connector = SecureConnector::new(&pki.ca_pem, KEY).unwrap();
    let acceptor = SecureAcceptor::new(&pki.chain_pem, &pki.key_pem, KEY)
        .unwrap()
        .with_max_frame_len(1000);
    let (mut client, mut server) = connected(&connector, &acceptor).await;
    client.send(Bytes::from(vec![1u8; 1000])).await.unwrap();
    client.send(Bytes::from(vec![2u8; 1001])).await.unwrap();
    assert_eq!(server.next().await.unwrap().unwrap().len(), 1000);
    assert!(matches!(
        server.next().await,
        Some(Err(LinkError::FrameTooLarge {
            len: 1001,
            max: 1000
        }))
    ));
    assert!(server.next().await.is_none());
}

#[tokio::test]
async fn client_refuses_to_send_over_its_limit() {
    let pki = pki();
    let connector = SecureConnector::new(&pki.ca_pem, KEY)
        .unwrap()
        .with_max_frame_len(10);
    let acceptor = SecureAcceptor::new(&pki.chain_pem, &pki.key_pem, KEY).unwrap();
    let (mut client, mut server) = connected(&connector, &acceptor).await;
    let err = client.send(Bytes::from(vec![0u8; 11])).await.unwrap_err();
    assert!(matches!(err, LinkError::FrameTooLarge { len: 11, max: 10 }));
    client.send("fits".into()).await.unwrap();
    assert_eq!(server.next().await.unwrap().unwrap(), "fits");
}

/// Runs a handshake that is expected to fail and returns the client's error.
async fn client_handshake_error(connector: SecureConnector, server_name: &str) -> LinkError {
    let (_, acceptor) = endpoints(KEY);
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let (client, _server) = tokio::join!(
        connector.connect(server_name, client_io),
        acceptor.accept(server_io)
    );
    client.unwrap_err()
}

#[tokio::test]
async fn unknown_ca_is_a_certificate_error() {
    let other_ca = pki().ca_pem;
    let connector = SecureConnector::new(&other_ca, KEY).unwrap();
    let err = client_handshake_error(connector, "localhost").await;
    assert!(
        matches!(
            err,
            LinkError::Tls(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn wrong_server_name_is_a_certificate_error() {
    let pki = pki();
    let connector = SecureConnector::new(&pki.ca_pem, KEY).unwrap();
    let acceptor = SecureAcceptor::new(&pki.chain_pem, &pki.key_pem, KEY).unwrap();
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let (client, _server) = tokio::join!(
        connector.connect("example.com", client_io),
        acceptor.accept(server_io)
    );
    let err = client.unwrap_err();
    assert!(
        matches!(
            err,
            LinkError::Tls(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            ))
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn invalid_server_name_is_a_config_error() {
    let (connector, _) = endpoints(KEY);
    let (client_io, _server_io) = tokio::io::duplex(1024);
    let err = connector
        .connect("not a name!", client_io)
        .await
        .unwrap_err();
    assert!(matches!(err, LinkError::Config(_)), "{err:?}");
}

#[test]
fn garbage_pem_and_empty_keys_are_config_errors_not_panics() {
    let pki = pki();
    let garbage = "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n";
    for bad in ["", "hello", garbage, &pki.key_pem] {
        let err = SecureConnector::new(bad, KEY).unwrap_err();
        assert!(matches!(err, LinkError::Config(_)), "{bad:?}: {err:?}");
        let err = SecureAcceptor::new(bad, &pki.key_pem, KEY).unwrap_err();
        assert!(matches!(err, LinkError::Config(_)), "{bad:?}: {err:?}");
    }
    let garbage_key = "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n";
    for bad in ["", "hello", garbage_key, &pki.ca_pem] {
        let err = SecureAcceptor::new(&pki.chain_pem, bad, KEY).unwrap_err();
        assert!(matches!(err, LinkError::Config(_)), "{bad:?}: {err:?}");
    }
    let empty: &[u8] = &[];
    assert!(matches!(
        SecureConnector::new(&pki.ca_pem, empty),
        Err(LinkError::Config(_))
    ));
    assert!(matches!(
        SecureAcceptor::new(&pki.chain_pem, &pki.key_pem, empty),
        Err(LinkError::Config(_))
    ));
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_refused() {
    let (a, b) = (pki(), pki());
    let err = SecureAcceptor::new(&a.chain_pem, &b.key_pem, KEY).unwrap_err();
    assert!(matches!(err, LinkError::Tls(_)), "{err:?}");
}

#[tokio::test]
async fn every_root_in_a_multi_certificate_pem_is_trusted() {
    let (a, b) = (pki(), pki());
    let connector = SecureConnector::new(&format!("{}{}", a.ca_pem, b.ca_pem), KEY).unwrap();
    // Servers with certificates from either CA are accepted, not just the
    // first root in the file.
    for server_pki in [&a, &b] {
        let acceptor =
            SecureAcceptor::new(&server_pki.chain_pem, &server_pki.key_pem, KEY).unwrap();
        let (mut client, mut server) = connected(&connector, &acceptor).await;
        client.send("trusted".into()).await.unwrap();
        assert_eq!(server.next().await.unwrap().unwrap(), "trusted");
    }
}

#[tokio::test(start_paused = true)]
async fn silent_client_hits_the_handshake_timeout() {
    let (_, acceptor) = endpoints(KEY);
    let acceptor = acceptor.with_handshake_timeout(Duration::from_secs(3));
    let (_client_io, server_io) = tokio::io::duplex(1024);
    let started = tokio::time::Instant::now();
    let err = acceptor.accept(server_io).await.unwrap_err();
    assert!(matches!(err, LinkError::HandshakeTimeout), "{err:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(3));
}

/// tokio-rustls#4: a server that accepts the connection but never answers
/// must not hold `connect` for ever. Default 10 s, like the server's.
#[tokio::test(start_paused = true)]
async fn connect_to_a_silent_server_hits_the_clients_handshake_timeout() {
    let (connector, _) = common::default_endpoints(KEY);
    for (connector, limit) in [
        (connector.clone(), Duration::from_secs(10)),
        (
            connector.with_handshake_timeout(Duration::from_secs(3)),
            Duration::from_secs(3),
        ),
    ] {
        let (client_io, _silent_server) = tokio::io::duplex(64 * 1024);
        let started = tokio::time::Instant::now();
        let err = connector.connect("localhost", client_io).await.unwrap_err();
        assert!(matches!(err, LinkError::HandshakeTimeout), "{err:?}");
        assert_eq!(started.elapsed(), limit);
    }
}

#[tokio::test]
async fn full_duplex_echo_replies_come_back_through_the_client_stream() {
    let (connector, acceptor) = endpoints(KEY);
    let (client_tcp, server_tcp) = tcp_pair().await;
    let server = tokio::spawn(async move {
        let mut server = acceptor.accept(server_tcp).await.unwrap();
        while let Some(message) = server.next().await {
            let mut reply = b"echo: ".to_vec();
            reply.extend_from_slice(&message.unwrap());
            server.send(reply.into()).await.unwrap();
        }
        server.close().await.unwrap();
    });
    let client = connector.connect("localhost", client_tcp).await.unwrap();
    let (mut tx, mut rx) = client.split();
    let requests = messages(&["one", "two", "three"]);
    for request in &requests {
        tx.send(request.clone()).await.unwrap();
        let reply = rx.next().await.unwrap().unwrap();
        assert_eq!(reply, [&b"echo: "[..], request].concat());
    }
    let mut client = tx.reunite(rx).unwrap();
    client.close().await.unwrap();
    assert!(client.next().await.is_none());
    server.await.unwrap();
}

#[tokio::test]
async fn replies_arriving_during_close_are_kept_for_the_stream() {
    let (connector, acceptor) = endpoints(KEY);
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(async move {
        let mut server = acceptor.accept(server_io).await.unwrap();
        let mut count = 0;
        while let Some(message) = server.next().await {
            server.feed(message.unwrap()).await.unwrap();
            count += 1;
        }
        server.close().await.unwrap();
        count
    });
    let mut client = connector.connect("localhost", client_io).await.unwrap();
    let sent = messages(&["a", "b", "c"]);
    for message in &sent {
        client.feed(message.clone()).await.unwrap();
    }
    client.close().await.unwrap(); // replies not read yet
    let replies: Vec<Bytes> = client.map(Result::unwrap).collect().await;
    assert_eq!(replies, sent);
    assert_eq!(server.await.unwrap(), 3);
}

/// openssl#7948: a write-only client that closes with unread data (TLS 1.3
/// session tickets) makes its kernel send a TCP RST at once, dropping what
/// is still queued for sending. Here the server sends tickets (or not) and
/// only starts reading once the client is gone; 500 kB is more than its
/// receive window, so part of it is still queued at the client when the
/// client closes. Measured without the close wait
/// (`with_close_timeout(Duration::ZERO)`) and with tickets: the server got
/// 122 of 1,000 frames, then "connection reset by peer".
const FRAMES: usize = 1000;

async fn write_only_client_then_late_reader(tickets: usize) -> (Vec<Bytes>, Option<LinkError>) {
    let pki = pki();
    let mut config = (*tls::server_config(&pki.chain_pem, &pki.key_pem).unwrap()).clone();
    assert_eq!(config.send_tls13_tickets, 0, "our servers send no tickets");
    config.send_tls13_tickets = tickets;
    let acceptor = SecureAcceptor::from_config(Arc::new(config), KEY);
    let connector = SecureConnector::new(&pki.ca_pem, KEY)
        .unwrap()
        // Times out by design (the server reads late); long enough that the
        // flush before close_notify always finishes first on a loaded
        // machine.
        .with_close_timeout(Duration::from_secs(3));
    let (client_tcp, server_tcp) = tcp_pair().await;
    let (accepted_tx, accepted_rx) = tokio::sync::oneshot::channel();
    let (gone_tx, gone_rx) = tokio::sync::oneshot::channel::<()>();

    let server = tokio::spawn(async move {
        let mut server = acceptor.accept(server_tcp).await.unwrap();
        accepted_tx.send(()).unwrap(); // handshake done: tickets are out
        gone_rx.await.unwrap();
        drain(&mut server).await
    });
    let mut client = connector.connect("localhost", client_tcp).await.unwrap();
    accepted_rx.await.unwrap();
    for i in 0..FRAMES {
        client.feed(Bytes::from(vec![i as u8; 500])).await.unwrap();
    }
    // The server reads only once the client is gone, so it cannot confirm
    // the end in time; what matters here is that nothing is lost.
    let closed = client.close().await;
    assert!(
        matches!(closed, Err(LinkError::CloseTimeout(_))),
        "{closed:?}"
    );
    drop(client);
    gone_tx.send(()).unwrap();
    server.await.unwrap()
}

#[tokio::test]
async fn write_only_client_loses_nothing_when_the_server_reads_late() {
    let (received, err) = write_only_client_then_late_reader(0).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(received.len(), FRAMES);
}

#[tokio::test]
async fn write_only_client_loses_nothing_even_if_the_server_sends_tickets() {
    let (received, err) = write_only_client_then_late_reader(2).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(received.len(), FRAMES);
    assert!(
        received
            .iter()
            .enumerate()
            .all(|(i, m)| m[..] == [i as u8; 500][..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_clients_each_deliver_every_frame_in_order() {
    const CLIENTS: usize = 50;
    const FRAMES: usize = 300;
    let (connector, acceptor) = endpoints(KEY);
    // Limits far above what 50 links at once need on a loaded machine.
    let patience = Duration::from_secs(120);
    let connector = connector
        .with_handshake_timeout(patience)
        .with_close_timeout(patience);
    let acceptor = acceptor.with_handshake_timeout(patience);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();

    let server = tokio::spawn(async move {
        let mut connections = Vec::new();
        for _ in 0..CLIENTS {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            connections.push(tokio::spawn(async move {
                let mut server = acceptor.accept(tcp).await.unwrap();
                let (received, err) = drain(&mut server).await;
                assert!(err.is_none(), "{err:?}");
                server.close().await.unwrap();
                received
            }));
        }
        let mut all = Vec::new();
        for connection in connections {
            all.push(connection.await.unwrap());
        }
        all
    });

    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let connector = connector.clone();
        clients.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut client = connector.connect("localhost", tcp).await.unwrap();
            for i in 0..FRAMES {
                client
                    .feed(Bytes::from(format!("client {c} frame {i}")))
                    .await
                    .unwrap();
            }
            client.close().await.unwrap();
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    let all = server.await.unwrap();
    assert_eq!(all.len(), CLIENTS);
    let mut seen_clients = std::collections::HashSet::new();
    for received in all {
        assert_eq!(received.len(), FRAMES);
        let first = String::from_utf8(received[0].to_vec()).unwrap();
        let client_id: usize = first.split(' ').nth(1).unwrap().parse().unwrap();
        assert!(seen_clients.insert(client_id));
        for (i, frame) in received.iter().enumerate() {
            assert_eq!(frame, format!("client {client_id} frame {i}").as_bytes());
        }
    }
}

#[tokio::test]
async fn a_split_reader_waiting_on_the_stream_sees_the_end_that_close_read() {
    let (connector, acceptor) = endpoints(KEY);
    let (client_tcp, server_tcp) = tcp_pair().await;
    let server = tokio::spawn(async move {
        let mut server = acceptor.accept(server_tcp).await.unwrap();
        let (received, err) = drain(&mut server).await;
        assert!(err.is_none(), "{err:?}");
        server.close().await.unwrap();
        received
    });
    let client = connector.connect("localhost", client_tcp).await.unwrap();
    let (mut tx, mut rx) = client.split();
    // The reader task is parked on the transport before close() starts
    // reading from it.
    let (parked_tx, parked_rx) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(async move {
        let mut next = rx.next();
        futures::future::poll_fn(|cx| {
            assert!(std::pin::Pin::new(&mut next).poll(cx).is_pending());
            std::task::Poll::Ready(())
        })
        .await;
        parked_tx.send(()).unwrap();
        next.await.map(|item| item.map_err(|e| e.to_string()))
    });
    parked_rx.await.unwrap();
    tx.send("bye".into()).await.unwrap();
    tx.close().await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the reader was never woken")
        .unwrap();
    assert!(end.is_none(), "{end:?}");
    assert_eq!(server.await.unwrap(), messages(&["bye"]));
}

/// Payloads around the pairing threshold (512 B) and well above it, with
/// distinct contents.
fn mixed_sizes() -> Vec<Bytes> {
    [
        600, 2000, 10, 70_000, 512, 511, 4096, 0, 1024, 1024, 100_000, 3, 513,
    ]
    .iter()
    .enumerate()
    .map(|(i, &len)| Bytes::from((0..len).map(|b| (b * 7 + i) as u8).collect::<Vec<u8>>()))
    .collect()
}

/// What a client writes inside TLS for `messages`, fed in batches and sent
/// one by one, read by a plain tokio-rustls server; and the codec that
/// encodes the same frames one at a time.
async fn plaintext_sent_by_client(mode: AuthMode, messages: &[Bytes]) -> (Vec<u8>, HmacFrameCodec) {
    use secure_link::codec::{Role, SESSION_EXPORTER_LABEL, SESSION_EXPORTER_LEN};
    use tokio::io::AsyncReadExt;

    let pki = pki();
    let connector = SecureConnector::new(&pki.ca_pem, KEY)
        .unwrap()
        .with_auth_mode(mode);
    let tls =
        tokio_rustls::TlsAcceptor::from(tls::server_config(&pki.chain_pem, &pki.key_pem).unwrap());
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(async move {
        let mut server = tls.accept(server_io).await.unwrap();
        let mut plaintext = Vec::new();
        server.read_to_end(&mut plaintext).await.unwrap();
        server.shutdown().await.unwrap();
        let exporter = server
            .get_ref()
            .1
            .export_keying_material([0u8; SESSION_EXPORTER_LEN], SESSION_EXPORTER_LABEL, None)
            .unwrap();
        (plaintext, exporter)
    });
    let mut client = connector.connect("localhost", client_io).await.unwrap();
    let (batched, one_by_one) = messages.split_at(messages.len() / 2);
    for message in batched {
        client.feed(message.clone()).await.unwrap();
    }
    client.flush().await.unwrap();
    for message in one_by_one {
        client.send(message.clone()).await.unwrap();
    }
    client.close().await.unwrap();
    let (plaintext, exporter) = server.await.unwrap();
    let codec = match mode {
        AuthMode::SessionBound => {
            HmacFrameCodec::new(KEY).bound_to_session(&exporter, Role::Client)
        }
        _ => HmacFrameCodec::new(KEY),
    };
    (plaintext, codec)
}

#[tokio::test]
async fn messages_hashed_in_pairs_put_the_same_bytes_on_the_wire_as_one_by_one() {
    use tokio_util::codec::Encoder;
    let messages = mixed_sizes();
    for mode in [AuthMode::Lab, AuthMode::SessionBound] {
        let (plaintext, mut codec) = plaintext_sent_by_client(mode, &messages).await;
        let mut expected = bytes::BytesMut::new();
        for message in &messages {
            codec.encode(message.clone(), &mut expected).unwrap();
        }
        assert_eq!(plaintext.len(), expected.len(), "{mode:?}");
        assert!(plaintext == expected[..], "{mode:?}: the frames differ");
    }
}

#[tokio::test]
async fn batched_large_messages_arrive_in_order_in_both_directions_and_modes() {
    for mode in [AuthMode::Lab, AuthMode::SessionBound] {
        let (connector, acceptor) = endpoints(KEY);
        let (connector, acceptor) = (
            connector.with_auth_mode(mode),
            acceptor.with_auth_mode(mode),
        );
        let (mut client, mut server) = connected(&connector, &acceptor).await;
        let messages = mixed_sizes();
        let expected = messages.clone();
        let echo = tokio::spawn(async move {
            // Echo everything back, batched, then end.
            let mut received = Vec::new();
            while received.len() < expected.len() {
                received.push(server.next().await.unwrap().unwrap());
            }
            server
                .send_all(&mut stream::iter(received.clone()).map(Ok))
                .await
                .unwrap();
            server.close().await.unwrap();
            received
        });
        // The server reads everything before echoing, so sending first
        // and reading after cannot deadlock.
        client
            .send_all(&mut stream::iter(messages.clone()).map(Ok))
            .await
            .unwrap();
        let mut replies = Vec::new();
        for _ in 0..messages.len() {
            replies.push(client.next().await.unwrap().unwrap());
        }
        assert_eq!(echo.await.unwrap(), messages, "{mode:?}: server received");
        assert_eq!(replies, messages, "{mode:?}: client received");
    }
}

/// A `send` cancelled while its flush waits (say in `select!`), then the
/// link used on: the message went out exactly once, and in the
/// session-bound format the counters on both ends still agree.
#[tokio::test]
async fn a_send_cancelled_mid_write_and_resumed_keeps_the_link_aligned() {
    for mode in [AuthMode::Lab, AuthMode::SessionBound] {
        let (connector, acceptor) = endpoints(KEY);
        let (connector, acceptor) = (
            connector.with_auth_mode(mode),
            acceptor.with_auth_mode(mode),
        );
        // A 4 KiB pipe: a 200 KiB message cannot be flushed until the
        // server reads.
        let (mut client, mut server) =
            connected_over(&connector, &acceptor, tokio::io::duplex(4096)).await;
        let big = Bytes::from(vec![9u8; 200 * 1024]);
        {
            let mut sending = client.send(big.clone());
            futures::future::poll_fn(|cx| {
                let polled = std::pin::Pin::new(&mut sending).poll(cx);
                assert!(polled.is_pending(), "{mode:?}: the send did not block");
                std::task::Poll::Ready(())
            })
            .await;
        } // cancelled
        let reader = tokio::spawn(async move {
            let (received, end) = drain(&mut server).await;
            assert!(end.is_none(), "{end:?}");
            server.close().await.unwrap();
            received
        });
        client.send("after".into()).await.unwrap();
        client.close().await.unwrap();
        let received = reader.await.unwrap();
        assert_eq!(received, vec![big, Bytes::from("after")], "{mode:?}");
    }
}

/// Split halves at both ends moving bulk in both directions at once: 16 MiB
/// each way in 64 KiB messages, over TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_move_bulk_both_ways_at_once() {
    const MESSAGES: usize = 256;
    let (connector, acceptor) = endpoints(KEY);
    let (client, server) = connected_over(&connector, &acceptor, tcp_pair().await).await;
    let (mut client_tx, mut client_rx) = client.split();
    let (mut server_tx, mut server_rx) = server.split();
    let payload = |side: u8, i: usize| Bytes::from(vec![side ^ i as u8; 64 * 1024]);
    let client_writer = tokio::spawn(async move {
        for i in 0..MESSAGES {
            client_tx.feed(payload(1, i)).await.unwrap();
        }
        client_tx.flush().await.unwrap();
        client_tx
    });
    let server_writer = tokio::spawn(async move {
        for i in 0..MESSAGES {
            server_tx.feed(payload(2, i)).await.unwrap();
        }
        server_tx.flush().await.unwrap();
        server_tx
    });
    let server_reader = tokio::spawn(async move {
        for i in 0..MESSAGES {
            assert_eq!(server_rx.next().await.unwrap().unwrap(), payload(1, i));
        }
        server_rx
    });
    for i in 0..MESSAGES {
        assert_eq!(client_rx.next().await.unwrap().unwrap(), payload(2, i));
    }
    let mut client_tx = tokio::time::timeout(Duration::from_secs(60), client_writer)
        .await
        .expect("client writer stuck")
        .unwrap();
    let mut server_tx = server_writer.await.unwrap();
    let mut server_rx = server_reader.await.unwrap();
    // A clean end both ways.
    let (closed, end) = tokio::join!(client_tx.close(), async {
        let end = server_rx.next().await;
        server_tx.close().await.unwrap();
        end
    });
    closed.unwrap();
    assert!(end.is_none(), "{end:?}");
    assert!(client_rx.next().await.is_none());
}

/// The client's host resets the connection (SO_LINGER 0): the server's
/// stream ends with an error, and its `close()` returns promptly with one.
#[tokio::test]
async fn server_close_after_the_client_reset_the_connection_returns_an_error() {
    let (connector, acceptor) = endpoints(KEY);
    let (mut client, mut server) = connected_over(&connector, &acceptor, tcp_pair().await).await;
    client.send("before the reset".into()).await.unwrap();
    assert_eq!(server.next().await.unwrap().unwrap(), "before the reset");
    let tcp = client.into_inner().into_inner().0;
    tcp.set_zero_linger().unwrap();
    drop(tcp); // RST
    let (received, end) = drain(&mut server).await;
    assert!(received.is_empty());
    assert!(
        matches!(end, Some(LinkError::Truncated | LinkError::Io(_))),
        "{end:?}"
    );
    // Writing close_notify to a reset connection fails at once.
    let closed = tokio::time::timeout(Duration::from_secs(60), server.close())
        .await
        .expect("server close() hung");
    assert!(matches!(closed, Err(LinkError::Io(_))), "{closed:?}");
}

/// `feed` waits (its `poll_ready` flushes) once 128 KiB of frames are
/// buffered, instead of buffering without limit: against a server that
/// does not read, the client takes at most the buffer, the pipe and the
/// TLS layer's share before it waits.
#[tokio::test]
async fn feed_applies_backpressure_against_a_server_that_does_not_read() {
    use futures::FutureExt;
    let (connector, acceptor) = endpoints(KEY);
    let (mut client, _server) = connected(&connector, &acceptor).await;
    let message = Bytes::from(vec![3u8; 1024]);
    let mut fed = 0usize;
    loop {
        match client.feed(message.clone()).now_or_never() {
            Some(done) => done.unwrap(),
            None => break, // waiting: backpressure
        }
        fed += message.len();
        assert!(fed <= 16 << 20, "fed {fed} bytes without ever waiting");
    }
    // 128 KiB buffer + 64 KiB pipe + rustls' own buffers, well under 1 MiB.
    println!("fed {fed} bytes before waiting");
    assert!(fed < 1 << 20, "fed {fed} bytes before waiting");
}

/// The server's sink waits too (its `poll_ready` flushes at 128 KiB)
/// against a client that does not read its replies.
#[tokio::test]
async fn the_servers_feed_applies_backpressure_against_a_client_that_does_not_read() {
    use futures::FutureExt;
    use futures::stream::FusedStream;
    let (connector, acceptor) = endpoints(KEY);
    let (_client, mut server) = connected(&connector, &acceptor).await;
    assert!(!server.is_terminated());
    let message = Bytes::from(vec![4u8; 1024]);
    let mut fed = 0usize;
    while let Some(done) = server.feed(message.clone()).now_or_never() {
        done.unwrap();
        fed += message.len();
        assert!(fed <= 16 << 20, "fed {fed} bytes without ever waiting");
    }
    assert!(fed < 1 << 20, "fed {fed} bytes before waiting");
}

/// A reply larger than the pipe is flushed through to the end by `send`
/// alone: nothing stays behind in the TLS layer waiting for a later write.
#[tokio::test]
async fn a_reply_larger_than_the_pipe_arrives_whole_without_a_later_write() {
    let (connector, acceptor) = endpoints(KEY);
    let (mut client, mut server) =
        connected_over(&connector, &acceptor, tokio::io::duplex(4096)).await;
    let reply = Bytes::from(vec![5u8; 300 * 1024]);
    let (sent, received) = tokio::join!(
        server.send(reply.clone()),
        tokio::time::timeout(Duration::from_secs(60), client.next())
    );
    sent.unwrap();
    let received = received.expect("the reply never arrived whole");
    assert_eq!(received.unwrap().unwrap(), reply);
}

/// Two large messages fed back to back are encoded as a pair whatever
/// their sizes: a small one before a much larger one, and the reverse.
#[tokio::test]
async fn paired_messages_of_very_different_sizes_arrive_intact() {
    let (connector, acceptor) = endpoints(KEY);
    let (mut client, mut server) = connected(&connector, &acceptor).await;
    let sent = vec![
        Bytes::from(vec![1u8; 600]),
        Bytes::from(vec![2u8; 50_000]),
        Bytes::from(vec![3u8; 40_000]),
        Bytes::from(vec![4u8; 512]),
    ];
    let reader = tokio::spawn(async move {
        let (received, end) = drain(&mut server).await;
        assert!(end.is_none(), "{end:?}");
        server.close().await.unwrap();
        received
    });
    for message in &sent {
        client.feed(message.clone()).await.unwrap();
    }
    client.close().await.unwrap();
    assert_eq!(reader.await.unwrap(), sent);
}

/// Messages of 512 bytes to 256 KiB are held back to be hashed together
/// with the next; a larger one is not (holding it delayed its first byte by
/// the hash of two large messages). Seen on the wire before any flush:
/// after `feed(message)` and `feed("x")`, a held message was encoded with
/// "x" into the write buffer and nothing was written; one not held was
/// encoded at once, and the second `feed`'s `poll_ready`, finding the write
/// buffer past its 128 KiB boundary, wrote most of it.
#[tokio::test]
async fn messages_up_to_256_kib_are_held_for_a_partner_and_larger_ones_are_not() {
    for (len, held) in [(256 * 1024, true), (256 * 1024 + 1, false)] {
        let (connector, acceptor) = endpoints(KEY);
        let (client_io, server_io) = tokio::io::duplex(1024 * 1024);
        let (tap, log) = Tap::new(client_io);
        let (mut client, _server) = connected_over(&connector, &acceptor, (tap, server_io)).await;
        let handshake = log.tls_records().len();
        client.feed(Bytes::from(vec![7u8; len])).await.unwrap();
        client.feed(Bytes::from_static(b"x")).await.unwrap();
        let sent: usize = log.tls_records()[handshake..]
            .iter()
            .map(|&(_, len)| len)
            .sum();
        if held {
            assert_eq!(sent, 0, "{len} bytes: not held");
        } else {
            assert!(
                sent >= len - 128 * 1024,
                "{len} bytes: held ({sent} on the wire)"
            );
        }
    }
}

/// A client's messages in reply to the server's: a large one (16 KiB or
/// more) sent after a message came in leaves ahead of its tag (its tag is
/// a TLS record of its own); one sent straight after it, or one under
/// 16 KiB, does not; and the plaintext is the same frames either way, in
/// both formats (the session-bound counters move with the deferred frame).
#[tokio::test]
async fn a_reply_leaves_ahead_of_its_tag_with_the_same_bytes_on_the_wire() {
    use secure_link::codec::{Role, SESSION_EXPORTER_LABEL, SESSION_EXPORTER_LEN};
    use tokio::io::AsyncReadExt;
    use tokio_util::codec::Encoder;

    let reply = Bytes::from((0..70_000).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let straight_after = Bytes::from(vec![7u8; 20_000]);
    let just_under = Bytes::from(vec![8u8; 16 * 1024 - 1]);
    let at_threshold = Bytes::from(vec![9u8; 16 * 1024]);
    let sent = [&reply, &straight_after, &just_under, &at_threshold];
    for mode in [AuthMode::Lab, AuthMode::SessionBound] {
        let pki = pki();
        let connector = SecureConnector::new(&pki.ca_pem, KEY)
            .unwrap()
            .with_auth_mode(mode);
        let tls = tokio_rustls::TlsAcceptor::from(
            tls::server_config(&pki.chain_pem, &pki.key_pem).unwrap(),
        );
        let (client_io, server_io) = tokio::io::duplex(256 * 1024);
        let (tap, log) = Tap::new(client_io);
        let codec_for = move |exporter: &[u8], role: Role| match mode {
            AuthMode::SessionBound => HmacFrameCodec::new(KEY).bound_to_session(exporter, role),
            _ => HmacFrameCodec::new(KEY),
        };
        // A plain tokio-rustls server: three frames to the client, then it
        // reads everything the client writes.
        let server = tokio::spawn(async move {
            let mut server = tls.accept(server_io).await.unwrap();
            let exporter = server
                .get_ref()
                .1
                .export_keying_material([0u8; SESSION_EXPORTER_LEN], SESSION_EXPORTER_LABEL, None)
                .unwrap();
            let mut ping = bytes::BytesMut::new();
            let mut codec = codec_for(&exporter, Role::Server);
            for _ in 0..3 {
                codec.encode(Bytes::from("ping"), &mut ping).unwrap();
            }
            server.write_all(&ping).await.unwrap();
            server.flush().await.unwrap();
            let mut plaintext = Vec::new();
            server.read_to_end(&mut plaintext).await.unwrap();
            server.shutdown().await.unwrap();
            (plaintext, exporter)
        });
        let mut client = connector.connect("localhost", tap).await.unwrap();
        let handshake_records = log.tls_records().len();
        assert_eq!(client.next().await.unwrap().unwrap(), "ping", "{mode:?}");
        client.send(reply.clone()).await.unwrap();
        client.send(straight_after.clone()).await.unwrap();
        assert_eq!(client.next().await.unwrap().unwrap(), "ping", "{mode:?}");
        client.send(just_under.clone()).await.unwrap();
        assert_eq!(client.next().await.unwrap().unwrap(), "ping", "{mode:?}");
        client.send(at_threshold.clone()).await.unwrap();
        client.close().await.unwrap();
        let (plaintext, exporter) = server.await.unwrap();

        let mut expected = bytes::BytesMut::new();
        let mut codec = codec_for(&exporter, Role::Client);
        for message in sent {
            codec.encode(message.clone(), &mut expected).unwrap();
        }
        assert!(plaintext == expected[..], "{mode:?}: the frames differ");

        // Plaintext lengths of the data records (ciphertext: + content
        // type byte + 16-byte AEAD tag); the last record is close_notify.
        let records: Vec<usize> = log.tls_records()[handshake_records..]
            .iter()
            .map(|&(_, len)| len - 17)
            .collect();
        let full = 16 * 1024;
        assert_eq!(
            records[..records.len() - 1],
            [
                // The reply: length and payload, then its tag alone.
                full,
                full,
                full,
                full,
                4 + 70_000 - 4 * full,
                32,
                // Straight after: the whole frame together.
                full,
                4 + 20_000 + 32 - full,
                // A reply under 16 KiB: together.
                full,
                4 + 32 - 1,
                // A reply of 16 KiB: its tag alone.
                full,
                4,
                32,
            ],
            "{mode:?}"
        );
    }
}

/// A link busy with large frames keeps its grown buffers and arms a timer
/// to give them back once quiet; when the timer fires while a frame is only
/// part-way in, the part already read stays (the frame arrives whole).
#[tokio::test(start_paused = true)]
async fn a_frame_in_progress_survives_the_release_timer_of_a_busy_link() {
    use futures::FutureExt;

    let (connector, acceptor) = endpoints(KEY);
    // Room for one whole TLS record and a bit: a send stalls part-way.
    let (mut client, mut server) =
        connected_over(&connector, &acceptor, tokio::io::duplex(20 * 1024)).await;
    let big = |b: u8| Bytes::from(vec![b; 64 * 1024]);
    // Two large messages in turn: the read buffer grows again within a
    // second of going, so the link keeps it and arms the timer.
    for b in [1, 2] {
        let (sent, got) = tokio::join!(client.send(big(b)), server.next());
        sent.unwrap();
        assert_eq!(got.unwrap().unwrap(), big(b));
        assert!(server.next().now_or_never().is_none(), "read dry");
    }
    // A third, stalled after what the pipe takes: one whole record in.
    let mut sending = client.send(big(3));
    assert!((&mut sending).now_or_never().is_none(), "the send stalls");
    assert!(server.next().now_or_never().is_none(), "part of a frame");
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(server.next().now_or_never().is_none(), "the timer fired");
    // Bounded: a link that lost the part it had read would wait for ever.
    let (sent, got) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(sending, server.next())
    })
    .await
    .expect("the frame arrives whole");
    sent.unwrap();
    assert_eq!(got.unwrap().unwrap(), big(3));
}

/// A link that has read everything there is of a large frame hashes that
/// part while it waits for the rest (the codec's `Debug` shows how much),
/// and the frame still arrives whole and verified; a frame under 16 KiB is
/// not hashed ahead. The peer is plain tokio-rustls writing the frame in
/// two parts, so what the link has read when it waits is exact.
#[tokio::test]
async fn a_link_hashes_the_part_of_a_large_frame_it_has_while_it_waits() {
    use futures::FutureExt;
    use tokio_util::codec::Encoder;

    for (len, first_part, ahead) in [
        (64 * 1024, 40_004, "hashed_ahead: Some(40000)"),
        (16 * 1024, 10_004, "hashed_ahead: Some(10000)"),
        (16 * 1024 - 1, 10_004, "hashed_ahead: None"),
    ] {
        let payload = Bytes::from((0..len).map(|i| (i % 253) as u8).collect::<Vec<u8>>());
        let mut frame = bytes::BytesMut::new();
        HmacFrameCodec::new(KEY)
            .encode(payload.clone(), &mut frame)
            .unwrap();
        let pki = pki();
        let connector = SecureConnector::new(&pki.ca_pem, KEY).unwrap();
        let tls = tokio_rustls::TlsAcceptor::from(
            tls::server_config(&pki.chain_pem, &pki.key_pem).unwrap(),
        );
        let (client_io, server_io) = tokio::io::duplex(256 * 1024);
        let (written, first_written) = tokio::sync::oneshot::channel();
        let (go_on, rest_wanted) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let mut server = tls.accept(server_io).await.unwrap();
            server.write_all(&frame[..first_part]).await.unwrap();
            server.flush().await.unwrap();
            written.send(()).unwrap();
            rest_wanted.await.unwrap();
            server.write_all(&frame[first_part..]).await.unwrap();
            server.flush().await.unwrap();
            server
        });
        let mut client = connector.connect("localhost", client_io).await.unwrap();
        first_written.await.unwrap();
        // Everything written is in the pipe: one poll reads it all and
        // waits for the rest.
        assert!(client.next().now_or_never().is_none());
        let debug = format!("{client:?}");
        assert!(debug.contains(ahead), "{len}: {debug}");
        go_on.send(()).unwrap();
        assert_eq!(client.next().await.unwrap().unwrap(), payload, "{len}");
        assert!(format!("{client:?}").contains("hashed_ahead: None"));
        drop(server.await.unwrap());
    }
}
