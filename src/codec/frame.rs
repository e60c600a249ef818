//! The frame layout, `length | payload | tag`: its constants and the only
//! code that writes or reads a frame's length.

use bytes::{BufMut, BytesMut};

/// Bytes of the big-endian `u32` length prefix of a frame.
pub const LENGTH_LEN: usize = 4;

/// Bytes of the HMAC-SHA256 tag that ends a frame.
pub const TAG_LEN: usize = 32;

/// The default maximum payload length of a frame: 8 MiB, as tokio-util's
/// `LengthDelimitedCodec`. It counts payload bytes only.
pub const DEFAULT_MAX_FRAME_LEN: usize = 8 * 1024 * 1024;

/// The largest payload the format can describe (`u32::MAX`), or on a
/// target whose `usize` is 32 bits, the largest for which two whole frames
/// (payloads, prefixes and tags) still have a length that fits a `usize`.
/// With every limit capped to this, the sums of the decoder cannot
/// overflow; they are checked anyway.
pub(super) const FORMAT_MAX_FRAME_LEN: usize = {
    let overhead = 2 * (LENGTH_LEN + TAG_LEN);
    if (u32::MAX as u64) < (usize::MAX - overhead) as u64 {
        u32::MAX as usize
    } else {
        usize::MAX - overhead
    }
};

/// The payload length a frame starting at `frame` declares, once its 4
/// length bytes are there.
pub(super) fn declared_len(frame: &[u8]) -> Option<usize> {
    let head: [u8; LENGTH_LEN] = frame.get(..LENGTH_LEN)?.try_into().ok()?;
    Some(u32::from_be_bytes(head) as usize)
}

/// Writes one frame: the length, the payload `head` then `body` (one
/// payload in two pieces; `head` is empty but for a mode on top, the
/// resilient one's header), and its `tag`. With [`put_body`], the only
/// place the layout is written.
pub(super) fn put_frame(dst: &mut BytesMut, head: &[u8], body: &[u8], tag: &[u8]) {
    put_body(dst, head, body);
    dst.extend_from_slice(tag);
}

/// Writes the length and the payload (`head` then `body`) of a frame; its
/// tag follows.
pub(super) fn put_body(dst: &mut BytesMut, head: &[u8], body: &[u8]) {
    // Callers checked the length against max_frame_len <= u32::MAX.
    dst.put_u32((head.len() + body.len()) as u32);
    dst.extend_from_slice(head);
    dst.extend_from_slice(body);
}
