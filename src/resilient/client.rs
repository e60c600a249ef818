//! [`ResilientConnector`]: a client whose session survives its
//! connections, reconnecting through a dial function.

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::backoff::Backoff;
use super::config::ResilientConfig;
use super::driver::{Ended, drive};
use super::link::{ResilientEvent, ResilientLink, Shared, lock};
use super::mode::LinkMode;
use super::outbox::{MemoryOutbox, Outbox, SessionRecord};
use super::session::Session;
use super::wire::SessionId;
use crate::{LinkError, SecureConnector};

/// Opens resilient sessions: a [`SecureConnector`] (its root
/// certificate, HMAC key, auth mode and timeouts) plus the resilient
/// mode's [`ResilientConfig`].
///
/// # Example
///
/// ```no_run
/// use bytes::Bytes;
/// use futures::SinkExt;
/// use secure_link::resilient::{ResilientConfig, ResilientConnector};
/// use secure_link::SecureConnector;
///
/// # async fn run(ca_pem: &str, key: &[u8]) -> Result<(), secure_link::LinkError> {
/// let connector = ResilientConnector::new(
///     SecureConnector::new(ca_pem, key)?,
///     ResilientConfig::new(),
/// )?;
/// let mut link = connector.connect("localhost", || {
///     tokio::net::TcpStream::connect("127.0.0.1:7000")
/// })?;
/// link.send(Bytes::from("delivered once")).await?; // acknowledged
/// link.close().await?; // the session ends
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ResilientConnector {
    connector: SecureConnector,
    config: ResilientConfig,
    max_frame_len: usize,
}

impl ResilientConnector {
    /// A resilient connector from a plain one (which offers the resilient
    /// ALPN id from now on).
    ///
    /// # Errors
    ///
    /// [`LinkError::Config`] for a configuration that breaks
    /// [`ResilientConfig::validate`]'s rules.
    pub fn new(connector: SecureConnector, config: ResilientConfig) -> Result<Self, LinkError> {
        config.validate()?;
        Ok(ResilientConnector {
            max_frame_len: connector.max_frame_len(),
            connector: connector.resilient(),
            config,
        })
    }

    /// Starts a session with a [`MemoryOutbox`] of the default bounds;
    /// see [`connect_with_outbox`](Self::connect_with_outbox).
    ///
    /// # Errors
    ///
    /// As [`connect_with_outbox`](Self::connect_with_outbox).
    pub fn connect<D, F, IO>(&self, server_name: &str, dial: D) -> Result<ResilientLink, LinkError>
    where
        D: FnMut() -> F + Send + 'static,
        F: Future<Output = io::Result<IO>> + Send + 'static,
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.connect_with_outbox(server_name, dial, MemoryOutbox::default())
    }

    /// Starts a session to `server_name`: a task on the current Tokio
    /// runtime calls `dial` for each connection (any transport), runs the
    /// TLS handshake and the hello, and reconnects whenever a connection
    /// is lost, after an exponential backoff with full jitter
    /// ([`ResilientConfig::with_backoff`]). It returns at once; messages
    /// sent before the first connection wait in `outbox`.
    ///
    /// An outbox that holds a [`SessionRecord`](super::SessionRecord)
    /// ([`Outbox::session`]: one kept by an earlier process, on disk)
    /// resumes that session: the messages it still holds are sent first,
    /// in order and numbered as before, and the server, if it still has
    /// the session, sends only what the record says was not received. A
    /// server that lost it meanwhile is reported as restarted
    /// ([`ResilientEvent::PeerRestarted`]). Otherwise a new session starts
    /// and its record is saved ([`Outbox::save_session`]).
    ///
    /// A dial, and the TLS handshake after it, that takes longer than the
    /// dead time fails like a lost connection.
    ///
    /// Errors that a new connection cannot heal
    /// ([`LinkError::is_retryable`] is false: a certificate refused, a wrong
    /// HMAC key, a server that does not speak the resilient mode,
    /// [`LinkError::ModeMismatch`]) end the session at once: the link's
    /// stream yields the error and its sink returns it. With
    /// [`ResilientConfig::with_give_up_after`], a session without an
    /// established connection for that long ends with
    /// [`LinkError::GaveUp`].
    ///
    /// # Errors
    ///
    /// [`LinkError::Config`] for an invalid server name, or when no
    /// random session id can be drawn; [`LinkError::Outbox`] when the outbox
    /// cannot save the new session's record; must be called within a
    /// Tokio runtime.
    pub fn connect_with_outbox<D, F, IO>(
        &self,
        server_name: &str,
        dial: D,
        mut outbox: impl Outbox + 'static,
    ) -> Result<ResilientLink, LinkError>
    where
        D: FnMut() -> F + Send + 'static,
        F: Future<Output = io::Result<IO>> + Send + 'static,
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        crate::tls::server_name(server_name)?;
        let id = match outbox.session() {
            Some(record) => SessionId(record.id),
            None => {
                let id = SessionId::random()?;
                outbox
                    .save_session(SessionRecord::new(id.0, 0))
                    .map_err(LinkError::Outbox)?;
                id
            }
        };
        let core = Session::client(
            id,
            self.config.clone(),
            self.max_frame_len,
            Box::new(outbox) as Box<dyn Outbox>,
            Instant::now().into_std(),
        );
        let shared = Shared::new(core);
        let task = tokio::spawn(run(
            shared.clone(),
            self.connector.clone(),
            self.config.clone(),
            server_name.to_owned(),
            dial,
        ));
        Ok(ResilientLink::new(shared, task))
    }
}

impl fmt::Debug for ResilientConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResilientConnector")
            .field("connector", &self.connector)
            .field("config", &self.config)
            .finish()
    }
}

/// 64 bits from the crypto provider's random source, for the jitter.
fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // On failure the jitter is 0: the wait is shorter, never unbounded.
    let _ = crate::tls::provider().secure_random.fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// The client's task: connect, drive, and after a loss wait and connect
/// again, until the session ends.
async fn run<D, F, IO>(
    shared: Arc<Mutex<Shared>>,
    connector: SecureConnector,
    config: ResilientConfig,
    server_name: String,
    mut dial: D,
) where
    D: FnMut() -> F + Send + 'static,
    F: Future<Output = io::Result<IO>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut backoff = Backoff::new(config.backoff_base, config.backoff_cap);
    let mut down_since = Instant::now();
    loop {
        let outcome = match connect(&connector, &config, &server_name, &mut dial).await {
            Ok(mut connection) => {
                let up_at = Instant::now();
                let established_before = {
                    let mut shared = lock(&shared);
                    shared.core.connected(up_at.into_std());
                    shared.stats.connections
                };
                let outcome = drive(&shared, &mut connection).await;
                let established = {
                    let mut shared = lock(&shared);
                    shared.core.disconnected();
                    shared.stats.connections > established_before
                };
                // Only a connection that carried the session (the hellos
                // went both ways) counts as up: one whose hello was
                // black-holed or refused neither resets the backoff nor
                // postpones giving up.
                if established {
                    let now = Instant::now();
                    if now.duration_since(up_at) >= config.healthy_after {
                        backoff.reset();
                    }
                    down_since = now;
                }
                outcome
            }
            Err(err) => Err(err),
        };
        let err = match outcome {
            Ok(Ended) => {
                lock(&shared).finish(None);
                return;
            }
            Err(err) if !err.is_retryable() => {
                lock(&shared).finish(Some(err));
                return;
            }
            Err(err) => err,
        };
        lock(&shared).event(ResilientEvent::Disconnected {
            error: err.to_string(),
        });
        let mut wait = backoff.next_delay(random_u64());
        if let Some(limit) = config.give_up_after {
            let left = limit.saturating_sub(down_since.elapsed());
            if left.is_zero() {
                give_up(&shared, limit);
                return;
            }
            wait = wait.min(left);
        }
        tokio::time::sleep(wait).await;
    }
}

/// The give-up limit passed: hand back what was not acknowledged.
fn give_up(shared: &Mutex<Shared>, limit: Duration) {
    let mut shared = lock(shared);
    let unacked = shared.core.take_unacked();
    let count = unacked.len();
    shared.handed_back = unacked;
    shared.finish(Some(LinkError::GaveUp {
        after: limit,
        unacked: count,
    }));
}

/// One connection: dial, TLS, the mode check.
async fn connect<D, F, IO>(
    connector: &SecureConnector,
    config: &ResilientConfig,
    server_name: &str,
    dial: &mut D,
) -> Result<crate::SecureClient<IO>, LinkError>
where
    D: FnMut() -> F,
    F: Future<Output = io::Result<IO>>,
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let limit = config.dead_time;
    let attempt = async {
        let io = dial().await.map_err(LinkError::Io)?;
        connector.connect(server_name, io).await
    };
    let client = tokio::time::timeout(limit, attempt)
        .await
        .map_err(|_| timed_out(limit))??;
    match LinkMode::from_alpn(client.get_ref().1.alpn_protocol()) {
        Some(LinkMode::Resilient) => Ok(client),
        _ => Err(LinkError::ModeMismatch {
            local: LinkMode::Resilient,
            peer: LinkMode::Plain,
        }),
    }
}

fn timed_out(limit: Duration) -> LinkError {
    LinkError::Io(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no connection within {limit:?}"),
    ))
}
