//! The decoder's read-buffer policy: how much room it asks for while a
//! frame arrives, and when it moves to a fresh allocation (the bound the
//! module documentation states, measured by tests/memory.rs).

use bytes::BytesMut;

use super::frame::LENGTH_LEN;
use super::spares::Spares;

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
const MIN_READ_BUFFER: usize = 32 * 1024;

/// Makes room in `src` for a frame whose `frame_rest` bytes (payload and
/// tag) are not all there yet (`src` holds fewer; the caller checked): for the rest of this frame and a next one
/// of the same size, so that a reader that is behind finds two whole
/// frames to verify together. In bounded steps: a length prefix alone
/// must not commit memory the peer never sends.
pub(super) fn make_room(src: &mut BytesMut, frame_rest: usize, spares: &mut Spares) {
    let missing = frame_rest.saturating_sub(src.len());
    let next = frame_rest.saturating_add(LENGTH_LEN);
    let ahead = missing
        .saturating_add(next)
        .min(MAX_RESERVE_AHEAD.max(src.len()));
    let room = src.capacity() - src.len();
    if room < missing.min(READ_ROOM) {
        grow_read_buffer(src, ahead, spares);
    } else if room < ahead {
        // Enough room to go on reading: only reclaim the space of
        // bytes consumed, if that needs no allocation. Allocating
        // here, at every read, would copy everything held each
        // time once `ahead` grows with what is held: quadratic
        // in the frame for a reader that keeps up with its peer.
        let _reclaimed = src.try_reclaim(ahead);
    }
}

/// Makes room for `ahead` more bytes in `src`: in place if the buffer can
/// take them, or reclaim the space of bytes already consumed without
/// allocating; otherwise in another allocation of exactly the bytes held
/// plus `ahead`, and at least [`MIN_READ_BUFFER`] (so reads stay large).
/// `BytesMut::reserve` would size a new allocation from the old one,
/// consumed bytes included, and double it, so the real allocation could
/// be far more than the decoder asked for. Callers bound `ahead` by the
/// larger of `MAX_RESERVE_AHEAD` and the bytes held, so the allocation
/// grows at least geometrically for a large frame (copies stay linear in
/// its size) and never exceeds twice what is held plus `MAX_RESERVE_AHEAD`.
///
/// With [`Spares`] enabled, that allocation is one left behind before and
/// free again, when there is one, and the one left now is kept.
fn grow_read_buffer(src: &mut BytesMut, ahead: usize, spares: &mut Spares) {
    if src.try_reclaim(ahead) {
        return;
    }
    spares.replace(src, (src.len() + ahead).max(MIN_READ_BUFFER));
}
