//! `serve --resilient` and `send --resilient`, run as a user runs them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_support;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cli_support::{PATIENCE, Server, Workspace, exit_within, run, secure_link, text};

fn resilient_send_args(ws: &Workspace, addr: &str) -> Vec<String> {
    let mut args = ws.send_args(addr, "key.hex", "pki/ca.pem");
    args.push("--resilient".into());
    args
}

#[test]
fn every_line_is_printed_once_and_plain_clients_are_still_served() {
    let ws = Workspace::new("resilient-lines");
    let server = Server::start(&ws, &["--resilient"]);
    let lines: Vec<String> = (0..300).map(|i| format!("line {i}")).collect();
    let stdin = lines.join("\n") + "\n";
    let args = resilient_send_args(&ws, &server.addr);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args, &stdin);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("sent 300 message(s); the server acknowledged every one"),
        "{}",
        text(&out.stderr)
    );
    for line in &lines {
        assert_eq!(&server.next_line(), line);
    }
    server.wait_stderr("session_opened");
    server.wait_stderr("closed by the client after 300 messages");

    // The lab's client, no ALPN: the plain mode, as before.
    let out = cli_support::send(&ws, &server, "key.hex", &["plain"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(server.next_line(), "plain");
    assert!(server.stdout.try_recv().is_err(), "nothing printed twice");
}

#[test]
fn a_resilient_send_to_a_plain_server_fails_at_once_naming_the_mode() {
    let ws = Workspace::new("resilient-mismatch");
    let server = Server::start(&ws, &[]);
    let mut args = resilient_send_args(&ws, &server.addr);
    args.push("one".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let out = run(&args, "");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("this end speaks the resilient mode, the peer the plain mode"),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 line(s) read, not all acknowledged"),
        "{stderr}"
    );
    // Not retried: far below the 15 s dead time or any backoff schedule.
    assert!(started.elapsed() < PATIENCE);
    server.wait_stderr("connection failed after 0 messages");
    assert_eq!(
        server.count_stderr("connected"),
        1,
        "one connection, never retried"
    );
}

#[test]
fn give_up_after_says_how_many_lines_were_not_acknowledged() {
    let ws = Workspace::new("resilient-give-up");
    // A port nobody listens on: every connection is refused.
    let port = cli_support::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut args = resilient_send_args(&ws, &addr);
    args.extend(["--give-up-after", "1", "a", "b", "c"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args, "");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "gave up after 1 s without a connection: 3 of 3 line(s) were not acknowledged"
        ),
        "{stderr}"
    );
}

#[test]
fn idle_timeout_never_ends_a_quiet_resilient_link_whose_heartbeats_arrive() {
    let ws = Workspace::new("resilient-quiet");
    let server = Server::start(
        &ws,
        &[
            "--resilient",
            "--idle-timeout",
            "2",
            "--heartbeat-interval",
            "1",
            "--dead-time",
            "3",
        ],
    );
    let mut args = resilient_send_args(&ws, &server.addr);
    args.extend(["--heartbeat-interval", "1", "--dead-time", "3"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut send = secure_link(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = send.stdin.take().unwrap();
    writeln!(stdin, "before the quiet").unwrap();
    assert_eq!(server.next_line(), "before the quiet");
    // The quiet spell under test: 2.5 idle timeouts, 5 heartbeats.
    std::thread::sleep(Duration::from_secs(5));
    writeln!(stdin, "after the quiet").unwrap();
    assert_eq!(server.next_line(), "after the quiet");
    drop(stdin);
    let status = exit_within(&mut send, PATIENCE).expect("send exits");
    assert!(status.success());
    assert_eq!(server.count_stderr("session_disconnected"), 0);
    assert_eq!(server.count_stderr("idle"), 0);
    assert_eq!(server.count_stderr("session_opened"), 1);
}

/// `send --resilient` to `server` with `key` and `extra` arguments, its
/// stdin piped (for the lines to send), what it says kept.
fn spawn_resilient_send(
    ws: &Workspace,
    server: &Server,
    key: &str,
    extra: &[String],
) -> cli_support::Reaped {
    let mut args = ws.send_args(&server.addr, key, "pki/ca.pem");
    args.push("--resilient".into());
    args.extend_from_slice(extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cli_support::Reaped(
        secure_link(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// Waits for `send` to stop with exit code 1, and returns what it said.
fn stopped_with_error(send: &mut cli_support::Reaped) -> String {
    let status = exit_within(send, PATIENCE).expect("send --resilient stops");
    assert_eq!(status.code(), Some(1));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut send.stderr.take().unwrap(), &mut stderr).unwrap();
    stderr
}

/// After a revocation: serve counted one connection closed for `reason`
/// and printed nothing more.
fn revoked_once(server: &Server, metrics: &str, reason: &str) {
    let series = format!("secure_link_connections_closed_total{{reason=\"{reason}\"}}");
    let body = cli_support::scrape_until(metrics, &[(series.as_str(), 1.0)]);
    assert_eq!(cli_support::sample(&body, &series), Some(1.0), "{body}");
    assert!(server.stdout.try_recv().is_err(), "nothing printed twice");
}

/// `serve --resilient --hmac-key A --hmac-key B`: a SIGHUP after B's file
/// holds another key ends the sessions bound to B at once (as it closes
/// plain links pinned to it), logged and counted `key_revoked`; the
/// client's reconnect is refused (its key verifies nothing), so `send
/// --resilient` stops with an error instead of retrying. A session on A
/// carries on.
#[test]
fn a_reload_that_removes_a_key_ends_the_resilient_sessions_bound_to_it() {
    let ws = Workspace::new("resilient-revoke");
    std::fs::copy(ws.path("other-key.hex"), ws.path("second.hex")).unwrap();
    let metrics = format!("127.0.0.1:{}", cli_support::free_port());
    let server = Server::start(
        &ws,
        &[
            "--resilient",
            "--hmac-key",
            &ws.arg("second.hex"),
            "--metrics",
            &metrics,
        ],
    );
    let mut kept = spawn_resilient_send(&ws, &server, "key.hex", &[]);
    let mut kept_in = kept.stdin.take().unwrap();
    writeln!(kept_in, "kept").unwrap();
    assert_eq!(server.next_line(), "kept");
    let mut bound = spawn_resilient_send(&ws, &server, "other-key.hex", &[]);
    let mut bound_in = bound.stdin.take().unwrap();
    writeln!(bound_in, "bound").unwrap();
    assert_eq!(server.next_line(), "bound");

    // A reload that changes nothing ends nothing.
    server.signal("-HUP");
    server.wait_stderr("SIGHUP: reloaded");
    writeln!(bound_in, "after a reload of the same keys").unwrap();
    assert_eq!(server.next_line(), "after a reload of the same keys");

    let out = run(&["gen-key", "--out", &ws.arg("third.hex")], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::copy(ws.path("third.hex"), ws.path("second.hex")).unwrap();
    server.signal("-HUP");
    let revoked = server.wait_stderr("session_revoked");
    assert!(revoked.contains("key_revoked"), "{revoked}");
    assert!(revoked.contains("after 2 messages"), "{revoked}");

    // The client learns it: its reconnect is refused, it stops.
    let stderr = stopped_with_error(&mut bound);
    assert!(stderr.contains("HMAC"), "{stderr}");
    drop(bound_in);

    // The session on the key that stays carries on; nothing else printed.
    writeln!(kept_in, "still open").unwrap();
    assert_eq!(server.next_line(), "still open");
    drop(kept_in);
    let status = exit_within(&mut kept, PATIENCE).expect("send exits");
    assert!(status.success());
    revoked_once(&server, &metrics, "key_revoked");
}

/// `serve --resilient --client-ca FILE`: a SIGHUP after FILE names another
/// CA ends the sessions whose client certificate it no longer verifies
/// (`session_revoked`, counted as `client_ca_revoked`); the client's
/// reconnect is refused in the handshake, and `send --resilient` stops
/// saying so, without retrying. A reload of the same CA ends nothing.
#[test]
fn a_reload_that_replaces_the_client_ca_ends_the_resilient_sessions_it_no_longer_verifies() {
    let ws = Workspace::new("resilient-revoke-ca");
    std::fs::copy(ws.path("pki/ca.pem"), ws.path("client-ca.pem")).unwrap();
    let metrics = format!("127.0.0.1:{}", cli_support::free_port());
    let server = Server::start(
        &ws,
        &[
            "--resilient",
            "--client-ca",
            &ws.arg("client-ca.pem"),
            "--metrics",
            &metrics,
        ],
    );
    let certificate = [
        "--cert-chain".into(),
        ws.arg("pki/client-client-chain.pem"),
        "--private-key".into(),
        ws.arg("pki/client-client-key.pem"),
    ];
    let mut send = spawn_resilient_send(&ws, &server, "key.hex", &certificate);
    let mut send_in = send.stdin.take().unwrap();
    writeln!(send_in, "certified").unwrap();
    assert_eq!(server.next_line(), "certified");

    server.signal("-HUP");
    server.wait_stderr("SIGHUP: reloaded");
    writeln!(send_in, "after a reload of the same CA").unwrap();
    assert_eq!(server.next_line(), "after a reload of the same CA");

    let out = run(&["gen-certs", "--out", &ws.arg("pki2")], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::copy(ws.path("pki2/ca.pem"), ws.path("client-ca.pem")).unwrap();
    server.signal("-HUP");
    let revoked = server.wait_stderr("session_revoked");
    assert!(revoked.contains("client_ca_revoked"), "{revoked}");
    assert!(revoked.contains("after 2 messages"), "{revoked}");

    // The reconnect fails in the handshake; send stops, not retrying.
    let stderr = stopped_with_error(&mut send);
    assert!(
        stderr.contains("the server refused this client's certificate"),
        "{stderr}"
    );
    drop(send_in);
    revoked_once(&server, &metrics, "client_ca_revoked");
}
