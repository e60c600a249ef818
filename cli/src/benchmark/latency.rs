//! Latency: request/response round trips with one request outstanding.
//! The client sends a message, the server echoes it, the client receives
//! it; each round trip is timed on its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::sync::Barrier;

use super::peers::{LinkEnd, OverEnd, OverLink, run_apart, run_on};
use super::{Peer, Setup, Transport};
use secure_link::LinkError;

/// Round trips not counted at the start (connection warm-up).
const WARM_UP: usize = 50;

/// The round trips of one run, sorted.
#[derive(Clone, Debug)]
pub struct Latency {
    /// Every round trip timed, shortest first.
    pub round_trips: Vec<Duration>,
}

impl Latency {
    /// The `q` quantile (0.0 to 1.0), nearest rank.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let last = self.round_trips.len().checked_sub(1)?;
        let rank = ((last as f64) * q.clamp(0.0, 1.0)).round() as usize;
        self.round_trips.get(rank).copied()
    }

    /// The median round trip.
    pub fn p50(&self) -> Option<Duration> {
        self.quantile(0.5)
    }

    /// The 99th percentile.
    pub fn p99(&self) -> Option<Duration> {
        self.quantile(0.99)
    }

    /// The longest round trip.
    pub fn max(&self) -> Option<Duration> {
        self.round_trips.last().copied()
    }
}

/// Where the two ends of a latency run live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ends {
    /// Both on the runtime the run is awaited on: one thread does all the
    /// work of a round trip in turn, so nothing overlaps.
    Together,
    /// The server on a thread of its own with its own current-thread
    /// runtime (TCP only), as between two nodes: each end has a core, and
    /// one end's work can overlap the other's.
    Apart,
}

/// Times `count` request/response round trips of `size`-byte messages
/// with `peer` over `transport` (after a warm-up of 50), the ends placed
/// as `ends` says.
///
/// With [`Ends::Together`], both ends run where this is awaited. On a
/// multi-threaded runtime, where the scheduler happens to place the echo
/// task relative to the client (same worker or not) changes a round trip
/// several-fold, and differs from run to run; `secure-link bench`
/// therefore runs each case on a current-thread runtime of its own, so
/// every peer pays the same scheduling and the table compares the
/// implementations. [`Ends::Apart`] places the server on a thread of its
/// own, the same way every run; it always runs over TCP.
///
/// # Errors
///
/// Any link failure, or a reply that is not the request.
pub async fn round_trips(
    setup: &Setup,
    peer: Peer,
    transport: Transport,
    ends: Ends,
    size: usize,
    count: usize,
) -> Result<Latency, LinkError> {
    let max = size.max(1024);
    let timer = Timer {
        size,
        count,
        beside: None,
    };
    match ends {
        Ends::Together => run_on(setup, peer, transport, max, Echo(timer)).await,
        Ends::Apart => run_apart(setup, peer, max, timer, Echoer).await,
    }
}

/// Round trips timed by the client's half with both ends here: the
/// client sends, the server echoes.
pub(super) struct Echo(pub(super) Timer);

/// A probe running beside a load: it starts timing when the load starts
/// and stops when told.
pub(super) struct Beside {
    pub(super) start: Arc<Barrier>,
    pub(super) stop: Arc<AtomicBool>,
}

impl OverLink for Echo {
    type Output = Latency;

    async fn run<T, E1, E2>(
        self,
        client: impl LinkEnd<T, E1, E2>,
        server: impl LinkEnd<T, E1, E2>,
    ) -> Result<Latency, LinkError>
    where
        T: AsRef<[u8]> + Into<Bytes> + Send + 'static,
        E1: Send + 'static,
        E2: Send + 'static,
        LinkError: From<E1> + From<E2>,
    {
        let echo = tokio::spawn(echo(server));
        let timed = self.0.run(client).await;
        let _ = echo.await;
        timed
    }
}

/// The server's half: echoes every message until the client goes away.
struct Echoer;

impl OverEnd for Echoer {
    type Output = ();

    async fn run<T, E1, E2>(self, server: impl LinkEnd<T, E1, E2>) -> Result<(), LinkError>
    where
        T: AsRef<[u8]> + Into<Bytes> + Send + 'static,
        E1: Send + 'static,
        E2: Send + 'static,
        LinkError: From<E1> + From<E2>,
    {
        echo(server).await;
        Ok(())
    }
}

/// Echoes until the client goes away (however it goes: the run is over).
async fn echo<T, E1, E2>(mut server: impl LinkEnd<T, E1, E2>)
where
    T: Into<Bytes>,
{
    while let Some(Ok(request)) = server.next().await {
        if server.send(request.into()).await.is_err() {
            break;
        }
    }
}

/// The client's half: sends a request of `size` bytes, waits for its
/// echo, times the two.
pub(super) struct Timer {
    pub(super) size: usize,
    /// Round trips timed (after the warm-up), unless `beside` says when
    /// to stop.
    pub(super) count: usize,
    pub(super) beside: Option<Beside>,
}

impl OverEnd for Timer {
    type Output = Latency;

    async fn run<T, E1, E2>(self, mut client: impl LinkEnd<T, E1, E2>) -> Result<Latency, LinkError>
    where
        T: AsRef<[u8]> + Into<Bytes> + Send + 'static,
        E1: Send + 'static,
        E2: Send + 'static,
        LinkError: From<E1> + From<E2>,
    {
        let request = Bytes::from(vec![0x5a; self.size]);
        let mut round_trips = Vec::with_capacity(self.count);
        let mut i = 0;
        loop {
            if i == WARM_UP
                && let Some(beside) = &self.beside
            {
                beside.start.wait().await;
            }
            let done = match &self.beside {
                Some(beside) => i > WARM_UP && beside.stop.load(Ordering::Acquire),
                None => i >= WARM_UP + self.count,
            };
            if done {
                break;
            }
            let started = Instant::now();
            client.send(request.clone()).await?;
            let reply = match client.next().await {
                Some(reply) => reply?,
                None => return Err(LinkError::Truncated),
            };
            let elapsed = started.elapsed();
            if reply.as_ref() != request.as_ref() {
                return Err(LinkError::Io(std::io::Error::other(
                    "the reply is not the request",
                )));
            }
            if i >= WARM_UP {
                round_trips.push(elapsed);
            }
            i += 1;
        }
        drop(client);
        round_trips.sort();
        Ok(Latency { round_trips })
    }
}
