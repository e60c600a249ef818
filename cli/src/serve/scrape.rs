//! `serve --metrics ADDR`: the Prometheus scrape endpoint, answered by
//! serve itself.
//!
//! The exporter's own HTTP listener retries a failing accept at once and
//! keeps every connection it accepts, so enough connections to the
//! metrics port made serve spin at full CPU, flood its log and take the
//! descriptors its client listener needs. Here the endpoint has the client
//! listener's guards (accept.rs: a cap, and back-off when accept fails)
//! and bounds of its own:
//!
//! - at most [`MAX_SCRAPERS`] connections at once; more wait in the listen
//!   backlog, where they hold none of serve's descriptors;
//! - a request head arrives in full within [`READ_TIMEOUT`] (else `408`)
//!   and fits in [`MAX_HEAD`] bytes (else `431`);
//! - the answer is written within [`WRITE_TIMEOUT`], then the connection
//!   is closed: one request per connection (`Connection: close`), which is
//!   all a scraper polling every few seconds needs.
//!
//! Eight connections that send nothing keep a real scraper waiting, 5 s
//! at a time, for as long as they are renewed: the endpoint has no
//! authentication, so bind it to loopback or a management network.
//!
//! Any `GET` (or `HEAD`) path answers with the text exposition format;
//! other methods get `405`, anything that is not an HTTP/1 request `400`.

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;
use tokio::time::{MissedTickBehavior, timeout};

use super::accept::Acceptor;

/// Most scrape connections served at once.
const MAX_SCRAPERS: usize = 8;
/// Time a scraper has to send its whole request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time the answer may take to write.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head read (request line and headers).
const MAX_HEAD: usize = 8 * 1024;
/// Most bytes read and dropped after the answer, until the scraper closes
/// (within [`WRITE_TIMEOUT`]).
const MAX_LINGER: usize = 64 * 1024;
/// How often the recorder's histograms are drained into their buckets
/// (`PrometheusHandle::run_upkeep`), so that samples recorded between
/// scrapes, or with nobody scraping, do not pile up.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The exposition format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Answers scrapes on `listener` until the task is dropped.
pub(crate) async fn serve(listener: TcpListener, handle: PrometheusHandle) {
    let mut incoming = Acceptor::new("metrics", listener, MAX_SCRAPERS);
    let mut upkeep = tokio::time::interval(UPKEEP_INTERVAL);
    upkeep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut answering = JoinSet::new();
    loop {
        tokio::select! {
            _ = upkeep.tick() => handle.run_upkeep(),
            Some(_) = answering.join_next(), if !answering.is_empty() => {}
            (tcp, _peer, slot) = incoming.next() => {
                answering.spawn(answer(tcp, handle.clone(), slot));
            }
        }
    }
}

/// Reads one request head and answers it; the slot is held until the
/// connection is closed.
async fn answer(mut tcp: TcpStream, handle: PrometheusHandle, _slot: OwnedSemaphorePermit) {
    let response = match timeout(READ_TIMEOUT, read_head(&mut tcp)).await {
        Ok(Head::Complete(head)) => respond(&head, || handle.render()),
        Ok(Head::TooLarge) => status(431, "Request Header Fields Too Large"),
        // The scraper left or broke the connection: nobody to answer.
        Ok(Head::Ended) => return,
        Err(_elapsed) => status(408, "Request Timeout"),
    };
    // Best effort: a scraper that does not take its answer in time, or
    // resets, gets nothing more.
    let _ = timeout(WRITE_TIMEOUT, async {
        tcp.write_all(&response).await?;
        tcp.shutdown().await?;
        // Take what else the scraper sent (a refused request's body), a
        // little and briefly, so that closing with it unread does not
        // reset the connection before the answer is read.
        let mut rest = [0u8; 1024];
        let mut left = MAX_LINGER;
        while left > 0 {
            match tcp.read(&mut rest).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// What arrived of a request head.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// The bytes up to the blank line that ends the head.
    Complete(Vec<u8>),
    /// No blank line within [`MAX_HEAD`] bytes.
    TooLarge,
    /// The connection ended or broke first.
    Ended,
}

async fn read_head<R: AsyncReadExt + Unpin>(reader: &mut R) -> Head {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return Head::Ended,
            Ok(n) => n,
        };
        // Search only where the new bytes can complete the terminator.
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = find_head_end(&head[from..]) {
            head.truncate(from + end);
            return Head::Complete(head);
        }
        if head.len() >= MAX_HEAD {
            return Head::TooLarge;
        }
    }
}

/// The length of the head up to and with its ending blank line (`\r\n\r\n`,
/// or `\n\n` from a lenient client), if it is there.
fn find_head_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The whole response to a request head; `render` is called only for a
/// request that gets the metrics.
fn respond(head: &[u8], render: impl FnOnce() -> String) -> Vec<u8> {
    // Empty lines before the request line are ignored (RFC 9112, 2.2).
    let start = head.iter().position(|&b| b != b'\r' && b != b'\n');
    let head = start.map_or(&head[head.len()..], |start| &head[start..]);
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(_target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return status(400, "Bad Request");
    };
    if !version.starts_with(b"HTTP/1.") {
        return status(400, "Bad Request");
    }
    match method {
        b"GET" | b"HEAD" => {
            let body = render();
            let mut response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            if method == b"GET" {
                response.extend_from_slice(body.as_bytes());
            }
            response
        }
        _ => status_with(405, "Method Not Allowed", "Allow: GET, HEAD\r\n"),
    }
}

/// A response with no body.
fn status(code: u16, reason: &str) -> Vec<u8> {
    status_with(code, reason, "")
}

/// A response with no body and the given header lines (each ending in
/// `\r\n`).
fn status_with(code: u16, reason: &str, headers: &str) -> Vec<u8> {
    format!("HTTP/1.1 {code} {reason}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn text(response: Vec<u8>) -> String {
        String::from_utf8(response).unwrap()
    }

    #[test]
    fn a_get_of_any_path_gets_the_metrics_with_their_length() {
        let response = text(respond(
            b"GET /whatever?x=1 HTTP/1.1\r\nHost: a\r\n\r\n",
            || "m 1\n".to_owned(),
        ));
        assert_eq!(
            response,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
             Content-Length: 4\r\nConnection: close\r\n\r\nm 1\n"
        );
    }

    #[test]
    fn a_head_request_gets_the_length_without_the_body_and_blank_lines_first_are_ignored() {
        let response = text(respond(b"HEAD / HTTP/1.0\n\n", || "m 1\n".to_owned()));
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        let after_blank = text(respond(b"\r\nGET / HTTP/1.1\r\n\r\n", || {
            "m 1\n".to_owned()
        }));
        assert!(
            after_blank.starts_with("HTTP/1.1 200 OK\r\n"),
            "{after_blank}"
        );
        assert!(response.contains("Content-Length: 4\r\n"), "{response}");
        assert!(response.ends_with("\r\n\r\n"), "{response}");
    }

    #[test]
    fn other_methods_and_garbage_are_refused_without_rendering() {
        let never = || -> String { panic!("rendered for a refused request") };
        assert_eq!(
            text(respond(b"POST /metrics HTTP/1.1\r\n\r\n", never)),
            "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        for head in [
            &b"\x16\x03\x01\x02\x00\x01\r\n\r\n"[..],
            b"GET /metrics\r\n\r\n",
            b"GET / SPDY/3\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"\r\n\r\n",
        ] {
            let response = text(respond(head, never));
            assert!(
                response.starts_with("HTTP/1.1 400 "),
                "{head:?}: {response}"
            );
        }
    }

    #[tokio::test]
    async fn a_head_is_read_to_its_blank_line_whatever_the_chunks() {
        let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nignored";
        let expected = request.len() - b"ignored".len();
        for chunk in [1, 2, 3, 5, request.len()] {
            // The pieces up to the one that ends the head: nothing after
            // it is read.
            let mut builder = tokio_test::io::Builder::new();
            for piece in request.chunks(chunk).take(expected.div_ceil(chunk)) {
                builder.read(piece);
            }
            let head = read_head(&mut builder.build()).await;
            assert_eq!(
                head,
                Head::Complete(request[..expected].to_vec()),
                "{chunk}"
            );
        }
    }

    #[tokio::test]
    async fn a_head_without_its_end_is_cut_off_at_the_limit_or_the_close() {
        let mut endless = tokio_test::io::Builder::new();
        for _ in 0..MAX_HEAD / 1024 {
            endless.read(&[b'a'; 1024]);
        }
        assert_eq!(read_head(&mut endless.build()).await, Head::TooLarge);
        let mut cut = tokio_test::io::Builder::new()
            .read(b"GET / HTTP/1.1\r\n")
            .build();
        assert_eq!(read_head(&mut cut).await, Head::Ended);
    }
}
