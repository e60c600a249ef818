//! The server end: [`SecureAcceptor`] makes a [`SecureServer`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{Sink, Stream, stream::FusedStream};
use rustls::server::danger::ClientCertVerifier;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{TlsAcceptor, rustls, server::TlsStream};

use crate::codec::{AuthMode, Head, Role};
use crate::deadline::{Heard, ReadDeadline};
use crate::revocation::{Credentials, Pinned, Revoked};
use crate::write_deadline::WriteDeadline;
use crate::{HmacFrameCodec, HmacKey, LinkError, link, tls};

/// How long, by default, a TLS handshake may take, on the server (see
/// [`SecureAcceptor::with_handshake_timeout`]) and on the client (see
/// [`SecureConnector::with_handshake_timeout`](crate::SecureConnector::with_handshake_timeout)).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long, by default, a write, flush or close on either end may wait
/// without the peer taking any bytes before it fails with
/// [`LinkError::WriteTimeout`] ([`SecureAcceptor::with_write_timeout`],
/// [`SecureConnector::with_write_timeout`](crate::SecureConnector::with_write_timeout)).
/// A minute: far beyond the stalls of a live peer (TCP's retransmission
/// back-off through a brief outage, a busy receiver), far below the
/// quarter of an hour the kernel takes to give up on a peer that vanished.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// Accepts secure links from clients: TLS 1.3 with the server's certificate,
/// then frames whose HMAC tag proves the client holds the shared key.
///
/// Cheap to clone; one acceptor serves any number of connections.
///
/// ```no_run
/// use futures::{SinkExt, StreamExt};
/// use secure_link::SecureAcceptor;
/// # async fn run(chain_pem: &str, key_pem: &str, hmac: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
/// let acceptor = SecureAcceptor::new(chain_pem, key_pem, hmac)?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:7878").await?;
/// loop {
///     let (tcp, _) = listener.accept().await?;
///     let acceptor = acceptor.clone();
///     tokio::spawn(async move {
///         let mut server = acceptor.accept(tcp).await?;
///         while let Some(message) = server.next().await {
///             println!("{:?}", message?);
///         }
///         server.close().await // answer the client's close_notify
///     });
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct SecureAcceptor {
    config: Arc<rustls::ServerConfig>,
    codec: HmacFrameCodec,
    /// The keys accepted (primary first) with their names, for
    /// [`SecureServer::key_fingerprint`] and [`SecureServer::revoked_by`].
    keys: Arc<[AcceptedKey]>,
    /// The client certificate verifier set by
    /// [`with_client_ca`](Self::with_client_ca), for
    /// [`SecureServer::revoked_by`].
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    auth_mode: AuthMode,
    handshake_timeout: Duration,
    first_message_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// Stamp every read (the resilient mode's dead-peer check needs it).
    stamp_reads: bool,
}

impl SecureAcceptor {
    /// An acceptor presenting `cert_chain_pem` with `private_key_pem` (see
    /// [`tls::server_config`]) and accepting frames signed with `hmac_key`.
    ///
    /// # Errors
    ///
    /// [`LinkError::Config`] for unusable PEM or an empty key;
    /// [`LinkError::Tls`] if rustls rejects the certificate or key.
    pub fn new(
        cert_chain_pem: &str,
        private_key_pem: &str,
        hmac_key: impl Into<HmacKey>,
    ) -> Result<Self, LinkError> {
        let key = hmac_key.into();
        if key.is_empty() {
            return Err(LinkError::config("the HMAC key is empty"));
        }
        let config = tls::server_config(cert_chain_pem, private_key_pem)?;
        Ok(Self::from_config(config, key))
    }

    /// An acceptor using a rustls configuration you built yourself.
    ///
    /// The configuration is used as given. Consider
    /// `send_tls13_tickets = 0` (as [`tls::server_config`] sets): session
    /// tickets left unread by a write-only client can make its close reset
    /// the connection.
    pub fn from_config(config: Arc<rustls::ServerConfig>, hmac_key: impl Into<HmacKey>) -> Self {
        let key = hmac_key.into();
        SecureAcceptor {
            config,
            keys: Arc::from([AcceptedKey::new(&key, 0)]),
            client_verifier: None,
            codec: HmacFrameCodec::new(key),
            auth_mode: AuthMode::Lab,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            first_message_timeout: None,
            idle_timeout: None,
            write_timeout: Some(DEFAULT_WRITE_TIMEOUT),
            stamp_reads: false,
        }
    }

    /// The largest payload a link of this end takes.
    pub(crate) fn max_frame_len(&self) -> usize {
        self.codec.max_frame_len()
    }

    /// Why this configuration no longer authorises a link accepted with
    /// `credentials`, if it does not.
    pub(crate) fn revokes(&self, credentials: &Credentials) -> Option<Revoked> {
        credentials.revoked_by(
            self.keys.iter().map(|accepted| &accepted.key),
            self.client_verifier.as_deref(),
        )
    }

    /// The same acceptor for a resilient server: it accepts the resilient
    /// ALPN id, and the plain one when `plain` (clients that offer none
    /// get the plain mode either way), and stamps every read.
    pub(crate) fn resilient(&self, plain: bool) -> SecureAcceptor {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![crate::resilient::RESILIENT_ALPN.to_vec()];
        if plain {
            config
                .alpn_protocols
                .push(crate::resilient::PLAIN_ALPN.to_vec());
        }
        SecureAcceptor {
            config: Arc::new(config),
            stamp_reads: true,
            ..self.clone()
        }
    }

    /// Sets the largest payload, in bytes, the server accepts or sends
    /// (default [`DEFAULT_MAX_FRAME_LEN`](crate::DEFAULT_MAX_FRAME_LEN)).
    pub fn with_max_frame_len(mut self, max_frame_len: usize) -> Self {
        self.codec = self.codec.with_max_frame_len(max_frame_len);
        self
    }

    /// Adds a key accepted besides the primary one, for a key rotation
    /// without downtime (repeatable; tried in the order added). Each
    /// connection is pinned to the key that verifies its client's first
    /// frame: later frames must verify under that key, and the server's
    /// replies are signed with it. A first frame that verifies under none
    /// is [`LinkError::InvalidHmac`]. Works in both [`AuthMode`]s. See
    /// [`HmacFrameCodec::with_additional_key`] for the cost (only the
    /// first frame's) and [`SecureServer::key_fingerprint`] to see which
    /// key a client used.
    ///
    /// An empty key is ignored.
    ///
    /// A rotation: give servers the new key as an additional one, move the
    /// clients to it, make it the primary key, and drop the old one once no
    /// connection uses it.
    pub fn with_additional_key(mut self, hmac_key: impl Into<HmacKey>) -> Self {
        let key = hmac_key.into();
        if key.is_empty() {
            return self;
        }
        let mut keys = self.keys.to_vec();
        keys.push(AcceptedKey::new(&key, keys.len()));
        self.keys = keys.into();
        self.codec = self.codec.with_additional_key(key);
        self
    }

    /// Sets the largest payload, in bytes, of a client's first frame:
    /// until a tag of the connection has verified, the client is anonymous
    /// (TLS here does not authenticate clients), so it gets a smaller
    /// budget than `max_frame_len` (default: no separate limit; `secure-link
    /// serve` uses 64 KiB). A larger first frame ends the stream with
    /// [`LinkError::FrameTooLarge`] naming this limit, as soon as its
    /// length prefix arrives. See
    /// [`HmacFrameCodec::with_max_first_frame_len`].
    pub fn with_max_first_frame_len(mut self, max_first_frame_len: usize) -> Self {
        self.codec = self.codec.with_max_first_frame_len(max_first_frame_len);
        self
    }

    /// Requires a client certificate that chains to a root in
    /// `client_ca_pem` (mutual TLS). A client without one, or with one from
    /// another CA, fails the server's `accept` with [`LinkError::Tls`] (the
    /// reason in its message). In TLS 1.3 the client's `connect` returns
    /// before the server's verdict: the client learns it from the alert,
    /// as [`LinkError::Tls`] (`AlertReceived`), on its next read or
    /// `close()`, and every send after that read fails with it. A send
    /// before any read may still succeed: its bytes reach the transport
    /// before the alert is read, and are dropped by the server.
    /// [`SecureServer::peer_identity`] then names each client. The HMAC key
    /// is still required.
    ///
    /// # Errors
    ///
    /// [`LinkError::Config`] for unusable PEM; [`LinkError::Tls`] if rustls
    /// rejects a root.
    pub fn with_client_ca(mut self, client_ca_pem: &str) -> Result<Self, LinkError> {
        let verifier = tls::client_verifier(self.config.crypto_provider(), client_ca_pem)?;
        self.config = tls::requiring(&self.config, verifier.clone())?;
        self.client_verifier = Some(verifier);
        Ok(self)
    }

    /// Sets how frame tags are computed (default [`AuthMode::Lab`]). Both
    /// ends of a link must use the same mode: a mismatch fails the first
    /// message with [`LinkError::InvalidHmac`].
    pub fn with_auth_mode(mut self, mode: AuthMode) -> Self {
        self.auth_mode = mode;
        self
    }

    /// Sets how long a client has to complete the TLS handshake (default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    ///
    /// A limit too large for the clock (`Duration::MAX`) means none; zero
    /// fails every handshake that is not done at once.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets how long after the handshake the client has to deliver its
    /// first authenticated message (default: no limit). On expiry the
    /// server's stream yields [`LinkError::FirstMessageTimeout`] and ends.
    ///
    /// This bounds what a client that completes the handshake but never
    /// proves it holds the key can cost.
    ///
    /// A limit too large for the clock (`Duration::MAX`) means none.
    pub fn with_first_message_timeout(mut self, timeout: Duration) -> Self {
        self.first_message_timeout = Some(timeout);
        self
    }

    /// Sets how long the client may stay silent between messages (default:
    /// no limit). On expiry the server's stream yields
    /// [`LinkError::IdleTimeout`] and ends.
    ///
    /// Silence is measured from the last read that brought bytes in (a TLS
    /// record, at most 16 KiB of plaintext), once the first message has
    /// verified: a large message arriving slower than the limit is not
    /// silence, and a message the application takes late
    /// counts from when it was read, not taken. Before the first message
    /// only a whole message counts (a first frame trickled in a byte at a
    /// time is silence until it is whole). The deadline is checked while
    /// the stream is polled. Without a first-message limit, the idle limit
    /// also runs from the handshake to the first message, and its expiry
    /// there is reported as [`LinkError::IdleTimeout`] too. A limit too
    /// large for the clock (`Duration::MAX`) means none.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Sets how long a reply, flush or `close()` may wait without the
    /// client taking any bytes (default [`DEFAULT_WRITE_TIMEOUT`], 60 s);
    /// past it the call fails with [`LinkError::WriteTimeout`] naming the
    /// limit. A client that stopped reading, or vanished without FIN or
    /// RST, then holds the connection for at most that long on a write.
    /// Progress is any bytes the link hands on (into rustls' buffer, or TLS
    /// records to the transport), so a slow but live client never trips
    /// it. After it, every reply, flush or close on the link fails the
    /// same way. `Duration::MAX` means no limit.
    pub fn with_write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = Some(timeout);
        self
    }

    /// Runs the TLS handshake over `io`, within the handshake timeout.
    ///
    /// Needs a Tokio runtime with its timer enabled. Cancelling the future
    /// drops the connection.
    ///
    /// # Errors
    ///
    /// [`LinkError::HandshakeTimeout`] when the client is too slow;
    /// [`LinkError::Tls`] when the handshake fails; [`LinkError::Truncated`]
    /// or [`LinkError::Io`] when the connection fails.
    pub async fn accept<IO>(&self, io: IO) -> Result<SecureServer<IO>, LinkError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let handshake = TlsAcceptor::from(self.config.clone()).accept(io);
        let stream = tokio::time::timeout(self.handshake_timeout, handshake)
            .await
            .map_err(|_| LinkError::HandshakeTimeout)?
            .map_err(|err| tls::mode_mismatch(err.into(), &self.config.alpn_protocols))?;
        let codec = link::connection_codec(
            &self.codec,
            self.auth_mode,
            stream.get_ref().1,
            Role::Server,
        )?;
        let deadline = ReadDeadline::new(self.first_message_timeout, self.idle_timeout);
        Ok(SecureServer {
            framed: Some(link::framed(
                Heard::new(
                    WriteDeadline::new(stream, self.write_timeout),
                    deadline.is_armed() || self.stamp_reads,
                ),
                codec,
            )),
            keys: self.keys.clone(),
            deadline,
            terminated: false,
            closed: false,
            lost: None,
            clean_end: false,
            on_drop: confirm_end::<IO>,
        })
    }
}

/// A key an acceptor accepts, with its name in logs: its fingerprint, or
/// its position for a key too short to fingerprint.
#[derive(Clone)]
struct AcceptedKey {
    key: HmacKey,
    id: String,
}

impl AcceptedKey {
    fn new(key: &HmacKey, index: usize) -> Self {
        let fingerprint = key.fingerprint();
        let id = if fingerprint == crate::SHORT_KEY_FINGERPRINT {
            format!("{fingerprint}-{index}")
        } else {
            fingerprint
        };
        AcceptedKey {
            key: key.clone(),
            id,
        }
    }
}

impl SecureAcceptor {
    fn key_names(&self) -> Vec<&str> {
        self.keys
            .iter()
            .map(|accepted| accepted.id.as_str())
            .collect()
    }
}

impl fmt::Debug for SecureAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecureAcceptor")
            .field("codec", &self.codec)
            .field("auth_mode", &self.auth_mode)
            .field("keys", &self.key_names())
            .field("client_ca", &self.client_verifier.is_some())
            .field("handshake_timeout", &self.handshake_timeout)
            .field("first_message_timeout", &self.first_message_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("write_timeout", &self.write_timeout)
            .finish_non_exhaustive()
    }
}

/// The server end of a secure link: a [`Stream`] of the client's
/// authenticated messages and a [`Sink`] for replies.
///
/// The stream yields each message whose tag verifies, in order. It ends
/// with `None` when the client closes cleanly (TLS `close_notify` at a frame
/// boundary). It yields one error and then ends when a tag does not verify
/// ([`LinkError::InvalidHmac`]: that client gets no further hearing), a
/// frame is too large, the connection is cut ([`LinkError::Truncated`]),
/// or a deadline set on the acceptor expires
/// ([`LinkError::FirstMessageTimeout`], [`LinkError::IdleTimeout`]). A partial or forged message is never
/// yielded.
///
/// When the stream has ended, call `close()`: it answers the client's
/// `close_notify` with the server's own, which TLS clients such as
/// OpenSSL's expect (and which makes the client's `close()` return `Ok`).
/// A server dropped without `close()` after its stream reached the
/// client's clean end does the same, best effort: it writes what it holds
/// and the alert in one attempt that does not wait for the transport, so
/// the loop below without its `close()`, followed by the end of scope,
/// confirms the end in practice; only `close()` makes sure. Dropped before
/// its stream's end, or while its thread panics, it confirms nothing.
///
/// Once the stream has met the end of the connection without
/// `close_notify` ([`LinkError::Truncated`], [`LinkError::Io`],
/// [`LinkError::Tls`]), the sink refuses messages with that same error:
/// nothing written afterwards could arrive.
///
/// ```no_run
/// use futures::{SinkExt, StreamExt};
/// # async fn run(mut server: secure_link::SecureServer<tokio::net::TcpStream>) -> Result<(), secure_link::LinkError> {
/// while let Some(message) = server.next().await {
///     server.send(message?).await?; // echo
/// }
/// server.close().await?;
/// # Ok(()) }
/// ```
///
/// # Cancellation safety
///
/// `next()` is cancellation safe; `send()` is not (a dropped `send` future
/// may or may not have sent its message).
///
/// After `close()` has started, `feed`/`send` fail with
/// [`LinkError::SinkClosed`]: the message is not sent. The server's
/// `close()` has no timeout of its own: a client that stops reading can
/// stall its flush, so bound it with [`tokio::time::timeout`] where that
/// matters (`secure-link serve` does).
pub struct SecureServer<IO> {
    /// Always `Some`, but in `into_inner`, which takes it out of a value
    /// that implements `Drop`.
    framed: Option<Link<IO>>,
    /// The keys of the acceptor that accepted the link.
    keys: Arc<[AcceptedKey]>,
    deadline: ReadDeadline,
    /// The stream yielded an error or its end; it yields `None` from now on.
    terminated: bool,
    /// `close()` has started: the sink takes no more messages.
    closed: bool,
    /// The error that ended the connection under the stream (see
    /// [`LinkError::ends_connection`]): the sink refuses messages with it.
    lost: Option<LinkError>,
    /// The stream ended at the client's `close_notify`.
    clean_end: bool,
    /// Run on drop: [`confirm_end`] for this `IO` (a `Drop` impl cannot ask
    /// for the `AsyncWrite` bound it needs; `accept` has it).
    on_drop: fn(&mut SecureServer<IO>),
}

/// The framed link of a [`SecureServer`] over `IO`.
type Link<IO> = link::FramedLink<Heard<WriteDeadline<TlsStream<IO>>>>;

/// What a server dropped without `close()` does: if its stream reached the
/// client's clean end, it answers the client's `close_notify` with its own,
/// best effort and without blocking. It writes what the link holds and the
/// alert in one attempt (as far as the transport takes them at once) and
/// gives up on the rest. The usual server loop, `while let Some(m) =
/// server.next().await { .. }` and then the end of scope, thus lets the
/// client's `close()` return `Ok`. Before the stream's end, or after
/// `close()` started, or while the thread panics, it does nothing: the
/// client learns that the link was cut. (So the client's `Ok` from
/// `close()` means that the server's stream reached the end, not that its
/// application finished with the last message; a server that must say
/// that calls `close()` once it has.)
fn confirm_end<IO: AsyncRead + AsyncWrite + Unpin>(server: &mut SecureServer<IO>) {
    if !server.clean_end || server.closed || server.lost.is_some() {
        return;
    }
    let Some(framed) = &mut server.framed else {
        return;
    };
    // One attempt, no timer: this may run outside any runtime.
    framed.get_mut().get_mut().disarm();
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    // Outside the task's co-operative budget: the loop's last read may
    // have spent it, and tokio would then refuse this write at once.
    let mut one_attempt = tokio::task::coop::unconstrained(futures::future::poll_fn(|cx| {
        Pin::new(&mut *framed).poll_close(cx)
    }));
    let _ = Pin::new(&mut one_attempt).poll(&mut cx);
}

impl<IO> Drop for SecureServer<IO> {
    fn drop(&mut self) {
        // A server dropped while its task panics did not finish its work:
        // the client must not be told the end went well.
        if !std::thread::panicking() {
            (self.on_drop)(self);
        }
    }
}

impl<IO> SecureServer<IO> {
    /// See [`FramedLink::reuse_read_buffers`](crate::link::FramedLink::reuse_read_buffers).
    pub(crate) fn reuse_read_buffers(&mut self) {
        self.link_mut().reuse_read_buffers();
    }

    /// When the last read that brought bytes in returned (with stamping on).
    pub(crate) fn last_heard(&self) -> Option<tokio::time::Instant> {
        self.link().get_ref().last_read()
    }

    /// Ends the first-message and idle limits: a resilient link's
    /// heartbeats and dead time take their place.
    pub(crate) fn clear_read_deadlines(&mut self) {
        self.deadline = ReadDeadline::new(None, None);
    }

    /// The transport and the rustls connection (negotiated cipher suite and
    /// key-exchange group, server name the client asked for, ...).
    pub fn get_ref(&self) -> (&IO, &rustls::ServerConnection) {
        self.link().get_ref().get_ref().get_ref().get_ref()
    }

    /// Mutable access to the transport and the rustls connection. Reading
    /// or writing through them corrupts the link.
    pub fn get_mut(&mut self) -> (&mut IO, &mut rustls::ServerConnection) {
        self.link_mut().get_mut().get_mut().get_mut().get_mut()
    }

    /// The TLS stream underneath. Frames buffered for reading or writing are
    /// lost: flush first. It never confirms the client's end (see the
    /// type's docs on drop): that is the caller's now.
    pub fn into_inner(mut self) -> TlsStream<IO> {
        match self.framed.take() {
            Some(framed) => framed.into_inner().into_inner().into_inner(),
            None => unreachable!("the link is only taken here, by value"),
        }
    }

    fn link(&self) -> &Link<IO> {
        match &self.framed {
            Some(framed) => framed,
            None => unreachable!("the link is only taken by into_inner"),
        }
    }

    fn link_mut(&mut self) -> &mut Link<IO> {
        match &mut self.framed {
            Some(framed) => framed,
            None => unreachable!("the link is only taken by into_inner"),
        }
    }

    /// The client's identity from its certificate (mutual TLS, see
    /// [`SecureAcceptor::with_client_ca`]): its first DNS name or, failing
    /// that, its subject's common name. `None` without a client
    /// certificate. The whole verified chain is in
    /// `get_ref().1.peer_certificates()`.
    pub fn peer_identity(&self) -> Option<String> {
        let (_, conn) = self.get_ref();
        crate::identity::of(conn.peer_certificates()?.first()?)
    }

    /// The fingerprint of the key this connection is pinned to (see
    /// [`SecureAcceptor::with_additional_key`]): `None` until the client's
    /// first frame has verified. It is [`HmacKey::fingerprint`], except
    /// for a key too short to fingerprint safely, which is named by its
    /// position instead: `short-key-0` for the primary key, `short-key-1`
    /// for the first additional one, and so on.
    pub fn key_fingerprint(&self) -> Option<String> {
        let index = self.link().codec().pinned_key()?;
        Some(self.keys.get(index)?.id.clone())
    }

    /// `start_send` of a message whose frame's payload is `head` then
    /// `body` (the resilient mode's header and message, not joined).
    pub(crate) fn start_send_parts(&mut self, head: Head, body: Bytes) -> Result<(), LinkError> {
        if self.closed {
            return Err(LinkError::SinkClosed);
        }
        if let Some(lost) = &self.lost {
            return Err(lost.duplicate());
        }
        self.link_mut().start_send_parts(head, body)
    }

    /// Whether `acceptor`'s configuration still authorises this link, for a
    /// reload that removes a key or a client CA (see
    /// [`ReloadableAcceptor::changes`](crate::ReloadableAcceptor::changes)):
    /// `Some` when the key the link is pinned to is not among `acceptor`'s
    /// keys ([`Revoked::Key`]), or when `acceptor` requires client
    /// certificates ([`SecureAcceptor::with_client_ca`]) and this link's
    /// chain does not verify under its CAs at this moment, or the link has
    /// none ([`Revoked::ClientCa`]). The caller decides what follows;
    /// `secure-link serve` closes the link.
    ///
    /// Keys are compared by their bytes, in constant time. A link whose
    /// client has not yet sent a verified message is pinned to no key, so
    /// the key check passes: check again after its first message (the
    /// codec still accepts every key the link was accepted with). An
    /// acceptor made [`from_config`](SecureAcceptor::from_config) with a
    /// client verifier of your own is not checked for client certificates.
    pub fn revoked_by(&self, acceptor: &SecureAcceptor) -> Option<Revoked> {
        acceptor.revokes(&self.credentials())
    }

    /// The key this link is pinned to and its client's chain, to check
    /// against a later configuration.
    pub(crate) fn credentials(&self) -> Credentials {
        let key = match self.link().codec().pinned_key() {
            None => Pinned::Not,
            // The codec pins an index into the keys the link was accepted
            // with; one that is not there cannot be vouched for.
            Some(index) => self.keys.get(index).map_or(Pinned::Unknown, |accepted| {
                Pinned::Key(accepted.key.clone())
            }),
        };
        let chain = self
            .get_ref()
            .1
            .peer_certificates()
            .map(|chain| chain.iter().map(|cert| cert.clone().into_owned()).collect());
        Credentials { key, chain }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Stream for SecureServer<IO> {
    type Item = Result<Bytes, LinkError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.terminated {
            return Poll::Ready(None);
        }
        let this = self.get_mut();
        let item = match Pin::new(this.link_mut()).poll_next(cx) {
            Poll::Ready(item) => item,
            Poll::Pending => match this
                .deadline
                .poll_expired(cx, this.link().get_ref().last_read())
            {
                Some(expired) => Some(Err(expired)),
                None => return Poll::Pending,
            },
        };
        match &item {
            Some(Ok(_)) => {
                let heard = this.link().get_ref().last_read();
                this.deadline.on_message(heard);
            }
            Some(Err(err)) => {
                this.terminated = true;
                if err.ends_connection() {
                    this.lost = Some(err.duplicate());
                }
            }
            None => {
                this.terminated = true;
                this.clean_end = true;
            }
        }
        Poll::Ready(item)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> FusedStream for SecureServer<IO> {
    fn is_terminated(&self) -> bool {
        self.terminated
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Sink<Bytes> for SecureServer<IO> {
    type Error = LinkError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        if self.closed {
            return Poll::Ready(Err(LinkError::SinkClosed));
        }
        if let Some(lost) = &self.lost {
            return Poll::Ready(Err(lost.duplicate()));
        }
        let ready = Pin::new(self.link_mut()).poll_ready(cx);
        ready.map_err(|err| self.write_failed(err))
    }

    fn start_send(self: Pin<&mut Self>, item: Bytes) -> Result<(), LinkError> {
        self.get_mut().start_send_parts(Head::EMPTY, item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        let flushed = Pin::new(self.link_mut()).poll_flush(cx);
        flushed.map_err(|err| self.write_failed(err))
    }

    /// Flushes, sends `close_notify` and shuts down the transport's write
    /// side. From the first call on, `poll_ready` and `start_send` fail
    /// with [`LinkError::SinkClosed`].
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        self.closed = true;
        let closed = Pin::new(self.link_mut()).poll_close(cx);
        closed.map_err(|err| self.write_failed(err))
    }
}

impl<IO> SecureServer<IO> {
    /// A write's error, or the cause the stream already met: a write into
    /// a connection whose end the stream has read fails with a bare broken
    /// pipe or reset, where the stream saw why (the peer's alert, say).
    fn write_failed(&self, err: LinkError) -> LinkError {
        match (&err, &self.lost) {
            (LinkError::Io(_), Some(lost)) => lost.duplicate(),
            _ => err,
        }
    }
}

impl<IO: fmt::Debug> fmt::Debug for SecureServer<IO> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecureServer")
            .field("io", self.link().get_ref().get_ref().get_ref().get_ref().0)
            .field("codec", self.link().codec())
            .field("terminated", &self.terminated)
            .finish_non_exhaustive()
    }
}
