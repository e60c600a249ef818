//! Key rotation: the keys a codec accepts for the first frame received,
//! and pinning to the one that verified it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::HmacFrameCodec;
use super::session::Direction;
use crate::{HmacKey, LinkError};

impl HmacFrameCodec {
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

    /// Checks the first frame received against the primary key, then each
    /// candidate; pins the codec to the one that verifies it.
    pub(super) fn verify_first(&mut self, payload: &[u8], tag: &[u8]) -> Result<(), LinkError> {
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
    pub(super) fn pin(&mut self, key: usize) {
        self.pinned = Some(key);
        self.candidates.clear();
        self.receive_max = self.max_frame_len;
    }
}

/// HMAC-SHA256 keyed with `key`.
pub(super) fn keyed_mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 accepts keys of any length"),
    }
}
