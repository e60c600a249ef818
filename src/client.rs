//! The client end: [`SecureConnector`] makes a [`SecureClient`].

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::Bytes;
use futures::{Sink, Stream, stream::FusedStream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Sleep;
use tokio_rustls::{TlsConnector, client::TlsStream, rustls};

use crate::codec::{AuthMode, Role};
use crate::{HmacFrameCodec, HmacKey, LinkError, link, tls};

/// How long [`SecureClient`]'s `close()` waits, by default, for the server
/// to answer `close_notify` (see [`SecureConnector::with_close_timeout`]).
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// At most this many payload bytes that arrive while `close()` waits are
/// kept for the client's stream; past it, `close()` stops waiting.
const CLOSE_READ_LIMIT: usize = 1024 * 1024;

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
    close_timeout: Duration,
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
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
        }
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

    /// Sets how long `close()` waits for the server's `close_notify` after
    /// sending its own (default [`DEFAULT_CLOSE_TIMEOUT`]); zero disables
    /// the wait.
    ///
    /// The wait reads what the server sent but the client never read, such
    /// as TLS 1.3 session tickets. Closing a socket with unread data makes
    /// the kernel send a TCP reset, and a reset can make the server's kernel
    /// discard frames the server has received but not yet read.
    pub fn with_close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Runs the TLS handshake over `io`, authenticating the server as
    /// `server_name` (a DNS name or an IP address its certificate must
    /// name).
    ///
    /// The handshake has no timeout of its own: wrap the call in
    /// [`tokio::time::timeout`] where the server may stall. Cancelling the
    /// future drops the connection.
    ///
    /// # Errors
    ///
    /// [`LinkError::Config`] for an invalid `server_name`;
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
        let stream = TlsConnector::from(self.config.clone())
            .connect(name, io)
            .await?;
        let codec = link::connection_codec(
            &self.codec,
            self.auth_mode,
            stream.get_ref().1,
            Role::Client,
        )?;
        Ok(SecureClient {
            framed: link::framed(stream, codec),
            close_timeout: self.close_timeout,
            closing: Closing::Open,
            read_while_closing: VecDeque::new(),
            terminated: false,
            reader: None,
        })
    }
}

impl fmt::Debug for SecureConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecureConnector")
            .field("codec", &self.codec)
            .field("auth_mode", &self.auth_mode)
            .field("close_timeout", &self.close_timeout)
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
/// client.close().await?;                        // close_notify, then wait for the server's
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
/// side, then waits (at most the connector's close timeout) until the
/// server answers with its own `close_notify` or closes the connection.
/// While it waits it reads what the server sends; frames that arrive are
/// kept and still come out of the stream afterwards (up to 1 MiB of
/// payload: past that, `close()` stops waiting, so read replies before
/// closing). A server that answers
/// with `close_notify` has read everything (the stream then ends with
/// `None`; a server that hung up without it shows as
/// [`LinkError::Truncated`]). The wait also rules out the TCP reset that
/// closing with unread data (such as TLS 1.3 session tickets) would cause,
/// which can destroy data still queued for sending.
///
/// # Cancellation safety
///
/// `next()` is cancellation safe. `send()` is not: if its future is
/// dropped (say in `select!`) the message may or may not have been sent.
/// `close()` may be cancelled and called again.
pub struct SecureClient<IO> {
    framed: link::FramedLink<TlsStream<IO>>,
    close_timeout: Duration,
    closing: Closing,
    /// What the stream yields before reading on: items read by `close()`.
    read_while_closing: VecDeque<Result<Bytes, LinkError>>,
    /// The stream yielded an error or its end; it yields `None` from now on.
    terminated: bool,
    /// The task last left waiting by `poll_next`. `close()` reads from the
    /// same transport, which takes the transport's read wakeup away from
    /// that task (a split stream half, say), so `close()` wakes it itself.
    reader: Option<Waker>,
}

enum Closing {
    Open,
    /// Our close_notify is out; reading until the server's, or the deadline.
    AwaitingPeer {
        deadline: Pin<Box<Sleep>>,
        read: usize,
    },
    Closed,
}

impl<IO> SecureClient<IO> {
    /// The transport and the rustls connection (peer certificates,
    /// negotiated cipher suite and key-exchange group, ...).
    pub fn get_ref(&self) -> (&IO, &rustls::ClientConnection) {
        self.framed.get_ref().get_ref()
    }

    /// Mutable access to the transport and the rustls connection. Reading
    /// or writing through them corrupts the link.
    pub fn get_mut(&mut self) -> (&mut IO, &mut rustls::ClientConnection) {
        self.framed.get_mut().get_mut()
    }

    /// The TLS stream underneath. Frames buffered for reading or writing are
    /// lost: flush first.
    pub fn into_inner(self) -> TlsStream<IO> {
        self.framed.into_inner()
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Sink<Bytes> for SecureClient<IO> {
    type Error = LinkError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        Pin::new(&mut self.framed).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Bytes) -> Result<(), LinkError> {
        Pin::new(&mut self.framed).start_send(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        Pin::new(&mut self.framed).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        let this = self.get_mut();
        let poll = Self::poll_close_inner(this, cx);
        if (poll.is_ready() || !this.read_while_closing.is_empty())
            && let Some(reader) = this.reader.take()
        {
            reader.wake();
        }
        poll
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> SecureClient<IO> {
    fn poll_close_inner(this: &mut Self, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        loop {
            match &mut this.closing {
                Closing::Open => {
                    // Flush, close_notify, shut down the write side.
                    ready!(Pin::new(&mut this.framed).poll_close(cx))?;
                    this.closing = if this.close_timeout.is_zero() || this.terminated {
                        Closing::Closed
                    } else {
                        Closing::AwaitingPeer {
                            deadline: Box::pin(tokio::time::sleep(this.close_timeout)),
                            read: 0,
                        }
                    };
                }
                Closing::AwaitingPeer { deadline, read } => {
                    match Pin::new(&mut this.framed).poll_next(cx) {
                        Poll::Ready(Some(Ok(frame))) => {
                            *read += frame.len();
                            let full = *read > CLOSE_READ_LIMIT;
                            this.read_while_closing.push_back(Ok(frame));
                            if full {
                                this.closing = Closing::Closed;
                            }
                        }
                        Poll::Ready(Some(Err(err))) => {
                            this.read_while_closing.push_back(Err(err));
                            this.closing = Closing::Closed;
                        }
                        Poll::Ready(None) => this.closing = Closing::Closed,
                        Poll::Pending => {
                            ready!(deadline.as_mut().poll(cx));
                            this.closing = Closing::Closed;
                        }
                    }
                }
                Closing::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Stream for SecureClient<IO> {
    type Item = Result<Bytes, LinkError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let item = match this.read_while_closing.pop_front() {
            Some(item) => Some(item),
            None if this.terminated => return Poll::Ready(None),
            None => match Pin::new(&mut this.framed).poll_next(cx) {
                Poll::Ready(item) => item,
                Poll::Pending => {
                    if !this
                        .reader
                        .as_ref()
                        .is_some_and(|w| w.will_wake(cx.waker()))
                    {
                        this.reader = Some(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
            },
        };
        if !matches!(item, Some(Ok(_))) {
            this.terminated = true;
        }
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
            .field("io", self.framed.get_ref().get_ref().0)
            .field("codec", self.framed.codec())
            .field("terminated", &self.terminated)
            .finish_non_exhaustive()
    }
}
