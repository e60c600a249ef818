//! One client connection of `serve`: handshake, messages to the output,
//! optional echo, and the close.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use secure_link::resilient::{Accepted, ResilientAcceptor};
use secure_link::{AcceptorChanges, LinkError, Revoked, SecureAcceptor, SecureServer};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{info, warn};

use super::metrics::{self, Closed, HandshakeFailure};
use super::output::Output;
use super::session;
use crate::files;

/// What every connection does the same way.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    pub(crate) echo: bool,
    /// How long a reply or the closing `close_notify` may take to write.
    pub(crate) write_timeout: Duration,
    /// TCP keepalive for every connection.
    pub(crate) keepalive: crate::keepalive::Keepalive,
}

/// The acceptor a connection is accepted with, and the reloads after it.
pub(crate) struct Configuration {
    pub(crate) acceptor: SecureAcceptor,
    /// With `--resilient`: the sessions, under `acceptor`.
    pub(crate) resilient: Option<ResilientAcceptor>,
    /// Taken with `acceptor`: a reload after it is seen.
    pub(crate) changes: AcceptorChanges,
}

/// Serves one connection; `_slot` holds its place under the connection
/// cap until this returns. Every outcome is one log line with an `event`
/// field, and counted (see `metrics`).
pub(crate) async fn serve(
    configuration: Configuration,
    tcp: TcpStream,
    peer: SocketAddr,
    output: Output,
    settings: Settings,
    _slot: OwnedSemaphorePermit,
) {
    metrics::accepted();
    let closed = run(configuration, tcp, peer, output, settings).await;
    closed.record();
}

async fn run(
    Configuration {
        acceptor,
        resilient,
        mut changes,
    }: Configuration,
    tcp: TcpStream,
    peer: SocketAddr,
    output: Output,
    settings: Settings,
) -> Closed {
    let _ = tcp.set_nodelay(true);
    if let Err(err) = settings.keepalive.apply(&tcp) {
        warn!(%peer, event = "keepalive_failed", error = %err, "cannot turn on TCP keepalive: {err}");
    }
    let accepted = match &resilient {
        None => acceptor.accept(tcp).await,
        Some(sessions) => match sessions.accept(tcp).await {
            Ok(Accepted::Plain(server)) => Ok(*server),
            Ok(Accepted::Session(link)) => {
                return session::serve(link, peer, changes, output, settings).await;
            }
            Ok(_) => {
                info!(%peer, event = "resumed", "a resilient session resumed on this connection");
                return Closed::Resilient;
            }
            Err(err) => Err(err),
        },
    };
    let mut server = match accepted {
        Ok(server) => server,
        Err(err) => {
            HandshakeFailure::of(&err).record();
            let error = files::explain_on_server(&err);
            warn!(%peer, event = "handshake_failed", %error, "handshake failed: {error}");
            return Closed::Handshake;
        }
    };
    // The client's name is the client's text: escaped, or a newline in it
    // would forge log lines.
    match server
        .peer_identity()
        .map(|name| crate::format::escape_text(&name))
    {
        Some(identity) => info!(
            %peer,
            event = "connected",
            client = %identity,
            "connected: client certificate of {identity}"
        ),
        None => info!(%peer, event = "connected", "connected"),
    }
    let traffic = metrics::Traffic::new();
    let mut count = 0u64;
    loop {
        let item = tokio::select! {
            // A reload first: nothing more is taken from a revoked link.
            biased;
            fresh = changes.changed() => match server.revoked_by(&fresh) {
                Some(revoked) => return revoke(server, revoked, peer, count, settings).await,
                None => continue,
            },
            item = server.next() => item,
        };
        let Some(item) = item else { break };
        match item {
            Ok(message) => {
                count += 1;
                traffic.received(message.len());
                if count == 1 {
                    let key = server.key_fingerprint().unwrap_or_default();
                    info!(%peer, event = "authenticated", %key, "authenticated with key {key}");
                    // Pinned to its key only now: a reload since the accept
                    // may have removed it.
                    if let Some(revoked) = server.revoked_by(&changes.current()) {
                        return revoke(server, revoked, peer, 0, settings).await;
                    }
                }
                if settings.echo {
                    // The stream is not read while a reply waits: the
                    // client that does not read is cut off here, at the
                    // write timeout, and its messages stop being buffered.
                    // The link's write timeout bounds the wait (no
                    // progress for that long); a slow but live client
                    // gets its reply however long it takes.
                    let len = message.len();
                    match server.send(message.clone()).await {
                        Ok(()) => traffic.sent(len),
                        Err(err) if !matches!(err, LinkError::WriteTimeout(_)) => {
                            let error = files::explain_on_server(&err);
                            warn!(
                                %peer,
                                event = "echo_failed",
                                messages = count,
                                %error,
                                "echo failed after {count} messages: {error}"
                            );
                            return Closed::of(&err);
                        }
                        Err(_) => {
                            let seconds = settings.write_timeout.as_secs_f64();
                            warn!(
                                %peer,
                                event = "write_timeout",
                                messages = count,
                                "echo reply: the client took no bytes for {seconds} s: the client is not reading; closing the connection"
                            );
                            return Closed::WriteTimeout;
                        }
                    }
                }
                if output.send(message).await.is_err() {
                    return Closed::Io; // stdout is gone: serve is shutting down
                }
            }
            Err(LinkError::InvalidHmac) => {
                warn!(
                    %peer,
                    event = "invalid_hmac",
                    messages = count,
                    "rejected a message with an invalid HMAC (wrong key?); closing the connection"
                );
                return Closed::InvalidHmac;
            }
            Err(err) => {
                let closed = Closed::of(&err);
                let error = files::explain_on_server(&err);
                if matches!(err, LinkError::IdleTimeout(_)) {
                    // A clean end the client can tell from a crash: our
                    // close_notify (bounded), so its next send fails at
                    // once instead of going into a closed connection.
                    let _ = tokio::time::timeout(settings.write_timeout, server.close()).await;
                }
                warn!(
                    %peer,
                    event = "failed",
                    reason = closed.label(),
                    messages = count,
                    %error,
                    "connection failed after {count} messages: {error}"
                );
                return closed;
            }
        }
    }
    // The client sent close_notify: answer with ours.
    match tokio::time::timeout(settings.write_timeout, server.close()).await {
        Ok(Ok(())) => {
            info!(%peer, event = "closed", messages = count, "closed cleanly after {count} messages");
            Closed::Clean
        }
        Ok(Err(err)) => {
            warn!(%peer, event = "close_failed", messages = count, error = %err, "close failed after {count} messages: {err}");
            Closed::of(&err)
        }
        Err(_) => {
            let seconds = settings.write_timeout.as_secs_f64();
            warn!(
                %peer,
                event = "write_timeout",
                messages = count,
                "close_notify not written within {seconds} s after {count} messages"
            );
            Closed::WriteTimeout
        }
    }
}

/// Ends a link a reload no longer authorises: logged with the reason, and
/// closed with `close_notify` (bounded by the write timeout) so the client
/// sees the server end it rather than a crash.
async fn revoke(
    mut server: SecureServer<TcpStream>,
    revoked: Revoked,
    peer: SocketAddr,
    messages: u64,
    settings: Settings,
) -> Closed {
    let key = server.key_fingerprint().unwrap_or_default();
    warn!(
        %peer,
        event = "revoked",
        reason = revoked.label(),
        %key,
        messages,
        "after a reload {revoked}: closing the connection after {messages} messages"
    );
    let _ = tokio::time::timeout(settings.write_timeout, server.close()).await;
    Closed::revoked(revoked)
}
