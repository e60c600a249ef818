//! HmacFrameCodec against the wire format, byte by byte.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use secure_link::codec::Role;
use secure_link::fuzzing::{Fed, feed};
use secure_link::{DEFAULT_MAX_FRAME_LEN, HmacFrameCodec, HmacKey, LENGTH_LEN, LinkError, TAG_LEN};
use sha2::Sha256;
use tokio_util::codec::{Decoder, Encoder, FramedRead};

const KEY: &[u8] = b"codec test key";

/// The frame for `payload`, built from the format's definition with the
/// hmac crate directly, not with the codec.
fn reference_frame(key: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(payload);
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    frame.extend_from_slice(&mac.finalize().into_bytes());
    frame
}

fn encode_all(codec: &mut HmacFrameCodec, payloads: &[&[u8]]) -> BytesMut {
    let mut wire = BytesMut::new();
    for payload in payloads {
        codec
            .encode(Bytes::copy_from_slice(payload), &mut wire)
            .unwrap();
    }
    wire
}

/// Feeds `wire` to a fresh decoder in the given chunk sizes (cycled),
/// decoding after every chunk like `Framed` does, then runs `decode_eof`.
fn decode_in_chunks(wire: &[u8], chunks: &[usize]) -> Result<Vec<Bytes>, LinkError> {
    decode_in_chunks_with(HmacFrameCodec::new(KEY), wire, chunks)
}

fn decode_in_chunks_with(
    mut codec: HmacFrameCodec,
    wire: &[u8],
    chunks: &[usize],
) -> Result<Vec<Bytes>, LinkError> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = wire;
    let mut sizes = chunks.iter().copied().cycle();
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(1).clamp(1, rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        while let Some(frame) = codec.decode(&mut buf)? {
            out.push(frame);
        }
    }
    while let Some(frame) = codec.decode_eof(&mut buf)? {
        out.push(frame);
    }
    Ok(out)
}

#[test]
fn encoded_bytes_are_length_payload_and_independent_hmac() {
    let mut codec = HmacFrameCodec::new(KEY);
    let wire = encode_all(&mut codec, &[b"hello"]);
    assert_eq!(wire.len(), LENGTH_LEN + 5 + TAG_LEN);
    assert_eq!(&wire[..], &reference_frame(KEY, b"hello")[..]);
    assert_eq!(&wire[..9], b"\x00\x00\x00\x05hello");
}

#[test]
fn encoded_lab_key_frame_matches_known_vector() {
    // Python: hmac.new(b"ab", b"hi", hashlib.sha256).hexdigest()
    let mut codec = HmacFrameCodec::new(&b"ab"[..]);
    let wire = encode_all(&mut codec, &[b"hi"]);
    let mut expected = b"\x00\x00\x00\x02hi".to_vec();
    expected.extend(
        hex::decode("b40697a0443d82ed598b86a2389c261fad05339e3effa88d082559fadd12a8b5").unwrap(),
    );
    assert_eq!(&wire[..], &expected[..]);
}

/// The codec hashes every lone frame in one keyed HMAC state and resets
/// it afterwards: a state left dirty by one frame would change every tag
/// after it, in either direction (they share the state).
#[test]
fn every_frame_of_a_sequence_in_both_directions_matches_the_reference() {
    let lengths = [0usize, 1, 31, 55, 56, 63, 64, 65, 119, 511, 1000, 4096];
    let mut codec = HmacFrameCodec::new(KEY);
    for (i, &len) in lengths.iter().enumerate() {
        let payload = vec![i as u8; len];
        let mut wire = BytesMut::new();
        codec
            .encode(Bytes::copy_from_slice(&payload), &mut wire)
            .unwrap();
        assert_eq!(&wire[..], &reference_frame(KEY, &payload)[..], "frame {i}");
        // The same codec receives a frame between two it sends.
        let mut incoming = BytesMut::from(&reference_frame(KEY, &payload[..len / 2])[..]);
        assert_eq!(
            codec.decode(&mut incoming).unwrap().unwrap(),
            &payload[..len / 2],
            "frame {i}"
        );
    }
}

#[test]
fn empty_payload_is_a_36_byte_frame() {
    let mut codec = HmacFrameCodec::new(KEY);
    let mut wire = encode_all(&mut codec, &[b""]);
    assert_eq!(wire.len(), 36);
    assert_eq!(&wire[..4], &[0, 0, 0, 0]);
    assert_eq!(codec.decode(&mut wire).unwrap(), Some(Bytes::new()));
    assert!(wire.is_empty());
}

#[test]
fn partial_frame_decodes_to_none_until_complete() {
    let frame = reference_frame(KEY, b"partial");
    let mut codec = HmacFrameCodec::new(KEY);
    let mut buf = BytesMut::new();
    for (i, byte) in frame.iter().enumerate() {
        buf.put_u8(*byte);
        let decoded = codec.decode(&mut buf).unwrap();
        if i + 1 < frame.len() {
            assert_eq!(decoded, None, "frame complete after {} bytes", i + 1);
        } else {
            assert_eq!(decoded, Some(Bytes::from_static(b"partial")));
        }
    }
}

#[test]
fn frames_fed_byte_by_byte_decode_the_same() {
    let payloads: [&[u8]; 4] = [b"", b"hello", &[0u8; 1000], b"a bit longer message"];
    let mut codec = HmacFrameCodec::new(KEY);
    let wire = encode_all(&mut codec, &payloads);
    let decoded = decode_in_chunks(&wire, &[1]).unwrap();
    assert_eq!(decoded, payloads);
}

#[test]
fn declared_length_over_max_fails_before_reserving() {
    let mut codec = HmacFrameCodec::new(KEY).with_max_frame_len(1024);
    let mut buf = BytesMut::with_capacity(8);
    buf.put_u32(1025);
    let err = codec.decode(&mut buf).unwrap_err();
    assert!(
        matches!(
            err,
            LinkError::FrameTooLarge {
                len: 1025,
                max: 1024
            }
        ),
        "{err:?}"
    );
    assert!(buf.capacity() < 1024, "capacity {}", buf.capacity());
}

#[test]
fn four_gib_declaration_fails_with_frame_too_large() {
    let mut codec = HmacFrameCodec::new(KEY);
    let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
    let err = codec.decode(&mut buf).unwrap_err();
    assert!(
        matches!(err, LinkError::FrameTooLarge { len, max }
            if len == u32::MAX as u64 && max == DEFAULT_MAX_FRAME_LEN as u64),
        "{err:?}"
    );
}

#[test]
fn frames_exactly_at_max_decode_and_one_over_fails() {
    let max = 4096;
    let at_max = vec![7u8; max];
    let mut codec = HmacFrameCodec::new(KEY).with_max_frame_len(max);
    let mut wire = encode_all(&mut codec, &[&at_max]);
    assert_eq!(
        codec.decode(&mut wire).unwrap().as_deref(),
        Some(&at_max[..])
    );

    let mut over = BytesMut::from(&reference_frame(KEY, &vec![7u8; max + 1])[..]);
    let err = codec.decode(&mut over).unwrap_err();
    assert!(
        matches!(
            err,
            LinkError::FrameTooLarge {
                len: 4097,
                max: 4096
            }
        ),
        "{err:?}"
    );
}

#[test]
fn read_buffer_grows_in_bounded_steps_for_a_large_declared_frame() {
    let mut codec = HmacFrameCodec::new(KEY);
    let mut buf = BytesMut::new();
    buf.put_u32(DEFAULT_MAX_FRAME_LEN as u32);
    buf.extend_from_slice(b"only a few bytes of the body");
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    let limit = 256 * 1024 + 64;
    assert!(
        buf.capacity() <= limit,
        "capacity {} after header",
        buf.capacity()
    );

    // Feed 1 MiB in 16 KiB reads: capacity follows the data received (at
    // most twice it, plus the step), not the declared 8 MiB.
    let chunk = [0u8; 16 * 1024];
    for _ in 0..64 {
        buf.extend_from_slice(&chunk);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert!(
            buf.capacity() <= 2 * (buf.len() + limit),
            "capacity {} for {} buffered bytes",
            buf.capacity(),
            buf.len()
        );
    }
}

#[test]
fn a_large_frame_read_in_small_pieces_is_copied_a_bounded_number_of_times() {
    // Two 1 MiB frames and two 64 KiB ones, read as `Framed` reads (the
    // fuzz harness's reader) 4 KiB at a time, what rustls hands over when
    // the reader has caught up with the sender, and at two other sizes.
    // The harness keeps every frame, so no allocation can be reclaimed in
    // place: every move it counts is a copy.
    let wire = encode_all(
        &mut HmacFrameCodec::new(KEY),
        &[
            &[1u8; 1 << 20],
            &[2u8; 1 << 20],
            &[3u8; 64 << 10],
            &[4u8; 64 << 10],
        ],
    );
    for read in [4096, 441, 16 * 1024 + 5] {
        let Fed {
            decoded,
            outcome,
            moved,
        } = feed(&mut HmacFrameCodec::new(KEY), &wire, &[read]);
        assert!(outcome.is_none(), "{outcome:?}");
        let lengths: Vec<usize> = decoded.iter().map(Bytes::len).collect();
        assert_eq!(lengths, [1 << 20, 1 << 20, 64 << 10, 64 << 10]);
        println!("{read}-byte reads: {moved} bytes moved for {}", wire.len());
        // Growth at least doubles the room, so each frame's bytes are
        // moved about once: at most twice the wire in all.
        assert!(
            moved <= 2 * wire.len(),
            "{moved} bytes moved to receive {} in {read}-byte reads",
            wire.len()
        );
    }
}

#[test]
fn the_first_frame_has_its_own_smaller_limit_until_a_tag_verifies() {
    let limited = || HmacFrameCodec::new(KEY).with_max_first_frame_len(600);
    // Over it: refused at the length prefix, naming that limit.
    let over = reference_frame(KEY, &[1; 601]);
    for codec in [
        limited(),
        limited().bound_to_session(&[9; 32], Role::Server),
    ] {
        let mut buf = BytesMut::from(&over[..LENGTH_LEN]);
        let mut codec = codec;
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(
            matches!(err, LinkError::FrameTooLarge { len: 601, max: 600 }),
            "{err:?}"
        );
    }
    // At it, then larger ones (a pair too): all delivered, in any chunking.
    let payloads: [&[u8]; 4] = [&[1; 600], &[2; 5000], &[3; 5000], &[4; 601]];
    let wire: Vec<u8> = payloads
        .iter()
        .flat_map(|p| reference_frame(KEY, p))
        .collect();
    for chunks in [&[1][..], &[7, 3000], &[wire.len()]] {
        let got = decode_in_chunks_with(limited(), &wire, chunks).unwrap();
        assert_eq!(got, payloads.to_vec(), "chunks {chunks:?}");
    }
    // A forged first frame under the limit unlocks nothing.
    let mut forged = reference_frame(KEY, &[1; 10]);
    forged[LENGTH_LEN] ^= 1;
    forged.extend_from_slice(&reference_frame(KEY, &[2; 5000]));
    let err = decode_in_chunks_with(limited(), &forged, &[1]).unwrap_err();
    assert!(matches!(err, LinkError::InvalidHmac), "{err:?}");
    // The limit never raises the overall maximum.
    let capped = HmacFrameCodec::new(KEY)
        .with_max_frame_len(100)
        .with_max_first_frame_len(1000);
    let err = decode_in_chunks_with(capped, &reference_frame(KEY, &[0; 101]), &[4]).unwrap_err();
    assert!(
        matches!(err, LinkError::FrameTooLarge { len: 101, max: 100 }),
        "{err:?}"
    );
}

#[test]
fn encoding_a_payload_over_max_writes_nothing() {
    let mut codec = HmacFrameCodec::new(KEY).with_max_frame_len(10);
    let mut dst = BytesMut::from(&b"earlier"[..]);
    let err = codec
        .encode(Bytes::from_static(b"eleven byte"), &mut dst)
        .unwrap_err();
    assert!(
        matches!(err, LinkError::FrameTooLarge { len: 11, max: 10 }),
        "{err:?}"
    );
    assert_eq!(&dst[..], b"earlier");
}

#[test]
fn max_frame_len_is_capped_at_what_a_u32_can_describe() {
    let codec = HmacFrameCodec::new(KEY).with_max_frame_len(usize::MAX);
    assert_eq!(codec.max_frame_len(), u32::MAX as usize);
}

#[test]
fn bad_tag_is_invalid_hmac_and_stays_invalid() {
    let mut frame = reference_frame(KEY, b"forged");
    let last = frame.len() - 1;
    frame[last] ^= 1;
    let mut codec = HmacFrameCodec::new(KEY);
    let mut buf = BytesMut::from(&frame[..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(LinkError::InvalidHmac)
    ));
    // Nothing was consumed: asking again gives the same verdict.
    assert!(matches!(
        codec.decode(&mut buf),
        Err(LinkError::InvalidHmac)
    ));
    // Refusing it left the codec's one HMAC state keyed and clean: the
    // encoder, which hashes in the same state, still tags correctly.
    let wire = encode_all(&mut codec, &[b"after"]);
    assert_eq!(&wire[..], &reference_frame(KEY, b"after")[..]);
}

#[test]
fn frame_from_another_key_is_invalid_hmac() {
    let frame = reference_frame(b"another key", b"hello");
    let mut codec = HmacFrameCodec::new(KEY);
    let mut buf = BytesMut::from(&frame[..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(LinkError::InvalidHmac)
    ));
}

#[test]
fn altered_payload_is_invalid_hmac() {
    let mut frame = reference_frame(KEY, b"pay 10 EUR");
    frame[LENGTH_LEN + 4] = b'9';
    let mut codec = HmacFrameCodec::new(KEY);
    assert!(matches!(
        codec.decode(&mut BytesMut::from(&frame[..])),
        Err(LinkError::InvalidHmac)
    ));
}

#[test]
fn eof_inside_a_frame_is_truncated_not_a_partial_message() {
    let frame = reference_frame(KEY, b"cut short");
    for cut in 1..frame.len() {
        let mut codec = HmacFrameCodec::new(KEY);
        let mut buf = BytesMut::from(&frame[..cut]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert!(
            matches!(codec.decode_eof(&mut buf), Err(LinkError::Truncated)),
            "cut at {cut}"
        );
    }
}

#[test]
fn eof_at_a_frame_boundary_is_a_clean_end() {
    let mut codec = HmacFrameCodec::new(KEY);
    let mut buf = encode_all(&mut codec, &[b"one"]);
    assert_eq!(
        codec.decode_eof(&mut buf).unwrap(),
        Some(Bytes::from_static(b"one"))
    );
    assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
}

#[test]
fn debug_output_shows_no_key() {
    let codec = HmacFrameCodec::new(&b"SECRETKEYBYTES"[..]);
    let text = format!("{codec:?}");
    assert!(!text.contains("SECRET"), "{text}");
    let key = HmacKey::from(&b"SECRETKEYBYTES"[..]);
    let text = format!("{key:?} {key:#?}");
    assert!(!text.contains("SECRET") && !text.contains("83"), "{text}");
}

#[test]
fn generated_keys_are_32_random_bytes() {
    let a = HmacKey::generate().unwrap();
    let b = HmacKey::generate().unwrap();
    assert_eq!(a.len(), 32);
    assert_ne!(a.as_bytes(), b.as_bytes());
    assert_ne!(a.as_bytes(), &[0u8; 32]);
}

#[test]
fn key_hex_round_trips_and_rejects_bad_input() {
    let key = HmacKey::from(vec![0x00, 0xab, 0xff]);
    assert_eq!(key.to_hex(), "00abff");
    assert_eq!(
        HmacKey::from_hex(" 00ABff\n").unwrap().as_bytes(),
        &[0x00, 0xab, 0xff]
    );
    for bad in ["", "  \n", "abc", "zz", "00 11"] {
        assert!(
            matches!(HmacKey::from_hex(bad), Err(LinkError::Config(_))),
            "{bad:?} accepted"
        );
    }
    // The error names the position, never the secret's characters.
    let err = HmacKey::from_hex("00112233q4").unwrap_err().to_string();
    assert!(err.contains("character 9"), "{err}");
    assert!(!err.contains('q'), "{err}");
}

#[tokio::test]
async fn framed_read_from_scripted_io_ends_after_invalid_hmac() {
    let good = reference_frame(KEY, b"first");
    let mut forged = reference_frame(b"wrong", b"second");
    forged.extend_from_slice(&reference_frame(KEY, b"never heard"));
    let io = tokio_test::io::Builder::new()
        .read(&good[..3])
        .read(&good[3..])
        .read(&forged)
        .build();
    let mut frames = FramedRead::new(io, HmacFrameCodec::new(KEY));
    assert_eq!(frames.next().await.unwrap().unwrap(), "first");
    assert!(matches!(
        frames.next().await,
        Some(Err(LinkError::InvalidHmac))
    ));
    assert!(frames.next().await.is_none());
}

#[tokio::test]
async fn framed_read_eof_mid_frame_is_truncated() {
    let frame = reference_frame(KEY, b"whole");
    let mut wire = frame.clone();
    wire.extend_from_slice(&frame[..10]);
    let io = tokio_test::io::Builder::new().read(&wire).build();
    let mut frames = FramedRead::new(io, HmacFrameCodec::new(KEY));
    assert_eq!(frames.next().await.unwrap().unwrap(), "whole");
    assert!(matches!(
        frames.next().await,
        Some(Err(LinkError::Truncated))
    ));
}

#[test]
fn link_error_survives_a_trip_through_io_error() {
    let io: std::io::Error = LinkError::InvalidHmac.into();
    assert_eq!(io.kind(), std::io::ErrorKind::InvalidData);
    assert!(matches!(LinkError::from(io), LinkError::InvalidHmac));
    let io: std::io::Error = LinkError::FrameTooLarge { len: 9, max: 8 }.into();
    assert!(matches!(
        LinkError::from(io),
        LinkError::FrameTooLarge { len: 9, max: 8 }
    ));
    let plain = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
    assert!(
        matches!(LinkError::from(plain), LinkError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
    );
}

/// Frames of `len`-byte payloads numbered by their first byte.
fn numbered(count: u8, len: usize) -> Vec<Vec<u8>> {
    (0..count).map(|i| vec![i; len]).collect()
}

fn as_refs(payloads: &[Vec<u8>]) -> Vec<&[u8]> {
    payloads.iter().map(Vec::as_slice).collect()
}

#[test]
fn two_whole_frames_are_verified_together_and_returned_one_per_call() {
    let payloads = numbered(2, 600);
    let mut wire = encode_all(&mut HmacFrameCodec::new(KEY), &as_refs(&payloads));
    let mut codec = HmacFrameCodec::new(KEY);
    assert_eq!(codec.decode(&mut wire).unwrap().unwrap(), payloads[0]);
    // Both frames left the buffer; the codec holds the verified second one
    // and returns it whatever buffer it is given next.
    assert!(wire.is_empty());
    assert_eq!(
        codec.decode(&mut BytesMut::new()).unwrap().unwrap(),
        payloads[1]
    );
    assert_eq!(codec.decode(&mut BytesMut::new()).unwrap(), None);
}

#[test]
fn a_frame_verified_in_a_pair_comes_out_of_decode_eof_too() {
    let payloads = numbered(2, 4096);
    let mut wire = encode_all(&mut HmacFrameCodec::new(KEY), &as_refs(&payloads));
    let mut codec = HmacFrameCodec::new(KEY);
    assert_eq!(codec.decode_eof(&mut wire).unwrap().unwrap(), payloads[0]);
    assert_eq!(codec.decode_eof(&mut wire).unwrap().unwrap(), payloads[1]);
    assert_eq!(codec.decode_eof(&mut wire).unwrap(), None);
}

#[test]
fn a_forged_second_frame_of_a_pair_fails_after_the_first_is_delivered() {
    let payloads = numbered(3, 1024);
    let mut wire = encode_all(&mut HmacFrameCodec::new(KEY), &as_refs(&payloads));
    let second_tag_end = 2 * (LENGTH_LEN + 1024 + TAG_LEN);
    wire[second_tag_end - 1] ^= 1;
    let mut codec = HmacFrameCodec::new(KEY);
    assert_eq!(codec.decode(&mut wire).unwrap().unwrap(), payloads[0]);
    assert!(matches!(
        codec.decode(&mut wire),
        Err(LinkError::InvalidHmac)
    ));
}

#[test]
fn a_forged_first_frame_of_a_pair_delivers_nothing() {
    let payloads = numbered(2, 1024);
    let mut wire = encode_all(&mut HmacFrameCodec::new(KEY), &as_refs(&payloads));
    wire[LENGTH_LEN] ^= 1; // first payload byte
    let mut codec = HmacFrameCodec::new(KEY);
    assert!(matches!(
        codec.decode(&mut wire),
        Err(LinkError::InvalidHmac)
    ));
}

#[test]
fn frames_below_the_pair_threshold_or_too_large_are_verified_alone() {
    // 511-byte frames, and a 600-byte frame followed by one over the
    // maximum: each decodes (or fails) exactly as without pairing.
    let small = numbered(3, 511);
    let mut wire = encode_all(&mut HmacFrameCodec::new(KEY), &as_refs(&small));
    let frame = LENGTH_LEN + 511 + TAG_LEN;
    let mut codec = HmacFrameCodec::new(KEY);
    for (i, payload) in small.iter().enumerate() {
        assert_eq!(codec.decode(&mut wire).unwrap().unwrap(), payload);
        // One frame taken from the buffer per call, not two.
        assert_eq!(wire.len(), (small.len() - 1 - i) * frame);
    }

    // A 511-byte frame before a 600-byte one: the first is under the
    // threshold, so it leaves alone even though the second could pair.
    let mut wire = encode_all(
        &mut HmacFrameCodec::new(KEY),
        &[&[1u8; 511][..], &[2u8; 600][..]],
    );
    let mut codec = HmacFrameCodec::new(KEY);
    assert_eq!(codec.decode(&mut wire).unwrap().unwrap(), vec![1u8; 511]);
    assert_eq!(wire.len(), LENGTH_LEN + 600 + TAG_LEN);

    // The second frame's size decides too: 511 bytes leaves it in the
    // buffer, 512 pairs it, and so does a second frame exactly at the
    // maximum.
    for (first, second, max, paired) in [
        (600, 511, 8000, false),
        (600, 512, 8000, true),
        (600, 700, 700, true),
        (512, 600, 8000, true),
    ] {
        let mut wire = encode_all(
            &mut HmacFrameCodec::new(KEY),
            &[&vec![1u8; first], &vec![2u8; second]],
        );
        let mut codec = HmacFrameCodec::new(KEY).with_max_frame_len(max);
        assert_eq!(codec.decode(&mut wire).unwrap().unwrap(), vec![1u8; first]);
        let left = if paired {
            0
        } else {
            LENGTH_LEN + second + TAG_LEN
        };
        assert_eq!(
            wire.len(),
            left,
            "second frame of {second} bytes, max {max}"
        );
        assert_eq!(codec.decode(&mut wire).unwrap().unwrap(), vec![2u8; second]);
    }

    let mut wire = encode_all(
        &mut HmacFrameCodec::new(KEY),
        &[&[1u8; 600][..], &[2u8; 700][..]],
    );
    let mut codec = HmacFrameCodec::new(KEY).with_max_frame_len(650);
    assert_eq!(codec.decode(&mut wire).unwrap().unwrap(), vec![1u8; 600]);
    assert_eq!(wire.len(), LENGTH_LEN + 700 + TAG_LEN);
    assert!(matches!(
        codec.decode(&mut wire),
        Err(LinkError::FrameTooLarge { len: 700, max: 650 })
    ));
}

#[test]
fn session_bound_pairs_keep_counters_and_catch_reordering() {
    let psk = HmacFrameCodec::new(KEY);
    let exporter = [7u8; 32];
    let payloads = numbered(4, 2048);
    let mut sender = psk.bound_to_session(&exporter, Role::Client);
    let wire = encode_all(&mut sender, &as_refs(&payloads));
    let frame = LENGTH_LEN + 2048 + TAG_LEN;

    // In order, whole: two pairs.
    let mut receiver = psk.bound_to_session(&exporter, Role::Server);
    let mut buf = wire.clone();
    for payload in &payloads {
        assert_eq!(receiver.decode(&mut buf).unwrap().unwrap(), payload);
    }

    // Frames 1 and 2 swapped: frame 0 and 2 would be a pair; 0 is
    // delivered, the frame in position 1 is refused.
    let mut swapped = BytesMut::new();
    for i in [0, 2, 1, 3] {
        swapped.extend_from_slice(&wire[i * frame..(i + 1) * frame]);
    }
    let mut receiver = psk.bound_to_session(&exporter, Role::Server);
    assert_eq!(receiver.decode(&mut swapped).unwrap().unwrap(), payloads[0]);
    assert!(matches!(
        receiver.decode(&mut swapped),
        Err(LinkError::InvalidHmac)
    ));
}

proptest! {
    #[test]
    fn any_payloads_round_trip_under_any_chunking(
        // Up to 1,500 bytes and reads up to 4 KiB: frames of 512 bytes and
        // more, two of them whole in one buffer, are verified as a pair.
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..1500), 0..8),
        chunks in prop::collection::vec(1usize..4096, 1..16),
    ) {
        let mut codec = HmacFrameCodec::new(KEY);
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let wire = encode_all(&mut codec, &refs);
        let expected: Vec<u8> = refs.iter().flat_map(|p| reference_frame(KEY, p)).collect();
        prop_assert_eq!(&wire[..], &expected[..]);
        let decoded = decode_in_chunks(&wire, &chunks).unwrap();
        prop_assert_eq!(decoded, payloads);
    }

    /// Length prefixes drawn around the limit (0 to max + 64), so bodies,
    /// tags and reservations run and not just the length check; tags valid
    /// or not. Each frame decodes, or the stream ends with the error that
    /// names it, at any chunking; the buffer stays within its bound.
    #[test]
    fn lengths_around_the_limit_decode_or_fail_with_the_right_error(
        frames in prop::collection::vec((0usize..=512 + 64, any::<u8>(), any::<bool>()), 1..6),
        chunks in prop::collection::vec(1usize..700, 1..8),
    ) {
        let max = 512;
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        let mut ending = None;
        for (len, fill, valid) in frames {
            if len > max {
                wire.extend_from_slice(&(len as u32).to_be_bytes());
                wire.extend_from_slice(&vec![fill; len.min(100)]);
                ending.get_or_insert(LinkError::FrameTooLarge { len: len as u64, max: max as u64 });
                continue;
            }
            let mut frame = reference_frame(KEY, &vec![fill; len]);
            if !valid {
                let last = frame.len() - 1;
                frame[last] ^= 1;
                ending.get_or_insert(LinkError::InvalidHmac);
            } else if ending.is_none() {
                expected.push(Bytes::from(vec![fill; len]));
            }
            wire.extend_from_slice(&frame);
        }

        let mut codec = HmacFrameCodec::new(KEY).with_max_frame_len(max);
        let Fed { decoded, outcome, .. } = feed(&mut codec, &wire, &chunks);
        prop_assert_eq!(decoded, expected);
        match (ending, outcome) {
            (None, None) => {}
            (Some(LinkError::InvalidHmac), Some(LinkError::InvalidHmac)) => {}
            (Some(LinkError::FrameTooLarge { len, max }), Some(LinkError::FrameTooLarge { len: got, max: got_max })) => {
                prop_assert_eq!((len, max), (got, got_max));
            }
            (want, got) => prop_assert!(false, "expected {:?}, got {:?}", want, got),
        }
    }
}

/// A frame in the fuzz harness's key, possibly damaged: 0 valid, 1 a
/// flipped tag bit, 2 a flipped payload bit (if any), 3 a length prefix
/// `delta` over `max`, 4 cut short by one byte.
fn harness_frame(payload: &[u8], damage: u8, max: usize, delta: usize) -> Vec<u8> {
    let mut frame = reference_frame(b"fuzz key", payload);
    match damage {
        1 => *frame.last_mut().unwrap() ^= 1,
        2 if !payload.is_empty() => frame[LENGTH_LEN] ^= 0x80,
        3 => frame[..LENGTH_LEN].copy_from_slice(&((max + delta) as u32).to_be_bytes()),
        4 => {
            frame.pop();
        }
        _ => {}
    }
    frame
}

proptest! {
    /// The fuzz harness (fuzz/) on random bytes, so its checks run in every
    /// CI build too.
    #[test]
    fn fuzz_harness_holds_on_random_inputs(input in prop::collection::vec(any::<u8>(), 0..4096)) {
        secure_link::fuzzing::check_decoder(&input);
    }

    /// ... and on raw input made of frames, valid and damaged, whose
    /// lengths fall around the maximum: random bytes alone almost never
    /// form a whole frame, so they could not notice a decoder that skips
    /// the tag check.
    #[test]
    fn fuzz_harness_holds_on_valid_and_damaged_frames(
        max_sel in 1u8..=40,
        chunk_sel in any::<u8>(),
        first_limit in any::<bool>(),
        frames in prop::collection::vec((0usize..=64, any::<u8>(), 0u8..=6, 1usize..=64), 1..6),
    ) {
        let max = usize::from(max_sel).pow(2) * 9;
        let mut input = vec![max_sel, chunk_sel, if first_limit { 2 } else { 0 }];
        for (over_by, fill, damage, delta) in frames {
            // Lengths from max - 64 to max (0 when max is small).
            let len = max.saturating_sub(over_by);
            let payload = vec![fill; len];
            input.extend_from_slice(&harness_frame(&payload, damage, max, delta));
        }
        secure_link::fuzzing::check_decoder(&input);
    }
}

/// The fuzzer's committed seeds (fuzz/seeds/decode), replayed in every
/// test run of the repository. The published package leaves the fuzzing
/// workspace out; there (no `fuzz/` at all) there is nothing to replay.
/// (This file needs the `fuzzing` feature: `required-features` in the
/// manifest.)
#[test]
fn committed_fuzz_seeds_replay() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    if !root.join("fuzz").exists() && !root.join(".git").exists() {
        eprintln!("no fuzz/ in this package: seeds not replayed");
        return;
    }
    let dir = root.join("fuzz/seeds/decode");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let input = std::fs::read(entry.unwrap().path()).unwrap();
        secure_link::fuzzing::check_decoder(&input);
        replayed += 1;
    }
    assert!(replayed >= 6, "only {replayed} seeds in {}", dir.display());
}

/// Frames larger than the decoder's 256 KiB reservation step, with a
/// first-frame limit, in small and large reads.
#[test]
fn fuzz_harness_covers_frames_past_the_reservation_step() {
    for chunk_sel in [0x05, 0xff] {
        // max 255² * 9 = 585,225; first frame limited to half of it.
        let mut input = vec![0xff, chunk_sel, 0x03];
        input.extend_from_slice(&[b'a'; 290_000]);
        input.push(0xff);
        input.extend_from_slice(&[b'b'; 400_000]);
        secure_link::fuzzing::check_decoder(&input);
    }
}

#[test]
fn fuzz_harness_decodes_valid_frames_exactly() {
    // max 10² * 9, chunks of 3, valid-frames mode, payloads "abc", "", "de".
    secure_link::fuzzing::check_decoder(b"\x0a\x02\x01abc\xff\xffde");
}

#[test]
fn fuzz_harness_decodes_frames_verified_as_a_pair_exactly() {
    // max 32² * 9, reads of 4,096 bytes, valid-frames mode, payloads of
    // 600 and 700 bytes: both frames arrive in one read.
    let mut input = vec![0x20, 0xff, 0x01];
    input.extend_from_slice(&[b'a'; 600]);
    input.push(0xff);
    input.extend_from_slice(&[b'b'; 700]);
    secure_link::fuzzing::check_decoder(&input);
}

/// `with_max_frame_len(usize::MAX)` is capped to what the format (and, on
/// 32-bit targets, a `usize` holding two frames) can describe; the largest
/// declared length then waits for its bytes, reserving in bounded steps,
/// with no overflow in the arithmetic on it.
#[test]
fn the_largest_declarable_frame_is_handled_without_overflow() {
    let mut codec = HmacFrameCodec::new(KEY).with_max_frame_len(usize::MAX);
    assert_eq!(codec.max_frame_len(), u32::MAX as usize);
    let mut buf = BytesMut::new();
    buf.put_u32(u32::MAX);
    buf.extend_from_slice(&[0u8; 1000]);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    assert!(
        buf.capacity() <= 2 * 1000 + 256 * 1024 + 64,
        "{}",
        buf.capacity()
    );
    let err = codec.decode_eof(&mut buf).unwrap_err();
    assert!(matches!(err, LinkError::Truncated), "{err:?}");
}

/// The other side of the reservation bound: once a frame's length is in,
/// the decoder makes room for the rest of it (and for a next frame of the
/// same size, for paired verification) up to 256 KiB ahead, so a frame of
/// that size arrives without the buffer growing again read after read. A
/// new buffer is never under 32 KiB, so reads stay large.
#[test]
fn the_decoder_makes_room_for_the_rest_of_a_frame_up_to_256_kib_ahead() {
    for (declared, room) in [
        (1000usize, 2 * (1000 + TAG_LEN) + LENGTH_LEN),
        (100 * 1024, 2 * (100 * 1024 + TAG_LEN) + LENGTH_LEN),
        (4 << 20, 256 * 1024),
    ] {
        let mut codec = HmacFrameCodec::new(KEY);
        let mut buf = BytesMut::new();
        buf.put_u32(declared as u32);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        let spare = buf.capacity() - buf.len();
        assert!(spare >= room, "{declared}: room for {spare} bytes");
        assert!(
            spare <= room.max(32 * 1024) + 64,
            "{declared}: room for {spare} bytes"
        );
    }
    // With part of the body in: room for what is missing of it, and the
    // next frame.
    let mut codec = HmacFrameCodec::new(KEY);
    let mut buf = BytesMut::new();
    buf.put_u32(100_000);
    buf.extend_from_slice(&[0u8; 10_000]);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    let room = (100_000 + TAG_LEN - 10_000) + (LENGTH_LEN + 100_000 + TAG_LEN);
    let spare = buf.capacity() - buf.len();
    assert!(
        spare >= room && spare <= room + 64,
        "room for {spare} bytes, {room} expected"
    );

    // A buffer with room for the rest of the frame, not for the next: it
    // stays where it is (reads go on; moving it at every read would copy
    // everything held each time).
    let mut codec = HmacFrameCodec::new(KEY);
    let mut buf = BytesMut::with_capacity(2000);
    buf.put_u32(1000);
    buf.extend_from_slice(&[0u8; 900]);
    let at = buf.as_ptr();
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    assert_eq!(buf.as_ptr(), at.wrapping_add(LENGTH_LEN));
    assert_eq!(buf.capacity() - buf.len(), 2000 - 904);

    // Without room for the rest of the frame: it grows, for the rest and
    // the next.
    let mut codec = HmacFrameCodec::new(KEY);
    let mut buf = BytesMut::with_capacity(920);
    buf.put_u32(1000);
    buf.extend_from_slice(&[0u8; 900]);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    let room = (1000 + TAG_LEN - 900) + (LENGTH_LEN + 1000 + TAG_LEN);
    let spare = buf.capacity() - buf.len();
    assert!(spare >= room, "room for {spare} bytes, {room} needed");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Frames long enough to be hashed ahead while they arrive (16 KiB and
    /// more; `feed` hashes ahead after every other read, as a link does
    /// when read dry): valid ones decode exactly, and a flipped bit
    /// anywhere in a payload or tag is `InvalidHmac` with nothing of that
    /// frame delivered, at any chunking.
    #[test]
    fn frames_hashed_ahead_verify_exactly(
        frames in prop::collection::vec((16_384usize..40_000, any::<u8>(), 0u8..3, any::<prop::sample::Index>()), 1..4),
        chunks in prop::collection::vec(1usize..20_000, 1..6),
    ) {
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        let mut forged = false;
        for (len, fill, damage, at) in frames {
            let payload: Vec<u8> = (0..len).map(|i| fill ^ (i as u8)).collect();
            let mut frame = reference_frame(KEY, &payload);
            match damage {
                1 => frame[LENGTH_LEN + at.index(len)] ^= 1,
                2 => frame[LENGTH_LEN + len + at.index(TAG_LEN)] ^= 1,
                _ if !forged => expected.push(Bytes::from(payload)),
                _ => {}
            }
            forged |= damage != 0;
            wire.extend_from_slice(&frame);
        }
        let mut codec = HmacFrameCodec::new(KEY);
        let Fed { decoded, outcome, .. } = feed(&mut codec, &wire, &chunks);
        prop_assert_eq!(decoded, expected);
        prop_assert_eq!(forged, matches!(outcome, Some(LinkError::InvalidHmac)));
        prop_assert!(forged || outcome.is_none(), "{:?}", outcome);
    }
}
