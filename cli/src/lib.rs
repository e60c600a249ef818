//! The benchmark harness of the `secure-link` tool, shared by
//! `secure-link bench`, `benches/link.rs` and the tool's tests. Hidden:
//! not an API, and not published for use by other crates. The library is
//! the `secure-link` crate.
#![forbid(unsafe_code)]

#[doc(hidden)]
pub mod benchmark;
