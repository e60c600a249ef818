//! [`LinkMode`] and the ALPN ids that negotiate it.

use std::fmt;

/// The ALPN protocol id of the resilient mode, version 1.
pub const RESILIENT_ALPN: &[u8] = b"secure-link-resilient/1";

/// The ALPN protocol id this crate's plain clients offer
/// ([`tls::client_config`](crate::tls::client_config)): the lab's frames,
/// nothing inside them. A client that offers no ALPN at all (the lab's
/// own clients) gets the plain mode too. It lets a resilient-only server
/// refuse a plain client of this crate in the TLS handshake (the
/// `no_application_protocol` alert), so that the client learns why
/// ([`LinkError::ModeMismatch`](crate::LinkError::ModeMismatch)); a server
/// without ALPN ignores it.
pub const PLAIN_ALPN: &[u8] = b"secure-link/1";

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
    /// resilient id, or the plain id or none at all for the plain mode.
    /// Any other id is `None`: a protocol this crate does not speak.
    pub fn from_alpn(alpn: Option<&[u8]>) -> Option<LinkMode> {
        match alpn {
            None => Some(LinkMode::Plain),
            Some(id) if id == PLAIN_ALPN => Some(LinkMode::Plain),
            Some(id) if id == RESILIENT_ALPN => Some(LinkMode::Resilient),
            Some(_) => None,
        }
    }

    /// The one mode an end asks for, from the ALPN ids it offers; `None`
    /// for both (a server that serves either) or for ids of other
    /// protocols alone.
    pub(crate) fn offered(alpn: &[Vec<u8>]) -> Option<LinkMode> {
        let has = |wanted: &[u8]| alpn.iter().any(|id| id == wanted);
        match (has(PLAIN_ALPN), has(RESILIENT_ALPN)) {
            (true, false) => Some(LinkMode::Plain),
            (false, true) => Some(LinkMode::Resilient),
            _ => None,
        }
    }

    /// The other mode.
    pub(crate) fn other(self) -> LinkMode {
        match self {
            LinkMode::Plain => LinkMode::Resilient,
            LinkMode::Resilient => LinkMode::Plain,
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
