//! What a run compares: the peers, the transports, how messages are handed
//! to the link.

use std::fmt;

/// The implementation under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// This crate.
    Ours,
    /// tokio-rustls + `LengthDelimitedCodec`, no HMAC (the ceiling).
    P1,
    /// tokio-rustls + a hand-written HMAC codec, default `Framed`.
    P2,
    /// P2 with the HMAC keyed once and cloned per frame.
    P2b,
    /// P2 on tokio-rustls' default TLS configuration.
    P3,
}

impl Peer {
    /// All five, in table order.
    pub const ALL: [Peer; 5] = [Peer::Ours, Peer::P1, Peer::P2, Peer::P2b, Peer::P3];
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Peer::Ours => "ours",
            Peer::P1 => "P1",
            Peer::P2 => "P2",
            Peer::P2b => "P2b",
            Peer::P3 => "P3",
        })
    }
}

/// The byte stream under the TLS link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// `tokio::io::duplex` with a 1 MiB buffer.
    Duplex,
    /// TCP over 127.0.0.1 (Nagle off).
    Tcp,
}

/// How the client hands messages to the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `feed` every message, one `flush` at the end (what `send_all` does).
    Batched,
    /// `send` (encode + flush) each message.
    PerMessage,
}
