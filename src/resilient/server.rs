//! [`ResilientAcceptor`]: a server whose sessions outlive their
//! connections, with the table that finds a session again.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::Either;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::config::ResilientConfig;
use super::driver::{Connection, Ended, drive, take_events};
use super::link::{ResilientEvent, ResilientLink, Shared, lock};
use super::mode::LinkMode;
use super::outbox::{MemoryOutbox, Outbox};
use super::session::{Session, check_timings};
use super::wire::{Message, SessionId};
use crate::revocation::Credentials;
use crate::{LinkError, SecureAcceptor, SecureServer};

/// What [`ResilientAcceptor::accept`] made of a connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum Accepted<IO> {
    /// A client of the plain mode (it offered the plain mode's ALPN id,
    /// or none, as the lab's clients): an ordinary
    /// [`SecureServer`], served as without the resilient mode.
    Plain(Box<SecureServer<IO>>),
    /// A new session: its link yields the client's messages and takes
    /// replies, across the client's reconnects.
    Session(ResilientLink),
    /// A client resumed a session this acceptor already gave out: the
    /// connection now carries it; nothing to do.
    Resumed,
}

/// The identity a session is bound to: the HMAC key that verified its
/// hello, and the client certificate's identity where mTLS is on.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Owner {
    key: Option<String>,
    certificate: Option<String>,
}

/// A connection for a session's task, with the hello that asked for it
/// and what authorised it.
type Attach = (Box<dyn Connection>, Bytes, Credentials);

struct Entry {
    owner: Owner,
    attach: mpsc::Sender<Attach>,
    shared: Arc<Mutex<Shared>>,
    /// Since when no connection carries it.
    detached_since: Arc<Mutex<Option<Instant>>>,
}

type Table = Arc<Mutex<HashMap<SessionId, Entry>>>;

/// Accepts resilient sessions beside plain links.
///
/// Built on a [`SecureAcceptor`] (certificates, keys, client CA, auth
/// mode, timeouts), which from now on also offers the resilient ALPN id.
/// Per connection: the TLS handshake, then
/// * a client that offers the plain mode's ALPN id
///   ([`PLAIN_ALPN`](super::PLAIN_ALPN)) or none is served in the plain mode
///   ([`Accepted::Plain`]), unless [`resilient_only`](Self::resilient_only)
///   ([`LinkError::ModeMismatch`]);
/// * a resilient client's hello must come within the dead time; it
///   resumes its session ([`Accepted::Resumed`]: the session's link goes
///   on) or starts one ([`Accepted::Session`]).
///
/// # Bounds
///
/// At most [`ResilientConfig::with_max_sessions`] sessions (default
/// 1,024): a new one beyond it evicts the session without a connection
/// the longest, or is refused when all have one. A session without a
/// connection for [`ResilientConfig::with_session_expiry`] (default
/// 5 minutes) ends: its link's stream yields
/// [`LinkError::PeerDead`] with that limit. A session is bound to its
/// owner (HMAC key, client certificate): a hello naming another peer's
/// session is refused with an `End` and the connection closed, and the
/// session goes on untouched. For resilient links the acceptor's
/// first-message and idle limits are replaced by the hello's deadline and
/// the dead time (a quiet, live link stays up).
#[derive(Clone)]
pub struct ResilientAcceptor {
    acceptor: SecureAcceptor,
    config: ResilientConfig,
    max_frame_len: usize,
    plain: bool,
    table: Table,
}

impl ResilientAcceptor {
    /// A resilient acceptor from a plain one.
    ///
    /// # Errors
    ///
    /// [`LinkError::Config`] for a configuration that breaks
    /// [`ResilientConfig::validate`]'s rules.
    pub fn new(acceptor: SecureAcceptor, config: ResilientConfig) -> Result<Self, LinkError> {
        config.validate()?;
        Ok(ResilientAcceptor {
            max_frame_len: acceptor.max_frame_len(),
            acceptor: acceptor.resilient(true),
            config,
            plain: true,
            table: Arc::default(),
        })
    }

    /// Refuses plain clients ([`LinkError::ModeMismatch`] from
    /// [`accept`](Self::accept)); by default they are served. A plain
    /// client of this crate (it offers [`PLAIN_ALPN`](super::PLAIN_ALPN))
    /// is refused in the TLS handshake and learns why
    /// ([`LinkError::ModeMismatch`] from its `connect`); one that offers
    /// no ALPN is refused right after the handshake and finds its link
    /// closed.
    pub fn resilient_only(mut self) -> Self {
        self.plain = false;
        self.acceptor = self.acceptor.resilient(false);
        self
    }

    /// The same sessions under a new plain acceptor (after a reload of
    /// certificates or keys): connections accepted from now on use
    /// `acceptor`, and resume the sessions this one holds. A session stays
    /// bound to the key it was opened with; a client whose key a reload
    /// removed cannot resume it, and [`ResilientLink::revoked_by`] tells
    /// whether a live session should end.
    pub fn with_acceptor(&self, acceptor: SecureAcceptor) -> Self {
        ResilientAcceptor {
            max_frame_len: acceptor.max_frame_len(),
            acceptor: acceptor.resilient(self.plain),
            config: self.config.clone(),
            plain: self.plain,
            table: self.table.clone(),
        }
    }

    /// Sessions held now, with or without a connection.
    pub fn sessions(&self) -> usize {
        self.table.lock().map_or(0, |table| table.len())
    }

    /// Accepts one connection; see the type's docs. Must be called within
    /// a Tokio runtime (each session runs in a task of its own).
    ///
    /// # Errors
    ///
    /// The plain acceptor's ([`SecureAcceptor::accept`]);
    /// [`LinkError::ModeMismatch`] for a plain client of a resilient-only
    /// acceptor; [`LinkError::PeerDead`] when no hello came within the dead
    /// time; [`LinkError::Protocol`] for a first message that is not a
    /// hello, a session of another peer or a full table;
    /// [`LinkError::InvalidHmac`] and the others a first frame can meet.
    pub async fn accept<IO>(&self, io: IO) -> Result<Accepted<IO>, LinkError>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut server = self.acceptor.accept(io).await?;
        match LinkMode::from_alpn(server.get_ref().1.alpn_protocol()) {
            Some(LinkMode::Resilient) => {}
            _ if self.plain => return Ok(Accepted::Plain(Box::new(server))),
            _ => {
                return Err(LinkError::ModeMismatch {
                    local: LinkMode::Resilient,
                    peer: LinkMode::Plain,
                });
            }
        }
        server.clear_read_deadlines();
        let limit = self.config.dead_time;
        let first = match tokio::time::timeout(limit, server.next()).await {
            Err(_) => return Err(LinkError::PeerDead(limit)),
            Ok(None) => return Err(LinkError::Truncated),
            Ok(Some(Err(err))) => {
                refuse(&mut server, &err.to_string()).await;
                return Err(err);
            }
            Ok(Some(Ok(first))) => first,
        };
        let Ok(Message::Hello { hello, .. }) = Message::decode(first.clone()) else {
            let err = LinkError::Protocol("the first message is not a hello".into());
            refuse(&mut server, &err.to_string()).await;
            return Err(err);
        };
        // Refused here, with an End, so that the client stops (a hello
        // the session's task refused would only drop the connection, and
        // the client would retry for ever).
        if let Err(err) = check_timings(&hello, &self.config) {
            refuse(&mut server, &err.to_string()).await;
            return Err(err);
        }
        let owner = Owner {
            key: server.key_fingerprint(),
            certificate: server.peer_identity(),
        };
        let credentials = server.credentials();
        match self.attach(hello.session, &owner, credentials, Box::new(server), first) {
            Ok(accepted) => Ok(accepted),
            Err((mut server, err)) => {
                refuse(&mut server, &err.to_string()).await;
                Err(err)
            }
        }
    }

    fn attach<IO>(
        &self,
        id: SessionId,
        owner: &Owner,
        credentials: Credentials,
        server: Box<SecureServer<IO>>,
        hello: Bytes,
    ) -> Result<Accepted<IO>, (Box<SecureServer<IO>>, LinkError)>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut table = match self.table.lock() {
            Ok(table) => table,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(entry) = table.get(&id) {
            if entry.owner != *owner {
                return Err((
                    server,
                    LinkError::Protocol("the session belongs to another peer".into()),
                ));
            }
            return match entry.attach.try_send((server, hello, credentials)) {
                Ok(()) => Ok(Accepted::Resumed),
                // The task is between two connections' hand-overs or gone.
                Err(mpsc::error::TrySendError::Full(_))
                | Err(mpsc::error::TrySendError::Closed(_)) => {
                    // The connection is dropped (cut): the client retries.
                    Ok(Accepted::Resumed)
                }
            };
        }
        if table.len() >= self.config.max_sessions && !evict_one(&mut table) {
            return Err((
                server,
                LinkError::Protocol("the server holds its maximum of sessions".into()),
            ));
        }
        let now = Instant::now();
        let core = Session::server(
            id,
            self.config.clone(),
            self.max_frame_len,
            Box::new(MemoryOutbox::default()) as Box<dyn Outbox>,
            now.into_std(),
        );
        let shared = Shared::new(core);
        // For `revoked_by` as soon as the link is handed out (the task
        // installs them again, as for every connection).
        lock(&shared).credentials = Some(credentials.clone());
        let (attach, connections) = mpsc::channel(1);
        let detached_since = Arc::new(Mutex::new(None));
        let task = tokio::spawn(run(
            shared.clone(),
            connections,
            (server as Box<dyn Connection>, hello, credentials),
            self.config.clone(),
            detached_since.clone(),
            Remove {
                table: self.table.clone(),
                id,
                shared: shared.clone(),
            },
        ));
        table.insert(
            id,
            Entry {
                owner: owner.clone(),
                attach,
                shared: shared.clone(),
                detached_since,
            },
        );
        Ok(Accepted::Session(ResilientLink::new(shared, task)))
    }
}

/// Evicts the session without a connection the longest; false if every
/// session has one.
fn evict_one(table: &mut HashMap<SessionId, Entry>) -> bool {
    let oldest = table
        .iter()
        .filter_map(|(id, entry)| {
            let since = *entry.detached_since.lock().ok()?;
            since.map(|since| (since, *id))
        })
        .min_by_key(|(since, _)| *since);
    match oldest {
        Some((_, id)) => {
            if let Some(entry) = table.remove(&id) {
                lock(&entry.shared).finish(Some(LinkError::Protocol(
                    "evicted: the server holds its maximum of sessions".into(),
                )));
            }
            true
        }
        None => false,
    }
}

/// Tells a client why its connection is refused (an `End`; a client
/// without the key fails on its tag instead), then closes, bounded by the
/// link's write limit.
async fn refuse<IO: AsyncRead + AsyncWrite + Unpin>(server: &mut SecureServer<IO>, reason: &str) {
    let end = Message::End {
        ack: 0,
        reason: reason.to_owned(),
    };
    let _ = server.send(end.encode()).await;
    let _ = server.close().await;
}

/// Takes the session out of the table when its task ends, however.
struct Remove {
    table: Table,
    id: SessionId,
    shared: Arc<Mutex<Shared>>,
}

impl Drop for Remove {
    fn drop(&mut self) {
        if let Ok(mut table) = self.table.lock() {
            // Only this session's entry: an evicted one's id may name a
            // newer session by now.
            if table
                .get(&self.id)
                .is_some_and(|entry| Arc::ptr_eq(&entry.shared, &self.shared))
            {
                table.remove(&self.id);
            }
        }
    }
}

/// A session's task: drive each connection the client brings, until the
/// session ends or expires.
async fn run(
    shared: Arc<Mutex<Shared>>,
    mut connections: mpsc::Receiver<Attach>,
    first: Attach,
    config: ResilientConfig,
    detached_since: Arc<Mutex<Option<Instant>>>,
    _remove: Remove,
) {
    let mut next = Some(first);
    loop {
        let (mut connection, hello, credentials) = match next.take() {
            Some(attach) => attach,
            None => {
                let since = Instant::now();
                if let Ok(mut at) = detached_since.lock() {
                    *at = Some(since);
                }
                match tokio::time::timeout_at(since + config.session_expiry, connections.recv())
                    .await
                {
                    Ok(Some(attach)) => attach,
                    // Evicted: the table dropped its sender.
                    Ok(None) => {
                        lock(&shared).finish(None);
                        return;
                    }
                    Err(_) => {
                        lock(&shared).finish(Some(LinkError::PeerDead(config.session_expiry)));
                        return;
                    }
                }
            }
        };
        if lock(&shared).finished() {
            // Evicted while this connection was on its way: it is
            // dropped, and the client starts anew.
            return;
        }
        if let Ok(mut at) = detached_since.lock() {
            *at = None;
        }
        let now = Instant::now().into_std();
        let outcome = {
            let mut guard = lock(&shared);
            // Before the connection carries anything: a renewed client
            // certificate of the same identity is what a reload checks.
            guard.credentials = Some(credentials);
            guard.core.connected(now);
            let handled = guard.core.handle(now, hello);
            // `Connected` now, not with the next frame's events.
            take_events(&mut guard);
            handled
        };
        let outcome = match outcome {
            Ok(()) => {
                // A newer connection of the same client replaces this one.
                let driving = std::pin::pin!(drive(&shared, connection.as_mut()));
                let replaced = std::pin::pin!(connections.recv());
                match futures::future::select(driving, replaced).await {
                    Either::Left((outcome, _)) => outcome,
                    Either::Right((attach, _)) => {
                        next = attach;
                        Err(LinkError::Protocol(
                            "replaced by the client's new connection".into(),
                        ))
                    }
                }
            }
            Err(err) => Err(err),
        };
        let mut guard = lock(&shared);
        guard.core.disconnected();
        match outcome {
            Ok(Ended) => {
                guard.finish(None);
                return;
            }
            Err(err) => guard.event(ResilientEvent::Disconnected {
                error: err.to_string(),
            }),
        }
    }
}

impl fmt::Debug for ResilientAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResilientAcceptor")
            .field("acceptor", &self.acceptor)
            .field("config", &self.config)
            .field("plain", &self.plain)
            .field("sessions", &self.sessions())
            .finish()
    }
}
