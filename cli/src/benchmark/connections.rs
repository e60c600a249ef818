//! Many connections: N clients, each on its own TCP connection to one
//! server process (both ends in this process), all sending at once;
//! aggregate messages and bytes per second, the CPU they cost, and the
//! round trips of a probe beside them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;

use tokio::sync::Barrier;

use super::latency::{Beside, Echo, Latency, Timer};
use super::peers::{LinkEnd, OverLink, run_over};
use super::throughput::pump_from;
use super::{Mode, Peer, Sample, Setup, tcp_pair};
use secure_link::LinkError;

/// Opens `clients` connections of `peer` (handshakes not timed), then lets
/// every client send `per_client` messages of `size` bytes, batched, at
/// once: the sample spans from the first message handed over to the last
/// one received, over all connections. Needs two descriptors per
/// connection (both ends are in this process).
///
/// # Errors
///
/// Any connection or link failure.
pub async fn fan_in(
    setup: &Setup,
    peer: Peer,
    clients: usize,
    size: usize,
    per_client: usize,
) -> Result<FanIn, LinkError> {
    let clients = clients.max(1);
    // Every pump waits here, and so does the probe and this task: the
    // clock starts when all connections are up.
    let start = Arc::new(Barrier::new(clients + 2));
    let stop = Arc::new(AtomicBool::new(false));
    let probe = {
        let (client, server) = tcp_pair().await?;
        let echo = Echo(Timer {
            size: PROBE_SIZE,
            count: 0,
            beside: Some(Beside {
                start: start.clone(),
                stop: stop.clone(),
            }),
        });
        let setup = setup.clone();
        tokio::spawn(async move { run_over(&setup, peer, 1024, client, server, echo).await })
    };
    let mut links = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (client, server) = tcp_pair().await?;
        let job = Pumper {
            size,
            count: per_client,
            start: start.clone(),
        };
        let setup = setup.clone();
        links.spawn(
            async move { run_over(&setup, peer, size.max(1024), client, server, job).await },
        );
    }
    start.wait().await;
    let cpu_before = super::cpu_time();
    let mut first_start: Option<Instant> = None;
    let mut last_finish: Option<Instant> = None;
    let mut bytes = 0;
    while let Some(link) = links.join_next().await {
        let (started, finished, moved) =
            link.map_err(|err| LinkError::Io(std::io::Error::other(err)))??;
        first_start = Some(first_start.map_or(started, |t| t.min(started)));
        last_finish = Some(last_finish.map_or(finished, |t| t.max(finished)));
        bytes += moved;
    }
    let cpu = super::cpu_since(cpu_before);
    stop.store(true, Ordering::Release);
    let probe = probe
        .await
        .map_err(|err| LinkError::Io(std::io::Error::other(err)))??;
    let (Some(first), Some(last)) = (first_start, last_finish) else {
        return Err(LinkError::Io(std::io::Error::other("no connection ran")));
    };
    Ok(FanIn {
        sample: Sample {
            elapsed: last - first,
            bytes,
            messages: (clients * per_client) as u64,
            cpu,
        },
        probe,
    })
}

/// Payload bytes of the probe's requests.
const PROBE_SIZE: usize = 64;

/// One run of [`fan_in`].
#[derive(Clone, Debug)]
pub struct FanIn {
    /// The load: all clients' messages, first handed over to last
    /// received; its CPU time is the whole process's (both ends of every
    /// connection, and the probe) from the start of the load to its end.
    pub sample: Sample,
    /// Round trips of 64 B on one more connection of the same peer,
    /// timed one after the other while the load runs.
    pub probe: Latency,
}

/// One connection's part: wait for the others, then pump.
struct Pumper {
    size: usize,
    count: usize,
    start: Arc<Barrier>,
}

impl OverLink for Pumper {
    type Output = (Instant, Instant, u64);

    async fn run<T, E1, E2>(
        self,
        client: impl LinkEnd<T, E1, E2>,
        server: impl LinkEnd<T, E1, E2>,
    ) -> Result<Self::Output, LinkError>
    where
        T: AsRef<[u8]> + Into<Bytes> + Send + 'static,
        E1: Send + 'static,
        E2: Send + 'static,
        LinkError: From<E1> + From<E2>,
    {
        pump_from(
            client,
            server,
            Mode::Batched,
            self.size,
            self.count,
            Some(self.start),
        )
        .await
    }
}
