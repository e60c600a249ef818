//! The resilient mode over real connections: a fault-injection proxy cuts,
//! black-holes and refuses the path while a numbered stream goes through.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use common::fault::{Cut, Dir, FaultProxy, How};
use common::pipes::Pipes;
use futures::{SinkExt, StreamExt};
use secure_link::certs::ClientCert;
use secure_link::resilient::{
    Accepted, LinkMode, MemoryOutbox, Outbox, ResilientAcceptor, ResilientConfig,
    ResilientConnector, ResilientEvent, ResilientLink, SessionRecord,
};
use secure_link::{AuthMode, LinkError, Revoked, SecureAcceptor, SecureConnector};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Far above what a loaded machine needs: a limit here only stops a hung
/// test.
const PATIENCE: Duration = Duration::from_secs(120);

/// Fast reconnects, so that many cuts fit in a test.
fn config() -> ResilientConfig {
    ResilientConfig::new()
        .with_backoff(Duration::from_millis(5), Duration::from_millis(100))
        .with_healthy_after(Duration::from_millis(500))
}

struct Server {
    addr: SocketAddr,
    sessions: mpsc::UnboundedReceiver<ResilientLink>,
    plain: mpsc::UnboundedReceiver<Vec<Bytes>>,
    errors: mpsc::UnboundedReceiver<LinkError>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A resilient server on 127.0.0.1: each new session's link, each plain
/// client's messages and each refused connection's error go to a channel.
async fn serve(acceptor: ResilientAcceptor) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (session_tx, sessions) = mpsc::unbounded_channel();
    let (plain_tx, plain) = mpsc::unbounded_channel();
    let (error_tx, errors) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut accepts = tokio::task::JoinSet::new();
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let (session_tx, plain_tx, error_tx) =
                (session_tx.clone(), plain_tx.clone(), error_tx.clone());
            // The set is dropped with the server: every session link with it.
            accepts.spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(Accepted::Session(link)) => {
                        let _ = session_tx.send(link);
                    }
                    Ok(Accepted::Plain(mut server)) => {
                        let mut got = Vec::new();
                        while let Some(Ok(message)) = server.next().await {
                            got.push(message);
                        }
                        let _ = server.close().await;
                        let _ = plain_tx.send(got);
                    }
                    Ok(_) => {}
                    Err(err) => {
                        let _ = error_tx.send(err);
                    }
                }
            });
        }
    });
    Server {
        addr,
        sessions,
        plain,
        errors,
        task,
    }
}

fn dial(
    addr: SocketAddr,
) -> impl FnMut() -> futures::future::BoxFuture<'static, std::io::Result<TcpStream>> + Send + 'static
{
    move || Box::pin(TcpStream::connect(addr))
}

fn endpoints() -> (SecureConnector, SecureAcceptor) {
    common::endpoints(common::KEY)
}

/// A deterministic stream of messages of 0 to 64 KiB, each starting
/// with its number.
fn numbered(count: u64, seed: u64) -> Vec<Bytes> {
    let mut state = seed;
    (0..count)
        .map(|i| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = match (state >> 33) % 8 {
                0 => (state >> 40) as usize % 65_537,
                1 => 8,
                _ => 8 + (state >> 40) as usize % 300,
            };
            let mut body = i.to_be_bytes().to_vec();
            body.resize(len.max(8), (i % 251) as u8);
            Bytes::from(body)
        })
        .collect()
}

async fn receive(
    link: &mut (impl futures::Stream<Item = Result<Bytes, LinkError>> + Unpin),
    count: usize,
) -> Vec<Bytes> {
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        match tokio::time::timeout(PATIENCE, link.next()).await {
            Ok(Some(Ok(message))) => got.push(message),
            other => panic!("after {} messages: {other:?}", got.len()),
        }
    }
    got
}

#[tokio::test]
async fn a_numbered_stream_survives_cuts_with_fin_and_rst_both_ways_exactly_once() {
    let (connector, acceptor) = endpoints();
    let mut server = serve(ResilientAcceptor::new(acceptor, config()).unwrap()).await;
    let proxy = FaultProxy::start(server.addr).await;
    // 40 connections, each cut somewhere: in the handshake, in the hello,
    // in a frame; up (within 200 KB) and down (within 10 KB: replies and
    // acknowledgements are fewer bytes); FIN and RST.
    let mut state = 0x5EEDu64;
    let cuts: Vec<Cut> = (0..40)
        .map(|i| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            Cut {
                dir: if i % 2 == 0 { Dir::Up } else { Dir::Down },
                after: match (i % 4, i % 2) {
                    (0, _) => (state >> 40) % 3_000,
                    (_, 0) => (state >> 40) % 200_000,
                    _ => (state >> 40) % 10_000,
                },
                how: if i % 3 == 0 { How::Rst } else { How::Fin },
            }
        })
        .collect();
    proxy.plan_cuts(cuts);
    let connector = ResilientConnector::new(connector, config()).unwrap();
    let client = connector.connect("localhost", dial(proxy.addr)).unwrap();
    let (mut client_sink, mut client_stream) = client.split();
    // Rounds of traffic both ways until every planned cut was reached.
    let mut session = None;
    let mut rounds = 0;
    let mut delivered = 0;
    while proxy.cuts_left() > 0 || rounds < 40 {
        rounds += 1;
        assert!(rounds <= 200, "{} cuts left", proxy.cuts_left());
        let messages = numbered(100, rounds);
        let replies = numbered(20, 1000 + rounds);
        let sending = messages.clone();
        let producer = tokio::spawn(async move {
            let mut stream = futures::stream::iter(sending.into_iter().map(Ok));
            client_sink.send_all(&mut stream).await.unwrap();
            client_sink
        });
        if session.is_none() {
            let link = tokio::time::timeout(PATIENCE, server.sessions.recv()).await;
            session = Some(link.unwrap().unwrap().split());
        }
        let (sink, stream) = session.as_mut().unwrap();
        let mut reply_stream = futures::stream::iter(replies.clone().into_iter().map(Ok));
        let (got, sent) = tokio::join!(
            receive(stream, messages.len()),
            sink.send_all(&mut reply_stream)
        );
        sent.unwrap();
        client_sink = tokio::time::timeout(PATIENCE, producer)
            .await
            .unwrap()
            .unwrap();
        let got_replies = receive(&mut client_stream, replies.len()).await;
        assert!(
            got == messages,
            "round {rounds}: client to server, once each, in order"
        );
        assert!(
            got_replies == replies,
            "round {rounds}: server to client, once each, in order"
        );
        delivered += got.len() + got_replies.len();
    }
    let mut client = client_sink.reunite(client_stream).unwrap();
    let (sink, stream) = session.unwrap();
    let mut session = sink.reunite(stream).unwrap();
    assert!(
        proxy.connections() >= 40,
        "{} connections",
        proxy.connections()
    );
    assert!(delivered >= 4_000, "{delivered}");
    let stats = client.stats();
    assert!(stats.connections >= 2 && stats.resumes >= 1, "{stats:?}");
    assert_eq!(stats.duplicates, 0);
    assert_eq!(session.stats().duplicates, 0);
    assert!(
        server.sessions.try_recv().is_err(),
        "one session across all connections"
    );
    close_and_see_the_end(&mut client, &mut session).await;
}

/// A connector and an acceptor on one PKI, with keys of their own.
fn endpoints_with_keys(
    client_key: &[u8],
    server_key: &[u8],
) -> (
    SecureConnector,
    SecureAcceptor,
    secure_link::certs::CertBundle,
) {
    let pki = common::pki();
    let connector = SecureConnector::new(&pki.ca_pem, client_key)
        .unwrap()
        .with_handshake_timeout(PATIENCE)
        .with_close_timeout(PATIENCE);
    let acceptor = SecureAcceptor::new(&pki.chain_pem, &pki.key_pem, server_key)
        .unwrap()
        .with_handshake_timeout(PATIENCE);
    (connector, acceptor, pki)
}

async fn first_error(link: &mut ResilientLink) -> LinkError {
    match tokio::time::timeout(PATIENCE, link.next()).await.unwrap() {
        Some(Err(err)) => err,
        other => panic!("{other:?}"),
    }
}

/// `err` is a mode mismatch: this end `local`, the peer `peer`.
#[track_caller]
fn assert_mode_mismatch(err: &LinkError, local: LinkMode, peer: LinkMode) {
    assert!(
        matches!(err, LinkError::ModeMismatch { local: l, peer: p } if *l == local && *p == peer),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_four_mode_combinations_serve_or_fail_at_once_naming_the_mode() {
    let (connector, acceptor) = endpoints();

    // Resilient client, plain-only server: a typed error, not retried.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_addr = listener.local_addr().unwrap();
    let plain_acceptor = acceptor.clone();
    let plain_server = tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            if let Ok(mut server) = plain_acceptor.accept(tcp).await {
                while let Some(Ok(_)) = server.next().await {}
            }
        }
    });
    let proxy = FaultProxy::start(plain_addr).await;
    let resilient = ResilientConnector::new(connector.clone(), config()).unwrap();
    let mut link = resilient.connect("localhost", dial(proxy.addr)).unwrap();
    let err = first_error(&mut link).await;
    assert_mode_mismatch(&err, LinkMode::Resilient, LinkMode::Plain);
    assert_eq!(
        err.to_string(),
        "this end speaks the resilient mode, the peer the plain mode"
    );
    assert!(matches!(
        link.send(Bytes::new()).await,
        Err(LinkError::ModeMismatch { .. })
    ));
    assert_eq!(proxy.connections(), 1, "never retried");
    plain_server.abort();

    // Plain client (the lab's: no ALPN), resilient server: the plain mode.
    let mut server = serve(ResilientAcceptor::new(acceptor.clone(), config()).unwrap()).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut plain = connector.connect("localhost", tcp).await.unwrap();
    plain.send(Bytes::from("lab frame")).await.unwrap();
    plain.close().await.unwrap();
    let got = tokio::time::timeout(PATIENCE, server.plain.recv())
        .await
        .unwrap();
    assert_eq!(got.unwrap(), ["lab frame"]);

    // Plain client of this crate (it offers the plain mode's ALPN id),
    // resilient-only server: refused in the handshake, both ends naming
    // the mode.
    let mut only = serve(
        ResilientAcceptor::new(acceptor.clone(), config())
            .unwrap()
            .resilient_only(),
    )
    .await;
    let tcp = TcpStream::connect(only.addr).await.unwrap();
    let err = connector.connect("localhost", tcp).await.unwrap_err();
    assert_mode_mismatch(&err, LinkMode::Plain, LinkMode::Resilient);
    assert_eq!(
        err.to_string(),
        "this end speaks the plain mode, the peer the resilient mode"
    );
    assert!(!err.is_retryable());
    let err = tokio::time::timeout(PATIENCE, only.errors.recv())
        .await
        .unwrap()
        .unwrap();
    assert_mode_mismatch(&err, LinkMode::Resilient, LinkMode::Plain);

    // A lab client (no ALPN at all, as Python's ssl): nothing in its
    // handshake to refuse, so the server refuses it after, naming the mode;
    // nothing it sent is delivered.
    let pki = common::pki();
    let mut lab_tls = (*secure_link::tls::client_config(&pki.ca_pem).unwrap()).clone();
    lab_tls.alpn_protocols.clear();
    let lab = SecureConnector::from_config(std::sync::Arc::new(lab_tls), common::KEY);
    let mut only = serve(
        ResilientAcceptor::new(
            SecureAcceptor::new(&pki.chain_pem, &pki.key_pem, common::KEY).unwrap(),
            config(),
        )
        .unwrap()
        .resilient_only(),
    )
    .await;
    let tcp = TcpStream::connect(only.addr).await.unwrap();
    let mut plain = lab.connect("localhost", tcp).await.unwrap();
    let _ = plain.send(Bytes::from("refused")).await;
    let err = tokio::time::timeout(PATIENCE, only.errors.recv())
        .await
        .unwrap()
        .unwrap();
    assert_mode_mismatch(&err, LinkMode::Resilient, LinkMode::Plain);
    assert!(only.plain.try_recv().is_err());

    // A client of another protocol (ALPN h2 only) at a server that serves
    // both modes: the TLS error it is, on both ends, not a mode.
    let mut server = serve(
        ResilientAcceptor::new(
            SecureAcceptor::new(&pki.chain_pem, &pki.key_pem, common::KEY).unwrap(),
            config(),
        )
        .unwrap(),
    )
    .await;
    let mut h2 = (*secure_link::tls::client_config(&pki.ca_pem).unwrap()).clone();
    h2.alpn_protocols = vec![b"h2".to_vec()];
    let h2 = SecureConnector::from_config(std::sync::Arc::new(h2), common::KEY);
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let err = h2.connect("localhost", tcp).await.unwrap_err();
    assert!(matches!(err, LinkError::Tls(_)), "{err:?}");
    let err = within(server.errors.recv()).await.unwrap();
    assert!(matches!(err, LinkError::Tls(_)), "{err:?}");

    // The blocking client (the lab's interface) offers the plain id too.
    let (addr, ca) = (only.addr, pki.ca_pem.clone());
    let err = tokio::task::spawn_blocking(move || {
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        let name = secure_link::rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut client =
            secure_link::blocking::SecureClient::try_new(tcp, common::KEY, &ca, name).unwrap();
        client.try_send_msg(b"refused").unwrap_err()
    })
    .await
    .unwrap();
    assert_mode_mismatch(&err, LinkMode::Plain, LinkMode::Resilient);

    // Resilient both ways, with tags bound to each TLS connection: the
    // sequence numbers span a cut.
    let session_bound = |c: SecureConnector| c.with_auth_mode(AuthMode::SessionBound);
    let mut server = serve(
        ResilientAcceptor::new(acceptor.with_auth_mode(AuthMode::SessionBound), config()).unwrap(),
    )
    .await;
    let proxy = FaultProxy::start(server.addr).await;
    proxy.plan_cuts([Cut {
        dir: Dir::Up,
        after: 20_000,
        how: How::Rst,
    }]);
    let resilient = ResilientConnector::new(session_bound(connector), config()).unwrap();
    let mut link = resilient.connect("localhost", dial(proxy.addr)).unwrap();
    let messages = numbered(200, 9);
    let mut stream = futures::stream::iter(messages.clone().into_iter().map(Ok));
    link.send_all(&mut stream).await.unwrap();
    let mut session = server.sessions.recv().await.unwrap();
    assert!(receive(&mut session, messages.len()).await == messages);
    assert_eq!(proxy.cuts_left(), 0);
    assert!(proxy.connections() >= 2);
}

#[tokio::test]
async fn a_wrong_key_or_an_unknown_certificate_stops_at_once() {
    let (connector, acceptor, _) = endpoints_with_keys(b"the client's key", b"the server's key");
    let server = serve(ResilientAcceptor::new(acceptor, config()).unwrap()).await;
    let proxy = FaultProxy::start(server.addr).await;
    let resilient = ResilientConnector::new(connector, config()).unwrap();
    let mut link = resilient.connect("localhost", dial(proxy.addr)).unwrap();
    let err = first_error(&mut link).await;
    assert!(matches!(err, LinkError::InvalidHmac), "{err:?}");
    assert!(
        tokio::time::timeout(PATIENCE, link.next())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(proxy.connections(), 1, "never retried");

    // A server whose certificate the client does not trust.
    let (connector, _, _) = endpoints_with_keys(common::KEY, common::KEY);
    let (_, acceptor) = endpoints();
    let server = serve(ResilientAcceptor::new(acceptor, config()).unwrap()).await;
    let proxy = FaultProxy::start(server.addr).await;
    let resilient = ResilientConnector::new(connector, config()).unwrap();
    let mut link = resilient.connect("localhost", dial(proxy.addr)).unwrap();
    let err = first_error(&mut link).await;
    assert!(matches!(err, LinkError::Tls(_)), "{err:?}");
    assert_eq!(proxy.connections(), 1, "never retried");
}

/// A hello asking for heartbeats closer than the server allows is refused
/// with an `End` before any session exists: the client stops at once
/// instead of reconnecting for ever.
#[tokio::test]
async fn a_hello_asking_for_too_frequent_heartbeats_stops_the_client_at_once() {
    let (connector, acceptor) = endpoints();
    let mut server = serve(ResilientAcceptor::new(acceptor, config()).unwrap()).await;
    let proxy = FaultProxy::start(server.addr).await;
    let eager = config()
        .with_min_heartbeat_interval(Duration::from_millis(50))
        .with_heartbeat_interval(Duration::from_millis(100))
        // Far above a handshake on a loaded machine: a dial slower than
        // the dead time would count as a lost connection, and a retry.
        .with_dead_time(PATIENCE);
    let resilient = ResilientConnector::new(connector, eager).unwrap();
    let mut link = resilient.connect("localhost", dial(proxy.addr)).unwrap();
    let err = first_error(&mut link).await;
    assert!(
        matches!(&err, LinkError::Protocol(reason) if reason.contains("heartbeats faster")),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(proxy.connections(), 1, "never retried");
    let refused = tokio::time::timeout(PATIENCE, server.errors.recv())
        .await
        .unwrap();
    assert!(
        matches!(refused, Some(LinkError::TooManyHeartbeats)),
        "{refused:?}"
    );
    assert_eq!(
        server.sessions.try_recv().ok().map(|_| ()),
        None,
        "no session"
    );
}

/// Paused time over in-memory pipes: every dial is refused, and the
/// client gives up at its limit, handing back what it holds.
#[tokio::test(start_paused = true)]
async fn a_client_that_gives_up_hands_back_what_was_not_acknowledged() {
    let (connector, acceptor) = endpoints();
    let (pipes, mut sessions) = Pipes::new(ResilientAcceptor::new(acceptor, config()).unwrap());
    pipes.set_up(false);
    let limit = Duration::from_millis(300);
    let resilient = ResilientConnector::new(connector, config().with_give_up_after(limit)).unwrap();
    let mut link = resilient.connect("localhost", pipes.dial()).unwrap();
    for i in 0..3u8 {
        link.feed(Bytes::from(vec![i])).await.unwrap();
    }
    let err = first_error(&mut link).await;
    assert!(
        matches!(err, LinkError::GaveUp { after, unacked: 3 } if after == limit),
        "{err:?}"
    );
    assert_eq!(link.take_unacked(), [vec![0u8], vec![1], vec![2]]);
    assert!(link.take_unacked().is_empty(), "handed back once");
    assert!(matches!(link.flush().await, Err(LinkError::GaveUp { .. })));
    assert!(sessions.try_recv().is_err(), "every attempt was refused");
    let mut disconnects = 0;
    while let Some(event) = link.next_event().await {
        assert!(
            matches!(event, ResilientEvent::Disconnected { .. }),
            "{event:?}"
        );
        disconnects += 1;
    }
    // Backoff ceilings 5, 10, 20, 40, 80, 100 ms: at least six retries
    // fit in 300 ms whatever the jitter drew.
    assert!(
        disconnects >= 6,
        "it retried before giving up: {disconnects}"
    );
    assert_eq!(pipes.dials(), disconnects);
}

/// What the sink's docs promise about messages fed without a flush, in
/// paused time over pipes (no timer can fire while time stands still):
/// they go out once 32 wait, once 64 KiB wait, when the outbox is full,
/// or at a flush, and not before.
#[tokio::test(start_paused = true)]
async fn fed_messages_go_out_at_32_at_64_kib_at_a_full_outbox_or_at_a_flush() {
    /// Far below every timer of the session (ack delay, heartbeats).
    const STANDSTILL: Duration = Duration::from_millis(1);
    let Piped {
        pipes,
        mut sessions,
        resilient,
        mut link,
        mut session,
    } = piped_session().await;
    /// Nothing arrives while time stands still.
    async fn held(session: &mut ResilientLink) -> bool {
        tokio::time::timeout(STANDSTILL, session.next())
            .await
            .is_err()
    }

    for i in 0..31u8 {
        link.feed(Bytes::from(vec![i])).await.unwrap();
    }
    assert!(held(&mut session).await, "31 wait for more or a flush");
    link.feed(Bytes::from(vec![31])).await.unwrap();
    let got = tokio::time::timeout(STANDSTILL, receive(&mut session, 32)).await;
    assert_eq!(got.unwrap(), (0..32u8).map(|i| vec![i]).collect::<Vec<_>>());

    link.feed(Bytes::from(vec![7u8; 64 * 1024])).await.unwrap();
    let got = tokio::time::timeout(STANDSTILL, receive(&mut session, 1)).await;
    assert_eq!(got.unwrap()[0].len(), 64 * 1024, "64 KiB go at once");

    link.feed(Bytes::from("a")).await.unwrap();
    assert!(held(&mut session).await);
    tokio::time::timeout(STANDSTILL, link.flush())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(receive(&mut session, 1).await, ["a"]);

    // An outbox of 4: the fifth message waits for room, and the four
    // must go out (and be acknowledged) for it to come.
    let mut small = resilient
        .connect_with_outbox("localhost", pipes.dial(), MemoryOutbox::new(4, 1 << 20))
        .unwrap();
    // Connected and idle first: the first pass of a new connection sends
    // whatever waits, and would hide the case.
    within(small.send(Bytes::from("up"))).await.unwrap();
    let mut other = within(sessions.recv()).await.unwrap();
    assert_eq!(receive(&mut other, 1).await, ["up"]);
    for i in 0..4u8 {
        small.feed(Bytes::from(vec![i])).await.unwrap();
    }
    tokio::time::timeout(STANDSTILL, small.feed(Bytes::from(vec![4])))
        .await
        .expect("room came back without a flush")
        .unwrap();
    assert_eq!(
        receive(&mut other, 4).await,
        (0..4u8).map(|i| vec![i]).collect::<Vec<_>>()
    );
}

/// A session over in-memory pipes with [`config`], its first message
/// ("up") delivered.
struct Piped {
    pipes: Pipes,
    sessions: mpsc::UnboundedReceiver<ResilientLink>,
    resilient: ResilientConnector,
    link: ResilientLink,
    session: ResilientLink,
}

async fn piped_session() -> Piped {
    let (connector, acceptor) = endpoints();
    let (pipes, mut sessions) = Pipes::new(ResilientAcceptor::new(acceptor, config()).unwrap());
    let resilient = ResilientConnector::new(connector, config()).unwrap();
    let mut link = resilient.connect("localhost", pipes.dial()).unwrap();
    within(link.send(Bytes::from("up"))).await.unwrap();
    let mut session = within(sessions.recv()).await.unwrap();
    assert_eq!(receive(&mut session, 1).await, ["up"]);
    Piped {
        pipes,
        sessions,
        resilient,
        link,
        session,
    }
}

/// The sink's `poll_ready` answers from a hint after a `start_send` that
/// left room; once the session is over it still returns the error, as
/// every call does.
#[tokio::test(start_paused = true)]
async fn after_the_peer_ends_the_session_poll_ready_refuses() {
    let Piped {
        mut link,
        mut session,
        ..
    } = piped_session().await;
    // Room left after this one: the hint is set.
    within(link.feed(Bytes::from("fed"))).await.unwrap();

    within(session.close()).await.unwrap();
    assert!(within(link.next()).await.is_none(), "the session ended");
    let ready = std::future::poll_fn(|cx| Poll::Ready(link.poll_ready_unpin(cx))).await;
    assert!(
        matches!(ready, Poll::Ready(Err(LinkError::SinkClosed))),
        "{ready:?}"
    );
}

/// A server that completes TLS and then never answers the hello: each
/// connection dies at the dead time, none carried the session, so the
/// limit still runs from the start (and the backoff is never reset).
#[tokio::test(start_paused = true)]
async fn connections_whose_hello_is_never_answered_do_not_postpone_giving_up() {
    let pki = common::pki();
    let mut tls = (*secure_link::tls::server_config(&pki.chain_pem, &pki.key_pem).unwrap()).clone();
    tls.alpn_protocols = vec![secure_link::resilient::RESILIENT_ALPN.to_vec()];
    let mute = SecureAcceptor::from_config(std::sync::Arc::new(tls), common::KEY);
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let dial = {
        let connections = connections.clone();
        move || {
            let (client, server) = tokio::io::duplex(64 * 1024);
            let mute = mute.clone();
            connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                // Reads the hello, and everything after it, in silence.
                if let Ok(mut server) = mute.accept(server).await {
                    while let Some(Ok(_)) = server.next().await {}
                }
            });
            futures::future::ready(Ok::<_, std::io::Error>(client))
        }
    };
    let limit = Duration::from_secs(10);
    let timings = config()
        .with_heartbeat_interval(Duration::from_secs(1))
        .with_dead_time(Duration::from_secs(3))
        .with_give_up_after(limit);
    let connector = SecureConnector::new(&pki.ca_pem, common::KEY).unwrap();
    let resilient = ResilientConnector::new(connector, timings).unwrap();
    let start = tokio::time::Instant::now();
    let mut link = resilient.connect("localhost", dial).unwrap();
    link.feed(Bytes::from("unanswered")).await.unwrap();
    let err = first_error(&mut link).await;
    assert!(
        matches!(err, LinkError::GaveUp { after, unacked: 1 } if after == limit),
        "{err:?}"
    );
    // The limit, at most one dead time and one backoff past it.
    let after = start.elapsed();
    assert!(
        after >= limit && after <= limit + Duration::from_secs(4),
        "{after:?}"
    );
    assert_eq!(link.take_unacked(), ["unanswered"]);
    let dials = connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!((3..=5).contains(&dials), "{dials} connections in {after:?}");
}

#[tokio::test]
async fn a_restarted_server_loses_nothing_acknowledged_and_the_client_is_told() {
    let (connector, acceptor) = endpoints();
    let mut first = serve(ResilientAcceptor::new(acceptor.clone(), config()).unwrap()).await;
    let proxy = FaultProxy::start(first.addr).await;
    let resilient = ResilientConnector::new(connector, config()).unwrap();
    let mut link = resilient.connect("localhost", dial(proxy.addr)).unwrap();
    let before = numbered(100, 3);
    let mut stream = futures::stream::iter(before.clone().into_iter().map(Ok));
    link.send_all(&mut stream).await.unwrap(); // every one acknowledged
    let mut session = first.sessions.recv().await.unwrap();
    assert!(receive(&mut session, before.len()).await == before);

    // The server process goes away with its sessions; a new one comes up.
    let mut second = restart_server(&proxy, first, session, acceptor).await;
    let after = numbered(50, 4);
    let mut stream = futures::stream::iter(after.clone().into_iter().map(Ok));
    link.send_all(&mut stream).await.unwrap();
    let mut session = second.sessions.recv().await.unwrap();
    assert!(
        receive(&mut session, after.len()).await == after,
        "nothing acknowledged is sent again"
    );
    let events = link.take_events();
    // At most the 50 new ones can have gone into the black hole before
    // the client noticed the cut: none of the 100 acknowledged ones.
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ResilientEvent::PeerRestarted { resent } if *resent <= 50)),
        "{events:?}"
    );
    assert_eq!(link.session_id(), session.session_id());
}

/// The server process behind `proxy` goes away with its sessions
/// (`first`, and its `session`), black-holed and then cut; a new one on
/// `acceptor` comes up in its place.
async fn restart_server(
    proxy: &FaultProxy,
    first: Server,
    session: ResilientLink,
    acceptor: SecureAcceptor,
) -> Server {
    proxy.black_hole(true);
    drop(session);
    drop(first);
    let second = serve(ResilientAcceptor::new(acceptor, config()).unwrap()).await;
    proxy.set_upstream(second.addr);
    proxy.cut_now(How::Rst);
    proxy.heal();
    second
}

/// Waits for the link's next `Disconnected` event.
async fn wait_dead(link: &ResilientLink) -> String {
    loop {
        match tokio::time::timeout(PATIENCE, link.next_event())
            .await
            .unwrap()
        {
            Some(ResilientEvent::Disconnected { error }) => return error,
            Some(_) => {}
            None => panic!("the session ended"),
        }
    }
}

#[tokio::test]
async fn a_black_hole_is_found_dead_on_both_ends_and_the_session_resumes() {
    let (connector, acceptor) = endpoints();
    let fast = config()
        .with_heartbeat_interval(Duration::from_secs(1))
        .with_dead_time(Duration::from_secs(3));
    let mut server = serve(ResilientAcceptor::new(acceptor, fast.clone()).unwrap()).await;
    let proxy = FaultProxy::start(server.addr).await;
    let resilient = ResilientConnector::new(connector, fast).unwrap();
    let mut link = resilient.connect("localhost", dial(proxy.addr)).unwrap();
    link.send(Bytes::from("before")).await.unwrap();
    let mut session = server.sessions.recv().await.unwrap();
    assert_eq!(receive(&mut session, 1).await, ["before"]);
    link.take_events();
    session.take_events();

    proxy.black_hole(true);
    let start = tokio::time::Instant::now();
    let (client_error, server_error) = tokio::join!(wait_dead(&link), wait_dead(&session));
    let elapsed = start.elapsed();
    assert!(
        client_error.contains("no byte from the peer for 3s"),
        "{client_error}"
    );
    assert!(
        server_error.contains("no byte from the peer for 3s"),
        "{server_error}"
    );
    // Never before the dead time; the upper bound is only a hang guard
    // (the paused-time test of the core holds the exact figure).
    assert!(elapsed >= Duration::from_secs(3), "{elapsed:?}");
    proxy.heal();
    link.send(Bytes::from("after")).await.unwrap();
    assert_eq!(receive(&mut session, 1).await, ["after"]);
    assert!(link.stats().resumes >= 1);
}

#[tokio::test]
async fn a_partition_holds_a_flat_out_producer_at_the_outbox_bound() {
    let (connector, acceptor) = endpoints();
    let mut server = serve(ResilientAcceptor::new(acceptor, config()).unwrap()).await;
    let proxy = FaultProxy::start(server.addr).await;
    let resilient = ResilientConnector::new(connector, config()).unwrap();
    let mut link = resilient
        .connect_with_outbox(
            "localhost",
            dial(proxy.addr),
            MemoryOutbox::new(100, 1 << 20),
        )
        .unwrap();
    link.send(Bytes::from("up")).await.unwrap();
    let mut session = server.sessions.recv().await.unwrap();
    receive(&mut session, 1).await;

    proxy.black_hole(true);
    let message = Bytes::from(vec![7u8; 1024]);
    for _ in 0..100 {
        link.feed(message.clone()).await.unwrap();
    }
    // The 101st waits: nothing more is taken while the path is down.
    let more = tokio::time::timeout(Duration::from_millis(500), link.feed(message.clone())).await;
    assert!(more.is_err(), "the outbox took more than its bound");
    assert_eq!(link.stats().unacked, 100);
    proxy.heal();
    tokio::time::timeout(PATIENCE, link.flush())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(receive(&mut session, 100).await.len(), 100);
    assert_eq!(link.stats().unacked, 0);
}

/// A plain connector that offers the resilient ALPN id, to speak the
/// resilient protocol by hand, with `key` and, if any, a client
/// certificate.
fn intruder(ca_pem: &str, key: &[u8], certificate: Option<&ClientCert>) -> SecureConnector {
    let mut config = (*secure_link::tls::client_config(ca_pem).unwrap()).clone();
    config.alpn_protocols = vec![secure_link::resilient::RESILIENT_ALPN.to_vec()];
    let config = match certificate {
        Some(cert) => {
            secure_link::tls::with_client_cert(&config, &cert.chain_pem, &cert.key_pem).unwrap()
        }
        None => std::sync::Arc::new(config),
    };
    SecureConnector::from_config(config, key)
}

/// Names session `id` (hex) with `intruder`: the server answers with an
/// `End` saying that the session belongs to another peer.
async fn assert_refused_as_anothers(intruder: &SecureConnector, addr: SocketAddr, id: &str) {
    let answer = name_session(intruder, addr, id).await;
    assert_eq!(answer[1], 5, "an End");
    assert!(String::from_utf8_lossy(&answer[19..]).contains("belongs to another peer"));
}

/// Connects with `intruder` (which offers the resilient ALPN id), sends a
/// hello naming session `id` (hex), as the module docs draw it, and
/// returns the server's answer.
async fn name_session(intruder: &SecureConnector, addr: SocketAddr, id: &str) -> Bytes {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut raw = intruder.connect("localhost", tcp).await.unwrap();
    let mut hello = vec![1u8, 4, 0];
    hello.extend_from_slice(&0u64.to_be_bytes());
    hello.extend_from_slice(&0u64.to_be_bytes());
    hello.extend_from_slice(&hex::decode(id).unwrap());
    hello.extend_from_slice(&5000u32.to_be_bytes());
    hello.extend_from_slice(&15000u32.to_be_bytes());
    raw.send(Bytes::from(hello)).await.unwrap();
    tokio::time::timeout(PATIENCE, raw.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_session_named_by_a_client_with_another_key_is_refused_and_goes_on() {
    let pki = common::pki();
    let acceptor = SecureAcceptor::new(&pki.chain_pem, &pki.key_pem, &b"owner's key"[..])
        .unwrap()
        .with_additional_key(&b"intruder's key"[..]);
    let mut server = serve(ResilientAcceptor::new(acceptor, config()).unwrap()).await;
    let owner = SecureConnector::new(&pki.ca_pem, &b"owner's key"[..]).unwrap();
    let resilient = ResilientConnector::new(owner, config()).unwrap();
    let mut link = resilient.connect("localhost", dial(server.addr)).unwrap();
    link.send(Bytes::from("mine")).await.unwrap();
    let mut session = server.sessions.recv().await.unwrap();
    assert_eq!(receive(&mut session, 1).await, ["mine"]);

    // The intruder holds a key the server accepts, and names the session.
    let intruder = intruder(&pki.ca_pem, b"intruder's key", None);
    assert_refused_as_anothers(&intruder, server.addr, &link.session_id()).await;
    let err = tokio::time::timeout(PATIENCE, server.errors.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(err, LinkError::Protocol(ref r) if r.contains("another peer")),
        "{err:?}"
    );

    // The owner's session is untouched.
    link.send(Bytes::from("still mine")).await.unwrap();
    assert_eq!(receive(&mut session, 1).await, ["still mine"]);
    assert!(server.sessions.try_recv().is_err());
}

/// A session opened with `key` and the client certificate `cert`: the
/// client's link and the server's, after `first` went through.
async fn open_with_certificate(
    server: &mut Server,
    ca_pem: &str,
    key: &[u8],
    cert: &ClientCert,
    first: &str,
) -> (ResilientLink, ResilientLink) {
    let client = SecureConnector::new(ca_pem, key)
        .unwrap()
        .with_client_cert(&cert.chain_pem, &cert.key_pem)
        .unwrap();
    let resilient = ResilientConnector::new(client, config()).unwrap();
    let mut link = resilient.connect("localhost", dial(server.addr)).unwrap();
    within(link.send(Bytes::copy_from_slice(first.as_bytes())))
        .await
        .unwrap();
    let mut session = within(server.sessions.recv()).await.unwrap();
    assert_eq!(receive(&mut session, 1).await, [first]);
    (link, session)
}

/// With mutual TLS a session is bound to the client certificate's
/// identity too: a client with the same HMAC key but another certificate
/// from the same CA cannot take it over.
#[tokio::test]
async fn a_session_named_by_a_client_with_another_certificate_is_refused_and_goes_on() {
    let pki =
        secure_link::certs::generate_with_clients(&["localhost"], &["node-1", "node-2"]).unwrap();
    let acceptor = SecureAcceptor::new(&pki.chain_pem, &pki.key_pem, common::KEY)
        .unwrap()
        .with_client_ca(&pki.ca_pem)
        .unwrap();
    let mut server = serve(ResilientAcceptor::new(acceptor, config()).unwrap()).await;
    let (owner_cert, other_cert) = (&pki.clients[0], &pki.clients[1]);
    let (mut link, mut session) = open_with_certificate(
        &mut server,
        &pki.ca_pem,
        common::KEY,
        owner_cert,
        "node-1's",
    )
    .await;

    // node-2: the same key, a valid certificate of its own.
    let intruder = intruder(&pki.ca_pem, common::KEY, Some(other_cert));
    assert_refused_as_anothers(&intruder, server.addr, &link.session_id()).await;

    link.send(Bytes::from("still node-1's")).await.unwrap();
    assert_eq!(receive(&mut session, 1).await, ["still node-1's"]);
    assert!(server.sessions.try_recv().is_err());
}

/// `future`, or a panic after [`PATIENCE`] (a hang guard).
async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .expect("no hang")
}

/// Ends the session from `client` (`close()`), and sees the server's
/// `session` stream end.
async fn close_and_see_the_end(client: &mut ResilientLink, session: &mut ResilientLink) {
    within(client.close()).await.unwrap();
    assert!(within(session.next()).await.is_none());
}

/// A resilient server on `endpoints`, a fault proxy in front of it and a
/// resilient connector.
async fn proxied(
    (connector, acceptor): (SecureConnector, SecureAcceptor),
) -> (Server, FaultProxy, ResilientConnector) {
    let server = serve(ResilientAcceptor::new(acceptor, config()).unwrap()).await;
    let proxy = FaultProxy::start(server.addr).await;
    (
        server,
        proxy,
        ResilientConnector::new(connector, config()).unwrap(),
    )
}

/// An outbox whose state outlives the link that used it: what an outbox on
/// disk gives a client process that restarts.
#[derive(Clone, Default)]
struct Durable(
    std::sync::Arc<std::sync::Mutex<(MemoryOutbox, Option<SessionRecord>)>>,
    /// Saves, and pushes, fail while set (a full disk).
    std::sync::Arc<[std::sync::atomic::AtomicBool; 2]>,
);

impl Durable {
    fn fail_saves(&self) {
        self.1[0].store(true, std::sync::atomic::Ordering::SeqCst);
    }
    fn fail_pushes(&self, fail: bool) {
        self.1[1].store(fail, std::sync::atomic::Ordering::SeqCst);
    }
    fn record(&self) -> Option<SessionRecord> {
        self.0.lock().unwrap().1
    }
    fn held(&self) -> usize {
        self.0.lock().unwrap().0.len()
    }
}

impl Outbox for Durable {
    fn has_room(&self, len: usize) -> bool {
        self.0.lock().unwrap().0.has_room(len)
    }
    fn push(&mut self, seq: u64, message: Bytes) -> std::io::Result<()> {
        if self.1[1].load(std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::Error::other("no space left"));
        }
        self.0.lock().unwrap().0.push(seq, message)
    }
    fn get(&self, seq: u64) -> Option<Bytes> {
        self.0.lock().unwrap().0.get(seq)
    }
    fn release(&mut self, ack: u64) -> std::io::Result<()> {
        self.0.lock().unwrap().0.release(ack)
    }
    fn first(&self) -> Option<u64> {
        self.0.lock().unwrap().0.first()
    }
    fn len(&self) -> usize {
        self.held()
    }
    fn drain(&mut self) -> Vec<Bytes> {
        self.0.lock().unwrap().0.drain()
    }
    fn next_seq(&self) -> u64 {
        self.0.lock().unwrap().0.next_seq()
    }
    fn session(&self) -> Option<SessionRecord> {
        self.record()
    }
    fn save_session(&mut self, record: SessionRecord) -> std::io::Result<()> {
        if self.1[0].load(std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::Error::other("no space left"));
        }
        self.0.lock().unwrap().1 = Some(record);
        Ok(())
    }
}

/// A client process that restarts with its outbox (and session record)
/// resumes its session: its numbering goes on after an empty outbox, what
/// it held unacknowledged arrives once, and the server sends only what the
/// record says was not received. One session on the server throughout.
#[tokio::test]
async fn a_client_restarted_with_a_durable_outbox_resumes_its_session_exactly_once() {
    let (mut server, proxy, resilient) = proxied(endpoints()).await;
    let store = Durable::default();
    let messages = numbered(60, 11);
    let replies: Vec<Bytes> = (0..8).map(|i| Bytes::from(format!("reply {i}"))).collect();
    let start = |store: &Durable| {
        resilient
            .connect_with_outbox("localhost", dial(proxy.addr), store.clone())
            .unwrap()
    };

    let mut first = start(&store);
    let id = first.session_id();
    assert_eq!(
        store.record().map(|r| (hex::encode(r.id), r.received)),
        Some((id.clone(), 0)),
        "saved when the session starts"
    );
    let mut stream = futures::stream::iter(messages[..20].iter().cloned().map(Ok));
    within(first.send_all(&mut stream)).await.unwrap();
    let mut session = server.sessions.recv().await.unwrap();
    assert_eq!(receive(&mut session, 20).await, messages[..20]);
    let mut stream = futures::stream::iter(replies[..5].iter().cloned().map(Ok));
    within(session.send_all(&mut stream)).await.unwrap(); // acknowledged by the client
    assert_eq!(receive(&mut first, 5).await, replies[..5]);
    assert_eq!(store.record().map(|r| r.received), Some(5));

    // The process dies with everything acknowledged: an empty outbox.
    drop(first);
    let mut second = start(&store);
    assert_eq!(second.session_id(), id);
    let mut stream = futures::stream::iter(messages[20..40].iter().cloned().map(Ok));
    within(second.send_all(&mut stream)).await.unwrap();
    assert_eq!(
        receive(&mut session, 20).await,
        messages[20..40],
        "numbered on from 20, not taken for resends of 0.."
    );

    // The path goes dark; the process sends more and dies with them
    // unacknowledged, while the server's replies wait.
    proxy.black_hole(true);
    for message in &messages[40..60] {
        second.feed(message.clone()).await.unwrap();
    }
    for reply in &replies[5..] {
        session.feed(reply.clone()).await.unwrap();
    }
    assert_eq!(store.held(), 20);
    drop(second);
    proxy.cut_now(How::Rst);
    proxy.heal();

    let mut third = start(&store);
    assert_eq!(third.session_id(), id);
    within(third.flush()).await.unwrap();
    assert_eq!(receive(&mut session, 20).await, messages[40..60]);
    assert_eq!(
        receive(&mut third, 3).await,
        replies[5..],
        "from the record on"
    );
    assert_eq!(store.held(), 0);
    let events = third.take_events();
    assert!(
        events.contains(&ResilientEvent::Connected { resumed: true }),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ResilientEvent::PeerRestarted { .. })),
        "{events:?}"
    );
    close_and_see_the_end(&mut third, &mut session).await;
    assert_eq!(session.stats().delivered, 60, "each once");
    assert!(
        server.sessions.try_recv().is_err(),
        "one session throughout"
    );
}

/// An outbox that cannot keep a message fails that `start_send` only (the
/// next message takes its number); one that cannot save the record ends
/// the session before the acknowledgement it would cover goes out, with
/// `LinkError::Outbox`, which a client does not retry.
#[tokio::test]
async fn an_outbox_that_fails_refuses_the_message_or_ends_the_session() {
    let (mut server, proxy, resilient) = proxied(endpoints()).await;
    let store = Durable::default();
    let mut link = resilient
        .connect_with_outbox("localhost", dial(proxy.addr), store.clone())
        .unwrap();
    within(link.send(Bytes::from("one"))).await.unwrap();
    let mut session = server.sessions.recv().await.unwrap();
    assert_eq!(receive(&mut session, 1).await, ["one"]);

    store.fail_pushes(true);
    assert!(matches!(
        link.feed(Bytes::from("not kept")).await,
        Err(LinkError::Outbox(_))
    ));
    store.fail_pushes(false);
    within(link.send(Bytes::from("two"))).await.unwrap();
    assert_eq!(receive(&mut session, 1).await, ["two"], "no gap, no loss");

    store.fail_saves();
    session.feed(Bytes::from("reply")).await.unwrap();
    // One poll of the flush sends it (its acknowledgement never comes).
    std::future::poll_fn(|cx| {
        let _ = futures::Sink::<Bytes>::poll_flush(std::pin::Pin::new(&mut session), cx);
        std::task::Poll::Ready(())
    })
    .await;
    assert_eq!(receive(&mut link, 1).await, ["reply"]);
    let err = first_error(&mut link).await;
    assert!(
        matches!(&err, LinkError::Outbox(io) if io.to_string() == "no space left"),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert!(matches!(
        link.send(Bytes::new()).await,
        Err(LinkError::Outbox(_))
    ));
    assert_eq!(store.record().map(|r| r.received), Some(0), "never ahead");
    assert_eq!(proxy.connections(), 1, "never retried");
}

/// The record follows a server that lost the session: it counts the new
/// incarnation's messages from 0 (not the old count, which would make a
/// restarted client acknowledge what it never got), and a client restarted
/// after that resumes with the new server.
#[tokio::test]
async fn after_a_server_restart_the_record_counts_the_new_servers_messages() {
    let (connector, acceptor) = endpoints();
    let mut first = serve(ResilientAcceptor::new(acceptor.clone(), config()).unwrap()).await;
    let proxy = FaultProxy::start(first.addr).await;
    let resilient = ResilientConnector::new(connector, config()).unwrap();
    let store = Durable::default();
    let start = |store: &Durable| {
        resilient
            .connect_with_outbox("localhost", dial(proxy.addr), store.clone())
            .unwrap()
    };
    let replies = |tag: &str, n: usize| -> Vec<Bytes> {
        (0..n).map(|i| Bytes::from(format!("{tag} {i}"))).collect()
    };
    let mut link = start(&store);
    within(link.send(Bytes::from("hello"))).await.unwrap();
    let mut session = first.sessions.recv().await.unwrap();
    assert_eq!(receive(&mut session, 1).await, ["hello"]);
    let old = replies("old", 5);
    let mut stream = futures::stream::iter(old.clone().into_iter().map(Ok));
    within(session.send_all(&mut stream)).await.unwrap();
    assert_eq!(receive(&mut link, 5).await, old);
    assert_eq!(store.record().map(|r| r.received), Some(5));

    // The server process goes away with its sessions; a new one comes up.
    let mut second = restart_server(&proxy, first, session, acceptor).await;
    within(link.send(Bytes::from("to the new server")))
        .await
        .unwrap();
    let mut session = second.sessions.recv().await.unwrap();
    assert_eq!(receive(&mut session, 1).await, ["to the new server"]);
    assert_eq!(
        store.record().map(|r| r.received),
        Some(0),
        "nothing received from the new server yet"
    );
    let new = replies("new", 3);
    let mut stream = futures::stream::iter(new[..2].iter().cloned().map(Ok));
    within(session.send_all(&mut stream)).await.unwrap();
    assert_eq!(receive(&mut link, 2).await, new[..2]);
    assert_eq!(store.record().map(|r| r.received), Some(2));

    // The client process restarts: it resumes with the new server.
    drop(link);
    let mut link = start(&store);
    within(session.send(new[2].clone())).await.unwrap();
    assert_eq!(receive(&mut link, 1).await, new[2..]);
    within(link.send(Bytes::from("resumed"))).await.unwrap();
    assert_eq!(receive(&mut session, 1).await, ["resumed"]);
    assert!(second.sessions.try_recv().is_err(), "the same session");
}

/// `ResilientLink::revoked_by`: a server's session checked against a
/// reloaded configuration, by the key it is bound to and its client's
/// certificate; a client's link is never revoked.
#[tokio::test]
async fn a_reload_that_removes_the_key_or_the_client_ca_revokes_the_session() {
    let pki = secure_link::certs::generate_with_clients(&["localhost"], &["node-1"]).unwrap();
    let other = secure_link::certs::generate_with_clients(&["localhost"], &["node-1"]).unwrap();
    let with = |keys: &[&[u8]], ca: &str| {
        keys[1..]
            .iter()
            .fold(
                SecureAcceptor::new(&pki.chain_pem, &pki.key_pem, keys[0]).unwrap(),
                |acceptor, key| acceptor.with_additional_key(*key),
            )
            .with_client_ca(ca)
            .unwrap()
    };
    let accepted = with(&[b"first key", b"second key"], &pki.ca_pem);
    let mut server = serve(ResilientAcceptor::new(accepted.clone(), config()).unwrap()).await;
    let (link, session) = open_with_certificate(
        &mut server,
        &pki.ca_pem,
        b"second key",
        &pki.clients[0],
        "one",
    )
    .await;

    assert_eq!(session.revoked_by(&accepted), None);
    assert_eq!(
        session.revoked_by(&with(&[b"second key"], &pki.ca_pem)),
        None,
        "the key it is bound to stays"
    );
    assert_eq!(
        session.revoked_by(&with(&[b"first key", b"third key"], &pki.ca_pem)),
        Some(Revoked::Key)
    );
    assert_eq!(
        session.revoked_by(&with(&[b"second key"], &other.ca_pem)),
        Some(Revoked::ClientCa)
    );
    assert_eq!(
        link.revoked_by(&with(&[b"first key"], &other.ca_pem)),
        None,
        "a client's link is not a server's to revoke"
    );
}

#[tokio::test]
async fn a_session_without_a_connection_expires_and_leaves_the_table() {
    let (connector, acceptor) = endpoints();
    let expiry = Duration::from_millis(300);
    let sessions = ResilientAcceptor::new(acceptor, config().with_session_expiry(expiry)).unwrap();
    let mut server = serve(sessions.clone()).await;
    let resilient = ResilientConnector::new(connector, config()).unwrap();
    let mut link = resilient.connect("localhost", dial(server.addr)).unwrap();
    link.send(Bytes::from("one")).await.unwrap();
    let mut session = server.sessions.recv().await.unwrap();
    assert_eq!(receive(&mut session, 1).await, ["one"]);
    assert_eq!(sessions.sessions(), 1);

    drop(link); // the client process is gone: no End, no return
    let err = first_error(&mut session).await;
    assert!(
        matches!(err, LinkError::PeerDead(d) if d == expiry),
        "{err:?}"
    );
    assert!(
        tokio::time::timeout(PATIENCE, session.next())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(sessions.sessions(), 0, "the table forgot it");
}

#[tokio::test]
async fn a_full_table_evicts_the_longest_detached_session_and_refuses_beyond() {
    let (connector, acceptor) = endpoints();
    let sessions = ResilientAcceptor::new(acceptor, config().with_max_sessions(2)).unwrap();
    let mut server = serve(sessions.clone()).await;
    let resilient = ResilientConnector::new(connector, config()).unwrap();
    let open = |server_addr| resilient.connect("localhost", dial(server_addr)).unwrap();
    let mut a = open(server.addr);
    a.send(Bytes::from("a")).await.unwrap();
    let mut a_session = server.sessions.recv().await.unwrap();
    let mut b = open(server.addr);
    b.send(Bytes::from("b")).await.unwrap();
    let _b_session = server.sessions.recv().await.unwrap();
    receive(&mut a_session, 1).await;

    drop(a); // a's session is now without a connection
    assert!(wait_dead(&a_session).await.contains("truncated"));
    let mut c = open(server.addr);
    c.send(Bytes::from("c")).await.unwrap();
    let _c_session = server.sessions.recv().await.unwrap();
    let err = first_error(&mut a_session).await;
    assert!(
        matches!(err, LinkError::Protocol(ref r) if r.contains("evicted")),
        "{err:?}"
    );
    assert_eq!(sessions.sessions(), 2);

    // b and c both have a connection: a fourth is refused, with the reason.
    let mut d = open(server.addr);
    let err = first_error(&mut d).await;
    assert!(
        matches!(err, LinkError::Protocol(ref r) if r.contains("maximum of sessions")),
        "{err:?}"
    );
    b.send(Bytes::from("b again")).await.unwrap();
    c.send(Bytes::from("c again")).await.unwrap();
}
