//! [`LinkMode`] and the ALPN ids that negotiate it.

use std::fmt;

/// The ALPN protocol id of the resilient mode, version 1. The plain mode
/// offers no ALPN at all (the lab's clients do not), so a server that
/// speaks both tells them apart by it.
pub const RESILIENT_ALPN: &[u8] = b"secure-link-resilient/1";

/// What a link speaks inside its frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LinkMode {
    /// The lab's format: each frame's payload is the message.
    Plain,
    /// The resilient protocol ([module docs](super)): each payload starts
    /// with a header; sessions survive reconnects.
    Resilient,
}

impl LinkMode {
    /// The mode a handshake negotiated, from its ALPN result: the
    /// resilient id, or none at all for the plain mode. Any other id
    /// is `None`: a protocol this crate does not speak.
    pub fn from_alpn(alpn: Option<&[u8]>) -> Option<LinkMode> {
        match alpn {
            None => Some(LinkMode::Plain),
            Some(id) if id == RESILIENT_ALPN => Some(LinkMode::Resilient),
            Some(_) => None,
        }
    }
}

impl fmt::Display for LinkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkMode::Plain => "plain",
            LinkMode::Resilient => "resilient",
        })
    }
}
