//! Mutual TLS: a server that requires client certificates from its CA,
//! clients that present one (or not, or one from another CA), and the peer
//! identity the server reads from it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::KEY;
use futures::{SinkExt, StreamExt};
use secure_link::rustls::{self, CertificateError};
use secure_link::{LinkError, SecureAcceptor, SecureConnector, certs};

fn mtls_acceptor(bundle: &certs::CertBundle) -> SecureAcceptor {
    SecureAcceptor::new(&bundle.chain_pem, &bundle.key_pem, KEY)
        .unwrap()
        .with_client_ca(&bundle.ca_pem)
        .unwrap()
}

/// The same over an in-memory pipe, where the order is fixed: the server
/// refuses, sends its alert and drops its end before the client does
/// anything, so the client's first write fails with a broken pipe while
/// the alert waits unread. A send first, and a read by the stream half
/// while the sink half holds a message and closes: each returns the
/// alert, never the bare broken pipe.
#[tokio::test]
async fn a_refused_client_gets_the_alert_and_not_a_broken_pipe_over_a_pipe() {
    let bundle = certs::generate_with_clients(&["localhost"], &["node-1"]).unwrap();
    let acceptor = mtls_acceptor(&bundle);
    let without = SecureConnector::new(&bundle.ca_pem, KEY).unwrap();
    let is_alert = |err: &LinkError| {
        matches!(
            err,
            LinkError::Tls(rustls::Error::AlertReceived(
                rustls::AlertDescription::CertificateRequired
            ))
        )
    };
    let refused = async || {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let (client, server) = tokio::join!(
            without.connect("localhost", client_io),
            acceptor.accept(server_io)
        );
        assert!(
            server.is_err(),
            "the server accepted a client without a certificate"
        );
        client.expect("connect returns before the verdict")
    };

    // A send into the closed pipe: the write fails, the alert is read.
    let mut client = refused().await;
    let err = client
        .send("into the closed pipe".into())
        .await
        .unwrap_err();
    assert!(is_alert(&err), "send: {err:?}");
    let err = client.close().await.unwrap_err();
    assert!(is_alert(&err), "close after the send: {err:?}");

    // A message fed (buffered, not written), then the stream half reads
    // the alert; the sink half's close writes the message, fails with
    // nothing left to read, and names the alert too.
    let (mut sink, mut stream) = refused().await.split();
    sink.feed("buffered".into()).await.unwrap();
    let err = stream.next().await.unwrap().unwrap_err();
    assert!(is_alert(&err), "read: {err:?}");
    let err = sink.close().await.unwrap_err();
    assert!(is_alert(&err), "close after the stream's read: {err:?}");
}

/// Connects `connector` to `acceptor` over duplex, sends one message; the
/// server's verdict and the identity it saw.
async fn exchange(
    connector: &SecureConnector,
    acceptor: &SecureAcceptor,
) -> Result<Option<String>, LinkError> {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let client = async {
        let mut client = connector.connect("localhost", client_io).await?;
        client.send("hello".into()).await?;
        Ok::<_, LinkError>(client)
    };
    let server = async {
        let mut server = acceptor.accept(server_io).await?;
        let message = server.next().await.ok_or(LinkError::Closed)??;
        assert_eq!(message, "hello");
        Ok::<_, LinkError>(server.peer_identity())
    };
    let (_client, seen) = tokio::join!(client, server);
    seen
}

#[tokio::test]
async fn a_client_certificate_from_the_ca_is_accepted_and_names_the_peer() {
    let bundle = certs::generate_with_clients(&["localhost"], &["node-1", "Node One"]).unwrap();
    let acceptor = mtls_acceptor(&bundle);
    for (client, identity) in bundle.clients.iter().zip(["node-1", "Node One"]) {
        let connector = SecureConnector::new(&bundle.ca_pem, KEY)
            .unwrap()
            .with_client_cert(&client.chain_pem, &client.key_pem)
            .unwrap();
        // A DNS name where there is one, else the common name.
        assert_eq!(
            exchange(&connector, &acceptor).await.unwrap().as_deref(),
            Some(identity)
        );
    }
}

#[tokio::test]
async fn clients_without_a_certificate_or_with_another_cas_are_refused() {
    let bundle = certs::generate_with_clients(&["localhost"], &["node-1"]).unwrap();
    let stranger = certs::generate_with_clients(&["localhost"], &["node-1"]).unwrap();
    let acceptor = mtls_acceptor(&bundle);

    let without = SecureConnector::new(&bundle.ca_pem, KEY).unwrap();
    let err = exchange(&without, &acceptor).await.unwrap_err();
    assert!(
        matches!(err, LinkError::Tls(rustls::Error::NoCertificatesPresented)),
        "{err:?}"
    );
    assert!(err.to_string().contains("certificate"), "{err}");

    let foreign = SecureConnector::new(&bundle.ca_pem, KEY)
        .unwrap()
        .with_client_cert(&stranger.clients[0].chain_pem, &stranger.clients[0].key_pem)
        .unwrap();
    let err = exchange(&foreign, &acceptor).await.unwrap_err();
    assert!(
        matches!(
            err,
            LinkError::Tls(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn without_mutual_tls_there_is_no_peer_identity_and_the_hmac_key_still_counts() {
    let bundle = certs::generate_with_clients(&["localhost"], &["node-1"]).unwrap();
    let plain = SecureAcceptor::new(&bundle.chain_pem, &bundle.key_pem, KEY).unwrap();
    let connector = SecureConnector::new(&bundle.ca_pem, KEY).unwrap();
    assert_eq!(exchange(&connector, &plain).await.unwrap(), None);

    // mTLS does not replace the HMAC key: a certified client with the
    // wrong key is still refused.
    let wrong_key = SecureConnector::new(&bundle.ca_pem, &b"not the key"[..])
        .unwrap()
        .with_client_cert(&bundle.clients[0].chain_pem, &bundle.clients[0].key_pem)
        .unwrap();
    let err = exchange(&wrong_key, &mtls_acceptor(&bundle))
        .await
        .unwrap_err();
    assert!(matches!(err, LinkError::InvalidHmac), "{err:?}");
}

#[test]
fn unusable_client_pem_is_a_config_error() {
    let bundle = certs::generate_with_clients(&["localhost"], &["node-1"]).unwrap();
    let connector = SecureConnector::new(&bundle.ca_pem, KEY).unwrap();
    let err = connector
        .clone()
        .with_client_cert("garbage", "garbage")
        .unwrap_err();
    assert!(matches!(err, LinkError::Config(_)), "{err:?}");
    // A key that is not the certificate's.
    let err = connector
        .with_client_cert(&bundle.clients[0].chain_pem, &bundle.key_pem)
        .unwrap_err();
    assert!(matches!(err, LinkError::Tls(_)), "{err:?}");
    let acceptor = SecureAcceptor::new(&bundle.chain_pem, &bundle.key_pem, KEY).unwrap();
    let err = acceptor.with_client_ca("no certificate here").unwrap_err();
    assert!(matches!(err, LinkError::Config(_)), "{err:?}");
}

/// In TLS 1.3 the client's `connect()` returns before the server has
/// judged its certificate: a refused client learns it from the server's
/// alert, as `LinkError::Tls`, on its first read and on `close()`, over
/// TCP, and every send after that read fails with it. (A send before any
/// read may still succeed: its bytes go into the socket before the alert
/// is read.)
#[tokio::test]
async fn a_refused_client_learns_it_as_a_tls_alert_on_read_and_close() {
    let bundle = certs::generate_with_clients(&["localhost"], &["node-1"]).unwrap();
    let stranger = certs::generate_with_clients(&["localhost"], &["node-1"]).unwrap();
    let acceptor = mtls_acceptor(&bundle);
    let without = SecureConnector::new(&bundle.ca_pem, KEY).unwrap();
    let foreign = without
        .clone()
        .with_client_cert(&stranger.clients[0].chain_pem, &stranger.clients[0].key_pem)
        .unwrap();
    for (connector, alert) in [
        (&without, rustls::AlertDescription::CertificateRequired),
        (&foreign, rustls::AlertDescription::UnknownCA),
    ] {
        for (read_first, send_first) in [(true, false), (false, false), (false, true)] {
            let (client_io, server_io) = common::tcp_pair().await;
            let (client, server) = tokio::join!(
                connector.connect("localhost", client_io),
                acceptor.accept(server_io)
            );
            assert!(server.is_err(), "the server accepted the certificate");
            let mut client = client.expect("connect returns before the verdict");
            let is_alert = |err: &LinkError| matches!(err, LinkError::Tls(rustls::Error::AlertReceived(a)) if *a == alert);
            if send_first {
                // Into a connection the server has closed: it may succeed
                // (written before the reset) or fail, with the alert and
                // not the broken pipe; close() below names the alert.
                if let Err(err) = client.send("before the verdict".into()).await {
                    assert!(is_alert(&err), "send: {err:?}");
                }
            }
            if read_first {
                let err = client.next().await.unwrap().unwrap_err();
                assert!(is_alert(&err), "read: {err:?}");
                // From then on the sink refuses with the same alert.
                let err = client.send("refused".into()).await.unwrap_err();
                assert!(is_alert(&err), "send after the read: {err:?}");
            }
            let err = client.close().await.unwrap_err();
            assert!(
                is_alert(&err),
                "close after read {read_first}, send {send_first}: {err:?}"
            );
        }
    }
}
