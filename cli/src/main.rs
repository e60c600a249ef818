//! `secure-link`: the command-line face of the crate. A demo of the whole
//! link, certificate and key generation, a server and a sender for shell
//! pipelines.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 usage error.

#[macro_use]
mod shared;

mod bench;
mod demo;
mod files;
mod format;
mod generate;
mod keepalive;
mod relay;
mod send;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use shared::Error;
use shared::runtime::block_on;

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
    let json_logs =
        matches!(&cli.command, Command::Serve(args) if args.log_format == serve::LogFormat::Json);
    shared::logging::init(cli.verbose, cli.quiet, json_logs);

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
