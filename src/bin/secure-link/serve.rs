//! `serve`: accept secure links, print each authenticated message as a line.

use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use secure_link::{DEFAULT_MAX_FRAME_LEN, LinkError, SecureAcceptor};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::{Error, files};

/// Arguments of `serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address to listen on, e.g. 127.0.0.1:7878 (port 0 picks a free one).
    #[arg(long)]
    listen: SocketAddr,
    /// The server's certificate chain (PEM), e.g. server-chain.pem.
    #[arg(long)]
    cert_chain: PathBuf,
    /// The server's private key (PEM), e.g. server-key.pem.
    #[arg(long)]
    private_key: PathBuf,
    /// File holding the shared HMAC key as hex.
    #[arg(long)]
    hmac_key: PathBuf,
    /// Largest message accepted, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_FRAME_LEN)]
    max_frame_len: usize,
    /// Seconds a client has to complete the TLS handshake.
    #[arg(long, default_value_t = 10.0)]
    handshake_timeout: f64,
    /// Seconds a client has, after the handshake, to send its first
    /// authenticated message.
    #[arg(long, default_value_t = 10.0)]
    first_message_timeout: f64,
    /// Seconds a client may stay silent between messages.
    #[arg(long, default_value_t = 300.0)]
    idle_timeout: f64,
    /// Send every message back to its sender.
    #[arg(long)]
    echo: bool,
    /// Bind every tag to the TLS session and the message's position
    /// (clients must use `send --session-bound`; see SECURITY.md).
    #[arg(long)]
    session_bound: bool,
}

pub(crate) async fn run(args: Args) -> Result<(), Error> {
    let handshake_timeout = crate::seconds(args.handshake_timeout, "--handshake-timeout")?;
    let first_message_timeout =
        crate::seconds(args.first_message_timeout, "--first-message-timeout")?;
    let idle_timeout = crate::seconds(args.idle_timeout, "--idle-timeout")?;
    let chain = files::read_text(&args.cert_chain, "certificate chain")?;
    let private_key = zeroize::Zeroizing::new(files::read_text(&args.private_key, "private key")?);
    let key = files::read_key(&args.hmac_key)?;
    let acceptor = SecureAcceptor::new(&chain, &private_key, key)?
        .with_max_frame_len(args.max_frame_len)
        .with_handshake_timeout(handshake_timeout)
        .with_first_message_timeout(first_message_timeout)
        .with_idle_timeout(idle_timeout)
        .with_auth_mode(crate::auth_mode(args.session_bound));

    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|err| Error::msg(format!("cannot listen on {}: {err}", args.listen)))?;
    info!("listening on {}", listener.local_addr()?);

    // One writer owns stdout, so lines from concurrent connections never
    // interleave; each connection's messages stay in order.
    let (lines, mut queue) = mpsc::channel::<Bytes>(1024);
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(message) = queue.recv().await {
            stdout.write_all(&message).await?;
            stdout.write_all(b"\n").await?;
            stdout.flush().await?;
        }
        Ok::<_, std::io::Error>(())
    });

    let mut connections = JoinSet::new();
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    connections.spawn(serve_connection(acceptor.clone(), tcp, peer, lines.clone(), args.echo));
                }
                // Out of file descriptors and the like: keep serving.
                Err(err) => warn!("accept failed: {err}"),
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            signal = &mut stop => {
                info!("{signal}: shutting down");
                break;
            }
        }
    }
    connections.shutdown().await;
    drop(lines);
    writer
        .await
        .map_err(|err| Error::msg(format!("stdout writer failed: {err}")))??;
    Ok(())
}

async fn serve_connection(
    acceptor: SecureAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    lines: mpsc::Sender<Bytes>,
    echo: bool,
) {
    let _ = tcp.set_nodelay(true);
    let mut server = match acceptor.accept(tcp).await {
        Ok(server) => server,
        Err(err) => {
            warn!(%peer, "handshake failed: {}", files::explain(&err));
            return;
        }
    };
    info!(%peer, "connected");
    let mut count = 0u64;
    while let Some(item) = server.next().await {
        match item {
            Ok(message) => {
                count += 1;
                if echo && let Err(err) = server.send(message.clone()).await {
                    warn!(%peer, "echo failed: {err}");
                    return;
                }
                if lines.send(message).await.is_err() {
                    return; // shutting down
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
    match server.close().await {
        Ok(()) => info!(%peer, "closed cleanly after {count} messages"),
        Err(err) => warn!(%peer, "close failed after {count} messages: {err}"),
    }
}

/// Resolves on Ctrl-C or SIGTERM, naming it. A signal that cannot be
/// watched never resolves.
async fn shutdown_signal() -> &'static str {
    let ctrl_c = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "interrupted",
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
                "terminated"
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending();
    tokio::select! {
        signal = ctrl_c => signal,
        signal = term => signal,
    }
}
