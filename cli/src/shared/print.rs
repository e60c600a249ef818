//! `outln!`: the report lines subcommands print to stdout.

/// `println!` that does not panic when stdout is closed early (as in
/// `secure-link demo | head`): the report is informational, so a reader
/// that went away just ends it.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
