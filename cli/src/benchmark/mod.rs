//! The link benchmark shared by `secure-link bench` and `benches/link.rs`:
//! this crate against the same peers on the same machine, in the same run,
//! one file per scenario (`throughput.rs`, `latency.rs`, `connections.rs`,
//! `memory.rs`, `handshakes.rs`) and one for the peers (`peers.rs`).
//!
//! * **ours**: [`SecureConnector`] / [`SecureAcceptor`].
//! * **P1**: tokio-rustls + tokio-util `LengthDelimitedCodec` on the same
//!   TLS configurations, with the same 128 KiB write buffer: no HMAC at all,
//!   the ceiling.
//! * **P2**: tokio-rustls + a straightforward hand-written
//!   `len | payload | HMAC` codec (keyed per message) with default `Framed`
//!   settings, on the same TLS configurations.
//! * **P2b**: P2 as a careful author writes it: HMAC keyed once and the
//!   keyed state cloned per frame; still default `Framed`.
//! * **P3**: P2 on tokio-rustls' out-of-the-box configuration (the
//!   provider's default suites and key exchange, TLS 1.2 and 1.3, session
//!   tickets).
//!
//! Not part of the stable API.

mod connections;
mod handshakes;
mod latency;
mod memory;
mod peers;
mod throughput;

use secure_link::tokio_rustls;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls::{ClientConfig, ServerConfig};

use secure_link::{HmacKey, LinkError, SecureAcceptor, SecureConnector, tls};

pub use connections::{FanIn, fan_in};
pub use handshakes::{Handshaker, KxGroup, ServerKey, cases as handshake_cases, handshakes};
pub use latency::{Ends, Latency, round_trips};
pub use memory::{IdleMemory, Meter, SETTLE, idle_connections};
pub use throughput::transfer;

/// The implementation under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// This crate.
    Ours,
    /// tokio-rustls + `LengthDelimitedCodec`, no HMAC (the ceiling).
    P1,
    /// tokio-rustls + a hand-written HMAC codec, default `Framed`.
    P2,
    /// P2 with the HMAC keyed once and cloned per frame.
    P2b,
    /// P2 on tokio-rustls' default TLS configuration.
    P3,
}

impl Peer {
    /// All five, in table order.
    pub const ALL: [Peer; 5] = [Peer::Ours, Peer::P1, Peer::P2, Peer::P2b, Peer::P3];
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Peer::Ours => "ours",
            Peer::P1 => "P1",
            Peer::P2 => "P2",
            Peer::P2b => "P2b",
            Peer::P3 => "P3",
        })
    }
}

/// The byte stream under the TLS link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// `tokio::io::duplex` with a 1 MiB buffer.
    Duplex,
    /// TCP over 127.0.0.1 (Nagle off).
    Tcp,
}

/// How the client hands messages to the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `feed` every message, one `flush` at the end (what `send_all` does).
    Batched,
    /// `send` (encode + flush) each message.
    PerMessage,
}

/// Certificates, key and TLS configurations shared by all runs. Cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct Setup {
    pub(crate) key: HmacKey,
    pub(crate) ours_client: Arc<ClientConfig>,
    pub(crate) ours_server: Arc<ServerConfig>,
    pub(crate) default_client: Arc<ClientConfig>,
    pub(crate) default_server: Arc<ServerConfig>,
}

impl Setup {
    /// Fresh certificates and key; the configurations of every peer.
    ///
    /// # Errors
    ///
    /// Certificate generation or configuration failures.
    pub fn new() -> Result<Self, LinkError> {
        let pki = secure_link::certs::generate(&["localhost"])?;
        Ok(Setup {
            key: HmacKey::generate()?,
            ours_client: tls::client_config(&pki.ca_pem)?,
            ours_server: tls::server_config(&pki.chain_pem, &pki.key_pem)?,
            default_client: peers::default_client_config(&pki)?,
            default_server: peers::default_server_config(&pki)?,
        })
    }

    /// A connector and an acceptor of this crate.
    pub fn ours(&self) -> (SecureConnector, SecureAcceptor) {
        (
            SecureConnector::from_config(self.ours_client.clone(), &self.key),
            SecureAcceptor::from_config(self.ours_server.clone(), &self.key),
        )
    }
}

/// One measured transfer.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// From the first message handed to the client until the server has
    /// received the last one.
    pub elapsed: Duration,
    /// Payload bytes moved.
    pub bytes: u64,
    /// Messages moved.
    pub messages: u64,
    /// CPU time the whole process (both ends, and anything else it ran)
    /// spent over the same span, on Linux; `None` elsewhere.
    pub cpu: Option<Duration>,
}

impl Sample {
    /// Payload throughput in MB/s (10^6 bytes).
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }

    /// Messages per second.
    pub fn messages_per_s(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// CPU time per message, both ends together.
    pub fn cpu_per_message(&self) -> Option<Duration> {
        let messages = u32::try_from(self.messages.max(1)).ok()?;
        self.cpu.map(|cpu| cpu / messages)
    }

    /// CPU nanoseconds per payload byte, both ends together.
    pub fn cpu_ns_per_byte(&self) -> Option<f64> {
        self.cpu
            .map(|cpu| cpu.as_secs_f64() * 1e9 / self.bytes.max(1) as f64)
    }

    /// How many cores were busy on average: CPU time over elapsed time
    /// (2.0 is both cores of a 2-core machine all the time).
    pub fn cores_busy(&self) -> Option<f64> {
        self.cpu
            .map(|cpu| cpu.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-9))
    }
}

/// A connected pair of TCP streams over 127.0.0.1 (Nagle off): client end,
/// server end.
pub(crate) async fn tcp_pair() -> Result<(tokio::net::TcpStream, tokio::net::TcpStream), LinkError>
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (client, accepted) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
    let (client, server) = (client?, accepted?.0);
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    Ok((client, server))
}

/// CPU time this process has spent so far, all its threads
/// (`CLOCK_PROCESS_CPUTIME_ID`); on Linux, the only platform this is built
/// and checked on, else `None`.
pub(crate) fn cpu_time() -> Option<Duration> {
    #[cfg(target_os = "linux")]
    {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
        Some(Duration::new(
            u64::try_from(now.tv_sec).ok()?,
            u32::try_from(now.tv_nsec).ok()?,
        ))
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// CPU time this process has spent since `before` (a reading of
/// [`cpu_time`]), all its threads; `None` where there is no such clock.
pub(crate) fn cpu_since(before: Option<Duration>) -> Option<Duration> {
    before
        .zip(cpu_time())
        .map(|(before, now)| now.saturating_sub(before))
}

/// The duplex buffer of [`Transport::Duplex`].
pub(crate) const DUPLEX_BUFFER: usize = 1024 * 1024;

/// The median of `samples` by throughput.
pub fn median(samples: &[Sample]) -> Option<Sample> {
    let mut sorted = samples.to_vec();
    sorted.sort_by_key(|s| s.elapsed);
    sorted.get(sorted.len() / 2).copied()
}
