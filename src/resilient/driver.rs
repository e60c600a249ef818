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
        let outcome = this.pass(cx);
        if let Poll::Ready(Err(_)) = outcome {
            // A pass that fails may have delivered messages or taken in
            // acknowledgements first: the stream and a flush waiting on
            // them need not wait for the next connection.
            lock(this.shared).wake_application();
        }
        outcome
    }
}

impl Drive<'_> {
    /// Passes until the connection takes nothing more and nothing is due.
    fn pass(&mut self, cx: &mut Context<'_>) -> Poll<Result<Ended, LinkError>> {
        loop {
            let mut shared = lock(self.shared);
            if self.closing {
                drop(shared);
                // Bounded by the connection's own close and write limits.
                let _ = futures::ready!(self.connection.poll_close_unpin(cx));
                return Poll::Ready(Ok(Ended));
            }
            let now = Instant::now();
            if let Some(heard) = self.connection.last_heard() {
                shared.core.heard(heard.into_std());
            }
            // Read while the application has room.
            if shared.has_room() {
                shared.core.unstalled(now.into_std());
            }
            let mut read = Ok(());
            while shared.has_room() && !shared.core.is_ended() {
                match self.connection.poll_next_unpin(cx) {
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
                match self.connection.poll_ready_unpin(cx) {
                    Poll::Ready(Ok(())) => match shared.core.poll_transmit_parts(now.into_std())? {
                        Some((head, body)) => self.connection.start_send_parts(head, body)?,
                        None => break,
                    },
                    Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                    Poll::Pending => {
                        blocked = true;
                        break;
                    }
                }
            }
            if let Poll::Ready(Err(err)) = self.connection.poll_flush_unpin(cx) {
                return Poll::Ready(Err(err));
            }
            shared.wake_application();
            if shared.core.is_ended() {
                self.closing = true;
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
                    if self.timer.deadline() != at {
                        self.timer.as_mut().reset(at);
                    }
                    drop(shared);
                    if self.timer.as_mut().poll(cx).is_ready() {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::VecDeque;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Wake, Waker};

    use bytes::Bytes;
    use futures::{Sink, Stream};
    use tokio::time::Instant;

    use super::{Connection, drive};
    use crate::LinkError;
    use crate::codec::Head;
    use crate::resilient::config::ResilientConfig;
    use crate::resilient::link::{MAX_UNREAD_MESSAGES, Shared, lock};
    use crate::resilient::outbox::{MemoryOutbox, Outbox};
    use crate::resilient::session::Session;
    use crate::resilient::wire::{Hello, Message, SessionId};

    /// A connection that yields the payloads it was given, then its end,
    /// and takes whatever is sent.
    struct Scripted(VecDeque<Bytes>);

    impl Stream for Scripted {
        type Item = Result<Bytes, LinkError>;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    impl Sink<Bytes> for Scripted {
        type Error = LinkError;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
            Poll::Ready(Ok(()))
        }
        fn start_send(self: Pin<&mut Self>, _: Bytes) -> Result<(), LinkError> {
            Ok(())
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
            Poll::Ready(Ok(()))
        }
    }

    impl Connection for Scripted {
        fn last_heard(&self) -> Option<Instant> {
            None
        }
        fn start_send_parts(&mut self, _: Head, _: Bytes) -> Result<(), LinkError> {
            Ok(())
        }
        fn reuse_read_buffers(&mut self) {}
    }

    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// Data that acknowledges everything this end sent, and then the
    /// connection's end, read in one pass: the stream waiting for the data
    /// and the flush waiting for the acknowledgement are woken, not left
    /// until a next connection.
    /// A server's session core, its client's hello handled.
    fn established() -> Session<Box<dyn Outbox>> {
        let config = ResilientConfig::new();
        let id = SessionId([3; 16]);
        let now = Instant::now().into_std();
        let mut core = Session::server(
            id,
            config.clone(),
            1 << 20,
            Box::new(MemoryOutbox::default()) as Box<dyn Outbox>,
            now,
        );
        core.connected(now);
        let hello = Message::Hello {
            first: 0,
            ack: 0,
            hello: Hello {
                session: id,
                resumed: false,
                heartbeat_interval: config.heartbeat_interval,
                dead_time: config.dead_time,
            },
        };
        core.handle(now, hello.encode()).unwrap();
        core
    }

    /// The client's data message `seq`, acknowledging `ack`.
    fn data(seq: u64, ack: u64, body: &'static str) -> Bytes {
        Message::Data {
            seq,
            ack,
            ack_now: false,
            body: Bytes::from(body),
        }
        .encode()
    }

    /// However much one pass could read, it stops once the application's
    /// queue is full: what the core delivers during the pass counts before
    /// it reaches the queue.
    #[tokio::test]
    async fn one_pass_reads_no_more_than_the_application_has_room_for() {
        let shared = Shared::new(established());
        let waiting: VecDeque<Bytes> = (0..MAX_UNREAD_MESSAGES as u64 + 10)
            .map(|seq| data(seq, 0, "m"))
            .collect();
        let mut connection = Scripted(waiting);
        let mut driving = Box::pin(drive(&shared, &mut connection));
        let poll = std::future::poll_fn(|cx| Poll::Ready(driving.as_mut().poll(cx))).await;
        assert!(poll.is_pending(), "{poll:?}");
        drop(driving);
        assert_eq!(lock(&shared).unread.len(), MAX_UNREAD_MESSAGES);
        assert_eq!(connection.0.len(), 10, "left unread");
    }

    #[tokio::test]
    async fn a_pass_that_fails_wakes_the_stream_and_the_flush_for_what_it_took_in() {
        let now = Instant::now().into_std();
        let mut core = established();
        // One message of this end's out, not acknowledged yet.
        core.send(Bytes::from("reply")).unwrap();
        while core.poll_transmit_parts(now).unwrap().is_some() {}
        assert!(!core.all_acked());
        let shared: Arc<Mutex<Shared>> = Shared::new(core);
        let (reader, writer) = (
            Arc::new(Flag(AtomicBool::new(false))),
            Arc::new(Flag(AtomicBool::new(false))),
        );
        lock(&shared).reader = Some(Waker::from(reader.clone()));
        lock(&shared).writer = Some(Waker::from(writer.clone()));

        let mut connection = Scripted(VecDeque::from([data(0, 1, "the last words")]));
        let outcome = drive(&shared, &mut connection).await;

        assert!(matches!(outcome, Err(LinkError::Truncated)), "{outcome:?}");
        assert_eq!(lock(&shared).unread, ["the last words"]);
        assert!(lock(&shared).core.all_acked());
        assert!(reader.0.load(Ordering::SeqCst), "the stream was not woken");
        assert!(writer.0.load(Ordering::SeqCst), "the flush was not woken");
    }
}
