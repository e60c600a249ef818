//! Key rotation without downtime: a server accepts an additional key
//! besides its primary one; each connection is pinned to the key that
//! verifies its first frame. Old, new and unknown keys, both tag formats,
//! at the codec and over a link; key fingerprints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::{Bytes, BytesMut};
use common::{connected, pki};
use futures::{SinkExt, StreamExt};
use secure_link::codec::Role;
use secure_link::{AuthMode, HmacFrameCodec, HmacKey, LinkError, SecureAcceptor, SecureConnector};
use tokio_util::codec::{Decoder, Encoder};

const OLD: &[u8] = b"the old key, 32 bytes long......";
const NEW: &[u8] = b"the new key, 32 bytes long......";
const UNKNOWN: &[u8] = b"nobody's key, 32 bytes long.....";

fn wire(key: &[u8], payloads: &[&[u8]]) -> Vec<u8> {
    let mut codec = HmacFrameCodec::new(key);
    let mut out = BytesMut::new();
    for payload in payloads {
        codec
            .encode(Bytes::copy_from_slice(payload), &mut out)
            .unwrap();
    }
    out.to_vec()
}

/// Feeds `wire` in pieces of `chunk` bytes, decoding all it can after
/// each; the frames, and the error if any.
fn decode_in_chunks(
    codec: &mut HmacFrameCodec,
    wire: &[u8],
    chunk: usize,
) -> (Vec<Bytes>, Option<LinkError>) {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in wire.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(err) => return (frames, Some(err)),
            }
        }
    }
    (frames, None)
}

/// Byte by byte the buffer never holds two whole frames (each frame is
/// verified alone); in one chunk it holds them all (large frames are
/// verified in pairs).
fn decode_byte_by_byte(codec: &mut HmacFrameCodec, wire: &[u8]) -> (Vec<Bytes>, Option<LinkError>) {
    decode_in_chunks(codec, wire, 1)
}

fn decode_in_one_chunk(codec: &mut HmacFrameCodec, wire: &[u8]) -> (Vec<Bytes>, Option<LinkError>) {
    decode_in_chunks(codec, wire, wire.len().max(1))
}

fn rotating() -> HmacFrameCodec {
    HmacFrameCodec::new(NEW).with_additional_key(OLD)
}

#[test]
fn a_codec_pins_to_the_key_that_verifies_the_first_frame() {
    let big = vec![1u8; 2000]; // past the pairing threshold
    for decode in [decode_byte_by_byte, decode_in_one_chunk] {
        for (key, pinned) in [(NEW, 0), (OLD, 1)] {
            let mut codec = rotating();
            assert_eq!(codec.pinned_key(), None);
            let (frames, err) = decode(&mut codec, &wire(key, &[b"one", &big, &big]));
            assert!(err.is_none(), "{err:?}");
            assert_eq!(frames, [&b"one"[..], &big, &big]);
            assert_eq!(codec.pinned_key(), Some(pinned));

            // Pinned: more frames under the pinned key verify (in one
            // chunk, two large frames at a time)...
            let (frames, err) = decode(&mut codec, &wire(key, &[&big, &big, b"three"]));
            assert!(err.is_none(), "{err:?}");
            assert_eq!(frames, [&big[..], &big, b"three"]);

            // ... the other key no longer does, alone or in a pair...
            let other = if pinned == 0 { OLD } else { NEW };
            for forged in [wire(other, &[b"two"]), wire(other, &[&big, &big])] {
                let (frames, err) = decode(&mut codec.clone(), &forged);
                assert!(frames.is_empty());
                assert!(matches!(err, Some(LinkError::InvalidHmac)), "{err:?}");
            }
            // ... nor does a pair whose second frame is under the other key.
            let mut mixed = wire(key, &[&big]);
            mixed.extend_from_slice(&wire(other, &[&big]));
            let (frames, err) = decode(&mut codec.clone(), &mixed);
            assert!(frames.len() <= 1, "{} frames", frames.len());
            assert!(matches!(err, Some(LinkError::InvalidHmac)), "{err:?}");

            // ... and what the codec sends is signed with the pinned key.
            let mut codec = rotating();
            decode(&mut codec, &wire(key, &[b"one"]));
            let mut sent = BytesMut::new();
            codec
                .encode(Bytes::from_static(b"reply"), &mut sent)
                .unwrap();
            assert_eq!(sent.to_vec(), wire(key, &[b"reply"]));
        }
    }
}

#[test]
fn a_first_frame_under_no_accepted_key_is_invalid_and_pins_nothing() {
    let mut codec = rotating().with_additional_key(b"a third key");
    let (frames, err) = decode_byte_by_byte(&mut codec, &wire(UNKNOWN, &[b"forged"]));
    assert!(frames.is_empty());
    assert!(matches!(err, Some(LinkError::InvalidHmac)), "{err:?}");
    assert_eq!(codec.pinned_key(), None);
    // Before any frame verified, frames are sent under the primary key.
    let mut sent = BytesMut::new();
    rotating()
        .encode(Bytes::from_static(b"hello"), &mut sent)
        .unwrap();
    assert_eq!(sent.to_vec(), wire(NEW, &[b"hello"]));
}

#[test]
fn session_bound_codecs_rotate_too() {
    let exporter = [9u8; 32];
    let server = rotating().bound_to_session(&exporter, Role::Server);
    for (key, pinned) in [(NEW, 0), (OLD, 1)] {
        let mut client = HmacFrameCodec::new(key).bound_to_session(&exporter, Role::Client);
        let mut out = BytesMut::new();
        for payload in [&b"first"[..], b"second"] {
            client
                .encode(Bytes::copy_from_slice(payload), &mut out)
                .unwrap();
        }
        let mut server = server.clone();
        let (frames, err) = decode_byte_by_byte(&mut server, &out);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(frames, [&b"first"[..], b"second"]);
        assert_eq!(server.pinned_key(), Some(pinned));
        // The server's reply verifies at the client (same key, s2c, 0).
        let mut reply = BytesMut::new();
        server
            .encode(Bytes::from_static(b"ok"), &mut reply)
            .unwrap();
        assert_eq!(client.decode(&mut reply).unwrap().unwrap(), "ok");
    }
    let mut client = HmacFrameCodec::new(UNKNOWN).bound_to_session(&exporter, Role::Client);
    let mut out = BytesMut::new();
    client.encode(Bytes::from_static(b"x"), &mut out).unwrap();
    let err = server.clone().decode(&mut out).unwrap_err();
    assert!(matches!(err, LinkError::InvalidHmac), "{err:?}");
}

#[tokio::test]
async fn a_rotating_server_serves_old_and_new_clients_and_refuses_others() {
    let pki = pki();
    for mode in [AuthMode::Lab, AuthMode::SessionBound] {
        let acceptor = SecureAcceptor::new(&pki.chain_pem, &pki.key_pem, NEW)
            .unwrap()
            .with_additional_key(OLD)
            .with_auth_mode(mode);
        for (key, accepted) in [(OLD, true), (NEW, true), (UNKNOWN, false)] {
            let connector = SecureConnector::new(&pki.ca_pem, key)
                .unwrap()
                .with_auth_mode(mode);
            let (mut client, mut server) = connected(&connector, &acceptor).await;
            assert_eq!(server.key_fingerprint(), None);
            client.send("hello".into()).await.unwrap();
            match server.next().await.unwrap() {
                Ok(message) => {
                    assert!(
                        accepted,
                        "{mode:?}: a client with an unknown key was served"
                    );
                    assert_eq!(message, "hello");
                    assert_eq!(
                        server.key_fingerprint(),
                        Some(HmacKey::from(key).fingerprint())
                    );
                    server.send(message).await.unwrap();
                    assert_eq!(client.next().await.unwrap().unwrap(), "hello");
                }
                Err(err) => {
                    assert!(!accepted, "{mode:?}: {err}");
                    assert!(matches!(err, LinkError::InvalidHmac), "{err:?}");
                    assert_eq!(server.key_fingerprint(), None);
                }
            }
        }
    }
}

#[tokio::test]
async fn short_keys_are_named_by_position_not_fingerprinted() {
    let pki = pki();
    let acceptor = SecureAcceptor::new(&pki.chain_pem, &pki.key_pem, b"ab")
        .unwrap()
        .with_additional_key(b"cd")
        .with_additional_key(b"")
        .with_additional_key(b"ef")
        .with_additional_key(OLD);
    // The empty key is ignored, not added: the key after it is the third.
    for (key, id) in [
        (&b"ab"[..], "short-key-0".to_owned()),
        (b"cd", "short-key-1".to_owned()),
        (b"ef", "short-key-2".to_owned()),
        (OLD, HmacKey::from(OLD).fingerprint()),
    ] {
        let connector = SecureConnector::new(&pki.ca_pem, key).unwrap();
        let (mut client, mut server) = connected(&connector, &acceptor).await;
        client.send("hi".into()).await.unwrap();
        assert_eq!(server.next().await.unwrap().unwrap(), "hi");
        assert_eq!(server.key_fingerprint(), Some(id));
    }
    let debug = format!("{acceptor:?}");
    assert!(!debug.contains(&hex::encode(OLD)), "{debug}");
}

#[test]
fn fingerprints_are_stable_short_and_refused_for_short_keys() {
    // SHA-256("secure-link key fingerprint v1\0" || key)[..8], computed
    // with Python's hashlib.
    assert_eq!(HmacKey::from(&[7u8; 32]).fingerprint(), "ea517513fc55ce36");
    let sequence: Vec<u8> = (0..32).collect();
    assert_eq!(HmacKey::from(sequence).fingerprint(), "b2f2ac3cb6197f81");
    assert_eq!(HmacKey::from(&[7u8; 16]).fingerprint().len(), 16);
    assert_eq!(HmacKey::from(&[7u8; 15]).fingerprint(), "short-key");
    assert_eq!(HmacKey::from(b"ab").fingerprint(), "short-key");
    assert_ne!(
        HmacKey::from(OLD).fingerprint(),
        HmacKey::from(NEW).fingerprint()
    );
}
