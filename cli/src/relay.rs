//! The relay attack shown by the demo: a man in the middle that holds a
//! certificate the client accepts (a TLS-terminating proxy, a mis-issued
//! certificate) but not the HMAC key records the plaintext frames of one
//! connection and replays them into its own connection to the real server.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use secure_link::certs::CertBundle;
use secure_link::tokio_rustls::{TlsAcceptor, TlsConnector};
use secure_link::{AuthMode, HmacKey, LinkError, SecureAcceptor, SecureConnector, tls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::shared::Error;

/// What the real server did with the relayed frames.
pub(crate) struct Outcome {
    pub(crate) delivered: Vec<Bytes>,
    pub(crate) end: Option<LinkError>,
}

/// Runs the attack against a client and a server using `mode`.
pub(crate) async fn attack(
    pki: &CertBundle,
    key: &HmacKey,
    mode: AuthMode,
    message: &'static str,
) -> Result<Outcome, Error> {
    let victim = SecureConnector::new(&pki.ca_pem, key)?.with_auth_mode(mode);
    let real_server = SecureAcceptor::new(&pki.chain_pem, &pki.key_pem, key)?.with_auth_mode(mode);
    let proxy_tls = TlsAcceptor::from(tls::server_config(&pki.chain_pem, &pki.key_pem)?);
    let relay_tls = TlsConnector::from(tls::client_config(&pki.ca_pem)?);

    // 1. The victim's connection ends at the proxy, which reads plaintext.
    let (victim_io, proxy_io) = tokio::io::duplex(64 * 1024);
    let proxy = tokio::spawn(async move {
        let mut tls = proxy_tls.accept(proxy_io).await?;
        let mut captured = Vec::new();
        tls.read_to_end(&mut captured).await?;
        tls.shutdown().await?;
        Ok::<_, std::io::Error>(captured)
    });
    let mut client = victim.connect("localhost", victim_io).await?;
    client.send(Bytes::from_static(message.as_bytes())).await?;
    client.close().await?;
    let captured = proxy
        .await
        .map_err(|e| Error::msg(format!("proxy task failed: {e}")))??;

    // 2. The proxy relays the captured frames into its own connection.
    let (relay_io, server_io) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(async move {
        let mut server = real_server.accept(server_io).await?;
        let mut outcome = Outcome {
            delivered: Vec::new(),
            end: None,
        };
        while let Some(item) = server.next().await {
            match item {
                Ok(message) => outcome.delivered.push(message),
                Err(err) => {
                    outcome.end = Some(err);
                    break;
                }
            }
        }
        Ok::<_, LinkError>(outcome)
    });
    let mut relay = relay_tls
        .connect(tls::server_name("localhost")?, relay_io)
        .await?;
    // The server may hang up before the relay is done: not our concern here.
    if relay.write_all(&captured).await.is_ok() {
        let _ = relay.shutdown().await;
    }
    Ok(server
        .await
        .map_err(|e| Error::msg(format!("server task failed: {e}")))??)
}
