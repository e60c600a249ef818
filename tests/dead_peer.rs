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
    // The server process dies: TCP FIN, no close_notify.
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
