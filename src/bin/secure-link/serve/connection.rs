//! One client connection of `serve`: handshake, messages to the output,
//! optional echo, and the close.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use secure_link::{LinkError, SecureAcceptor};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{info, warn};

use super::output::Output;
use crate::files;

/// What every connection does the same way.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    pub(crate) echo: bool,
    /// How long a reply or the closing `close_notify` may take to write.
    pub(crate) write_timeout: Duration,
}

/// Serves one connection; `_slot` holds its place under the connection
/// cap until this returns.
pub(crate) async fn serve(
    acceptor: SecureAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    output: Output,
    settings: Settings,
    _slot: OwnedSemaphorePermit,
) {
    let _ = tcp.set_nodelay(true);
    let mut server = match acceptor.accept(tcp).await {
        Ok(server) => server,
        Err(err) => {
            warn!(%peer, "handshake failed: {}", files::explain(&err));
            return;
        }
    };
    match server.peer_identity() {
        Some(identity) => info!(%peer, "connected: client certificate of {identity}"),
        None => info!(%peer, "connected"),
    }
    let mut count = 0u64;
    while let Some(item) = server.next().await {
        match item {
            Ok(message) => {
                count += 1;
                if count == 1 {
                    let key = server.key_fingerprint().unwrap_or_default();
                    info!(%peer, "authenticated with key {key}");
                }
                if settings.echo {
                    // The stream is not read while a reply waits: the
                    // client that does not read is cut off here, at the
                    // write timeout, and its messages stop being buffered.
                    let reply = server.send(message.clone());
                    match tokio::time::timeout(settings.write_timeout, reply).await {
                        Ok(Ok(())) => {}
                        Ok(Err(err)) => {
                            warn!(%peer, "echo failed after {count} messages: {}", files::explain(&err));
                            return;
                        }
                        Err(_) => {
                            warn!(
                                %peer,
                                "echo reply not written within {:?}: the client is not reading; closing the connection",
                                settings.write_timeout
                            );
                            return;
                        }
                    }
                }
                if output.send(message).await.is_err() {
                    return; // stdout is gone: serve is shutting down
                }
            }
            Err(LinkError::InvalidHmac) => {
                warn!(%peer, "rejected a message with an invalid HMAC (wrong key?); closing the connection");
                return;
            }
            Err(err) => {
                warn!(%peer, "connection failed after {count} messages: {}", files::explain(&err));
                return;
            }
        }
    }
    // The client sent close_notify: answer with ours.
    match tokio::time::timeout(settings.write_timeout, server.close()).await {
        Ok(Ok(())) => info!(%peer, "closed cleanly after {count} messages"),
        Ok(Err(err)) => warn!(%peer, "close failed after {count} messages: {err}"),
        Err(_) => warn!(
            %peer,
            "close_notify not written within {:?} after {count} messages",
            settings.write_timeout
        ),
    }
}
