//! `send`: messages from the arguments or from stdin, over a secure link.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use secure_link::{DEFAULT_MAX_FRAME_LEN, LinkError, SecureConnector};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tracing::{debug, info};

use crate::format::Format;

mod resilient;
use crate::{files, shared::Error};

/// Arguments of `send`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The server's address, e.g. 127.0.0.1:7878 or example.com:7878.
    #[arg(long)]
    connect: String,
    /// The name the server's certificate must carry (DNS name or IP).
    #[arg(long)]
    server_name: String,
    /// The CA certificate(s) to trust (PEM), e.g. ca.pem.
    #[arg(long)]
    ca: PathBuf,
    /// File holding the shared HMAC key as hex.
    #[arg(long)]
    hmac_key: PathBuf,
    /// A client certificate chain to present (PEM; mutual TLS, for a
    /// server run with --client-ca). Needs --private-key.
    #[arg(long, requires = "private_key")]
    cert_chain: Option<PathBuf>,
    /// The private key of --cert-chain (PEM).
    #[arg(long, requires = "cert_chain")]
    private_key: Option<PathBuf>,
    /// Largest message sent or accepted, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_FRAME_LEN)]
    max_frame_len: usize,
    /// Bind every tag to the TLS session and the message's position (the
    /// server must use `serve --session-bound`; see SECURITY.md).
    #[arg(long)]
    session_bound: bool,
    /// Seconds allowed for connecting (TCP).
    #[arg(long, default_value = "10", value_parser = crate::shared::values::seconds)]
    timeout: Duration,
    /// Seconds allowed for the TLS handshake.
    #[arg(long, default_value = "10", value_parser = crate::shared::values::seconds)]
    handshake_timeout: Duration,
    /// Seconds to wait, once the last message is written, for the server
    /// to confirm the end of the link (its close_notify) and for its last
    /// replies to be printed. Without that confirmation `send` exits 1.
    #[arg(long, default_value = "10", value_parser = crate::shared::values::seconds)]
    close_timeout: Duration,
    /// Seconds a message may wait without the server taking any bytes
    /// (a server that stopped reading, or a dead route): `send` then exits 1.
    #[arg(long, default_value = "60", value_parser = crate::shared::values::seconds)]
    write_timeout: Duration,
    /// Seconds without a reply from the server after which `send` exits 1
    /// (for `serve --echo`; none by default: a plain server sends nothing).
    /// It also runs while send waits for the server's confirmation at the
    /// end: keep it above --close-timeout.
    #[arg(long, value_parser = crate::shared::values::seconds)]
    idle_timeout: Option<Duration>,
    /// How messages (arguments or stdin lines) are read and replies
    /// printed: text (as is; replies escaped as `serve` prints them), or
    /// hex/base64 (exact, any bytes).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    keepalive: crate::keepalive::Keepalive,
    /// Send over a resilient session (`serve --resilient`): reconnect
    /// after every loss until each line is acknowledged, each printed once
    /// by the server. Exits 0 only when all are; 1 on an error that
    /// retrying cannot heal, or when --give-up-after passes.
    #[arg(long)]
    resilient: bool,
    /// With --resilient: give up after this many seconds without a
    /// connection, naming how many lines were not acknowledged [default:
    /// never].
    #[arg(long, requires = "resilient", value_parser = crate::shared::values::seconds)]
    give_up_after: Option<Duration>,
    /// With --resilient: seconds of quiet before a heartbeat.
    #[arg(long, default_value = "5", requires = "resilient", value_parser = crate::shared::values::seconds)]
    heartbeat_interval: Duration,
    /// With --resilient: seconds without a byte before the server is taken
    /// for dead and send reconnects.
    #[arg(long, default_value = "15", requires = "resilient", value_parser = crate::shared::values::seconds)]
    dead_time: Duration,
    /// Messages to send, one per argument. Without any, each line of stdin
    /// is one message (without its newline; an empty line is an empty
    /// message).
    messages: Vec<String>,
}

pub(crate) async fn run(args: Args) -> Result<(), Error> {
    let (timeout, handshake_timeout, close_timeout) =
        (args.timeout, args.handshake_timeout, args.close_timeout);
    let ca = files::read_text(&args.ca, "CA certificate")?;
    files::warn_if_exposed(&args.hmac_key, "HMAC key file");
    let key = files::read_key(&args.hmac_key)?;
    let format = args.format;
    let connector = SecureConnector::new(&ca, key)?
        .with_max_frame_len(args.max_frame_len)
        .with_auth_mode(crate::shared::values::auth_mode(args.session_bound))
        .with_handshake_timeout(handshake_timeout)
        .with_close_timeout(close_timeout)
        .with_write_timeout(args.write_timeout);
    let connector = match args.idle_timeout {
        Some(idle) => connector.with_idle_timeout(idle),
        None => connector,
    };
    let connector = match (&args.cert_chain, &args.private_key) {
        (Some(chain), Some(key)) => {
            files::warn_if_exposed(key, "private key");
            let chain_pem = files::read_text(chain, "certificate chain")?;
            let key_pem = zeroize::Zeroizing::new(files::read_text(key, "private key")?);
            connector
                .with_client_cert(&chain_pem, &key_pem)
                .map_err(|err| {
                    Error::msg(format!("{}: {}", chain.display(), files::explain(&err)))
                })?
        }
        _ => connector,
    };
    if args.resilient {
        return resilient::run(args, connector).await;
    }

    let tcp = tokio::time::timeout(timeout, TcpStream::connect(&args.connect))
        .await
        .map_err(|_| Error::msg(format!("connecting to {} timed out", args.connect)))?
        .map_err(|err| Error::msg(format!("cannot connect to {}: {err}", args.connect)))?;
    let _ = tcp.set_nodelay(true);
    if let Err(err) = args.keepalive.apply(&tcp) {
        tracing::warn!("cannot turn on TCP keepalive: {err}");
    }
    let client = connector
        .connect(&args.server_name, tcp)
        .await
        .map_err(|err| match err {
            LinkError::HandshakeTimeout => Error::msg(format!(
                "the TLS handshake with {} did not finish within {handshake_timeout:?}",
                args.connect
            )),
            other => other.into(),
        })?;
    let conn = client.get_ref().1;
    let named = |name: Option<&'static str>| name.unwrap_or("unknown");
    info!(
        "connected to {} over {}, cipher suite {}, key exchange {}",
        args.connect,
        named(conn.protocol_version().and_then(|v| v.as_str())),
        named(
            conn.negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str())
        ),
        named(
            conn.negotiated_key_exchange_group()
                .and_then(|g| g.name().as_str())
        ),
    );

    let (mut sink, mut replies) = client.split();
    // Replies (from `serve --echo`) go to stdout, one per line. The stream
    // ends cleanly only if the server confirms the end with close_notify.
    let mut printer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        let mut line = Vec::new();
        while let Some(item) = replies.next().await {
            line.clear();
            format.write_line(&item?, &mut line);
            stdout.write_all(&line).await?;
            stdout.flush().await?;
        }
        Ok::<(), LinkError>(())
    });

    let mut sent = 0u64;
    if args.messages.is_empty() {
        let mut stdin = BufReader::new(tokio::io::stdin());
        let mut line = Vec::new();
        loop {
            line.clear();
            // The link may end while stdin is quiet (`journalctl -f | send`
            // after the server's idle limit): say so at once instead of
            // reading on and sending into a closed link.
            let read = tokio::select! {
                // An end already known comes first: no line goes after it.
                biased;
                ended = &mut printer => return Err(ended_early(sent, ended)),
                read = stdin.read_until(b'\n', &mut line) => read?,
            };
            if read == 0 {
                break;
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            feed(&mut sink, format.read_line(&line)?, &mut sent).await?;
            // Batch what is already read; flush when stdin has to wait.
            if stdin.buffer().is_empty() {
                sink.flush().await?;
            }
        }
    } else {
        for message in args.messages {
            feed(&mut sink, format.read_line(message.as_bytes())?, &mut sent).await?;
        }
    }
    // Flush, close_notify, then wait (bounded) for the server's close_notify
    // or EOF, so nothing is lost to a reset.
    let unconfirmed = |cause: &str| {
        Error::msg(format!(
            "sent {sent} message(s), but the server did not confirm the end of the link \
             ({cause}): it may have rejected them (wrong HMAC key?) or failed"
        ))
    };
    // One deadline for both waits: the close and the last replies.
    let closing = tokio::time::Instant::now();
    if let Err(err) = sink.close().await {
        let cause = match &err {
            LinkError::CloseTimeout(limit) => format!("no close_notify within {limit:?}"),
            other => files::explain(other),
        };
        return Err(unconfirmed(&cause));
    }
    let left = close_timeout.saturating_sub(closing.elapsed());
    let confirmed = tokio::time::timeout(left, printer).await;
    match confirmed {
        Ok(Ok(Ok(()))) => {
            info!("sent {sent} message(s); the server confirmed the end of the link");
            Ok(())
        }
        Ok(Ok(Err(LinkError::Truncated))) => Err(unconfirmed(
            "it closed the connection without TLS close_notify",
        )),
        Ok(Ok(Err(LinkError::Io(err)))) => Err(unconfirmed(&err.to_string())),
        Ok(Ok(Err(err))) => Err(err.into()),
        Ok(Err(err)) => Err(Error::msg(format!("reply printer failed: {err}"))),
        Err(_) => Err(unconfirmed("no close_notify in time")),
    }
}

/// What `send` reports when the link ends while its input is still open:
/// the server closed it (after its idle limit, say) or it failed.
fn ended_early(sent: u64, ended: Result<Result<(), LinkError>, tokio::task::JoinError>) -> Error {
    let cause = match ended {
        Ok(Ok(())) => "the server closed the link".to_owned(),
        Ok(Err(err)) => format!("the link failed: {}", files::explain(&err)),
        Err(err) => format!("the reply printer failed: {err}"),
    };
    Error::msg(format!(
        "{cause} while input was still open, after {sent} message(s); the rest of the input was not sent"
    ))
}

/// Hands one message to the link (logged at debug) and counts it.
async fn feed<S>(sink: &mut S, message: Vec<u8>, sent: &mut u64) -> Result<(), LinkError>
where
    S: futures::Sink<Bytes, Error = LinkError> + Unpin,
{
    let number = *sent + 1;
    debug!(
        bytes = message.len(),
        "message {number} of {} bytes",
        message.len()
    );
    sink.feed(Bytes::from(message)).await?;
    *sent = number;
    Ok(())
}
