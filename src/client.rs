//! The client end: [`SecureConnector`] makes a [`SecureClient`].

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{Sink, Stream, stream::FusedStream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Sleep;
use tokio_rustls::{TlsConnector, client::TlsStream, rustls};

use crate::codec::{AuthMode, Head, Role};
use crate::deadline::{Heard, ReadDeadline};
use crate::wakers::{ReadWakers, Reader};
use crate::write_deadline::WriteDeadline;
use crate::{DEFAULT_WRITE_TIMEOUT, HmacFrameCodec, HmacKey, LinkError, link, tls};

/// How long [`SecureClient`]'s `close()` waits, by default, for the server
/// to answer `close_notify` (see [`SecureConnector::with_close_timeout`]).
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// At most this many payload bytes that arrive while `close()` waits are
/// kept for the client's stream; past it, `close()` stops reading until
/// the stream has taken some.
const CLOSE_READ_LIMIT: usize = 1024 * 1024;

/// At most this many messages (of any size, empty ones too) are kept for
/// the client's stream while `close()` waits.
const CLOSE_READ_MAX_MESSAGES: usize = 1024;

/// Opens secure links to a server: TLS 1.3 with the server authenticated by
/// a root certificate, then HMAC-authenticated frames.
///
/// Cheap to clone; one connector serves any number of connections.
///
/// ```no_run
/// use futures::SinkExt;
/// use secure_link::{HmacKey, SecureConnector};
/// # async fn run(ca_pem: &str, key: HmacKey) -> Result<(), Box<dyn std::error::Error>> {
/// let connector = SecureConnector::new(ca_pem, key)?;
/// let tcp = tokio::net::TcpStream::connect("127.0.0.1:7878").await?;
/// let mut client = connector.connect("localhost", tcp).await?;
/// client.send("hello".into()).await?;
/// client.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SecureConnector {
    config: Arc<rustls::ClientConfig>,
    codec: HmacFrameCodec,
    auth_mode: AuthMode,
    handshake_timeout: Duration,
    close_timeout: Duration,
    write_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    /// Stamp every read (the resilient mode's dead-peer check needs it).
    stamp_reads: bool,
}

impl SecureConnector {
    /// A connector trusting the root certificate(s) in `root_cert_pem`
    /// (see [`tls::client_config`]) and signing frames with `hmac_key`.
    ///
    /// # Errors
    ///
    /// [`LinkError::Config`] for unusable PEM or an empty key;
    /// [`LinkError::Tls`] if rustls rejects a certificate.
    pub fn new(root_cert_pem: &str, hmac_key: impl Into<HmacKey>) -> Result<Self, LinkError> {
        let key = hmac_key.into();
        if key.is_empty() {
            return Err(LinkError::config("the HMAC key is empty"));
        }
        Ok(Self::from_config(tls::client_config(root_cert_pem)?, key))
    }

    /// A connector using a rustls configuration you built yourself.
    pub fn from_config(config: Arc<rustls::ClientConfig>, hmac_key: impl Into<HmacKey>) -> Self {
        SecureConnector {
            config,
            codec: HmacFrameCodec::new(hmac_key),
            auth_mode: AuthMode::Lab,
            handshake_timeout: crate::DEFAULT_HANDSHAKE_TIMEOUT,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            write_timeout: Some(DEFAULT_WRITE_TIMEOUT),
            idle_timeout: None,
            stamp_reads: false,
        }
    }

    /// The largest payload a link of this end takes.
    pub(crate) fn max_frame_len(&self) -> usize {
        self.codec.max_frame_len()
    }

    /// The same connector for the resilient mode: it offers the resilient
    /// ALPN id and stamps every read.
    pub(crate) fn resilient(&self) -> SecureConnector {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![crate::resilient::RESILIENT_ALPN.to_vec()];
        SecureConnector {
            config: Arc::new(config),
            stamp_reads: true,
            ..self.clone()
        }
    }

    /// Presents the client certificate `chain_pem` (the client's
    /// certificate first) signed with `key_pem` when the server asks for
    /// one (mutual TLS, [`SecureAcceptor::with_client_ca`](crate::SecureAcceptor::with_client_ca)).
    /// The HMAC key is still required: the certificate adds a per-node
    /// identity on top of the shared key's authorisation.
    ///
    /// # Errors
    ///
    /// [`LinkError::Config`] for unusable PEM; [`LinkError::Tls`] if the
    /// key does not match the certificate.
    pub fn with_client_cert(mut self, chain_pem: &str, key_pem: &str) -> Result<Self, LinkError> {
        self.config = tls::with_client_cert(&self.config, chain_pem, key_pem)?;
        Ok(self)
    }

    /// Sets the largest payload, in bytes, the client sends or accepts
    /// (default [`DEFAULT_MAX_FRAME_LEN`](crate::DEFAULT_MAX_FRAME_LEN)).
    pub fn with_max_frame_len(mut self, max_frame_len: usize) -> Self {
        self.codec = self.codec.with_max_frame_len(max_frame_len);
        self
    }

    /// Sets how frame tags are computed (default [`AuthMode::Lab`]). Both
    /// ends of a link must use the same mode: a mismatch fails the first
    /// message with [`LinkError::InvalidHmac`].
    pub fn with_auth_mode(mut self, mode: AuthMode) -> Self {
        self.auth_mode = mode;
        self
    }

    /// Sets how long the TLS handshake in [`connect`](Self::connect) may
    /// take (default [`DEFAULT_HANDSHAKE_TIMEOUT`](crate::DEFAULT_HANDSHAKE_TIMEOUT),
    /// 10 s, as on the server). A server that accepts the connection but
    /// never answers fails `connect` with [`LinkError::HandshakeTimeout`].
    ///
    /// A limit too large for the clock (`Duration::MAX`) means none; zero
    /// fails every handshake that is not done at once.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets how long `close()` may take in all (default
    /// [`DEFAULT_CLOSE_TIMEOUT`]): flushing what is buffered, sending
    /// `close_notify`, and waiting for the server's `close_notify`. Past
    /// it, `close()` fails with [`LinkError::CloseTimeout`].
    ///
    /// Zero turns the wait off: `close()` returns `Ok` once its own
    /// `close_notify` is written, without the server's confirmation, and
    /// the flush is then not bounded (wrap `close()` in
    /// [`tokio::time::timeout`] if the server may stop reading).
    ///
    /// The wait reads what the server sent but the client never read, such
    /// as TLS 1.3 session tickets. Closing a socket with unread data makes
    /// the kernel send a TCP reset, and a reset can make the server's kernel
    /// discard frames the server has received but not yet read.
    ///
    /// A limit too large for the clock (`Duration::MAX`) means none.
    pub fn with_close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Sets how long a send, flush or `close()` may wait without the
    /// server taking any bytes (default [`DEFAULT_WRITE_TIMEOUT`], 60 s);
    /// past it the call fails with [`LinkError::WriteTimeout`] naming the
    /// limit. A server that stopped reading (a hung process, a black-holed
    /// route, a power cut) is found out in that time, not when the kernel
    /// gives up on the connection (about 15 minutes on Linux). Progress is
    /// any bytes the link hands on (into rustls' buffer, or TLS records to
    /// the transport), so a slow but live server never trips it however
    /// long a large message takes. After it, every send, flush or close
    /// on the link fails the same way. `Duration::MAX` means no limit.
    pub fn with_write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = Some(timeout);
        self
    }

    /// Sets how long the client's stream may go without hearing from the
    /// server (default: no limit, since a client that only sends hears
    /// nothing): past it the stream yields [`LinkError::IdleTimeout`] and
    /// ends. For request/response clients. The limit runs from `connect`
    /// until the first message arrives whole, then from the last read
    /// that brought any bytes, a TLS record at least (a large reply
    /// arriving slowly is not silence). It runs during `close()` too. Checked while the stream is polled. `Duration::MAX` means
    /// no limit.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Runs the TLS handshake over `io`, authenticating the server as
    /// `server_name` (a DNS name or an IP address its certificate must
    /// name).
    ///
    /// The handshake must finish within the handshake timeout (see
    /// [`with_handshake_timeout`](Self::with_handshake_timeout)); it needs
    /// a Tokio runtime with its timer enabled. Cancelling the future drops
    /// the connection. Connecting `io` itself (TCP) is the caller's: bound
    /// it too.
    ///
    /// # Errors
    ///
    /// [`LinkError::Config`] for an invalid `server_name`;
    /// [`LinkError::HandshakeTimeout`] when the server is too slow;
    /// [`LinkError::Tls`] when the handshake fails (unknown issuer, name
    /// mismatch, ...); [`LinkError::Truncated`] or [`LinkError::Io`] when
    /// the connection fails.
    pub async fn connect<IO>(
        &self,
        server_name: &str,
        io: IO,
    ) -> Result<SecureClient<IO>, LinkError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let name = tls::server_name(server_name)?;
        let handshake = TlsConnector::from(self.config.clone()).connect(name, io);
        let stream = tokio::time::timeout(self.handshake_timeout, handshake)
            .await
            .map_err(|_| LinkError::HandshakeTimeout)?
            .map_err(|err| tls::mode_mismatch(err.into(), &self.config.alpn_protocols))?;
        let codec = link::connection_codec(
            &self.codec,
            self.auth_mode,
            stream.get_ref().1,
            Role::Client,
        )?;
        let deadline = ReadDeadline::new(None, self.idle_timeout);
        let stream = Heard::new(
            WriteDeadline::new(stream, self.write_timeout),
            deadline.is_armed() || self.stamp_reads,
        );
        Ok(SecureClient {
            framed: link::framed(stream, codec),
            deadline,
            close_timeout: self.close_timeout,
            closing: Closing::Open,
            read_while_closing: VecDeque::new(),
            queued_bytes: 0,
            read_end: ReadEnd::Open,
            terminated: false,
            wakers: ReadWakers::new(),
        })
    }
}

impl fmt::Debug for SecureConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecureConnector")
            .field("codec", &self.codec)
            .field("auth_mode", &self.auth_mode)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("close_timeout", &self.close_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

/// The client end of a secure link: a [`Sink`] of messages to the server
/// and a [`Stream`] of the server's replies.
///
/// ```no_run
/// use futures::{SinkExt, StreamExt};
/// # async fn run(mut client: secure_link::SecureClient<tokio::net::TcpStream>) -> Result<(), secure_link::LinkError> {
/// client.send("request".into()).await?;         // encodes and flushes
/// let reply = client.next().await.transpose()?; // the server's answer, if any
/// client.close().await?;                        // Ok: the server confirmed the end
/// # Ok(()) }
/// ```
///
/// # Sending
///
/// `send` flushes every message. To move many messages, `feed` them and
/// `flush` once, or use `send_all`: frames are batched into full 16 KiB TLS
/// records, up to 128 KiB before the sink asks to be flushed. A message of
/// 512 bytes or more that is fed is held until the next one (or a flush),
/// and the two tags are computed together, which hashes faster; the bytes
/// sent are the same.
///
/// # Closing
///
/// `close()` flushes, sends TLS `close_notify`, shuts the transport's write
/// side, then waits until the server answers with its own `close_notify`,
/// all within the connector's close timeout. It returns:
///
/// * `Ok(())` only when the server confirmed the end: it sent
///   `close_notify`, so it has read every frame before ours (a server of
///   this crate answers once its stream has ended);
/// * [`LinkError::CloseTimeout`] when the timeout passed first (the flush
///   did not finish because the server stopped reading, or no answer came);
/// * the error that ended the link otherwise ([`LinkError::Truncated`] for
///   a server that hung up without `close_notify`, an I/O error, ...).
///
/// Asked again, `close()` gives the same answer. While it waits, `close()`
/// reads what the server sends: replies are kept and still come out of the
/// stream afterwards, in order, nothing dropped. It keeps at most 1,024
/// replies or 1 MiB of them; when that is full it stops reading until the
/// stream takes some (so read replies while closing, or before). The wait
/// also rules out the TCP reset that closing with unread data (such as
/// TLS 1.3 session tickets) would cause, which can destroy data still
/// queued for sending.
///
/// After `close()` has started, `feed`/`send` fail with
/// [`LinkError::SinkClosed`]: the message is not sent. Once the stream (or
/// `close()`) has met the end of the connection without the server's
/// `close_notify` ([`LinkError::Truncated`], [`LinkError::Io`],
/// [`LinkError::Tls`]), `feed`/`send` fail with that same error: over TCP
/// the write would still be taken by the socket, and lost. A clean end
/// from the server (its `close_notify`) leaves the sink open: a server
/// may end its side and still read.
///
/// The stream ends with `None` once the server's `close_notify` has come,
/// whether the stream or `close()` read it; a task reading a split stream
/// half is woken by what `close()` reads, and `close()` by what the
/// stream reads.
///
/// # Cancellation safety
///
/// `next()` is cancellation safe. `send()` is not: if its future is
/// dropped (say in `select!`) the message may or may not have been sent.
/// `close()` may be cancelled and called again; it carries on where it
/// stopped, against the same deadline.
pub struct SecureClient<IO> {
    framed: link::FramedLink<Heard<WriteDeadline<TlsStream<IO>>>>,
    /// The idle limit of the stream, if any.
    deadline: ReadDeadline,
    close_timeout: Duration,
    closing: Closing,
    /// What the stream yields before reading on: items read by `close()`.
    read_while_closing: VecDeque<Result<Bytes, LinkError>>,
    /// Payload bytes in `read_while_closing`.
    queued_bytes: usize,
    /// How reading the transport ended, whichever of the stream and
    /// `close()` saw it.
    read_end: ReadEnd,
    /// The stream yielded an error or its end; it yields `None` from now on.
    terminated: bool,
    /// The stream and `close()` may be polled by two tasks: both are woken
    /// by whatever the transport reads (see `wakers.rs`).
    wakers: ReadWakers,
}

enum Closing {
    Open,
    /// `close()` has started and must finish by `deadline` (none for a
    /// zero close timeout).
    InProgress {
        deadline: Option<Pin<Box<Sleep>>>,
        /// Our close_notify is out; reading until the server's.
        notified: bool,
    },
    /// What `close()` found; every later call returns it again.
    Done(Result<(), LinkError>),
}

/// How reading the transport ended.
enum ReadEnd {
    Open,
    /// The server's close_notify arrived at a frame boundary.
    Confirmed,
    /// Reading failed with this error (kept to report to `close()`).
    Failed(LinkError),
}

impl<IO> SecureClient<IO> {
    /// See [`FramedLink::reuse_read_buffers`](crate::link::FramedLink::reuse_read_buffers).
    pub(crate) fn reuse_read_buffers(&mut self) {
        self.framed.reuse_read_buffers();
    }

    /// When the last read that brought bytes in returned (with stamping on).
    pub(crate) fn last_heard(&self) -> Option<tokio::time::Instant> {
        self.framed.get_ref().last_read()
    }

    /// The transport and the rustls connection (peer certificates,
    /// negotiated cipher suite and key-exchange group, ...).
    pub fn get_ref(&self) -> (&IO, &rustls::ClientConnection) {
        self.framed.get_ref().get_ref().get_ref().get_ref()
    }

    /// Mutable access to the transport and the rustls connection. Reading
    /// or writing through them corrupts the link.
    pub fn get_mut(&mut self) -> (&mut IO, &mut rustls::ClientConnection) {
        self.framed.get_mut().get_mut().get_mut().get_mut()
    }

    /// The TLS stream underneath. Frames buffered for reading or writing are
    /// lost: flush first.
    pub fn into_inner(self) -> TlsStream<IO> {
        self.framed.into_inner().into_inner().into_inner()
    }

    /// The error that ended the connection under the stream, if the stream
    /// has met one: then the sink refuses messages with it (see
    /// [`LinkError::ends_connection`]).
    fn connection_lost(&self) -> Option<LinkError> {
        match &self.read_end {
            ReadEnd::Failed(err) if err.ends_connection() => Some(err.duplicate()),
            _ => None,
        }
    }

    /// A write's error, or the cause the stream already met: a write into
    /// a connection whose end the stream has read (the two may be polled
    /// by two tasks) fails with a bare broken pipe or reset, where the
    /// stream saw why (the server's alert refusing this client's
    /// certificate, say).
    fn write_failed(&self, err: LinkError) -> LinkError {
        match (&err, self.connection_lost()) {
            (LinkError::Io(_), Some(lost)) => lost,
            _ => err,
        }
    }

    fn queue_full(&self) -> bool {
        self.read_while_closing.len() >= CLOSE_READ_MAX_MESSAGES
            || self.queued_bytes >= CLOSE_READ_LIMIT
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Sink<Bytes> for SecureClient<IO> {
    type Error = LinkError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        if !matches!(self.closing, Closing::Open) {
            return Poll::Ready(Err(LinkError::SinkClosed));
        }
        if let Some(lost) = self.connection_lost() {
            return Poll::Ready(Err(lost));
        }
        let ready = Pin::new(&mut self.framed).poll_ready(cx);
        ready.map_err(|err| self.write_failed(err))
    }

    fn start_send(self: Pin<&mut Self>, item: Bytes) -> Result<(), LinkError> {
        self.get_mut().start_send_parts(Head::EMPTY, item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        if !matches!(self.closing, Closing::Open) {
            // Nothing can have been added since close() started.
            return Poll::Ready(Ok(()));
        }
        let flushed = Pin::new(&mut self.framed).poll_flush(cx);
        flushed.map_err(|err| self.write_failed(err))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        let this = self.get_mut();
        let poll = this.poll_close_inner(cx);
        if poll.is_ready() {
            this.wakers.wake(Reader::Stream);
        }
        poll
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> SecureClient<IO> {
    /// `start_send` of a message whose frame's payload is `head` then
    /// `body` (the resilient mode's header and message, not joined).
    pub(crate) fn start_send_parts(&mut self, head: Head, body: Bytes) -> Result<(), LinkError> {
        if !matches!(self.closing, Closing::Open) {
            return Err(LinkError::SinkClosed);
        }
        if let Some(lost) = self.connection_lost() {
            return Err(lost);
        }
        self.framed.start_send_parts(head, body)
    }

    fn poll_close_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        loop {
            let (deadline, notified) = match &mut self.closing {
                Closing::Done(outcome) => {
                    return Poll::Ready(outcome.as_ref().map(|_| ()).map_err(LinkError::duplicate));
                }
                Closing::Open => {
                    let deadline = (!self.close_timeout.is_zero())
                        .then(|| Box::pin(tokio::time::sleep(self.close_timeout)));
                    self.closing = Closing::InProgress {
                        deadline,
                        notified: false,
                    };
                    continue;
                }
                Closing::InProgress { deadline, notified } => (deadline, notified),
            };
            let expired = |deadline: &mut Option<Pin<Box<Sleep>>>, cx: &mut Context<'_>| {
                deadline
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready())
            };
            if !*notified {
                // Flush, close_notify, shut down the write side.
                match Pin::new(&mut self.framed).poll_close(cx) {
                    Poll::Ready(Ok(())) if deadline.is_none() => self.finish(Ok(())),
                    Poll::Ready(Ok(())) => *notified = true,
                    Poll::Ready(Err(err)) => {
                        let err = self.write_failed(err);
                        self.finish(Err(err));
                    }
                    Poll::Pending if expired(deadline, cx) => self.finish_timed_out(),
                    Poll::Pending => return Poll::Pending,
                }
                continue;
            }
            match &self.read_end {
                ReadEnd::Confirmed => {
                    self.finish(Ok(()));
                    continue;
                }
                // The stream's own idle limit passed: the connection is
                // still there, and its close_notify may yet come.
                ReadEnd::Failed(LinkError::IdleTimeout(_)) => {}
                ReadEnd::Failed(err) => {
                    let err = err.duplicate();
                    self.finish(Err(err));
                    continue;
                }
                ReadEnd::Open => {}
            }
            if self.queue_full() {
                // Wait for the stream to take some, up to the deadline.
                self.wakers.register(Reader::Close, cx);
                let Closing::InProgress { deadline, .. } = &mut self.closing else {
                    continue;
                };
                if !expired(deadline, cx) {
                    return Poll::Pending;
                }
                self.finish_timed_out();
                continue;
            }
            let mut read_cx = self.wakers.register(Reader::Close, cx);
            match Pin::new(&mut self.framed).poll_next(&mut read_cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    self.queued_bytes += frame.len();
                    let heard = self.framed.get_ref().last_read();
                    self.deadline.on_message(heard);
                    self.read_while_closing.push_back(Ok(frame));
                    self.wakers.wake(Reader::Stream);
                }
                Poll::Ready(Some(Err(err))) => {
                    self.read_while_closing.push_back(Err(err.duplicate()));
                    self.read_end = ReadEnd::Failed(err.duplicate());
                    self.finish(Err(err));
                }
                Poll::Ready(None) => {
                    self.read_end = ReadEnd::Confirmed;
                    self.finish(Ok(()));
                }
                Poll::Pending => {
                    let Closing::InProgress { deadline, .. } = &mut self.closing else {
                        continue;
                    };
                    if !expired(deadline, cx) {
                        return Poll::Pending;
                    }
                    self.finish_timed_out();
                }
            }
        }
    }

    fn finish(&mut self, outcome: Result<(), LinkError>) {
        self.closing = Closing::Done(outcome);
    }

    fn finish_timed_out(&mut self) {
        self.finish(Err(LinkError::CloseTimeout(self.close_timeout)));
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Stream for SecureClient<IO> {
    type Item = Result<Bytes, LinkError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let was_full = this.queue_full();
        if let Some(item) = this.read_while_closing.pop_front() {
            if let Ok(frame) = &item {
                this.queued_bytes -= frame.len();
            } else {
                this.terminated = true;
            }
            if was_full {
                this.wakers.wake(Reader::Close);
            }
            return Poll::Ready(Some(item));
        }
        if this.terminated {
            return Poll::Ready(None);
        }
        if matches!(this.read_end, ReadEnd::Confirmed) {
            // close() read the server's close_notify.
            this.terminated = true;
            return Poll::Ready(None);
        }
        let mut read_cx = this.wakers.register(Reader::Stream, cx);
        let item = match Pin::new(&mut this.framed).poll_next(&mut read_cx) {
            Poll::Ready(item) => item,
            Poll::Pending => {
                let last_read = this.framed.get_ref().last_read();
                match this.deadline.poll_expired(cx, last_read) {
                    Some(expired) => Some(Err(expired)),
                    None => return Poll::Pending,
                }
            }
        };
        match &item {
            Some(Ok(_)) => {
                let heard = this.framed.get_ref().last_read();
                this.deadline.on_message(heard);
                return Poll::Ready(item);
            }
            Some(Err(err)) => this.read_end = ReadEnd::Failed(err.duplicate()),
            None => this.read_end = ReadEnd::Confirmed,
        }
        // A close() waiting for the end learns it here.
        this.terminated = true;
        this.wakers.wake(Reader::Close);
        Poll::Ready(item)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> FusedStream for SecureClient<IO> {
    fn is_terminated(&self) -> bool {
        self.terminated && self.read_while_closing.is_empty()
    }
}

impl<IO: fmt::Debug> fmt::Debug for SecureClient<IO> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecureClient")
            .field("io", self.framed.get_ref().get_ref().get_ref().get_ref().0)
            .field("codec", self.framed.codec())
            .field("terminated", &self.terminated)
            .finish_non_exhaustive()
    }
}
