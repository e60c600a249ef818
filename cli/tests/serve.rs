//! `secure-link serve` under hostile or unlucky conditions, as real
//! processes on 127.0.0.1: anonymous peers pushing large frames, running
//! out of descriptors, a stdout that goes away or stalls, a client that
//! does not read its replies, messages that hold control bytes. Figures
//! printed here (run with `--nocapture`) are recorded in SECURITY.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_support;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::time::Duration;

use cli_support::*;

/// A runtime for the tests that drive clients through the library.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn connector(ws: &Workspace, key: &str) -> secure_link::SecureConnector {
    let ca = std::fs::read_to_string(ws.path("pki/ca.pem")).unwrap();
    let key_hex = std::fs::read_to_string(ws.path(key)).unwrap();
    secure_link::SecureConnector::new(&ca, secure_link::HmacKey::from_hex(&key_hex).unwrap())
        .unwrap()
}

#[test]
fn one_message_is_one_line_whatever_bytes_it_holds_and_hex_and_base64_are_exact() {
    let ws = Workspace::new("format");
    // Newlines, an escape sequence (clear screen), BEL, invalid UTF-8.
    let nasty = b"line one\nFORGED LINE\r\x1b[2J\x07\xff\\ end";
    let nasty_hex = hex::encode(nasty);

    let server = Server::start(&ws, &[]);
    let mut args = ws.send_args(&server.addr, "key.hex", "pki/ca.pem");
    args.extend(["--format".into(), "hex".into(), nasty_hex.clone()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args, "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        server.next_line(),
        r"line one\nFORGED LINE\r\x1b[2J\x07\xff\\ end"
    );
    server.wait_stderr("closed cleanly after 1 messages");

    for format in ["hex", "base64"] {
        let server = Server::start(&ws, &["--format", format]);
        let all: Vec<u8> = (0..=255).collect();
        let line = match format {
            "hex" => hex::encode(&all),
            _ => base64_encode(&all),
        };
        let mut args = ws.send_args(&server.addr, "key.hex", "pki/ca.pem");
        args.extend(["--format".into(), format.into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(
            &args,
            &format!(
                "{line}\n{nasty_hex_or_b64}\n",
                nasty_hex_or_b64 = match format {
                    "hex" => nasty_hex.clone(),
                    _ => base64_encode(nasty),
                }
            ),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(server.next_line(), line, "{format}");
        let second = server.next_line();
        let expected = match format {
            "hex" => nasty_hex.clone(),
            _ => base64_encode(nasty),
        };
        assert_eq!(second, expected, "{format}");
    }
}

/// Standard base64 with padding, written out here so the test does not
/// share the tool's encoder.
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `serve | head -1`: once stdout is gone, serve stops and says why,
/// instead of accepting connections whose messages go nowhere.
#[test]
fn serve_exits_non_zero_when_its_stdout_goes_away() {
    let ws = Workspace::new("epipe");
    let mut server = Server::launch(&ws, &[], &[], false, "info");
    let mut stdout = BufReader::new(server.raw_stdout.take().unwrap());
    let out = send(&ws, &server, "key.hex", &["first"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "first\n");
    drop(stdout); // like `head -1` exiting

    // The next message cannot be written: serve ends, non-zero.
    let _ = send(&ws, &server, "key.hex", &["second"], "");
    let status = server.wait_exit();
    assert!(!status.success(), "{status:?}");
    assert!(server.count_stderr("cannot write to stdout") == 1);
    assert!(TcpStream::connect(&server.addr).is_err(), "still listening");
}

/// Out of descriptors, `accept` fails at once for as long as connections
/// wait in the backlog. A loop that retries at once spins; serve backs off,
/// logs rarely, and serves again once descriptors are free.
#[test]
fn accept_failures_back_off_and_serving_resumes_when_descriptors_free_up() {
    let ws = Workspace::new("emfile");
    // A cap far above what 48 descriptors allow, so accept hits EMFILE.
    let started = std::time::Instant::now();
    let mut server = Server::launch(
        &ws,
        &["--max-connections", "1000", "--handshake-timeout", "60"],
        &["prlimit", "--nofile=48:48", "--"],
        true,
        "info",
    );
    let held: Vec<TcpStream> = (0..80)
        .map(|_| TcpStream::connect(&server.addr).unwrap())
        .collect();
    server.wait_stderr("accept failed");
    let before = server.cpu_ticks();
    std::thread::sleep(Duration::from_secs(2)); // a measurement window
    let used = server.cpu_ticks() - before;
    // Spinning would be about 200 ticks (2 s at 100 Hz).
    assert!(used <= 20, "{used} ticks of CPU in 2 s");

    drop(held);
    let out = send(
        &ws,
        &server,
        "key.hex",
        &["--handshake-timeout", "60", "served again"],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(server.next_line(), "served again");
    // Counted once stderr has ended: a line still in the pipe counts too.
    server.signal("-TERM");
    server.wait_exit();
    let ran = started.elapsed();
    let logged = server.count_stderr("accept failed");
    println!(
        "out of descriptors for 2 s: {used} clock ticks of CPU, {logged} log lines in {ran:?}"
    );
    // One line per 10 s at most (the first at once).
    let allowed = 1 + ran.as_secs() as usize / 10;
    assert!(
        (1..=allowed).contains(&logged),
        "{logged} accept failures logged in {ran:?}"
    );
}

/// With the default cap, derived from the descriptor limit, connections
/// beyond it wait in the backlog: accept never fails. 150 held connections
/// do not fit in 100 descriptors, so a server without the cap meets EMFILE.
#[test]
fn the_default_connection_cap_fits_the_descriptor_limit() {
    let ws = Workspace::new("cap");
    let mut server = Server::launch(
        &ws,
        &["--handshake-timeout", "60"],
        &["prlimit", "--nofile=100:100", "--"],
        true,
        "info",
    );
    server.wait_stderr("serving at most 36 connections at once");
    let before = server.open_descriptors();
    let held: Vec<TcpStream> = (0..150)
        .map(|_| TcpStream::connect(&server.addr).unwrap())
        .collect();
    // The cap is full (36 accepted) before anything lets go: without the
    // cap, serve would go on accepting into EMFILE here.
    server.wait_until(|server| server.open_descriptors() >= before + 36);
    // An honest client queued behind them is served once they go.
    let ws_path = ws.send_args(&server.addr, "key.hex", "pki/ca.pem");
    let sender = std::thread::spawn(move || {
        let mut args = ws_path;
        args.extend(["--handshake-timeout".into(), "60".into()]);
        args.push("after the wait".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, "")
    });
    drop(held);
    let out = sender.join().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(server.next_line(), "after the wait");
    server.signal("-TERM");
    server.wait_exit();
    assert_eq!(server.count_stderr("accept failed"), 0);
    assert_eq!(server.count_stderr("terminated: shutting down"), 1);
}

/// SECURITY.md's figure: 100 TLS peers without the key, each declaring an
/// 8 MiB frame and pushing 8 MiB, against `serve` with its defaults.
#[test]
fn a_hundred_anonymous_peers_pushing_8_mib_frames_pin_little_memory() {
    const PEERS: usize = 100;
    let ws = Workspace::new("anon");
    // Handshake limits far above what 100 handshakes at once need.
    let server = Server::start(&ws, &["--handshake-timeout", "60"]);
    let addr = server.addr.clone();
    let stranger = connector(&ws, "other-key.hex").with_handshake_timeout(Duration::from_secs(60));
    let runtime = runtime();
    let refused = runtime.block_on(async {
        let mut peers = tokio::task::JoinSet::new();
        for _ in 0..PEERS {
            let (addr, stranger) = (addr.clone(), stranger.clone());
            peers.spawn(async move {
                use tokio::io::AsyncWriteExt;
                let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
                let client = stranger.connect("localhost", tcp).await.unwrap();
                let mut tls = client.into_inner();
                let junk = vec![0x55u8; 64 * 1024];
                let mut pushed = 0;
                let mut write = async || -> std::io::Result<()> {
                    tls.write_all(&(8u32 << 20).to_be_bytes()).await?;
                    while pushed < 8 << 20 {
                        tls.write_all(&junk).await?;
                        pushed += junk.len();
                    }
                    tls.flush().await
                };
                // The server refuses the frame and hangs up: the write fails.
                write().await.is_err()
            });
        }
        // An honest client is served meanwhile.
        let honest = tokio::task::spawn_blocking({
            let args = ws.send_args(&addr, "key.hex", "pki/ca.pem");
            move || {
                let mut args = args;
                args.extend(["--handshake-timeout".into(), "60".into()]);
                args.push("honest".into());
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                run(&args, "")
            }
        });
        let mut refused = 0;
        while let Some(done) = peers.join_next().await {
            refused += usize::from(done.unwrap());
        }
        let out = honest.await.unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        refused
    });
    let peak_kb = server.proc_status_kb("VmHWM");
    assert_eq!(server.next_line(), "honest");
    println!(
        "{PEERS} anonymous peers declaring 8 MiB: {refused} cut off; serve's peak RSS {} MiB",
        peak_kb / 1024
    );
    assert!(peak_kb < 128 * 1024, "peak RSS {peak_kb} kB");
    assert_eq!(refused, PEERS);
}

/// A client that sends but never reads its echoed replies: the reply that
/// cannot be written within --write-timeout ends that connection, and
/// other clients are served meanwhile.
#[test]
fn an_echo_client_that_does_not_read_is_cut_off_and_others_are_served() {
    let ws = Workspace::new("noread");
    let server = Server::start(&ws, &["--echo", "--write-timeout", "1"]);
    let client = connector(&ws, "key.hex");
    let addr = server.addr.clone();
    let runtime = runtime();
    let greedy = runtime.spawn(async move {
        use futures::SinkExt;
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let mut client = client.connect("localhost", tcp).await.unwrap();
        client.send(bytes::Bytes::from_static(b"hi")).await.unwrap();
        let big = bytes::Bytes::from(vec![b'x'; 256 * 1024]);
        // Writes until the server stops reading, then is cut off.
        let mut sent = 1;
        while client.send(big.clone()).await.is_ok() {
            sent += 1;
        }
        sent
    });
    server.wait_stderr("the client is not reading; closing the connection");
    let out = send(&ws, &server, "key.hex", &["meanwhile"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let sent = runtime.block_on(greedy).unwrap();
    println!("the non-reading client got {sent} messages out before it was cut off");
    // "meanwhile" may be queued behind the greedy client's lines: wait for
    // it, then take what else has arrived.
    let mut lines = Vec::new();
    while !lines.contains(&"meanwhile".to_owned()) {
        lines.push(server.next_line());
    }
    while let Ok(line) = server.stdout.recv_timeout(Duration::from_millis(500)) {
        lines.push(line);
    }
    // Every line but "meanwhile" is one of the greedy client's messages.
    assert!(
        lines.len() - 1 <= sent,
        "{} lines, {sent} sent",
        lines.len()
    );
}

/// Shutdown with a stdout that takes nothing: a second signal exits at
/// once, well before the grace period; with one signal, serve exits after
/// its grace period, not before. Either way it says that messages were not
/// written.
#[test]
fn a_stalled_stdout_cannot_hold_shutdown_and_a_second_signal_exits_at_once() {
    /// serve's grace period for stdout during shutdown.
    const GRACE: Duration = Duration::from_secs(5);
    let ws = Workspace::new("stall");
    let big_lines: String = (0..40)
        .map(|i| format!("{i}:{}\n", "y".repeat(50_000)))
        .collect();
    for second_signal in [true, false] {
        // Nobody reads stdout: the pipe (64 KiB) fills.
        let mut server = Server::launch(&ws, &[], &[], false, "info");
        let args = ws.send_args(&server.addr, "key.hex", "pki/ca.pem");
        let input = big_lines.clone();
        let sender = std::thread::spawn(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(&args, &input)
        });
        let out = sender.join().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let signalled = std::time::Instant::now();
        server.signal("-INT");
        server.wait_stderr("interrupted: shutting down");
        if second_signal {
            server.signal("-INT");
        }
        let status = server.wait_exit();
        let took = signalled.elapsed();
        assert!(!status.success(), "{status:?}");
        if second_signal {
            assert_eq!(
                server.count_stderr("again during shutdown: exiting at once"),
                1
            );
            assert!(took < GRACE, "two signals: exited after {took:?}");
        } else {
            assert_eq!(
                server.count_stderr("stdout took nothing for 5s during shutdown"),
                1
            );
            assert!(took >= GRACE, "one signal: exited after {took:?}");
        }
    }
}

#[test]
fn key_files_readable_by_others_are_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let ws = Workspace::new("perms");
    let key = ws.path("key.hex");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = Server::start(&ws, &[]);
    let warning = server.wait_stderr("readable by group or others");
    assert!(warning.contains(key.to_str().unwrap()), "{warning}");
    assert!(warning.contains("chmod 600"), "{warning}");
    // The server's private key, written 0600 by gen-certs, is not named.
    assert_eq!(server.count_stderr("server-key.pem"), 0);
    let out = send(&ws, &server, "key.hex", &["still works"], "");
    assert!(out.status.success());
    assert!(text(&out.stderr).contains("readable by group or others"));
    assert_eq!(server.next_line(), "still works");
}

/// The HMAC key is a secret: at the most verbose log level, neither `serve`
/// nor `send` prints it anywhere, as hex, as Rust's `Debug` of its bytes,
/// or as base64 (whole or its first bytes). serve's stderr is read to its
/// end, after it exits.
#[test]
fn the_hmac_key_never_appears_in_serve_or_send_output() {
    let ws = Workspace::new("secret");
    let key_hex = std::fs::read_to_string(ws.path("key.hex")).unwrap();
    let key = hex::decode(key_hex.trim()).unwrap();
    let mut server = Server::launch(&ws, &["--echo"], &[], true, "trace");
    let mut args = ws.send_args(&server.addr, "key.hex", "pki/ca.pem");
    args.push("a message".into());
    let out = std::process::Command::new(bin())
        .args(&args)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(server.next_line(), "a message");
    server.wait_stderr("closed cleanly after 1 messages");
    server.signal("-TERM");
    server.wait_exit();
    let serve_stderr = server.stderr_text().join("\n");
    let send_output = text(&out.stdout) + &text(&out.stderr);
    assert!(serve_stderr.contains("closed cleanly"), "{serve_stderr}");
    assert!(
        serve_stderr.contains("terminated: shutting down"),
        "read to the end: {serve_stderr}"
    );
    let mut needles = Vec::new();
    for bytes in [&key[..], &key[..12]] {
        needles.push(hex::encode(bytes));
        needles.push(hex::encode_upper(bytes));
        needles.push(format!("{bytes:?}").trim_end_matches(']').to_owned());
        needles.push(format!("{bytes:x?}").trim_end_matches(']').to_owned());
        needles.push(base64_encode(bytes).trim_end_matches('=').to_owned());
    }
    for (name, output) in [("serve", serve_stderr), ("send", send_output)] {
        for needle in &needles {
            assert!(
                !output.contains(needle),
                "{name} printed the key ({needle}): {output}"
            );
        }
    }
}

/// SIGHUP re-reads the certificate chain, private key and HMAC key files:
/// new connections use the new material, an open connection carries on
/// untouched, and a file that fails to load leaves the running
/// configuration in place (serve keeps serving, and says which file).
#[test]
fn sighup_reloads_certificates_and_keys_and_a_bad_file_changes_nothing() {
    let ws = Workspace::new("reload");
    let server = Server::start(&ws, &[]);
    let runtime = runtime();

    // A connection opened before the reload, with the old key and CA.
    let old = connector(&ws, "key.hex");
    let addr = server.addr.clone();
    let mut open = runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        old.connect("localhost", tcp).await.unwrap()
    });
    runtime.block_on(async {
        use futures::SinkExt;
        open.send(bytes::Bytes::from_static(b"before"))
            .await
            .unwrap();
    });
    assert_eq!(server.next_line(), "before");

    // New material: another CA and server certificate, another key.
    let out = run(
        &["gen-certs", "--out", ws.path("pki2").to_str().unwrap()],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    for name in ["server-chain.pem", "server-key.pem"] {
        std::fs::copy(
            ws.path(&format!("pki2/{name}")),
            ws.path(&format!("pki/{name}")),
        )
        .unwrap();
    }
    std::fs::copy(ws.path("other-key.hex"), ws.path("key.hex")).unwrap();
    server.signal("-HUP");
    server.wait_stderr("SIGHUP: reloaded");

    // New connections: the new CA and key work, the old ones do not.
    let mut args = ws.send_args(&server.addr, "other-key.hex", "pki2/ca.pem");
    args.push("after".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args, "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(server.next_line(), "after");
    let mut args = ws.send_args(&server.addr, "other-key.hex", "pki/ca.pem");
    args.push("old CA".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args, "");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown issuer"),
        "{}",
        text(&out.stderr)
    );

    // The connection opened before the reload used the key that is gone:
    // serve closed it (see a_reload_that_removes_a_key_closes_the_links_pinned_to_it).
    runtime.block_on(async {
        use futures::StreamExt;
        let end = tokio::time::timeout(PATIENCE, open.next()).await.unwrap();
        assert!(end.is_none(), "{end:?}");
    });

    // A bad file beside a good one: the reload fails, naming the bad file,
    // and nothing changes, not even what loaded (a new chain and key here).
    let out = run(
        &["gen-certs", "--out", ws.path("pki3").to_str().unwrap()],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    for name in ["server-chain.pem", "server-key.pem"] {
        std::fs::copy(
            ws.path(&format!("pki3/{name}")),
            ws.path(&format!("pki/{name}")),
        )
        .unwrap();
    }
    std::fs::write(ws.path("key.hex"), "not hex at all\n").unwrap();
    server.signal("-HUP");
    let failed = server.wait_stderr("reload failed");
    assert!(failed.contains("key.hex"), "{failed}");
    assert!(
        !failed.contains("not hex"),
        "the key file's contents were logged: {failed}"
    );
    let served = |key: &str, ca: &str, message: &str| {
        let mut args = ws.send_args(&server.addr, key, ca);
        args.push(message.into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, "")
    };
    let out = served("other-key.hex", "pki2/ca.pem", "old chain kept");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(server.next_line(), "old chain kept");
    let out = served("other-key.hex", "pki3/ca.pem", "new chain applied");
    assert!(!out.status.success(), "the new chain was applied in part");
    assert!(
        text(&out.stderr).contains("unknown issuer"),
        "{}",
        text(&out.stderr)
    );

    // A bad private key beside a good new HMAC key: the old key still
    // works, the new one is refused.
    let out = run(&["gen-key", "--out", &ws.arg("third-key.hex")], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::copy(ws.path("third-key.hex"), ws.path("key.hex")).unwrap();
    std::fs::write(ws.path("pki/server-key.pem"), "-----BEGIN NOTHING-----\n").unwrap();
    server.signal("-HUP");
    let failed = server.wait_stderr("reload failed");
    assert!(failed.contains("server-key.pem"), "{failed}");
    let out = served("other-key.hex", "pki2/ca.pem", "served as before");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(server.next_line(), "served as before");
    let out = served("third-key.hex", "pki2/ca.pem", "new key applied");
    assert!(
        !out.status.success(),
        "the new HMAC key was applied in part"
    );
    server.wait_stderr("invalid HMAC");
}

/// A link to serve at `addr` through `connector`.
fn connect(
    runtime: &tokio::runtime::Runtime,
    connector: &secure_link::SecureConnector,
    addr: &str,
) -> secure_link::SecureClient<tokio::net::TcpStream> {
    runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        connector.connect("localhost", tcp).await.unwrap()
    })
}

/// Sends `message` on `client` and waits for it on serve's stdout.
fn deliver(
    runtime: &tokio::runtime::Runtime,
    server: &Server,
    client: &mut secure_link::SecureClient<tokio::net::TcpStream>,
    message: &'static str,
) {
    use futures::SinkExt;
    runtime
        .block_on(client.send(bytes::Bytes::from_static(message.as_bytes())))
        .unwrap();
    assert_eq!(server.next_line(), message);
}

/// Waits for serve's close_notify on `client`: its stream ends cleanly.
fn closed_by_server(
    runtime: &tokio::runtime::Runtime,
    client: &mut secure_link::SecureClient<tokio::net::TcpStream>,
) {
    use futures::StreamExt;
    let end = runtime
        .block_on(async { tokio::time::timeout(PATIENCE, client.next()).await })
        .expect("serve did not close the link");
    assert!(end.is_none(), "{end:?}");
}

/// A SIGHUP that removes an HMAC key closes the links pinned to it, with
/// close_notify, logged `revoked` / `key_revoked` and counted; a link
/// pinned to a key still configured carries on through the reload; a link
/// opened before the reload whose first message uses the removed key is
/// closed at that message, which is not printed.
#[test]
fn a_reload_that_removes_a_key_closes_the_links_pinned_to_it() {
    let ws = Workspace::new("revoke-key");
    std::fs::copy(ws.path("other-key.hex"), ws.path("second.hex")).unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let server = Server::start(
        &ws,
        &["--hmac-key", &ws.arg("second.hex"), "--metrics", &metrics],
    );
    let runtime = runtime();
    let mut kept = connect(&runtime, &connector(&ws, "key.hex"), &server.addr);
    deliver(&runtime, &server, &mut kept, "kept");
    let mut pinned = connect(&runtime, &connector(&ws, "other-key.hex"), &server.addr);
    deliver(&runtime, &server, &mut pinned, "pinned");
    let mut late = connect(&runtime, &connector(&ws, "other-key.hex"), &server.addr);
    for _ in 0..3 {
        server.wait_stderr("connected");
    }

    // A reload that changes nothing revokes nothing.
    server.signal("-HUP");
    server.wait_stderr("SIGHUP: reloaded");
    deliver(
        &runtime,
        &server,
        &mut pinned,
        "after a reload of the same keys",
    );

    let out = run(&["gen-key", "--out", &ws.arg("third.hex")], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::copy(ws.path("third.hex"), ws.path("second.hex")).unwrap();
    server.signal("-HUP");
    server.wait_stderr("SIGHUP: reloaded");
    closed_by_server(&runtime, &mut pinned);
    let revoked = server.wait_stderr("closing the connection after 2 messages");
    assert!(revoked.contains("key_revoked"), "{revoked}");
    assert!(revoked.contains("no longer accepted"), "{revoked}");

    // The link that had not spoken yet: its first message is refused.
    runtime
        .block_on(futures::SinkExt::send(
            &mut late,
            "first, with the removed key".into(),
        ))
        .unwrap();
    closed_by_server(&runtime, &mut late);
    let revoked = server.wait_stderr("closing the connection after 0 messages");
    assert!(revoked.contains("key_revoked"), "{revoked}");

    // The link on the key that stays carries on; nothing else was printed.
    deliver(&runtime, &server, &mut kept, "still open");
    runtime
        .block_on(futures::SinkExt::close(&mut kept))
        .unwrap();
    let series = "secure_link_connections_closed_total{reason=\"key_revoked\"}";
    let body = scrape_until(&metrics, &[(series, 2.0)]);
    assert_eq!(sample(&body, series), Some(2.0), "{body}");
    assert_eq!(server.stdout.try_recv().ok(), None);
}

/// `serve --client-ca FILE`: a SIGHUP after FILE now names another CA
/// closes the links whose client certificate it does not verify, logged
/// `client_ca_revoked` and counted; a reload with the same CA keeps them.
#[test]
fn a_reload_of_the_client_ca_closes_the_links_it_no_longer_verifies() {
    let ws = Workspace::new("revoke-ca");
    std::fs::copy(ws.path("pki/ca.pem"), ws.path("client-ca.pem")).unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let server = Server::start(
        &ws,
        &[
            "--client-ca",
            &ws.arg("client-ca.pem"),
            "--metrics",
            &metrics,
        ],
    );
    let runtime = runtime();
    let certified = connector(&ws, "key.hex")
        .with_client_cert(
            &std::fs::read_to_string(ws.path("pki/client-client-chain.pem")).unwrap(),
            &std::fs::read_to_string(ws.path("pki/client-client-key.pem")).unwrap(),
        )
        .unwrap();
    let mut client = connect(&runtime, &certified, &server.addr);
    deliver(&runtime, &server, &mut client, "certified");

    server.signal("-HUP");
    server.wait_stderr("SIGHUP: reloaded");
    deliver(&runtime, &server, &mut client, "same CA reloaded");

    let out = run(&["gen-certs", "--out", &ws.arg("pki2")], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::copy(ws.path("pki2/ca.pem"), ws.path("client-ca.pem")).unwrap();
    server.signal("-HUP");
    server.wait_stderr("SIGHUP: reloaded");
    closed_by_server(&runtime, &mut client);
    let revoked = server.wait_stderr("closing the connection after 2 messages");
    assert!(revoked.contains("client_ca_revoked"), "{revoked}");
    let series = "secure_link_connections_closed_total{reason=\"client_ca_revoked\"}";
    let body = scrape_until(&metrics, &[(series, 1.0)]);
    assert_eq!(sample(&body, series), Some(1.0), "{body}");
}

/// A client certificate's name is the client's text: a newline in its
/// common name is escaped in serve's text log, not a forged log line. A
/// certificate from another CA is logged as the client's problem
/// (`--client-ca`), and `send` says the server refused its certificate.
#[test]
fn client_certificate_names_are_escaped_and_refusals_name_the_client() {
    let ws = Workspace::new("client-names");
    let evil = secure_link::certs::generate_with_clients(
        &["localhost"],
        &["node-7\n2026-12-06T00:00:00Z  INFO FORGED: reloaded"],
    )
    .unwrap();
    std::fs::write(ws.path("evil-ca.pem"), &evil.ca_pem).unwrap();
    let server = Server::start(&ws, &["--client-ca", &ws.arg("evil-ca.pem")]);
    let runtime = runtime();
    let certified = connector(&ws, "key.hex")
        .with_client_cert(&evil.clients[0].chain_pem, &evil.clients[0].key_pem)
        .unwrap();
    let mut client = connect(&runtime, &certified, &server.addr);
    deliver(&runtime, &server, &mut client, "from node 7");
    let connected = server.wait_stderr("client certificate of");
    assert!(
        connected.contains(r"node-7\n2026-12-06T00:00:00Z  INFO FORGED"),
        "{connected}"
    );
    runtime
        .block_on(futures::SinkExt::close(&mut client))
        .unwrap();

    // The workspace's own client certificate is from another CA.
    let mut args = ws.send_args(&server.addr, "key.hex", "pki/ca.pem");
    args.extend([
        "--cert-chain".into(),
        ws.arg("pki/client-client-chain.pem"),
        "--private-key".into(),
        ws.arg("pki/client-client-key.pem"),
        "refused".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args, "");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let said = text(&out.stderr);
    assert!(
        said.contains("the server refused this client's certificate"),
        "{said}"
    );
    let failed = server.wait_stderr("handshake failed");
    assert!(
        failed.contains("the client's certificate was rejected: unknown issuer")
            && failed.contains("--client-ca"),
        "{failed}"
    );
    assert!(!failed.contains("server's certificate"), "{failed}");
    server.wait_stderr("closed cleanly");
    assert!(
        server
            .stderr_text()
            .iter()
            .all(|l| !l.contains("FORGED") || l.contains("client certificate of")),
        "{:?}",
        server.stderr_text()
    );
}

/// A reload reads its files off the event loop: while a key file cannot be
/// read (a FIFO nobody writes yet, as a stalled disk would), serve still
/// accepts and serves with the running configuration. Files caught
/// mid-write are refused, naming the file: a key line without its newline
/// (its digits so far would make a wrong key), a certificate chain that
/// ends inside a PEM block.
#[test]
fn reloads_read_off_the_event_loop_and_refuse_files_caught_mid_write() {
    let ws = Workspace::new("reload-stall");
    let server = Server::start(&ws, &[]);
    let served = |message: &str| {
        let mut args = ws.send_args(&server.addr, "key.hex", "pki/ca.pem");
        args.push(message.into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, "")
    };
    let key = std::fs::read_to_string(ws.path("key.hex")).unwrap();

    std::fs::remove_file(ws.path("key.hex")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(ws.path("key.hex"))
        .status()
        .unwrap();
    assert!(made.success());
    server.signal("-HUP");
    // The send's own key was read before the FIFO: give it a copy.
    std::fs::write(ws.path("sender.hex"), &key).unwrap();
    let mut args = ws.send_args(&server.addr, "sender.hex", "pki/ca.pem");
    args.push("served while the reload waits".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args, "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(server.next_line(), "served while the reload waits");
    // Feed the FIFO: the reload finishes.
    std::fs::write(ws.path("key.hex"), &key).unwrap();
    server.wait_stderr("SIGHUP: reloaded");
    std::fs::remove_file(ws.path("key.hex")).unwrap();

    // 60 of a key's 64 hex digits, no newline yet: refused.
    std::fs::write(ws.path("key.hex"), &key.trim()[..60]).unwrap();
    server.signal("-HUP");
    let failed = server.wait_stderr("reload failed");
    assert!(
        failed.contains("key.hex line 1") && failed.contains("no newline"),
        "{failed}"
    );
    std::fs::write(ws.path("key.hex"), &key).unwrap();

    // A chain cut inside its first PEM block.
    let chain = std::fs::read_to_string(ws.path("pki/server-chain.pem")).unwrap();
    std::fs::write(ws.path("pki/server-chain.pem"), &chain[..chain.len() / 3]).unwrap();
    server.signal("-HUP");
    // (Refused before this change too; the message now says why in words.)
    let failed = server.wait_stderr("reload failed");
    assert!(
        failed.contains("server-chain.pem")
            && failed.contains("certificate chain PEM: it ends inside a block")
            && failed.contains("-----END CERTIFICATE-----"),
        "{failed}"
    );
    let out = served("the running configuration stays");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(server.next_line(), "the running configuration stays");
}
