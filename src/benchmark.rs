//! The link benchmark shared by `secure-link bench` and `benches/link.rs`:
//! this crate against three peers on the same machine, in the same run.
//!
//! * **ours**: [`SecureConnector`] / [`SecureAcceptor`].
//! * **P1**: tokio-rustls + tokio-util `LengthDelimitedCodec` on the same
//!   TLS configurations, with the same 128 KiB write buffer: no HMAC at all,
//!   the ceiling.
//! * **P2**: tokio-rustls + a straightforward hand-written
//!   `len | payload | HMAC` codec (keyed per message) with default `Framed`
//!   settings, on the same TLS configurations.
//! * **P3**: P2 on tokio-rustls' out-of-the-box configuration (the
//!   provider's default suites and key exchange, TLS 1.2 and 1.3, session
//!   tickets).
//!
//! Not part of the stable API.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::{Sink, SinkExt, Stream, StreamExt};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls::{self, ClientConfig, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::codec::{Decoder, Encoder, Framed, LengthDelimitedCodec};

use crate::certs::CertBundle;
use crate::{HmacKey, LinkError, SecureAcceptor, SecureConnector, tls};

/// The implementation under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// This crate.
    Ours,
    /// tokio-rustls + `LengthDelimitedCodec`, no HMAC (the ceiling).
    P1,
    /// tokio-rustls + a hand-written HMAC codec, default `Framed`.
    P2,
    /// P2 on tokio-rustls' default TLS configuration.
    P3,
}

impl Peer {
    /// All four, in table order.
    pub const ALL: [Peer; 4] = [Peer::Ours, Peer::P1, Peer::P2, Peer::P3];
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Peer::Ours => "ours",
            Peer::P1 => "P1",
            Peer::P2 => "P2",
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

/// Certificates, key and TLS configurations shared by all runs.
#[derive(Debug)]
pub struct Setup {
    key: HmacKey,
    ours_client: Arc<ClientConfig>,
    ours_server: Arc<ServerConfig>,
    default_client: Arc<ClientConfig>,
    default_server: Arc<ServerConfig>,
}

impl Setup {
    /// Fresh certificates and key; the configurations of every peer.
    ///
    /// # Errors
    ///
    /// Certificate generation or configuration failures.
    pub fn new() -> Result<Self, LinkError> {
        let pki = crate::certs::generate(&["localhost"])?;
        Ok(Setup {
            key: HmacKey::generate()?,
            ours_client: tls::client_config(&pki.ca_pem)?,
            ours_server: tls::server_config(&pki.chain_pem, &pki.key_pem)?,
            default_client: default_client_config(&pki)?,
            default_server: default_server_config(&pki)?,
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

/// rustls' default provider for this build: what `ClientConfig::builder()`
/// would pick (aws-lc-rs when enabled).
fn default_provider() -> Arc<rustls::crypto::CryptoProvider> {
    #[cfg(feature = "aws-lc-rs")]
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    let provider = rustls::crypto::ring::default_provider();
    Arc::new(provider)
}

fn default_client_config(pki: &CertBundle) -> Result<Arc<ClientConfig>, LinkError> {
    let config = ClientConfig::builder_with_provider(default_provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(tls::root_store(&pki.ca_pem)?)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn default_server_config(pki: &CertBundle) -> Result<Arc<ServerConfig>, LinkError> {
    let (chain, key) = tls::cert_and_key(&pki.chain_pem, &pki.key_pem)?;
    let config = ServerConfig::builder_with_provider(default_provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
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
}

/// Sends `count` messages of `size` bytes client → server with `peer` over
/// `transport` and times it (the handshake is not timed). Must run on a
/// multi-threaded runtime so both ends get a core.
///
/// # Errors
///
/// Any link failure, or a receiver that counted the wrong bytes.
pub async fn transfer(
    setup: &Setup,
    peer: Peer,
    transport: Transport,
    mode: Mode,
    size: usize,
    count: usize,
) -> Result<Sample, LinkError> {
    match transport {
        Transport::Duplex => {
            let (client, server) = tokio::io::duplex(1024 * 1024);
            transfer_over(setup, peer, mode, size, count, client, server).await
        }
        Transport::Tcp => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let (client, accepted) =
                tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
            let (client, server) = (client?, accepted?.0);
            client.set_nodelay(true)?;
            server.set_nodelay(true)?;
            transfer_over(setup, peer, mode, size, count, client, server).await
        }
    }
}

async fn transfer_over<C, S>(
    setup: &Setup,
    peer: Peer,
    mode: Mode,
    size: usize,
    count: usize,
    client_io: C,
    server_io: S,
) -> Result<Sample, LinkError>
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let max = size.max(1024);
    match peer {
        Peer::Ours => {
            let (connector, acceptor) = setup.ours();
            let (connector, acceptor) = (
                connector.with_max_frame_len(max),
                acceptor.with_max_frame_len(max),
            );
            let (client, server) = tokio::join!(
                connector.connect("localhost", client_io),
                acceptor.accept(server_io)
            );
            pump(client?, server?, mode, size, count).await
        }
        Peer::P1 => {
            let (client, server) =
                raw_tls(&setup.ours_client, &setup.ours_server, client_io, server_io).await?;
            let codec = || {
                LengthDelimitedCodec::builder()
                    .max_frame_length(max)
                    .new_codec()
            };
            let mut client = Framed::new(client, codec());
            client.set_backpressure_boundary(128 * 1024);
            let server = Framed::new(server, codec());
            pump(client, server, mode, size, count).await
        }
        Peer::P2 | Peer::P3 => {
            let (client_config, server_config) = if peer == Peer::P2 {
                (&setup.ours_client, &setup.ours_server)
            } else {
                (&setup.default_client, &setup.default_server)
            };
            let (client, server) =
                raw_tls(client_config, server_config, client_io, server_io).await?;
            let codec = NaiveHmacCodec {
                key: setup.key.as_bytes().to_vec(),
                max,
            };
            let client = Framed::new(client, codec.clone());
            let server = Framed::new(server, codec);
            pump(client, server, mode, size, count).await
        }
    }
}

async fn raw_tls<C, S>(
    client_config: &Arc<ClientConfig>,
    server_config: &Arc<ServerConfig>,
    client_io: C,
    server_io: S,
) -> Result<
    (
        tokio_rustls::client::TlsStream<C>,
        tokio_rustls::server::TlsStream<S>,
    ),
    LinkError,
>
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = tls::server_name("localhost")?;
    let (client, server) = tokio::join!(
        TlsConnector::from(client_config.clone()).connect(name, client_io),
        TlsAcceptor::from(server_config.clone()).accept(server_io)
    );
    Ok((client?, server?))
}

async fn pump<K, R, T, E1, E2>(
    mut client: K,
    mut server: R,
    mode: Mode,
    size: usize,
    count: usize,
) -> Result<Sample, LinkError>
where
    K: Sink<Bytes, Error = E1> + Unpin,
    R: Stream<Item = Result<T, E2>> + Unpin + Send + 'static,
    T: AsRef<[u8]>,
    LinkError: From<E1> + From<E2>,
{
    let message = Bytes::from(vec![0x5a; size]);
    let receiver = tokio::spawn(async move {
        let mut bytes = 0u64;
        for _ in 0..count {
            match server.next().await {
                Some(Ok(m)) => bytes += m.as_ref().len() as u64,
                Some(Err(err)) => return Err(LinkError::from(err)),
                None => return Err(LinkError::Truncated),
            }
        }
        Ok((Instant::now(), bytes, server))
    });
    let started = Instant::now();
    for _ in 0..count {
        match mode {
            Mode::Batched => client.feed(message.clone()).await?,
            Mode::PerMessage => client.send(message.clone()).await?,
        }
    }
    client.flush().await?;
    let (finished, bytes, server) = receiver
        .await
        .map_err(|e| LinkError::Io(std::io::Error::other(e)))??;
    drop((client, server));
    let expected = (size * count) as u64;
    if bytes != expected {
        return Err(LinkError::Io(std::io::Error::other(format!(
            "the receiver counted {bytes} payload bytes, expected {expected}"
        ))));
    }
    Ok(Sample {
        elapsed: finished - started,
        bytes,
        messages: count as u64,
    })
}

/// The straightforward codec a user would write first: re-keys HMAC per
/// message, waits for the whole frame before reserving.
#[derive(Clone)]
struct NaiveHmacCodec {
    key: Vec<u8>,
    max: usize,
}

impl NaiveHmacCodec {
    fn mac(&self) -> Hmac<Sha256> {
        match <Hmac<Sha256> as Mac>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts any key length"),
        }
    }
}

impl Encoder<Bytes> for NaiveHmacCodec {
    type Error = LinkError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), LinkError> {
        let mut mac = self.mac();
        mac.update(&item);
        dst.put_u32(item.len() as u32);
        dst.extend_from_slice(&item);
        dst.extend_from_slice(&mac.finalize().into_bytes());
        Ok(())
    }
}

impl Decoder for NaiveHmacCodec {
    type Item = Bytes;
    type Error = LinkError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, LinkError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len > self.max {
            return Err(LinkError::FrameTooLarge {
                len: len as u64,
                max: self.max as u64,
            });
        }
        if src.len() < 4 + len + 32 {
            return Ok(None);
        }
        src.advance(4);
        let payload = src.split_to(len).freeze();
        let tag = src.split_to(32);
        let mut mac = self.mac();
        mac.update(&payload);
        mac.verify_slice(&tag).map_err(|_| LinkError::InvalidHmac)?;
        Ok(Some(payload))
    }
}

impl fmt::Debug for NaiveHmacCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NaiveHmacCodec").finish_non_exhaustive()
    }
}

/// The median of `samples` by throughput.
pub fn median(samples: &[Sample]) -> Option<Sample> {
    let mut sorted = samples.to_vec();
    sorted.sort_by_key(|s| s.elapsed);
    sorted.get(sorted.len() / 2).copied()
}
