//! The write deadline of a link: a write, flush or shutdown that makes no
//! progress for the limit fails with [`LinkError::WriteTimeout`], so a
//! peer that stops taking bytes (a hung process, a black-holed route, a
//! power cut without FIN or RST) is found out in that time instead of when
//! the kernel gives up on the connection (about 15 minutes on Linux).
//!
//! Progress is counted in bytes the link hands on: plaintext rustls takes
//! into its buffer (at most 64 KiB ahead of the transport), and every
//! write of TLS records that the transport takes, not the end of a flush. A flush of a
//! large buffer to a slow but live peer therefore never times out, however
//! long it takes, as long as the peer takes something within each limit.
//! To see those writes, the wrapper writes the TLS connection's pending
//! records itself (rustls' `write_tls`) before handing the flush or
//! shutdown to tokio-rustls, which then has only the transport's own flush
//! left to do.
//!
//! A write that fails with an I/O error (a broken pipe, a reset) is
//! answered with the peer's TLS alert instead, where one arrived before
//! the peer closed: the transport is read for it (a few reads, bounded by
//! the write limit) before the error is returned.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tokio_rustls::rustls;

use crate::LinkError;
use crate::deadline::deadline_after;

/// A TLS stream whose pending records can be written one `write_tls` at a
/// time: tokio-rustls' client and server streams.
pub(crate) trait TlsTransport: AsyncRead + AsyncWrite + Unpin {
    /// Writes pending TLS records to the transport, once: `Ok(0)` when
    /// none are pending, `Ok(n)` for `n` bytes taken, `Pending` when the
    /// transport takes nothing now.
    fn poll_write_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>>;

    /// Reads the transport for a TLS error (the peer's alert): `Some` if
    /// what arrives holds one, `None` at its end, on a read error, or when
    /// a few reads held none; `Pending` until the transport has something.
    /// Plaintext read on the way stays in rustls' buffer for the link's
    /// next read.
    fn poll_received_error(&mut self, cx: &mut Context<'_>) -> Poll<Option<rustls::Error>>;
}

macro_rules! tls_transport {
    ($stream:ty) => {
        impl<IO: AsyncRead + AsyncWrite + Unpin> TlsTransport for $stream {
            fn poll_write_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
                let (io, conn) = self.get_mut();
                write_tls(io, conn, cx)
            }

            fn poll_received_error(&mut self, cx: &mut Context<'_>) -> Poll<Option<rustls::Error>> {
                let (io, conn) = self.get_mut();
                received_error(io, conn, cx)
            }
        }
    };
}
tls_transport!(tokio_rustls::client::TlsStream<IO>);
tls_transport!(tokio_rustls::server::TlsStream<IO>);

fn write_tls<IO: AsyncWrite + Unpin, D>(
    io: &mut IO,
    conn: &mut rustls::ConnectionCommon<D>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if !conn.wants_write() {
        return Poll::Ready(Ok(0));
    }
    match conn.write_tls(&mut SyncWriter { io, cx }) {
        Ok(0) => Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
        Ok(written) => Poll::Ready(Ok(written)),
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
        Err(err) => Poll::Ready(Err(err)),
    }
}

/// How long a failed write waits for the peer's alert to become readable
/// (see `WriteDeadline::explained`): the bytes are in the kernel already,
/// only the reactor has to see them.
const ALERT_WAIT: Duration = Duration::from_millis(500);

/// How many reads [`received_error`] tries: an alert is one small record,
/// usually in the first read; this bounds the work after a failed write.
const ALERT_READS: usize = 4;

fn received_error<IO: AsyncRead + Unpin, D>(
    io: &mut IO,
    conn: &mut rustls::ConnectionCommon<D>,
    cx: &mut Context<'_>,
) -> Poll<Option<rustls::Error>> {
    for _ in 0..ALERT_READS {
        // rustls reads no more records while it holds plaintext the link
        // has not taken (`wants_read` is false then): an alert behind
        // application data is found by the link's next read instead.
        if !conn.wants_read() {
            return Poll::Ready(None);
        }
        match conn.read_tls(&mut SyncReader { io, cx }) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            Ok(0) | Err(_) => return Poll::Ready(None),
            Ok(_) => {
                if let Err(err) = conn.process_new_packets() {
                    return Poll::Ready(Some(err));
                }
            }
        }
    }
    Poll::Ready(None)
}

/// An `AsyncRead` seen as a `std::io::Read` for one poll.
struct SyncReader<'a, 'b, IO> {
    io: &'a mut IO,
    cx: &'a mut Context<'b>,
}

impl<IO: AsyncRead + Unpin> io::Read for SyncReader<'_, '_, IO> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut buf = ReadBuf::new(buf);
        match Pin::new(&mut *self.io).poll_read(self.cx, &mut buf) {
            Poll::Ready(Ok(())) => Ok(buf.filled().len()),
            Poll::Ready(Err(err)) => Err(err),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// An `AsyncWrite` seen as a `std::io::Write` for one poll: `Pending` is
/// `WouldBlock` (the waker is registered).
struct SyncWriter<'a, 'b, IO> {
    io: &'a mut IO,
    cx: &'a mut Context<'b>,
}

impl<IO: AsyncWrite + Unpin> io::Write for SyncWriter<'_, '_, IO> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write_vectored(self.cx, bufs) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match Pin::new(&mut *self.io).poll_flush(self.cx) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// A TLS stream with a write deadline (none when `limit` is `None`).
#[derive(Debug)]
pub(crate) struct WriteDeadline<T> {
    inner: T,
    limit: Option<Duration>,
    /// The timer, allocated on the first wait and reset for each later one
    /// (not allocated per stall).
    timer: Option<Pin<Box<Sleep>>>,
    /// The timer runs for the current wait; any progress stops it.
    armed: bool,
    /// The limit passed once: the link's writes are over (a frame may be
    /// half written), and every later write fails the same way at once.
    timed_out: Option<Duration>,
    /// A write failed with this I/O error: the transport is being read
    /// for the peer's alert, the better cause, for at most
    /// [`ALERT_WAIT`] (`alert_wait`), before it is returned.
    failed: Option<io::Error>,
    alert_wait: Option<Pin<Box<Sleep>>>,
    /// `disarm` was called: no timer may be armed.
    disarmed: bool,
}

impl<T> WriteDeadline<T> {
    pub(crate) fn new(inner: T, limit: Option<Duration>) -> Self {
        WriteDeadline {
            inner,
            limit,
            timer: None,
            armed: false,
            timed_out: None,
            failed: None,
            alert_wait: None,
            disarmed: false,
        }
    }

    /// No deadline from now on (a last attempt that must not arm a timer,
    /// say from `Drop`, possibly outside a runtime).
    pub(crate) fn disarm(&mut self) {
        self.limit = None;
        self.armed = false;
        self.disarmed = true;
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

    /// What a call on the inner stream gave, seen by the deadline: `Ready`
    /// is progress (the wait, if any, starts again), `Pending` a wait.
    fn settle<R>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match poll {
            Poll::Ready(result) => {
                self.armed = false;
                Poll::Ready(result)
            }
            Poll::Pending => self.waiting(cx),
        }
    }

    /// The peer took nothing: `Pending` while the limit has not passed
    /// since the last progress, then the timeout.
    fn waiting<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let Some(limit) = self.limit else {
            return Poll::Pending;
        };
        if !self.armed {
            // A limit too far for the clock: no deadline at all.
            let Some(deadline) = deadline_after(Instant::now(), limit) else {
                return Poll::Pending;
            };
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.armed = true;
        }
        let Some(timer) = self.timer.as_mut() else {
            return Poll::Pending;
        };
        ready!(timer.as_mut().poll(cx));
        self.armed = false;
        self.timed_out = Some(limit);
        Poll::Ready(Err(LinkError::WriteTimeout(limit).into()))
    }
}

impl<T: TlsTransport> WriteDeadline<T> {
    /// Runs `op` on the inner stream under the deadline, after any earlier
    /// timeout (which stays final) and, if `drain`, after writing every
    /// pending TLS record (each write that takes bytes is progress).
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        drain: bool,
        op: impl FnOnce(Pin<&mut T>, &mut Context<'_>) -> Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if let Some(err) = self.failed.take() {
            return self.explained(cx, err);
        }
        if let Some(limit) = self.timed_out {
            return Poll::Ready(Err(LinkError::WriteTimeout(limit).into()));
        }
        if drain {
            loop {
                match self.inner.poll_write_tls(cx) {
                    Poll::Ready(Ok(0)) => break,
                    Poll::Ready(Ok(_)) => self.armed = false,
                    Poll::Ready(Err(err)) => return self.explained(cx, err),
                    Poll::Pending => return self.waiting(cx),
                }
            }
        }
        match op(Pin::new(&mut self.inner), cx) {
            Poll::Ready(Err(err)) => self.explained(cx, err),
            poll => self.settle(cx, poll),
        }
    }

    /// A failed write's error, with the better cause where the peer sent
    /// one before it closed: its alert (a client certificate refused after
    /// the client's handshake ended, say), which a broken pipe or a reset
    /// hides although it is in the transport's receive buffer. The reactor
    /// may not have seen those bytes yet when the write fails, so this
    /// waits for them to be readable, at most [`ALERT_WAIT`] (and at most
    /// the write limit); then `err` as it was. Not a write timeout: the
    /// link's later writes are not failed by it.
    fn explained<R>(&mut self, cx: &mut Context<'_>, err: io::Error) -> Poll<io::Result<R>> {
        let typed = err
            .get_ref()
            .is_some_and(|inner| inner.is::<rustls::Error>() || inner.is::<LinkError>());
        if typed {
            return Poll::Ready(Err(err));
        }
        let found = match self.inner.poll_received_error(cx) {
            Poll::Ready(found) => found,
            Poll::Pending if self.disarmed => None,
            Poll::Pending => {
                let wait = self.limit.map_or(ALERT_WAIT, |limit| limit.min(ALERT_WAIT));
                let timer = self
                    .alert_wait
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(wait)));
                if timer.as_mut().poll(cx).is_pending() {
                    self.failed = Some(err);
                    return Poll::Pending;
                }
                None
            }
        };
        self.alert_wait = None;
        match found {
            Some(alert) => Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, alert))),
            None => Poll::Ready(Err(err)),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: TlsTransport> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.watch(cx, false, |inner, cx| inner.poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.watch(cx, true, |inner, cx| inner.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.watch(cx, true, |inner, cx| inner.poll_shutdown(cx))
    }
}
