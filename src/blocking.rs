//! The blocking API, with the exact interface of the university lab this
//! crate grew out of.
//!
//! [`SecureClient`] and [`SecureServer`] wrap any `Read + Write` link (a
//! [`std::net::TcpStream`], say) in TLS 1.3 through
//! [`rustls::StreamOwned`] and use the same [`HmacFrameCodec`] as the async
//! API, so both speak the same frames and interoperate in either direction.
//!
//! ```no_run
//! use std::net::{TcpListener, TcpStream};
//! use secure_link::blocking::{SecureClient, SecureServer};
//! use secure_link::rustls::pki_types::ServerName;
//! # fn run(ca: &str, chain: &str, key: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! let client_link = TcpStream::connect(listener.local_addr()?)?;
//! let (server_link, _) = listener.accept()?;
//!
//! // Both ends are built before any I/O: `new` never blocks.
//! let mut client = SecureClient::new(client_link, b"key", ca, ServerName::try_from("localhost")?);
//! let mut server = SecureServer::new(server_link, b"key", key, chain);
//!
//! let sender = std::thread::spawn(move || client.send_msg(b"hello".to_vec()));
//! assert_eq!(server.recv_message(), Ok(b"hello".to_vec()));
//! sender.join().unwrap();
//! # Ok(()) }
//! ```
//!
//! # When to prefer the async API
//!
//! Each blocking end owns a thread while it waits, has no timeouts of its
//! own (set them on the socket: [`std::net::TcpStream::set_read_timeout`]),
//! and the client flushes every message. The async
//! [`SecureConnector`](crate::SecureConnector) /
//! [`SecureAcceptor`](crate::SecureAcceptor) serve thousands of
//! connections on a few threads, batch frames into full TLS records, time
//! out handshakes, and close with the full `close_notify` exchange. Use the
//! blocking API for code and tests written against the lab's interface, and
//! for simple programs.

use std::fmt;
use std::io::{self, Read, Write};

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ConnectionCommon, ServerConnection, SideData, StreamOwned};
use tokio_rustls::rustls;
use tokio_util::codec::Decoder;

use crate::{HmacFrameCodec, LinkError, tls};

/// Bytes read from the TLS stream at a time (one full TLS record).
const READ_CHUNK: usize = 16 * 1024;

/// The client end: sends HMAC-authenticated messages over TLS.
///
/// A send that fails part-way (a write timeout set on the link, say) may
/// have put part of a frame on the wire; writing another frame after it
/// would misalign the stream, and resending would deliver the message
/// twice. So the client is then fused: every later send returns the same
/// error and writes nothing. Make a new connection to go on.
///
/// The TLS handshake happens in the first send and has no timeout of its
/// own: a server that accepts the connection but never answers would hold
/// it for ever. Bound it, and every later read and write, with the link's
/// own timeouts: [`std::net::TcpStream::set_read_timeout`] and
/// [`set_write_timeout`](std::net::TcpStream::set_write_timeout) make such
/// a send fail with [`LinkError::Io`] (`WouldBlock` or `TimedOut`).
///
/// Dropping the client sends TLS `close_notify` (best effort). That write
/// can block if the server has stopped reading and the link's send buffer
/// is full; bound it with [`std::net::TcpStream::set_write_timeout`].
pub struct SecureClient<L: Read + Write> {
    tls: StreamOwned<ClientConnection, NonZeroWrites<L>>,
    codec: HmacFrameCodec,
    write_buf: BytesMut,
    /// A send failed part-way: the error every later send returns.
    failed: Option<LinkError>,
}

impl<L: Read + Write> SecureClient<L> {
    /// A client over `link` that trusts `root_cert` (PEM) to sign the
    /// certificate of `server_hostname` and signs messages with `hmac_key`.
    ///
    /// Does no I/O: the TLS handshake happens on the first
    /// [`send_msg`](Self::send_msg).
    ///
    /// # Panics
    ///
    /// If `root_cert` is not usable PEM (the lab's contract); use
    /// [`try_new`](Self::try_new) to get the error instead.
    pub fn new(
        link: L,
        hmac_key: &[u8],
        root_cert: &str,
        server_hostname: ServerName<'static>,
    ) -> Self {
        match Self::try_new(link, hmac_key, root_cert, server_hostname) {
            Ok(client) => client,
            Err(err) => panic!("secure_link::blocking::SecureClient::new: {err}"),
        }
    }

    /// Like [`new`](Self::new), returning configuration errors.
    ///
    /// # Errors
    ///
    /// [`LinkError::Config`] or [`LinkError::Tls`] for an unusable root
    /// certificate.
    pub fn try_new(
        link: L,
        hmac_key: &[u8],
        root_cert: &str,
        server_hostname: ServerName<'static>,
    ) -> Result<Self, LinkError> {
        let config = tls::client_config(root_cert)?;
        let conn = ClientConnection::new(config, server_hostname)?;
        Ok(SecureClient {
            tls: StreamOwned::new(conn, NonZeroWrites(link)),
            codec: HmacFrameCodec::new(hmac_key),
            write_buf: BytesMut::new(),
            failed: None,
        })
    }

    /// Sends one message and flushes it to the link before returning.
    ///
    /// # Panics
    ///
    /// If the message cannot be sent (handshake failure, broken link, a
    /// message over the maximum frame length): the lab's interface has no
    /// way to report it. Use [`try_send_msg`](Self::try_send_msg) to handle
    /// the error.
    pub fn send_msg(&mut self, data: Vec<u8>) {
        if let Err(err) = self.try_send_msg(&data) {
            panic!("secure_link::blocking::SecureClient::send_msg: {err}");
        }
    }

    /// Sends one message and flushes it to the link before returning.
    ///
    /// # Errors
    ///
    /// [`LinkError::Tls`] when the handshake fails (unknown issuer, name
    /// mismatch, ...), [`LinkError::FrameTooLarge`] for a message over the
    /// maximum frame length (nothing is written; the client stays
    /// usable), [`LinkError::Io`] / [`LinkError::Truncated`] when the link
    /// fails (a link whose `write` accepts no bytes is
    /// [`io::ErrorKind::WriteZero`]). After a failure other than
    /// `FrameTooLarge`, every later call returns that error again without
    /// writing (see the type's documentation).
    pub fn try_send_msg(&mut self, data: &[u8]) -> Result<(), LinkError> {
        if let Some(failed) = &self.failed {
            return Err(failed.duplicate());
        }
        self.write_buf.clear();
        self.codec.encode_slice(data, &mut self.write_buf)?;
        let sent = self
            .tls
            .write_all(&self.write_buf)
            .and_then(|()| self.tls.flush());
        sent.map_err(|err| {
            // A resilient-only server refuses the plain mode's ALPN id in
            // the handshake: said as the mode, as the async client says it.
            let offered = [crate::resilient::PLAIN_ALPN.to_vec()];
            let err = tls::mode_mismatch(LinkError::from(err), &offered);
            self.failed = Some(err.duplicate());
            err
        })
    }

    /// The link and the rustls connection (negotiated version, suite, ...).
    pub fn get_ref(&self) -> (&L, &ClientConnection) {
        (&self.tls.sock.0, &self.tls.conn)
    }
}

impl<L: Read + Write> Drop for SecureClient<L> {
    /// Sends TLS `close_notify` (best effort, never blocking on a read) so
    /// the server sees a clean end rather than a truncation.
    fn drop(&mut self) {
        if !self.tls.conn.is_handshaking() {
            write_close_notify(&mut self.tls.conn, &mut self.tls.sock);
        }
    }
}

impl<L: Read + Write + fmt::Debug> fmt::Debug for SecureClient<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecureClient")
            .field("link", &self.tls.sock.0)
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

/// Why [`SecureServer::recv_message`] returned no message.
///
/// After any of them the server delivers no further messages.
/// [`SecureServer::try_recv_message`] gives the full [`LinkError`].
#[derive(Copy, Clone, Eq, PartialEq, Hash, Debug)]
pub enum SecureServerError {
    /// The message's HMAC tag did not verify: the sender does not hold the
    /// key, or the message was altered.
    InvalidHmac,
    /// The client closed the link cleanly; there are no more messages.
    PeerClosed,
    /// The link ended mid-message or without TLS `close_notify`.
    Truncated,
    /// The message was longer than the maximum frame length.
    FrameTooLarge,
    /// The TLS handshake or a TLS record failed (certificate, protocol,
    /// corrupted data).
    Tls,
    /// The link failed (I/O error, including read timeouts set on it).
    Io,
}

impl From<&LinkError> for SecureServerError {
    fn from(err: &LinkError) -> Self {
        match err {
            LinkError::InvalidHmac => SecureServerError::InvalidHmac,
            LinkError::Closed => SecureServerError::PeerClosed,
            LinkError::Truncated => SecureServerError::Truncated,
            LinkError::FrameTooLarge { .. } => SecureServerError::FrameTooLarge,
            LinkError::Tls(_)
            | LinkError::Config(_)
            | LinkError::HandshakeTimeout
            | LinkError::ModeMismatch { .. } => SecureServerError::Tls,
            LinkError::Io(_)
            | LinkError::FirstMessageTimeout(_)
            | LinkError::IdleTimeout(_)
            | LinkError::CloseTimeout(_)
            | LinkError::WriteTimeout(_)
            | LinkError::SinkClosed
            | LinkError::Protocol(_)
            | LinkError::PeerDead(_)
            | LinkError::TooManyHeartbeats
            | LinkError::GaveUp { .. }
            | LinkError::Outbox(_) => SecureServerError::Io,
        }
    }
}

impl fmt::Display for SecureServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SecureServerError::InvalidHmac => "invalid HMAC",
            SecureServerError::PeerClosed => "the peer closed the link",
            SecureServerError::Truncated => "the link was truncated",
            SecureServerError::FrameTooLarge => "frame too large",
            SecureServerError::Tls => "TLS error",
            SecureServerError::Io => "I/O error",
        })
    }
}

impl std::error::Error for SecureServerError {}

/// The server end: receives HMAC-authenticated messages over TLS.
pub struct SecureServer<L: Read + Write> {
    tls: StreamOwned<ServerConnection, NonZeroWrites<L>>,
    codec: HmacFrameCodec,
    read_buf: BytesMut,
    /// Plaintext read from TLS before it is appended to `read_buf`;
    /// allocated once, not per message.
    scratch: Box<[u8]>,
    /// The first failure; once set, every call reports it again.
    failed: Option<SecureServerError>,
}

impl<L: Read + Write> SecureServer<L> {
    /// A server over `link` presenting `server_full_chain` (PEM: the
    /// server's certificate, then intermediates) with `server_private_key`
    /// (PEM) and accepting messages signed with `hmac_key`.
    ///
    /// Does no I/O: the TLS handshake happens on the first
    /// [`recv_message`](Self::recv_message).
    ///
    /// # Panics
    ///
    /// If the certificate or key is not usable PEM (the lab's contract);
    /// use [`try_new`](Self::try_new) to get the error instead.
    pub fn new(
        link: L,
        hmac_key: &[u8],
        server_private_key: &str,
        server_full_chain: &str,
    ) -> Self {
        match Self::try_new(link, hmac_key, server_private_key, server_full_chain) {
            Ok(server) => server,
            Err(err) => panic!("secure_link::blocking::SecureServer::new: {err}"),
        }
    }

    /// Like [`new`](Self::new), returning configuration errors.
    ///
    /// # Errors
    ///
    /// [`LinkError::Config`] or [`LinkError::Tls`] for an unusable
    /// certificate chain or key.
    pub fn try_new(
        link: L,
        hmac_key: &[u8],
        server_private_key: &str,
        server_full_chain: &str,
    ) -> Result<Self, LinkError> {
        let config = tls::server_config(server_full_chain, server_private_key)?;
        Ok(SecureServer {
            tls: StreamOwned::new(ServerConnection::new(config)?, NonZeroWrites(link)),
            codec: HmacFrameCodec::new(hmac_key),
            read_buf: BytesMut::new(),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            failed: None,
        })
    }

    /// Receives the next message, blocking until it is complete.
    ///
    /// Never panics on anything the link delivers. After an error, every
    /// later call returns the same error without reading.
    ///
    /// # Errors
    ///
    /// [`SecureServerError::InvalidHmac`] for a message whose tag does not
    /// verify; see [`SecureServerError`] for the others.
    pub fn recv_message(&mut self) -> Result<Vec<u8>, SecureServerError> {
        self.try_recv_message()
            .map_err(|err| SecureServerError::from(&err))
    }

    /// Like [`recv_message`](Self::recv_message), with the full error.
    ///
    /// # Errors
    ///
    /// [`LinkError::InvalidHmac`], [`LinkError::Closed`] (clean close),
    /// [`LinkError::Truncated`], [`LinkError::FrameTooLarge`],
    /// [`LinkError::Tls`], [`LinkError::Io`]. After the first error, later
    /// calls return [`LinkError::InvalidHmac`], [`LinkError::Closed`] or
    /// [`LinkError::Truncated`] again, and an `Io` error naming the earlier
    /// failure otherwise.
    pub fn try_recv_message(&mut self) -> Result<Vec<u8>, LinkError> {
        if let Some(failed) = self.failed {
            return Err(repeat(failed));
        }
        self.read_message().inspect_err(|err| {
            self.failed = Some(SecureServerError::from(err));
        })
    }

    fn read_message(&mut self) -> Result<Vec<u8>, LinkError> {
        loop {
            if let Some(message) = self.codec.decode(&mut self.read_buf)? {
                return Ok(Vec::from(message));
            }
            let n = self.tls.read(&mut self.scratch)?;
            if n == 0 {
                // close_notify: a clean end only at a frame boundary.
                return match self.codec.decode_eof(&mut self.read_buf)? {
                    Some(message) => Ok(Vec::from(message)),
                    None => {
                        self.answer_close_notify();
                        Err(LinkError::Closed)
                    }
                };
            }
            self.read_buf.extend_from_slice(&self.scratch[..n]);
        }
    }

    /// Answers the client's `close_notify` with ours (best effort), as TLS
    /// clients such as OpenSSL's expect.
    fn answer_close_notify(&mut self) {
        write_close_notify(&mut self.tls.conn, &mut self.tls.sock);
    }

    /// The link and the rustls connection (negotiated version, suite, ...).
    pub fn get_ref(&self) -> (&L, &ServerConnection) {
        (&self.tls.sock.0, &self.tls.conn)
    }
}

/// Queues TLS `close_notify` and writes it out, ignoring failures: the
/// link is being given up either way, and no read may block here. A link
/// that accepts no bytes ends the attempt (never a spin).
fn write_close_notify<D: SideData>(conn: &mut ConnectionCommon<D>, sock: &mut impl Write) {
    conn.send_close_notify();
    while conn.wants_write() {
        match conn.write_tls(sock) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
    let _ = sock.flush();
}

/// A link whose `write` returning `Ok(0)` for a non-empty buffer is an
/// [`io::ErrorKind::WriteZero`] error: a link that accepts nothing must
/// fail a write, not leave rustls (or us) retrying it for ever.
struct NonZeroWrites<L>(L);

impl<L: Read> Read for NonZeroWrites<L> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<L: Write> Write for NonZeroWrites<L> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.0.write(buf)? {
            0 if !buf.is_empty() => Err(io::ErrorKind::WriteZero.into()),
            n => Ok(n),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self.0.write_vectored(bufs)? {
            0 if bufs.iter().any(|b| !b.is_empty()) => Err(io::ErrorKind::WriteZero.into()),
            n => Ok(n),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

fn repeat(failed: SecureServerError) -> LinkError {
    match failed {
        SecureServerError::InvalidHmac => LinkError::InvalidHmac,
        SecureServerError::PeerClosed => LinkError::Closed,
        SecureServerError::Truncated => LinkError::Truncated,
        other => LinkError::Io(io::Error::other(format!(
            "the link failed earlier ({other})"
        ))),
    }
}

impl<L: Read + Write + fmt::Debug> fmt::Debug for SecureServer<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecureServer")
            .field("link", &self.tls.sock.0)
            .field("codec", &self.codec)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}
