//! Memory bound under a hostile length prefix: an authenticated TLS peer
//! declares a 4 GiB frame. Alone in its test binary because it measures the
//! whole process's heap through a counting global allocator (`cap`), with a
//! hard limit of 1 MiB above the baseline while the attack is processed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::alloc::System;

use cap::Cap;
use common::{KEY, connected, endpoints};
use futures::StreamExt;
use secure_link::LinkError;
use tokio::io::AsyncWriteExt;

#[global_allocator]
static HEAP: Cap<System> = Cap::new(System, usize::MAX);

const ONE_MIB: usize = 1024 * 1024;

/// One test function, so no other test allocates while the heap is measured.
#[tokio::test(flavor = "current_thread")]
async fn hostile_length_prefixes_cost_bounded_memory() {
    a_declared_4_gib_frame_is_refused_and_the_heap_grows_less_than_1_mib().await;
    a_frame_at_the_limit_that_never_completes_costs_what_was_sent().await;
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
