//! Moving one connection's bytes through the session core: the thin
//! async layer around [`Session`](super::session::Session), shared by the
//! client and the server.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

use super::link::{ResilientEvent, Shared, lock};
use super::session::Event;
use crate::codec::Head;
use crate::{LinkError, SecureClient, SecureServer};

/// A connection the driver can carry a session over: a secure link of
/// this crate that stamps its reads.
pub(crate) trait Connection:
    Sink<Bytes, Error = LinkError> + Stream<Item = Result<Bytes, LinkError>> + Unpin + Send
{
    /// When a read last brought bytes in.
    fn last_heard(&self) -> Option<Instant>;
    /// `start_send` of one frame whose payload is `head` then `body`.
    fn start_send_parts(&mut self, head: Head, body: Bytes) -> Result<(), LinkError>;
    /// Reuse the read buffers that delivered messages kept (they wait in
    /// the application's queue): see `HmacFrameCodec::reuse_read_buffers`.
    fn reuse_read_buffers(&mut self);
}

impl<IO: AsyncRead + AsyncWrite + Unpin + Send> Connection for SecureClient<IO> {
    fn last_heard(&self) -> Option<Instant> {
        SecureClient::last_heard(self)
    }
    fn start_send_parts(&mut self, head: Head, body: Bytes) -> Result<(), LinkError> {
        SecureClient::start_send_parts(self, head, body)
    }
    fn reuse_read_buffers(&mut self) {
        SecureClient::reuse_read_buffers(self)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin + Send> Connection for SecureServer<IO> {
    fn last_heard(&self) -> Option<Instant> {
        SecureServer::last_heard(self)
    }
    fn start_send_parts(&mut self, head: Head, body: Bytes) -> Result<(), LinkError> {
        SecureServer::start_send_parts(self, head, body)
    }
    fn reuse_read_buffers(&mut self) {
        SecureServer::reuse_read_buffers(self)
    }
}

/// How a connection's drive ended without an error: the session is over
/// (an `End` went out or came in, and the connection was closed).
#[derive(Debug)]
pub(crate) struct Ended;

/// Drives `connection` until it fails (the error) or the session ends.
/// The caller has called `connected` on the core (and, on a server,
/// handed it the client's hello).
pub(crate) fn drive<'a>(
    shared: &'a Arc<Mutex<Shared>>,
    connection: &'a mut dyn Connection,
) -> impl Future<Output = Result<Ended, LinkError>> + Send + 'a {
    connection.reuse_read_buffers();
    Drive {
        shared,
        connection,
        timer: Box::pin(tokio::time::sleep_until(Instant::now())),
        closing: false,
    }
}

struct Drive<'a> {
    shared: &'a Arc<Mutex<Shared>>,
    connection: &'a mut dyn Connection,
    timer: Pin<Box<Sleep>>,
    /// The session is over: the connection is being closed.
    closing: bool,
}

impl Future for Drive<'_> {
    type Output = Result<Ended, LinkError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            let mut shared = lock(this.shared);
            if this.closing {
                drop(shared);
                // Bounded by the connection's own close and write limits.
                let _ = futures::ready!(this.connection.poll_close_unpin(cx));
                return Poll::Ready(Ok(Ended));
            }
            let now = Instant::now();
            if let Some(heard) = this.connection.last_heard() {
                shared.core.heard(heard.into_std());
            }
            // Read while the application has room.
            if shared.has_room() {
                shared.core.unstalled(now.into_std());
            }
            let mut read = Ok(());
            while shared.has_room() && !shared.core.is_ended() {
                match this.connection.poll_next_unpin(cx) {
                    Poll::Ready(Some(Ok(payload))) => {
                        if let Err(err) = shared.core.handle(now.into_std(), payload) {
                            read = Err(err);
                            break;
                        }
                    }
                    Poll::Ready(Some(Err(err))) => {
                        read = Err(err);
                        break;
                    }
                    Poll::Ready(None) => {
                        read = Err(LinkError::Truncated);
                        break;
                    }
                    Poll::Pending => break,
                }
            }
            // What arrived before an error reaches the application too.
            take_events(&mut shared);
            read?;
            if !shared.has_room() {
                // Not reading: the dead time waits for room.
                shared.core.stalled(now.into_std());
            }
            shared.core.handle_timeout(now.into_std())?;
            // Send what the core has, as far as the connection takes it.
            let mut blocked = false;
            loop {
                match this.connection.poll_ready_unpin(cx) {
                    Poll::Ready(Ok(())) => match shared.core.poll_transmit_parts(now.into_std())? {
                        Some((head, body)) => this.connection.start_send_parts(head, body)?,
                        None => break,
                    },
                    Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                    Poll::Pending => {
                        blocked = true;
                        break;
                    }
                }
            }
            if let Poll::Ready(Err(err)) = this.connection.poll_flush_unpin(cx) {
                return Poll::Ready(Err(err));
            }
            shared.wake_application();
            if shared.core.is_ended() {
                this.closing = true;
                continue;
            }
            shared.driver = Some(cx.waker().clone());
            // A connection that takes nothing wakes the driver when it
            // does; until then a heartbeat or acknowledgement due could
            // not go out, and waking for it would spin.
            let deadline = if blocked {
                shared.core.dead_deadline()
            } else {
                shared.core.poll_timeout()
            };
            match deadline {
                Some(at) => {
                    let at = Instant::from_std(at);
                    if this.timer.deadline() != at {
                        this.timer.as_mut().reset(at);
                    }
                    drop(shared);
                    if this.timer.as_mut().poll(cx).is_ready() {
                        continue;
                    }
                }
                None => drop(shared),
            }
            return Poll::Pending;
        }
    }
}

/// Moves the core's events to the application's side.
pub(crate) fn take_events(shared: &mut Shared) {
    shared.unread_bytes += shared.core.take_delivered(&mut shared.unread);
    while let Some(event) = shared.core.poll_event() {
        match event {
            Event::Established {
                resumed,
                peer_restarted,
                ..
            } => {
                shared.stats.connections += 1;
                shared.event(ResilientEvent::Connected { resumed });
                if let Some(resent) = peer_restarted {
                    shared.event(ResilientEvent::PeerRestarted { resent });
                }
            }
            Event::RoundTrip(rtt) => shared.event(ResilientEvent::RoundTrip(rtt)),
            Event::Ended { .. } => {}
        }
    }
}
