//! How a link ends: the client's `close()` says whether the server confirmed
//! the end, is bounded by its timeout in every phase, shares the read
//! wakeup with a split reader, and bounds what it keeps; sinks refuse use
//! after close. Time is paused where a deadline is involved (over
//! `tokio::io::duplex`, so an idle runtime means a stuck link).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use common::{KEY, connected, drain, endpoints};
use futures::{SinkExt, StreamExt};
use secure_link::{LinkError, SecureServer};
use tokio::io::DuplexStream;
use tokio::time::Instant;

const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// A test that hangs fails instead, after this much (virtual) time.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(600), future)
        .await
        .unwrap_or_else(|_| panic!("{what} never finished"))
}

/// The server's side of the reply tests: on "go", one reply per entry of
/// `sizes`, the `i`th of `sizes[i]` bytes filled with `i`; then it waits
/// for the client's end and answers it.
fn replier(
    mut server: SecureServer<DuplexStream>,
    sizes: Vec<usize>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        assert_eq!(server.next().await.unwrap().unwrap(), "go");
        for (i, size) in sizes.into_iter().enumerate() {
            server.feed(Bytes::from(vec![i as u8; size])).await.unwrap();
        }
        server.flush().await.unwrap();
        assert!(server.next().await.is_none());
        server.close().await.unwrap();
    })
}

/// The reply `i` of `replier`.
fn reply(i: usize, sizes: &[usize]) -> Vec<u8> {
    vec![i as u8; sizes[i]]
}

#[tokio::test(start_paused = true)]
async fn close_is_ok_when_the_server_confirms_and_a_timeout_error_when_it_does_not() {
    let (connector, acceptor) = endpoints(KEY);
    let connector = connector.with_close_timeout(CLOSE_TIMEOUT);

    // Confirmed: the server answers close_notify with its own.
    let (mut client, mut server) = connected(&connector, &acceptor).await;
    let answering = tokio::spawn(async move {
        let (received, end) = drain(&mut server).await;
        assert!(end.is_none(), "{end:?}");
        server.close().await.unwrap();
        received.len()
    });
    client.send("one".into()).await.unwrap();
    let started = Instant::now();
    within("close", client.close()).await.unwrap();
    assert!(started.elapsed() < CLOSE_TIMEOUT);
    assert_eq!(within("answering", answering).await.unwrap(), 1);

    // Not confirmed: the server reads everything but never answers.
    let (mut client, mut server) = connected(&connector, &acceptor).await;
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let silent = tokio::spawn(async move {
        let (received, end) = drain(&mut server).await;
        assert!(end.is_none(), "{end:?}");
        // Silent until the client has given up; then dropped unanswered.
        let _ = released.await;
        drop(server);
        received
    });
    client.send("two".into()).await.unwrap();
    let started = Instant::now();
    let verdict = within("close", client.close()).await;
    assert!(
        matches!(verdict, Err(LinkError::CloseTimeout(limit)) if limit == CLOSE_TIMEOUT),
        "{verdict:?}"
    );
    assert_eq!(started.elapsed(), CLOSE_TIMEOUT);
    // Asked again, close() gives the same answer at once.
    let again = within("second close", client.close()).await;
    assert!(
        matches!(again, Err(LinkError::CloseTimeout(_))),
        "{again:?}"
    );
    assert_eq!(started.elapsed(), CLOSE_TIMEOUT);
    release.send(()).unwrap();
    assert_eq!(
        within("silent", silent).await.unwrap(),
        vec![Bytes::from("two")]
    );
}

#[tokio::test(start_paused = true)]
async fn close_gives_up_at_its_timeout_when_the_server_stops_reading() {
    let (connector, acceptor) = endpoints(KEY);
    let connector = connector.with_close_timeout(CLOSE_TIMEOUT);
    // 64 KiB of pipe, and a server that never reads: the flush before
    // close_notify cannot finish.
    let (mut client, server) = connected(&connector, &acceptor).await;
    for _ in 0..100 {
        client.feed(Bytes::from(vec![0u8; 1000])).await.unwrap();
    }
    let started = Instant::now();
    let verdict = within("close", client.close()).await;
    assert!(
        matches!(verdict, Err(LinkError::CloseTimeout(limit)) if limit == CLOSE_TIMEOUT),
        "{verdict:?}"
    );
    assert_eq!(started.elapsed(), CLOSE_TIMEOUT);
    drop(server);
}

#[tokio::test(start_paused = true)]
async fn a_close_cancelled_and_called_again_completes() {
    let (connector, acceptor) = endpoints(KEY);
    let connector = connector.with_close_timeout(CLOSE_TIMEOUT);
    let (mut client, mut server) = connected(&connector, &acceptor).await;
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (received, end) = drain(&mut server).await;
        assert!(end.is_none(), "{end:?}");
        server.close().await.unwrap();
        received
    });
    client.feed("kept".into()).await.unwrap();
    // Cancelled before the server answers...
    assert!(
        tokio::time::timeout(Duration::from_secs(1), client.close())
            .await
            .is_err()
    );
    // ... and called again: the message went out once, the end is confirmed.
    within("second close", client.close()).await.unwrap();
    assert_eq!(
        within("late", late).await.unwrap(),
        vec![Bytes::from("kept")]
    );
    assert!(client.next().await.is_none());
}

/// tokio keeps one read waker per transport: a `close()` that reads while a
/// split reader is parked must not leave that reader unwoken when the
/// close is cancelled.
#[tokio::test(start_paused = true)]
async fn a_split_reader_sees_the_end_after_a_cancelled_close() {
    let (connector, acceptor) = endpoints(KEY);
    let connector = connector.with_close_timeout(CLOSE_TIMEOUT);
    let (client, mut server) = connected(&connector, &acceptor).await;
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let answering = tokio::spawn(async move {
        go_rx.await.unwrap();
        let (received, end) = drain(&mut server).await;
        assert!(end.is_none(), "{end:?}");
        server.close().await.unwrap();
        received.len()
    });
    let (mut tx, mut rx) = client.split();
    let reader = tokio::spawn(async move {
        let mut count = 0;
        while let Some(item) = rx.next().await {
            item.unwrap();
            count += 1;
        }
        count
    });
    tokio::task::yield_now().await; // the reader is parked on the transport

    tx.feed("bye".into()).await.unwrap();
    // One poll: flush, close_notify, and a read that finds nothing yet.
    let mut closing = tx.close();
    futures::future::poll_fn(|cx| {
        assert!(Pin::new(&mut closing).poll(cx).is_pending());
        Poll::Ready(())
    })
    .await;
    drop(closing); // cancelled
    go_tx.send(()).unwrap();

    assert_eq!(within("the reader", reader).await.unwrap(), 0);
    assert_eq!(within("answering", answering).await.unwrap(), 1);
}

/// After `close()` woke a split reader for a reply, the reader polls the
/// transport again: `close()` must still be woken by the server's
/// close_notify, not sit out its timeout.
#[tokio::test(start_paused = true)]
async fn close_with_replies_in_flight_ends_when_the_servers_close_notify_arrives() {
    let (connector, acceptor) = endpoints(KEY);
    let connector = connector.with_close_timeout(CLOSE_TIMEOUT);
    let (client, mut server) = connected(&connector, &acceptor).await;
    let echo = tokio::spawn(async move {
        while let Some(message) = server.next().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
            server.send(message.unwrap()).await.unwrap();
        }
        server.close().await.unwrap();
    });
    let (mut tx, mut rx) = client.split();
    let reader = tokio::spawn(async move {
        let mut replies = Vec::new();
        while let Some(item) = rx.next().await {
            replies.push(item.unwrap());
        }
        replies
    });
    let sent: Vec<Bytes> = (0..20).map(|i| Bytes::from(format!("m{i}"))).collect();
    for message in &sent {
        tx.feed(message.clone()).await.unwrap();
    }
    let started = Instant::now();
    within("close", tx.close()).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "close took {:?}",
        started.elapsed()
    );
    assert_eq!(within("the reader", reader).await.unwrap(), sent);
    within("echo", echo).await.unwrap();
}

/// A flood of empty replies during close() is not queued without limit:
/// close() stops reading when the queue is full and waits for a reader, up
/// to its timeout. Nothing is lost: the stream yields every reply and then
/// the server's end.
#[tokio::test(start_paused = true)]
async fn replies_kept_while_closing_are_bounded_in_count_and_none_is_lost() {
    const FLOOD: usize = 20_000;
    let (connector, acceptor) = endpoints(KEY);
    let connector = connector.with_close_timeout(CLOSE_TIMEOUT);
    let (mut client, mut server) = connected(&connector, &acceptor).await;
    let flood = tokio::spawn(async move {
        let mut replies = futures::stream::iter((0..FLOOD).map(|_| Ok(Bytes::new())));
        server.send_all(&mut replies).await.unwrap();
        let (received, end) = drain(&mut server).await;
        assert!(end.is_none(), "{end:?}");
        server.close().await.unwrap();
        received.len()
    });
    client.feed("go".into()).await.unwrap();
    let started = Instant::now();
    let verdict = within("close", client.close()).await;
    assert!(
        matches!(verdict, Err(LinkError::CloseTimeout(_))),
        "{verdict:?}"
    );
    assert_eq!(started.elapsed(), CLOSE_TIMEOUT);
    let mut replies = 0;
    while let Some(item) = within("the stream", client.next()).await {
        assert!(item.unwrap().is_empty());
        replies += 1;
    }
    assert_eq!(replies, FLOOD);
    assert_eq!(within("flood", flood).await.unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn sinks_refuse_messages_after_close_instead_of_dropping_them() {
    let (connector, acceptor) = endpoints(KEY);
    let (mut client, mut server) = connected(&connector, &acceptor).await;
    let server_side = tokio::spawn(async move {
        let (received, end) = drain(&mut server).await;
        assert!(end.is_none(), "{end:?}");
        server.close().await.unwrap();
        let late = server.feed("late reply".into()).await;
        assert!(matches!(late, Err(LinkError::SinkClosed)), "{late:?}");
        let late = server.send("late reply".into()).await;
        assert!(matches!(late, Err(LinkError::SinkClosed)), "{late:?}");
        received
    });
    client.send("before".into()).await.unwrap();
    within("close", client.close()).await.unwrap();
    let late = client.feed("after".into()).await;
    assert!(matches!(late, Err(LinkError::SinkClosed)), "{late:?}");
    let late = client.send("after".into()).await;
    assert!(matches!(late, Err(LinkError::SinkClosed)), "{late:?}");
    // The first close was confirmed; asking again says so again.
    within("second close", client.close()).await.unwrap();
    assert_eq!(
        within("server_side", server_side).await.unwrap(),
        vec![Bytes::from("before")]
    );
}

/// `close()` stops reading when its queue of replies is full; a reader
/// that takes some makes room, and `close()` must be woken to go on (here
/// to the server's close_notify, 6 replies later).
#[tokio::test(start_paused = true)]
async fn a_reader_that_makes_room_wakes_a_close_waiting_on_a_full_queue() {
    // The queue holds 1,024 messages: 1,023 empty replies leave room for
    // the close_notify, 1,024 fill it by count.
    close_with_replies_waiting(vec![0; 1023], false).await;
    close_with_replies_waiting(vec![0; 1024], true).await;
}

/// The scenario of the tests around this one: the server sends replies of
/// `sizes` and then answers the client's close_notify, and nobody reads
/// the client's stream while `close()` runs. With room for all of them
/// (`fills` false), `close()` keeps them, reads the close_notify and
/// returns `Ok`. When they fill its queue (`fills` true), `close()` is
/// still pending once everything has arrived; a split reader takes exactly
/// one reply, and `close()` must be woken by the room that made, read the
/// close_notify, and return `Ok` before its timeout. Either way every
/// reply comes out of the stream, in order.
async fn close_with_replies_waiting(sizes: Vec<usize>, fills: bool) {
    let (connector, acceptor) = endpoints(KEY);
    let connector = connector.with_close_timeout(CLOSE_TIMEOUT);
    let (client, server) = connected(&connector, &acceptor).await;
    let replier = replier(server, sizes.clone());
    let (mut tx, mut rx) = client.split();
    tx.feed("go".into()).await.unwrap();
    let started = Instant::now();
    let closing = tokio::spawn(async move { tx.close().await });
    // Everything arrives (time moves on only once every task is idle).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut taken = 0;
    if fills {
        assert!(!closing.is_finished(), "close() ended with its queue full");
        assert_eq!(rx.next().await.unwrap().unwrap(), reply(0, &sizes));
        taken = 1;
    } else {
        assert!(
            closing.is_finished(),
            "close() waits with room in its queue"
        );
    }
    let closed = within("close", closing).await.unwrap();
    assert!(closed.is_ok(), "{closed:?}");
    assert!(started.elapsed() < CLOSE_TIMEOUT, "{:?}", started.elapsed());
    while let Some(item) = rx.next().await {
        assert_eq!(item.unwrap(), reply(taken, &sizes));
        taken += 1;
    }
    assert_eq!(taken, sizes.len());
    within("replier", replier).await.unwrap();
}

/// Replies are kept while `close()` waits up to 1 MiB of payload: one
/// byte less leaves room for the close_notify, exactly 1 MiB fills the
/// queue. 1.25 MiB unread: `close()` gives up at its timeout without
/// losing any.
#[tokio::test(start_paused = true)]
async fn replies_kept_while_closing_are_bounded_in_bytes() {
    const MIB: usize = 1024 * 1024;
    let mut one_short = vec![64 * 1024; 16];
    one_short[15] -= 1;
    assert_eq!(one_short.iter().sum::<usize>(), MIB - 1);
    close_with_replies_waiting(one_short, false).await;
    close_with_replies_waiting(vec![64 * 1024; 16], true).await;

    let sizes = vec![64 * 1024; 20];
    let (connector, acceptor) = endpoints(KEY);
    let connector = connector.with_close_timeout(CLOSE_TIMEOUT);
    let (mut client, server) = connected(&connector, &acceptor).await;
    let replier = replier(server, sizes.clone());
    client.send("go".into()).await.unwrap();
    let started = Instant::now();
    let closed = within("close", client.close()).await;
    assert!(
        matches!(closed, Err(LinkError::CloseTimeout(_))),
        "{closed:?}"
    );
    assert_eq!(started.elapsed(), CLOSE_TIMEOUT);
    let mut got = 0;
    while let Some(item) = within("the stream", client.next()).await {
        assert_eq!(item.unwrap(), reply(got, &sizes));
        got += 1;
    }
    assert_eq!(got, sizes.len());
    within("the replier", replier).await.unwrap();
}

/// A zero close timeout turns the wait off: `close()` returns once its own
/// close_notify is written, without the server's answer.
#[tokio::test(start_paused = true)]
async fn a_zero_close_timeout_returns_once_close_notify_is_written() {
    let (connector, acceptor) = endpoints(KEY);
    let connector = connector.with_close_timeout(Duration::ZERO);
    let (mut client, mut server) = connected(&connector, &acceptor).await;
    client.send("last".into()).await.unwrap();
    let started = Instant::now();
    within("close", client.close()).await.unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);
    // The server gets the message and a clean end, though it never answers.
    let (received, end) = within("drain", drain(&mut server)).await;
    assert_eq!(received, vec![Bytes::from("last")]);
    assert!(end.is_none(), "{end:?}");
}

/// 2.5 MiB of replies, more than `close()` keeps, with a split reader
/// taking them as they come: `close()` goes on reading as the reader makes
/// room and ends at the server's close_notify, not at its timeout.
#[tokio::test(start_paused = true)]
async fn close_reads_on_while_a_reader_drains_more_replies_than_it_keeps() {
    const REPLIES: usize = 40;
    let (connector, acceptor) = endpoints(KEY);
    let connector = connector.with_close_timeout(CLOSE_TIMEOUT);
    let (client, server) = connected(&connector, &acceptor).await;
    let replier = replier(server, vec![64 * 1024; REPLIES]);
    let (mut tx, mut rx) = client.split();
    let reader = tokio::spawn(async move {
        let mut got = 0;
        while let Some(item) = rx.next().await {
            assert_eq!(item.unwrap(), vec![got as u8; 64 * 1024]);
            got += 1;
        }
        got
    });
    tx.send("go".into()).await.unwrap();
    let started = Instant::now();
    within("close", tx.close()).await.unwrap();
    assert!(started.elapsed() < CLOSE_TIMEOUT, "{:?}", started.elapsed());
    assert_eq!(within("reader", reader).await.unwrap(), REPLIES);
    within("replier", replier).await.unwrap();
}

/// `FusedStream`: the client's stream is terminated only once it has
/// yielded its end and everything `close()` kept for it.
#[tokio::test(start_paused = true)]
async fn the_client_stream_is_terminated_only_after_its_end_and_kept_replies() {
    use futures::stream::FusedStream;
    let (connector, acceptor) = endpoints(KEY);
    let (mut client, mut server) = connected(&connector, &acceptor).await;
    let replier = tokio::spawn(async move {
        let message = server.next().await.unwrap().unwrap();
        server.send(message).await.unwrap();
        assert!(server.next().await.is_none());
        assert!(server.is_terminated());
        server.close().await.unwrap();
    });
    assert!(!client.is_terminated());
    client.send("echo me".into()).await.unwrap();
    within("close", client.close()).await.unwrap();
    assert!(!client.is_terminated(), "a kept reply is still to come");
    assert_eq!(client.next().await.unwrap().unwrap(), "echo me");
    assert!(!client.is_terminated(), "the end is still to come");
    assert!(client.next().await.is_none());
    assert!(client.is_terminated());
    within("replier", replier).await.unwrap();
}

/// The byte count of kept replies goes down as the stream takes them: 16
/// replies of 64 KiB fill the 1 MiB; a reader takes one, and `close()` has
/// room for the empty 17th and the close_notify.
#[tokio::test(start_paused = true)]
async fn taking_replies_frees_the_bytes_they_held_in_the_close_queue() {
    let mut sizes = vec![64 * 1024; 16];
    sizes.push(0);
    close_with_replies_waiting(sizes, true).await;
}

/// The usual server loop, `while let Some(m) = server.next().await` and
/// then the end of scope, confirms the end without `close()`: a server
/// dropped after its stream reached the client's clean end answers the
/// client's close_notify (best effort, one attempt), so the client's
/// `close()` is `Ok`. Over 127.0.0.1 TCP, with real time (nothing here
/// waits for a deadline).
#[tokio::test]
async fn a_server_dropped_after_the_clients_clean_end_confirms_it() {
    let (connector, acceptor) = endpoints(KEY);
    let connector = connector.with_close_timeout(Duration::from_secs(60));
    let (mut client, mut server) =
        common::connected_over(&connector, &acceptor, common::tcp_pair().await).await;
    let serving = tokio::spawn(async move {
        let mut received = Vec::new();
        while let Some(message) = server.next().await {
            received.push(message.unwrap());
        }
        received // the server is dropped here, without close()
    });
    for i in 0..10 {
        client.feed(Bytes::from(format!("m{i}"))).await.unwrap();
    }
    let closed = client.close().await;
    assert!(closed.is_ok(), "{closed:?}");
    assert_eq!(serving.await.unwrap().len(), 10);
    assert!(client.next().await.is_none());
}

/// A server dropped before its stream reached the client's end confirms
/// nothing: the client's `close()` reports the cut.
#[tokio::test]
async fn a_server_dropped_before_the_clients_end_confirms_nothing() {
    let (connector, acceptor) = endpoints(KEY);
    let connector = connector.with_close_timeout(Duration::from_secs(60));
    let (mut client, mut server) =
        common::connected_over(&connector, &acceptor, common::tcp_pair().await).await;
    client.send(Bytes::from("first")).await.unwrap();
    assert_eq!(server.next().await.unwrap().unwrap(), "first");
    drop(server);
    let closed = client.close().await;
    assert!(
        matches!(closed, Err(LinkError::Truncated | LinkError::Io(_))),
        "{closed:?}"
    );
}

/// Half-close still works with the drop rule: replies after the client's
/// end, then an explicit `close()`; the client gets every reply and a
/// confirmed end.
#[tokio::test]
async fn replies_after_the_clients_end_then_close_still_arrive() {
    let (connector, acceptor) = endpoints(KEY);
    let connector = connector.with_close_timeout(Duration::from_secs(60));
    let (client, mut server) =
        common::connected_over(&connector, &acceptor, common::tcp_pair().await).await;
    let (mut tx, mut rx) = client.split();
    let serving = tokio::spawn(async move {
        let mut received = Vec::new();
        while let Some(message) = server.next().await {
            received.push(message.unwrap());
        }
        for message in &received {
            server.feed(message.clone()).await.unwrap();
        }
        server.close().await.unwrap();
    });
    for i in 0..5 {
        tx.feed(Bytes::from(format!("r{i}"))).await.unwrap();
    }
    tx.close().await.unwrap();
    let mut replies = Vec::new();
    while let Some(reply) = rx.next().await {
        replies.push(reply.unwrap());
    }
    assert_eq!(replies.len(), 5);
    assert_eq!(replies[4], "r4");
    serving.await.unwrap();
}
