//! What an operator of `secure-link serve` reads: JSON log lines and
//! Prometheus metrics, from a real process on 127.0.0.1 driven by clean,
//! forged and timed-out connections.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_support;

use std::net::TcpStream;

use cli_support::*;

/// `serve --log-format json`: every stderr line is one JSON object with
/// the level, the message and the event's fields (peer address, event
/// name, counts).
#[test]
fn json_logs_are_one_object_per_line_with_peer_and_event() {
    let ws = Workspace::new("jsonlogs");
    let server = Server::start(&ws, &["--log-format", "json"]);
    let out = send(&ws, &server, "key.hex", &["one", "two"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let closed = server.wait_stderr("closed cleanly");
    let forged = send(&ws, &server, "other-key.hex", &["forged"], "");
    assert!(!forged.status.success());
    server.wait_stderr("invalid HMAC");

    let lines = server.stderr_text();
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let find = |event: &str| {
        events
            .iter()
            .find(|e| e["event"] == event)
            .unwrap_or_else(|| panic!("no {event} event in {lines:#?}"))
    };
    let listening = find("listening");
    assert_eq!(listening["level"], "INFO");
    assert_eq!(listening["addr"], server.addr.as_str());
    let connected = find("connected");
    let peer = connected["peer"].as_str().unwrap();
    assert!(peer.starts_with("127.0.0.1:"), "{connected}");
    let done = find("closed");
    assert_eq!(done["peer"], peer);
    assert_eq!(done["messages"], 2);
    assert_eq!(done["message"], "closed cleanly after 2 messages");
    assert!(closed.starts_with('{'), "{closed}");
    let rejected = find("invalid_hmac");
    assert_eq!(rejected["level"], "WARN");
    assert_eq!(rejected["messages"], 0);
    assert!(rejected["timestamp"].is_string());
}

/// `serve --metrics ADDR`: Prometheus text over HTTP, counting
/// connections by how they ended, failed handshakes by reason, messages,
/// bytes and their sizes.
#[test]
fn metrics_count_clean_forged_and_timed_out_connections() {
    let ws = Workspace::new("metrics");
    let metrics = format!("127.0.0.1:{}", free_port());
    let server = Server::start(
        &ws,
        &["--metrics", &metrics, "--handshake-timeout", "10", "--echo"],
    );
    server.wait_stderr("Prometheus metrics on");

    // Before any connection every counter is there, at zero.
    let body = scrape(&metrics);
    for series in [
        "secure_link_connections_accepted_total",
        "secure_link_connections_closed_total{reason=\"clean\"}",
        "secure_link_connections_closed_total{reason=\"invalid_hmac\"}",
        "secure_link_handshakes_failed_total{reason=\"timeout\"}",
        "secure_link_messages_received_total",
        "secure_link_connections_open",
    ] {
        assert_eq!(sample(&body, series), Some(0.0), "{series} in\n{body}");
    }

    // Timed out: TCP connected, no TLS handshake within 10 s (opened first,
    // so the two handshakes below have a limit far above what they need).
    let silent = TcpStream::connect(&server.addr).unwrap();

    // Clean: two messages of 5 and 1,000 bytes, echoed.
    let long = "x".repeat(1000);
    let out = send(&ws, &server, "key.hex", &["hello", &long], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Forged: a client with another key.
    let forged = send(&ws, &server, "other-key.hex", &["forged"], "");
    assert!(!forged.status.success());
    server.wait_stderr("handshake failed");

    let body = scrape_until(
        &metrics,
        &[
            ("secure_link_connections_accepted_total", 3.0),
            (
                "secure_link_connections_closed_total{reason=\"clean\"}",
                1.0,
            ),
            (
                "secure_link_connections_closed_total{reason=\"invalid_hmac\"}",
                1.0,
            ),
            (
                "secure_link_connections_closed_total{reason=\"handshake\"}",
                1.0,
            ),
            ("secure_link_connections_open", 0.0),
        ],
    );
    let expect = |series: &str, value: f64| {
        assert_eq!(sample(&body, series), Some(value), "{series} in\n{body}");
    };
    expect("secure_link_connections_accepted_total", 3.0);
    expect("secure_link_connections_open", 0.0);
    expect(
        "secure_link_connections_closed_total{reason=\"clean\"}",
        1.0,
    );
    expect(
        "secure_link_connections_closed_total{reason=\"invalid_hmac\"}",
        1.0,
    );
    expect(
        "secure_link_connections_closed_total{reason=\"handshake\"}",
        1.0,
    );
    expect(
        "secure_link_connections_closed_total{reason=\"idle_timeout\"}",
        0.0,
    );
    expect(
        "secure_link_handshakes_failed_total{reason=\"timeout\"}",
        1.0,
    );
    expect("secure_link_handshakes_failed_total{reason=\"tls\"}", 0.0);
    // The forged message is not counted: it never verified.
    expect("secure_link_messages_received_total", 2.0);
    expect("secure_link_received_bytes_total", 1005.0);
    expect("secure_link_messages_sent_total", 2.0);
    expect("secure_link_sent_bytes_total", 1005.0);
    // A true histogram: 5 B in the 64 B bucket, 1,000 B from 1,024 up.
    expect("secure_link_message_size_bytes_bucket{le=\"64\"}", 1.0);
    expect("secure_link_message_size_bytes_bucket{le=\"256\"}", 1.0);
    expect("secure_link_message_size_bytes_bucket{le=\"1024\"}", 2.0);
    expect("secure_link_message_size_bytes_bucket{le=\"+Inf\"}", 2.0);
    expect("secure_link_message_size_bytes_count", 2.0);
    expect("secure_link_message_size_bytes_sum", 1005.0);
    assert!(
        body.contains("# TYPE secure_link_connections_closed_total counter"),
        "{body}"
    );
    drop(silent);
}
