//! # secure-link
//!
//! An authenticated message link between two nodes, over any reliable byte
//! stream (TCP, Unix socket, in-memory pipe):
//!
//! * **TLS 1.3** (rustls) protects the link; the client authenticates the
//!   server with a root certificate.
//! * Inside TLS every message is one frame,
//!   `u32 big-endian length | payload | HMAC-SHA256(key, payload)`, and the
//!   shared HMAC key authorises the client. A frame whose tag does not
//!   verify is an error; see [`codec`] for the format.
//!
//! The async API is a [`futures::Sink`] of [`Bytes`](bytes::Bytes) on the
//! client ([`SecureClient`]) and a [`futures::Stream`] of messages on the
//! server ([`SecureServer`]), both full duplex. The [`HmacFrameCodec`] under
//! them is an ordinary tokio-util codec.
//!
//! # Example
//!
//! A client and a server over an in-memory pipe, with certificates made on
//! the spot (feature `certs`):
//!
//! ```
//! use bytes::Bytes;
//! use futures::{SinkExt, StreamExt};
//! use secure_link::{certs, HmacKey, SecureAcceptor, SecureConnector};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), secure_link::LinkError> {
//! let bundle = certs::generate(&["localhost"])?;
//! let key = HmacKey::generate()?;
//! let acceptor = SecureAcceptor::new(&bundle.chain_pem, &bundle.key_pem, &key)?;
//! let connector = SecureConnector::new(&bundle.ca_pem, &key)?;
//!
//! let (client_io, server_io) = tokio::io::duplex(64 * 1024);
//! let server = tokio::spawn(async move {
//!     let mut server = acceptor.accept(server_io).await?;
//!     let mut received = Vec::new();
//!     while let Some(message) = server.next().await {
//!         received.push(message?);
//!     }
//!     server.close().await?; // answer the client's close_notify
//!     Ok::<_, secure_link::LinkError>(received)
//! });
//!
//! let mut client = connector.connect("localhost", client_io).await?;
//! client.send(Bytes::from("hello")).await?;
//! client.send(Bytes::from("world")).await?;
//! client.close().await?;
//!
//! let received = server.await.expect("server task")?;
//! assert_eq!(received, ["hello", "world"]);
//! # Ok(())
//! # }
//! ```
//!
//! # Where to go next
//!
//! * Servers: [`SecureAcceptor`] times out handshakes (10 s by default) and
//!   can bound the wait for the first message and the silence between
//!   messages ([`SecureAcceptor::with_first_message_timeout`],
//!   [`SecureAcceptor::with_idle_timeout`]). After the stream ends, call
//!   `close()` to answer the client's `close_notify`.
//! * Clients: [`SecureClient`]'s `close()` waits (bounded) for the server's
//!   `close_notify`, so a write-only client loses nothing to a TCP reset.
//! * [`AuthMode::SessionBound`] binds tags to the TLS session and to each
//!   message's position (opt-in; both ends must use it).
//! * [`resilient`]: links that survive failures (opt-in, negotiated by
//!   ALPN): heartbeats, reconnect and resume, each message delivered
//!   exactly once and in order while both ends live, with the outbox,
//!   the session table and every wait bounded.
//! * [`blocking`]: the lab's blocking interface on the same codec.
//! * [`LinkError`]: every failure, as its own variant.
//!
//! # Features
//!
//! * `aws-lc-rs` (default) or `ring`: the rustls crypto provider
//!   ([`tls`] explains the choice).
//! * `certs`: `certs::generate`, a CA and a server certificate via rcgen.
//!
//! The `secure-link` command-line tool is its own package,
//! `secure-link-cli` (`cargo install secure-link-cli`), built on this one.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod blocking;
#[cfg(feature = "certs")]
pub mod certs;
mod client;
pub mod codec;
mod deadline;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod identity;
mod key;
mod link;
mod reload;
pub mod resilient;
mod revocation;
mod server;
pub mod tls;
mod wakers;
mod write_deadline;

pub use client::{DEFAULT_CLOSE_TIMEOUT, SecureClient, SecureConnector};
pub use codec::{AuthMode, DEFAULT_MAX_FRAME_LEN, HmacFrameCodec, LENGTH_LEN, TAG_LEN};
pub use error::LinkError;
pub use key::{GENERATED_KEY_LEN, HmacKey, MIN_FINGERPRINT_KEY_LEN, SHORT_KEY_FINGERPRINT};
pub use reload::{AcceptorChanges, ReloadableAcceptor};
pub use revocation::Revoked;
pub use server::{DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_WRITE_TIMEOUT, SecureAcceptor, SecureServer};
pub use tokio_rustls::{self, rustls};

/// The README's code examples, compiled and run as doctests.
#[cfg(all(doctest, feature = "certs"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
