//! TLS configuration: PEM in, rustls `ClientConfig` / `ServerConfig` out.
//!
//! Both configurations allow TLS 1.3 only and are built with an explicit
//! crypto provider ([`provider`]), never rustls' process-wide default, so
//! the crate keeps working in an application that compiles in both of
//! rustls' providers (where `ClientConfig::builder()` would panic).
//!
//! Provider choice is a cargo feature: `aws-lc-rs` (the default) or `ring`;
//! with both enabled, aws-lc-rs is used. With aws-lc-rs the post-quantum
//! hybrid key exchange X25519MLKEM768 is offered first, so two ends built
//! with this crate negotiate it; X25519, P-256 and P-384 remain for other
//! peers.

use std::sync::{Arc, OnceLock};

use rustls::SignatureScheme;
use rustls::client::{ClientConfig, ResolvesClientCert};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, version};
use tokio_rustls::rustls;

use crate::LinkError;

#[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
compile_error!("secure-link needs a crypto provider: enable the `aws-lc-rs` or the `ring` feature");

/// The rustls crypto provider every configuration of this crate is built
/// with (chosen by cargo feature; see the [module docs](self)).
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(build_provider())).clone()
}

#[cfg(feature = "aws-lc-rs")]
fn build_provider() -> CryptoProvider {
    use rustls::crypto::aws_lc_rs::{self, kx_group};
    CryptoProvider {
        // Post-quantum hybrid first: rustls only prefers it with its
        // `prefer-post-quantum` feature, which we do not rely on.
        kx_groups: vec![
            kx_group::X25519MLKEM768,
            kx_group::X25519,
            kx_group::SECP256R1,
            kx_group::SECP384R1,
        ],
        ..aws_lc_rs::default_provider()
    }
}

#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
fn build_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// A TLS 1.3 client configuration that trusts the root certificates in
/// `root_cert_pem` (one or more `CERTIFICATE` blocks) and nothing else.
/// It offers the plain mode's ALPN id,
/// [`PLAIN_ALPN`](crate::resilient::PLAIN_ALPN), so that a resilient-only
/// server refuses it in the handshake, naming the mode; servers without
/// ALPN (the lab's) ignore it.
///
/// # Errors
///
/// [`LinkError::Config`] if the PEM holds no certificate or cannot be
/// parsed; [`LinkError::Tls`] if rustls rejects a certificate.
pub fn client_config(root_cert_pem: &str) -> Result<Arc<ClientConfig>, LinkError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&version::TLS13])?
        .with_root_certificates(root_store(root_cert_pem)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![crate::resilient::PLAIN_ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// A handshake error that says the peer speaks the other mode: the
/// `no_application_protocol` alert (received by a client, sent by a
/// server) after this end offered the id of one mode of this crate and
/// not the other's. A server that serves both modes never maps it (a
/// client that offered neither speaks another protocol); a resilient-only
/// server names the plain mode for any client that did not offer the
/// resilient id, one of another protocol too. A client cannot
/// tell a server of the other mode from a server of another protocol
/// that has ALPN ids of its own: it names the other mode.
pub(crate) fn mode_mismatch(err: LinkError, alpn: &[Vec<u8>]) -> LinkError {
    use crate::resilient::LinkMode;
    let refused = matches!(
        err,
        LinkError::Tls(
            rustls::Error::NoApplicationProtocol
                | rustls::Error::AlertReceived(rustls::AlertDescription::NoApplicationProtocol)
        )
    );
    match LinkMode::offered(alpn) {
        Some(local) if refused => LinkError::ModeMismatch {
            local,
            peer: local.other(),
        },
        _ => err,
    }
}

/// A TLS 1.3 server configuration presenting `cert_chain_pem` (the server's
/// certificate first, then any intermediates) with `private_key_pem`
/// (PKCS#8, PKCS#1 RSA or SEC1 EC).
///
/// The server sends no TLS 1.3 session tickets: a client that only writes
/// would leave them unread, and closing a socket with unread data resets the
/// connection, which can destroy the tail of what it sent.
///
/// # Errors
///
/// [`LinkError::Config`] if either PEM holds no certificate / key or cannot
/// be parsed; [`LinkError::Tls`] if rustls rejects the pair (for instance a
/// key that does not match the certificate).
pub fn server_config(
    cert_chain_pem: &str,
    private_key_pem: &str,
) -> Result<Arc<ServerConfig>, LinkError> {
    let (chain, key) = cert_and_key(cert_chain_pem, private_key_pem)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// `config` with a client certificate: the client presents `cert_chain_pem`
/// (its certificate first) signed with `private_key_pem` when the server
/// asks for one (mutual TLS). The rest of `config` is kept.
///
/// # Errors
///
/// [`LinkError::Config`] if either PEM holds no certificate / key or cannot
/// be parsed; [`LinkError::Tls`] if the key is unusable or does not match
/// the certificate.
pub fn with_client_cert(
    config: &ClientConfig,
    cert_chain_pem: &str,
    private_key_pem: &str,
) -> Result<Arc<ClientConfig>, LinkError> {
    let (chain, key) = cert_and_key(cert_chain_pem, private_key_pem)?;
    let certified = CertifiedKey::from_der(chain, key, config.crypto_provider())?;
    let mut config = config.clone();
    config.client_auth_cert_resolver = Arc::new(ClientCertificate(Arc::new(certified)));
    Ok(Arc::new(config))
}

/// Always offers the one certificate it holds.
#[derive(Debug)]
struct ClientCertificate(Arc<CertifiedKey>);

impl ResolvesClientCert for ClientCertificate {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// `config` requiring a client certificate that chains to a root in
/// `client_ca_pem` (mutual TLS). The server's certificate, its other
/// settings and its crypto provider are kept; a client without a
/// certificate, or with one from another CA, fails the handshake.
///
/// # Errors
///
/// [`LinkError::Config`] if the PEM holds no certificate or cannot be
/// parsed; [`LinkError::Tls`] if rustls rejects a root.
pub fn requiring_client_certs(
    config: &ServerConfig,
    client_ca_pem: &str,
) -> Result<Arc<ServerConfig>, LinkError> {
    let verifier = client_verifier(config.crypto_provider(), client_ca_pem)?;
    requiring(config, verifier)
}

/// A verifier of client certificates that chain to a root in
/// `client_ca_pem`, with `provider`'s signature algorithms.
pub(crate) fn client_verifier(
    provider: &Arc<CryptoProvider>,
    client_ca_pem: &str,
) -> Result<Arc<dyn ClientCertVerifier>, LinkError> {
    WebPkiClientVerifier::builder_with_provider(
        Arc::new(root_store(client_ca_pem)?),
        provider.clone(),
    )
    .build()
    .map_err(|err| LinkError::config(format!("unusable client CA: {err}")))
}

/// `config` with client certificates checked by `verifier`.
pub(crate) fn requiring(
    config: &ServerConfig,
    verifier: Arc<dyn ClientCertVerifier>,
) -> Result<Arc<ServerConfig>, LinkError> {
    let mut fresh = ServerConfig::builder_with_provider(config.crypto_provider().clone())
        .with_protocol_versions(&[&version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(config.cert_resolver.clone());
    // Everything else as it was (the verifier is the only private part).
    fresh.send_tls13_tickets = config.send_tls13_tickets;
    fresh.ignore_client_order = config.ignore_client_order;
    fresh.max_fragment_size = config.max_fragment_size;
    fresh.session_storage = config.session_storage.clone();
    fresh.ticketer = config.ticketer.clone();
    fresh.alpn_protocols = config.alpn_protocols.clone();
    fresh.key_log = config.key_log.clone();
    fresh.max_early_data_size = config.max_early_data_size;
    fresh.send_half_rtt_data = config.send_half_rtt_data;
    Ok(Arc::new(fresh))
}

/// Parses a DNS name or an IP address into a rustls `ServerName`.
///
/// # Errors
///
/// [`LinkError::Config`] if `name` is neither.
pub fn server_name(name: &str) -> Result<ServerName<'static>, LinkError> {
    ServerName::try_from(name.to_owned())
        .map_err(|_| LinkError::config(format!("invalid server name {name:?}")))
}

/// The root certificates in `pem`, as a rustls trust store: for a
/// [`ClientConfig`] built by hand (other cipher suites, ALPN) that trusts
/// the same roots as [`client_config`].
///
/// # Errors
///
/// [`LinkError::Config`] if `pem` has no `CERTIFICATE` block or cannot be
/// parsed (the problem in words, e.g. a block without its `END` line), and
/// [`LinkError::Tls`] if rustls refuses a certificate as a root.
pub fn root_store(pem: &str) -> Result<RootCertStore, LinkError> {
    let mut roots = RootCertStore::empty();
    for cert in parse_certs(pem, "root certificate")? {
        roots.add(cert)?;
    }
    Ok(roots)
}

/// A certificate chain (leaf first) and its private key, from PEM: what a
/// [`ServerConfig`] built by hand, or a client certificate, takes.
///
/// # Errors
///
/// [`LinkError::Config`] if the chain has no `CERTIFICATE` block or cannot
/// be parsed, or `private_key_pem` holds no usable private key (PKCS#8,
/// PKCS#1 or SEC1). Whether the key matches the chain is checked where the
/// configuration is built, not here.
pub fn cert_and_key(
    cert_chain_pem: &str,
    private_key_pem: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), LinkError> {
    let chain = parse_certs(cert_chain_pem, "certificate chain")?;
    let key = PrivateKeyDer::from_pem_slice(private_key_pem.as_bytes()).map_err(|err| {
        LinkError::config(format!(
            "no usable private key in the private key PEM: {}",
            pem_problem(&err)
        ))
    })?;
    Ok((chain, key))
}

fn parse_certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, LinkError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| {
            LinkError::config(format!(
                "cannot parse the {what} PEM: {}",
                pem_problem(&err)
            ))
        })?;
    if certs.is_empty() {
        return Err(LinkError::config(format!(
            "no CERTIFICATE block in the {what} PEM"
        )));
    }
    Ok(certs)
}

/// A PEM parse error in words: rustls-pki-types prints the markers it
/// names as lists of byte values.
fn pem_problem(err: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).escape_debug().to_string();
    match err {
        Error::MissingSectionEnd { end_marker } => format!(
            "it ends inside a block, with no `-----END {}-----` line (cut short, or still being written?)",
            text(end_marker)
        ),
        Error::IllegalSectionStart { line } => {
            format!("malformed line starting a block: {:?}", text(line))
        }
        other => other.to_string(),
    }
}
