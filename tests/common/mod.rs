//! Fixtures shared by the integration tests: certificates made at test time
//! (through `secure_link::certs`), endpoints, and transport wrappers that
//! observe or damage the bytes on the wire.
#![allow(dead_code, unreachable_pub)]

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use secure_link::certs::{self, CertBundle};
use secure_link::{SecureAcceptor, SecureClient, SecureConnector, SecureServer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub mod fault;
pub mod pipes;

pub const KEY: &[u8] = b"integration test key";

/// A fresh CA and a server certificate for localhost and 127.0.0.1.
pub fn pki() -> CertBundle {
    certs::generate(&["localhost", "127.0.0.1"]).unwrap()
}

/// A connector and an acceptor for one fresh PKI, both holding `key`,
/// with handshake and close timeouts far above what a loaded machine needs
/// (the defaults, 10 s and 2 s, are timing assertions in a test over real
/// I/O). Tests of the defaults use [`default_endpoints`].
pub fn endpoints(key: &[u8]) -> (SecureConnector, SecureAcceptor) {
    let patience = std::time::Duration::from_secs(120);
    let (connector, acceptor) = default_endpoints(key);
    (
        connector
            .with_handshake_timeout(patience)
            .with_close_timeout(patience),
        acceptor.with_handshake_timeout(patience),
    )
}

/// [`endpoints`] with the library's default timeouts.
pub fn default_endpoints(key: &[u8]) -> (SecureConnector, SecureAcceptor) {
    let pki = pki();
    let connector = SecureConnector::new(&pki.ca_pem, key).unwrap();
    let acceptor = SecureAcceptor::new(&pki.chain_pem, &pki.key_pem, key).unwrap();
    (connector, acceptor)
}

/// A client and a server connected over `tokio::io::duplex`, handshake done.
pub async fn connected(
    connector: &SecureConnector,
    acceptor: &SecureAcceptor,
) -> (
    SecureClient<tokio::io::DuplexStream>,
    SecureServer<tokio::io::DuplexStream>,
) {
    connected_over(connector, acceptor, tokio::io::duplex(64 * 1024)).await
}

/// A client and a server over the given pair of byte streams (client end,
/// server end), handshake done.
pub async fn connected_over<C, S>(
    connector: &SecureConnector,
    acceptor: &SecureAcceptor,
    (client_io, server_io): (C, S),
) -> (SecureClient<C>, SecureServer<S>)
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (client, server) = tokio::join!(
        connector.connect("localhost", client_io),
        acceptor.accept(server_io)
    );
    (client.unwrap(), server.unwrap())
}

/// Reads a server's stream to its end: the messages, and the error that
/// ended it, if any.
pub async fn drain<IO: AsyncRead + AsyncWrite + Unpin>(
    server: &mut SecureServer<IO>,
) -> (Vec<bytes::Bytes>, Option<secure_link::LinkError>) {
    use futures::StreamExt;
    let mut messages = Vec::new();
    while let Some(item) = server.next().await {
        match item {
            Ok(message) => messages.push(message),
            Err(err) => return (messages, Some(err)),
        }
    }
    (messages, None)
}

/// A connected pair of TCP streams on 127.0.0.1.
pub async fn tcp_pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
    (client.unwrap(), accepted.unwrap().0)
}

/// Everything written through a [`Tap`] or a [`StdTap`].
#[derive(Clone, Default)]
pub struct WireLog {
    inner: Arc<Mutex<Vec<u8>>>,
}

impl WireLog {
    pub fn bytes(&self) -> Vec<u8> {
        self.inner.lock().unwrap().clone()
    }

    fn record(&self, bytes: &[u8]) {
        self.inner.lock().unwrap().extend_from_slice(bytes);
    }

    /// The TLS records in the log as (content type, length) pairs.
    pub fn tls_records(&self) -> Vec<(u8, usize)> {
        let bytes = self.bytes();
        let mut records = Vec::new();
        let mut rest = &bytes[..];
        while rest.len() >= 5 {
            let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
            records.push((rest[0], len));
            rest = &rest[(5 + len).min(rest.len())..];
        }
        records
    }
}

/// A transport wrapper that records what is written through it, and can
/// flip one bit of the written stream at a given offset.
pub struct Tap<IO> {
    pub io: IO,
    pub log: WireLog,
    flip_at: Option<usize>,
    written: usize,
}

impl<IO> Tap<IO> {
    pub fn new(io: IO) -> (Self, WireLog) {
        let log = WireLog::default();
        let tap = Tap {
            io,
            log: log.clone(),
            flip_at: None,
            written: 0,
        };
        (tap, log)
    }

    /// Flips the lowest bit of the byte at `offset` of the written stream.
    pub fn flipping_bit_at(mut self, offset: usize) -> Self {
        self.flip_at = Some(offset);
        self
    }

    fn outgoing<'a>(&mut self, buf: &'a [u8], scratch: &'a mut Vec<u8>) -> &'a [u8] {
        match self.flip_at {
            Some(at) if at >= self.written && at < self.written + buf.len() => {
                scratch.extend_from_slice(buf);
                scratch[at - self.written] ^= 1;
                scratch
            }
            _ => buf,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tap<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tap<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut scratch = Vec::new();
        let this = &mut *self;
        let out = this.outgoing(buf, &mut scratch).to_vec();
        let poll = Pin::new(&mut this.io).poll_write(cx, &out);
        if let Poll::Ready(Ok(n)) = poll {
            this.log.record(&out[..n]);
            this.written += n;
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Blocking twin of [`Tap`] for std `Read + Write` links (recording only).
pub struct StdTap<L> {
    pub link: L,
    pub log: WireLog,
}

impl<L> StdTap<L> {
    pub fn new(link: L) -> (Self, WireLog) {
        let log = WireLog::default();
        (
            StdTap {
                link,
                log: log.clone(),
            },
            log,
        )
    }
}

impl<L: io::Read> io::Read for StdTap<L> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.link.read(buf)
    }
}

impl<L: io::Write> io::Write for StdTap<L> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.link.write(buf)?;
        self.log.record(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.link.flush()
    }
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// A slow link, on paused time: reads and writes pass at most `chunk`
/// bytes each, and after each one the next in the same direction waits
/// `interval`. `read`/`write` say which directions are slowed.
pub struct Paced<IO> {
    inner: IO,
    chunk: usize,
    interval: std::time::Duration,
    read: Option<Option<Pin<Box<tokio::time::Sleep>>>>,
    write: Option<Option<Pin<Box<tokio::time::Sleep>>>>,
}

impl<IO> Paced<IO> {
    /// Writes slowed: a sender on a slow uplink.
    pub fn writes(inner: IO, chunk: usize, interval: std::time::Duration) -> Self {
        Paced {
            inner,
            chunk,
            interval,
            read: None,
            write: Some(None),
        }
    }

    /// Reads slowed: a slow but live reader.
    pub fn reads(inner: IO, chunk: usize, interval: std::time::Duration) -> Self {
        Paced {
            inner,
            chunk,
            interval,
            read: Some(None),
            write: None,
        }
    }
}

/// Waits out `pause` if one runs; then the caller may pass one chunk.
fn poll_pause(pause: &mut Option<Pin<Box<tokio::time::Sleep>>>, cx: &mut Context<'_>) -> Poll<()> {
    use std::future::Future;
    if let Some(sleep) = pause {
        std::task::ready!(sleep.as_mut().poll(cx));
        *pause = None;
    }
    Poll::Ready(())
}

impl<IO: AsyncRead + Unpin> AsyncRead for Paced<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(pause) = &mut this.read else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        std::task::ready!(poll_pause(pause, cx));
        let mut room = vec![0u8; this.chunk.min(buf.remaining())];
        let mut small = ReadBuf::new(&mut room);
        std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, &mut small))?;
        buf.put_slice(small.filled());
        *pause = Some(Box::pin(tokio::time::sleep(this.interval)));
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Paced<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let Some(pause) = &mut this.write else {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        };
        std::task::ready!(poll_pause(pause, cx));
        let chunk = this.chunk.min(buf.len());
        let written = std::task::ready!(Pin::new(&mut this.inner).poll_write(cx, &buf[..chunk]))?;
        *pause = Some(Box::pin(tokio::time::sleep(this.interval)));
        Poll::Ready(Ok(written))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
