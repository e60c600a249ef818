//! `serve`'s main loop: the listener, the connections, stdout, signals,
//! reloads and the shutdown, wired together.

use std::sync::Arc;
use std::time::Duration;

use secure_link::ReloadableAcceptor;
use secure_link::resilient::{ResilientAcceptor, ResilientConfig};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::args::{Args, DEFAULT_WRITE_TIMEOUT_MAX};
use super::reload::{Reload, Timeouts, load_acceptor};
use super::{accept, connection, metrics, output, scrape, signals};
use crate::shared::Error;

/// How long shutdown waits for stdout to take what is queued.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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
    let sessions = if args.resilient {
        let config = ResilientConfig::new()
            .with_heartbeat_interval(args.heartbeat_interval)
            .with_dead_time(args.dead_time)
            .with_session_expiry(args.session_expiry);
        Some(ResilientAcceptor::new(acceptor.current(), config)?)
    } else {
        None
    };
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
                let current = acceptor.current();
                let configuration = connection::Configuration {
                    changes: acceptor.changes(),
                    resilient: sessions.as_ref().map(|s| s.with_acceptor(current.clone())),
                    acceptor: current,
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

fn stdout_failed(ended: Result<std::io::Result<u64>, tokio::task::JoinError>) -> Error {
    match ended {
        Ok(Err(err)) => Error::msg(format!(
            "cannot write to stdout ({err}): stopped accepting and shut down"
        )),
        Ok(Ok(_)) => Error::msg("the stdout writer ended early; shut down"),
        Err(err) => Error::msg(format!("the stdout writer failed: {err}; shut down")),
    }
}
