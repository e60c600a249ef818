//! `serve`: accept secure links, print each authenticated message as a
//! line. The accept loop (`accept.rs`), one connection (`connection.rs`),
//! the stdout writer (`output.rs`), the signals (`signals.rs`) and the
//! metrics endpoint (`metrics.rs`, `scrape.rs`) are
//! wired together here, with the reload on SIGHUP (`load_acceptor`) and the
//! shutdown.

mod accept;
mod connection;
mod metrics;
mod output;
mod scrape;
mod signals;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secure_link::{DEFAULT_MAX_FRAME_LEN, ReloadableAcceptor, SecureAcceptor};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{info, warn};

use crate::format::Format;
use crate::{files, shared::Error};

/// The default limit on a client's first frame (before it has shown it
/// holds the key): 64 KiB.
const DEFAULT_MAX_FIRST_FRAME_LEN: usize = 64 * 1024;

/// How long shutdown waits for stdout to take what is queued.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The largest default `--write-timeout` (the idle timeout's default).
const DEFAULT_WRITE_TIMEOUT_MAX: Duration = Duration::from_secs(300);

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
    /// File of shared HMAC keys, one per line as hex (repeatable). The
    /// first key is the primary one; the others are also accepted, for a
    /// key rotation: each connection keeps the key its first message used.
    #[arg(long, required = true)]
    hmac_key: Vec<PathBuf>,
    /// Largest message accepted, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_FRAME_LEN)]
    max_frame_len: usize,
    /// Largest first message accepted from a client, in bytes: until a
    /// message's tag verifies, the client is anonymous and gets this
    /// smaller budget.
    #[arg(long, default_value_t = DEFAULT_MAX_FIRST_FRAME_LEN)]
    max_first_frame_len: usize,
    /// Most connections served at once; more wait in the listen backlog.
    /// The default is what the descriptor limit allows, less 64 (at most
    /// 10,000).
    #[arg(long, default_value_t = accept::default_max_connections(),
          value_parser = crate::shared::values::connection_count)]
    max_connections: usize,
    /// Seconds a client has to complete the TLS handshake.
    #[arg(long, default_value = "10", value_parser = crate::shared::values::seconds)]
    handshake_timeout: Duration,
    /// Seconds a client has, after the handshake, to send its first
    /// authenticated message.
    #[arg(long, default_value = "10", value_parser = crate::shared::values::seconds)]
    first_message_timeout: Duration,
    /// Seconds a client may stay silent between messages (`inf`: no limit).
    #[arg(long, default_value = "300", value_parser = crate::shared::values::seconds)]
    idle_timeout: Duration,
    /// Seconds a reply (`--echo`) or the closing close_notify may take to
    /// write, and a write may wait without the client taking any bytes,
    /// before the connection is dropped [default: the idle timeout, at
    /// most 300].
    #[arg(long, value_parser = crate::shared::values::seconds)]
    write_timeout: Option<Duration>,
    /// Require client certificates signed by this CA (PEM; mutual TLS):
    /// clients without one are refused, and each connection's log names
    /// the client. The HMAC key is still required.
    #[arg(long)]
    client_ca: Option<PathBuf>,
    /// Send every message back to its sender.
    #[arg(long)]
    echo: bool,
    /// How messages are printed: text (control characters and invalid
    /// UTF-8 escaped, one line per message), or hex/base64 (exact).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Bind every tag to the TLS session and the message's position
    /// (clients must use `send --session-bound`; see SECURITY.md).
    #[arg(long)]
    session_bound: bool,
    /// Log lines on stderr: prose, or one JSON object per line (with the
    /// peer address, the event and its fields).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
    #[command(flatten)]
    keepalive: crate::keepalive::Keepalive,
    /// Serve Prometheus metrics over HTTP on this address, e.g.
    /// 127.0.0.1:9100 (any GET path answers). Off by default.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Prose lines (fields after the message).
    Text,
    /// tracing-subscriber's JSON: timestamp, level, message and fields.
    Json,
}

pub(crate) async fn run(args: Args) -> Result<(), Error> {
    let args = Arc::new(args);
    let timeouts = Timeouts {
        handshake: args.handshake_timeout,
        first_message: args.first_message_timeout,
        idle: args.idle_timeout,
        // An idle limit of "inf" must not make a stalled write wait for ever.
        write: args
            .write_timeout
            .unwrap_or(args.idle_timeout.min(DEFAULT_WRITE_TIMEOUT_MAX)),
    };
    let write_timeout = timeouts.write;
    let acceptor = ReloadableAcceptor::new(load_acceptor(&args, &timeouts)?);
    let settings = connection::Settings {
        echo: args.echo,
        write_timeout,
        keepalive: args.keepalive,
    };

    // Before "listening on": a signal sent as soon as that line is seen
    // must find its handler.
    let mut signals = signals::Signals::install()?;
    let mut reloads = signals::Reloads::install()?;
    let scraping = match args.metrics {
        Some(addr) => {
            let handle = metrics::install()?;
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|err| Error::msg(format!("--metrics: cannot listen on {addr}: {err}")))?;
            let addr = listener.local_addr()?;
            info!(event = "metrics", %addr, "Prometheus metrics on http://{addr}/metrics");
            Some(tokio::spawn(scrape::serve(listener, handle)))
        }
        None => None,
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|err| Error::msg(format!("cannot listen on {}: {err}", args.listen)))?;
    let max = args.max_connections;
    info!(
        event = "capacity",
        max_connections = max,
        "serving at most {max} connections at once"
    );
    let local = listener.local_addr()?;
    info!(event = "listening", addr = %local, "listening on {local}");

    let (output, writer) = output::spawn(args.format);
    let mut writer = Some(writer);
    let mut incoming = accept::Acceptor::new("clients", listener, args.max_connections);
    let mut connections = JoinSet::new();
    let mut reload = Reload::default();
    let stopped = loop {
        tokio::select! {
            signal = signals.next() => {
                info!(event = "shutdown", %signal, "{signal}: shutting down");
                break Ok(());
            }
            Some(ended) = async { Some(writer.as_mut()?.await) }, if writer.is_some() => {
                writer = None;
                break Err(stdout_failed(ended));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = reloads.next() => reload.start(&args, timeouts),
            loaded = reload.finished() => {
                match loaded {
                    // Each connection checks that the new configuration
                    // still authorises it (connection.rs).
                    Ok(fresh) => {
                        acceptor.replace(fresh);
                        info!(event = "reloaded", "SIGHUP: reloaded the certificate chain, private key and HMAC keys");
                    }
                    Err(err) => warn!(event = "reload_failed", error = %err, "SIGHUP: reload failed, the running configuration stays: {err}"),
                }
                reload.again(&args, timeouts);
            }
            (tcp, peer, slot) = incoming.next() => {
                let configuration = connection::Configuration {
                    changes: acceptor.changes(),
                    acceptor: acceptor.current(),
                };
                connections.spawn(connection::serve(configuration, tcp, peer, output.clone(), settings, slot));
            }
        }
    };
    // Stop accepting (new connections are refused), end the connections,
    // then let stdout take what is queued: within a grace period, and a
    // second signal ends the wait at once.
    drop(incoming);
    if let Some(scraping) = scraping {
        scraping.abort();
    }
    connections.shutdown().await;
    drop(output);
    let Some(writer) = writer else {
        return stopped;
    };
    tokio::select! {
        ended = tokio::time::timeout(SHUTDOWN_GRACE, writer) => match ended {
            Ok(Ok(Ok(_written))) => stopped,
            Ok(ended) => Err(stdout_failed(ended)),
            Err(_) => Err(Error::msg(format!(
                "stdout took nothing for {SHUTDOWN_GRACE:?} during shutdown; messages still queued were not written"
            ))),
        },
        signal = signals.next() => Err(Error::msg(format!(
            "{signal} again during shutdown: exiting at once; messages still queued were not written"
        ))),
    }
}

/// The reload in progress, off the event loop (`spawn_blocking`: a slow
/// disk must not stall accepting), and whether a SIGHUP came during it.
#[derive(Default)]
struct Reload {
    running: Option<JoinHandle<Result<SecureAcceptor, Error>>>,
    /// A SIGHUP while `running`: read the files again once it is done, so
    /// the configuration is what they hold after the last signal.
    again: bool,
}

impl Reload {
    fn start(&mut self, args: &Arc<Args>, timeouts: Timeouts) {
        if self.running.is_some() {
            self.again = true;
            return;
        }
        let args = args.clone();
        self.running = Some(tokio::task::spawn_blocking(move || {
            load_acceptor(&args, &timeouts)
        }));
    }

    /// The outcome of the reload in progress; pending while there is none.
    async fn finished(&mut self) -> Result<SecureAcceptor, Error> {
        let Some(running) = &mut self.running else {
            return std::future::pending().await;
        };
        let loaded = running.await;
        self.running = None;
        loaded.unwrap_or_else(|err| Err(Error::msg(format!("the reload task failed: {err}"))))
    }

    /// Starts the reload a SIGHUP asked for while the last one ran.
    fn again(&mut self, args: &Arc<Args>, timeouts: Timeouts) {
        if std::mem::take(&mut self.again) {
            self.start(args, timeouts);
        }
    }
}

/// The timeouts every acceptor gets.
#[derive(Clone, Copy)]
struct Timeouts {
    handshake: Duration,
    first_message: Duration,
    idle: Duration,
    write: Duration,
}

/// Reads the certificate chain, private key, client CA and HMAC key files
/// and builds an acceptor from them: at start, and again on every SIGHUP.
/// Errors name the file.
fn load_acceptor(args: &Args, timeouts: &Timeouts) -> Result<SecureAcceptor, Error> {
    files::warn_if_exposed(&args.private_key, "private key");
    for path in &args.hmac_key {
        files::warn_if_exposed(path, "HMAC key file");
    }
    let chain = files::read_text(&args.cert_chain, "certificate chain")?;
    let private_key = zeroize::Zeroizing::new(files::read_text(&args.private_key, "private key")?);
    let mut keys = Vec::new();
    for path in &args.hmac_key {
        keys.extend(files::read_keys(path)?);
    }
    let mut keys = keys.into_iter();
    let Some(primary) = keys.next() else {
        return Err(Error::msg("--hmac-key: no key given"));
    };
    let fingerprints: Vec<String> = std::iter::once(&primary)
        .chain(keys.as_slice())
        .map(secure_link::HmacKey::fingerprint)
        .collect();
    let acceptor = SecureAcceptor::new(&chain, &private_key, primary).map_err(|err| {
        Error::msg(format!(
            "{} / {}: {}",
            args.cert_chain.display(),
            args.private_key.display(),
            files::explain(&err)
        ))
    })?;
    let acceptor = match &args.client_ca {
        Some(path) => {
            let pem = files::read_text(path, "client CA")?;
            acceptor.with_client_ca(&pem).map_err(|err| {
                Error::msg(format!("{}: {}", path.display(), files::explain(&err)))
            })?
        }
        None => acceptor,
    };
    let acceptor = keys
        .fold(acceptor, SecureAcceptor::with_additional_key)
        .with_max_frame_len(args.max_frame_len)
        .with_max_first_frame_len(args.max_first_frame_len)
        .with_handshake_timeout(timeouts.handshake)
        .with_first_message_timeout(timeouts.first_message)
        .with_idle_timeout(timeouts.idle)
        .with_write_timeout(timeouts.write)
        .with_auth_mode(crate::shared::values::auth_mode(args.session_bound));
    let keys = fingerprints.join(", ");
    info!(event = "keys", %keys, "accepting HMAC keys {keys}");
    Ok(acceptor)
}

fn stdout_failed(ended: Result<std::io::Result<u64>, tokio::task::JoinError>) -> Error {
    match ended {
        Ok(Err(err)) => Error::msg(format!(
            "cannot write to stdout ({err}): stopped accepting and shut down"
        )),
        Ok(Ok(_)) => Error::msg("the stdout writer ended early; shut down"),
        Err(err) => Error::msg(format!("the stdout writer failed: {err}; shut down")),
    }
}
