//! The `secure-link` binary: demo, gen-certs, gen-key, serve and send, as a
//! user runs them (real processes, 127.0.0.1 only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_support;

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;

use cli_support::*;

#[test]
fn demo_exits_0_reports_tls13_and_no_plaintext_on_the_wire() {
    let out = run(&["demo", "--messages", "500", "--size", "200"], "");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("TLSv1_3"), "{stdout}");
    assert!(stdout.contains("plaintext on the wire   none"), "{stdout}");
    assert!(stdout.contains("504 of 504 messages"), "{stdout}");
    assert!(
        stdout.contains("rejected with an invalid-HMAC error"),
        "{stdout}"
    );
    assert!(
        stdout.contains("lab mode (default)      relayed frame ACCEPTED"),
        "{stdout}"
    );
    assert!(
        stdout.contains("session-bound mode      relayed frame refused: invalid HMAC"),
        "{stdout}"
    );
    assert!(stdout.contains("All checks passed."), "{stdout}");
}

#[test]
fn gen_certs_and_gen_key_write_private_files_and_refuse_to_overwrite() {
    let ws = Workspace::new("gen");
    for name in ["pki/ca.pem", "pki/server-chain.pem", "pki/server-key.pem"] {
        assert!(ws.path(name).is_file(), "{name}");
    }
    let chain = std::fs::read_to_string(ws.path("pki/server-chain.pem")).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    let key = std::fs::read_to_string(ws.path("key.hex")).unwrap();
    assert_eq!(key.len(), 65);
    assert!(key.ends_with('\n'));
    assert!(key[..64].bytes().all(|b| b.is_ascii_hexdigit()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for name in ["pki/server-key.pem", "key.hex"] {
            let mode = std::fs::metadata(ws.path(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }

    let out = run(&["gen-certs", "--out", &ws.arg("pki")], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--force"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["gen-key", "--out", &ws.arg("key.hex")], "");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(ws.path("key.hex")).unwrap(), key);
    let out = run(
        &[
            "gen-certs",
            "--out",
            &ws.arg("pki"),
            "--force",
            "--name",
            "node-1.internal",
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = run(&["gen-key"], "");
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).trim().len(), 64);
}

#[test]
fn serve_and_send_deliver_stdin_lines_exactly_and_in_order() {
    let ws = Workspace::new("lines");
    let server = Server::start(&ws, &[]);
    let out = send(
        &ws,
        &server,
        "key.hex",
        &[],
        "alpha\n\n  with spaces  \nlast, without newline",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    for expected in ["alpha", "", "  with spaces  ", "last, without newline"] {
        assert_eq!(server.next_line(), expected);
    }
    server.wait_stderr("closed cleanly after 4 messages");

    let out = send(&ws, &server, "key.hex", &["first arg", "second arg"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(server.next_line(), "first arg");
    assert_eq!(server.next_line(), "second arg");
}

#[test]
fn many_stdin_lines_arrive_in_order() {
    let ws = Workspace::new("bulk");
    let server = Server::start(&ws, &[]);
    let input: String = (0..5000).map(|i| format!("line {i}\n")).collect();
    let out = send(&ws, &server, "key.hex", &[], &input);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for i in 0..5000 {
        assert_eq!(server.next_line(), format!("line {i}"));
    }
}

#[test]
fn wrong_key_is_logged_as_invalid_hmac_and_nothing_is_printed() {
    let ws = Workspace::new("wrongkey");
    let server = Server::start(&ws, &[]);
    let out = send(&ws, &server, "other-key.hex", &["forged"], "");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    // Depending on timing the server's hang-up arrives as a missing
    // close_notify or as a reset; either way the sender says so.
    assert!(
        text(&out.stderr).contains("the server did not confirm the end of the link"),
        "{}",
        text(&out.stderr)
    );
    server.wait_stderr("invalid HMAC");

    let out = send(&ws, &server, "key.hex", &["genuine"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The forged message was never printed: the next line is the genuine one.
    assert_eq!(server.next_line(), "genuine");
}

#[test]
fn untrusted_ca_makes_send_fail_naming_the_cause() {
    let ws = Workspace::new("untrusted");
    let out = run(&["gen-certs", "--out", &ws.arg("other-pki")], "");
    assert!(out.status.success());
    let server = Server::start(&ws, &[]);
    let args = ws.send_args(&server.addr, "key.hex", "other-pki/ca.pem");
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.push("secret");
    let out = run(&args, "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("unknown issuer"),
        "{}",
        text(&out.stderr)
    );
    server.wait_stderr("handshake failed");
}

/// A connection that never starts its handshake holds no one up: `send` is
/// served while it is still open (a one-at-a-time accept loop would serve
/// `send` only after dropping it), and it is dropped at the handshake
/// timeout, far above what `send` needs.
#[test]
fn an_idle_connection_does_not_stop_another_client_and_is_dropped_at_the_timeout() {
    const HANDSHAKE_TIMEOUT: u64 = 15;
    let ws = Workspace::new("idle");
    let server = Server::start(
        &ws,
        &["--handshake-timeout", &HANDSHAKE_TIMEOUT.to_string()],
    );
    let opened = std::time::Instant::now();
    let mut idle = TcpStream::connect(&server.addr).unwrap();

    let out = send(&ws, &server, "key.hex", &["served while another waits"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(server.next_line(), "served while another waits");
    let served_after = opened.elapsed();

    // Still open: nothing to read, no end.
    idle.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1];
    let still_open = idle.read(&mut buf);
    assert!(
        matches!(&still_open, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the idle connection was not open when send returned after {served_after:?}: {still_open:?}"
    );
    assert_eq!(server.count_stderr("TLS handshake timed out"), 0);

    // The idle connection is closed by the server at its handshake timeout.
    idle.set_nonblocking(false).unwrap();
    idle.set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(idle.read(&mut buf).unwrap(), 0);
    assert!(opened.elapsed() >= std::time::Duration::from_secs(HANDSHAKE_TIMEOUT));
    server.wait_stderr("TLS handshake timed out");
}

#[test]
fn echo_sends_each_message_back_to_its_sender() {
    let ws = Workspace::new("echo");
    let server = Server::start(&ws, &["--echo"]);
    let out = send(&ws, &server, "key.hex", &[], "ping\npong\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ping\npong\n");
}

#[test]
fn short_keys_and_usage_errors_are_refused() {
    let ws = Workspace::new("refuse");
    std::fs::write(ws.path("short.hex"), "00112233\n").unwrap();
    let server = Server::start(&ws, &[]);
    let out = send(&ws, &server, "short.hex", &["x"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("at least 16"),
        "{}",
        text(&out.stderr)
    );

    let out = run(&["send", "--no-such-flag"], "");
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["serve"], "");
    assert_eq!(out.status.code(), Some(2));
}

#[cfg(unix)]
#[test]
fn serve_stops_cleanly_on_sigterm() {
    let ws = Workspace::new("sigterm");
    let mut server = Server::start(&ws, &[]);
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    server.wait_stderr("terminated: shutting down");
    assert!(server.child.wait().unwrap().success());
}

#[test]
fn a_client_that_handshakes_but_never_sends_is_dropped_at_the_first_message_deadline() {
    let ws = Workspace::new("firstmsg");
    let server = Server::start(&ws, &["--first-message-timeout", "1"]);
    let ca = std::fs::read_to_string(ws.path("pki/ca.pem")).unwrap();
    let key_hex = std::fs::read_to_string(ws.path("key.hex")).unwrap();
    let connector =
        secure_link::SecureConnector::new(&ca, secure_link::HmacKey::from_hex(&key_hex).unwrap())
            .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let end = runtime.block_on(async {
        use futures::StreamExt;
        let tcp = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
        let mut client = connector.connect("localhost", tcp).await.unwrap();
        tokio::time::timeout(PATIENCE, client.next()).await
    });
    // The server hangs up (without close_notify: this is not a clean end).
    let end = end.expect("the silent client was never dropped");
    assert!(
        matches!(end, Some(Err(secure_link::LinkError::Truncated))),
        "{end:?}"
    );
    server.wait_stderr("no message within 1s");
}

#[test]
fn session_bound_serve_and_send_interoperate_and_refuse_lab_clients() {
    let ws = Workspace::new("sessionbound");
    let server = Server::start(&ws, &["--session-bound"]);
    let mut args = ws.send_args(&server.addr, "key.hex", "pki/ca.pem");
    args.push("--session-bound".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args, "bound one\nbound two\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(server.next_line(), "bound one");
    assert_eq!(server.next_line(), "bound two");

    // A client in the lab format is refused on its first message.
    let out = send(&ws, &server, "key.hex", &["lab format"], "");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    server.wait_stderr("invalid HMAC");
}

/// `secure-link bench` with `args`, on a short in-memory batched run: its
/// table.
fn quick_bench(args: &[&str]) -> String {
    let mut all = vec![
        "--scenario",
        "throughput",
        "--count",
        "100",
        "--rounds",
        "1",
    ];
    all.extend_from_slice(&["--transport", "duplex", "--mode", "batched"]);
    all.extend_from_slice(args);
    bench_table(&all)
}

#[test]
fn bench_prints_the_comparison_table() {
    let stdout = quick_bench(&["--size", "64", "--size", "4096"]);
    for column in [
        "ours MB/s",
        "P1 MB/s",
        "P2 MB/s",
        "P2b MB/s",
        "P3 MB/s",
        "ours/P1",
        "ours/P2",
        "ours/P2b",
        "ours/P3",
    ] {
        assert!(stdout.contains(column), "{column} missing:\n{stdout}");
    }
    assert!(
        stdout.contains("64 B") && stdout.contains("4 KiB"),
        "{stdout}"
    );
}

#[test]
fn bench_runs_only_the_peers_asked_for() {
    let stdout = quick_bench(&[
        "--peer", "p2", "--peer", "ours", "--peer", "p2", "--size", "1024",
    ]);
    let rates = row(&stdout, "1 KiB");
    // size (2 words), ours MB/s, ours msg/s, P1, P2, P2b, P3, ours/P1,
    // ours/P2, ours/P2b, ours/P3
    let cells: Vec<&str> = rates.split_whitespace().skip(2).collect();
    assert_eq!(cells.len(), 10, "{rates}");
    let ran = |cell: &str| cell.parse::<f64>().is_ok_and(|v| v > 0.0);
    assert!(ran(cells[0]) && ran(cells[1]), "ours did not run: {rates}");
    assert_eq!(
        (cells[2], cells[4], cells[5]),
        ("-", "-", "-"),
        "P1, P2b or P3 ran: {rates}"
    );
    assert!(ran(cells[3]), "P2 did not run: {rates}");
    assert_eq!((cells[6], cells[8], cells[9]), ("-", "-", "-"), "{rates}");
    assert!(ran(cells[7]), "no ours/P2 ratio: {rates}");

    // The CPU table below it: "ns/B x cores" for ours and P2 only.
    let cpu = stdout
        .find("CPU per payload byte")
        .map(|at| &stdout[at..])
        .unwrap_or_else(|| panic!("no CPU table:\n{stdout}"));
    let cpu_row = row(cpu, "1 KiB");
    let cells: Vec<&str> = cpu_row.split_whitespace().skip(2).collect();
    let shape: Vec<&str> = cells
        .iter()
        .map(|&cell| match cell {
            "-" | "x" => cell,
            _ if ran(cell) => "n",
            _ => "?",
        })
        .collect();
    assert_eq!(
        shape,
        ["n", "x", "n", "-", "n", "x", "n", "-", "-"],
        "{cpu_row}"
    );
}

/// `bench --scenario throughput --ends together`: both ends on one
/// current-thread runtime (what an instruction count under callgrind
/// needs to repeat), said in the heading; every peer asked for ran.
#[test]
fn bench_runs_throughput_with_both_ends_on_one_thread() {
    let stdout = quick_bench(&[
        "--ends", "together", "--peer", "ours", "--peer", "p2b", "--size", "64",
    ]);
    assert!(
        stdout.contains("both ends on one current-thread runtime"),
        "{stdout}"
    );
    let cells: Vec<&str> = row(&stdout, "64 B").split_whitespace().collect();
    let ran = |cell: &str| cell.parse::<f64>().is_ok_and(|v| v > 0.0);
    // size (2 words), ours MB/s, ours msg/s, P1, P2, P2b, ...
    assert!(ran(cells[2]) && ran(cells[6]), "{stdout}");
    assert!(quick_bench(&["--size", "64"]).contains("the ends on the multi-threaded runtime"));
}

/// `send --handshake-timeout` against a listener that accepts TCP and then
/// says nothing: exit 1 naming the timeout, instead of hanging.
#[test]
fn send_gives_up_on_a_silent_server_at_its_handshake_timeout() {
    let ws = Workspace::new("silent");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let holder = std::thread::spawn(move || listener.accept().map(|(tcp, _)| tcp));
    let mut args = ws.send_args(&addr, "key.hex", "pki/ca.pem");
    args.extend(["--handshake-timeout".into(), "0.5".into(), "hello".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args, "");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("did not finish within 500ms"),
        "{}",
        text(&out.stderr)
    );
    drop(holder.join().unwrap());
}

/// A key rotation with the CLI: `serve` takes a file of two keys (the
/// first is the primary), clients holding either are served, and each
/// connection's log names the fingerprint of the key it used, as `gen-key`
/// printed it.
#[test]
fn serve_accepts_every_key_of_a_rotation_and_logs_which_one_each_client_used() {
    let ws = Workspace::new("rotate");
    let fingerprint = |name: &str| {
        let out = run(&["gen-key", "--out", ws.path(name).to_str().unwrap()], "");
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stderr = text(&out.stderr);
        stderr
            .lines()
            .find_map(|l| l.strip_prefix("key fingerprint: "))
            .unwrap_or_else(|| panic!("gen-key printed no fingerprint: {stderr}"))
            .to_owned()
    };
    let old = fingerprint("old.hex");
    let new = fingerprint("new.hex");
    assert_eq!(old.len(), 16);
    assert_ne!(old, new);
    let both = format!(
        "# new key first: it is the primary one\n{}\n{}\n",
        std::fs::read_to_string(ws.path("new.hex")).unwrap().trim(),
        std::fs::read_to_string(ws.path("old.hex")).unwrap().trim()
    );
    std::fs::write(ws.path("rotation.hex"), both).unwrap();
    // `--hmac-key` repeated: key.hex (the helper's, primary), then the two.
    let server = Server::launch(
        &ws,
        &["--hmac-key", ws.path("rotation.hex").to_str().unwrap()],
        &[],
        true,
        "info",
    );
    server.wait_stderr(&format!(", {new}, {old}"));
    for (key, fp) in [("old.hex", &old), ("new.hex", &new)] {
        let out = send(&ws, &server, key, &[key], "");
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(server.next_line(), key);
        server.wait_stderr(&format!("authenticated with key {fp}"));
    }
    let out = send(&ws, &server, "other-key.hex", &["forged"], "");
    assert!(!out.status.success());
    server.wait_stderr("invalid HMAC");
    // send itself takes exactly one key.
    let out = send(&ws, &server, "rotation.hex", &["x"], "");
    assert!(
        text(&out.stderr).contains("holds 2 keys; one is expected"),
        "{}",
        text(&out.stderr)
    );
}

/// Mutual TLS with the CLI: `gen-certs` writes a client certificate (one
/// named `client` by default, more with `--client`), `serve --client-ca`
/// requires one and logs who connected, `send --cert-chain --private-key`
/// presents one.
#[test]
fn serve_with_a_client_ca_requires_and_names_client_certificates() {
    let ws = Workspace::new("mtls");
    for name in ["client-client-chain.pem", "client-client-key.pem"] {
        assert!(ws.path("pki").join(name).exists(), "{name} missing");
    }
    let out = run(
        &[
            "gen-certs",
            "--out",
            ws.path("nodes").to_str().unwrap(),
            "--client",
            "node-1",
            "--client",
            "node-2",
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(ws.path("nodes/client-node-2-key.pem").exists());
    let out = run(
        &[
            "gen-certs",
            "--out",
            ws.path("bad").to_str().unwrap(),
            "--client",
            "../x",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1));

    let server = Server::start(
        &ws,
        &["--client-ca", ws.path("pki/ca.pem").to_str().unwrap()],
    );
    let out = send(&ws, &server, "key.hex", &["no certificate"], "");
    assert!(!out.status.success());
    server.wait_stderr("handshake failed");

    let mut args = ws.send_args(&server.addr, "key.hex", "pki/ca.pem");
    args.extend([
        "--cert-chain".into(),
        ws.arg("pki/client-client-chain.pem"),
        "--private-key".into(),
        ws.arg("pki/client-client-key.pem"),
        "with a certificate".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args, "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(server.next_line(), "with a certificate");
    server.wait_stderr("connected: client certificate of client");
}

/// `secure-link bench ARGS`: its stdout, once it exited 0.
fn bench_table(args: &[&str]) -> String {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    let out = run(&all, "");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    stdout
}

/// The row of `table` whose first words are `first`.
fn row<'a>(table: &'a str, first: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.trim_start().starts_with(first))
        .unwrap_or_else(|| panic!("no {first:?} row:\n{table}"))
}

/// Asserts that `row`, after its first `skip` words, holds `count` cells,
/// each a positive number (every implementation ran, every ratio exists).
fn assert_positive_cells(row: &str, skip: usize, count: usize) {
    let cells: Vec<&str> = row.split_whitespace().skip(skip).collect();
    assert_eq!(cells.len(), count, "{row}");
    assert!(
        cells
            .iter()
            .all(|c| c.parse::<f64>().is_ok_and(|v| v > 0.0)),
        "{row}"
    );
}

/// `bench --scenario latency`: p50/p99/max per peer and ours against P1
/// and P2b, for each size; by default the server end on a thread of its
/// own.
#[test]
fn bench_measures_request_response_latency() {
    let table = bench_table(&[
        "--scenario",
        "latency",
        "--count",
        "50",
        "--rounds",
        "1",
        "--size",
        "64",
        "--size",
        "1024",
    ]);
    assert!(
        table.contains("the server on a thread of its own"),
        "{table}"
    );
    for size in ["64 B", "1 KiB"] {
        assert_positive_cells(row(&table, size), 2, 13);
    }
}

/// `bench --scenario handshakes`: handshakes per second, ours and
/// tokio-rustls alone, for each server key and key exchange of this build.
#[test]
fn bench_counts_handshakes_per_second() {
    let table = bench_table(&["--scenario", "handshakes", "--count", "5", "--rounds", "1"]);
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| {
            l.trim_start().starts_with("EcdsaP256") || l.trim_start().starts_with("Rsa2048")
        })
        .collect();
    assert_eq!(rows.len(), 4, "{table}");
    for row in rows {
        assert_positive_cells(row, 2, 3);
    }
}

/// `bench --scenario resilient`: plain and resilient in the same run, the
/// overhead and standalone acknowledgements per 16 messages, then a cut
/// and a black hole (heartbeat 1 s, dead time 3 s) on a live session.
#[test]
fn bench_measures_the_resilient_mode_against_the_plain_link() {
    let table = bench_table(&[
        "--scenario",
        "resilient",
        "--count",
        "200",
        "--rounds",
        "1",
        "--size",
        "1024",
    ]);
    let cells: Vec<&str> = row(&table, "1 KiB").split_whitespace().skip(2).collect();
    assert_eq!(cells.len(), 6, "{table}");
    assert_positive_cells(&cells[..3].join(" "), 0, 3);
    assert!(cells[3].ends_with('%'), "{table}");
    assert_positive_cells(cells[4], 0, 1);
    assert!(cells[5].parse::<f64>().is_ok_and(|v| v >= 0.0), "{table}");
    let resumed = row(&table, "after a cut: first resumed delivery");
    assert!(resumed.contains(" ms "), "{table}");
    // Neither end can find the peer dead before the dead time passed.
    let dead = row(&table, "a black hole");
    let seconds: Vec<f64> = dead
        .split_whitespace()
        .filter_map(|w| w.parse::<f64>().ok())
        .collect();
    assert_eq!(seconds.len(), 4, "{dead}");
    assert!(seconds[2] >= 2.9 && seconds[3] >= 2.9, "{dead}");
}

/// `bench --scenario connections`: aggregate rates for N clients at once,
/// and each implementation's scaling against its own 10-client figure.
#[test]
fn bench_measures_many_connections_at_once() {
    let table = bench_table(&[
        "--scenario",
        "connections",
        "--count",
        "200",
        "--rounds",
        "1",
        "--size",
        "64",
    ]);
    for clients in ["1 ", "10 ", "100 "] {
        assert_positive_cells(row(&table, clients), 0, 12);
    }
}

/// `bench --scenario memory`: per-connection memory of idle connections,
/// each case in a child process; heap columns only in a counting build.
#[test]
fn bench_measures_memory_per_idle_connection() {
    let stdout = bench_table(&["--scenario", "memory", "--count", "10", "--size", "1024"]);
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cells| cells.first() == Some(&"1") && cells.get(1) == Some(&"KiB"))
        .collect();
    let peers: Vec<&str> = rows.iter().map(|cells| cells[3]).collect();
    assert_eq!(peers, ["ours", "P1", "P2b"], "{stdout}");
    for cells in &rows {
        assert_eq!(cells.len(), 7, "{cells:?}");
        assert_eq!(cells[2], "10", "{cells:?}");
        // RSS grows by at least one page over ten connections.
        assert!(cells[6].parse::<f64>().is_ok_and(|v| v > 0.0), "{cells:?}");
        if !cfg!(feature = "count-allocations") {
            assert_eq!(&cells[4..6], ["-", "-"], "{cells:?}");
        }
    }
}

/// `bench --plot DIR`: an SVG chart per result, every implementation its
/// own series, written next to the table.
#[test]
fn bench_plots_svg_charts() {
    let ws = Workspace::new("plot");
    let dir = ws.arg("charts");
    let stdout = bench_table(&[
        "--scenario",
        "latency",
        "--count",
        "20",
        "--rounds",
        "1",
        "--size",
        "64",
        "--size",
        "1024",
        "--ends",
        "together",
        "--plot",
        &dir,
    ]);
    assert!(
        stdout.contains("both ends on one current-thread runtime"),
        "{stdout}"
    );
    for size in ["64 B", "1 KiB"] {
        assert_positive_cells(row(&stdout, size), 2, 13);
    }
    let chart = ws.path("charts").join("latency.svg");
    assert!(
        stdout.contains(&format!("chart: {}", chart.display())),
        "{stdout}"
    );
    let svg = std::fs::read_to_string(&chart).expect("latency.svg");
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    for series in [
        "ours p50", "ours p99", "P1 p50", "P1 p99", "P2b p50", "P2b p99",
    ] {
        assert!(svg.contains(series), "no series {series:?} in the chart");
    }
    // A point per series and size.
    assert_eq!(svg.matches("<circle").count(), 6 * 2, "points");
}

/// `completions SHELL` prints a script each shell recognises as its own,
/// naming the subcommands.
#[test]
fn completions_for_every_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _secure__link"),
        ("zsh", "#compdef secure-link"),
        ("fish", "complete -c secure-link"),
        ("elvish", "edit:completion:arg-completer[secure-link]"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = run(&["completions", shell], "");
        let script = text(&out.stdout);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        for sub in ["serve", "send", "gen-certs", "bench", "completions", "man"] {
            assert!(script.contains(sub), "{shell}: no {sub}");
        }
    }
    let out = run(&["completions", "tcsh"], "");
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

/// `man` prints a roff man page of the whole tool.
#[test]
fn man_page_is_roff_naming_every_subcommand() {
    let out = run(&["man"], "");
    let page = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        page.contains(".TH secure-link 1"),
        "{}",
        &page[..page.len().min(300)]
    );
    for section in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH DESCRIPTION",
        ".SH OPTIONS",
        ".SH SUBCOMMANDS",
    ] {
        assert!(page.contains(section), "no {section}");
    }
    for sub in [
        "secure\\-link\\-serve",
        "secure\\-link\\-send",
        "secure\\-link\\-gen\\-certs",
    ] {
        assert!(page.contains(sub), "no {sub}");
    }
    assert!(page.contains("\\-\\-verbose"), "global options are listed");
}

/// `-q` silences info lines, `-v` adds debug ones, RUST_LOG overrides
/// both; without a terminal (or with NO_COLOR) no colour codes.
#[test]
fn verbosity_flags_set_the_log_level_and_rust_log_overrides() {
    let ws = Workspace::new("verbosity");
    let server = Server::start(&ws, &[]);
    let mut args = ws.send_args(&server.addr, "key.hex", "pki/ca.pem");
    args.push("hello".into());
    let with = |flags: &[&str], rust_log: Option<&str>| {
        // Global flags go before the subcommand: send's messages may
        // start with a dash.
        let mut all: Vec<&str> = flags.to_vec();
        all.extend(args.iter().map(String::as_str));
        let mut command = secure_link(&all);
        command.env_remove("RUST_LOG").env("NO_COLOR", "1");
        if let Some(filter) = rust_log {
            command.env("RUST_LOG", filter);
        }
        let out = command.output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stderr)
    };
    let default = with(&[], None);
    assert!(
        default.contains(" INFO connected to 127.0.0.1:"),
        "{default}"
    );
    assert!(!default.contains("DEBUG"), "{default}");
    // Prose, not Rust: no Option or enum Debug wrappers.
    assert!(
        default.contains("over TLSv1_3, cipher suite TLS13_"),
        "{default}"
    );
    assert!(
        !default.contains("Some(") && !default.contains("None"),
        "{default}"
    );
    assert!(
        !default.contains('\u{1b}'),
        "colour codes without a terminal: {default:?}"
    );
    let quiet = with(&["-q"], None);
    assert_eq!(quiet, "", "-q: warnings and errors only");
    let verbose = with(&["-v"], None);
    assert!(verbose.contains("DEBUG"), "{verbose}");
    assert!(verbose.contains(" INFO connected"), "{verbose}");
    let overridden = with(&["-q"], Some("debug"));
    assert!(
        overridden.contains("DEBUG"),
        "RUST_LOG decides: {overridden}"
    );
    let out = run(&["-q", "-v", "gen-key"], "");
    assert_eq!(
        out.status.code(),
        Some(2),
        "-q and -v together are a usage error"
    );
}

/// Colour follows the terminal: on a pseudo-terminal (util-linux
/// `script`) log lines are coloured, unless `NO_COLOR` is set.
#[test]
fn log_colour_on_a_terminal_unless_no_color() {
    let ws = Workspace::new("colour");
    let server = Server::start(&ws, &[]);
    let mut command_line = vec![bin()];
    command_line.extend(ws.send_args(&server.addr, "key.hex", "pki/ca.pem"));
    command_line.push("hello".into());
    let command_line = command_line.join(" ");
    let on_terminal = |no_color: Option<&str>| {
        let mut script = std::process::Command::new("script");
        script
            .args(["-qec", &command_line, "/dev/null"])
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR");
        if let Some(value) = no_color {
            script.env("NO_COLOR", value);
        }
        let out = script
            .output()
            .expect("util-linux `script` (Debian: bsdutils) runs the command on a terminal");
        assert!(out.status.success(), "{}", text(&out.stdout));
        text(&out.stdout)
    };
    let coloured = on_terminal(None);
    assert!(coloured.contains("connected to"), "{coloured}");
    assert!(
        coloured.contains("\u{1b}["),
        "no colour on a terminal: {coloured:?}"
    );
    let plain = on_terminal(Some("1"));
    assert!(plain.contains("connected to"), "{plain}");
    assert!(
        !plain.contains("\u{1b}["),
        "colour despite NO_COLOR: {plain:?}"
    );
    // An empty NO_COLOR does not count (no-color.org).
    assert!(on_terminal(Some("")).contains("\u{1b}["));
}

/// Timeouts are user input. A limit too large for a deadline means none:
/// `serve` and `send` work with them (they used to panic in every
/// connection task, or be refused as "not positive"). Zero, negative and
/// non-numbers, and a connection cap beyond what tokio's semaphore counts,
/// are usage errors (exit 2) that say what is expected.
#[test]
fn flag_values_too_large_mean_never_and_out_of_range_ones_are_usage_errors() {
    let ws = Workspace::new("ranges");
    let server = Server::start(
        &ws,
        &[
            "--first-message-timeout",
            "1e19",
            "--idle-timeout",
            "18446744073709551615",
            "--handshake-timeout",
            "inf",
            "--write-timeout",
            "1e300",
        ],
    );
    let mut args = ws.send_args(&server.addr, "key.hex", "pki/ca.pem");
    args.extend(["--timeout", "1e30", "--handshake-timeout", "1e19", "served"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args, "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(server.next_line(), "served");
    server.wait_stderr("closed cleanly after 1 messages");

    // A serve that accepted a bad value would run: killed after PATIENCE.
    let serve = |flag: &str| {
        let mut child = secure_link(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--cert-chain",
            &ws.arg("pki/server-chain.pem"),
            "--private-key",
            &ws.arg("pki/server-key.pem"),
            "--hmac-key",
            &ws.arg("key.hex"),
            flag,
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
        if exit_within(&mut child, PATIENCE).is_none() {
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        (out.status.code(), text(&out.stderr))
    };
    for (flag, says) in [
        ("--idle-timeout=0", "positive number of seconds"),
        ("--idle-timeout=-1", "positive number of seconds"),
        ("--handshake-timeout=NaN", "positive number of seconds"),
        ("--first-message-timeout=soon", "is not a number of seconds"),
        ("--max-connections=0", "at least 1"),
        (
            "--max-connections=18446744073709551615",
            "too many: at most",
        ),
    ] {
        let (code, stderr) = serve(flag);
        assert_eq!(code, Some(2), "{flag}: {stderr}");
        assert!(stderr.contains(says), "{flag}: {stderr}");
    }
}

/// `journalctl -f | secure-link send` against `serve --idle-timeout 1`: a
/// quiet spell longer than serve's idle limit ends the link, serve with its
/// close_notify, and `send`, its stdin still open, exits 1 at once naming
/// the closed link, instead of reading on and sending the next line into a
/// closed connection.
#[test]
fn send_exits_when_the_server_ends_an_idle_link_while_its_input_is_open() {
    use std::io::Write;
    let ws = Workspace::new("idle-send");
    let server = Server::start(&ws, &["--idle-timeout", "1"]);
    let args = ws.send_args(&server.addr, "key.hex", "pki/ca.pem");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = secure_link(&args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"first line\n").unwrap();
    stdin.flush().unwrap();
    assert_eq!(server.next_line(), "first line");
    server.wait_stderr("the peer was silent for 1s");
    let ended = std::time::Instant::now();
    // The next line comes after the end; stdin stays open (held here):
    // send must exit by itself, and the line must not reach serve.
    let _ = stdin.write_all(b"second line\n");
    let _ = stdin.flush();
    let status = exit_within(&mut child, PATIENCE)
        .expect("send still running with its input open after the link ended");
    println!(
        "send exited {:?} after serve logged the idle end",
        ended.elapsed()
    );
    drop(stdin);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    // "after 1 message(s)", or 2 if send took the second line before it
    // read the server's close_notify: either way it exits 1 and says so.
    assert!(
        stderr.contains("the server closed the link while input was still open, after"),
        "{stderr}"
    );
    assert!(
        server
            .stdout
            .recv_timeout(std::time::Duration::from_millis(500))
            .is_err(),
        "a line after the end reached serve"
    );
}

/// `send --close-timeout`: how long send waits for the server to confirm
/// the end. A server that reads everything but never answers close_notify:
/// with 1 s, send exits 1 saying so; a server that answers: exit 0.
#[test]
fn send_waits_its_close_timeout_for_the_server_to_confirm() {
    use futures::StreamExt;
    let ws = Workspace::new("close-timeout");
    let chain = std::fs::read_to_string(ws.path("pki/server-chain.pem")).unwrap();
    let key_pem = std::fs::read_to_string(ws.path("pki/server-key.pem")).unwrap();
    let hmac = std::fs::read_to_string(ws.path("key.hex")).unwrap();
    let acceptor = secure_link::SecureAcceptor::new(
        &chain,
        &key_pem,
        secure_link::HmacKey::from_hex(&hmac).unwrap(),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // First connection: read to the end, then hold the link unanswered.
    // Second: read to the end and answer.
    let server = runtime.spawn(async move {
        let mut held = Vec::new();
        for answer in [false, true] {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut server = acceptor.accept(tcp).await.unwrap();
            while let Some(message) = server.next().await {
                message.unwrap();
            }
            if answer {
                futures::SinkExt::close(&mut server).await.unwrap();
            } else {
                held.push(server);
            }
        }
        held
    });
    let send_with = |limit: &str| {
        let mut args = ws.send_args(&addr, "key.hex", "pki/ca.pem");
        args.drain(1..3); // send_args' own --close-timeout
        args.extend(["--close-timeout".into(), limit.into(), "hello".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, "")
    };
    let out = send_with("1");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no close_notify within 1s"),
        "{}",
        text(&out.stderr)
    );
    let out = send_with("120");
    assert!(out.status.success(), "{}", text(&out.stderr));
    drop(runtime.block_on(server).unwrap());
}

/// TCP keepalive is on for `serve`'s and `send`'s connections, with the
/// flags' settings: the kernel shows a keepalive timer of at most
/// `--keepalive-idle` on both sockets of a quiet link (`ss -o`; the
/// system's default idle time is two hours).
#[test]
fn serve_and_send_turn_on_tcp_keepalive_with_their_settings() {
    use std::io::Write;
    let Ok(probe) = Command::new("ss").arg("-V").output() else {
        panic!("`ss` (iproute2) is needed: .ci/run installs it");
    };
    assert!(probe.status.success());
    let ws = Workspace::new("keepalive");
    let server = Server::start(&ws, &["--keepalive-idle", "7", "--keepalive-interval", "3"]);
    let port = server.addr.rsplit(':').next().unwrap().to_owned();
    let mut args = ws.send_args(&server.addr, "key.hex", "pki/ca.pem");
    args.extend(["--keepalive-idle", "9"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = secure_link(&args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hello\n").unwrap();
    stdin.flush().unwrap();
    assert_eq!(server.next_line(), "hello");
    // The link is open and quiet: each end's socket has a keepalive timer.
    // A socket shows one timer: until what it sent is acknowledged, the
    // retransmission timer ("on"); the keepalive one once the link is quiet.
    // Its value: "6.9sec", "812ms", "1min2sec".
    let seconds = |value: &str| {
        if let Some(ms) = value.strip_suffix("ms") {
            ms.parse::<f64>().unwrap() / 1000.0
        } else if let Some(sec) = value.strip_suffix("sec") {
            match sec.split_once("min") {
                Some((min, sec)) => {
                    min.parse::<f64>().unwrap() * 60.0 + sec.parse::<f64>().unwrap()
                }
                None => sec.parse::<f64>().unwrap(),
            }
        } else {
            panic!("keepalive timer {value:?}")
        }
    };
    let keepalive = |filter: &str| {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let out = Command::new("ss")
                .args(["-tnoH", "state", "established", filter])
                .output()
                .unwrap();
            let text = text(&out.stdout);
            if let Some(at) = text.find("timer:(keepalive,") {
                let value: String = text[at + "timer:(keepalive,".len()..]
                    .chars()
                    .take_while(|c| *c != ',')
                    .collect();
                return seconds(&value);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no keepalive timer for {filter}: {text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let served = keepalive(&format!("( sport = :{port} )"));
    let sending = keepalive(&format!("( dport = :{port} )"));
    assert!(served <= 7.0, "serve's keepalive timer {served} s");
    assert!(sending <= 9.0, "send's keepalive timer {sending} s");
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

/// A server that stops taking bytes (here: stopped with SIGSTOP, so its
/// kernel still acknowledges what fits in its buffers): `send --write-timeout
/// 2` fills the buffers, then makes no progress for 2 s and exits 1 naming
/// the limit, instead of waiting until the kernel gives up (about 15
/// minutes on a black-holed route; never here, the peer's kernel answers).
#[test]
fn send_exits_at_its_write_timeout_when_the_server_stops_reading() {
    use std::io::Write;
    let ws = Workspace::new("write-timeout");
    let server = Server::start(&ws, &[]);
    let mut args = ws.send_args(&server.addr, "key.hex", "pki/ca.pem");
    args.extend(["--write-timeout", "2"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = secure_link(&args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"first\n").unwrap();
    stdin.flush().unwrap();
    assert_eq!(server.next_line(), "first");
    server.signal("-STOP");
    let stopped = std::time::Instant::now();
    // Lines of 64 KiB until send stops taking them (its pipe breaks when it
    // exits), at most 256 MiB: far more than loopback buffers hold.
    let pump = std::thread::spawn(move || {
        let line = [vec![b'x'; 64 * 1024 - 1], vec![b'\n']].concat();
        for _ in 0..4096 {
            if stdin.write_all(&line).is_err() {
                return;
            }
        }
    });
    let status = exit_within(&mut child, PATIENCE);
    let took = stopped.elapsed();
    server.signal("-CONT");
    let status = status.expect("send still running 60 s after the server stopped reading");
    pump.join().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    println!("send exited {took:?} after the server stopped (write timeout 2 s)");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the peer took no bytes for 2s"), "{stderr}");
    assert!(took >= std::time::Duration::from_secs(2), "{took:?}");
}
