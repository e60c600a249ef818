//! Self-made certificates: a fresh CA and a server certificate it signs,
//! for tests, demos and private deployments (feature `certs`).
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

/// A CA certificate and a server certificate signed by it, as PEM.
pub struct CertBundle {
    /// The CA's certificate: what clients trust (`ca.pem`).
    pub ca_pem: String,
    /// The server's certificate followed by the CA's: what the server
    /// presents (`server-chain.pem`).
    pub chain_pem: String,
    /// The server's private key, PKCS#8 (`server-key.pem`). Wiped on drop.
    pub key_pem: Zeroizing<String>,
}

impl fmt::Debug for CertBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertBundle")
            .field("ca_pem", &self.ca_pem)
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
    build(&ca_name, names)
        .map_err(|err| LinkError::config(format!("cannot generate certificates: {err}")))
}

fn build(ca_name: &str, names: Vec<String>) -> Result<CertBundle, rcgen::Error> {
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

    Ok(CertBundle {
        chain_pem: format!("{}{}", cert.pem(), ca_cert.pem()),
        ca_pem: ca_cert.pem(),
        key_pem: Zeroizing::new(key.serialize_pem()),
    })
}
