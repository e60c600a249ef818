//! The blocking, lab-compatible API, in the style of the lab's own harness:
//! both ends built in one thread before any I/O, the client in a spawned
//! thread, an observer recording every byte the client writes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;

use bytes::Bytes;
use common::{KEY, StdTap, WireLog, contains, pki};
use futures::{SinkExt, StreamExt};
use secure_link::blocking::{SecureClient, SecureServer, SecureServerError};
use secure_link::certs::CertBundle;
use secure_link::rustls::pki_types::ServerName;
use secure_link::{LinkError, SecureAcceptor, SecureConnector};

/// A connected pair of std TCP streams on 127.0.0.1.
fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").unwrap()
}

/// Both ends over TCP, built before any I/O; the client's link is observed.
fn lab_pair(
    pki: &CertBundle,
    client_key: &[u8],
    server_key: &[u8],
) -> (
    SecureClient<StdTap<TcpStream>>,
    SecureServer<TcpStream>,
    WireLog,
) {
    let (client_link, server_link) = tcp_pair();
    let (tap, log) = StdTap::new(client_link);
    let client = SecureClient::new(tap, client_key, &pki.ca_pem, localhost());
    let server = SecureServer::new(server_link, server_key, &pki.key_pem, &pki.chain_pem);
    (client, server, log)
}

fn big_message() -> Vec<u8> {
    (0..5_000_000u32).map(|i| (i % 251) as u8).collect()
}

#[test]
fn lab_messages_arrive_intact_in_order_and_encrypted() {
    let pki = pki();
    let (mut client, mut server, log) = lab_pair(&pki, KEY, KEY);
    let messages: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"hello".to_vec(),
        b"a bit longer message to transmit".to_vec(),
        big_message(),
    ];
    let to_send = messages.clone();
    let sender = thread::spawn(move || {
        for message in to_send {
            client.send_msg(message);
        }
    });
    for expected in &messages {
        let received = server.recv_message().unwrap();
        assert!(
            received == *expected,
            "message of {} bytes differs",
            expected.len()
        );
    }
    sender.join().unwrap();
    // The dropped client said close_notify: a clean end.
    assert_eq!(server.recv_message(), Err(SecureServerError::PeerClosed));

    let wire = log.bytes();
    assert_eq!(
        wire[0], 0x16,
        "the client starts with a TLS handshake record"
    );
    assert!(!contains(&wire, b"hello"));
    assert!(!contains(&wire, b"a bit longer message to transmit"));
    assert!(!contains(&wire, &big_message()[1000..1032]));
    assert!(wire.len() > 5_000_000);
}

#[test]
fn mismatched_keys_give_invalid_hmac_and_nothing_after() {
    let pki = pki();
    let (mut client, mut server, _) = lab_pair(&pki, b"k1", b"k2");
    let sender = thread::spawn(move || {
        client.send_msg(b"forged".to_vec());
        client.send_msg(b"also forged".to_vec());
    });
    assert_eq!(server.recv_message(), Err(SecureServerError::InvalidHmac));
    assert_eq!(server.recv_message(), Err(SecureServerError::InvalidHmac));
    assert!(matches!(
        server.try_recv_message(),
        Err(LinkError::InvalidHmac)
    ));
    sender.join().unwrap();
}

#[test]
fn a_peer_that_vanishes_mid_link_is_an_error_not_a_panic() {
    let pki = pki();
    let (client_link, server_link) = tcp_pair();
    let cut = client_link.try_clone().unwrap();
    let mut client = SecureClient::new(client_link, KEY, &pki.ca_pem, localhost());
    let mut server = SecureServer::new(server_link, KEY, &pki.key_pem, &pki.chain_pem);
    let sender = thread::spawn(move || {
        client.send_msg(b"before the cut".to_vec());
        cut.shutdown(Shutdown::Both).unwrap(); // no close_notify
        drop(client); // its close_notify cannot get out any more
    });
    assert_eq!(server.recv_message().unwrap(), b"before the cut");
    assert_eq!(server.recv_message(), Err(SecureServerError::Truncated));
    assert_eq!(server.recv_message(), Err(SecureServerError::Truncated));
    sender.join().unwrap();
}

#[test]
fn a_peer_gone_before_the_handshake_is_an_error_not_a_panic() {
    let pki = pki();
    let (client_link, server_link) = tcp_pair();
    let mut server = SecureServer::new(server_link, KEY, &pki.key_pem, &pki.chain_pem);
    drop(client_link);
    let err = server.try_recv_message().unwrap_err();
    assert!(
        matches!(err, LinkError::Truncated | LinkError::Io(_)),
        "{err:?}"
    );
}

#[test]
fn garbage_instead_of_a_client_hello_is_a_tls_error() {
    let pki = pki();
    let (mut client_link, server_link) = tcp_pair();
    let mut server = SecureServer::new(server_link, KEY, &pki.key_pem, &pki.chain_pem);
    client_link
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    assert_eq!(server.recv_message(), Err(SecureServerError::Tls));
}

#[test]
fn client_against_an_untrusted_server_reports_the_certificate_error() {
    let (trusted, other) = (pki(), pki());
    let (client_link, server_link) = tcp_pair();
    let mut client = SecureClient::new(client_link, KEY, &trusted.ca_pem, localhost());
    let mut server = SecureServer::new(server_link, KEY, &other.key_pem, &other.chain_pem);
    let receiver = thread::spawn(move || server.recv_message());
    let err = client.try_send_msg(b"secret").unwrap_err();
    assert!(matches!(err, LinkError::Tls(_)), "{err:?}");
    drop(client);
    assert!(receiver.join().unwrap().is_err());
}

#[test]
fn try_new_reports_bad_pem_and_new_panics_on_it() {
    let pki = pki();
    let (client_link, server_link) = tcp_pair();
    let err = SecureClient::try_new(client_link, KEY, "not pem", localhost()).unwrap_err();
    assert!(matches!(err, LinkError::Config(_)), "{err:?}");
    let err = SecureServer::try_new(server_link, KEY, "not pem", &pki.chain_pem).unwrap_err();
    assert!(matches!(err, LinkError::Config(_)), "{err:?}");

    let (client_link, _) = tcp_pair();
    let panicked =
        std::panic::catch_unwind(|| SecureClient::new(client_link, KEY, "not pem", localhost()));
    assert!(panicked.is_err());
}

#[test]
fn blocking_client_to_async_server() {
    let pki = pki();
    let acceptor = SecureAcceptor::new(&pki.chain_pem, &pki.key_pem, KEY).unwrap();
    let (client_link, server_link) = tcp_pair();
    let mut client = SecureClient::new(client_link, KEY, &pki.ca_pem, localhost());
    let sender = thread::spawn(move || {
        client.send_msg(b"from blocking".to_vec());
        client.send_msg(Vec::new());
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let received = runtime.block_on(async move {
        server_link.set_nonblocking(true).unwrap();
        let tcp = tokio::net::TcpStream::from_std(server_link).unwrap();
        let mut server = acceptor.accept(tcp).await.unwrap();
        let mut received = Vec::new();
        while let Some(message) = server.next().await {
            received.push(message.unwrap());
        }
        server.close().await.unwrap();
        received
    });
    sender.join().unwrap();
    assert_eq!(received, [Bytes::from("from blocking"), Bytes::new()]);
}

#[test]
fn async_client_to_blocking_server() {
    let pki = pki();
    // The blocking server reads megabytes before it can answer close_notify.
    let connector = SecureConnector::new(&pki.ca_pem, KEY)
        .unwrap()
        .with_close_timeout(std::time::Duration::from_secs(120));
    let (client_link, server_link) = tcp_pair();
    let mut server = SecureServer::new(server_link, KEY, &pki.key_pem, &pki.chain_pem);
    let receiver = thread::spawn(move || {
        let mut received = Vec::new();
        loop {
            match server.recv_message() {
                Ok(message) => received.push(message),
                Err(err) => return (received, err),
            }
        }
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        client_link.set_nonblocking(true).unwrap();
        let tcp = tokio::net::TcpStream::from_std(client_link).unwrap();
        let mut client = connector.connect("localhost", tcp).await.unwrap();
        client.send("from async".into()).await.unwrap();
        client.send(Bytes::from(big_message())).await.unwrap();
        client.close().await.unwrap();
        // The blocking server answered close_notify: a clean end.
        assert!(client.next().await.is_none());
    });
    let (received, end) = receiver.join().unwrap();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0], b"from async");
    assert!(received[1] == big_message());
    assert_eq!(end, SecureServerError::PeerClosed);
}

/// A link that works until `jam` is set, then answers writes in a chosen
/// way: `Ok(0)` (a link that accepts nothing), or `budget` more bytes and
/// then timeout errors (a send that fails part-way on a write timeout),
/// until the jam is cleared. Counts bytes written.
struct Jammable {
    link: TcpStream,
    jam: std::sync::Arc<std::sync::atomic::AtomicBool>,
    zero: bool,
    budget: usize,
    written: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl std::io::Read for Jammable {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::io::Read::read(&mut self.link, buf)
    }
}

impl Write for Jammable {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use std::sync::atomic::Ordering;
        let n = if !self.jam.load(Ordering::SeqCst) {
            self.link.write(buf)?
        } else if self.zero {
            return Ok(0);
        } else if self.budget == 0 {
            return Err(std::io::ErrorKind::TimedOut.into());
        } else {
            let n = self.link.write(&buf[..buf.len().min(self.budget)])?;
            self.budget -= n;
            n
        };
        self.written.fetch_add(n, Ordering::SeqCst);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.link.flush()
    }
}

struct Jam {
    flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
    written: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Jam {
    fn set(&self) {
        self.flag.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn clear(&self) {
        self.flag.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    fn written(&self) -> usize {
        self.written.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn jammable(link: TcpStream, zero: bool, budget: usize) -> (Jammable, Jam) {
    let jam = Jam {
        flag: Default::default(),
        written: Default::default(),
    };
    let link = Jammable {
        link,
        jam: jam.flag.clone(),
        zero,
        budget,
        written: jam.written.clone(),
    };
    (link, jam)
}

/// Runs `f` on a thread and fails the test if it does not finish within
/// 60 s (the failure mode of these defects is a spin or a hang).
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} did not finish: a spin or a hang"))
}

#[test]
fn a_link_that_accepts_no_bytes_is_write_zero_in_sends_and_drop_never_spins() {
    let pki = pki();
    let (client_link, server_link) = tcp_pair();
    let (link, jam) = jammable(client_link, true, 0);
    let mut client = SecureClient::new(link, KEY, &pki.ca_pem, localhost());
    let mut server = SecureServer::new(server_link, KEY, &pki.key_pem, &pki.chain_pem);
    let reader = thread::spawn(move || server.recv_message());
    client.try_send_msg(b"through").unwrap();
    assert_eq!(reader.join().unwrap(), Ok(b"through".to_vec()));

    jam.set();
    let (err, client) = within("a send over a link that takes nothing", move || {
        let err = client.try_send_msg(b"stuck").unwrap_err();
        (err, client)
    });
    assert!(
        matches!(&err, LinkError::Io(io) if io.kind() == std::io::ErrorKind::WriteZero),
        "{err:?}"
    );
    within("dropping the client", move || drop(client));
}

#[test]
fn a_server_answering_close_notify_over_a_link_that_takes_nothing_returns() {
    let pki = pki();
    let (client_link, server_link) = tcp_pair();
    let (link, jam) = jammable(server_link, true, 0);
    let mut client = SecureClient::new(client_link, KEY, &pki.ca_pem, localhost());
    let mut server = SecureServer::new(link, KEY, &pki.key_pem, &pki.chain_pem);
    let sender = thread::spawn(move || {
        client.send_msg(b"one".to_vec());
        client // dropped below: close_notify
    });
    assert_eq!(server.recv_message(), Ok(b"one".to_vec()));
    jam.set();
    drop(sender.join().unwrap());
    let end = within("answering close_notify", move || server.recv_message());
    assert_eq!(end, Err(SecureServerError::PeerClosed));
}

/// A send that fails part-way leaves half a frame on the wire: a retry
/// would write a second frame after it, misaligned, or deliver the first
/// twice. The client is fused instead: later sends fail without writing.
#[test]
fn a_send_that_failed_part_way_fuses_the_client() {
    let pki = pki();
    let (client_link, server_link) = tcp_pair();
    let (link, jam) = jammable(client_link, false, 1000);
    let mut client = SecureClient::new(link, KEY, &pki.ca_pem, localhost());
    let mut server = SecureServer::new(server_link, KEY, &pki.key_pem, &pki.chain_pem);
    let reader = thread::spawn(move || (server.recv_message(), server));
    client.try_send_msg(b"first").unwrap();
    let (first, _server) = reader.join().unwrap(); // kept open, not read
    assert_eq!(first, Ok(b"first".to_vec()));

    jam.set(); // 1,000 more bytes, then write timeouts
    let err = client.try_send_msg(&[7; 100_000]).unwrap_err();
    assert!(
        matches!(&err, LinkError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut),
        "{err:?}"
    );
    // The link recovers (the timeout was transient): a retry must still
    // not write, since the failed frame may or may not have gone out.
    jam.clear();
    let written = jam.written();
    for _ in 0..2 {
        let again = client.try_send_msg(b"retry").unwrap_err();
        assert!(
            matches!(&again, LinkError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut),
            "{again:?}"
        );
    }
    assert_eq!(jam.written(), written, "a fused client wrote again");
    // Too large a message is refused before anything is written, and does
    // not fuse a healthy client (tested in the next test).
}

#[test]
fn frames_at_exactly_the_maximum_arrive_and_one_byte_over_is_refused_at_both_ends() {
    use secure_link::DEFAULT_MAX_FRAME_LEN;
    let pki = pki();
    let (mut client, mut server, _log) = lab_pair(&pki, KEY, KEY);
    let sender = thread::spawn(move || {
        let over = client.try_send_msg(&vec![1; DEFAULT_MAX_FRAME_LEN + 1]);
        assert!(
            matches!(over, Err(LinkError::FrameTooLarge { len, max }) if len == max + 1),
            "{over:?}"
        );
        // Nothing was written and the client is not fused: the next send works.
        client
            .try_send_msg(&vec![2; DEFAULT_MAX_FRAME_LEN])
            .unwrap();
        client
    });
    let at_max = server.recv_message().unwrap();
    assert_eq!(at_max.len(), DEFAULT_MAX_FRAME_LEN);
    assert!(at_max.iter().all(|&b| b == 2));
    drop(sender.join().unwrap());
    assert_eq!(server.recv_message(), Err(SecureServerError::PeerClosed));

    // One byte over from a peer that does not check: refused on arrival.
    let (client_link, server_link) = tcp_pair();
    let mut server = SecureServer::new(server_link, KEY, &pki.key_pem, &pki.chain_pem);
    let sender = thread::spawn(move || {
        let config = secure_link::tls::client_config(&pki.ca_pem).unwrap();
        let conn = secure_link::rustls::ClientConnection::new(config, localhost()).unwrap();
        let mut tls = secure_link::rustls::StreamOwned::new(conn, client_link);
        let _ = tls.write_all(&((DEFAULT_MAX_FRAME_LEN + 1) as u32).to_be_bytes());
        let _ = tls.flush();
        tls
    });
    let err = server.try_recv_message().unwrap_err();
    assert!(
        matches!(err, LinkError::FrameTooLarge { len, max } if len == max + 1),
        "{err:?}"
    );
    drop(sender.join().unwrap());
}

/// The blocking client has no handshake timeout of its own; the socket's
/// read timeout bounds it: against a server that accepts TCP and says
/// nothing, the first send fails instead of hanging.
#[test]
fn a_socket_read_timeout_bounds_the_blocking_handshake() {
    let pki = pki();
    let (client_link, _silent_server) = tcp_pair();
    client_link
        .set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let mut client = SecureClient::new(client_link, KEY, &pki.ca_pem, localhost());
    let err = within("a handshake with a silent server", move || {
        client.try_send_msg(b"hello").unwrap_err()
    });
    assert!(
        matches!(&err, LinkError::Io(io) if matches!(io.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "{err:?}"
    );
}
