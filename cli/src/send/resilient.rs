//! `send --resilient`: the same input, over a session that reconnects
//! until every line is acknowledged.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use secure_link::resilient::{ResilientConfig, ResilientConnector, ResilientEvent};
use secure_link::{LinkError, SecureConnector};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use super::Args;
use crate::{files, shared::Error};

pub(super) async fn run(args: Args, connector: SecureConnector) -> Result<(), Error> {
    let mut config = ResilientConfig::new()
        .with_heartbeat_interval(args.heartbeat_interval)
        .with_dead_time(args.dead_time);
    if let Some(limit) = args.give_up_after {
        config = config.with_give_up_after(limit);
    }
    let resilient = ResilientConnector::new(connector, config)?;
    let (address, timeout, keepalive) = (args.connect.clone(), args.timeout, args.keepalive);
    let dial = move || {
        let address = address.clone();
        Box::pin(async move {
            let tcp = tokio::time::timeout(timeout, TcpStream::connect(&address))
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connecting to {address} timed out"),
                    )
                })??;
            let _ = tcp.set_nodelay(true);
            if let Err(err) = keepalive.apply(&tcp) {
                warn!("cannot turn on TCP keepalive: {err}");
            }
            Ok(tcp)
        }) as futures::future::BoxFuture<'static, io::Result<TcpStream>>
    };
    let link = resilient.connect(&args.server_name, dial)?;
    let events = link.events();
    let connect = args.connect.clone();
    tokio::spawn(async move {
        while let Some(event) = events.next_event().await {
            match event {
                ResilientEvent::Connected { resumed } => {
                    info!(
                        resumed,
                        "connected to {connect}{}",
                        if resumed { ", session resumed" } else { "" }
                    );
                }
                ResilientEvent::PeerRestarted { resent } => warn!(
                    resent,
                    "the server lost the session (restarted): unacknowledged lines are sent again; {resent} of them may have been printed twice"
                ),
                ResilientEvent::Disconnected { error } => {
                    info!("connection lost ({error}); reconnecting")
                }
                _ => {}
            }
        }
    });

    let format = args.format;
    let (mut sink, mut replies) = link.split();
    // Ends with the session's stream: its error, or `Ok` when the server
    // ended the session. A stdout that fails (a closed pipe) is said once;
    // the replies are still taken, so the session goes on.
    let mut printer = tokio::spawn(async move {
        let mut stdout = Some(tokio::io::stdout());
        let mut line = Vec::new();
        while let Some(item) = replies.next().await {
            let item = item?;
            let Some(out) = &mut stdout else { continue };
            line.clear();
            format.write_line(&item, &mut line);
            if let Err(err) = async {
                out.write_all(&line).await?;
                out.flush().await
            }
            .await
            {
                warn!("cannot write replies to stdout ({err}); they are no longer printed");
                stdout = None;
            }
        }
        Ok::<(), LinkError>(())
    });

    let mut sent = 0u64;
    let result = async {
        if args.messages.is_empty() {
            let mut stdin = BufReader::new(tokio::io::stdin());
            let mut line = Vec::new();
            loop {
                line.clear();
                // A session that ends while stdin is quiet (the server
                // refused the reconnect, its key revoked) ends send now,
                // not at the next line. The read is not cancellation safe,
                // which does not matter: send stops.
                let read = tokio::select! {
                    read = stdin.read_until(b'\n', &mut line) => read?,
                    ended = &mut printer => return Err(session_ended(ended, sent)),
                };
                if read == 0 {
                    break;
                }
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                feed(&mut sink, format.read_line(&line)?, &mut sent)
                    .await
                    .map_err(|err| failed(err, sent))?;
                if stdin.buffer().is_empty() {
                    sink.flush().await.map_err(|err| failed(err, sent))?;
                }
            }
        } else {
            for message in &args.messages {
                feed(&mut sink, format.read_line(message.as_bytes())?, &mut sent)
                    .await
                    .map_err(|err| failed(err, sent))?;
            }
        }
        // Every line acknowledged, then the session's end.
        sink.flush().await.map_err(|err| failed(err, sent))?;
        sink.close().await.map_err(|err| failed(err, sent))?;
        Ok::<(), Error>(())
    }
    .await;
    result?;
    let _ = tokio::time::timeout(Duration::from_secs(10), printer).await;
    info!("sent {sent} message(s); the server acknowledged every one");
    Ok(())
}

/// The session's stream ended while stdin was still open: its error, or
/// the server's end of the session.
fn session_ended(ended: Result<Result<(), LinkError>, tokio::task::JoinError>, sent: u64) -> Error {
    match ended {
        Ok(Err(err)) => failed(err, sent),
        Ok(Ok(())) => Error::msg(format!(
            "the server ended the session; {sent} line(s) read, not all acknowledged"
        )),
        Err(err) => Error::msg(format!("the reply printer failed: {err}")),
    }
}

/// Why the session ended before every line was acknowledged.
fn failed(err: LinkError, sent: u64) -> Error {
    match err {
        LinkError::GaveUp { after, unacked } => Error::msg(format!(
            "gave up after {} s without a connection: {unacked} of {sent} line(s) were not acknowledged",
            after.as_secs_f64()
        )),
        other => Error::msg(format!(
            "{}; {sent} line(s) read, not all acknowledged",
            files::explain(&other)
        )),
    }
}

async fn feed<S>(sink: &mut S, message: Vec<u8>, sent: &mut u64) -> Result<(), LinkError>
where
    S: futures::Sink<Bytes, Error = LinkError> + Unpin,
{
    debug!(
        bytes = message.len(),
        "message {} of {} bytes",
        *sent + 1,
        message.len()
    );
    sink.feed(Bytes::from(message)).await?;
    *sent += 1;
    Ok(())
}
