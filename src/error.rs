//! [`LinkError`]: every way a secure link can fail.

use std::io;

use tokio_rustls::rustls;

/// Everything that can go wrong on a secure link, from configuration to the
/// last frame.
///
/// Protocol failures keep their own variants so callers can tell a forged
/// frame ([`LinkError::InvalidHmac`]) from a dropped connection
/// ([`LinkError::Truncated`]) or a certificate problem ([`LinkError::Tls`]).
///
/// For code that lives in `std::io`, `LinkError` converts into
/// [`io::Error`] and back without losing the variant: an `io::Error` made
/// from a `LinkError` turns into the same `LinkError` again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// A frame's HMAC-SHA256 tag did not verify against the shared key.
    ///
    /// The sender does not hold the key (or the frame was altered). The link
    /// accepts no further frames after this error: a stream that yields it
    /// ends.
    #[error("invalid HMAC: the frame's tag does not match the shared key")]
    InvalidHmac,

    /// A frame's payload is longer than the configured maximum.
    ///
    /// Raised by the decoder as soon as a too-large length prefix arrives
    /// (before any memory is reserved for it), and by the encoder for a
    /// payload that may not be sent (nothing is written in that case).
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// The payload length that was declared or offered.
        len: u64,
        /// The maximum payload length in force.
        max: u64,
    },

    /// TLS failed: the handshake, a certificate check (unknown issuer, name
    /// mismatch, expiry), or a corrupted record. Keeps the rustls error.
    #[error("TLS error: {0}")]
    Tls(#[source] rustls::Error),

    /// The configuration given was unusable: PEM without a certificate or a
    /// key, an invalid server name, an empty or malformed HMAC key.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The connection ended in the middle of a frame, or without the TLS
    /// `close_notify` alert, so the data may have been cut short by an
    /// attacker or a crash. No partial frame is ever delivered.
    #[error("connection truncated: the peer went away mid-frame or without a TLS close_notify")]
    Truncated,

    /// The peer closed the link cleanly (TLS `close_notify` at a frame
    /// boundary): there are no more messages. Only calls that must return a
    /// message, such as the blocking
    /// [`try_recv_message`](crate::blocking::SecureServer::try_recv_message),
    /// report this; streams simply end.
    #[error("the peer closed the link")]
    Closed,

    /// The TLS handshake did not finish within the configured time
    /// ([`SecureAcceptor::with_handshake_timeout`](crate::SecureAcceptor::with_handshake_timeout),
    /// [`SecureConnector::with_handshake_timeout`](crate::SecureConnector::with_handshake_timeout)).
    #[error("TLS handshake timed out")]
    HandshakeTimeout,

    /// No authenticated message arrived within the server's first-message
    /// deadline ([`SecureAcceptor::with_first_message_timeout`](crate::SecureAcceptor::with_first_message_timeout)).
    #[error("no message within {0:?} of the handshake")]
    FirstMessageTimeout(std::time::Duration),

    /// The peer sent nothing for the server's idle limit
    /// ([`SecureAcceptor::with_idle_timeout`](crate::SecureAcceptor::with_idle_timeout)).
    #[error("the peer was silent for {0:?}")]
    IdleTimeout(std::time::Duration),

    /// The client's `close()` did not see the server confirm the end of the
    /// link (its TLS `close_notify`) within the close timeout
    /// ([`SecureConnector::with_close_timeout`](crate::SecureConnector::with_close_timeout)):
    /// the flush before `close_notify` did not finish (the server stopped
    /// reading), or the server did not answer, or replies nobody read
    /// filled what `close()` keeps for the stream. Messages already sent
    /// may or may not have been read.
    #[error("the peer did not confirm the end of the link within {0:?}")]
    CloseTimeout(std::time::Duration),

    /// A send, flush or close made no progress for the write timeout
    /// ([`SecureConnector::with_write_timeout`](crate::SecureConnector::with_write_timeout),
    /// [`SecureAcceptor::with_write_timeout`](crate::SecureAcceptor::with_write_timeout)):
    /// the peer took no bytes for that long (it stopped reading, hung, or
    /// is unreachable). The link's sending side is over: a frame may be
    /// half written, and every later send, flush or close fails the same
    /// way at once. Whether the peer got the messages sent before it is
    /// unknown.
    #[error("the peer took no bytes for {0:?}")]
    WriteTimeout(std::time::Duration),

    /// A message was given to a sink after its `close()` had started:
    /// it was not sent.
    #[error("the link is closed for sending")]
    SinkClosed,

    /// An I/O error from the underlying transport.
    #[error("I/O error: {0}")]
    Io(#[source] io::Error),

    /// The resilient protocol was broken: a malformed header, an unknown
    /// version or kind, a message out of order, a resume that would lose
    /// messages ([`resilient`](crate::resilient) draws the protocol). The
    /// connection is dropped; retrying cannot heal it.
    #[error("resilient protocol broken: {0}")]
    Protocol(String),

    /// No byte at all arrived from the peer for the dead time
    /// ([`ResilientConfig::with_dead_time`](crate::resilient::ResilientConfig::with_dead_time)):
    /// the connection is dropped. A resilient client reconnects.
    #[error("no byte from the peer for {0:?}: the peer is dead or cut off")]
    PeerDead(std::time::Duration),

    /// The peer sent frames that carry nothing new (heartbeats,
    /// acknowledgements of nothing) closer together than the minimum
    /// heartbeat interval more than
    /// [`MAX_HEARTBEAT_STRIKES`](crate::resilient::MAX_HEARTBEAT_STRIKES)
    /// times in a row, or its hello declared a heartbeat interval below
    /// that minimum (gRPC's "too many pings"). The connection is dropped.
    #[error("the peer sends heartbeats faster than this end allows")]
    TooManyHeartbeats,

    /// The two ends speak different modes (negotiated by TLS ALPN): a
    /// resilient client met a plain-only server, or a plain client a
    /// resilient-only server. Retrying cannot heal it.
    #[error("this end speaks the {local} mode, the peer the {peer} mode")]
    ModeMismatch {
        /// The mode this end asked for.
        local: crate::resilient::LinkMode,
        /// The mode the peer speaks.
        peer: crate::resilient::LinkMode,
    },

    /// The resilient mode's [`Outbox`](crate::resilient::Outbox) failed (a
    /// full disk, say). To keep a message: that `start_send` fails and
    /// nothing was queued. To release acknowledged messages, save the
    /// session record or give back a message it holds: the session ends,
    /// since going on could lose or repeat messages. Retrying a connection
    /// cannot heal it.
    #[error("the outbox failed: {0}")]
    Outbox(#[source] io::Error),

    /// A resilient client had no connection for its give-up limit
    /// ([`ResilientConfig::with_give_up_after`](crate::resilient::ResilientConfig::with_give_up_after)):
    /// it stopped reconnecting, and `unacked` messages were never
    /// acknowledged (the client hands them back).
    #[error("gave up reconnecting after {after:?}: {unacked} messages not acknowledged")]
    GaveUp {
        /// The give-up limit that passed.
        after: std::time::Duration,
        /// Messages handed back unacknowledged.
        unacked: usize,
    },
}

impl LinkError {
    pub(crate) fn config(reason: impl Into<String>) -> Self {
        LinkError::Config(reason.into())
    }

    /// Whether a new connection may heal this error: what a resilient
    /// client reconnects after.
    ///
    /// Yes for a connection that was lost, timed out or went silent
    /// ([`Truncated`](LinkError::Truncated), [`Closed`](LinkError::Closed),
    /// [`Io`](LinkError::Io), the timeouts, [`PeerDead`](LinkError::PeerDead)).
    /// No for what the next connection would meet again: TLS failures
    /// (a certificate refused), a wrong HMAC key
    /// ([`InvalidHmac`](LinkError::InvalidHmac)), a mode mismatch, a broken
    /// protocol, a configuration error, a message too large.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            LinkError::Truncated
                | LinkError::Closed
                | LinkError::Io(_)
                | LinkError::HandshakeTimeout
                | LinkError::FirstMessageTimeout(_)
                | LinkError::IdleTimeout(_)
                | LinkError::CloseTimeout(_)
                | LinkError::WriteTimeout(_)
                | LinkError::PeerDead(_)
        )
    }

    /// Whether this error, met by a stream, means the connection itself
    /// is gone (cut without `close_notify`, an I/O failure, a TLS alert):
    /// nothing written to it afterwards can arrive, so the sink refuses to
    /// take more.
    pub(crate) fn ends_connection(&self) -> bool {
        matches!(
            self,
            LinkError::Truncated | LinkError::Io(_) | LinkError::Tls(_)
        )
    }

    /// The same error again, for an error that two callers must both see
    /// (the client's stream and its `close()`). An I/O error keeps its kind
    /// and message, not its source chain.
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            LinkError::InvalidHmac => LinkError::InvalidHmac,
            LinkError::FrameTooLarge { len, max } => LinkError::FrameTooLarge {
                len: *len,
                max: *max,
            },
            LinkError::Tls(err) => LinkError::Tls(err.clone()),
            LinkError::Config(reason) => LinkError::Config(reason.clone()),
            LinkError::Truncated => LinkError::Truncated,
            LinkError::Closed => LinkError::Closed,
            LinkError::HandshakeTimeout => LinkError::HandshakeTimeout,
            LinkError::FirstMessageTimeout(limit) => LinkError::FirstMessageTimeout(*limit),
            LinkError::IdleTimeout(limit) => LinkError::IdleTimeout(*limit),
            LinkError::CloseTimeout(limit) => LinkError::CloseTimeout(*limit),
            LinkError::WriteTimeout(limit) => LinkError::WriteTimeout(*limit),
            LinkError::SinkClosed => LinkError::SinkClosed,
            LinkError::Io(err) => LinkError::Io(io::Error::new(err.kind(), err.to_string())),
            LinkError::Outbox(err) => {
                LinkError::Outbox(io::Error::new(err.kind(), err.to_string()))
            }
            LinkError::Protocol(reason) => LinkError::Protocol(reason.clone()),
            LinkError::PeerDead(limit) => LinkError::PeerDead(*limit),
            LinkError::TooManyHeartbeats => LinkError::TooManyHeartbeats,
            LinkError::ModeMismatch { local, peer } => LinkError::ModeMismatch {
                local: *local,
                peer: *peer,
            },
            LinkError::GaveUp { after, unacked } => LinkError::GaveUp {
                after: *after,
                unacked: *unacked,
            },
        }
    }
}

impl From<io::Error> for LinkError {
    /// Recovers the typed cause where there is one: a `LinkError` that was
    /// turned into an `io::Error`, a `rustls::Error` wrapped by tokio-rustls,
    /// or an unexpected EOF (which rustls reports for a missing
    /// `close_notify`).
    fn from(err: io::Error) -> Self {
        let typed = err
            .get_ref()
            .is_some_and(|inner| inner.is::<LinkError>() || inner.is::<rustls::Error>());
        if !typed {
            return match err.kind() {
                io::ErrorKind::UnexpectedEof => LinkError::Truncated,
                _ => LinkError::Io(err),
            };
        }
        let kind = err.kind();
        let Some(inner) = err.into_inner() else {
            return LinkError::Io(kind.into());
        };
        match inner.downcast::<LinkError>() {
            Ok(link) => *link,
            Err(inner) => match inner.downcast::<rustls::Error>() {
                Ok(tls) => LinkError::Tls(*tls),
                Err(other) => LinkError::Io(io::Error::new(kind, other)),
            },
        }
    }
}

impl From<rustls::Error> for LinkError {
    fn from(err: rustls::Error) -> Self {
        LinkError::Tls(err)
    }
}

impl From<LinkError> for io::Error {
    /// Keeps the `LinkError` inside, so converting back gives the same
    /// variant; `LinkError::Io` is simply unwrapped.
    fn from(err: LinkError) -> Self {
        let kind = match err {
            LinkError::Io(io) => return io,
            LinkError::InvalidHmac | LinkError::FrameTooLarge { .. } | LinkError::Tls(_) => {
                io::ErrorKind::InvalidData
            }
            LinkError::Config(_) => io::ErrorKind::InvalidInput,
            LinkError::Truncated | LinkError::Closed => io::ErrorKind::UnexpectedEof,
            LinkError::HandshakeTimeout
            | LinkError::FirstMessageTimeout(_)
            | LinkError::IdleTimeout(_)
            | LinkError::CloseTimeout(_)
            | LinkError::WriteTimeout(_) => io::ErrorKind::TimedOut,
            LinkError::SinkClosed => io::ErrorKind::BrokenPipe,
            LinkError::Protocol(_) | LinkError::TooManyHeartbeats => io::ErrorKind::InvalidData,
            LinkError::ModeMismatch { .. } => io::ErrorKind::Unsupported,
            LinkError::PeerDead(_) | LinkError::GaveUp { .. } => io::ErrorKind::TimedOut,
            LinkError::Outbox(ref inner) => inner.kind(),
        };
        io::Error::new(kind, err)
    }
}
