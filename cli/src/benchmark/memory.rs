//! Memory per connection: N authenticated connections, each after one
//! request/response exchange of a given size, left idle (both ends
//! waiting for the next message, as a server does between requests); what
//! each end holds per connection.
//!
//! The server ends and the client ends run on two threads of their own,
//! each with a current-thread runtime, so a per-thread heap meter (a
//! counting allocator the caller installs) can tell the two apart; the
//! resident set of the process covers both.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};

use super::peers::{LinkEnd, OverEnd, on_client_end, on_server_end};
use super::{Peer, Setup};
use secure_link::LinkError;

/// Runs a closure and returns the bytes the calling thread allocated in it
/// and has not freed (a counting allocator's per-thread figure, e.g.
/// `allocation_counter::measure(f).bytes_current`).
pub type Meter = fn(&mut dyn FnMut()) -> i64;

/// How long either side waits for the other at each connection before
/// giving up (a stuck peer must not hang the benchmark).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// What `connections` idle connections held, per connection.
#[derive(Clone, Copy, Debug)]
pub struct IdleMemory {
    /// Heap the server ends held, bytes per connection (with a meter).
    pub server_heap: Option<f64>,
    /// Heap the client ends held, bytes per connection (with a meter).
    pub client_heap: Option<f64>,
    /// Growth of the process's resident set, both ends, bytes per
    /// connection (Linux; from `/proc/self/status`).
    pub rss: Option<f64>,
}

/// Opens `connections` connections of `peer` over 127.0.0.1 TCP one after
/// the other; on each the client sends one message of `exchange` bytes and
/// the server echoes it; then both ends wait for a next message (polled
/// once at once, as a server does, then all together for `settle`, see
/// [`SETTLE`]) and are kept. Measures what they hold (see [`IdleMemory`]). Blocks the
/// calling thread; needs two descriptors per connection.
///
/// # Errors
///
/// Any connection or link failure, a reply that is not the request, or a
/// step that took longer than 30 s.
pub fn idle_connections(
    setup: &Setup,
    peer: Peer,
    connections: usize,
    exchange: usize,
    settle: Duration,
    meter: Option<Meter>,
) -> Result<IdleMemory, LinkError> {
    let connections = connections.max(1);
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let rss_before = rss_bytes();
    let max = exchange.max(1024);

    let server = Side::spawn(meter, {
        let setup = setup.clone();
        move || Box::pin(serve_all(setup, peer, listener, connections, max, settle))
    })?;
    let client = Side::spawn(meter, {
        let setup = setup.clone();
        move || {
            Box::pin(connect_all(
                setup,
                peer,
                addr,
                connections,
                exchange,
                settle,
            ))
        }
    })?;
    let server_heap = server.measured()?;
    let client_heap = client.measured()?;
    let rss = rss_before
        .zip(rss_bytes())
        .map(|(before, after)| after.saturating_sub(before) as f64 / connections as f64);
    let per_connection = |bytes: Option<i64>| bytes.map(|b| b as f64 / connections as f64);
    Ok(IdleMemory {
        server_heap: per_connection(server_heap),
        client_heap: per_connection(client_heap),
        rss,
    })
}

/// Link ends kept alive, whatever their type.
type Held = Vec<Box<dyn Idle>>;

/// An end left waiting for its next message, whatever its type.
trait Idle: Send {
    /// Polls for the next message (nothing comes); registers with `cx`.
    fn poll_idle(&mut self, cx: &mut std::task::Context<'_>);
}

impl<L: futures::Stream + Unpin + Send> Idle for L {
    fn poll_idle(&mut self, cx: &mut std::task::Context<'_>) {
        let _ = self.poll_next_unpin(cx);
    }
}

/// How long `secure-link bench` lets the ends wait for a next message
/// before they are measured: longer than a link of this crate that is busy
/// with large frames keeps its grown buffers once quiet (one second), so
/// what is measured is an idle connection rather than one between two
/// messages.
pub const SETTLE: Duration = Duration::from_millis(1200);

/// Keeps every end of `held` waiting for its next message for `settle`
/// (polled at least once), then hands them back.
async fn settle(mut held: Held, settle: Duration) -> Held {
    let mut timer = std::pin::pin!(tokio::time::sleep(settle));
    std::future::poll_fn(|cx| {
        for end in held.iter_mut() {
            end.poll_idle(cx);
        }
        timer.as_mut().poll(cx)
    })
    .await;
    held
}

type Work = std::pin::Pin<Box<dyn Future<Output = Result<Held, LinkError>>>>;

/// One side's thread: runs its work on a current-thread runtime (under the
/// meter), reports, and keeps the ends until dropped.
struct Side {
    report: mpsc::Receiver<Result<Option<i64>, LinkError>>,
    release: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Side {
    fn spawn<F>(meter: Option<Meter>, work: F) -> Result<Side, LinkError>
    where
        F: FnOnce() -> Work + Send + 'static,
    {
        let (report_tx, report) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bench-memory".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = report_tx.send(Err(err.into()));
                        return;
                    }
                };
                let mut outcome = Ok(Vec::new());
                let mut work = Some(work);
                let mut run = || {
                    if let Some(work) = work.take() {
                        outcome = runtime.block_on(work());
                    }
                };
                let heap = match meter {
                    Some(meter) => Some(meter(&mut run)),
                    None => {
                        run();
                        None
                    }
                };
                let (held, report) = match outcome {
                    Ok(held) => (held, Ok(heap)),
                    Err(err) => (Vec::new(), Err(err)),
                };
                let _ = report_tx.send(report);
                // Keep the ends (and the runtime they are registered with)
                // until the other side has been measured too.
                let _ = release_rx.recv();
                drop(held);
            })?;
        Ok(Side {
            report,
            release: Some(release),
            thread: Some(thread),
        })
    }

    /// Waits for this side's figure (heap bytes, with a meter).
    fn measured(&self) -> Result<Option<i64>, LinkError> {
        self.report
            .recv()
            .map_err(|_| LinkError::Io(std::io::Error::other("a benchmark thread died")))?
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn step<T>(
    what: &str,
    future: impl std::future::Future<Output = Result<T, LinkError>>,
) -> Result<T, LinkError> {
    tokio::time::timeout(STEP_TIMEOUT, future)
        .await
        .map_err(|_| LinkError::Io(std::io::Error::other(format!("{what} timed out"))))?
}

async fn serve_all(
    setup: Setup,
    peer: Peer,
    listener: std::net::TcpListener,
    connections: usize,
    max: usize,
    wait: Duration,
) -> Result<Held, LinkError> {
    let mut held = Held::new();
    let listener = TcpListener::from_std(listener)?;
    for _ in 0..connections {
        let (io, _) = step("accept", async { Ok(listener.accept().await?) }).await?;
        io.set_nodelay(true)?;
        let end = step("server exchange", accept_one(&setup, peer, io, max)).await?;
        held.push(end);
    }
    Ok(settle(held, wait).await)
}

async fn connect_all(
    setup: Setup,
    peer: Peer,
    addr: SocketAddr,
    connections: usize,
    exchange: usize,
    wait: Duration,
) -> Result<Held, LinkError> {
    let mut held = Held::new();
    let request = Bytes::from(vec![0x5a; exchange]);
    for _ in 0..connections {
        let io = step("connect", async { Ok(TcpStream::connect(addr).await?) }).await?;
        io.set_nodelay(true)?;
        let end = step(
            "client exchange",
            connect_one(&setup, peer, io, request.clone()),
        )
        .await?;
        held.push(end);
    }
    Ok(settle(held, wait).await)
}

/// The server end of `peer` on `io`, after echoing one message.
async fn accept_one(
    setup: &Setup,
    peer: Peer,
    io: TcpStream,
    max: usize,
) -> Result<Box<dyn Idle>, LinkError> {
    on_server_end(setup, peer, max, io, EchoOnce).await
}

/// The client end of `peer` on `io`, after one round trip of `request`.
async fn connect_one(
    setup: &Setup,
    peer: Peer,
    io: TcpStream,
    request: Bytes,
) -> Result<Box<dyn Idle>, LinkError> {
    let max = request.len().max(1024);
    on_client_end(setup, peer, max, io, RoundTrip(request)).await
}

/// Receives one message, sends it back, then waits for the next once.
struct EchoOnce;

impl OverEnd for EchoOnce {
    type Output = Box<dyn Idle>;

    async fn run<T, E1, E2>(
        self,
        mut end: impl LinkEnd<T, E1, E2>,
    ) -> Result<Box<dyn Idle>, LinkError>
    where
        T: AsRef<[u8]> + Into<Bytes> + Send + 'static,
        E1: Send + 'static,
        E2: Send + 'static,
        LinkError: From<E1> + From<E2>,
    {
        let request = end.next().await.ok_or(LinkError::Truncated)??;
        end.send(request.into()).await?;
        // Wait for the next request at once, as a server does.
        let _ = end.next().now_or_never();
        Ok(Box::new(end))
    }
}

/// Sends its request, checks the echo, then waits for the next once.
struct RoundTrip(Bytes);

impl OverEnd for RoundTrip {
    type Output = Box<dyn Idle>;

    async fn run<T, E1, E2>(
        self,
        mut end: impl LinkEnd<T, E1, E2>,
    ) -> Result<Box<dyn Idle>, LinkError>
    where
        T: AsRef<[u8]> + Into<Bytes> + Send + 'static,
        E1: Send + 'static,
        E2: Send + 'static,
        LinkError: From<E1> + From<E2>,
    {
        let RoundTrip(request) = self;
        end.send(request.clone()).await?;
        let reply = end.next().await.ok_or(LinkError::Truncated)??;
        if reply.as_ref() != request.as_ref() {
            return Err(LinkError::Io(std::io::Error::other(
                "the reply is not the request",
            )));
        }
        // Done with it, as an application is before it waits for the next.
        drop(reply);
        let _ = end.next().now_or_never();
        Ok(Box::new(end))
    }
}

/// The resident set of this process in bytes (Linux), else `None`.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}
