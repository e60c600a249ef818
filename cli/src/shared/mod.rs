//! What every subcommand shares: the error it reports ([`Error`]), flag
//! values clap cannot check alone ([`values`]), log set-up ([`logging`]),
//! the async runtime ([`runtime`]) and `outln!` (in `print.rs`).

#[macro_use]
mod print;
mod error;
pub(crate) mod logging;
pub(crate) mod runtime;
pub(crate) mod values;

pub(crate) use error::Error;
