//! Throughput: messages of one size client -> server, batched or one
//! flush per message.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Barrier;

use bytes::Bytes;
use futures::{Sink, SinkExt, Stream, StreamExt};

use super::peers::{LinkEnd, OverLink, run_on};
use super::{Mode, Peer, Sample, Setup, Transport};
use secure_link::LinkError;

/// Sends `count` messages of `size` bytes client → server with `peer` over
/// `transport` and times it (the handshake is not timed), with the CPU
/// time the process spent meanwhile (both ends; it also counts spawning
/// the receiver and allocating the message, microseconds). On a
/// multi-threaded runtime each end can have a core; on a current-thread
/// runtime they take turns, scheduled the same way every run.
///
/// # Errors
///
/// Any link failure, or a receiver that counted the wrong bytes.
pub async fn transfer(
    setup: &Setup,
    peer: Peer,
    transport: Transport,
    mode: Mode,
    size: usize,
    count: usize,
) -> Result<Sample, LinkError> {
    let job = Pump { mode, size, count };
    run_on(setup, peer, transport, size.max(1024), job).await
}

/// Sends `count` messages of `size` bytes, timing until the server has
/// received the last.
struct Pump {
    mode: Mode,
    size: usize,
    count: usize,
}

impl OverLink for Pump {
    type Output = Sample;

    async fn run<T, E1, E2>(
        self,
        client: impl LinkEnd<T, E1, E2>,
        server: impl LinkEnd<T, E1, E2>,
    ) -> Result<Sample, LinkError>
    where
        T: AsRef<[u8]> + Into<Bytes> + Send + 'static,
        E1: Send + 'static,
        E2: Send + 'static,
        LinkError: From<E1> + From<E2>,
    {
        let cpu_before = super::cpu_time();
        let (started, finished, bytes) =
            pump_from(client, server, self.mode, self.size, self.count, None).await?;
        let cpu = super::cpu_since(cpu_before);
        Ok(Sample {
            elapsed: finished - started,
            bytes,
            messages: self.count as u64,
            cpu,
        })
    }
}

/// Sends `count` messages of `size` bytes client -> server, starting once
/// `start` (if any) lets every pump go at once: when the first message was
/// handed over, when the last arrived, and the payload bytes counted.
pub(super) async fn pump_from<K, R, T, E1, E2>(
    mut client: K,
    mut server: R,
    mode: Mode,
    size: usize,
    count: usize,
    start: Option<Arc<Barrier>>,
) -> Result<(Instant, Instant, u64), LinkError>
where
    K: Sink<Bytes, Error = E1> + Unpin,
    R: Stream<Item = Result<T, E2>> + Unpin + Send + 'static,
    T: AsRef<[u8]> + Send + 'static,
    E2: Send + 'static,
    LinkError: From<E1> + From<E2>,
{
    let message = Bytes::from(vec![0x5a; size]);
    let receiver = tokio::spawn(async move {
        let mut bytes = 0u64;
        for _ in 0..count {
            match server.next().await {
                Some(Ok(m)) => bytes += m.as_ref().len() as u64,
                Some(Err(err)) => return Err(LinkError::from(err)),
                None => return Err(LinkError::Truncated),
            }
        }
        Ok((Instant::now(), bytes, server))
    });
    if let Some(start) = start {
        start.wait().await;
    }
    let started = Instant::now();
    for _ in 0..count {
        match mode {
            Mode::Batched => client.feed(message.clone()).await?,
            Mode::PerMessage => client.send(message.clone()).await?,
        }
    }
    client.flush().await?;
    let (finished, bytes, server) = receiver
        .await
        .map_err(|e| LinkError::Io(std::io::Error::other(e)))??;
    drop((client, server));
    let expected = (size * count) as u64;
    if bytes != expected {
        return Err(LinkError::Io(std::io::Error::other(format!(
            "the receiver counted {bytes} payload bytes, expected {expected}"
        ))));
    }
    Ok((started, finished, bytes))
}
