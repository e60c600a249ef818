//! The `secure-link` command-line tool.

fn main() {}
