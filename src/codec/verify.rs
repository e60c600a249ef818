//! Where tags are checked, and how: a frame alone (the keyed state,
//! compared in constant time), two whole frames in one pass with their
//! hashes interleaved, or a large frame hashed ahead while it arrives.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::HmacFrameCodec;
use super::ReadState;
use super::frame::{LENGTH_LEN, TAG_LEN, declared_len};
use super::session::Direction;
use crate::LinkError;

/// Frames whose payloads are at least this long are hashed two at a time
/// when two are at hand: by the decoder when the read buffer holds two
/// whole frames, by the clients' and servers' sinks for messages fed back
/// to back. Two HMAC computations advanced in turn, 128 bytes at a time,
/// keep the CPU's SHA-256 unit busy where one alone waits on its own
/// results: `decode-two` against `decode` in benches/codec.rs is 1.2-1.25x
/// from 1 KiB up on the machine of BENCHMARKS.md. Below 512 bytes a
/// scratch measurement gained under 1.15x (nothing at 64 bytes), not worth
/// holding a message back for.
pub(crate) const PAIR_MIN_LEN: usize = 512;

/// The shortest payload [`HmacFrameCodec::hash_ahead`] hashes ahead: one
/// TLS record of plaintext. A shorter frame mostly arrives in one record,
/// and of one that straddles two the bytes in hand are few; hashing them
/// ahead would gain nothing and cost an allocation (the boxed state) each
/// time a stream of small messages is read dry mid-frame.
const HASH_AHEAD_MIN: usize = 16 * 1024;

/// Bytes each of two interleaved HMAC computations takes in turn.
const INTERLEAVE_STEP: usize = 128;

/// The HMAC of a frame in progress over the first `hashed` bytes of its
/// payload (at the start of the read buffer).
#[derive(Clone)]
pub(super) struct Ahead {
    mac: Hmac<Sha256>,
    pub(super) hashed: usize,
}

/// What [`HmacFrameCodec::verify_pair`] found.
enum PairCheck {
    /// No second whole frame to pair with (or one of the two is short):
    /// verify the first alone.
    NoPair,
    /// The first frame's tag does not verify.
    FirstInvalid,
    /// The first verifies, the second does not: deliver the first, and
    /// leave the second to fail on the next call.
    FirstOnly,
    /// Both verify.
    Both { second_len: usize },
}

impl HmacFrameCodec {
    /// Verifies the whole frame at the start of `src` (its payload,
    /// `payload_len` bytes, then its tag: `frame_rest` bytes in all, which
    /// `src` holds), by the strategy that applies:
    /// finishing the hash begun ahead, trying each key for the first frame
    /// of a rotation, alone below [`PAIR_MIN_LEN`], or paired with a second
    /// whole frame behind it. Returns the length of that second frame's
    /// payload when it verified too.
    ///
    /// # Errors
    ///
    /// [`LinkError::InvalidHmac`] if the first frame's tag does not verify.
    /// A second frame that fails is not an error here: it is left in `src`
    /// for the next call, which verifies it alone and fails there.
    pub(super) fn verify_next(
        &mut self,
        src: &[u8],
        payload_len: usize,
        frame_rest: usize,
    ) -> Result<Option<usize>, LinkError> {
        let (payload, tag) = (&src[..payload_len], &src[payload_len..frame_rest]);
        let pair = if let Some(ahead) = self.ahead.take() {
            // Partly hashed while it arrived: the rest, alone.
            let Ahead { mut mac, hashed } = *ahead;
            match payload.get(hashed..) {
                Some(rest) => {
                    mac.update(rest);
                    if !tag_matches(&mut mac, tag) {
                        return Err(LinkError::InvalidHmac);
                    }
                }
                // Cannot happen (`hash_ahead` hashes only bytes of this
                // payload); verified from the start rather than a panic.
                None => self.verify(payload, tag)?,
            }
            PairCheck::FirstOnly
        } else if !self.candidates.is_empty() {
            // The first frame during a rotation, alone: it picks the key.
            self.verify_first(payload, tag)?;
            PairCheck::FirstOnly
        } else if payload_len < PAIR_MIN_LEN {
            PairCheck::NoPair
        } else {
            self.verify_pair(src, payload_len)
        };
        let second_len = match pair {
            PairCheck::NoPair => {
                self.verify(payload, tag)?;
                None
            }
            PairCheck::FirstInvalid => return Err(LinkError::InvalidHmac),
            // A second frame that failed is left in `src`: the next call
            // verifies it alone and fails there, after this frame.
            PairCheck::FirstOnly => None,
            PairCheck::Both { second_len } => Some(second_len),
        };
        Ok(second_len)
    }

    /// Checks the tag of the next frame received (constant-time
    /// comparison).
    #[inline]
    pub(super) fn verify(&mut self, payload: &[u8], tag: &[u8]) -> Result<(), LinkError> {
        let mac = self.start_mac(Direction::Receive);
        mac.update(payload);
        if tag_matches(mac, tag) {
            Ok(())
        } else {
            Err(LinkError::InvalidHmac)
        }
    }

    /// Hashes the part of the frame in progress that `src` (the read
    /// buffer the decoder is given) holds, so that the decoder has only
    /// the rest to hash when the frame is whole: a link calls this when it
    /// has read everything there is and would otherwise wait idle. Only
    /// frames of [`HASH_AHEAD_MIN`] bytes or more; they are then verified
    /// alone, never paired. Nothing is hashed
    /// ahead for the first frame during a key rotation (it is tried against
    /// each key in turn). The caller must not change the bytes `src` holds
    /// before the next `decode`, only append to them.
    pub(crate) fn hash_ahead(&mut self, src: &[u8]) {
        let ReadState::Body { payload_len } = self.read else {
            return;
        };
        if payload_len < HASH_AHEAD_MIN || !self.candidates.is_empty() {
            return;
        }
        let available = src.len().min(payload_len);
        if self.ahead.is_none() {
            let mac = self.mac_for(Direction::Receive, 0);
            self.ahead = Some(Box::new(Ahead { mac, hashed: 0 }));
        }
        if let Some(ahead) = &mut self.ahead
            && let Some(fresh) = src.get(ahead.hashed..available)
        {
            ahead.mac.update(fresh);
            ahead.hashed = available;
        }
    }

    /// If a second whole frame of [`PAIR_MIN_LEN`] bytes or more follows
    /// the first (whose payload, `src[..payload_len]`, the caller found
    /// that long), verifies both in one pass, interleaved.
    fn verify_pair(&mut self, src: &[u8], payload_len: usize) -> PairCheck {
        let Some(first_end) = payload_len.checked_add(TAG_LEN) else {
            return PairCheck::NoPair;
        };
        let Some(second) = src.get(first_end..) else {
            return PairCheck::NoPair;
        };
        let Some(second_len) = declared_len(second) else {
            return PairCheck::NoPair;
        };
        let second_end = (LENGTH_LEN + TAG_LEN).checked_add(second_len);
        let Some(second_end) = second_end.filter(|&end| end <= second.len()) else {
            return PairCheck::NoPair;
        };
        if second_len < PAIR_MIN_LEN || second_len > self.max_frame_len {
            return PairCheck::NoPair;
        }
        let (second_payload, second_tag) = second[LENGTH_LEN..second_end].split_at(second_len);
        let mut second_mac = self.mac_for(Direction::Receive, 1);
        let first_mac = self.start_mac(Direction::Receive);
        update_interleaved(
            first_mac,
            &src[..payload_len],
            &mut second_mac,
            second_payload,
        );
        // Constant-time comparisons, each tag on its own.
        if !tag_matches(first_mac, &src[payload_len..first_end]) {
            PairCheck::FirstInvalid
        } else if second_mac.verify_slice(second_tag).is_err() {
            PairCheck::FirstOnly
        } else {
            PairCheck::Both { second_len }
        }
    }
}

/// Finishes `mac`, returning it to its keyed state, and compares its tag
/// with `tag` in constant time (a `tag` of another length never matches).
pub(super) fn tag_matches(mac: &mut Hmac<Sha256>, tag: &[u8]) -> bool {
    let computed = mac.finalize_reset().into_bytes();
    bool::from(computed.as_slice().ct_eq(tag))
}

/// SHA-256's block, in bytes.
const BLOCK: usize = 64;

/// As [`update_interleaved`], each after its `head` (the resilient mode's
/// header), in MACs that have hashed `prefix` bytes since the key's
/// block: the head and as much of the data as completes its block go
/// first, so that the interleaved steps start on a block boundary and
/// each hashes whole blocks straight from the data. (Started 19 bytes into
/// a block, every 128-byte step went partly through the HMAC's block
/// buffer, in two calls of one block each: about 10% more time in SHA-256
/// for 1 KiB messages in the resilient mode, BENCHMARKS.md.)
pub(super) fn update_interleaved_after(
    prefix: usize,
    a: &mut Hmac<Sha256>,
    (a_head, a_data): (&[u8], &[u8]),
    b: &mut Hmac<Sha256>,
    (b_head, b_data): (&[u8], &[u8]),
) {
    let a_data = complete_block(a, prefix, a_head, a_data);
    let b_data = complete_block(b, prefix, b_head, b_data);
    update_interleaved(a, a_data, b, b_data);
}

/// Hashes `head` and then the start of `data` up to the end of the block
/// left open (`prefix` and `head` into it); the rest of `data`.
fn complete_block<'a>(
    mac: &mut Hmac<Sha256>,
    prefix: usize,
    head: &[u8],
    data: &'a [u8],
) -> &'a [u8] {
    mac.update(head);
    let open = (BLOCK - (prefix + head.len()) % BLOCK) % BLOCK;
    let (now, rest) = data.split_at(open.min(data.len()));
    mac.update(now);
    rest
}

/// Hashes `a_data` into `a` and `b_data` into `b`, [`INTERLEAVE_STEP`]
/// bytes of each in turn: the two computations are independent, so the CPU
/// runs one while the other waits on its previous result.
pub(super) fn update_interleaved(
    a: &mut Hmac<Sha256>,
    a_data: &[u8],
    b: &mut Hmac<Sha256>,
    b_data: &[u8],
) {
    let mut a_chunks = a_data.chunks(INTERLEAVE_STEP);
    let mut b_chunks = b_data.chunks(INTERLEAVE_STEP);
    loop {
        match (a_chunks.next(), b_chunks.next()) {
            (None, None) => return,
            (a_chunk, b_chunk) => {
                if let Some(chunk) = a_chunk {
                    a.update(chunk);
                }
                if let Some(chunk) = b_chunk {
                    b.update(chunk);
                }
            }
        }
    }
}
