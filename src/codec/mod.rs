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
//!   measures the heap). The limit on the first frame
//!   ([`HmacFrameCodec::with_max_first_frame_len`]) bounds what a peer
//!   that has not shown it holds the key can make it grow to. The
//!   decoder never shrinks the buffer; the links of this crate swap a
//!   grown buffer for an 8 KiB one when they have read everything there is
//!   (after a second of that, when they are busy with large frames; see
//!   tests/idle_memory.rs).
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

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio_util::codec::{Decoder, Encoder};

use crate::{HmacKey, LinkError};

/// Bytes of the big-endian `u32` length prefix of a frame.
pub const LENGTH_LEN: usize = 4;

/// Bytes of the HMAC-SHA256 tag that ends a frame.
pub const TAG_LEN: usize = 32;

/// The default maximum payload length of a frame: 8 MiB, as tokio-util's
/// `LengthDelimitedCodec`. It counts payload bytes only.
pub const DEFAULT_MAX_FRAME_LEN: usize = 8 * 1024 * 1024;

/// How far ahead of the bytes received the decoder may reserve buffer space
/// for the frame in progress and the next one. Bounds what a length prefix
/// alone can make a receiver allocate.
const MAX_RESERVE_AHEAD: usize = 256 * 1024;

/// The decoder lets its read buffer move to a fresh allocation only when
/// less room than this (or than the rest of the frame in progress) is
/// left: about one TLS record's plaintext, so reads stay large, while
/// each allocation at least doubles the room of the last one for a large
/// frame (the bytes held are copied about once per frame, however small
/// the reads; `a_large_frame_read_in_small_pieces_is_copied_a_bounded_number_of_times`
/// in tests/codec.rs).
const READ_ROOM: usize = 16 * 1024;

/// The smallest fresh allocation the decoder makes for its read buffer:
/// reads of up to 32 KiB take many small frames at a time. (The links of
/// this crate start with a smaller buffer, 8 KiB, `link::IDLE_READ_BUFFER`,
/// and come here once a frame needs more.)
pub(crate) const MIN_READ_BUFFER: usize = 32 * 1024;

/// The largest payload the format can describe (`u32::MAX`), or on a
/// target whose `usize` is 32 bits, the largest for which two whole frames
/// (payloads, prefixes and tags) still have a length that fits a `usize`.
/// With every limit capped to this, the sums below cannot overflow; they
/// are checked anyway.
const FORMAT_MAX_FRAME_LEN: usize = {
    let overhead = 2 * (LENGTH_LEN + TAG_LEN);
    if (u32::MAX as u64) < (usize::MAX - overhead) as u64 {
        u32::MAX as usize
    } else {
        usize::MAX - overhead
    }
};

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
}

/// The HMAC of a frame in progress over the first `hashed` bytes of its
/// payload (at the start of the read buffer).
#[derive(Clone)]
struct Ahead {
    mac: Hmac<Sha256>,
    hashed: usize,
}

/// A frame whose length and payload have been written and whose tag has
/// not, yet (see [`HmacFrameCodec::encode_deferred`]). Dropping it leaves a
/// frame without its tag in the buffer: the link must [`finish`](Self::finish)
/// it before anything else is written there.
pub(crate) struct DeferredTag {
    mac: Hmac<Sha256>,
    payload: Bytes,
}

impl DeferredTag {
    /// Computes the tag and appends it to `dst`, which must end where the
    /// payload was written (or have sent everything up to there).
    pub(crate) fn finish(self, dst: &mut BytesMut) {
        let mut mac = self.mac;
        mac.update(&self.payload);
        dst.extend_from_slice(&mac.finalize().into_bytes());
    }
}

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

/// Which end of the link a session-bound codec serves: it signs frames in
/// its own direction and verifies frames in the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The end that opened the connection: sends `c2s`, receives `s2c`.
    Client,
    /// The end that accepted it: sends `s2c`, receives `c2s`.
    Server,
}

/// How frame tags are computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMode {
    /// The lab's format: `tag = HMAC-SHA256(key, payload)`. A (payload,
    /// tag) pair is valid on any connection that uses the key.
    #[default]
    Lab,
    /// Tags bound to the TLS session and to the message's position:
    /// `tag = HMAC-SHA256(K, dir || counter || payload)` with
    /// `K = HMAC-SHA256(key, exporter)`; see SECURITY.md for the protocol.
    /// Frames cannot be replayed, relayed into another connection,
    /// reordered or dropped without detection. Both ends must use it.
    SessionBound,
}

/// The TLS exporter label of [`AuthMode::SessionBound`] (RFC 8446 §7.5).
pub const SESSION_EXPORTER_LABEL: &[u8] = b"EXPORTER-secure-link-session-v1";

/// Bytes of keying material exported for [`AuthMode::SessionBound`].
pub const SESSION_EXPORTER_LEN: usize = 32;

/// Direction labels and per-direction message counters.
#[derive(Clone, Copy, Debug)]
struct SessionBinding {
    send_dir: &'static [u8; 3],
    recv_dir: &'static [u8; 3],
    /// Index of the next frame sent / expected. At 10^9 frames a second a
    /// u64 lasts 584 years, so it is not checked for overflow.
    sent: u64,
    received: u64,
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
        let keyed = keyed_mac(key.into().as_bytes());
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
        }
    }

    /// A codec in the session-bound format ([`AuthMode::SessionBound`]) for
    /// one connection: keyed with `K = HMAC-SHA256(key, exporter)`, where
    /// `key` is this codec's key and `exporter` the connection's
    /// [`SESSION_EXPORTER_LEN`] bytes of TLS keying material exported with
    /// [`SESSION_EXPORTER_LABEL`] and no context. Counters start at 0; the
    /// maximum frame length is kept.
    ///
    /// [`SecureConnector`](crate::SecureConnector) and
    /// [`SecureAcceptor`](crate::SecureAcceptor) do this for you with
    /// `with_auth_mode(AuthMode::SessionBound)`.
    pub fn bound_to_session(&self, exporter: &[u8], role: Role) -> Self {
        let mut codec = HmacFrameCodec::new(&derive_session_key(&self.keyed, exporter)[..]);
        codec.candidates = self
            .candidates
            .iter()
            .map(|keyed| keyed_mac(&derive_session_key(keyed, exporter)[..]))
            .collect();
        let (send_dir, recv_dir) = match role {
            Role::Client => (b"c2s", b"s2c"),
            Role::Server => (b"s2c", b"c2s"),
        };
        codec.session = Some(SessionBinding {
            send_dir,
            recv_dir,
            sent: 0,
            received: 0,
        });
        codec.max_frame_len = self.max_frame_len;
        codec.first_frame_max_len = self.first_frame_max_len;
        codec.receive_max = self.receive_max;
        codec
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

    /// Adds a key accepted, besides the one the codec was made with, for
    /// the first frame received: during a key rotation, peers holding the
    /// old key and peers holding the new one are both served. Repeatable;
    /// keys are tried in the order added, after the primary key.
    ///
    /// The codec is pinned to the key that verifies the first frame: later
    /// frames must verify under that key alone, and frames sent are signed
    /// with it (before that, with the primary key). Only the first frame
    /// costs more (one HMAC per key tried when it is not the primary);
    /// there is no per-frame cost afterwards. A first frame that verifies
    /// under none of them is [`LinkError::InvalidHmac`]. See
    /// [`pinned_key`](Self::pinned_key).
    pub fn with_additional_key(mut self, key: impl Into<HmacKey>) -> Self {
        self.candidates.push(keyed_mac(key.into().as_bytes()));
        self
    }

    /// Which key verified the first frame received: `Some(0)` for the key
    /// the codec was made with, `Some(n)` for the `n`th added with
    /// [`with_additional_key`](Self::with_additional_key); `None` until a
    /// frame has verified.
    pub fn pinned_key(&self) -> Option<usize> {
        self.pinned
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

    /// Appends one frame carrying `payload` to `dst`.
    ///
    /// This is what `Encoder::encode` does, for callers holding a slice
    /// rather than [`Bytes`].
    ///
    /// # Errors
    ///
    /// [`LinkError::FrameTooLarge`] if `payload` is longer than
    /// [`max_frame_len`](Self::max_frame_len); nothing is written then.
    pub fn encode_slice(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), LinkError> {
        self.check_len(payload.len())?;
        let mac = self.start_mac(Direction::Send);
        mac.update(payload);
        let tag = mac.finalize_reset().into_bytes();
        dst.reserve(LENGTH_LEN + payload.len() + TAG_LEN);
        put_frame(dst, payload, &tag);
        self.count_sent(1);
        Ok(())
    }

    /// Appends two frames, carrying `first` then `second`, to `dst`: the
    /// same bytes as two calls to [`encode_slice`](Self::encode_slice), with
    /// the two tags computed interleaved (see [`PAIR_MIN_LEN`]).
    ///
    /// On [`LinkError::FrameTooLarge`] nothing is written.
    pub(crate) fn encode_pair(
        &mut self,
        first: &[u8],
        second: &[u8],
        dst: &mut BytesMut,
    ) -> Result<(), LinkError> {
        self.check_len(first.len())?;
        self.check_len(second.len())?;
        let mut second_mac = self.mac_for(Direction::Send, 1);
        let first_mac = self.start_mac(Direction::Send);
        update_interleaved(first_mac, first, &mut second_mac, second);
        let first_tag = first_mac.finalize_reset().into_bytes();
        dst.reserve(2 * (LENGTH_LEN + TAG_LEN) + first.len() + second.len());
        put_frame(dst, first, &first_tag);
        put_frame(dst, second, &second_mac.finalize().into_bytes());
        self.count_sent(2);
        Ok(())
    }

    /// Writes the length and `payload` of one frame to `dst` and returns
    /// what computes its tag: a link sends the payload on its way first and
    /// hashes it while the peer receives it, then appends the tag with
    /// [`DeferredTag::finish`]. The bytes are those of
    /// [`encode_slice`](Self::encode_slice) once the tag is there.
    ///
    /// On [`LinkError::FrameTooLarge`] nothing is written.
    pub(crate) fn encode_deferred(
        &mut self,
        payload: Bytes,
        dst: &mut BytesMut,
    ) -> Result<DeferredTag, LinkError> {
        self.check_len(payload.len())?;
        let mac = self.mac_for(Direction::Send, 0);
        dst.reserve(LENGTH_LEN + payload.len() + TAG_LEN);
        put_body(dst, &payload);
        self.count_sent(1);
        Ok(DeferredTag { mac, payload })
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

    /// [`LinkError::FrameTooLarge`] if a payload of `len` bytes is over
    /// [`max_frame_len`](Self::max_frame_len).
    pub(crate) fn check_len(&self, len: usize) -> Result<(), LinkError> {
        if len > self.max_frame_len {
            return Err(self.too_large(len));
        }
        Ok(())
    }

    /// The keyed state, ready for the next frame in `direction`: the
    /// session-bound prefix (direction label and counter) hashed. The
    /// caller must finish it with `finalize_reset` (or [`tag_matches`])
    /// before it returns, whatever happens: see the `keyed` field.
    #[inline]
    fn start_mac(&mut self, direction: Direction) -> &mut Hmac<Sha256> {
        if let Some(session) = &self.session {
            let (dir, next) = match direction {
                Direction::Send => (session.send_dir, session.sent),
                Direction::Receive => (session.recv_dir, session.received),
            };
            self.keyed.update(dir);
            self.keyed.update(&next.to_be_bytes());
        }
        &mut self.keyed
    }

    /// A clone of the keyed MAC for the frame `index_ahead` after the next
    /// in `direction`, with the session-bound prefix (direction label and
    /// counter) already hashed: for a state that outlives the call.
    #[inline]
    fn mac_for(&self, direction: Direction, index_ahead: u64) -> Hmac<Sha256> {
        self.mac_with(&self.keyed, direction, index_ahead)
    }

    /// [`mac_for`](Self::mac_for) with another keyed state (a candidate
    /// key during a rotation).
    #[inline]
    fn mac_with(
        &self,
        keyed: &Hmac<Sha256>,
        direction: Direction,
        index_ahead: u64,
    ) -> Hmac<Sha256> {
        let mut mac = keyed.clone();
        if let Some(session) = &self.session {
            let (dir, next) = match direction {
                Direction::Send => (session.send_dir, session.sent),
                Direction::Receive => (session.recv_dir, session.received),
            };
            mac.update(dir);
            mac.update(&(next + index_ahead).to_be_bytes());
        }
        mac
    }

    /// Checks the tag of the next frame received (constant-time
    /// comparison).
    #[inline]
    fn verify(&mut self, payload: &[u8], tag: &[u8]) -> Result<(), LinkError> {
        let mac = self.start_mac(Direction::Receive);
        mac.update(payload);
        if tag_matches(mac, tag) {
            Ok(())
        } else {
            Err(LinkError::InvalidHmac)
        }
    }

    /// Checks the first frame received against the primary key, then each
    /// candidate; pins the codec to the one that verifies it.
    fn verify_first(&mut self, payload: &[u8], tag: &[u8]) -> Result<(), LinkError> {
        if self.verify(payload, tag).is_ok() {
            self.pin(0);
            return Ok(());
        }
        let found = self.candidates.iter().position(|keyed| {
            let mut mac = self.mac_with(keyed, Direction::Receive, 0);
            mac.update(payload);
            mac.verify_slice(tag).is_ok()
        });
        let index = found.ok_or(LinkError::InvalidHmac)?;
        self.keyed = self.candidates.swap_remove(index);
        self.pin(index + 1);
        Ok(())
    }

    /// From now on only the key that verified (already in `keyed`) counts.
    fn pin(&mut self, key: usize) {
        self.pinned = Some(key);
        self.candidates.clear();
        self.receive_max = self.max_frame_len;
    }

    /// Advances the session-bound send counter past `frames` frames.
    fn count_sent(&mut self, frames: u64) {
        if let Some(session) = &mut self.session {
            session.sent += frames;
        }
    }

    /// Advances the session-bound receive counter past `frames` frames.
    fn count_received(&mut self, frames: u64) {
        if let Some(session) = &mut self.session {
            session.received += frames;
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

    fn too_large(&self, len: usize) -> LinkError {
        LinkError::FrameTooLarge {
            len: len as u64,
            max: self.max_frame_len as u64,
        }
    }
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

/// The payload length a frame starting at `frame` declares, once its 4
/// length bytes are there.
fn declared_len(frame: &[u8]) -> Option<usize> {
    let head: [u8; LENGTH_LEN] = frame.get(..LENGTH_LEN)?.try_into().ok()?;
    Some(u32::from_be_bytes(head) as usize)
}

/// Writes one frame: the length, `payload`, and its `tag`. With
/// [`put_body`], the only place the layout is written.
fn put_frame(dst: &mut BytesMut, payload: &[u8], tag: &[u8]) {
    put_body(dst, payload);
    dst.extend_from_slice(tag);
}

/// Writes the length and `payload` of a frame; its tag follows.
fn put_body(dst: &mut BytesMut, payload: &[u8]) {
    // Callers checked the length against max_frame_len <= u32::MAX.
    dst.put_u32(payload.len() as u32);
    dst.extend_from_slice(payload);
}

/// Makes room for `ahead` more bytes in `src`: in place if the buffer can
/// take them, or reclaim the space of bytes already consumed without
/// allocating; otherwise in a fresh allocation of exactly the bytes held
/// plus `ahead`, and at least [`MIN_READ_BUFFER`] (so reads stay large).
/// `BytesMut::reserve` would size a new allocation from the old one,
/// consumed bytes included, and double it, so the real allocation could
/// be far more than the decoder asked for. Callers bound `ahead` by the
/// larger of `MAX_RESERVE_AHEAD` and the bytes held, so the allocation
/// grows at least geometrically for a large frame (copies stay linear in
/// its size) and never exceeds twice what is held plus `MAX_RESERVE_AHEAD`.
fn grow_read_buffer(src: &mut BytesMut, ahead: usize) {
    if src.try_reclaim(ahead) {
        return;
    }
    let mut fresh = BytesMut::with_capacity((src.len() + ahead).max(MIN_READ_BUFFER));
    fresh.extend_from_slice(src);
    *src = fresh;
}

/// Finishes `mac`, returning it to its keyed state, and compares its tag
/// with `tag` in constant time (a `tag` of another length never matches).
fn tag_matches(mac: &mut Hmac<Sha256>, tag: &[u8]) -> bool {
    let computed = mac.finalize_reset().into_bytes();
    bool::from(computed.as_slice().ct_eq(tag))
}

/// HMAC-SHA256 keyed with `key`.
fn keyed_mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 accepts keys of any length"),
    }
}

/// `K = HMAC-SHA256(key, exporter)` for the session-bound format, from the
/// state keyed with `key`; wiped on drop.
fn derive_session_key(keyed: &Hmac<Sha256>, exporter: &[u8]) -> zeroize::Zeroizing<[u8; TAG_LEN]> {
    let mut derive = keyed.clone();
    derive.update(exporter);
    zeroize::Zeroizing::new(derive.finalize().into_bytes().into())
}

/// Which of a codec's two directions a tag is for.
#[derive(Clone, Copy)]
enum Direction {
    Send,
    Receive,
}

/// Hashes `a_data` into `a` and `b_data` into `b`, [`INTERLEAVE_STEP`]
/// bytes of each in turn: the two computations are independent, so the CPU
/// runs one while the other waits on its previous result.
fn update_interleaved(a: &mut Hmac<Sha256>, a_data: &[u8], b: &mut Hmac<Sha256>, b_data: &[u8]) {
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
            // Room for the rest of this frame and a next one of the same
            // size, so that a reader that is behind finds two whole frames
            // to verify together. In bounded steps: a length prefix alone
            // must not commit memory the peer never sends.
            let missing = frame_rest - src.len();
            let next = frame_rest.saturating_add(LENGTH_LEN);
            let ahead = missing
                .saturating_add(next)
                .min(MAX_RESERVE_AHEAD.max(src.len()));
            let room = src.capacity() - src.len();
            if room < missing.min(READ_ROOM) {
                grow_read_buffer(src, ahead);
            } else if room < ahead {
                // Enough room to go on reading: only reclaim the space of
                // bytes consumed, if that needs no allocation. Allocating
                // here, at every read, would copy everything held each
                // time once `ahead` grows with what is held: quadratic
                // in the frame for a reader that keeps up with its peer.
                let _reclaimed = src.try_reclaim(ahead);
            }
            return Ok(None);
        }

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
        codec.encode_pair(&first, &second, &mut dst)?;
        assert_eq!(dst.len(), frame(first.len()) + frame(second.len()));
        assert_eq!(dst.capacity(), frame(first.len()) + frame(second.len()));

        let mut dst = BytesMut::new();
        let tag = codec.encode_deferred(Bytes::from(first.clone()), &mut dst)?;
        assert_eq!(dst.len(), LENGTH_LEN + first.len());
        assert_eq!(dst.capacity(), frame(first.len()));
        tag.finish(&mut dst);
        assert_eq!(dst.capacity(), frame(first.len()));
        Ok(())
    }
}
