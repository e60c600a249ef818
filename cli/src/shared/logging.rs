//! Log set-up: where log lines go, in which form, at which level.

use std::io::IsTerminal;

/// Logs go to stderr: prose lines, coloured when stderr is a terminal and
/// `NO_COLOR` is unset or empty (no-color.org), or one JSON object per
/// line when `json` (`serve --log-format json`). The level is info, moved
/// by `-v` (`verbose`) and `-q` (`quiet`); `RUST_LOG`, when set, decides
/// instead.
pub(crate) fn init(verbose: u8, quiet: u8, json: bool) {
    let level = match (verbose, quiet) {
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
    if json {
        logs.json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init();
    } else {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        logs.with_ansi(std::io::stderr().is_terminal() && !no_color)
            .init();
    }
}
