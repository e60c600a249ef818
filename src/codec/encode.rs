//! Writing frames: one at a time, two with their tags hashed interleaved,
//! or one whose tag is computed after its payload is on its way; each
//! payload in one piece, or as a [`Head`] and a body.

use bytes::{Bytes, BytesMut};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::HmacFrameCodec;
use super::frame::{LENGTH_LEN, TAG_LEN, put_body, put_frame};
use super::session::Direction;
use super::verify::update_interleaved_after;
use crate::LinkError;

/// The most bytes a [`Head`] holds.
pub(crate) const MAX_HEAD_LEN: usize = 32;

/// Bytes a mode on top of the format puts in front of a message in the
/// same frame (the resilient mode's header), kept apart from the message
/// so that no copy joins them: the encoders write and hash the head, then
/// the body. The frame is exactly that of the two together; the format
/// does not change. Empty for the plain mode.
#[derive(Clone, Copy)]
pub(crate) struct Head {
    bytes: [u8; MAX_HEAD_LEN],
    len: u8,
}

impl Head {
    /// No head: the payload is the message.
    pub(crate) const EMPTY: Head = Head {
        bytes: [0; MAX_HEAD_LEN],
        len: 0,
    };

    /// A head of the `N` bytes of `array` (at most [`MAX_HEAD_LEN`],
    /// checked when compiled).
    pub(crate) fn from_array<const N: usize>(array: [u8; N]) -> Head {
        const { assert!(N <= MAX_HEAD_LEN) };
        let mut bytes = [0; MAX_HEAD_LEN];
        bytes[..N].copy_from_slice(&array);
        Head {
            bytes,
            len: N as u8,
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Head({})", hex::encode(self.as_slice()))
    }
}

/// A frame whose length and payload have been written and whose tag has
/// not, yet (see [`HmacFrameCodec::encode_deferred`]). Dropping it leaves a
/// frame without its tag in the buffer: the link must [`finish`](Self::finish)
/// it before anything else is written there.
pub(crate) struct DeferredTag {
    mac: Hmac<Sha256>,
    head: Head,
    payload: Bytes,
}

impl DeferredTag {
    /// Computes the tag and appends it to `dst`, which must end where the
    /// payload was written (or have sent everything up to there).
    pub(crate) fn finish(self, dst: &mut BytesMut) {
        let mut mac = self.mac;
        mac.update(self.head.as_slice());
        mac.update(&self.payload);
        dst.extend_from_slice(&mac.finalize().into_bytes());
    }
}

impl HmacFrameCodec {
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
        self.encode_parts(&Head::EMPTY, payload, dst)
    }

    /// Appends one frame whose payload is `head` then `body` to `dst`: the
    /// bytes of [`encode_slice`](Self::encode_slice) of the two joined,
    /// without joining them.
    ///
    /// On [`LinkError::FrameTooLarge`] nothing is written.
    pub(crate) fn encode_parts(
        &mut self,
        head: &Head,
        body: &[u8],
        dst: &mut BytesMut,
    ) -> Result<(), LinkError> {
        let (head, len) = (head.as_slice(), head.as_slice().len() + body.len());
        self.check_len(len)?;
        let mac = self.start_mac(Direction::Send);
        mac.update(head);
        mac.update(body);
        let tag = mac.finalize_reset().into_bytes();
        dst.reserve(LENGTH_LEN + len + TAG_LEN);
        put_frame(dst, head, body, &tag);
        self.count_sent(1);
        Ok(())
    }

    /// Appends two frames, carrying `first` then `second` (each a head and
    /// a body), to `dst`: the same bytes as two calls to
    /// [`encode_parts`](Self::encode_parts), with the two tags computed
    /// interleaved (see [`PAIR_MIN_LEN`](super::PAIR_MIN_LEN)).
    ///
    /// On [`LinkError::FrameTooLarge`] nothing is written.
    pub(crate) fn encode_pair(
        &mut self,
        (first_head, first): (&Head, &[u8]),
        (second_head, second): (&Head, &[u8]),
        dst: &mut BytesMut,
    ) -> Result<(), LinkError> {
        let (first_head, second_head) = (first_head.as_slice(), second_head.as_slice());
        let first_len = first_head.len() + first.len();
        let second_len = second_head.len() + second.len();
        self.check_len(first_len)?;
        self.check_len(second_len)?;
        let prefix = self.mac_prefix_len();
        let mut second_mac = self.mac_for(Direction::Send, 1);
        let first_mac = self.start_mac(Direction::Send);
        update_interleaved_after(
            prefix,
            first_mac,
            (first_head, first),
            &mut second_mac,
            (second_head, second),
        );
        let first_tag = first_mac.finalize_reset().into_bytes();
        dst.reserve(2 * (LENGTH_LEN + TAG_LEN) + first_len + second_len);
        put_frame(dst, first_head, first, &first_tag);
        put_frame(
            dst,
            second_head,
            second,
            &second_mac.finalize().into_bytes(),
        );
        self.count_sent(2);
        Ok(())
    }

    /// Writes the length and payload (`head` then `payload`) of one frame
    /// to `dst` and returns
    /// what computes its tag: a link sends the payload on its way first and
    /// hashes it while the peer receives it, then appends the tag with
    /// [`DeferredTag::finish`]. The bytes are those of
    /// [`encode_slice`](Self::encode_slice) once the tag is there.
    ///
    /// On [`LinkError::FrameTooLarge`] nothing is written.
    pub(crate) fn encode_deferred(
        &mut self,
        head: Head,
        payload: Bytes,
        dst: &mut BytesMut,
    ) -> Result<DeferredTag, LinkError> {
        let len = head.as_slice().len() + payload.len();
        self.check_len(len)?;
        let mac = self.mac_for(Direction::Send, 0);
        dst.reserve(LENGTH_LEN + len + TAG_LEN);
        put_body(dst, head.as_slice(), &payload);
        self.count_sent(1);
        Ok(DeferredTag { mac, head, payload })
    }
}
