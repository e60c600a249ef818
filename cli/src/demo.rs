//! `demo`: the whole link on this machine, with nothing to set up, and the
//! evidence that the wire is encrypted.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use secure_link::rustls::pki_types::CertificateDer;
use secure_link::{AuthMode, HmacKey, LinkError, SecureAcceptor, SecureConnector, certs};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::{files, relay, shared::Error};

/// Arguments of `demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Messages in the bulk run.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Bytes per bulk message.
    #[arg(long, default_value_t = 1024)]
    size: usize,
}

/// The human-readable messages, sent one by one (each `send` flushes).
const GREETINGS: [&str; 4] = [
    "Hello from secure-link!",
    "Every frame is length | payload | HMAC-SHA256(key, payload).",
    "TLS 1.3 encrypts it; the HMAC proves the sender holds the shared key.",
    "",
];

/// What the server saw on one connection.
struct Report {
    messages: Vec<Bytes>,
    bulk_count: usize,
    bulk_bytes: usize,
    /// How the stream ended: `None` for a clean close.
    error: Option<LinkError>,
    /// Every byte the client sent, as read from the socket.
    wire: Vec<u8>,
}

pub(crate) async fn run(args: Args) -> Result<(), Error> {
    outln!("secure-link demo: TLS 1.3 + HMAC-SHA256 frames over 127.0.0.1 TCP\n");

    let pki = certs::generate(&["localhost", "127.0.0.1"])?;
    let key = HmacKey::generate()?;
    let max_frame_len = args.size.max(secure_link::DEFAULT_MAX_FRAME_LEN);
    let acceptor =
        SecureAcceptor::new(&pki.chain_pem, &pki.key_pem, &key)?.with_max_frame_len(max_frame_len);
    let connector = SecureConnector::new(&pki.ca_pem, &key)?.with_max_frame_len(max_frame_len);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    outln!("Setup (in memory, nothing written to disk)");
    outln!("  CA, server certificate  fresh ECDSA P-256, for localhost and 127.0.0.1");
    outln!("  HMAC key                {} random bytes", key.len());
    outln!("  server                  listening on {addr}\n");

    let (reports, mut next_report) = mpsc::channel(4);
    tokio::spawn(accept_loop(listener, acceptor, reports));

    // 1. The honest client: greetings, then the bulk run.
    let tcp = TcpStream::connect(addr).await?;
    let mut client = connector.connect("localhost", tcp).await?;
    let link = describe(client.get_ref().1);
    outln!("Messages (printed by the server as it receives them)");
    for greeting in GREETINGS {
        client.send(Bytes::from_static(greeting.as_bytes())).await?;
    }
    let bulk: Vec<Bytes> = (0..args.messages)
        .map(|i| bulk_message(i, args.size))
        .collect();
    let started = Instant::now();
    let mut source = futures::stream::iter(bulk.iter().cloned().map(Ok));
    client.send_all(&mut source).await?;
    client.close().await?; // returns once the server answered close_notify
    let report = next(&mut next_report).await?;
    let elapsed = started.elapsed();
    outln!(
        "  ... and a bulk run of {} messages of {} bytes\n",
        report.bulk_count,
        args.size
    );

    // 2. A client that does not hold the key.
    let wrong_key = HmacKey::generate()?;
    let intruder = SecureConnector::new(&pki.ca_pem, wrong_key)?;
    let tcp = TcpStream::connect(addr).await?;
    let mut client = intruder.connect("localhost", tcp).await?;
    client.send(Bytes::from_static(b"let me in")).await?;
    let rejected = next(&mut next_report).await?;
    drop(client);

    // 3. The verdict.
    let mut failures = Vec::new();
    let expected_bulk_bytes = args.messages * args.size;
    let delivered_all = report.error.is_none()
        && report.messages == GREETINGS
        && report.bulk_count == args.messages
        && report.bulk_bytes == expected_bulk_bytes;
    if !delivered_all {
        failures.push(format!(
            "delivery: {} greetings, {}/{} bulk messages, end: {}",
            report.messages.len(),
            report.bulk_count,
            args.messages,
            report
                .error
                .as_ref()
                .map_or("clean".to_owned(), files::explain)
        ));
    }
    let seconds = elapsed.as_secs_f64().max(1e-9);
    outln!("Link");
    outln!("  protocol                {}", link.protocol);
    outln!("  cipher suite            {}", link.suite);
    outln!("  key exchange            {}", link.group);
    outln!("  server certificate      {}", link.subject);
    outln!("  issued by               {}", link.issuer);
    outln!(
        "  delivered               {} of {} messages, {:.1} MB of payload, clean close: {}",
        report.messages.len() + report.bulk_count,
        GREETINGS.len() + args.messages,
        (report.bulk_bytes as f64) / 1e6,
        yes_no(report.error.is_none())
    );
    outln!(
        "  bulk throughput         {:.0} MB/s, {:.0} messages/s (batched, one client, both ends in this process)\n",
        expected_bulk_bytes as f64 / seconds / 1e6,
        args.messages as f64 / seconds
    );

    outln!("Is the wire encrypted? (every byte the client sent, read off the server's socket)");
    let wire = &report.wire;
    let mut plaintexts: Vec<Vec<u8>> = GREETINGS
        .iter()
        .filter(|g| !g.is_empty())
        .map(|g| g.as_bytes().to_vec())
        .collect();
    for i in [0, args.messages / 2, args.messages.saturating_sub(1)] {
        if i < args.messages {
            plaintexts.push(bulk_marker(i).into_bytes());
        }
    }
    let found: Vec<String> = plaintexts
        .iter()
        .filter(|p| contains(wire, p))
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let plain_sample: Vec<u8> = GREETINGS
        .iter()
        .flat_map(|g| g.bytes())
        .chain(bulk.iter().take(64).flat_map(|m| m.iter().copied()))
        .collect();
    outln!(
        "  captured                {:.1} MB, first byte 0x{:02x} ({})",
        wire.len() as f64 / 1e6,
        wire.first().copied().unwrap_or(0),
        if wire.first() == Some(&0x16) {
            "a TLS handshake record"
        } else {
            "not TLS!"
        }
    );
    outln!(
        "  plaintext on the wire   {} (searched for {} known messages)",
        if found.is_empty() {
            "none".to_owned()
        } else {
            format!("FOUND {found:?}")
        },
        plaintexts.len()
    );
    let wire_entropy = entropy(wire);
    outln!(
        "  byte entropy            {:.4} bits/byte on the wire; {:.2} bits/byte in the plaintext sent",
        wire_entropy,
        entropy(&plain_sample)
    );
    let refused =
        matches!(rejected.error, Some(LinkError::InvalidHmac)) && rejected.messages.is_empty();
    outln!(
        "  wrong-key client        {}\n",
        match &rejected.error {
            Some(LinkError::InvalidHmac) if refused =>
                "rejected with an invalid-HMAC error; its message was not delivered".to_owned(),
            other => format!(
                "NOT rejected as expected ({} messages delivered, end: {other:?})",
                rejected.messages.len()
            ),
        }
    );
    outln!("Relay attack: a proxy that terminates TLS (it holds a certificate the client accepts,");
    outln!("but not the HMAC key) records a frame and replays it into its own connection");
    let lab = relay::attack(&pki, &key, AuthMode::Lab, "pay 100 to Mallory").await?;
    let bound = relay::attack(&pki, &key, AuthMode::SessionBound, "pay 100 to Mallory").await?;
    let relay_line = |outcome: &relay::Outcome| match (&outcome.end, outcome.delivered.len()) {
        (None, n) if n > 0 => format!("relayed frame ACCEPTED ({n} message delivered)"),
        (Some(LinkError::InvalidHmac), 0) => "relayed frame refused: invalid HMAC".to_owned(),
        (end, n) => format!("{n} delivered, end: {end:?}"),
    };
    outln!("  lab mode (default)      {}", relay_line(&lab));
    outln!("  session-bound mode      {}\n", relay_line(&bound));
    let bound_refused =
        bound.delivered.is_empty() && matches!(bound.end, Some(LinkError::InvalidHmac));
    let lab_relayed = lab.end.is_none() && lab.delivered.len() == 1;
    if !bound_refused || !lab_relayed {
        failures.push("the relay demonstration did not behave as documented".to_owned());
    }

    failures.extend(wire_failures(wire, &found, wire_entropy));
    if !refused {
        failures.push("the wrong-key client was not rejected".to_owned());
    }
    if failures.is_empty() {
        outln!("All checks passed.");
        Ok(())
    } else {
        Err(Error::msg(format!(
            "demo checks failed: {}",
            failures.join("; ")
        )))
    }
}

async fn next(reports: &mut mpsc::Receiver<Report>) -> Result<Report, Error> {
    tokio::time::timeout(Duration::from_secs(60), reports.recv())
        .await
        .ok()
        .flatten()
        .ok_or_else(|| Error::msg("the demo server did not report back"))
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: SecureAcceptor,
    reports: mpsc::Sender<Report>,
) {
    while let Ok((tcp, _)) = listener.accept().await {
        let acceptor = acceptor.clone();
        let reports = reports.clone();
        tokio::spawn(async move {
            let (tap, wire) = ReadTap::new(tcp);
            let report = serve(acceptor, tap, wire).await;
            let _ = reports.send(report).await;
        });
    }
}

async fn serve(acceptor: SecureAcceptor, tap: ReadTap, wire: Arc<Mutex<Vec<u8>>>) -> Report {
    let mut report = Report {
        messages: Vec::new(),
        bulk_count: 0,
        bulk_bytes: 0,
        error: None,
        wire: Vec::new(),
    };
    match acceptor.accept(tap).await {
        Err(err) => report.error = Some(err),
        Ok(mut server) => {
            while let Some(item) = server.next().await {
                match item {
                    Ok(message) if report.messages.len() < GREETINGS.len() => {
                        outln!(
                            "  server received         {:?}",
                            String::from_utf8_lossy(&message)
                        );
                        report.messages.push(message);
                    }
                    Ok(message) => {
                        report.bulk_count += 1;
                        report.bulk_bytes += message.len();
                    }
                    Err(err) => {
                        report.error = Some(err);
                        break;
                    }
                }
            }
            if report.error.is_none() {
                let _ = server.close().await;
            }
        }
    }
    report.wire = std::mem::take(&mut *wire.lock().unwrap_or_else(|e| e.into_inner()));
    report
}

fn bulk_marker(i: usize) -> String {
    format!("bulk message #{i:07}")
}

/// Text-like payload of `size` bytes, so that plaintext would be easy to spot.
fn bulk_message(i: usize, size: usize) -> Bytes {
    let marker = bulk_marker(i);
    let mut payload = Vec::with_capacity(size);
    while payload.len() < size {
        payload.extend_from_slice(marker.as_bytes());
        payload.push(b' ');
    }
    payload.truncate(size);
    Bytes::from(payload)
}

struct LinkInfo {
    protocol: String,
    suite: String,
    group: String,
    subject: String,
    issuer: String,
}

fn describe(conn: &secure_link::rustls::ClientConnection) -> LinkInfo {
    let (subject, issuer) = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map_or_else(
            || ("(none)".to_owned(), "(none)".to_owned()),
            subject_and_issuer,
        );
    LinkInfo {
        protocol: conn
            .protocol_version()
            .map_or("(none)".to_owned(), |v| format!("{v:?}")),
        suite: conn
            .negotiated_cipher_suite()
            .map_or("(none)".to_owned(), |s| format!("{:?}", s.suite())),
        group: conn
            .negotiated_key_exchange_group()
            .map_or("(none)".to_owned(), |g| format!("{:?}", g.name())),
        subject,
        issuer,
    }
}

fn subject_and_issuer(cert: &CertificateDer<'_>) -> (String, String) {
    match x509_parser::parse_x509_certificate(cert) {
        Ok((_, cert)) => (cert.subject().to_string(), cert.issuer().to_string()),
        Err(_) => ("(unparsable)".to_owned(), "(unparsable)".to_owned()),
    }
}

/// Below this many bits per byte, the captured wire does not look like
/// ciphertext. AES-GCM output over megabytes measures 8.0000 to four
/// places; English text is about 4.5, the demo's bulk payloads about 5.
const MIN_WIRE_ENTROPY: f64 = 7.9;

/// What is wrong with a captured session: a known message found in it,
/// no TLS handshake record first, or too little entropy for ciphertext.
fn wire_failures(wire: &[u8], found: &[String], wire_entropy: f64) -> Vec<String> {
    let mut failures = Vec::new();
    if !found.is_empty() {
        failures.push(format!("plaintext visible on the wire: {found:?}"));
    }
    if wire.first() != Some(&0x16) {
        failures.push("the wire does not start with a TLS handshake record".to_owned());
    }
    if wire_entropy < MIN_WIRE_ENTROPY {
        failures.push(format!(
            "the wire does not look encrypted: {wire_entropy:.4} bits/byte, under {MIN_WIRE_ENTROPY}"
        ));
    }
    failures
}

/// Shannon entropy of the byte distribution, in bits per byte (8 is the
/// maximum: uniformly random bytes).
fn entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0usize; 256];
    for &b in bytes {
        counts[b as usize] += 1;
    }
    let n = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// A TCP stream that keeps a copy of every byte read from it.
struct ReadTap {
    tcp: TcpStream,
    wire: Arc<Mutex<Vec<u8>>>,
}

impl ReadTap {
    fn new(tcp: TcpStream) -> (Self, Arc<Mutex<Vec<u8>>>) {
        let wire = Arc::new(Mutex::new(Vec::new()));
        (
            ReadTap {
                tcp,
                wire: wire.clone(),
            },
            wire,
        )
    }
}

impl AsyncRead for ReadTap {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            let mut wire = self.wire.lock().unwrap_or_else(|e| e.into_inner());
            wire.extend_from_slice(&buf.filled()[before..]);
        }
        poll
    }
}

impl AsyncWrite for ReadTap {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plaintext_wire_fails_the_demo_checks() {
        let plain = b"\x16hello hello hello, this is not encrypted at all".repeat(100);
        let failures = wire_failures(&plain, &["hello".to_owned()], entropy(&plain));
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(
            failures[1].contains("does not look encrypted"),
            "{failures:?}"
        );
        let no_tls = [0x17u8; 10];
        assert_eq!(wire_failures(&no_tls, &[], 8.0).len(), 1);
        let random: Vec<u8> = (0..1_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        let mut wire = vec![0x16];
        wire.extend_from_slice(&random);
        assert!(wire_failures(&wire, &[], entropy(&wire)).is_empty());
    }
}
