//! AuthMode::SessionBound: tags bound to the TLS session, the direction and
//! the message's index. The weakness of the lab format and the fix, side by
//! side.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::{Bytes, BytesMut};
use common::{KEY, connected, drain, pki};
use futures::{SinkExt, StreamExt};
use secure_link::codec::{Role, SESSION_EXPORTER_LABEL};
use secure_link::rustls::pki_types::ServerName;
use secure_link::{AuthMode, HmacFrameCodec, LinkError, SecureAcceptor, SecureConnector, tls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::codec::{Decoder, Encoder};

fn encode(codec: &mut HmacFrameCodec, payload: &'static [u8]) -> BytesMut {
    let mut wire = BytesMut::new();
    codec
        .encode(Bytes::from_static(payload), &mut wire)
        .unwrap();
    wire
}

#[test]
fn test_vector_from_security_md() {
    // PSK "secure-link test psk", exporter 00 01 .. 1f (Python hmac).
    let exporter: Vec<u8> = (0u8..32).collect();
    let psk = HmacFrameCodec::new(&b"secure-link test psk"[..]);
    let mut client = psk.bound_to_session(&exporter, Role::Client);
    let mut server = psk.bound_to_session(&exporter, Role::Server);
    let expect = |hex_tag: &str| {
        let mut frame = b"\x00\x00\x00\x05hello".to_vec();
        frame.extend(hex::decode(hex_tag).unwrap());
        frame
    };
    assert_eq!(
        &encode(&mut client, b"hello")[..],
        &expect("5b0b12654fa5f8e23125fb3e54a9c7972d9e237b9baed42e36a247676aa39d07")[..]
    );
    assert_eq!(
        &encode(&mut client, b"hello")[..],
        &expect("0a1bbf831328d524a17b7a1ab457360973d069e85312f6d6901fe00f717af597")[..]
    );
    assert_eq!(
        &encode(&mut server, b"hello")[..],
        &expect("35bc93a8acdcb39fd72bc41fb5b2ec4e067c73010f9aa8310c4e446e78cb2785")[..]
    );
    assert_eq!(SESSION_EXPORTER_LABEL, b"EXPORTER-secure-link-session-v1");
}

#[test]
fn frames_decode_in_order_and_reordered_or_dropped_frames_fail() {
    let exporter = [7u8; 32];
    let psk = HmacFrameCodec::new(KEY);
    let mut sender = psk.bound_to_session(&exporter, Role::Client);
    let frames: Vec<BytesMut> = [&b"zero"[..], b"one", b"two"]
        .iter()
        .map(|p| {
            let mut wire = BytesMut::new();
            sender.encode(Bytes::copy_from_slice(p), &mut wire).unwrap();
            wire
        })
        .collect();

    let mut in_order = psk.bound_to_session(&exporter, Role::Server);
    for (frame, expected) in frames.iter().zip(["zero", "one", "two"]) {
        let mut buf = frame.clone();
        assert_eq!(in_order.decode(&mut buf).unwrap().unwrap(), expected);
    }

    let mut dropped = psk.bound_to_session(&exporter, Role::Server);
    assert!(dropped.decode(&mut frames[0].clone()).unwrap().is_some());
    assert!(matches!(
        dropped.decode(&mut frames[2].clone()),
        Err(LinkError::InvalidHmac)
    ));

    let mut reordered = psk.bound_to_session(&exporter, Role::Server);
    assert!(matches!(
        reordered.decode(&mut frames[1].clone()),
        Err(LinkError::InvalidHmac)
    ));

    let mut replayed = psk.bound_to_session(&exporter, Role::Server);
    assert!(replayed.decode(&mut frames[0].clone()).unwrap().is_some());
    assert!(matches!(
        replayed.decode(&mut frames[0].clone()),
        Err(LinkError::InvalidHmac)
    ));
}

#[test]
fn the_same_payload_has_different_tags_per_direction_and_per_session() {
    let psk = HmacFrameCodec::new(KEY);
    let tag = |exporter: &[u8], role| {
        let wire = encode(&mut psk.bound_to_session(exporter, role), b"same payload");
        wire[wire.len() - 32..].to_vec()
    };
    let c2s = tag(&[1u8; 32], Role::Client);
    let s2c = tag(&[1u8; 32], Role::Server);
    let other_session = tag(&[2u8; 32], Role::Client);
    let lab = {
        let wire = encode(&mut psk.clone(), b"same payload");
        wire[wire.len() - 32..].to_vec()
    };
    assert_ne!(c2s, s2c);
    assert_ne!(c2s, other_session);
    assert_ne!(c2s, lab);
    // A server frame is no good to the server itself (reflection).
    let mut server = psk.bound_to_session(&[1u8; 32], Role::Server);
    let mut reflected = encode(&mut psk.bound_to_session(&[1u8; 32], Role::Server), b"x");
    assert!(matches!(
        server.decode(&mut reflected),
        Err(LinkError::InvalidHmac)
    ));
}

/// The attack of SECURITY.md: a man in the middle holding a certificate the
/// client accepts (a TLS-terminating proxy, a mis-issued certificate) but
/// not the HMAC key. It records the plaintext frames of the victim's
/// connection and relays them into its own connection to the real server.
/// Returns what the real server made of the relayed frames.
async fn relay_attack(mode: AuthMode) -> (Vec<Bytes>, Option<LinkError>) {
    let pki = pki();
    let server_config = tls::server_config(&pki.chain_pem, &pki.key_pem).unwrap();
    let client_config = tls::client_config(&pki.ca_pem).unwrap();
    let victim = SecureConnector::new(&pki.ca_pem, KEY)
        .unwrap()
        .with_auth_mode(mode);
    let real_server = SecureAcceptor::new(&pki.chain_pem, &pki.key_pem, KEY)
        .unwrap()
        .with_auth_mode(mode);

    // 1. The victim talks to the proxy, which terminates TLS.
    let (victim_io, proxy_in) = tokio::io::duplex(64 * 1024);
    let proxy = tokio::spawn(async move {
        let mut tls = TlsAcceptor::from(server_config)
            .accept(proxy_in)
            .await
            .unwrap();
        let mut captured = Vec::new();
        let _ = tls.read_to_end(&mut captured).await; // plaintext frames
        let _ = tls.shutdown().await;
        captured
    });
    let mut client = victim.connect("localhost", victim_io).await.unwrap();
    client.send("pay 100 to Mallory".into()).await.unwrap();
    client.close().await.unwrap();
    let captured = proxy.await.unwrap();
    assert!(captured.len() > 36, "the proxy saw the frame");

    // 2. The proxy relays the captured bytes into its own connection.
    let (relay_io, server_io) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(async move {
        let mut server = real_server.accept(server_io).await.unwrap();
        drain(&mut server).await
    });
    let name = ServerName::try_from("localhost").unwrap();
    let mut relay = TlsConnector::from(client_config)
        .connect(name, relay_io)
        .await
        .unwrap();
    // The server may hang up (InvalidHmac) before the relay has finished.
    if relay.write_all(&captured).await.is_ok() {
        let _ = relay.shutdown().await;
    }
    server.await.unwrap()
}

#[tokio::test]
async fn lab_mode_accepts_a_relayed_frame_the_weakness() {
    let (delivered, end) = relay_attack(AuthMode::Lab).await;
    assert_eq!(delivered, ["pay 100 to Mallory"]);
    assert!(end.is_none(), "{end:?}");
}

#[tokio::test]
async fn session_bound_mode_refuses_a_relayed_frame_the_fix() {
    let (delivered, end) = relay_attack(AuthMode::SessionBound).await;
    assert!(delivered.is_empty(), "{delivered:?}");
    assert!(matches!(end, Some(LinkError::InvalidHmac)), "{end:?}");
}

async fn session_pair(
    client_mode: AuthMode,
    server_mode: AuthMode,
) -> (
    secure_link::SecureClient<tokio::io::DuplexStream>,
    secure_link::SecureServer<tokio::io::DuplexStream>,
) {
    let pki = pki();
    let connector = SecureConnector::new(&pki.ca_pem, KEY)
        .unwrap()
        .with_auth_mode(client_mode);
    let acceptor = SecureAcceptor::new(&pki.chain_pem, &pki.key_pem, KEY)
        .unwrap()
        .with_auth_mode(server_mode);
    connected(&connector, &acceptor).await
}

#[tokio::test]
async fn session_bound_links_work_in_both_directions() {
    let (mut client, mut server) =
        session_pair(AuthMode::SessionBound, AuthMode::SessionBound).await;
    let echo = tokio::spawn(async move {
        while let Some(message) = server.next().await {
            server.send(message.unwrap()).await.unwrap();
        }
        server.close().await.unwrap();
    });
    for i in 0..100 {
        let message = Bytes::from(format!("message {i}"));
        client.send(message.clone()).await.unwrap();
        assert_eq!(client.next().await.unwrap().unwrap(), message);
    }
    client.close().await.unwrap();
    assert!(client.next().await.is_none());
    echo.await.unwrap();
}

#[tokio::test]
async fn mismatched_modes_fail_on_the_first_message() {
    for (client_mode, server_mode) in [
        (AuthMode::SessionBound, AuthMode::Lab),
        (AuthMode::Lab, AuthMode::SessionBound),
    ] {
        let (mut client, mut server) = session_pair(client_mode, server_mode).await;
        client.send("first".into()).await.unwrap();
        assert!(
            matches!(server.next().await, Some(Err(LinkError::InvalidHmac))),
            "{client_mode:?} -> {server_mode:?}"
        );
    }
}

#[tokio::test]
async fn two_real_connections_export_different_keying_material() {
    let (client_a, server_a) = session_pair(AuthMode::SessionBound, AuthMode::SessionBound).await;
    let (client_b, _server_b) = session_pair(AuthMode::SessionBound, AuthMode::SessionBound).await;
    let export = |conn: &secure_link::rustls::ClientConnection| {
        conn.export_keying_material([0u8; 32], SESSION_EXPORTER_LABEL, None)
            .unwrap()
    };
    let a = export(client_a.get_ref().1);
    let b = export(client_b.get_ref().1);
    assert_ne!(a, b, "two sessions, two exporters, two session keys");
    // Both ends of one connection agree on it.
    let a_server = server_a
        .get_ref()
        .1
        .export_keying_material([0u8; 32], SESSION_EXPORTER_LABEL, None)
        .unwrap();
    assert_eq!(a, a_server);
}
