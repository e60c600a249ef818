//! Self-made certificates: a fresh CA, a server certificate it signs and,
//! for mutual TLS, client certificates it signs too; for tests, demos and
//! private deployments (feature `certs`).
//!
//! ```
//! use secure_link::{certs, SecureAcceptor, SecureConnector};
//!
//! let bundle = certs::generate(&["localhost"])?;
//! let acceptor = SecureAcceptor::new(&bundle.chain_pem, &bundle.key_pem, &b"key"[..])?;
//! let connector = SecureConnector::new(&bundle.ca_pem, &b"key"[..])?;
//! # Ok::<(), secure_link::LinkError>(())
//! ```

use std::fmt;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use zeroize::Zeroizing;

use crate::LinkError;

/// A CA certificate, a server certificate signed by it and any client
/// certificates signed by it, as PEM.
pub struct CertBundle {
    /// The CA's certificate: what clients trust (`ca.pem`), and what a
    /// server requiring client certificates trusts
    /// ([`SecureAcceptor::with_client_ca`](crate::SecureAcceptor::with_client_ca)).
    pub ca_pem: String,
    /// The server's certificate followed by the CA's: what the server
    /// presents (`server-chain.pem`).
    pub chain_pem: String,
    /// The server's private key, PKCS#8 (`server-key.pem`). Wiped on drop.
    pub key_pem: Zeroizing<String>,
    /// Client certificates, in the order their names were given to
    /// [`generate_with_clients`].
    pub clients: Vec<ClientCert>,
}

/// A client certificate signed by the bundle's CA, for mutual TLS
/// ([`SecureConnector::with_client_cert`](crate::SecureConnector::with_client_cert)).
pub struct ClientCert {
    /// The name it was made for: its common name, and its DNS name where
    /// the name is one.
    pub name: String,
    /// The client's certificate followed by the CA's (`client-NAME-chain.pem`).
    pub chain_pem: String,
    /// The client's private key, PKCS#8 (`client-NAME-key.pem`). Wiped on
    /// drop.
    pub key_pem: Zeroizing<String>,
}

impl fmt::Debug for CertBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertBundle")
            .field("ca_pem", &self.ca_pem)
            .field("chain_pem", &self.chain_pem)
            .field("key_pem", &"<redacted>")
            .field("clients", &self.clients)
            .finish()
    }
}

impl fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCert")
            .field("name", &self.name)
            .field("chain_pem", &self.chain_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Generates a new CA (ECDSA P-256, common name "secure-link CA" and a
/// random suffix) and a
/// server certificate for `names`: DNS names, or IP addresses written as
/// such (`127.0.0.1`, `::1`). The CA's private key is discarded.
///
/// # Errors
///
/// [`LinkError::Config`] for an empty `names` or a name that is neither a
/// DNS name nor an IP address.
pub fn generate(names: &[impl AsRef<str>]) -> Result<CertBundle, LinkError> {
    generate_with_clients(names, &[] as &[&str])
}

/// Like [`generate`], plus a client certificate for each of `clients`
/// (ECDSA P-256, signed by the same CA, with the client-authentication
/// extended key usage; common name the client's name, and DNS name too
/// where the name is a valid one, such as `node-1`).
///
/// # Errors
///
/// As [`generate`]; [`LinkError::Config`] for an empty client name.
pub fn generate_with_clients(
    names: &[impl AsRef<str>],
    clients: &[impl AsRef<str>],
) -> Result<CertBundle, LinkError> {
    if clients.iter().any(|c| c.as_ref().is_empty()) {
        return Err(LinkError::config("a client certificate needs a name"));
    }
    if names.is_empty() {
        return Err(LinkError::config(
            "a server certificate needs at least one name",
        ));
    }
    let names: Vec<String> = names.iter().map(|n| n.as_ref().to_owned()).collect();
    // A distinct name per CA, so that a client trusting another CA made by
    // this function reports an unknown issuer rather than a bad signature.
    let mut id = [0u8; 6];
    crate::tls::provider()
        .secure_random
        .fill(&mut id)
        .map_err(|_| LinkError::config("the system random number generator failed"))?;
    let ca_name = format!("secure-link CA {}", hex::encode(id));
    let clients: Vec<String> = clients.iter().map(|c| c.as_ref().to_owned()).collect();
    build(&ca_name, names, &clients)
        .map_err(|err| LinkError::config(format!("cannot generate certificates: {err}")))
}

fn build(
    ca_name: &str,
    names: Vec<String>,
    clients: &[String],
) -> Result<CertBundle, rcgen::Error> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let common_name = names[0].clone();
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;

    let clients = clients
        .iter()
        .map(|name| {
            // A DNS name where the name is one, so peer identity reads it
            // from there; the common name always.
            let dns: Vec<String> = rustls_pki_types::DnsName::try_from(name.as_str())
                .ok()
                .map(|_| vec![name.clone()])
                .unwrap_or_default();
            let mut params = CertificateParams::new(dns)?;
            params
                .distinguished_name
                .push(DnType::CommonName, name.as_str());
            params.use_authority_key_identifier_extension = true;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let key = KeyPair::generate()?;
            let cert = params.signed_by(&key, &issuer)?;
            Ok(ClientCert {
                name: name.clone(),
                chain_pem: format!("{}{}", cert.pem(), ca_cert.pem()),
                key_pem: Zeroizing::new(key.serialize_pem()),
            })
        })
        .collect::<Result<Vec<_>, rcgen::Error>>()?;

    Ok(CertBundle {
        chain_pem: format!("{}{}", cert.pem(), ca_cert.pem()),
        ca_pem: ca_cert.pem(),
        key_pem: Zeroizing::new(key.serialize_pem()),
        clients,
    })
}
