//! [`ResilientLink`]: the application's end of a resilient session, and
//! the state it shares with the task that drives the session.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures::{Sink, Stream};
use tokio::task::JoinHandle;

use super::outbox::Outbox;
use super::session::Session;
use crate::revocation::Credentials;
use crate::{LinkError, Revoked, SecureAcceptor};

/// Messages delivered but not yet taken by the application, at most: the
/// driver stops reading the connection until the application takes some
/// (and the peer's flush waits, since nothing more is acknowledged).
pub const MAX_UNREAD_MESSAGES: usize = 1024;

/// Bytes of messages delivered but not yet taken by the application, at
/// most (one message may cross it): 16 MiB, as the outbox. Past either
/// bound the driver stops reading, and the dead time does not run while
/// it does (this end's silence is not the peer's).
pub const MAX_UNREAD_BYTES: usize = 16 * 1024 * 1024;

/// The sink wakes the driver for queued messages once this many wait (or
/// [`WAKE_AFTER_BYTES`]), and on every flush or close: a producer that
/// feeds a batch has it sent in a few passes of the driver, not one pass
/// and one cross-thread wake per message.
const WAKE_AFTER_MESSAGES: usize = 32;

/// See [`WAKE_AFTER_MESSAGES`]: 64 KiB.
const WAKE_AFTER_BYTES: usize = 64 * 1024;

/// Events kept for [`ResilientLink::take_events`]; older ones are dropped
/// first (and counted in [`ResilientStats::events_dropped`]).
pub const MAX_EVENTS: usize = 64;

/// What happened to a resilient session, for the application (no logging
/// needed).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResilientEvent {
    /// A connection carries the session. `resumed`: the peer still had it
    /// (nothing is lost or sent twice); otherwise it is new.
    Connected {
        /// The peer still had the session.
        resumed: bool,
    },
    /// The peer had lost the session (it restarted): everything it never
    /// acknowledged is sent again. Of those, `resent` had gone to the dead
    /// incarnation, which may have delivered some of them already: the
    /// application decides whether a second delivery matters.
    PeerRestarted {
        /// Messages sent again that the dead incarnation may have had.
        resent: u64,
    },
    /// The connection was lost; `error` says how. A client reconnects
    /// after it (if the error can heal); a server waits for the client.
    Disconnected {
        /// Why, in words (the error itself is returned only when it ends
        /// the session).
        error: String,
    },
    /// A heartbeat's round-trip time.
    RoundTrip(Duration),
}

/// Counters of a resilient session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResilientStats {
    /// Connections that carried the session.
    pub connections: u64,
    /// Hellos that resumed it.
    pub resumes: u64,
    /// Data messages sent again after a reconnect.
    pub resent: u64,
    /// Messages that arrived twice and were dropped.
    pub duplicates: u64,
    /// Acknowledgements sent on their own.
    pub standalone_acks: u64,
    /// Heartbeats sent.
    pub heartbeats: u64,
    /// Data messages sent, resends included.
    pub data_sent: u64,
    /// Messages delivered to this end's stream.
    pub delivered: u64,
    /// Messages not yet acknowledged by the peer.
    pub unacked: usize,
    /// The last round-trip time measured.
    pub round_trip: Option<Duration>,
    /// Events dropped because [`MAX_EVENTS`] were waiting.
    pub events_dropped: u64,
}

/// The state an application's [`ResilientLink`] shares with its driver.
pub(crate) struct Shared {
    pub(crate) core: Session<Box<dyn Outbox>>,
    pub(crate) unread: VecDeque<Bytes>,
    /// The bytes in `unread`.
    pub(crate) unread_bytes: usize,
    pub(crate) events: VecDeque<ResilientEvent>,
    pub(crate) stats: ResilientStats,
    /// The error that ended the session, for the stream (taken once) and
    /// the sink (every call).
    pub(crate) error: Option<LinkError>,
    pub(crate) stream_error_taken: bool,
    /// The driver stopped: nothing moves any more ([`finished`](Shared::finished));
    /// shared with the link, whose sink's `poll_ready` reads it without
    /// the lock.
    ended: Arc<AtomicBool>,
    /// What a client that gave up did not get acknowledged.
    pub(crate) handed_back: Vec<Bytes>,
    /// What authorised the session's last connection (a server's
    /// sessions only), for [`ResilientLink::revoked_by`].
    pub(crate) credentials: Option<Credentials>,
    pub(crate) driver: Option<Waker>,
    /// Messages and bytes queued by the sink since the driver was last
    /// woken for them (see [`WAKE_AFTER_MESSAGES`]).
    unwoken: (usize, usize),
    pub(crate) reader: Option<Waker>,
    pub(crate) writer: Option<Waker>,
    pub(crate) watcher: Option<Waker>,
}

impl Shared {
    pub(crate) fn new(core: Session<Box<dyn Outbox>>) -> Arc<Mutex<Shared>> {
        Arc::new(Mutex::new(Shared {
            core,
            unread: VecDeque::new(),
            unread_bytes: 0,
            events: VecDeque::new(),
            stats: ResilientStats::default(),
            error: None,
            stream_error_taken: false,
            ended: Arc::default(),
            handed_back: Vec::new(),
            credentials: None,
            driver: None,
            unwoken: (0, 0),
            reader: None,
            writer: None,
            watcher: None,
        }))
    }

    /// Whether the application has room for more messages
    /// ([`MAX_UNREAD_MESSAGES`], [`MAX_UNREAD_BYTES`]).
    pub(crate) fn has_room(&self) -> bool {
        let (messages, bytes) = self.core.delivered();
        self.unread.len() + messages < MAX_UNREAD_MESSAGES
            && self.unread_bytes + bytes < MAX_UNREAD_BYTES
    }

    fn pop_unread(&mut self) -> Option<Bytes> {
        let message = self.unread.pop_front()?;
        self.unread_bytes -= message.len();
        Some(message)
    }

    pub(crate) fn event(&mut self, event: ResilientEvent) {
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        if let ResilientEvent::RoundTrip(rtt) = event {
            self.stats.round_trip = Some(rtt);
        }
        self.events.push_back(event);
        if let Some(waker) = self.watcher.take() {
            waker.wake();
        }
    }

    /// Whether the driver stopped: nothing moves any more.
    pub(crate) fn finished(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// The session is over: wake everyone.
    pub(crate) fn finish(&mut self, error: Option<LinkError>) {
        if self.error.is_none() {
            self.error = error;
        }
        self.ended.store(true, Ordering::Release);
        self.wake_application();
    }

    pub(crate) fn wake_application(&mut self) {
        if self.finished()
            && let Some(waker) = self.watcher.take()
        {
            waker.wake();
        }
        if let Some(waker) = self.reader.take() {
            waker.wake();
        }
        if let Some(waker) = self.writer.take() {
            waker.wake();
        }
    }

    fn wake_driver(&mut self) {
        self.unwoken = (0, 0);
        if let Some(waker) = self.driver.take() {
            waker.wake();
        }
    }
}

pub(crate) fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic while the lock was held left counters, not invariants a
    // reader could break: go on with them.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One end of a resilient session: a [`Sink`] of messages to the peer and
/// a [`Stream`] of the peer's, that outlive connections.
///
/// A task on the current Tokio runtime drives the session (connections,
/// heartbeats, resends); dropping the link stops it at once (without an
/// `End`: the peer's session waits for its expiry). Call `close()` to end
/// the session.
///
/// # Sink
///
/// * `poll_ready` is pending while the outbox is full (in messages or
///   bytes): a producer slows down during a partition instead of growing
///   memory.
/// * Messages given to `start_send` (`feed`) go out once 32 of them or
///   64 KiB wait, when the outbox is full, or on the next flush or close,
///   as a [`Framed`](tokio_util::codec::Framed) sink sends what it
///   buffered: `send` (which flushes) sends at once.
/// * `poll_flush` completes when the peer acknowledged everything fed so
///   far, so `send(m).await` means "in the peer's stream". It waits across
///   reconnects, as long as it takes: bound it with
///   [`tokio::time::timeout`] where that matters.
/// * `poll_close` flushes, then ends the session (an `End` the peer's
///   stream sees as its end) and closes the connection.
/// * After the session ended with an error every call returns it
///   ([`LinkError::GaveUp`] for a client that gave up: see
///   [`take_unacked`](ResilientLink::take_unacked)).
///
/// # Stream
///
/// Each message of the peer exactly once, in order. It ends (`None`) when
/// the peer ends the session, after an error that ends it, which it yields
/// once. At most [`MAX_UNREAD_MESSAGES`] and [`MAX_UNREAD_BYTES`] wait for
/// the application.
///
/// # Cancellation safety
///
/// `next()` is cancellation safe. A dropped `send` future may have queued
/// its message; it is then delivered like any other.
pub struct ResilientLink {
    shared: Arc<Mutex<Shared>>,
    task: Option<JoinHandle<()>>,
    /// The outbox had room after the last `start_send`: the next
    /// `poll_ready` needs no lock, unless the session ended since
    /// (`ended`).
    room: bool,
    ended: Arc<AtomicBool>,
}

impl ResilientLink {
    pub(crate) fn new(shared: Arc<Mutex<Shared>>, task: JoinHandle<()>) -> Self {
        let ended = lock(&shared).ended.clone();
        ResilientLink {
            shared,
            task: Some(task),
            room: false,
            ended,
        }
    }

    /// The events since the last call, oldest first (at most
    /// [`MAX_EVENTS`]).
    pub fn take_events(&self) -> Vec<ResilientEvent> {
        lock(&self.shared).events.drain(..).collect()
    }

    /// The next event; `None` once the session is over and every event
    /// was taken. Cancellation safe.
    pub async fn next_event(&self) -> Option<ResilientEvent> {
        next_event(&self.shared).await
    }

    /// A handle on the events alone, to wait for them beside the stream
    /// (which needs the link itself).
    pub fn events(&self) -> ResilientEvents {
        ResilientEvents {
            shared: self.shared.clone(),
        }
    }

    /// The session's id, as 32 hex digits (for logs: sessions are bound
    /// to their peer, so the id alone grants nothing).
    pub fn session_id(&self) -> String {
        hex::encode(lock(&self.shared).core.session_id().0)
    }

    /// The session's counters now.
    pub fn stats(&self) -> ResilientStats {
        stats(&self.shared)
    }

    /// Whether a connection carries the session now.
    pub fn is_connected(&self) -> bool {
        lock(&self.shared).core.is_established()
    }

    /// Whether `acceptor`'s configuration still authorises this session,
    /// after a reload that removed a key or a client CA (as
    /// [`SecureServer::revoked_by`](crate::SecureServer::revoked_by) for a
    /// plain link): `Some` when the HMAC key the session is bound to is not
    /// among `acceptor`'s keys ([`Revoked::Key`]), or when `acceptor`
    /// requires client certificates and the chain of the session's last
    /// connection does not verify under its CAs now ([`Revoked::ClientCa`]).
    /// Always `None` on a client's link.
    ///
    /// The caller decides what follows; `secure-link serve --resilient`
    /// drops the link, which ends the session and its connection at once
    /// (the client's reconnect is then refused by the new configuration:
    /// its hello verifies under no key, or its certificate under no CA,
    /// and neither is retried).
    pub fn revoked_by(&self, acceptor: &SecureAcceptor) -> Option<Revoked> {
        let credentials = lock(&self.shared).credentials.clone()?;
        acceptor.revokes(&credentials)
    }

    /// The messages the peer did not acknowledge, oldest first, once the
    /// session ended with an error (a client that gave up,
    /// [`LinkError::GaveUp`]); empty before, and after the first call.
    /// The peer may have received some of them.
    pub fn take_unacked(&self) -> Vec<Bytes> {
        let mut shared = lock(&self.shared);
        if !shared.finished() {
            return Vec::new();
        }
        let mut messages = std::mem::take(&mut shared.handed_back);
        messages.extend(shared.core.take_unacked());
        messages
    }

    fn sink_error(shared: &Shared) -> Option<LinkError> {
        shared
            .error
            .as_ref()
            .map(LinkError::duplicate)
            .or_else(|| shared.finished().then_some(LinkError::SinkClosed))
    }
}

fn stats(shared: &Mutex<Shared>) -> ResilientStats {
    let shared = lock(shared);
    let core = shared.core.stats();
    ResilientStats {
        resumes: core.resumes,
        resent: core.resent,
        duplicates: core.duplicates,
        standalone_acks: core.standalone_acks,
        heartbeats: core.heartbeats,
        data_sent: core.data_sent,
        delivered: core.delivered,
        unacked: shared.core.unacked(),
        ..shared.stats
    }
}

async fn next_event(shared: &Mutex<Shared>) -> Option<ResilientEvent> {
    std::future::poll_fn(|cx| {
        let mut shared = lock(shared);
        if let Some(event) = shared.events.pop_front() {
            return Poll::Ready(Some(event));
        }
        if shared.finished() {
            return Poll::Ready(None);
        }
        shared.watcher = Some(cx.waker().clone());
        Poll::Pending
    })
    .await
}

/// The events and counters of a [`ResilientLink`], apart from it
/// ([`ResilientLink::events`]). One waiter at a time: of two tasks
/// waiting on the same link's events at once, only the one that waited
/// last is woken.
#[derive(Clone)]
pub struct ResilientEvents {
    shared: Arc<Mutex<Shared>>,
}

impl ResilientEvents {
    /// As [`ResilientLink::next_event`].
    pub async fn next_event(&self) -> Option<ResilientEvent> {
        next_event(&self.shared).await
    }

    /// As [`ResilientLink::stats`] (also after the link was dropped).
    pub fn stats(&self) -> ResilientStats {
        stats(&self.shared)
    }
}

impl fmt::Debug for ResilientEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResilientEvents").finish_non_exhaustive()
    }
}

impl Drop for ResilientLink {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Sink<Bytes> for ResilientLink {
    type Error = LinkError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        if self.room && !self.ended.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        let mut shared = lock(&self.shared);
        if let Some(err) = Self::sink_error(&shared) {
            return Poll::Ready(Err(err));
        }
        if shared.core.has_room(0) {
            return Poll::Ready(Ok(()));
        }
        // Full: whatever waits must go out for room to come back.
        if shared.unwoken.0 > 0 {
            shared.wake_driver();
        }
        shared.writer = Some(cx.waker().clone());
        Poll::Pending
    }

    fn start_send(self: Pin<&mut Self>, message: Bytes) -> Result<(), LinkError> {
        let this = self.get_mut();
        this.room = false;
        let mut shared = lock(&this.shared);
        if let Some(err) = Self::sink_error(&shared) {
            return Err(err);
        }
        let len = message.len();
        shared.core.send(message)?;
        this.room = shared.core.has_room(0);
        let (messages, bytes) = &mut shared.unwoken;
        *messages += 1;
        *bytes += len;
        if *messages >= WAKE_AFTER_MESSAGES || *bytes >= WAKE_AFTER_BYTES {
            shared.wake_driver();
        }
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        let mut shared = lock(&self.shared);
        if let Some(err) = &shared.error {
            return Poll::Ready(Err(err.duplicate()));
        }
        if shared.core.all_acked() {
            return Poll::Ready(Ok(()));
        }
        if shared.finished() {
            return Poll::Ready(Err(LinkError::SinkClosed));
        }
        // Woken once for what was queued since it last was: the driver
        // wakes this task whenever it ran, and waking it back every time
        // would keep both busy until the acknowledgement came.
        if shared.unwoken.0 > 0 {
            shared.wake_driver();
        }
        shared.writer = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        futures::ready!(self.as_mut().poll_flush(cx))?;
        let mut shared = lock(&self.shared);
        if let Some(err) = &shared.error {
            return Poll::Ready(Err(err.duplicate()));
        }
        if shared.finished() {
            return Poll::Ready(Ok(()));
        }
        shared.writer = Some(cx.waker().clone());
        if shared.core.end("closed by the application") {
            shared.wake_driver();
        }
        Poll::Pending
    }
}

impl Stream for ResilientLink {
    type Item = Result<Bytes, LinkError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut shared = lock(&self.shared);
        let full = !shared.has_room();
        if let Some(message) = shared.pop_unread() {
            if full && shared.has_room() {
                // Room again: the driver may read on.
                shared.wake_driver();
            }
            return Poll::Ready(Some(Ok(message)));
        }
        if shared.finished() {
            if !shared.stream_error_taken {
                shared.stream_error_taken = true;
                if let Some(err) = &shared.error {
                    return Poll::Ready(Some(Err(err.duplicate())));
                }
            }
            return Poll::Ready(None);
        }
        shared.reader = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl fmt::Debug for ResilientLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = lock(&self.shared);
        f.debug_struct("ResilientLink")
            .field("session", &shared.core)
            .field("unread", &shared.unread.len())
            .field("finished", &shared.finished())
            .finish_non_exhaustive()
    }
}
