//! Writing frames: one at a time, two with their tags hashed interleaved,
//! or one whose tag is computed after its payload is on its way.

use bytes::{Bytes, BytesMut};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::HmacFrameCodec;
use super::frame::{LENGTH_LEN, TAG_LEN, put_body, put_frame};
use super::session::Direction;
use super::verify::update_interleaved;
use crate::LinkError;

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
    /// the two tags computed interleaved (see [`PAIR_MIN_LEN`](super::PAIR_MIN_LEN)).
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
}
