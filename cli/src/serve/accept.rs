//! The accept loop's two guards: a cap on concurrent connections, and a
//! back-off when `accept` itself fails.
//!
//! On EMFILE/ENFILE (out of descriptors) or ENOMEM the pending connection
//! stays in the backlog and the listener stays readable, so a loop that
//! logs and retries spins at 100% CPU and floods the log (hyper's
//! `AddrIncoming` sleeps after such errors for the same reason). The cap
//! keeps the server below its descriptor limit in the first place; past
//! it, new connections wait in the kernel's backlog.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::warn;

/// First pause after a failed accept; doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const MAX_PAUSE: Duration = Duration::from_secs(1);
/// A repeated accept failure is logged at most once per this interval.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Descriptors kept free for everything but client connections (stdio,
/// the listeners, the runtime, files read on the way, and the metrics
/// endpoint's connections: at most `scrape::MAX_SCRAPERS`).
const RESERVED_DESCRIPTORS: u64 = 64;

/// The default connection cap: what the descriptor limit leaves after
/// [`RESERVED_DESCRIPTORS`], at most 10,000 (each connection costs memory
/// too), at least 1.
pub(crate) fn default_max_connections() -> usize {
    #[cfg(unix)]
    let limit = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map(|(soft, _hard)| soft)
        .unwrap_or(1024);
    #[cfg(not(unix))]
    let limit = 1024;
    limit.saturating_sub(RESERVED_DESCRIPTORS).clamp(1, 10_000) as usize
}

pub(crate) struct Acceptor {
    /// What the listener is for, in its log lines ("clients", "metrics").
    name: &'static str,
    listener: TcpListener,
    slots: Arc<Semaphore>,
    pause: Duration,
    /// When accepting may be tried again after a failure. Kept here, not
    /// in a sleep inside `next`: the caller's `select!` drops that future
    /// whenever another branch fires, and the pause must hold all the same.
    resume_at: Option<Instant>,
    /// Failures since the last line logged, and when that was.
    unreported: u64,
    last_report: Option<Instant>,
}

impl Acceptor {
    pub(crate) fn new(name: &'static str, listener: TcpListener, max_connections: usize) -> Self {
        Acceptor {
            name,
            listener,
            slots: Arc::new(Semaphore::new(max_connections)),
            pause: FIRST_PAUSE,
            resume_at: None,
            unreported: 0,
            last_report: None,
        }
    }

    /// The next connection, with the slot it holds until dropped. Waits
    /// while `max_connections` are open. Cancellation safe.
    pub(crate) async fn next(&mut self) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
        // Cannot fail: the semaphore is never closed.
        let Ok(slot) = self.slots.clone().acquire_owned().await else {
            return std::future::pending().await;
        };
        loop {
            if let Some(at) = self.resume_at {
                tokio::time::sleep_until(at).await;
                self.resume_at = None;
            }
            match self.listener.accept().await {
                Ok((tcp, peer)) => {
                    self.pause = FIRST_PAUSE;
                    return (tcp, peer, slot);
                }
                Err(err) if is_connection_error(&err) => {} // that peer's problem
                Err(err) => {
                    self.report(&err);
                    self.resume_at = Some(Instant::now() + self.pause);
                    self.pause = (self.pause * 2).min(MAX_PAUSE);
                }
            }
        }
    }

    fn report(&mut self, err: &io::Error) {
        self.unreported += 1;
        let due = self
            .last_report
            .is_none_or(|last| last.elapsed() >= LOG_INTERVAL);
        if due {
            let repeats = self.unreported - 1;
            let listener = self.name;
            if repeats == 0 {
                warn!(event = "accept_failed", listener, error = %err, "accept failed on the {listener} listener: {err}; retrying with back-off");
            } else {
                warn!(event = "accept_failed", listener, error = %err, repeats, "accept failed on the {listener} listener: {err} ({repeats} more failures since the last report)");
            }
            self.unreported = 0;
            self.last_report = Some(Instant::now());
        }
    }
}

/// Errors that concern one incoming connection, not the listener.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}
