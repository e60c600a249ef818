//! One resilient session of `serve --resilient`: each message printed
//! once per session however often the client reconnects, optional echo,
//! a log line for each event, and its end when a reload revokes what
//! authorised it.

use std::net::SocketAddr;

use futures::{SinkExt, StreamExt};
use secure_link::resilient::{ResilientEvent, ResilientLink};
use secure_link::{AcceptorChanges, LinkError, Revoked};
use tracing::{info, warn};

use super::connection::Settings;
use super::metrics::{self, Closed};
use super::output::Output;
use crate::files;

/// Serves a session from its first connection (from `peer`) to its end:
/// the client's close, its expiry, a reload that revokes its key or its
/// client's CA, or serve's shutdown (which drops it).
pub(crate) async fn serve(
    mut link: ResilientLink,
    peer: SocketAddr,
    mut changes: AcceptorChanges,
    output: Output,
    settings: Settings,
) -> Closed {
    let session = link.session_id();
    let short = &session[..8];
    // A prefix names it: among clients that share a key, the whole id is
    // what tells their sessions apart.
    info!(%peer, event = "session_opened", session = short, "resilient session {short} opened");
    let mut counters = metrics::Session::opened();
    let traffic = metrics::Traffic::new();
    let mut count = 0u64;
    let events = link.events();
    let mut events_open = true;
    loop {
        let item = tokio::select! {
            // A reload first: nothing more is taken from a revoked session.
            biased;
            fresh = changes.changed() => match link.revoked_by(&fresh) {
                Some(revoked) => return revoke(revoked, short, count),
                None => continue,
            },
            event = events.next_event(), if events_open => {
                let Some(event) = event else {
                    events_open = false;
                    continue;
                };
                log_event(&event, short, &counters);
                // Each connection, the first too, was accepted under the
                // configuration of its moment: checked against the one in
                // place now (a reload since would not be seen otherwise).
                if matches!(event, ResilientEvent::Connected { .. })
                    && let Some(revoked) = link.revoked_by(&changes.current())
                {
                    return revoke(revoked, short, count);
                }
                let stats = link.stats();
                counters.update(stats.resent, stats.duplicates);
                continue;
            }
            item = link.next() => item,
        };
        match item {
            Some(Ok(message)) => {
                count += 1;
                traffic.received(message.len());
                if settings.echo {
                    let len = message.len();
                    // Acknowledged by the client: the session holds it
                    // across reconnects until then.
                    match link.send(message.clone()).await {
                        Ok(()) => traffic.sent(len),
                        Err(err) => return ended(&err, short, count),
                    }
                }
                if output.send(message).await.is_err() {
                    return Closed::Io;
                }
            }
            Some(Err(err)) => return ended(&err, short, count),
            None => break,
        }
    }
    let stats = link.stats();
    counters.update(stats.resent, stats.duplicates);
    let _ = link.close().await;
    info!(
        event = "session_closed",
        session = short,
        messages = count,
        "resilient session {short} closed by the client after {count} messages"
    );
    Closed::Clean
}

fn log_event(event: &ResilientEvent, short: &str, counters: &metrics::Session) {
    match event {
        ResilientEvent::Connected { resumed: true } => {
            counters.resumed();
            info!(
                event = "session_resumed",
                session = short,
                "resilient session {short} resumed"
            );
        }
        ResilientEvent::Disconnected { error } => {
            let error = crate::format::escape_text(error);
            info!(event = "session_disconnected", session = short, %error, "resilient session {short} lost its connection: {error}; waiting for the client");
        }
        _ => {}
    }
}

/// A reload took away what authorised the session: it ends here, when
/// the caller drops the link (its connection with it, without an `End`).
/// The client's reconnect is refused by the new configuration.
fn revoke(revoked: Revoked, short: &str, count: u64) -> Closed {
    warn!(
        event = "session_revoked",
        session = short,
        reason = revoked.label(),
        messages = count,
        "resilient session {short}: after a reload {revoked}: ending the session after {count} messages"
    );
    Closed::revoked(revoked)
}

fn ended(err: &LinkError, short: &str, count: u64) -> Closed {
    let error = files::explain_on_server(err);
    warn!(
        event = "session_ended",
        session = short,
        messages = count,
        %error,
        "resilient session {short} ended after {count} messages: {error}"
    );
    Closed::of(err)
}
