//! Running the `secure-link` binary as a user does, for cli/tests/cli.rs and
//! cli/tests/serve.rs: a workspace with certificates and keys, a `serve`
//! process whose output lines can be awaited, `send`.
//!
//! `SECURE_LINK_BIN` runs the tests against another build of the binary
//! (an older commit's, to show a test failing before a fix).
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The binary under test.
pub fn bin() -> String {
    std::env::var("SECURE_LINK_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_secure-link").to_owned())
}
/// Upper bound on any wait for a process to print something; never a
/// synchronisation sleep.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub fn secure_link(args: &[&str]) -> Command {
    let mut command = Command::new(bin());
    command.args(args).env("RUST_LOG", "info");
    command
}

pub fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = secure_link(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A temporary directory with certificates and two keys, removed on drop.
pub struct Workspace {
    pub dir: PathBuf,
}

impl Workspace {
    pub fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("secure-link-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ws = Workspace { dir };
        let out = run(
            &["gen-certs", "--out", ws.path("pki").to_str().unwrap()],
            "",
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        for key in ["key.hex", "other-key.hex"] {
            let out = run(&["gen-key", "--out", ws.path(key).to_str().unwrap()], "");
            assert!(out.status.success(), "{}", text(&out.stderr));
        }
        ws
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn arg(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_owned()
    }

    /// `send` arguments for the server at `addr`. Its close timeout is far
    /// above what a loaded machine's `serve` needs to confirm the end.
    pub fn send_args(&self, addr: &str, key: &str, ca: &str) -> Vec<String> {
        vec![
            "send".into(),
            "--close-timeout".into(),
            "60".into(),
            "--connect".into(),
            addr.into(),
            "--server-name".into(),
            "localhost".into(),
            "--ca".into(),
            self.arg(ca),
            "--hmac-key".into(),
            self.arg(key),
        ]
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running `secure-link serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub stdout: Receiver<String>,
    pub raw_stdout: Option<std::process::ChildStdout>,
    /// Every stderr line read so far, and whether `wait_stderr` has
    /// matched it already (a line is matched at most once).
    pub stderr: Arc<Mutex<Vec<(String, bool)>>>,
    pub stderr_lines: Receiver<String>,
    /// The reader thread reached stderr's end (the process and everything
    /// holding the pipe are gone).
    pub stderr_done: bool,
}

impl Server {
    pub fn start(ws: &Workspace, extra: &[&str]) -> Self {
        Self::launch(ws, extra, &[], true, "info")
    }

    /// `serve` with `extra` arguments, run through `wrapper` (say
    /// `prlimit --nofile=...`) if not empty, logging at `log` (`RUST_LOG`).
    /// With `read_stdout` false, stdout is left in `raw_stdout` for the
    /// test to read, or not.
    pub fn launch(
        ws: &Workspace,
        extra: &[&str],
        wrapper: &[&str],
        read_stdout: bool,
        log: &str,
    ) -> Self {
        let mut args = vec![
            "serve".to_owned(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--cert-chain".into(),
            ws.arg("pki/server-chain.pem"),
            "--private-key".into(),
            ws.arg("pki/server-key.pem"),
            "--hmac-key".into(),
            ws.arg("key.hex"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut command = match wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut command = Command::new(program);
                command.args(wrapper_args).arg(bin());
                command
            }
            None => Command::new(bin()),
        };
        let mut child = command
            .args(&args)
            .env("RUST_LOG", log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (stdout, raw_stdout) = if read_stdout {
            (lines(child.stdout.take().unwrap()), None)
        } else {
            (mpsc::channel().1, child.stdout.take())
        };
        let stderr_lines = lines(child.stderr.take().unwrap());
        let mut server = Server {
            child,
            addr: String::new(),
            stdout,
            raw_stdout,
            stderr: Arc::default(),
            stderr_lines,
            stderr_done: false,
        };
        let listening = server.wait_stderr("listening on ");
        // A prose line ends with the address; a JSON one goes on after it.
        server.addr = listening
            .split("listening on ")
            .nth(1)
            .unwrap()
            .chars()
            .take_while(|c| c.is_ascii_hexdigit() || ".:[]".contains(*c))
            .collect();
        server
    }

    /// Waits (at most `PATIENCE`) for the server to exit, then reads its
    /// stderr to the end, so `count_stderr` afterwards sees every line.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let status = exit_within(&mut self.child, PATIENCE).expect("serve did not exit");
        self.read_stderr_to_end();
        status
    }

    /// Reads stderr until its end (at most `PATIENCE`).
    fn read_stderr_to_end(&mut self) {
        let deadline = std::time::Instant::now() + PATIENCE;
        while !self.stderr_done {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) => self.stderr.lock().unwrap().push((line, false)),
                Err(mpsc::RecvTimeoutError::Disconnected) => self.stderr_done = true,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("serve's stderr never ended"),
            }
        }
    }

    /// Every stderr line read so far, in order.
    pub fn stderr_text(&self) -> Vec<String> {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .map(|(line, _)| line.clone())
            .collect()
    }

    /// Sends `signal` (e.g. "-INT") to the server.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// A line of /proc/PID/status, in kB (VmHWM, VmRSS).
    pub fn proc_status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// How many descriptors the server holds open (/proc/PID/fd).
    pub fn open_descriptors(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|dir| dir.count())
            .unwrap_or(0)
    }

    /// Polls `done` until it holds, at most `PATIENCE`.
    pub fn wait_until(&self, done: impl Fn(&Self) -> bool) {
        let deadline = std::time::Instant::now() + PATIENCE;
        while !done(self) {
            assert!(
                std::time::Instant::now() < deadline,
                "serve never got there"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// CPU time used so far, in clock ticks (utime + stime).
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after_name.split(' ').collect();
        // Fields 14 and 15 of stat(5), counted from after the name (field 3).
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// Stderr lines seen so far that contain `pattern` (after reading what
    /// has arrived). Exact only once the server has exited (`wait_exit`
    /// reads stderr to its end); before, a line still in the pipe is missed.
    pub fn count_stderr(&self, pattern: &str) -> usize {
        let mut seen = self.stderr.lock().unwrap();
        while let Ok(line) = self.stderr_lines.try_recv() {
            seen.push((line, false));
        }
        seen.iter().filter(|(l, _)| l.contains(pattern)).count()
    }

    /// The next line the server prints on stdout.
    pub fn next_line(&self) -> String {
        self.stdout
            .recv_timeout(PATIENCE)
            .expect("serve printed no line in time")
    }

    /// Waits until a stderr line that no earlier call matched contains
    /// `pattern`; returns it. Each line is matched at most once, so waiting
    /// twice for the same text waits for two lines.
    pub fn wait_stderr(&self, pattern: &str) -> String {
        let mut seen = self.stderr.lock().unwrap();
        if let Some((line, matched)) = seen
            .iter_mut()
            .find(|(l, matched)| !*matched && l.contains(pattern))
        {
            *matched = true;
            return line.clone();
        }
        loop {
            let line = self
                .stderr_lines
                .recv_timeout(PATIENCE)
                .unwrap_or_else(|_| panic!("serve never logged {pattern:?}"));
            let matched = line.contains(pattern);
            seen.push((line.clone(), matched));
            if matched {
                return line;
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process killed when the test ends, however it ends (a failed
/// assertion must not leave a client running).
pub struct Reaped(pub Child);

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits at most `limit` for `child` to exit: its status, or `None` if it
/// is still running.
pub fn exit_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

pub fn lines(reader: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            match line {
                Ok(line) => {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    rx
}

pub fn send(ws: &Workspace, server: &Server, key: &str, messages: &[&str], stdin: &str) -> Output {
    let mut args = ws.send_args(&server.addr, key, "pki/ca.pem");
    args.extend(messages.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&args, stdin)
}

/// A free port on 127.0.0.1 for the metrics listener (the exporter binds
/// the address it is given, so the test picks one).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 GET of the metrics endpoint: the body.
pub fn scrape(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_lowercase().contains("content-type: text/plain"),
        "{head}"
    );
    body.to_owned()
}

/// The value of the sample named exactly `series` (name and labels).
pub fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Scrapes until every expected sample has its value (the counters of a
/// connection move just after its last log line), at most `PATIENCE`.
pub fn scrape_until(addr: &str, expected: &[(&str, f64)]) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let body = scrape(addr);
        if expected.iter().all(|(s, v)| sample(&body, s) == Some(*v)) || Instant::now() > deadline {
            return body;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
