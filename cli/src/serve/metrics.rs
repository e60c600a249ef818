//! `serve --metrics ADDR`: Prometheus counters of what serve does, through
//! the `metrics` facade and `metrics-exporter-prometheus`'s recorder (the
//! endpoint that renders them is serve's own, scrape.rs). Without
//! `--metrics` no recorder is installed and every update below is a no-op.
//!
//! Names follow Prometheus' conventions: `secure_link_` prefix, `_total`
//! on counters, units in the name.

use metrics::{Counter, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use secure_link::{LinkError, Revoked};

use crate::shared::Error;

const ACCEPTED: &str = "secure_link_connections_accepted_total";
const OPEN: &str = "secure_link_connections_open";
const CLOSED: &str = "secure_link_connections_closed_total";
const HANDSHAKES_FAILED: &str = "secure_link_handshakes_failed_total";
const RECEIVED: &str = "secure_link_messages_received_total";
const RECEIVED_BYTES: &str = "secure_link_received_bytes_total";
const SENT: &str = "secure_link_messages_sent_total";
const SENT_BYTES: &str = "secure_link_sent_bytes_total";
const SIZE: &str = "secure_link_message_size_bytes";
const SESSIONS: &str = "secure_link_resilient_sessions_total";
const SESSIONS_OPEN: &str = "secure_link_resilient_sessions_open";
const RESUMES: &str = "secure_link_resilient_resumes_total";
const RESENT: &str = "secure_link_resilient_resent_total";
const DUPLICATES: &str = "secure_link_resilient_duplicates_dropped_total";

/// Upper bounds of the message size histogram's buckets, in bytes.
const SIZE_BUCKETS: [f64; 10] = [
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
];

/// Installs the recorder; the handle renders what it holds.
pub(crate) fn install() -> Result<PrometheusHandle, Error> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(SIZE.to_owned()), &SIZE_BUCKETS)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|err| Error::msg(format!("--metrics: {err}")))?;
    describe();
    // Present from the first scrape, at zero.
    for reason in Closed::ALL {
        counter!(CLOSED, "reason" => reason.label()).absolute(0);
    }
    for reason in HandshakeFailure::ALL {
        counter!(HANDSHAKES_FAILED, "reason" => reason.label()).absolute(0);
    }
    for name in [
        ACCEPTED,
        RECEIVED,
        RECEIVED_BYTES,
        SENT,
        SENT_BYTES,
        SESSIONS,
        RESUMES,
        RESENT,
        DUPLICATES,
    ] {
        counter!(name).absolute(0);
    }
    gauge!(OPEN).set(0.0);
    gauge!(SESSIONS_OPEN).set(0.0);
    Ok(handle)
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(ACCEPTED, "TCP connections accepted");
    describe_gauge!(OPEN, "Connections accepted and not yet closed");
    describe_counter!(CLOSED, "Connections ended, by reason");
    describe_counter!(HANDSHAKES_FAILED, "TLS handshakes that failed, by reason");
    describe_counter!(RECEIVED, "Authenticated messages received");
    describe_counter!(RECEIVED_BYTES, Unit::Bytes, "Payload bytes received");
    describe_counter!(SENT, "Messages sent (echo replies)");
    describe_counter!(SENT_BYTES, Unit::Bytes, "Payload bytes sent");
    describe_histogram!(SIZE, Unit::Bytes, "Payload size of each message received");
    describe_counter!(SESSIONS, "Resilient sessions opened");
    describe_gauge!(
        SESSIONS_OPEN,
        "Resilient sessions held (with or without a connection)"
    );
    describe_counter!(RESUMES, "Connections that resumed a resilient session");
    describe_counter!(
        RESENT,
        "Messages sent again after a reconnect (echo replies)"
    );
    describe_counter!(DUPLICATES, "Messages that arrived twice and were dropped");
}

/// A resilient session's counters, by their increase since the last call.
#[derive(Debug, Default)]
pub(crate) struct Session {
    resent: u64,
    duplicates: u64,
}

impl Session {
    pub(crate) fn opened() -> Self {
        counter!(SESSIONS).increment(1);
        gauge!(SESSIONS_OPEN).increment(1.0);
        Session::default()
    }

    pub(crate) fn resumed(&self) {
        counter!(RESUMES).increment(1);
    }

    pub(crate) fn update(&mut self, resent: u64, duplicates: u64) {
        counter!(RESENT).increment(resent.saturating_sub(self.resent));
        counter!(DUPLICATES).increment(duplicates.saturating_sub(self.duplicates));
        (self.resent, self.duplicates) = (resent, duplicates);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        gauge!(SESSIONS_OPEN).decrement(1.0);
    }
}

/// A connection accepted; it counts as open until [`closed`].
pub(crate) fn accepted() {
    counter!(ACCEPTED).increment(1);
    gauge!(OPEN).increment(1.0);
}

/// One connection's per-message counters. `counter!` looks its metric up
/// in the recorder's registry on every call; a connection looks them up
/// once and keeps the handles.
pub(crate) struct Traffic {
    received: Counter,
    received_bytes: Counter,
    sizes: Histogram,
    sent: Counter,
    sent_bytes: Counter,
}

impl Traffic {
    pub(crate) fn new() -> Self {
        Traffic {
            received: counter!(RECEIVED),
            received_bytes: counter!(RECEIVED_BYTES),
            sizes: histogram!(SIZE),
            sent: counter!(SENT),
            sent_bytes: counter!(SENT_BYTES),
        }
    }

    /// A message of `len` payload bytes received.
    pub(crate) fn received(&self, len: usize) {
        self.received.increment(1);
        self.received_bytes.increment(len as u64);
        self.sizes.record(len as f64);
    }

    /// A reply of `len` payload bytes sent.
    pub(crate) fn sent(&self, len: usize) {
        self.sent.increment(1);
        self.sent_bytes.increment(len as u64);
    }
}

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Closed {
    /// The client closed with `close_notify` and we answered.
    Clean,
    /// A message's tag did not verify.
    InvalidHmac,
    /// No message within `--first-message-timeout`.
    FirstMessageTimeout,
    /// Silent past `--idle-timeout`.
    IdleTimeout,
    /// A reply or the closing `close_notify` took past `--write-timeout`.
    WriteTimeout,
    /// The TLS handshake did not complete (see the handshake counter).
    Handshake,
    /// A TLS error after the handshake.
    Tls,
    /// A message over `--max-frame-len` (or the first-frame limit).
    FrameTooLarge,
    /// The connection broke or ended mid-frame.
    Io,
    /// A reload removed the HMAC key the connection is pinned to.
    KeyRevoked,
    /// A reload's client CAs no longer verify the client's certificate.
    ClientCaRevoked,
    /// The connection carries a resilient session now (counted by the
    /// session metrics from here on).
    Resilient,
}

impl Closed {
    const ALL: [Closed; 12] = [
        Closed::Clean,
        Closed::InvalidHmac,
        Closed::FirstMessageTimeout,
        Closed::IdleTimeout,
        Closed::WriteTimeout,
        Closed::Handshake,
        Closed::Tls,
        Closed::FrameTooLarge,
        Closed::Io,
        Closed::KeyRevoked,
        Closed::ClientCaRevoked,
        Closed::Resilient,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Closed::Clean => "clean",
            Closed::InvalidHmac => "invalid_hmac",
            Closed::FirstMessageTimeout => "first_message_timeout",
            Closed::IdleTimeout => "idle_timeout",
            Closed::WriteTimeout => "write_timeout",
            Closed::Handshake => "handshake",
            Closed::Tls => "tls",
            Closed::FrameTooLarge => "frame_too_large",
            Closed::Io => "io",
            Closed::KeyRevoked => Revoked::Key.label(),
            Closed::ClientCaRevoked => Revoked::ClientCa.label(),
            Closed::Resilient => "resilient",
        }
    }

    /// The reason a link error ends a connection with.
    pub(crate) fn of(err: &LinkError) -> Closed {
        match err {
            LinkError::InvalidHmac => Closed::InvalidHmac,
            LinkError::FirstMessageTimeout(_) => Closed::FirstMessageTimeout,
            LinkError::IdleTimeout(_) => Closed::IdleTimeout,
            LinkError::CloseTimeout(_) | LinkError::WriteTimeout(_) => Closed::WriteTimeout,
            LinkError::HandshakeTimeout => Closed::Handshake,
            LinkError::Tls(_) => Closed::Tls,
            LinkError::FrameTooLarge { .. } => Closed::FrameTooLarge,
            _ => Closed::Io,
        }
    }

    /// The reason a revoked link is closed with.
    pub(crate) fn revoked(revoked: Revoked) -> Closed {
        match revoked {
            Revoked::Key => Closed::KeyRevoked,
            _ => Closed::ClientCaRevoked,
        }
    }

    /// Counts the end of a connection counted by [`accepted`].
    pub(crate) fn record(self) {
        counter!(CLOSED, "reason" => self.label()).increment(1);
        gauge!(OPEN).decrement(1.0);
    }
}

/// Why a TLS handshake failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HandshakeFailure {
    /// Not finished within `--handshake-timeout`.
    Timeout,
    /// The TLS layer refused (bad certificate, protocol version, ...).
    Tls,
    /// The connection broke during the handshake.
    Io,
}

impl HandshakeFailure {
    const ALL: [HandshakeFailure; 3] = [
        HandshakeFailure::Timeout,
        HandshakeFailure::Tls,
        HandshakeFailure::Io,
    ];

    fn label(self) -> &'static str {
        match self {
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Tls => "tls",
            HandshakeFailure::Io => "io",
        }
    }

    pub(crate) fn of(err: &LinkError) -> HandshakeFailure {
        match err {
            LinkError::HandshakeTimeout => HandshakeFailure::Timeout,
            LinkError::Tls(_) => HandshakeFailure::Tls,
            _ => HandshakeFailure::Io,
        }
    }

    pub(crate) fn record(self) {
        counter!(HANDSHAKES_FAILED, "reason" => self.label()).increment(1);
    }
}
