//! Harness for fuzzing the frame decoder (`fuzz/` calls it; so can tests).
//! Not part of the stable API.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::{HmacFrameCodec, TAG_LEN};

/// The key the harness signs and verifies with.
const KEY: &[u8] = b"fuzz key";

/// Most the decoder may reserve beyond what it was given (see the codec's
/// contract): twice the bytes held plus the 256 KiB step, plus slack for
/// the allocator's rounding.
fn capacity_bound(held: usize) -> usize {
    2 * (held + 256 * 1024) + 64
}

/// Feeds `input` to an [`HmacFrameCodec`] and checks its contract; panics
/// (which the fuzzer reports) on any violation.
///
/// Byte 0 selects the maximum frame length (`byte * 97`), byte 1 the read
/// chunk size: 1 to 192 bytes for values below 192, else a multiple of 64
/// up to 4,096 (large reads put two whole frames in the buffer, which the
/// decoder verifies as a pair). If byte 2 is odd, the rest is first split into
/// payloads (at `0xff` bytes) that are encoded as valid frames, followed by
/// the same bytes raw: the valid frames must decode exactly. Otherwise the
/// rest is fed raw. Raw input must never panic, never yield a payload over
/// the maximum, and never make the decoder reserve more than the bound.
pub fn check_decoder(input: &[u8]) {
    let [max_sel, chunk_sel, mode, rest @ ..] = input else {
        return;
    };
    let max = usize::from(*max_sel) * 97;
    let chunk = match usize::from(*chunk_sel) {
        sel @ 0..192 => sel + 1,
        sel => (sel - 191) * 64,
    };
    let mut codec = HmacFrameCodec::new(KEY).with_max_frame_len(max);

    let mut wire = BytesMut::new();
    let mut expected = Vec::new();
    if mode % 2 == 1 {
        let mut encoder = codec.clone();
        for payload in rest.split(|&b| b == 0xff) {
            if encoder
                .encode(Bytes::copy_from_slice(payload), &mut wire)
                .is_ok()
            {
                expected.push(payload);
            }
        }
    }
    let valid_len = wire.len();
    wire.extend_from_slice(rest);

    let mut buf = BytesMut::new();
    let mut decoded = Vec::new();
    let mut fed = 0;
    for piece in wire.chunks(chunk) {
        buf.extend_from_slice(piece);
        fed += piece.len();
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= max, "frame over the maximum");
                    decoded.push(frame);
                }
                Ok(None) => break,
                Err(_) => {
                    assert!(fed > valid_len, "valid frames failed to decode");
                    check_prefix(&decoded, &expected);
                    return;
                }
            }
        }
        assert!(
            buf.capacity() <= capacity_bound(buf.len() + TAG_LEN + max.min(256 * 1024)),
            "decoder reserved {} bytes holding {}",
            buf.capacity(),
            buf.len()
        );
    }
    let _ = codec.decode_eof(&mut buf);
    check_prefix(&decoded, &expected);
}

fn check_prefix(decoded: &[Bytes], expected: &[&[u8]]) {
    for (got, want) in decoded.iter().zip(expected) {
        assert_eq!(&got[..], *want, "a valid frame decoded differently");
    }
    // Every valid frame decodes, even when raw bytes follow.
    assert!(decoded.len() >= expected.len(), "valid frames were lost");
}
