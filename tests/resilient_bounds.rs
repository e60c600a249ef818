//! What a resilient session holds when one side cannot keep up, under
//! paused time over in-memory pipes: a producer running flat out during
//! a partition (the heap, through a counting global allocator with a hard
//! limit), and a receiving application that stops reading (the bytes
//! waiting for it, and that its silence is not taken for the peer's), and
//! a session whose client is gone (kept for the expiry, then forgotten).
//! Alone in its test binary because the allocator counts the whole
//! process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::alloc::System;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cap::Cap;
use common::KEY;
use common::pipes::Pipes;
use futures::{SinkExt, StreamExt};
use secure_link::LinkError;
use secure_link::resilient::{
    MAX_UNREAD_BYTES, MemoryOutbox, ResilientAcceptor, ResilientConfig, ResilientConnector,
    ResilientEvent, ResilientLink,
};

#[global_allocator]
static HEAP: Cap<System> = Cap::new(System, usize::MAX);

const ONE_MIB: usize = 1024 * 1024;

/// A stall far longer than the dead time: ten of them.
const STALL: Duration = Duration::from_secs(30);

/// One test function, so that nothing else allocates while the heap is
/// measured.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_session_holds_bounded_memory_when_one_side_cannot_keep_up() {
    a_partition_holds_a_flat_out_producer_within_its_outbox_bytes().await;
    a_reader_that_stops_is_not_taken_for_a_dead_peer().await;
    a_reader_that_stops_holds_at_most_max_unread_bytes().await;
    a_reader_that_takes_a_message_and_stops_again_holds_no_more().await;
    a_session_without_a_connection_expires_at_its_limit().await;
}

fn config() -> ResilientConfig {
    ResilientConfig::new()
        .with_heartbeat_interval(Duration::from_secs(1))
        .with_dead_time(Duration::from_secs(3))
        .with_backoff(Duration::from_millis(10), Duration::from_secs(1))
        .with_healthy_after(Duration::from_secs(1))
}

/// A session over fresh pipes, its first message delivered.
async fn session(outbox: MemoryOutbox) -> (Pipes, ResilientLink, ResilientLink) {
    let (connector, acceptor) = common::endpoints(KEY);
    let (pipes, mut sessions) = Pipes::new(ResilientAcceptor::new(acceptor, config()).unwrap());
    let connector = ResilientConnector::new(connector, config()).unwrap();
    let mut client = connector
        .connect_with_outbox("localhost", pipes.dial(), outbox)
        .unwrap();
    client.send(Bytes::from("up")).await.unwrap();
    let mut server = sessions.recv().await.unwrap();
    assert_eq!(server.next().await.unwrap().unwrap(), "up");
    (pipes, client, server)
}

/// Message `i` of `size` bytes: its number, then filler.
fn message(i: usize, size: usize) -> Bytes {
    let mut body = (i as u64).to_be_bytes().to_vec();
    body.resize(size.max(8), (i % 251) as u8);
    Bytes::from(body)
}

/// Receives `count` messages and checks that they are 0, 1, 2, ... in
/// order.
async fn receive_in_order(server: &mut ResilientLink, count: usize) {
    for i in 0..count {
        let got = server.next().await.unwrap().unwrap();
        assert_eq!(got[..8], (i as u64).to_be_bytes(), "message {i}");
    }
}

/// Feeds `count` messages of `size`, counting each one taken, then
/// flushes (everything acknowledged) and gives the link back.
fn produce(
    mut client: ResilientLink,
    count: usize,
    size: usize,
    taken: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Result<ResilientLink, LinkError>> {
    tokio::spawn(async move {
        for i in 0..count {
            client.feed(message(i, size)).await?;
            taken.fetch_add(1, Ordering::SeqCst);
        }
        client.flush().await?;
        Ok(client)
    })
}

/// Receives the producer's `count` messages in order, and checks that no
/// connection of either end was lost meanwhile.
async fn arrive_on_the_first_connection(
    server: &mut ResilientLink,
    producer: tokio::task::JoinHandle<Result<ResilientLink, LinkError>>,
    count: usize,
) {
    receive_in_order(server, count).await;
    let client = producer.await.unwrap().unwrap();
    assert_eq!(
        (disconnections(&client), disconnections(server)),
        (vec![], vec![]),
        "a connection was lost (client's, server's)"
    );
    assert_eq!(
        (client.stats().connections, server.stats().connections),
        (1, 1)
    );
}

fn disconnections(link: &ResilientLink) -> Vec<ResilientEvent> {
    link.take_events()
        .into_iter()
        .filter(|event| matches!(event, ResilientEvent::Disconnected { .. }))
        .collect()
}

async fn a_partition_holds_a_flat_out_producer_within_its_outbox_bytes() {
    const SIZE: usize = 64 * 1024;
    const OUTBOX_BYTES: usize = 4 * ONE_MIB;
    const COUNT: usize = 200;
    let (pipes, client, mut server) = session(MemoryOutbox::new(4096, OUTBOX_BYTES)).await;

    // The partition: the connection dies and no dial gets through.
    pipes.set_up(false);
    pipes.cut();
    let baseline = HEAP.allocated();
    // Any allocation beyond this fails (and aborts the test).
    HEAP.set_limit(baseline + OUTBOX_BYTES + SIZE + ONE_MIB)
        .unwrap();
    let taken = Arc::new(AtomicUsize::new(0));
    let producer = produce(client, COUNT, SIZE, taken.clone());
    tokio::time::sleep(STALL).await;
    let held = taken.load(Ordering::SeqCst);
    tokio::time::sleep(STALL).await;
    let grown = HEAP.allocated().saturating_sub(baseline);
    HEAP.set_limit(usize::MAX).unwrap();
    let dials = pipes.dials();

    println!(
        "partition, {COUNT} x 64 KiB flat out, outbox {OUTBOX_BYTES} bytes: {held} taken, heap grew {grown} bytes, {dials} dials"
    );
    assert_eq!(taken.load(Ordering::SeqCst), held, "the producer went on");
    assert!(
        (OUTBOX_BYTES / SIZE..=OUTBOX_BYTES / SIZE + 1).contains(&held),
        "{held} messages taken"
    );
    assert!(grown <= OUTBOX_BYTES + SIZE + ONE_MIB, "{grown}");
    assert!(dials > 3, "the client kept dialling: {dials}");

    // The path heals: everything arrives once, in order.
    pipes.set_up(true);
    receive_in_order(&mut server, COUNT).await;
    let client = producer.await.unwrap().unwrap();
    assert_eq!(client.stats().unacked, 0);
    assert_eq!(server.stats().delivered, COUNT as u64 + 1);
}

async fn a_reader_that_stops_is_not_taken_for_a_dead_peer() {
    // More messages than the reader's queue holds (1,024), far fewer
    // bytes than its byte bound.
    const COUNT: usize = 3000;
    let (_pipes, client, mut server) = session(MemoryOutbox::default()).await;
    let producer = produce(client, COUNT, 100, Arc::default());

    // The server's application takes nothing for ten dead times.
    tokio::time::sleep(STALL).await;
    arrive_on_the_first_connection(&mut server, producer, COUNT).await;
    assert_eq!(server.stats().resumes, 0);
}

async fn a_reader_that_stops_holds_at_most_max_unread_bytes() {
    const SIZE: usize = 64 * 1024;
    // 25 MiB: more than the reader's byte bound, fewer messages than its
    // count bound.
    const COUNT: usize = 400;
    let (_pipes, client, mut server) = session(MemoryOutbox::new(4096, 64 * ONE_MIB)).await;
    let client_events = client.events();
    let producer = produce(client, COUNT, SIZE, Arc::default());

    tokio::time::sleep(STALL).await;
    // What the server's end took in is acknowledged; the rest waits in
    // the client's outbox (and in the pipes and TLS buffers between).
    let unacked = client_events.stats().unacked;
    let at_most_held = MAX_UNREAD_BYTES / SIZE + 1;
    println!(
        "reader stopped, {COUNT} x 64 KiB sent: {unacked} unacknowledged (the reader holds at most {at_most_held})"
    );
    assert!(unacked >= COUNT - at_most_held, "{unacked}");
    arrive_on_the_first_connection(&mut server, producer, COUNT).await;
}

/// A reader that takes one message and stops again: the driver reads one
/// more in its place, no more (a stream that took what waits in one batch
/// must still count it against the bound).
async fn a_reader_that_takes_a_message_and_stops_again_holds_no_more() {
    const SIZE: usize = 64 * 1024;
    const COUNT: usize = 400;
    let (_pipes, client, mut server) = session(MemoryOutbox::new(4096, 64 * ONE_MIB)).await;
    let client_events = client.events();
    let producer = produce(client, COUNT, SIZE, Arc::default());
    let at_most_held = MAX_UNREAD_BYTES / SIZE + 1;

    tokio::time::sleep(STALL).await;
    let first = server.next().await.unwrap().unwrap();
    assert_eq!(first[..8], 0u64.to_be_bytes());
    // Two thirds of a stall: both together stay under the client's write
    // timeout (60 s), which a reader that stops for longer trips.
    tokio::time::sleep(STALL * 2 / 3).await;
    // One message handed out; the bound holds for the rest.
    let unacked = client_events.stats().unacked;
    println!(
        "reader took 1 and stopped again: {unacked} unacknowledged (it holds at most {at_most_held})"
    );
    assert!(unacked >= COUNT - 1 - at_most_held, "{unacked}");
    for i in 1..COUNT {
        let got = server.next().await.unwrap().unwrap();
        assert_eq!(got[..8], (i as u64).to_be_bytes(), "message {i}");
    }
    let client = producer.await.unwrap().unwrap();
    assert_eq!(disconnections(&client), vec![]);
}

async fn a_session_without_a_connection_expires_at_its_limit() {
    const EXPIRY: Duration = Duration::from_secs(300);
    let (connector, acceptor) = common::endpoints(KEY);
    let sessions = ResilientAcceptor::new(acceptor, config().with_session_expiry(EXPIRY)).unwrap();
    let (pipes, mut links) = Pipes::new(sessions.clone());
    let connector = ResilientConnector::new(connector, config()).unwrap();
    let mut client = connector.connect("localhost", pipes.dial()).unwrap();
    client.send(Bytes::from("up")).await.unwrap();
    let mut server = links.recv().await.unwrap();
    assert_eq!(server.next().await.unwrap().unwrap(), "up");

    // The client's process is gone: no End, no return.
    drop(client);
    let start = tokio::time::Instant::now();
    let ended = server.next().await;
    let after = start.elapsed();
    assert!(
        matches!(ended, Some(Err(LinkError::PeerDead(limit))) if limit == EXPIRY),
        "{ended:?}"
    );
    // Found dead after the dead time (3 s), then kept for the expiry.
    let dead_time = Duration::from_secs(3);
    assert!(
        after >= EXPIRY && after <= EXPIRY + dead_time + Duration::from_secs(1),
        "{after:?}"
    );
    assert!(server.next().await.is_none());
    assert_eq!(sessions.sessions(), 0, "the table forgot it");
}
