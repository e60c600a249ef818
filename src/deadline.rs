//! Read deadlines of a server connection: the first authenticated message
//! must come within one limit, and later ones within an idle limit of the
//! last message the peer sent.
//!
//! "Sent" is measured where it can be seen: [`Heard`] stamps the time of
//! every read that brings bytes in. Before the first message, only a whole
//! message counts: a client that trickles its first frame a byte at a time
//! is silent until the frame is whole, and the first-message limit bounds
//! the whole first frame (an anonymous peer cannot hold a connection by
//! dribbling). After it, any bytes read count as heard: a large message
//! arriving slower than the idle limit is not silence. The link reads
//! above TLS, so "bytes" means a TLS record (at most 16 KiB of plaintext)
//! decrypted: a peer sending less than one record per idle limit is
//! silent to it. A message taken
//! late by the application counts from the read that brought it, not
//! from when it was taken; bytes the server has not read yet (its own
//! backlog in the socket) are not seen until it reads them, which only
//! ever moves the deadline later.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::LinkError;

/// Tracks both deadlines with one timer. The timer is not reset per
/// message (that would cost a timer update per frame on a busy link): it
/// fires at the earliest possible deadline and is then pushed to the real
/// one, computed from the time the last message was heard.
pub(crate) struct ReadDeadline {
    /// What the timer means until the first message (its error on
    /// expiry); `None` once a message came, or with no deadline at all.
    before_first: Option<BeforeFirst>,
    idle: Option<Duration>,
    timer: Option<Pin<Box<Sleep>>>,
    last_heard: Instant,
}

impl ReadDeadline {
    pub(crate) fn new(first_message: Option<Duration>, idle: Option<Duration>) -> Self {
        let now = Instant::now();
        let before_first = match (first_message, idle) {
            (Some(limit), _) => Some(BeforeFirst::FirstMessage(limit)),
            (None, Some(limit)) => Some(BeforeFirst::Idle(limit)),
            (None, None) => None,
        };
        // No timer for a limit too far for the clock: it never fires.
        let timer = before_first
            .and_then(|first| deadline_after(now, first.limit()))
            .map(|deadline| Box::pin(tokio::time::sleep_until(deadline)));
        ReadDeadline {
            before_first,
            idle,
            timer,
            last_heard: now,
        }
    }

    /// Whether any deadline is set: only then do reads need a time stamp.
    pub(crate) fn is_armed(&self) -> bool {
        self.timer.is_some()
    }

    /// Records that a message was yielded, completed by a read at `heard`.
    #[inline]
    pub(crate) fn on_message(&mut self, heard: Option<Instant>) {
        let Some(timer) = self.timer.as_mut() else {
            return;
        };
        // A message is always completed by a read, which stamped `heard`;
        // the fallback keeps the deadline sound if that ever changes.
        self.last_heard = heard.unwrap_or_else(Instant::now);
        if self.before_first.take().is_some() {
            match self
                .idle
                .and_then(|idle| deadline_after(self.last_heard, idle))
            {
                Some(deadline) => timer.as_mut().reset(deadline),
                None => self.timer = None,
            }
        }
    }

    /// Called when the stream has nothing to yield: registers the timer
    /// with `cx` and reports an expired deadline. `last_read` is when a
    /// read last brought bytes in (a frame in progress, say): after the
    /// first message it counts as heard.
    pub(crate) fn poll_expired(
        &mut self,
        cx: &mut Context<'_>,
        last_read: Option<Instant>,
    ) -> Option<LinkError> {
        let timer = self.timer.as_mut()?;
        let after_first = self.before_first.is_none();
        if let Some(read) = last_read.filter(|&read| after_first && read > self.last_heard) {
            self.last_heard = read;
        }
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return None;
            }
            if let Some(first) = self.before_first {
                return Some(match first {
                    BeforeFirst::FirstMessage(limit) => LinkError::FirstMessageTimeout(limit),
                    BeforeFirst::Idle(limit) => LinkError::IdleTimeout(limit),
                });
            }
            let idle = self.idle?;
            let deadline = deadline_after(self.last_heard, idle)?;
            if deadline <= Instant::now() {
                return Some(LinkError::IdleTimeout(idle));
            }
            timer.as_mut().reset(deadline);
        }
    }
}

/// How far ahead a deadline too far for the clock is put instead: about 30
/// years, as tokio does for `sleep(Duration::MAX)`.
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);

/// `at + limit`, saturated: a limit past what an `Instant` can hold
/// (`Duration::MAX`, say) is a deadline [`FAR_FUTURE`] away, never a
/// panic; `None` (no deadline at all) if even that does not fit. Limits
/// are user input.
pub(crate) fn deadline_after(at: Instant, limit: Duration) -> Option<Instant> {
    at.checked_add(limit).or_else(|| at.checked_add(FAR_FUTURE))
}

/// The limit the timer runs against before the first message: the
/// first-message limit, or the idle limit when that is the only one.
#[derive(Clone, Copy)]
enum BeforeFirst {
    FirstMessage(Duration),
    Idle(Duration),
}

impl BeforeFirst {
    fn limit(self) -> Duration {
        match self {
            BeforeFirst::FirstMessage(limit) | BeforeFirst::Idle(limit) => limit,
        }
    }
}

/// A transport that remembers when a read last brought bytes in (when
/// stamping is on: one clock read per read, none per message).
#[derive(Debug)]
pub(crate) struct Heard<T> {
    inner: T,
    stamping: bool,
    last_read: Option<Instant>,
}

impl<T> Heard<T> {
    pub(crate) fn new(inner: T, stamping: bool) -> Self {
        Heard {
            inner,
            stamping,
            last_read: None,
        }
    }

    /// When the last read that brought bytes in returned.
    pub(crate) fn last_read(&self) -> Option<Instant> {
        self.last_read
    }

    pub(crate) fn get_ref(&self) -> &T {
        &self.inner
    }

    pub(crate) fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    pub(crate) fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Heard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if self.stamping && buf.filled().len() > before {
            self.last_read = Some(Instant::now());
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Heard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
