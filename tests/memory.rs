//! Memory bound under a hostile length prefix: an authenticated TLS peer
//! declares a 4 GiB frame. Alone in its test binary because it measures the
//! whole process's heap through a counting global allocator (`cap`), with a
//! hard limit of 1 MiB above the baseline while the attack is processed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::alloc::System;

use bytes::BytesMut;
use cap::Cap;
use common::{KEY, connected, endpoints};
use futures::StreamExt;
use secure_link::{HmacFrameCodec, LinkError};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::{Decoder, Encoder};

#[global_allocator]
static HEAP: Cap<System> = Cap::new(System, usize::MAX);

const ONE_MIB: usize = 1024 * 1024;

/// One test function, so no other test allocates while the heap is measured.
#[tokio::test(flavor = "current_thread")]
async fn hostile_length_prefixes_cost_bounded_memory() {
    a_declared_4_gib_frame_is_refused_and_the_heap_grows_less_than_1_mib().await;
    a_frame_at_the_limit_that_never_completes_costs_what_was_sent().await;
    the_read_buffer_allocates_at_most_twice_what_it_holds_plus_256_kib();
    an_anonymous_peer_pins_at_most_the_first_frame_budget();
    two_fed_64_kib_messages_cost_their_two_frames().await;
}

async fn a_declared_4_gib_frame_is_refused_and_the_heap_grows_less_than_1_mib() {
    let (connector, acceptor) = endpoints(KEY);
    let (client, mut server) = connected(&connector, &acceptor).await;
    let mut tls = client.into_inner();

    // Baseline: both ends connected, nothing sent yet. From here on, any
    // allocation past baseline + 1 MiB fails (and aborts the test).
    let baseline = HEAP.allocated();
    HEAP.set_limit(baseline + ONE_MIB).unwrap();

    tls.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    tls.write_all(&[0x55; 4096]).await.unwrap(); // the "payload" starts
    tls.flush().await.unwrap();
    let verdict = server.next().await;
    let grown = HEAP.allocated().saturating_sub(baseline);
    HEAP.set_limit(usize::MAX).unwrap();

    assert!(
        matches!(
            verdict,
            Some(Err(LinkError::FrameTooLarge { len, .. })) if len == u64::from(u32::MAX)
        ),
        "{verdict:?}"
    );
    assert!(server.next().await.is_none());
    println!("heap growth while refusing a 4 GiB frame: {grown} bytes");
    assert!(grown < ONE_MIB, "heap grew by {grown} bytes");
}

async fn a_frame_at_the_limit_that_never_completes_costs_what_was_sent() {
    let (connector, acceptor) = endpoints(KEY);
    let acceptor = acceptor.with_max_frame_len(64 * ONE_MIB);
    let (client, mut server) = connected(&connector, &acceptor).await;
    let mut tls = client.into_inner();

    let baseline = HEAP.allocated();
    HEAP.set_limit(baseline + 2 * ONE_MIB).unwrap();
    // Declares 64 MiB (allowed), sends 256 KiB of it, then closes.
    let attack = async move {
        tls.write_all(&(64 * ONE_MIB as u32).to_be_bytes())
            .await
            .unwrap();
        tls.write_all(&vec![0x55; 256 * 1024]).await.unwrap();
        tls.shutdown().await.unwrap();
    };
    let ((), verdict) = tokio::join!(attack, server.next());
    let grown = HEAP.allocated().saturating_sub(baseline);
    HEAP.set_limit(usize::MAX).unwrap();

    assert!(
        matches!(verdict, Some(Err(LinkError::Truncated))),
        "{verdict:?}"
    );
    println!("heap growth for 256 KiB of a declared 64 MiB frame: {grown} bytes");
    assert!(grown < 2 * ONE_MIB, "heap grew by {grown} bytes");
}

/// Reads like `Framed` does: room for one byte at least, then as much of
/// `wire` as fits in the spare capacity (at most `read` bytes), then
/// decodes. After every read and decode, the error included, the heap
/// above the baseline (the read buffer counted) is at most `bound(bytes
/// held)`; returns the largest such figure and how the decoder ended.
fn drive_decoder(
    codec: &mut HmacFrameCodec,
    wire: &[u8],
    read: usize,
    bound: impl Fn(usize) -> usize,
) -> (usize, Result<(), LinkError>) {
    // While the buffer grows, the old allocation lives until its bytes are
    // copied: twice the steady bound is the hard limit for that moment.
    let hard = |held: usize| 2 * bound(held);
    let baseline = HEAP.allocated();
    let mut buf = BytesMut::with_capacity(32 * 1024);
    let mut rest = wire;
    let mut peak = 0;
    let mut frames = Vec::new();
    let mut end = Ok(());
    while !rest.is_empty() && end.is_ok() {
        // Held now: what the buffer holds and the frames not yet dropped.
        HEAP.set_limit(baseline + hard(buf.len())).unwrap();
        buf.reserve(1);
        let n = rest.len().min(read).min(buf.capacity() - buf.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(err) => {
                    end = Err(err);
                    break;
                }
            }
            frames.clear(); // the application drops each message
        }
        // Measured after the error too: what the refusal left allocated.
        let now = HEAP.allocated() - baseline;
        if now > bound(buf.len()) {
            HEAP.set_limit(usize::MAX).unwrap(); // room to report it
        }
        assert!(
            now <= bound(buf.len()),
            "{now} bytes allocated for {} held",
            buf.len()
        );
        peak = peak.max(now);
    }
    HEAP.set_limit(usize::MAX).unwrap();
    (peak, end)
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut wire = BytesMut::new();
    HmacFrameCodec::new(KEY)
        .encode(bytes::Bytes::copy_from_slice(payload), &mut wire)
        .unwrap();
    wire.to_vec()
}

/// `BytesMut::capacity` leaves out bytes already consumed, and its growth
/// doubles the whole allocation; this counts the heap. An authenticated
/// peer streams small frames, then 8 MiB of a declared 8 MiB frame in
/// 64 KiB reads: at every step the heap above the baseline stays under
/// twice what the buffer holds plus 256 KiB (and 64 KiB of slack for the
/// allocator's rounding and the decoder's own state).
fn the_read_buffer_allocates_at_most_twice_what_it_holds_plus_256_kib() {
    let mut wire = Vec::new();
    for i in 0..300u32 {
        wire.extend_from_slice(&frame(&i.to_be_bytes().repeat(100)));
    }
    wire.extend_from_slice(&(8 * ONE_MIB as u32).to_be_bytes());
    wire.extend_from_slice(&vec![0x55; 8 * ONE_MIB]);
    let mut codec = HmacFrameCodec::new(KEY);
    let bound = |held: usize| 2 * held + 256 * 1024 + 64 * 1024;
    let (peak, end) = drive_decoder(&mut codec, &wire, 64 * 1024, bound);
    // The last tag is missing: the frame is still incomplete, no error.
    assert!(end.is_ok(), "{end:?}");
    println!("read buffer's peak heap while 8 MiB of one frame arrive: {peak} bytes");
    assert!(peak <= bound(8 * ONE_MIB + 4), "{peak}");
}

/// Until a tag verifies the peer is anonymous: with the first-frame limit
/// of `serve` (64 KiB), declaring 8 MiB is refused at the prefix, and a
/// first frame at the limit costs its size plus the decoder's room ahead.
fn an_anonymous_peer_pins_at_most_the_first_frame_budget() {
    const FIRST: usize = 64 * 1024;
    let anonymous = || HmacFrameCodec::new(KEY).with_max_first_frame_len(FIRST);
    let bound = |_held: usize| 512 * 1024;

    let mut declared = (8 * ONE_MIB as u32).to_be_bytes().to_vec();
    declared.extend_from_slice(&vec![0x55; ONE_MIB]);
    let (peak, end) = drive_decoder(&mut anonymous(), &declared, 64 * 1024, bound);
    assert!(
        matches!(end, Err(LinkError::FrameTooLarge { max, .. }) if max == FIRST as u64),
        "{end:?}"
    );
    println!("anonymous peer declaring 8 MiB: peak {peak} bytes");
    // The reader's own 32 KiB buffer, which held the prefix; the decoder
    // reserved nothing for the declared 8 MiB (its step ahead is 256 KiB).
    assert!(peak > 0, "not measured");
    assert!(peak <= 32 * 1024 + 1024, "{peak}");

    let mut at_limit = frame(&vec![7; FIRST]);
    at_limit.truncate(at_limit.len() - 1); // one byte short of whole
    let (peak, end) = drive_decoder(&mut anonymous(), &at_limit, 1024, bound);
    assert!(end.is_ok(), "{end:?}");
    println!("anonymous peer's first frame of 64 KiB, one byte short: peak {peak} bytes");
    assert!(peak <= bound(0), "{peak}");
}

/// Two 64 KiB messages fed to a client are encoded together (their tags
/// hashed interleaved) into the write buffer: the heap grows by the two
/// frames, once (a reservation too small would grow the buffer while it is
/// written, one of their product would be 4 GiB).
async fn two_fed_64_kib_messages_cost_their_two_frames() {
    use futures::SinkExt;
    const SIZE: usize = 64 * 1024;
    let (connector, acceptor) = endpoints(KEY);
    let (mut client, _server) = connected(&connector, &acceptor).await;
    let messages = [
        bytes::Bytes::from(vec![1u8; SIZE]),
        bytes::Bytes::from(vec![2u8; SIZE]),
    ];
    let baseline = HEAP.allocated();
    for message in &messages {
        // A clone shares the bytes: kept alive here, they are not counted
        // as freed when the link drops its handle.
        client.feed(message.clone()).await.unwrap();
    }
    let grown = HEAP.allocated().saturating_sub(baseline);
    drop(messages);
    let frames = 2 * (4 + SIZE + 32);
    println!("heap growth for two fed 64 KiB messages: {grown} bytes ({frames} in their frames)");
    assert!(
        (frames..frames + 4096).contains(&grown),
        "heap grew by {grown} bytes for {frames} bytes of frames"
    );
}
