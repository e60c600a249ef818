//! [`HmacFrameCodec`]: the frame format, in one place.
//!
//! Every message on a secure link is one frame, carried inside TLS:
//!
//! ```text
//! +----------------------+---------------------------+----------------------------------+
//! | length: u32, BE      | payload: `length` bytes   | tag: HMAC-SHA256(key, payload)   |
//! | LENGTH_LEN = 4 bytes |                           | TAG_LEN = 32 bytes               |
//! +----------------------+---------------------------+----------------------------------+
//! ```
//!
//! `length` counts the payload only (not the tag, not itself). An empty
//! payload is a valid frame of 36 bytes.
//!
//! # Decoder contract
//!
//! * A partial frame returns `Ok(None)`; frames split at any byte boundary
//!   decode the same.
//! * A declared length over [`HmacFrameCodec::max_frame_len`] is
//!   [`LinkError::FrameTooLarge`], raised as soon as the 4 length bytes are
//!   in, before any memory is reserved for the payload. While a frame
//!   arrives, the decoder asks for room for the rest of it and for one more
//!   frame of the same size (so that two whole frames can be verified
//!   together, see below), but never more than the larger of 256 KiB and
//!   the bytes it holds beyond them. It moves to a larger allocation only
//!   when less than 16 KiB, or less than the rest of the frame, is left
//!   (so the bytes held are copied about once per frame however small the
//!   reads; otherwise it only reclaims consumed space in place). The
//!   decoder then makes a fresh allocation of exactly that size (not
//!   `BytesMut::reserve`, which counts consumed bytes and doubles the
//!   whole allocation), so the read buffer's real allocation is at most
//!   twice the bytes it holds plus 256 KiB when it grows: it follows what
//!   the peer actually sent, never the declared length (tests/memory.rs
//!   measures the heap). It makes room for a length prefix the same way
//!   (never through `Framed`'s `reserve`, which allocates anew and copies
//!   when messages handed out share the buffer). The resilient mode's
//!   links, whose messages wait in a queue, also keep the allocations
//!   such messages held and reuse them once those are gone: at most
//!   1 MiB of them, none over 512 KiB, dropped when the link is idle
//!   (`spares`); the smallest kept one that is large enough stands in for
//!   a fresh allocation, so such a link's read buffer may be larger than
//!   the bound above, up to 512 KiB, but nothing is allocated for it.
//!   The limit on the first frame
//!   ([`HmacFrameCodec::with_max_first_frame_len`]) bounds what a peer
//!   that has not shown it holds the key can make it grow to. The
//!   decoder never shrinks the buffer; the links of this crate swap a
//!   grown buffer for an 8 KiB one when they have read everything there is
//!   (after a second of that, when they are busy with large frames; see
//!   tests/idle_memory.rs of the tool, `secure-link-cli`).
//! * A tag that does not verify (compared in constant time) is
//!   [`LinkError::InvalidHmac`]; the payload is not returned. Frames before
//!   it are returned first.
//! * When the buffer holds two whole frames of 512 bytes or more, both are
//!   verified in one pass, their hashes interleaved (faster: see
//!   BENCHMARKS.md); the second is kept by the codec and returned by the
//!   next call, whatever the buffer then holds.
//! * The links of this crate hash the payload of a frame in progress (of
//!   16 KiB or more) while they wait for the rest of it, so that only the
//!   rest is left to hash when it is whole (the decoder keeps the running
//!   HMAC; such a frame is verified alone). Nothing is delivered before
//!   the whole tag verifies.
//! * At end of input, leftover bytes of an incomplete frame are
//!   [`LinkError::Truncated`], never a partial message.
//!
//! After an error the codec's state is unspecified; `Framed` (and every
//! type of this crate) ends the stream after yielding the first error.
//!
//! # Example
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use secure_link::HmacFrameCodec;
//! use tokio_util::codec::{Decoder, Encoder};
//!
//! let mut codec = HmacFrameCodec::new(&b"shared key"[..]);
//! let mut wire = BytesMut::new();
//! codec.encode(Bytes::from_static(b"hello"), &mut wire)?;
//! assert_eq!(wire.len(), 4 + 5 + 32);
//! assert_eq!(&wire[..9], b"\x00\x00\x00\x05hello");
//!
//! assert_eq!(codec.decode(&mut wire)?, Some(Bytes::from_static(b"hello")));
//! assert!(wire.is_empty());
//! # Ok::<(), secure_link::LinkError>(())
//! ```

// Where things are: this file holds the codec's state and the
// `Decoder`/`Encoder` impls, which read as the steps of a frame; each
// mechanism has a file beside it: the layout and its constants
// (`frame.rs`), writing frames (`encode.rs`), checking tags, alone, paired
// or hashed ahead (`verify.rs`), keys and rotation (`keys.rs`), the
// session-bound format and its counters (`session.rs`), and the
// read-buffer policy (`buffer.rs`).

mod buffer;
mod encode;
mod frame;
mod keys;
mod session;
mod spares;
mod verify;

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};
use hmac::Hmac;
use sha2::Sha256;
use tokio_util::codec::{Decoder, Encoder};

use self::frame::{FORMAT_MAX_FRAME_LEN, declared_len};
use self::session::SessionBinding;
use self::spares::Spares;
use self::verify::Ahead;
use crate::{HmacKey, LinkError};

pub(crate) use self::encode::{DeferredTag, Head};
pub use self::frame::{DEFAULT_MAX_FRAME_LEN, LENGTH_LEN, TAG_LEN};
pub use self::session::{AuthMode, Role, SESSION_EXPORTER_LABEL, SESSION_EXPORTER_LEN};
pub(crate) use self::verify::PAIR_MIN_LEN;

/// A tokio-util codec for `length | payload | HMAC-SHA256(key, payload)`
/// frames; see the [module documentation](self) for the format and the
/// decoder's contract.
///
/// Use it with [`tokio_util::codec::Framed`] over any byte stream; the
/// [`SecureConnector`](crate::SecureConnector) and
/// [`SecureAcceptor`](crate::SecureAcceptor) do so over TLS for you.
///
/// The codec keys HMAC-SHA256 once and returns that state to its keyed
/// form after each frame, so per-message cost is the hash of the payload
/// and nothing else.
#[derive(Clone)]
pub struct HmacFrameCodec {
    /// HMAC state keyed once. Every frame hashed alone is hashed in it
    /// and finished with `finalize_reset` in the same call, which returns
    /// it to the keyed state: between calls it is always keyed and
    /// nothing else. States that must outlive a call (the second of a
    /// pair, hashing ahead, a deferred tag) are clones.
    keyed: Hmac<Sha256>,
    /// Keys accepted besides `keyed` for the first frame received (a key
    /// rotation), keyed once too. Emptied when a frame verifies: the codec
    /// is then pinned to the key that verified it.
    candidates: Vec<Hmac<Sha256>>,
    /// Which key verified the first frame received: 0 for the primary
    /// key, `n` for the `n`th additional one.
    pinned: Option<usize>,
    /// `None` in the lab format; the direction labels and counters in the
    /// session-bound format.
    session: Option<SessionBinding>,
    max_frame_len: usize,
    /// The limit for frames received before one has verified, if lower.
    first_frame_max_len: Option<usize>,
    /// The limit on the next frame received: the first-frame limit until a
    /// frame verified, `max_frame_len` after (kept in step by the setters
    /// and `pin`, so the hot path compares with one field).
    receive_max: usize,
    read: ReadState,
    /// A frame verified together with the one before it (see
    /// [`PAIR_MIN_LEN`]) and not returned yet. The codec owns it, so what a
    /// caller does to the read buffer cannot change it.
    verified: Option<Bytes>,
    /// The running HMAC of the frame in progress, over the part of its
    /// payload the read buffer held when a link hashed ahead (see
    /// [`hash_ahead`](Self::hash_ahead)). Boxed: an idle connection does
    /// not carry the room for an HMAC state.
    ahead: Option<Box<Ahead>>,
    /// Read buffers left behind, for reuse (see [`spares`]).
    spares: Spares,
}

/// Where the decoder is in the current frame. The write path has no state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadState {
    /// Waiting for the 4 length bytes.
    Head,
    /// The length was read; waiting for `payload_len` bytes and the tag.
    Body { payload_len: usize },
}

impl HmacFrameCodec {
    /// A codec for frames authenticated with `key`, with the default
    /// maximum payload length ([`DEFAULT_MAX_FRAME_LEN`]).
    pub fn new(key: impl Into<HmacKey>) -> Self {
        let keyed = keys::keyed_mac(key.into().as_bytes());
        HmacFrameCodec {
            keyed,
            candidates: Vec::new(),
            pinned: None,
            session: None,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            first_frame_max_len: None,
            receive_max: DEFAULT_MAX_FRAME_LEN,
            read: ReadState::Head,
            verified: None,
            ahead: None,
            spares: Spares::default(),
        }
    }

    /// Sets the largest payload, in bytes, that this codec encodes or
    /// accepts. Values above `u32::MAX` (what the format can describe) are
    /// capped to it.
    pub fn with_max_frame_len(mut self, max_frame_len: usize) -> Self {
        self.max_frame_len = max_frame_len.min(FORMAT_MAX_FRAME_LEN);
        self.receive_max = self.receive_limit();
        self
    }

    /// The largest payload, in bytes, that this codec encodes or accepts.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Sets the largest payload, in bytes, accepted in a frame received
    /// before any received tag has verified, that is in the first frame
    /// (default: [`max_frame_len`](Self::max_frame_len), no separate
    /// limit). Later frames may use the full maximum. A larger first frame
    /// is [`LinkError::FrameTooLarge`] naming this limit, raised when its
    /// length prefix arrives.
    ///
    /// A peer that has not shown it holds the key can then make the
    /// decoder buffer at most about this much (see the module
    /// documentation for the read buffer's bound), whatever
    /// `max_frame_len` allows authenticated peers.
    pub fn with_max_first_frame_len(mut self, max_first_frame_len: usize) -> Self {
        self.first_frame_max_len = Some(max_first_frame_len.min(FORMAT_MAX_FRAME_LEN));
        self.receive_max = self.receive_limit();
        self
    }

    /// The limit that applies to the next frame received (what
    /// `receive_max` holds).
    fn receive_limit(&self) -> usize {
        match self.first_frame_max_len {
            Some(first) if self.pinned.is_none() => first.min(self.max_frame_len),
            _ => self.max_frame_len,
        }
    }

    /// [`LinkError::FrameTooLarge`] if a payload of `len` bytes is over
    /// [`max_frame_len`](Self::max_frame_len).
    pub(crate) fn check_len(&self, len: usize) -> Result<(), LinkError> {
        if len > self.max_frame_len {
            return Err(self.too_large(len));
        }
        Ok(())
    }

    fn too_large(&self, len: usize) -> LinkError {
        LinkError::FrameTooLarge {
            len: len as u64,
            max: self.max_frame_len as u64,
        }
    }
}

impl Encoder<Bytes> for HmacFrameCodec {
    type Error = LinkError;

    /// Appends one frame carrying `item` to `dst`.
    ///
    /// # Errors
    ///
    /// [`LinkError::FrameTooLarge`] if `item` is longer than
    /// [`max_frame_len`](HmacFrameCodec::max_frame_len); nothing is written
    /// then.
    #[inline]
    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), LinkError> {
        self.encode_slice(&item, dst)
    }
}

impl HmacFrameCodec {
    /// Keeps the read buffers left behind while messages handed out still
    /// share them (up to 1 MiB of them, none over 512 KiB), and reuses
    /// them once those messages are gone (see [`spares`]): for a reader
    /// that queues what it decodes for another task.
    pub(crate) fn reuse_read_buffers(&mut self) {
        self.spares.enable();
    }

    /// Drops the read buffers kept for reuse (the link is idle).
    pub(crate) fn drop_spare_read_buffers(&mut self) {
        self.spares.clear();
    }

    /// How many read buffers are kept for reuse now.
    #[cfg(test)]
    pub(crate) fn spare_read_buffers(&self) -> usize {
        self.spares.len()
    }
}

impl Decoder for HmacFrameCodec {
    type Item = Bytes;
    type Error = LinkError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, LinkError> {
        if let Some(frame) = self.verified.take() {
            return Ok(Some(frame));
        }
        let payload_len = match self.read {
            ReadState::Body { payload_len } => payload_len,
            ReadState::Head => {
                let Some(payload_len) = declared_len(src) else {
                    // Room for the length here, by the policy above, not
                    // by `Framed`'s `reserve`, which allocates anew (up to
                    // 64 KiB, copying) when messages handed out share the
                    // buffer.
                    buffer::make_room(src, LENGTH_LEN, &mut self.spares);
                    return Ok(None);
                };
                if payload_len > self.receive_max {
                    return Err(LinkError::FrameTooLarge {
                        len: payload_len as u64,
                        max: self.receive_max as u64,
                    });
                }
                src.advance(LENGTH_LEN);
                self.read = ReadState::Body { payload_len };
                payload_len
            }
        };

        // Cannot overflow: limits are capped at FORMAT_MAX_FRAME_LEN.
        let frame_rest = payload_len
            .checked_add(TAG_LEN)
            .ok_or_else(|| self.too_large(payload_len))?;
        if src.len() < frame_rest {
            buffer::make_room(src, frame_rest, &mut self.spares);
            return Ok(None);
        }
        let second_len = self.verify_next(src, payload_len, frame_rest)?;
        if self.pinned.is_none() {
            self.pin(0);
        }
        let payload = src.split_to(payload_len).freeze();
        src.advance(TAG_LEN);
        self.read = ReadState::Head;
        self.count_received(1);
        if let Some(second_len) = second_len {
            // Verified with the first.
            self.count_received(1);
            src.advance(LENGTH_LEN);
            self.verified = Some(src.split_to(second_len).freeze());
            src.advance(TAG_LEN);
        }
        Ok(Some(payload))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, LinkError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() && self.read == ReadState::Head => Ok(None),
            None => Err(LinkError::Truncated),
        }
    }
}

impl fmt::Debug for HmacFrameCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacFrameCodec")
            .field("session", &self.session)
            .field("candidate_keys", &self.candidates.len())
            .field("pinned_key", &self.pinned)
            .field("max_frame_len", &self.max_frame_len)
            .field("first_frame_max_len", &self.first_frame_max_len)
            .field("read", &self.read)
            .field("verified", &self.verified.as_ref().map(Bytes::len))
            .field("hashed_ahead", &self.ahead.as_ref().map(|a| a.hashed))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire length of a frame carrying `len` bytes.
    fn frame(len: usize) -> usize {
        LENGTH_LEN + len + TAG_LEN
    }

    /// Each encoder reserves exactly the frames it writes: into an empty
    /// buffer, the capacity afterwards is what was written (with room for
    /// a deferred tag). A larger reservation holds memory the link never
    /// uses (`first.len() * second.len()` would be 4 GiB for two 64 KiB
    /// messages); a smaller one makes the buffer grow, and copy, while the
    /// frame is written.
    #[test]
    fn encoders_reserve_exactly_the_frames_they_write() -> Result<(), LinkError> {
        let first = vec![1u8; 64 * 1024];
        let second = vec![2u8; 64 * 1024 + 1];
        let mut codec = HmacFrameCodec::new(b"a key for the reservation test");

        let mut dst = BytesMut::new();
        codec.encode_slice(&first, &mut dst)?;
        assert_eq!(dst.len(), frame(first.len()));
        assert_eq!(dst.capacity(), frame(first.len()));

        let mut dst = BytesMut::new();
        let none = Head::EMPTY;
        codec.encode_pair((&none, &first), (&none, &second), &mut dst)?;
        assert_eq!(dst.len(), frame(first.len()) + frame(second.len()));
        assert_eq!(dst.capacity(), frame(first.len()) + frame(second.len()));

        let mut dst = BytesMut::new();
        let tag = codec.encode_deferred(none, Bytes::from(first.clone()), &mut dst)?;
        assert_eq!(dst.len(), LENGTH_LEN + first.len());
        assert_eq!(dst.capacity(), frame(first.len()));
        tag.finish(&mut dst);
        assert_eq!(dst.capacity(), frame(first.len()));

        let head = Head::from_array([7u8; 19]);
        let mut dst = BytesMut::new();
        codec.encode_parts(&head, &first, &mut dst)?;
        assert_eq!(dst.capacity(), frame(19 + first.len()));
        Ok(())
    }

    /// A payload given as a head and a body is framed, hashed and written
    /// exactly as the two joined, by every encoder, in both auth modes; a
    /// joined payload over the limit is refused with nothing written.
    #[test]
    fn a_head_and_a_body_make_the_frame_of_the_two_joined() -> Result<(), LinkError> {
        let exporter = [9u8; SESSION_EXPORTER_LEN];
        let lab = HmacFrameCodec::new(b"a key for the parts test");
        let pairs = [
            (lab.clone(), lab.clone()),
            (
                lab.bound_to_session(&exporter, Role::Client),
                lab.bound_to_session(&exporter, Role::Server),
            ),
        ];
        // The resilient header (19 bytes), the longest head, and none; the
        // lengths around where a body completes its head's SHA-256 block
        // (45 bytes after a 19-byte head in the lab format, 34 after the
        // session-bound prefix too), which the pair encoder hashes first.
        let heads = [
            Head::from_array(*b"nineteen-byte head!"),
            Head::from_array([0xa5; 32]),
            Head::EMPTY,
        ];
        let lengths = [
            (0, 0),
            (1, 700),
            (44, 45),
            (46, 33),
            (34, 35),
            (4096, 65_536),
        ];
        let cases = pairs
            .iter()
            .flat_map(|pair| heads.iter().map(move |head| (pair.clone(), *head)));
        for ((template, receiver), head) in cases {
            for (first_len, second_len) in lengths {
                let first: Vec<u8> = (0..first_len).map(|i| i as u8).collect();
                let second: Vec<u8> = (0..second_len).map(|i| (i * 7) as u8).collect();
                let joined = |body: &[u8]| [head.as_slice(), body].concat();

                let (mut parts, mut whole) = (template.clone(), template.clone());
                let (mut got, mut want) = (BytesMut::new(), BytesMut::new());
                parts.encode_parts(&head, &first, &mut got)?;
                parts.encode_pair((&head, &first), (&head, &second), &mut got)?;
                let tag = parts.encode_deferred(head, Bytes::from(second.clone()), &mut got)?;
                tag.finish(&mut got);
                whole.encode_slice(&joined(&first), &mut want)?;
                whole.encode_slice(&joined(&first), &mut want)?;
                whole.encode_slice(&joined(&second), &mut want)?;
                whole.encode_slice(&joined(&second), &mut want)?;
                assert_eq!(got, want, "{first_len} / {second_len}");

                // And the decoder takes them as the joined messages.
                let mut decoder = receiver.clone();
                let mut received = Vec::new();
                while let Some(message) = decoder.decode(&mut got)? {
                    received.push(message);
                }
                assert_eq!(
                    received,
                    [
                        joined(&first),
                        joined(&first),
                        joined(&second),
                        joined(&second)
                    ]
                );
            }
        }
        let head = heads[0];
        let mut small = HmacFrameCodec::new(b"k").with_max_frame_len(100);
        let mut dst = BytesMut::new();
        assert!(matches!(
            small.encode_parts(&head, &[0u8; 82], &mut dst),
            Err(LinkError::FrameTooLarge { len: 101, max: 100 })
        ));
        assert!(dst.is_empty());
        small.encode_parts(&head, &[0u8; 81], &mut dst)?;
        Ok(())
    }
}
