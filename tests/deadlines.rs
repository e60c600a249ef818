//! The server's read deadlines (`src/deadline.rs`), on paused time: the
//! first-message limit, and an idle limit that measures the peer's silence,
//! not the server's own pace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{KEY, connected, endpoints};
use futures::{SinkExt, StreamExt};
use secure_link::LinkError;

/// Awaits `future` on paused time, failing the test instead of hanging if
/// it has not finished after an hour of virtual time (a deadline that
/// never fires).
async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(3600), future)
        .await
        .expect("still waiting after an hour: a deadline never fired")
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_sends_a_message_hits_the_first_message_deadline() {
    let (connector, acceptor) = endpoints(KEY);
    let acceptor = acceptor.with_first_message_timeout(Duration::from_secs(5));
    let (_client, mut server) = connected(&connector, &acceptor).await;
    let started = tokio::time::Instant::now();
    let verdict = within(server.next()).await;
    assert!(
        matches!(verdict, Some(Err(LinkError::FirstMessageTimeout(limit))) if limit == Duration::from_secs(5)),
        "{verdict:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert!(server.next().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_hits_the_idle_deadline_and_an_active_one_does_not() {
    let (connector, acceptor) = endpoints(KEY);
    let acceptor = acceptor
        .with_first_message_timeout(Duration::from_secs(5))
        .with_idle_timeout(Duration::from_secs(10));
    let (mut client, mut server) = connected(&connector, &acceptor).await;

    // Active: a message every 6 s for a minute (over the 5 s first-message
    // limit in total, under the 10 s idle limit each time).
    let talker = tokio::spawn(async move {
        for i in 0..10 {
            tokio::time::sleep(Duration::from_secs(if i == 0 { 4 } else { 6 })).await;
            client.send(Bytes::from(format!("tick {i}"))).await.unwrap();
        }
        client // kept open, silent from now on
    });
    for i in 0..10 {
        assert_eq!(server.next().await.unwrap().unwrap(), format!("tick {i}"));
    }
    let last_heard = tokio::time::Instant::now();
    let verdict = within(server.next()).await;
    assert!(
        matches!(verdict, Some(Err(LinkError::IdleTimeout(limit))) if limit == Duration::from_secs(10)),
        "{verdict:?}"
    );
    assert_eq!(last_heard.elapsed(), Duration::from_secs(10));
    drop(talker.await.unwrap());
}

/// A steady producer (a message a second, in rounds of 10 with 8 s of
/// silence between) and a slower consumer (1.2 s a message): the server
/// finds a message waiting every time it asks, until it catches up in each
/// pause. The client is never silent for more than 8 s of the 10 s limit.
#[tokio::test(start_paused = true)]
async fn a_slow_consumer_of_a_steady_producer_never_times_out() {
    let (connector, acceptor) = endpoints(KEY);
    let acceptor = acceptor.with_idle_timeout(Duration::from_secs(10));
    let (mut client, mut server) = connected(&connector, &acceptor).await;
    let producer = tokio::spawn(async move {
        for round in 0..3 {
            for i in 0..10 {
                // A failure shows on the server's side, below.
                if client
                    .send(Bytes::from(format!("{round}.{i}")))
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            tokio::time::sleep(Duration::from_secs(7)).await; // 8 s silent
        }
        let _ = client.close().await;
    });
    let mut received = 0;
    while let Some(item) = within(server.next()).await {
        let message = item.unwrap_or_else(|err| panic!("after {received} messages: {err}"));
        assert_eq!(message, format!("{}.{}", received / 10, received % 10));
        received += 1;
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    assert_eq!(received, 30);
    server.close().await.unwrap();
    producer.await.unwrap();
}

/// With only an idle limit, a client that never speaks is reported against
/// that limit, not as a first-message timeout of zero.
#[tokio::test(start_paused = true)]
async fn a_silent_client_with_only_an_idle_limit_is_an_idle_timeout_of_that_limit() {
    let (connector, acceptor) = endpoints(KEY);
    let acceptor = acceptor.with_idle_timeout(Duration::from_secs(7));
    let (_client, mut server) = connected(&connector, &acceptor).await;
    let started = tokio::time::Instant::now();
    let verdict = within(server.next()).await;
    assert!(
        matches!(verdict, Some(Err(LinkError::IdleTimeout(limit))) if limit == Duration::from_secs(7)),
        "{verdict:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(7));
}

/// A frame trickled through TLS a byte every 2 s, from `client`; the task
/// returns the TLS stream, still open, once the frame is out.
fn trickle(
    client: secure_link::SecureClient<tokio::io::DuplexStream>,
    payload: usize,
) -> tokio::task::JoinHandle<Option<tokio_rustls::client::TlsStream<tokio::io::DuplexStream>>> {
    use tokio_util::codec::Encoder;
    let mut frame = bytes::BytesMut::new();
    secure_link::HmacFrameCodec::new(KEY)
        .encode(Bytes::from(vec![7u8; payload]), &mut frame)
        .unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        // The frame goes through TLS, a byte per record.
        let mut stream = client.into_inner();
        for byte in frame.iter() {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if stream.write_all(&[*byte]).await.is_err() || stream.flush().await.is_err() {
                return None;
            }
        }
        Some(stream)
    })
}

/// Before any message has verified, a frame trickled a byte every 2 s is
/// silence: the first-message limit bounds the whole first frame, so an
/// anonymous peer cannot hold a connection by dribbling.
#[tokio::test(start_paused = true)]
async fn a_first_frame_trickled_slower_than_the_first_message_limit_times_out() {
    let (connector, acceptor) = endpoints(KEY);
    let acceptor = acceptor
        .with_first_message_timeout(Duration::from_secs(10))
        .with_idle_timeout(Duration::from_secs(10));
    let (client, mut server) = connected(&connector, &acceptor).await;
    let started = tokio::time::Instant::now();
    let trickler = trickle(client, 100);
    let verdict = within(server.next()).await;
    assert!(
        matches!(verdict, Some(Err(LinkError::FirstMessageTimeout(limit))) if limit == Duration::from_secs(10)),
        "{verdict:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    drop(server);
    trickler.await.unwrap();
}

/// Once a message has verified, bytes arriving are not silence, however
/// slowly a frame comes: a frame trickled a byte every 2 s against a 10 s
/// idle limit is delivered (136 bytes, 272 s), and the limit then runs
/// from its last byte.
#[tokio::test(start_paused = true)]
async fn after_the_first_message_a_trickled_frame_is_heard_not_silence() {
    let (connector, acceptor) = endpoints(KEY);
    let acceptor = acceptor.with_idle_timeout(Duration::from_secs(10));
    let (mut client, mut server) = connected(&connector, &acceptor).await;
    client.send(Bytes::from_static(b"first")).await.unwrap();
    assert_eq!(server.next().await.unwrap().unwrap(), "first");
    let started = tokio::time::Instant::now();
    let trickler = trickle(client, 100);
    let got = within(server.next()).await;
    assert_eq!(got.unwrap().unwrap(), vec![7u8; 100]);
    assert_eq!(started.elapsed(), Duration::from_secs(2 * (4 + 100 + 32)));
    let last_byte = tokio::time::Instant::now();
    let _open = trickler.await.unwrap().expect("the frame went out");
    let verdict = within(server.next()).await;
    assert!(
        matches!(verdict, Some(Err(LinkError::IdleTimeout(limit))) if limit == Duration::from_secs(10)),
        "{verdict:?}"
    );
    assert_eq!(last_byte.elapsed(), Duration::from_secs(10));
}

/// Two messages come in with one read; the server takes the second 5 s
/// after the first. The idle limit runs from when it came in, not from
/// when it was taken: a 10 s limit ends the connection 10 s after the
/// read, not 15.
#[tokio::test(start_paused = true)]
async fn the_idle_limit_runs_from_when_a_message_came_in_not_when_it_was_taken() {
    let (connector, acceptor) = endpoints(KEY);
    let acceptor = acceptor.with_idle_timeout(Duration::from_secs(10));
    let (mut client, mut server) = connected(&connector, &acceptor).await;
    client.feed("one".into()).await.unwrap();
    client.feed("two".into()).await.unwrap();
    client.flush().await.unwrap(); // one TLS record, one read
    let came_in = tokio::time::Instant::now();
    assert_eq!(server.next().await.unwrap().unwrap(), "one");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(server.next().await.unwrap().unwrap(), "two");
    let verdict = within(server.next()).await;
    assert!(
        matches!(verdict, Some(Err(LinkError::IdleTimeout(_)))),
        "{verdict:?}"
    );
    assert_eq!(came_in.elapsed(), Duration::from_secs(10));
    drop(client);
}

/// Limits are user input: one too large for the clock (`Duration::MAX`)
/// means no deadline in the life of the process, never a panic, whether it
/// is the first-message limit, the idle limit or both, and whatever the
/// other is. The link works, and a year of silence does not end it.
#[tokio::test(start_paused = true)]
async fn limits_too_large_for_the_clock_mean_never_instead_of_a_panic() {
    const YEAR: Duration = Duration::from_secs(365 * 24 * 60 * 60);
    let huge = Some(Duration::MAX);
    let cases = [
        (huge, huge),
        (None, huge),
        (huge, None),
        (Some(Duration::from_secs(5)), huge),
        (huge, Some(Duration::from_secs(10 * 365 * 24 * 60 * 60))),
    ];
    for (first_message, idle) in cases {
        let (connector, acceptor) = endpoints(KEY);
        let connector = connector
            .with_handshake_timeout(Duration::MAX)
            .with_close_timeout(Duration::MAX);
        let mut acceptor = acceptor.with_handshake_timeout(Duration::MAX);
        if let Some(limit) = first_message {
            acceptor = acceptor.with_first_message_timeout(limit);
        }
        if let Some(limit) = idle {
            acceptor = acceptor.with_idle_timeout(limit);
        }
        let (mut client, mut server) = connected(&connector, &acceptor).await;
        client.send(Bytes::from("one")).await.unwrap();
        assert_eq!(within(server.next()).await.unwrap().unwrap(), "one");
        tokio::time::advance(YEAR).await;
        use futures::FutureExt;
        assert!(
            server.next().now_or_never().is_none(),
            "{first_message:?}/{idle:?}: the link ended after a year"
        );
        client.send(Bytes::from("two")).await.unwrap();
        assert_eq!(within(server.next()).await.unwrap().unwrap(), "two");
        let answering = tokio::spawn(async move {
            assert!(server.next().await.is_none());
            server.close().await.unwrap();
        });
        within(client.close()).await.unwrap();
        within(answering).await.unwrap();
    }
}

/// Bytes in flight are not silence: once the first message has verified,
/// a 1 MiB message arriving at 160 KiB/s (6.4 s) against a 1 s idle limit
/// is delivered, and the limit then runs from its last byte.
#[tokio::test(start_paused = true)]
async fn a_large_message_arriving_slower_than_the_idle_limit_is_not_silence() {
    const MIB: usize = 1024 * 1024;
    let idle = Duration::from_secs(1);
    let (connector, acceptor) = endpoints(KEY);
    let connector = connector.with_max_frame_len(2 * MIB);
    let acceptor = acceptor.with_max_frame_len(2 * MIB).with_idle_timeout(idle);
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let slow = common::Paced::writes(client_io, 16 * 1024, Duration::from_millis(100));
    let (mut client, mut server) =
        common::connected_over(&connector, &acceptor, (slow, server_io)).await;
    client.send(Bytes::from("first")).await.unwrap();
    assert_eq!(within(server.next()).await.unwrap().unwrap(), "first");

    let started = tokio::time::Instant::now();
    let big = Bytes::from(vec![7u8; MIB]);
    let sending = tokio::spawn(async move {
        client.send(big).await.unwrap();
        client
    });
    let got = within(server.next()).await;
    let took = started.elapsed();
    assert_eq!(got.unwrap().unwrap().len(), MIB, "after {took:?}");
    assert!(took >= Duration::from_secs(6), "{took:?}: not slow enough");
    let _client = sending.await.unwrap();

    let last_byte = tokio::time::Instant::now();
    let verdict = within(server.next()).await;
    assert!(
        matches!(verdict, Some(Err(LinkError::IdleTimeout(limit))) if limit == idle),
        "{verdict:?}"
    );
    assert_eq!(last_byte.elapsed(), idle);
}
