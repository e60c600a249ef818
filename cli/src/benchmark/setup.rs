//! The certificates, key and TLS configurations every run shares.

use std::sync::Arc;

use secure_link::tokio_rustls::rustls::{ClientConfig, ServerConfig};
use secure_link::{HmacKey, LinkError, SecureAcceptor, SecureConnector, tls};

use super::peers;

/// Certificates, key and TLS configurations shared by all runs. Cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct Setup {
    pub(crate) key: HmacKey,
    pub(crate) ours_client: Arc<ClientConfig>,
    pub(crate) ours_server: Arc<ServerConfig>,
    pub(crate) default_client: Arc<ClientConfig>,
    pub(crate) default_server: Arc<ServerConfig>,
}

impl Setup {
    /// Fresh certificates and key; the configurations of every peer.
    ///
    /// # Errors
    ///
    /// Certificate generation or configuration failures.
    pub fn new() -> Result<Self, LinkError> {
        let pki = secure_link::certs::generate(&["localhost"])?;
        Ok(Setup {
            key: HmacKey::generate()?,
            ours_client: tls::client_config(&pki.ca_pem)?,
            ours_server: tls::server_config(&pki.chain_pem, &pki.key_pem)?,
            default_client: peers::default_client_config(&pki)?,
            default_server: peers::default_server_config(&pki)?,
        })
    }

    /// A connector and an acceptor of this crate.
    pub fn ours(&self) -> (SecureConnector, SecureAcceptor) {
        (
            SecureConnector::from_config(self.ours_client.clone(), &self.key),
            SecureAcceptor::from_config(self.ours_server.clone(), &self.key),
        )
    }
}
