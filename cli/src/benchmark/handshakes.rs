//! Handshakes: full TLS 1.3 handshakes per second over 127.0.0.1 TCP
//! against one server, one at a time, for each server key type and key
//! exchange group; ours (`SecureConnector::connect` / `SecureAcceptor::
//! accept`) against tokio-rustls alone on the same configurations.

use secure_link::tokio_rustls;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio_rustls::rustls::crypto::SupportedKxGroup;
use tokio_rustls::rustls::{ClientConfig, NamedGroup, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use secure_link::{HmacKey, LinkError, SecureAcceptor, SecureConnector, tls};

/// The server's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServerKey {
    /// ECDSA P-256 (what `secure-link gen-certs` makes).
    EcdsaP256,
    /// RSA-2048 (the lab's certificates).
    Rsa2048,
}

/// The key exchange group the client offers (alone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KxGroup {
    /// The post-quantum hybrid, this crate's first choice.
    X25519MlKem768,
    /// Classic X25519.
    X25519,
}

/// Who runs the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Handshaker {
    /// `SecureConnector::connect` and `SecureAcceptor::accept`.
    Ours,
    /// `TlsConnector::connect` and `TlsAcceptor::accept`, same configurations.
    TokioRustls,
}

/// The cases this build can run: RSA key generation and X25519MLKEM768 need
/// the aws-lc-rs provider.
pub fn cases() -> Vec<(ServerKey, KxGroup)> {
    let keys: &[ServerKey] = if cfg!(feature = "aws-lc-rs") {
        &[ServerKey::EcdsaP256, ServerKey::Rsa2048]
    } else {
        &[ServerKey::EcdsaP256]
    };
    let groups: &[KxGroup] = if cfg!(feature = "aws-lc-rs") {
        &[KxGroup::X25519MlKem768, KxGroup::X25519]
    } else {
        &[KxGroup::X25519]
    };
    keys.iter()
        .flat_map(|&k| groups.iter().map(move |&g| (k, g)))
        .collect()
}

/// Performs `count` handshakes, one after the other, and times them all
/// (TCP connect included, for both handshakers alike).
///
/// # Errors
///
/// Certificate generation, configuration or handshake failures.
pub async fn handshakes(
    handshaker: Handshaker,
    key: ServerKey,
    group: KxGroup,
    count: usize,
) -> Result<Duration, LinkError> {
    let (client_config, server_config) = configs(key, group)?;
    let hmac = HmacKey::generate()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acceptor = SecureAcceptor::from_config(server_config.clone(), &hmac);
    let raw_acceptor = TlsAcceptor::from(server_config);
    let server = tokio::spawn(async move {
        for _ in 0..count {
            let (tcp, _) = listener.accept().await?;
            match handshaker {
                Handshaker::Ours => drop(acceptor.accept(tcp).await?),
                Handshaker::TokioRustls => drop(raw_acceptor.accept(tcp).await?),
            }
        }
        Ok::<_, LinkError>(())
    });
    let connector = SecureConnector::from_config(client_config.clone(), &hmac);
    let raw_connector = TlsConnector::from(client_config);
    let started = Instant::now();
    for _ in 0..count {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        match handshaker {
            Handshaker::Ours => drop(connector.connect("localhost", tcp).await?),
            Handshaker::TokioRustls => drop(
                raw_connector
                    .connect(tls::server_name("localhost")?, tcp)
                    .await?,
            ),
        }
    }
    let elapsed = started.elapsed();
    server
        .await
        .map_err(|err| LinkError::Io(std::io::Error::other(err)))??;
    Ok(elapsed)
}

/// A CA, a server certificate with a key of `key`'s type, and this crate's
/// client and server configurations, the client offering only `group`.
fn configs(
    key: ServerKey,
    group: KxGroup,
) -> Result<(Arc<ClientConfig>, Arc<ServerConfig>), LinkError> {
    let generated = || -> Result<(String, String, String), rcgen::Error> {
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.distinguished_name.push(DnType::CommonName, "bench CA");
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);
        let server_key = match key {
            ServerKey::EcdsaP256 => KeyPair::generate()?,
            #[cfg(feature = "aws-lc-rs")]
            ServerKey::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)?
            }
            #[cfg(not(feature = "aws-lc-rs"))]
            ServerKey::Rsa2048 => return Err(rcgen::Error::KeyGenerationUnavailable),
        };
        let cert = CertificateParams::new(vec!["localhost".to_owned()])?
            .signed_by(&server_key, &issuer)?;
        Ok((ca_cert.pem(), cert.pem(), server_key.serialize_pem()))
    };
    let (ca_pem, cert_pem, key_pem) = generated()
        .map_err(|err| LinkError::Config(format!("cannot generate certificates: {err}")))?;
    let server = tls::server_config(&cert_pem, &key_pem)?;
    let groups: Vec<&'static dyn SupportedKxGroup> = tls::provider()
        .kx_groups
        .iter()
        .copied()
        .filter(|g| {
            g.name()
                == match group {
                    KxGroup::X25519MlKem768 => NamedGroup::X25519MLKEM768,
                    KxGroup::X25519 => NamedGroup::X25519,
                }
        })
        .collect();
    if groups.is_empty() {
        return Err(LinkError::Config(format!(
            "{group:?} is not in this build's provider"
        )));
    }
    let provider = tokio_rustls::rustls::crypto::CryptoProvider {
        kx_groups: groups,
        ..(*tls::provider()).clone()
    };
    let client = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&tokio_rustls::rustls::version::TLS13])?
        .with_root_certificates(tls::root_store(&ca_pem)?)
        .with_no_client_auth();
    Ok((Arc::new(client), server))
}
