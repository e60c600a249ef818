//! `serve`'s flags, with their defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secure_link::DEFAULT_MAX_FRAME_LEN;

use super::accept;
use crate::format::Format;

/// The default limit on a client's first frame (before it has shown it
/// holds the key): 64 KiB.
const DEFAULT_MAX_FIRST_FRAME_LEN: usize = 64 * 1024;

/// The largest default `--write-timeout` (the idle timeout's default).
pub(super) const DEFAULT_WRITE_TIMEOUT_MAX: Duration = Duration::from_secs(300);

/// Arguments of `serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address to listen on, e.g. 127.0.0.1:7878 (port 0 picks a free one).
    #[arg(long)]
    pub(super) listen: SocketAddr,
    /// The server's certificate chain (PEM), e.g. server-chain.pem.
    #[arg(long)]
    pub(super) cert_chain: PathBuf,
    /// The server's private key (PEM), e.g. server-key.pem.
    #[arg(long)]
    pub(super) private_key: PathBuf,
    /// File of shared HMAC keys, one per line as hex (repeatable). The
    /// first key is the primary one; the others are also accepted, for a
    /// key rotation: each connection keeps the key its first message used.
    #[arg(long, required = true)]
    pub(super) hmac_key: Vec<PathBuf>,
    /// Largest message accepted, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_FRAME_LEN)]
    pub(super) max_frame_len: usize,
    /// Largest first message accepted from a client, in bytes: until a
    /// message's tag verifies, the client is anonymous and gets this
    /// smaller budget.
    #[arg(long, default_value_t = DEFAULT_MAX_FIRST_FRAME_LEN)]
    pub(super) max_first_frame_len: usize,
    /// Most connections served at once; more wait in the listen backlog.
    /// The default is what the descriptor limit allows, less 64 (at most
    /// 10,000).
    #[arg(long, default_value_t = accept::default_max_connections(),
          value_parser = crate::shared::values::connection_count)]
    pub(super) max_connections: usize,
    /// Seconds a client has to complete the TLS handshake.
    #[arg(long, default_value = "10", value_parser = crate::shared::values::seconds)]
    pub(super) handshake_timeout: Duration,
    /// Seconds a client has, after the handshake, to send its first
    /// authenticated message.
    #[arg(long, default_value = "10", value_parser = crate::shared::values::seconds)]
    pub(super) first_message_timeout: Duration,
    /// Seconds a client may stay silent between messages (`inf`: no limit).
    #[arg(long, default_value = "300", value_parser = crate::shared::values::seconds)]
    pub(super) idle_timeout: Duration,
    /// Seconds a reply (`--echo`) or the closing close_notify may take to
    /// write, and a write may wait without the client taking any bytes,
    /// before the connection is dropped [default: the idle timeout, at
    /// most 300].
    #[arg(long, value_parser = crate::shared::values::seconds)]
    pub(super) write_timeout: Option<Duration>,
    /// Require client certificates signed by this CA (PEM; mutual TLS):
    /// clients without one are refused, and each connection's log names
    /// the client. The HMAC key is still required.
    #[arg(long)]
    pub(super) client_ca: Option<PathBuf>,
    /// Send every message back to its sender.
    #[arg(long)]
    pub(super) echo: bool,
    /// How messages are printed: text (control characters and invalid
    /// UTF-8 escaped, one line per message), or hex/base64 (exact).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub(super) format: Format,
    /// Bind every tag to the TLS session and the message's position
    /// (clients must use `send --session-bound`; see SECURITY.md).
    #[arg(long)]
    pub(super) session_bound: bool,
    /// Log lines on stderr: prose, or one JSON object per line (with the
    /// peer address, the event and its fields).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
    #[command(flatten)]
    pub(super) keepalive: crate::keepalive::Keepalive,
    /// Also serve the resilient mode (clients of `send --resilient`):
    /// sessions that survive reconnects, heartbeats, each message printed
    /// once per session. Plain clients are still served. For resilient
    /// links the heartbeats and --dead-time replace --first-message-timeout
    /// and --idle-timeout.
    #[arg(long)]
    pub(super) resilient: bool,
    /// Seconds of quiet after which a resilient link sends a heartbeat.
    #[arg(long, default_value = "5", requires = "resilient", value_parser = crate::shared::values::seconds)]
    pub(super) heartbeat_interval: Duration,
    /// Seconds without a byte after which a resilient client is taken for
    /// dead (its session waits for it to come back).
    #[arg(long, default_value = "15", requires = "resilient", value_parser = crate::shared::values::seconds)]
    pub(super) dead_time: Duration,
    /// Seconds a resilient session without a connection is kept.
    #[arg(long, default_value = "300", requires = "resilient", value_parser = crate::shared::values::seconds)]
    pub(super) session_expiry: Duration,
    /// Serve Prometheus metrics over HTTP on this address, e.g.
    /// 127.0.0.1:9100 (any GET path answers). Off by default.
    #[arg(long, value_name = "ADDR")]
    pub(super) metrics: Option<SocketAddr>,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Prose lines (fields after the message).
    Text,
    /// tracing-subscriber's JSON: timestamp, level, message and fields.
    Json,
}
