//! Harness for fuzzing the frame decoder (`fuzz/` calls it; so do tests,
//! including a replay of the committed seeds). Not part of the stable API.
//!
//! The harness judges the decoder against an independent reading of the
//! same bytes: a plain loop over the frame layout with the `hmac` crate
//! computing each tag, written without any of the codec's code. Every
//! frame the decoder returns must be exactly the next frame of that
//! reading and carry a tag that verifies, so a decoder that skipped or
//! weakened the tag check, lost a frame, or returned one twice fails.

use bytes::{Bytes, BytesMut};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio_util::codec::{Decoder, Encoder};

use crate::{HmacFrameCodec, LinkError, TAG_LEN};

/// The key the harness signs and verifies with.
const KEY: &[u8] = b"fuzz key";

/// How the decoder must end on some input, according to the reference.
#[derive(Debug, PartialEq)]
enum Ending {
    /// Every byte was whole frames: a clean end.
    Clean,
    /// Bytes of an incomplete frame were left: truncated at end of input.
    Truncated,
    /// A frame declared more than the maximum.
    TooLarge,
    /// A frame's tag does not verify.
    InvalidTag,
}

/// Reads `wire` frame by frame from its definition: the payloads of the
/// frames the decoder must return, in order, and how it must end. The
/// first frame may be held to `first_max`.
fn reference(wire: &[u8], max: usize, first_max: usize) -> (Vec<&[u8]>, Ending) {
    let mut frames = Vec::new();
    let mut rest = wire;
    loop {
        let max = if frames.is_empty() { first_max } else { max };
        if rest.is_empty() {
            return (frames, Ending::Clean);
        }
        let Some((head, after)) = rest.split_first_chunk::<4>() else {
            return (frames, Ending::Truncated);
        };
        let len = u32::from_be_bytes(*head) as usize;
        if len > max {
            return (frames, Ending::TooLarge);
        }
        if after.len() < len + TAG_LEN {
            return (frames, Ending::Truncated);
        }
        let (payload, after) = after.split_at(len);
        let (tag, after) = after.split_at(TAG_LEN);
        let mut mac = match Hmac::<Sha256>::new_from_slice(KEY) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(payload);
        if mac.verify_slice(tag).is_err() {
            return (frames, Ending::InvalidTag);
        }
        frames.push(payload);
        rest = after;
    }
}

/// Most the read buffer may hold in capacity (see the codec's contract):
/// it grows to at most twice the bytes it holds plus the 256 KiB step, and
/// does not shrink, so twice the most it has held, plus the step and
/// slack.
fn capacity_bound(most_held: usize) -> usize {
    2 * most_held + 256 * 1024 + 64
}

/// What a decoder made of a wire fed to it by [`feed`].
#[derive(Debug)]
pub struct Fed {
    /// The frames it returned, in order.
    pub decoded: Vec<Bytes>,
    /// The error it ended with, if any (at end of input: `decode_eof`).
    pub outcome: Option<LinkError>,
    /// Bytes held that had to move before the next read (to a fresh
    /// allocation, or to the front of the same one): what the decoder's
    /// growth of the read buffer copied, and `Framed`'s room for one byte.
    pub moved: usize,
}

/// Feeds `wire` to `codec` as `Framed` reads a stream: each read reserves
/// room for one byte, then takes the next size of `reads` (cycled) or what
/// the buffer has room for, whichever is less; after each read it decodes
/// every whole frame, and at the end calls `decode_eof` until it is done.
/// After every other read, once nothing more decodes, it hashes the frame
/// in progress ahead as this crate's links do while they wait for the rest
/// (they do after every read that leaves them waiting; alternating keeps
/// the decoder's paired verification covered too).
/// Panics if the read buffer's capacity ever exceeds what the codec's
/// contract allows for the most bytes it has held.
pub fn feed(codec: &mut HmacFrameCodec, wire: &[u8], reads: &[usize]) -> Fed {
    let mut sizes = reads.iter().copied().cycle();
    let mut buf = BytesMut::new();
    let mut decoded = Vec::new();
    let mut outcome = None;
    let mut most_held = 0;
    let mut fed = 0;
    let mut reads_done = 0usize;
    let mut moved = 0;
    'feed: while fed < wire.len() {
        let (at, held) = (buf.as_ptr(), buf.len());
        buf.reserve(1);
        moved += moved_by(&buf, at, held);
        let n = sizes
            .next()
            .unwrap_or(1)
            .max(1)
            .min(wire.len() - fed)
            .min(buf.capacity() - buf.len());
        buf.extend_from_slice(&wire[fed..fed + n]);
        fed += n;
        most_held = most_held.max(buf.len());
        reads_done += 1;
        loop {
            let (at, held) = (buf.as_ptr(), buf.len());
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => decoded.push(frame),
                Ok(None) => {
                    moved += moved_by(&buf, at, held);
                    if reads_done.is_multiple_of(2) {
                        codec.hash_ahead(&buf);
                    }
                    break;
                }
                Err(err) => {
                    outcome = Some(err);
                    break 'feed;
                }
            }
        }
        assert!(
            buf.capacity() <= capacity_bound(most_held),
            "decoder reserved {} bytes, having held {most_held} at most",
            buf.capacity(),
        );
    }
    if outcome.is_none() {
        loop {
            match codec.decode_eof(&mut buf) {
                Ok(Some(frame)) => decoded.push(frame),
                Ok(None) => break,
                Err(err) => {
                    outcome = Some(err);
                    break;
                }
            }
        }
    }
    Fed {
        decoded,
        outcome,
        moved,
    }
}

/// The bytes `buf` moved, given where it started (`at`) and what it held
/// before a call that may only consume bytes from the front or move them:
/// consuming advances the start by what it took; anything else moved all
/// that was held.
fn moved_by(buf: &BytesMut, at: *const u8, held: usize) -> usize {
    let consumed = held.saturating_sub(buf.len());
    if buf.as_ptr() == at.wrapping_add(consumed) {
        0
    } else {
        held
    }
}

/// Feeds `input` to an [`HmacFrameCodec`] and checks it against the
/// reference reading; panics (which the fuzzer reports) on any difference.
///
/// Byte 0 selects the maximum frame length (`byte² * 9`: 0 to 585,225
/// bytes, past the decoder's 256 KiB reservation step), byte 1 the read
/// chunk size: 1 to 192 bytes for values below 192, else a multiple of 64
/// up to 4,096 (large reads put two whole frames in the buffer, which the
/// decoder verifies as a pair). Reads go into the buffer's spare capacity
/// after `reserve(1)`, as `Framed` does, so the buffer grows only as the
/// decoder (or that one byte) asks. If byte 2 is odd, the rest is first split
/// into payloads (at `0xff` bytes) that are encoded as valid frames,
/// followed by the same bytes raw. Otherwise the rest is fed raw. If bit 1
/// of byte 2 is set, the first frame is limited to half the maximum
/// (`with_max_first_frame_len`).
///
/// The decoder must return exactly the frames of the reference reading,
/// end as it does (clean end, `Truncated`, `FrameTooLarge`, `InvalidHmac`),
/// never panic, and keep its buffer within the bound.
pub fn check_decoder(input: &[u8]) {
    let [max_sel, chunk_sel, mode, rest @ ..] = input else {
        return;
    };
    let max = usize::from(*max_sel).pow(2) * 9;
    let chunk = match usize::from(*chunk_sel) {
        sel @ 0..192 => sel + 1,
        sel => (sel - 191) * 64,
    };
    let first_max = if mode & 2 != 0 { max / 2 } else { max };
    let mut codec = HmacFrameCodec::new(KEY)
        .with_max_frame_len(max)
        .with_max_first_frame_len(first_max);

    let mut wire = BytesMut::new();
    if mode % 2 == 1 {
        let mut encoder = HmacFrameCodec::new(KEY).with_max_frame_len(max);
        for payload in rest.split(|&b| b == 0xff) {
            // Payloads over the maximum are refused and write nothing.
            let _ = encoder.encode(Bytes::copy_from_slice(payload), &mut wire);
        }
    }
    wire.extend_from_slice(rest);
    let (expected, ending) = reference(&wire, max, first_max);

    let Fed {
        decoded, outcome, ..
    } = feed(&mut codec, &wire, &[chunk]);

    assert_eq!(decoded.len(), expected.len(), "frames decoded ({ending:?})");
    for (got, want) in decoded.iter().zip(&expected) {
        assert_eq!(&got[..], *want, "a frame decoded differently");
    }
    match (ending, &outcome) {
        (Ending::Clean, None)
        | (Ending::Truncated, Some(LinkError::Truncated))
        | (Ending::InvalidTag, Some(LinkError::InvalidHmac)) => {}
        (Ending::TooLarge, Some(LinkError::FrameTooLarge { max: limit, .. })) => {
            let applies = if decoded.is_empty() { first_max } else { max };
            assert_eq!(*limit, applies as u64, "FrameTooLarge names another limit");
        }
        (ending, outcome) => panic!("expected {ending:?}, decoder ended with {outcome:?}"),
    }
}
