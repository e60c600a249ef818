//! A peer that went away is found out and reported, never written to as if
//! it were there: once a stream has met the end of its connection without
//! the peer's `close_notify`, the sink on the same link refuses messages
//! with that error. Over 127.0.0.1 TCP, where a write into a connection the
//! peer has left "succeeds" and the peer answers it with a reset.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::{KEY, connected_over, endpoints, tcp_pair};
use futures::{SinkExt, StreamExt};
use secure_link::LinkError;

#[tokio::test]
async fn a_client_whose_stream_saw_the_server_vanish_refuses_to_send() {
    let (connector, acceptor) = endpoints(KEY);
    let (mut client, server) = connected_over(&connector, &acceptor, tcp_pair().await).await;
    client.send(Bytes::from("before")).await.unwrap();
    let mut server = server;
    assert_eq!(server.next().await.unwrap().unwrap(), "before");
    // The server process dies: TCP FIN (nothing unread, so no reset), no
    // close_notify.
    drop(server.into_inner());
    let end = client.next().await;
    assert!(matches!(end, Some(Err(LinkError::Truncated))), "{end:?}");
    // The socket would take this write; the server would never read it.
    let sent = client.send(Bytes::from("into the void")).await;
    assert!(matches!(sent, Err(LinkError::Truncated)), "{sent:?}");
    let fed = client.feed(Bytes::from("again")).await;
    assert!(matches!(fed, Err(LinkError::Truncated)), "{fed:?}");
}

#[tokio::test]
async fn a_server_whose_stream_saw_the_client_vanish_refuses_to_reply() {
    let (connector, acceptor) = endpoints(KEY);
    let (mut client, mut server) = connected_over(&connector, &acceptor, tcp_pair().await).await;
    client.send(Bytes::from("question")).await.unwrap();
    assert_eq!(server.next().await.unwrap().unwrap(), "question");
    drop(client.into_inner());
    let end = server.next().await;
    assert!(matches!(end, Some(Err(LinkError::Truncated))), "{end:?}");
    let replied = server.send(Bytes::from("answer")).await;
    assert!(matches!(replied, Err(LinkError::Truncated)), "{replied:?}");
}

/// A clean end is not a lost connection: after the client's close_notify
/// the server can still reply (half-close), and the client reads it.
#[tokio::test]
async fn after_a_clean_end_the_other_direction_still_works() {
    let (connector, acceptor) = endpoints(KEY);
    let (client, mut server) = connected_over(&connector, &acceptor, tcp_pair().await).await;
    let (mut tx, mut rx) = client.split();
    tx.send(Bytes::from("last question")).await.unwrap();
    let closing = tokio::spawn(async move { tx.close().await });
    assert_eq!(server.next().await.unwrap().unwrap(), "last question");
    assert!(server.next().await.is_none());
    server.send(Bytes::from("late answer")).await.unwrap();
    server.close().await.unwrap();
    assert_eq!(rx.next().await.unwrap().unwrap(), "late answer");
    closing.await.unwrap().unwrap();
    assert!(rx.next().await.is_none());
}

/// Awaits `future` on paused time, failing instead of hanging after a day
/// of virtual time.
async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(86_400), future)
        .await
        .expect("still waiting after a day: a deadline never fired")
}

/// A server that stops reading: the client's send makes no progress once
/// the pipe is full, and fails after exactly the write timeout, naming it.
#[tokio::test(start_paused = true)]
async fn a_send_to_a_server_that_stopped_reading_fails_at_the_write_timeout() {
    let limit = std::time::Duration::from_secs(5);
    let (connector, acceptor) = endpoints(KEY);
    let connector = connector.with_write_timeout(limit);
    let (mut client, _server) = common::connected(&connector, &acceptor).await;
    let started = tokio::time::Instant::now();
    let sent = within(client.send(Bytes::from(vec![1u8; 1024 * 1024]))).await;
    assert!(
        matches!(sent, Err(LinkError::WriteTimeout(l)) if l == limit),
        "{sent:?}"
    );
    assert_eq!(started.elapsed(), limit);
}

/// The same on the server's side: a client that does not read its replies.
#[tokio::test(start_paused = true)]
async fn a_reply_to_a_client_that_stopped_reading_fails_at_the_write_timeout() {
    let limit = std::time::Duration::from_secs(7);
    let (connector, acceptor) = endpoints(KEY);
    let acceptor = acceptor.with_write_timeout(limit);
    let (_client, mut server) = common::connected(&connector, &acceptor).await;
    let started = tokio::time::Instant::now();
    let replied = within(server.send(Bytes::from(vec![2u8; 1024 * 1024]))).await;
    assert!(
        matches!(replied, Err(LinkError::WriteTimeout(l)) if l == limit),
        "{replied:?}"
    );
    assert_eq!(started.elapsed(), limit);
}

/// Progress, not total time: a server reading 16 KiB every 2 s takes a
/// 1 MiB message in about two minutes, against a 5 s write timeout, and the
/// send succeeds (each write that leaves restarts the wait), flush and
/// close included.
#[tokio::test(start_paused = true)]
async fn a_slow_but_live_reader_never_trips_the_write_timeout() {
    const MIB: usize = 1024 * 1024;
    let limit = std::time::Duration::from_secs(5);
    let (connector, acceptor) = endpoints(KEY);
    let connector = connector
        .with_write_timeout(limit)
        .with_max_frame_len(2 * MIB)
        .with_close_timeout(std::time::Duration::from_secs(3600));
    let acceptor = acceptor.with_max_frame_len(2 * MIB);
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let slow = common::Paced::reads(server_io, 16 * 1024, std::time::Duration::from_secs(2));
    let (mut client, mut server) =
        common::connected_over(&connector, &acceptor, (client_io, slow)).await;
    let reading = tokio::spawn(async move {
        let got = server.next().await.unwrap().unwrap();
        assert!(server.next().await.is_none());
        server.close().await.unwrap();
        got.len()
    });
    let started = tokio::time::Instant::now();
    within(client.send(Bytes::from(vec![3u8; MIB])))
        .await
        .unwrap();
    within(client.close()).await.unwrap();
    let took = started.elapsed();
    assert!(
        took > std::time::Duration::from_secs(60),
        "{took:?}: not slow"
    );
    assert_eq!(within(reading).await.unwrap(), MIB);
}

/// A request/response client's idle limit: a server that never answers
/// ends the client's stream with `IdleTimeout` after exactly the limit, and
/// a reply in time restarts it.
#[tokio::test(start_paused = true)]
async fn a_client_idle_limit_ends_its_stream_when_the_server_is_silent() {
    let idle = std::time::Duration::from_secs(3);
    let (connector, acceptor) = endpoints(KEY);
    let connector = connector.with_idle_timeout(idle);
    let (mut client, mut server) = common::connected(&connector, &acceptor).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    server.send(Bytes::from("in time")).await.unwrap();
    assert_eq!(within(client.next()).await.unwrap().unwrap(), "in time");
    let heard = tokio::time::Instant::now();
    let verdict = within(client.next()).await;
    assert!(
        matches!(verdict, Some(Err(LinkError::IdleTimeout(l))) if l == idle),
        "{verdict:?}"
    );
    assert_eq!(heard.elapsed(), idle);
    assert!(client.next().await.is_none());
}

/// After a write timeout the link's sending side is over: a frame may be
/// half written, so a later send, flush or `close()` fails the same way at
/// once instead of waiting another limit (and, if the peer came back,
/// delivering a message the application may have sent again). `close()`
/// to a server that stopped reading fails at the limit too.
#[tokio::test(start_paused = true)]
async fn a_write_timeout_is_final_and_bounds_close_too() {
    let limit = std::time::Duration::from_secs(5);
    let (connector, acceptor) = endpoints(KEY);
    let connector = connector
        .with_write_timeout(limit)
        .with_close_timeout(std::time::Duration::from_secs(3600));
    let (mut client, _server) = common::connected(&connector, &acceptor).await;
    let sent = within(client.send(Bytes::from(vec![1u8; 1024 * 1024]))).await;
    assert!(matches!(sent, Err(LinkError::WriteTimeout(_))), "{sent:?}");
    let again = tokio::time::Instant::now();
    let sent = within(client.send(Bytes::from("again"))).await;
    assert!(
        matches!(sent, Err(LinkError::WriteTimeout(l)) if l == limit),
        "{sent:?}"
    );
    let closed = within(client.close()).await;
    assert!(
        matches!(closed, Err(LinkError::WriteTimeout(l)) if l == limit),
        "{closed:?}"
    );
    assert_eq!(again.elapsed(), std::time::Duration::ZERO);

    // A close() whose flush stalls: the same limit, not the close timeout.
    // 120 KiB fed (below the sink's 128 KiB flush boundary) into a 4 KiB
    // pipe nobody reads and rustls' 64 KiB buffer.
    let (mut client, _server) =
        common::connected_over(&connector, &acceptor, tokio::io::duplex(4096)).await;
    for _ in 0..15 {
        client.feed(Bytes::from(vec![2u8; 8 * 1024])).await.unwrap();
    }
    let started = tokio::time::Instant::now();
    let closed = within(client.close()).await;
    assert!(
        matches!(closed, Err(LinkError::WriteTimeout(l)) if l == limit),
        "{closed:?}"
    );
    assert_eq!(started.elapsed(), limit);
}
