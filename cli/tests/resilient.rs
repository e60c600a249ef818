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
