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

/// Connections to the metrics port take neither serve's CPU, nor its log,
/// nor the descriptors its clients need: the endpoint serves 8 scrapers at
/// once and leaves the rest in the listen backlog. (The exporter's own
/// listener accepted them all until EMFILE, then retried at once, logging
/// each failure, while serve's client listener had no descriptor left.)
#[test]
fn a_flood_of_the_metrics_port_leaves_serve_quiet_and_its_clients_served() {
    let ws = Workspace::new("scrapeflood");
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut server = Server::launch(
        &ws,
        &["--metrics", &metrics, "--handshake-timeout", "60"],
        &["prlimit", "--nofile=100:100", "--"],
        true,
        "info",
    );
    server.wait_stderr("Prometheus metrics on");
    let idle = server.open_descriptors();
    // More than 100 descriptors allow, and what the endpoint's 8 slots and
    // its listen backlog (128, tokio's) take without a wait.
    let flood: Vec<TcpStream> = (0..120)
        .map(|_| TcpStream::connect(&metrics).unwrap())
        .collect();
    // The endpoint's cap fills up (or, without one, far more).
    server.wait_until(|server| server.open_descriptors() >= idle + 8);
    let before = server.cpu_ticks();
    std::thread::sleep(std::time::Duration::from_secs(2)); // a measurement window
    let used = server.cpu_ticks() - before;
    let held = server.open_descriptors() - idle;
    // Spinning would be about 200 ticks (2 s at 100 Hz).
    assert!(used <= 20, "{used} ticks of CPU in 2 s");
    assert_eq!(held, 8, "descriptors held by the flood");

    // A client is served during the flood.
    let out = send(
        &ws,
        &server,
        "key.hex",
        &["--handshake-timeout", "60", "served during the flood"],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(server.next_line(), "served during the flood");

    // Once the flood goes, a scrape is answered.
    drop(flood);
    let body = scrape_until(
        &metrics,
        &[(
            "secure_link_connections_closed_total{reason=\"clean\"}",
            1.0,
        )],
    );
    assert_eq!(
        sample(
            &body,
            "secure_link_connections_closed_total{reason=\"clean\"}"
        ),
        Some(1.0),
        "{body}"
    );
    server.signal("-TERM");
    server.wait_exit();
    let logged = server.count_stderr("accept");
    let keys_line = server.count_stderr("accepting HMAC keys");
    println!(
        "120 connections to the metrics port: {used} clock ticks of CPU in 2 s, {held} descriptors held, {} accept log lines",
        logged - keys_line
    );
    assert_eq!(logged - keys_line, 0, "{:#?}", server.stderr_text());
}

/// A scraper that sends no request, or only part of its head, is
/// answered 408 and closed once the endpoint's read timeout (5 s) passes:
/// it cannot hold one of the endpoint's few slots.
#[test]
fn a_silent_or_partial_scrape_is_answered_408_and_closed() {
    use std::io::{Read, Write};
    let ws = Workspace::new("scrapeslow");
    let metrics = format!("127.0.0.1:{}", free_port());
    let server = Server::start(&ws, &["--metrics", &metrics]);
    server.wait_stderr("Prometheus metrics on");
    let silent = TcpStream::connect(&metrics).unwrap();
    let mut partial = TcpStream::connect(&metrics).unwrap();
    partial
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = std::time::Instant::now();
    for mut stream in [silent, partial] {
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(
            response.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{response}"
        );
    }
    println!(
        "silent and partial scrapes closed after {:?}",
        started.elapsed()
    );
    // The endpoint still answers a whole request.
    let body = scrape(&metrics);
    assert!(
        sample(&body, "secure_link_connections_open").is_some(),
        "{body}"
    );
}
