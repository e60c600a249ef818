//! `secure-link`: the command-line face of the crate. A demo of the whole
//! link, certificate and key generation, a server and a sender for shell
//! pipelines.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 usage error.

/// `println!` that does not panic when stdout is closed early (as in
/// `secure-link demo | head`): the report is informational, so a reader
/// that went away just ends it.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod bench;
mod demo;
mod files;
mod format;
mod generate;
mod keepalive;
mod relay;
mod send;
mod serve;
mod values;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// An authenticated message link over TLS 1.3: length | payload | HMAC-SHA256
/// frames.
#[derive(Debug, Parser)]
#[command(name = "secure-link", version, about)]
struct Cli {
    /// More log output: -v debug, -vv trace (RUST_LOG, when set, decides
    /// instead).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Less log output: -q warnings and errors, -qq errors, -qqq nothing.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    quiet: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the whole link working on this machine, with nothing to set up.
    Demo(demo::Args),
    /// Make a CA and a server certificate: ca.pem, server-chain.pem,
    /// server-key.pem.
    GenCerts(generate::CertsArgs),
    /// Make a random 32-byte HMAC key, written as 64 hex digits.
    GenKey(generate::KeyArgs),
    /// Accept secure links and print each authenticated message as a line.
    Serve(serve::Args),
    /// Send messages (arguments, or the lines of stdin) over a secure link.
    Send(send::Args),
    /// Measure throughput against raw TLS framing and a hand-written codec.
    Bench(bench::Args),
    /// Print a shell completion script: `secure-link completions bash >
    /// /etc/bash_completion.d/secure-link`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `secure-link man > secure-link.1`.
    Man,
}

fn main() -> ExitCode {
    let cli = Cli::parse(); // exits with 2 on a usage error
    init_logging(&cli);

    let result = match cli.command {
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "secure-link", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
            .render(&mut std::io::stdout())
            .map_err(|err| Error::msg(format!("cannot write the man page: {err}"))),
        Command::GenCerts(args) => generate::certs(&args),
        Command::GenKey(args) => generate::key(&args),
        Command::Demo(args) => block_on(demo::run(args)),
        Command::Serve(args) => block_on(serve::run(args)),
        Command::Send(args) => block_on(send::run(args)),
        Command::Bench(args) => block_on(bench::run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("secure-link: error: {err}");
            ExitCode::from(1)
        }
    }
}

/// Logs go to stderr: prose lines, coloured when stderr is a terminal and
/// `NO_COLOR` is unset or empty (no-color.org), or one JSON object per
/// line for `serve --log-format json`. The level is info, moved by
/// `-v`/`-q`; `RUST_LOG`, when set, decides instead.
fn init_logging(cli: &Cli) {
    let level = match (cli.verbose, cli.quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (2.., _) => "trace",
        (_, 1) => "warn",
        (_, 2) => "error",
        (_, 3..) => "off",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_env_filter(filter);
    match &cli.command {
        Command::Serve(args) if args.log_format == serve::LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
        _ => {
            let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
            logs.with_ansi(std::io::stderr().is_terminal() && !no_color)
                .init()
        }
    }
}

/// Runs `job` on a multi-threaded runtime. The runtime is not waited for
/// afterwards: a write to a stalled stdout may still hold one of its
/// blocking threads, and the outcome is already known.
fn block_on(job: impl std::future::Future<Output = Result<(), Error>>) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| Error::msg(format!("cannot start the async runtime: {err}")))?;
    let outcome = runtime.block_on(job);
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    outcome
}

/// The tag mode a `--session-bound` flag selects.
pub(crate) fn auth_mode(session_bound: bool) -> secure_link::AuthMode {
    if session_bound {
        secure_link::AuthMode::SessionBound
    } else {
        secure_link::AuthMode::Lab
    }
}

/// A failure to report to the user: one line, naming the cause.
#[derive(Debug)]
pub(crate) struct Error(String);

impl Error {
    pub(crate) fn msg(message: impl Into<String>) -> Self {
        Error(message.into())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<secure_link::LinkError> for Error {
    fn from(err: secure_link::LinkError) -> Self {
        Error(files::explain(&err))
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error(err.to_string())
    }
}
