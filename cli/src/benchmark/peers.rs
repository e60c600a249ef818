//! The implementations measured against this crate (see the module
//! documentation of `benchmark`), and the one way every scenario connects
//! a client and a server of any of them.

use secure_link::tokio_rustls;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::{Sink, Stream};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls::{self, ClientConfig, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::codec::{Decoder, Encoder, Framed, LengthDelimitedCodec};

use super::{DUPLEX_BUFFER, Peer, Setup, Transport, tcp_pair};
use secure_link::certs::CertBundle;
use secure_link::{LinkError, tls};

/// One end of a link of any peer: a sink of messages and a stream of
/// what the other end sent, with the peer's own message and error types.
pub(crate) trait LinkEnd<T, E1, E2>:
    Sink<Bytes, Error = E1> + Stream<Item = Result<T, E2>> + Unpin + Send + 'static
{
}

impl<L, T, E1, E2> LinkEnd<T, E1, E2> for L where
    L: Sink<Bytes, Error = E1> + Stream<Item = Result<T, E2>> + Unpin + Send + 'static
{
}

/// A scenario run over one link: given the client and the server end of
/// whichever peer, it measures something.
pub(crate) trait OverLink {
    type Output;

    fn run<T, E1, E2>(
        self,
        client: impl LinkEnd<T, E1, E2>,
        server: impl LinkEnd<T, E1, E2>,
    ) -> impl Future<Output = Result<Self::Output, LinkError>>
    where
        T: AsRef<[u8]> + Into<Bytes> + Send + 'static,
        E1: Send + 'static,
        E2: Send + 'static,
        LinkError: From<E1> + From<E2>;
}

/// Connects a client and a server of `peer` over a fresh byte stream of
/// `transport` and runs `job` on them; frames up to `max` bytes. Each
/// transport keeps its concrete stream type: boxing them cost every peer
/// about 5% at 64 B (BENCHMARKS.md).
pub(crate) async fn run_on<J: OverLink>(
    setup: &Setup,
    peer: Peer,
    transport: Transport,
    max: usize,
    job: J,
) -> Result<J::Output, LinkError> {
    match transport {
        Transport::Duplex => {
            let (client, server) = tokio::io::duplex(DUPLEX_BUFFER);
            run_over(setup, peer, max, client, server, job).await
        }
        Transport::Tcp => {
            let (client, server) = tcp_pair().await?;
            run_over(setup, peer, max, client, server, job).await
        }
    }
}

/// Connects a client and a server of `peer` over `client_io`/`server_io`
/// (the handshake is not part of any measurement) and runs `job` on them.
pub(crate) async fn run_over<C, S, J>(
    setup: &Setup,
    peer: Peer,
    max: usize,
    client_io: C,
    server_io: S,
    job: J,
) -> Result<J::Output, LinkError>
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    J: OverLink,
{
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
            job.run(client?, server?).await
        }
        Peer::P1 => {
            let (client, server) =
                raw_tls(&setup.ours_client, &setup.ours_server, client_io, server_io).await?;
            job.run(p1_framed(client, max), p1_framed(server, max))
                .await
        }
        Peer::P2 | Peer::P2b | Peer::P3 => {
            let (client_config, server_config) = tls_configs(setup, peer);
            let (client, server) =
                raw_tls(client_config, server_config, client_io, server_io).await?;
            let codec = HandWrittenHmacCodec::for_peer(setup, peer, max);
            let client = Framed::new(client, codec.clone());
            let server = Framed::new(server, codec);
            job.run(client, server).await
        }
    }
}

/// A job on one end of a link of any peer (the other end runs elsewhere).
pub(crate) trait OverEnd {
    type Output;

    fn run<T, E1, E2>(
        self,
        end: impl LinkEnd<T, E1, E2>,
    ) -> impl Future<Output = Result<Self::Output, LinkError>>
    where
        T: AsRef<[u8]> + Into<Bytes> + Send + 'static,
        E1: Send + 'static,
        E2: Send + 'static,
        LinkError: From<E1> + From<E2>;
}

/// Connects the client end of `peer` over `io` and runs `job` on it.
pub(crate) async fn on_client_end<C, J>(
    setup: &Setup,
    peer: Peer,
    max: usize,
    io: C,
    job: J,
) -> Result<J::Output, LinkError>
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    J: OverEnd,
{
    let name = tls::server_name("localhost")?;
    match peer {
        Peer::Ours => {
            let (connector, _) = setup.ours();
            let client = connector
                .with_max_frame_len(max)
                .connect("localhost", io)
                .await?;
            job.run(client).await
        }
        Peer::P1 => {
            let tls = TlsConnector::from(setup.ours_client.clone())
                .connect(name, io)
                .await?;
            job.run(p1_framed(tls, max)).await
        }
        Peer::P2 | Peer::P2b | Peer::P3 => {
            let (config, _) = tls_configs(setup, peer);
            let tls = TlsConnector::from(config.clone()).connect(name, io).await?;
            let codec = HandWrittenHmacCodec::for_peer(setup, peer, max);
            job.run(Framed::new(tls, codec)).await
        }
    }
}

/// Accepts the server end of `peer` over `io` and runs `job` on it.
pub(crate) async fn on_server_end<S, J>(
    setup: &Setup,
    peer: Peer,
    max: usize,
    io: S,
    job: J,
) -> Result<J::Output, LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    J: OverEnd,
{
    match peer {
        Peer::Ours => {
            let (_, acceptor) = setup.ours();
            let server = acceptor.with_max_frame_len(max).accept(io).await?;
            job.run(server).await
        }
        Peer::P1 => {
            let tls = TlsAcceptor::from(setup.ours_server.clone())
                .accept(io)
                .await?;
            job.run(p1_framed(tls, max)).await
        }
        Peer::P2 | Peer::P2b | Peer::P3 => {
            let (_, config) = tls_configs(setup, peer);
            let tls = TlsAcceptor::from(config.clone()).accept(io).await?;
            let codec = HandWrittenHmacCodec::for_peer(setup, peer, max);
            job.run(Framed::new(tls, codec)).await
        }
    }
}

/// Runs `server` on the server end of a `peer` link over 127.0.0.1 TCP on
/// a thread of its own (its own current-thread runtime, which registers
/// and polls its own socket), and `client` on the client end where this is
/// awaited: the two ends of a link between two nodes, each with a core
/// to itself, placed the same way for every peer and every run.
pub(crate) async fn run_apart<C, S>(
    setup: &Setup,
    peer: Peer,
    max: usize,
    client: C,
    server: S,
) -> Result<C::Output, LinkError>
where
    C: OverEnd,
    S: OverEnd + Send + 'static,
    S::Output: Send + 'static,
{
    let (client_io, server_io) = tcp_pair().await?;
    // Out of this runtime's reactor, into the server thread's.
    let server_io = server_io.into_std()?;
    let (done, served) = tokio::sync::oneshot::channel();
    let server_setup = setup.clone();
    std::thread::Builder::new()
        .name("bench-server".into())
        .spawn(move || {
            let outcome = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(LinkError::from)
                .and_then(|runtime| {
                    runtime.block_on(async {
                        let io = tokio::net::TcpStream::from_std(server_io)?;
                        on_server_end(&server_setup, peer, max, io, server).await
                    })
                });
            // The client may have given up already; nothing to tell.
            let _ = done.send(outcome);
        })?;
    let outcome = on_client_end(setup, peer, max, client_io, client).await;
    let served = served
        .await
        .map_err(|_| LinkError::Io(std::io::Error::other("the server thread panicked")))?;
    let output = outcome?;
    served?;
    Ok(output)
}

/// The TLS configurations `peer` runs on: tokio-rustls' defaults for P3,
/// this crate's for every other peer. Client, server.
fn tls_configs(setup: &Setup, peer: Peer) -> (&Arc<ClientConfig>, &Arc<ServerConfig>) {
    if peer == Peer::P3 {
        (&setup.default_client, &setup.default_server)
    } else {
        (&setup.ours_client, &setup.ours_server)
    }
}

/// P1's end over a TLS stream: `LengthDelimitedCodec` with the same
/// 128 KiB write buffer as ours.
fn p1_framed<T: AsyncRead + AsyncWrite>(tls: T, max: usize) -> Framed<T, LengthDelimitedCodec> {
    let codec = LengthDelimitedCodec::builder()
        .max_frame_length(max)
        .new_codec();
    let mut framed = Framed::new(tls, codec);
    framed.set_backpressure_boundary(128 * 1024);
    framed
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

pub(super) fn default_client_config(pki: &CertBundle) -> Result<Arc<ClientConfig>, LinkError> {
    let config = ClientConfig::builder_with_provider(default_provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(tls::root_store(&pki.ca_pem)?)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

pub(super) fn default_server_config(pki: &CertBundle) -> Result<Arc<ServerConfig>, LinkError> {
    let (chain, key) = tls::cert_and_key(&pki.chain_pem, &pki.key_pem)?;
    let config = ServerConfig::builder_with_provider(default_provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
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

/// The codec a user writes by hand for this format, with default `Framed`
/// settings: P2 re-keys HMAC-SHA256 for every frame, as a first version
/// does; P2b keys it once and clones the keyed state per frame, as a
/// careful author does (PITFALLS.md: re-keying costs ~70 ns a frame).
/// Both wait for the whole frame before reserving anything.
#[derive(Clone)]
struct HandWrittenHmacCodec {
    key: Vec<u8>,
    /// P2b's state, keyed once; `None` for P2.
    keyed: Option<Hmac<Sha256>>,
    max: usize,
}

impl HandWrittenHmacCodec {
    fn new(key: &[u8], key_once: bool, max: usize) -> Self {
        let mut codec = HandWrittenHmacCodec {
            key: key.to_vec(),
            keyed: None,
            max,
        };
        if key_once {
            codec.keyed = Some(codec.rekeyed());
        }
        codec
    }

    /// The codec of P2, P2b or P3 (P2b keys once).
    fn for_peer(setup: &Setup, peer: Peer, max: usize) -> Self {
        HandWrittenHmacCodec::new(setup.key.as_bytes(), peer == Peer::P2b, max)
    }

    fn rekeyed(&self) -> Hmac<Sha256> {
        match <Hmac<Sha256> as Mac>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts any key length"),
        }
    }

    /// The MAC for the next frame: a clone of the keyed state (P2b) or a
    /// fresh keying (P2).
    fn mac(&self) -> Hmac<Sha256> {
        match &self.keyed {
            Some(keyed) => keyed.clone(),
            None => self.rekeyed(),
        }
    }
}

impl Encoder<Bytes> for HandWrittenHmacCodec {
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

impl Decoder for HandWrittenHmacCodec {
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

impl fmt::Debug for HandWrittenHmacCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandWrittenHmacCodec")
            .field("keyed_once", &self.keyed.is_some())
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}
