//! [`Revoked`]: why an acceptor's configuration no longer authorises a live
//! link (see [`SecureServer::revoked_by`](crate::SecureServer::revoked_by)),
//! and the two checks behind it.

use std::fmt;

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use tokio_rustls::rustls;

use crate::HmacKey;

/// Why a configuration no longer authorises a link it did authorise when
/// the link was accepted: after a reload removed the link's HMAC key or
/// its client's CA, the link should be closed, or "shutting a node out"
/// would only shut out its next connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revoked {
    /// The HMAC key the link is pinned to (the one its client's first
    /// message verified under) is not among the configuration's keys.
    Key,
    /// The configuration requires client certificates and the link's
    /// client certificate chain does not verify under its client CAs now
    /// (another CA, an expired certificate), or the link has none.
    ClientCa,
}

impl Revoked {
    /// A short name for logs and metrics: `key_revoked` or
    /// `client_ca_revoked`.
    pub fn label(self) -> &'static str {
        match self {
            Revoked::Key => "key_revoked",
            Revoked::ClientCa => "client_ca_revoked",
        }
    }
}

impl fmt::Display for Revoked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Revoked::Key => "the link's HMAC key is no longer accepted",
            Revoked::ClientCa => "the client's certificate no longer verifies under the client CAs",
        })
    }
}

/// What authorised a live link, kept to check it again after a reload:
/// a plain link's ([`SecureServer::revoked_by`](crate::SecureServer::revoked_by)),
/// and a resilient session's, which outlives the connection it was
/// opened on.
#[derive(Clone)]
pub(crate) struct Credentials {
    /// The HMAC key the link is pinned to.
    pub(crate) key: Pinned,
    /// The client's certificate chain (end entity first), where it sent one.
    pub(crate) chain: Option<Vec<CertificateDer<'static>>>,
}

/// The key a link is pinned to.
#[derive(Clone)]
pub(crate) enum Pinned {
    /// Not yet: no message verified (nothing to check).
    Not,
    /// This key.
    Key(HmacKey),
    /// An index the link's keys do not hold: nothing can vouch for it.
    Unknown,
}

impl Credentials {
    /// Why `keys` and `verifier` (a configuration's) no longer authorise
    /// these credentials, if they do not.
    pub(crate) fn revoked_by<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a HmacKey>,
        verifier: Option<&dyn ClientCertVerifier>,
    ) -> Option<Revoked> {
        match &self.key {
            Pinned::Not => {}
            Pinned::Key(pinned) if !key_revoked(pinned, keys) => {}
            Pinned::Key(_) | Pinned::Unknown => return Some(Revoked::Key),
        }
        client_ca_revoked(verifier?, self.chain.as_deref()).then_some(Revoked::ClientCa)
    }
}

impl fmt::Debug for Credentials {
    // The key stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("pinned", &!matches!(self.key, Pinned::Not))
            .field("chain", &self.chain.as_ref().map(Vec::len))
            .finish()
    }
}

/// Whether `pinned` is missing from `accepted` (compared in constant time).
pub(crate) fn key_revoked<'a>(
    pinned: &HmacKey,
    accepted: impl IntoIterator<Item = &'a HmacKey>,
) -> bool {
    // Every key is compared: no early exit at a match.
    !accepted
        .into_iter()
        .fold(false, |found, key| key.same_as(pinned) | found)
}

/// Whether the client chain `certs` (end entity first) fails `verifier`
/// now; no chain fails it.
pub(crate) fn client_ca_revoked(
    verifier: &dyn ClientCertVerifier,
    certs: Option<&[CertificateDer<'_>]>,
) -> bool {
    match certs {
        Some([end_entity, intermediates @ ..]) => verifier
            .verify_client_cert(end_entity, intermediates, UnixTime::now())
            .is_err(),
        _ => true,
    }
}
