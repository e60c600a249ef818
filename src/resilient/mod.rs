//! The resilient mode: links that survive failures (opt-in).
//!
//! A plain link dies with its TCP connection. In the resilient mode a
//! *session* outlives its connections: the client reconnects, both ends
//! resend what the other has not acknowledged, and each message is
//! delivered once.
//!
//! # The guarantee
//!
//! While both processes live and the network eventually carries bytes
//! again, every message handed to a resilient sink is delivered to the
//! peer's stream **exactly once and in order**, across any number of
//! connection losses. When the receiving process restarts (its sessions
//! are gone), nothing it acknowledged is lost, what it did not
//! acknowledge is sent again, and the sender is told (the session comes
//! back as *peer restarted*), because the dead receiver may already have
//! delivered some of those. Nothing is dropped silently: a sender that
//! gives up (only when a limit was set) hands back what was not
//! acknowledged.
//!
//! A message is acknowledged when it is in the receiving end's stream:
//! its queue for the application ([`MAX_UNREAD_MESSAGES`],
//! [`MAX_UNREAD_BYTES`]). A receiving process that dies loses what was in
//! that queue, as it loses what its application had taken and not yet
//! acted on.
//!
//! # Negotiation
//!
//! The mode is negotiated by TLS ALPN: the resilient client offers
//! [`RESILIENT_ALPN`]; this crate's plain clients offer [`PLAIN_ALPN`], and
//! the lab's clients offer none, which is the plain mode too. A resilient
//! client that meets a plain-only server, or a plain client of this crate
//! that meets a resilient-only server, fails at once with
//! [`LinkError::ModeMismatch`](crate::LinkError::ModeMismatch), and so
//! does the server (a plain-only server has nothing to check: it sees the
//! resilient client close before it sends anything). A client that offers
//! no ALPN cannot be refused in the handshake: a resilient-only server
//! refuses it right after, and the client finds its link closed. The frames
//! are the plain mode's (`length | payload | tag`, with either
//! [`AuthMode`](crate::AuthMode)); the resilient header lives inside the
//! payload.
//!
//! # The header
//!
//! Every frame's payload starts with 19 bytes, big-endian:
//!
//! ```text
//! +------------+---------+----------+--------------+--------------+------------------+
//! | version u8 | kind u8 | flags u8 | seq: u64     | ack: u64     | body             |
//! | = 1        |         |          |              |              | (by kind)        |
//! +------------+---------+----------+--------------+--------------+------------------+
//!
//! kind       seq                          body
//! 0 data     this message's number        the message; flag 0x01: acknowledge at once
//! 1 ack      0                            empty
//! 2 heartbeat  nonce                      empty
//! 3 answer   the heartbeat's nonce        empty
//! 4 hello    oldest number still held     session id: 16 bytes | heartbeat interval ms: u32
//!            (the next one if none)         | dead time ms: u32
//! 5 end      0                            reason: UTF-8, at most 256 bytes
//! ```
//!
//! `ack` is cumulative, in every kind: the sender has every message
//! numbered below it. Numbers start at 0 in each direction of a session
//! and never repeat. Flags other than data's 0x01 and the server hello's
//! 0x02 (it still had the session) are refused; so are
//! other versions and kinds ([`LinkError::Protocol`](crate::LinkError::Protocol)).
//!
//! # A session's life
//!
//! ```text
//!                 hello (id) / hello (id, not resumed)
//!   client new ──────────────────────────────────────▶ established ◀──┐
//!                                                         │           │ hello (id) /
//!                                        connection lost, │           │ hello (id, resumed):
//!                                        peer dead        ▼           │ resume
//!                                                      resuming ──────┘
//!                                                         │ hello (id) / hello (id, not resumed):
//!                                                         │ peer restarted, resend all held
//!                                 end (either way) ─▶  ended
//! ```
//!
//! * The client names the session: 128 random bits from the crypto
//!   provider's secure random source, chosen once and sent in every
//!   hello. The client speaks first on each connection; its hello carries
//!   the oldest message it still holds (`seq`) and the next it expects
//!   (`ack`). The server answers with its own, flagged 0x02 when it still
//!   had the session; without the flag the session is new to it, and a
//!   client that had sent before learns that the server restarted. Then
//!   each side drops what the other acknowledged and sends the rest, in
//!   order.
//! * A session is bound to the peer that opened it (the HMAC key that
//!   verified its frames, and the client certificate where mTLS is on): a
//!   hello naming a session of another peer is refused with an `End`
//!   ("the session belongs to another peer") and its connection closed;
//!   the session goes on untouched. The id is a name, not a credential.
//! * A message that arrives again is acknowledged and dropped; a gap is a
//!   protocol error.
//!
//! # Liveness
//!
//! A quiet end sends a heartbeat every
//! [`DEFAULT_HEARTBEAT_INTERVAL`] (or a third of the peer's dead time
//! when that is sooner); the answer gives the round-trip time. The peer
//! is dead when no byte at all came for [`DEFAULT_DEAD_TIME`]: a large
//! frame still arriving counts. Frames that carry nothing new may not
//! come closer than [`DEFAULT_MIN_HEARTBEAT_INTERVAL`] more than
//! [`MAX_HEARTBEAT_STRIKES`] times in a row
//! ([`LinkError::TooManyHeartbeats`](crate::LinkError::TooManyHeartbeats));
//! answers to this end's own heartbeats never count, and after this end
//! stopped reading (its application left [`MAX_UNREAD_MESSAGES`] or
//! [`MAX_UNREAD_BYTES`] waiting) one such frame per minimum interval of
//! the stall is forgiven, since the stall bunched them up. While it does
//! not read, the dead time does not run: this end's deafness is not the
//! peer's silence.
//!
//! # Acknowledgements
//!
//! Carried by every frame. A receiver sends one on its own only when
//! [`ACK_EVERY`] messages wait for it, after [`DEFAULT_ACK_DELAY`], or at
//! once for data flagged as the last its sender has for now.

// Where things are: the header (`wire.rs`), the session state machine
// (`session.rs`, sans I/O: it is given `now` and payloads and returns
// payloads, events and its next deadline), the outbox (`outbox.rs`),
// the reconnect schedule (`backoff.rs`), the timings and bounds
// (`config.rs`), ALPN and the mode (`mode.rs`).

mod backoff;
mod client;
mod config;
mod driver;
mod link;
mod mode;
mod outbox;
mod server;
mod session;
mod wire;

#[cfg(test)]
mod tests;

pub use client::ResilientConnector;
pub use config::{
    ACK_EVERY, DEFAULT_ACK_DELAY, DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP, DEFAULT_DEAD_TIME,
    DEFAULT_HEALTHY_AFTER, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_MAX_SESSIONS,
    DEFAULT_MIN_HEARTBEAT_INTERVAL, DEFAULT_SESSION_EXPIRY, MAX_HEARTBEAT_STRIKES, ResilientConfig,
};
pub use link::{
    MAX_EVENTS, MAX_UNREAD_BYTES, MAX_UNREAD_MESSAGES, ResilientEvent, ResilientEvents,
    ResilientLink, ResilientStats,
};
pub use mode::{LinkMode, PLAIN_ALPN, RESILIENT_ALPN};
pub use outbox::{
    DEFAULT_OUTBOX_BYTES, DEFAULT_OUTBOX_MESSAGES, MemoryOutbox, Outbox, SessionRecord,
};
pub use server::{Accepted, ResilientAcceptor};
