//! The resilient mode's cost and its recovery: the same transfer over a
//! plain and a resilient link, the time from a cut to the first resumed
//! delivery, and how long each end takes to find a black-holed peer dead.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use secure_link::LinkError;
use secure_link::resilient::{
    Accepted, ResilientAcceptor, ResilientConfig, ResilientConnector, ResilientEvent, ResilientLink,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::throughput::{pump_from, transfer};
use super::{Mode, Peer, Sample, Setup, Transport};

/// One resilient transfer's figures beside its sample.
#[derive(Clone, Copy, Debug)]
pub struct ResilientSample {
    /// Timed from the first message handed over until the receiver had
    /// the last one.
    pub sample: Sample,
    /// Acknowledgements the receiver sent on their own.
    pub standalone_acks: u64,
}

/// A resilient client and server on 127.0.0.1, through `path` (a relay
/// the caller can pause and restart), with a session established.
struct Pair {
    client: ResilientLink,
    server: ResilientLink,
    _accepting: tokio::task::JoinHandle<()>,
}

async fn resilient_pair(
    setup: &Setup,
    config: ResilientConfig,
    via: Option<&Relay>,
) -> Result<Pair, LinkError> {
    let (connector, acceptor) = setup.ours();
    let acceptor = ResilientAcceptor::new(acceptor, config.clone())?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(LinkError::Io)?;
    let server_addr = listener.local_addr().map_err(LinkError::Io)?;
    let (sessions_tx, mut sessions) = mpsc::channel(1);
    let accepting = tokio::spawn(async move {
        let mut accepts = JoinSet::new();
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let (acceptor, sessions_tx) = (acceptor.clone(), sessions_tx.clone());
            accepts.spawn(async move {
                if let Ok(Accepted::Session(link)) = acceptor.accept(tcp).await {
                    let _ = sessions_tx.send(link).await;
                }
            });
        }
    });
    let target = match via {
        Some(relay) => {
            relay.point_to(server_addr);
            relay.addr
        }
        None => server_addr,
    };
    let connector = ResilientConnector::new(connector, config)?;
    let mut client = connector.connect("localhost", move || async move {
        let tcp = TcpStream::connect(target).await?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    })?;
    client.send(Bytes::from_static(b"hello")).await?;
    let mut server = sessions.recv().await.ok_or(LinkError::Truncated)?;
    server.next().await.ok_or(LinkError::Truncated)??;
    Ok(Pair {
        client,
        server,
        _accepting: accepting,
    })
}

/// `count` messages of `size` bytes client -> server, batched, over a
/// plain link (`resilient` false: the throughput scenario's own
/// [`transfer`](super::transfer) of ours over TCP) or a resilient one: the
/// resilient flush waits until the server acknowledged the last. As there,
/// the CPU time counts from the established link on (both ends and, here,
/// both drivers).
///
/// # Errors
///
/// Any link failure, or a receiver that counted the wrong bytes.
pub async fn resilient_transfer(
    setup: &Setup,
    resilient: bool,
    size: usize,
    count: usize,
) -> Result<ResilientSample, LinkError> {
    if !resilient {
        let sample = transfer(
            setup,
            Peer::Ours,
            Transport::Tcp,
            Mode::Batched,
            size,
            count,
        )
        .await?;
        return Ok(ResilientSample {
            sample,
            standalone_acks: 0,
        });
    }
    let pair = resilient_pair(setup, ResilientConfig::new(), None).await?;
    let server_stats = pair.server.events();
    let cpu_before = super::system::cpu_time();
    let (started, finished, bytes) =
        pump_from(pair.client, pair.server, Mode::Batched, size, count, None).await?;
    let cpu = super::system::cpu_since(cpu_before);
    Ok(ResilientSample {
        sample: Sample {
            elapsed: finished - started,
            bytes,
            messages: count as u64,
            cpu,
        },
        standalone_acks: server_stats.stats().standalone_acks,
    })
}

/// What a cut and a black hole cost.
#[derive(Clone, Copy, Debug)]
pub struct Recovery {
    /// From a cut of the connection (the relay restarted) until a message
    /// sent right after it was delivered.
    pub resumed_after: Duration,
    /// The first reconnect's backoff ceiling in force.
    pub backoff_ceiling: Duration,
    /// From a black hole opening until each end declared the peer dead.
    pub client_dead_after: Duration,
    /// The same for the server's end.
    pub server_dead_after: Duration,
    /// The dead time and heartbeat interval configured.
    pub dead_time: Duration,
    /// The heartbeat interval configured.
    pub heartbeat_interval: Duration,
}

/// Cuts a live session once and black-holes it once, with
/// `heartbeat_interval` and `dead_time` on both ends.
///
/// # Errors
///
/// Any link failure.
pub async fn recovery(
    setup: &Setup,
    heartbeat_interval: Duration,
    dead_time: Duration,
) -> Result<Recovery, LinkError> {
    let config = ResilientConfig::new()
        .with_heartbeat_interval(heartbeat_interval)
        .with_dead_time(dead_time);
    let path = Relay::start().await?;
    let mut pair = resilient_pair(setup, config, Some(&path)).await?;

    // A cut: every connection through the path dies.
    path.cut();
    let cut_at = Instant::now();
    pair.client
        .send(Bytes::from_static(b"after the cut"))
        .await?;
    pair.server.next().await.ok_or(LinkError::Truncated)??;
    let resumed_after = cut_at.elapsed();

    // A black hole: bytes stop, sockets stay open. The cut's events are
    // behind us.
    pair.client.take_events();
    pair.server.take_events();
    let (client_events, server_events) = (pair.client.events(), pair.server.events());
    path.pause(true);
    let opened = Instant::now();
    let dead = |events: secure_link::resilient::ResilientEvents| async move {
        loop {
            match events.next_event().await {
                Some(ResilientEvent::Disconnected { .. }) => return Ok(opened.elapsed()),
                Some(_) => {}
                None => return Err(LinkError::Truncated),
            }
        }
    };
    let (client_dead_after, server_dead_after) =
        tokio::try_join!(dead(client_events), dead(server_events))?;
    path.pause(false);
    Ok(Recovery {
        resumed_after,
        backoff_ceiling: secure_link::resilient::DEFAULT_BACKOFF_BASE,
        client_dead_after,
        server_dead_after,
        dead_time,
        heartbeat_interval,
    })
}

/// A relay on 127.0.0.1 that can drop every connection it carries or
/// stop moving bytes.
struct Relay {
    addr: SocketAddr,
    upstream: watch::Sender<Option<SocketAddr>>,
    paused: watch::Sender<bool>,
    cut: watch::Sender<u64>,
}

impl Relay {
    async fn start() -> Result<Arc<Relay>, LinkError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(LinkError::Io)?;
        let relay = Arc::new(Relay {
            addr: listener.local_addr().map_err(LinkError::Io)?,
            upstream: watch::Sender::new(None),
            paused: watch::Sender::new(false),
            cut: watch::Sender::new(0),
        });
        let this = relay.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Some(upstream) = *this.upstream.borrow() else {
                    continue;
                };
                let this = this.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
                    let mut cut = this.cut.subscribe();
                    tokio::select! {
                        () = carry(&inbound, &outbound, this.paused.subscribe()) => {}
                        () = carry(&outbound, &inbound, this.paused.subscribe()) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Ok(relay)
    }

    fn point_to(&self, upstream: SocketAddr) {
        self.upstream.send_replace(Some(upstream));
    }

    fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    fn pause(&self, on: bool) {
        self.paused.send_replace(on);
    }
}

async fn carry(from: &TcpStream, to: &TcpStream, mut paused: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if !unpaused(&mut paused).await {
            return;
        }
        if from.readable().await.is_err() {
            return;
        }
        let n = match from.try_read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        };
        // A chunk read as the pause began waits for the end of it.
        if !unpaused(&mut paused).await {
            return;
        }
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            if to.writable().await.is_err() {
                return;
            }
            match to.try_write(rest) {
                Ok(written) => rest = &rest[written..],
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    }
}

/// Waits while the relay is paused; false once the relay is gone.
async fn unpaused(paused: &mut watch::Receiver<bool>) -> bool {
    while *paused.borrow_and_update() {
        if paused.changed().await.is_err() {
            return false;
        }
    }
    true
}
