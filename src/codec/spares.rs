//! [`Spares`]: read buffers the decoder left behind while messages handed
//! out still shared them, kept to be reused once those messages are gone.
//!
//! The decoder hands out each payload as a slice of its read buffer (no
//! copy). A reader that keeps the payloads a little while (a queue to
//! another task: the resilient mode's driver and its application) cannot
//! reclaim that buffer when the next frame needs room, so the decoder
//! moves to another allocation. Asked for afresh each time, such memory
//! is handed back to the system and taken again in between by glibc's
//! allocator: a page fault per 4 KiB read, the resilient mode's largest
//! cost at 64 KiB (BENCHMARKS.md, "Read buffers reused, and the hot
//! path"). Kept here instead, the decoder moves between a few
//! allocations that are free again by the time it comes back to them.

use std::collections::VecDeque;

use bytes::BytesMut;

/// The bytes of the buffers kept, at most (by the sizes they were
/// allocated with): 1 MiB, as many 32 KiB buffers of small frames as a
/// reader about 1,000 messages of 1 KiB behind pins, or two of the
/// largest kept. Past it, the oldest go.
pub(crate) const SPARE_BYTES: usize = 1024 * 1024;

/// The largest allocation kept, in bytes: the read buffer of frames up to
/// about 192 KiB (the frame, the next one and the room the decoder asks
/// for). Larger ones go back to the allocator, whose cost a frame that
/// large amortises.
pub(crate) const SPARE_MAX_LEN: usize = 512 * 1024;

/// Read buffers kept for reuse: none until [`enable`](Spares::enable)d
/// (a link whose application drops each message before it reads the next
/// reuses its one buffer in place and needs none).
#[derive(Default)]
pub(super) struct Spares {
    /// Empty buffers, oldest first, each with the size it was allocated
    /// with.
    buffers: VecDeque<(BytesMut, usize)>,
    /// The sum of those sizes.
    bytes: usize,
    /// Where the read buffer this pool last handed out starts, and its
    /// size: to tell it from one the link swapped in, whose size this
    /// module does not know.
    current: Option<(usize, usize)>,
    enabled: bool,
    /// Allocations made by [`take`](Spares::take).
    #[cfg(test)]
    allocated: usize,
}

impl Spares {
    /// From now on, keep up to [`SPARE_BYTES`].
    pub(super) fn enable(&mut self) {
        self.enabled = true;
    }

    /// Drops every buffer kept (the link is idle).
    pub(super) fn clear(&mut self) {
        self.buffers = VecDeque::new();
        self.bytes = 0;
        // The link may swap its read buffer for an idle one meanwhile.
        self.current = None;
    }

    /// How many buffers are kept now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.buffers.len()
    }

    /// Moves the bytes `src` holds to another buffer with room for `size`
    /// (see [`take`](Self::take)), and keeps the one left behind (see
    /// [`keep`](Self::keep)).
    pub(super) fn replace(&mut self, src: &mut BytesMut, size: usize) {
        let previous = self.current;
        let mut fresh = self.take(size);
        fresh.extend_from_slice(src);
        let old = std::mem::replace(src, fresh);
        self.keep(old, previous);
    }

    /// An empty buffer with room for `size` bytes: the smallest kept one
    /// that holds them and that nothing shares any more, or a new
    /// allocation of `size`.
    fn take(&mut self, size: usize) -> BytesMut {
        // Reclaimed whole: the buffer then starts where its allocation
        // does, which `keep` relies on to recognise it.
        let mut reusable: Option<(usize, usize)> = None;
        for (index, (buffer, allocated)) in self.buffers.iter_mut().enumerate() {
            let smaller = reusable.is_none_or(|(_, best)| *allocated < best);
            if *allocated >= size && smaller && buffer.try_reclaim(*allocated) {
                reusable = Some((index, *allocated));
            }
        }
        let (buffer, allocated) = match reusable.and_then(|(index, _)| self.buffers.remove(index)) {
            Some(kept) => {
                self.bytes -= kept.1;
                kept
            }
            None => {
                #[cfg(test)]
                {
                    self.allocated += 1;
                }
                (BytesMut::with_capacity(size), size)
            }
        };
        self.current = Some((buffer.as_ptr().addr(), allocated));
        buffer
    }

    /// `old`, the read buffer just replaced, is kept if it is `previous`,
    /// the one [`take`](Self::take) handed out before (so its size is
    /// known), and that is at most [`SPARE_MAX_LEN`]; the oldest kept go
    /// while more than [`SPARE_BYTES`] are.
    fn keep(&mut self, mut old: BytesMut, previous: Option<(usize, usize)>) {
        let Some((start, allocated)) = previous else {
            return;
        };
        let at = old.as_ptr().addr();
        if !self.enabled || allocated > SPARE_MAX_LEN || !(start..=start + allocated).contains(&at)
        {
            return;
        }
        old.clear();
        self.bytes += allocated;
        self.buffers.push_back((old, allocated));
        while self.bytes > SPARE_BYTES {
            if let Some((_, size)) = self.buffers.pop_front() {
                self.bytes -= size;
            }
        }
    }

    /// The bytes kept now, by the sizes they were allocated with.
    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The largest buffer kept now, by the size it was allocated with.
    #[cfg(test)]
    pub(super) fn largest(&self) -> usize {
        self.buffers
            .iter()
            .map(|&(_, size)| size)
            .max()
            .unwrap_or(0)
    }

    /// Allocations [`take`](Self::take) made.
    #[cfg(test)]
    pub(super) fn allocated(&self) -> usize {
        self.allocated
    }
}

impl Clone for Spares {
    /// A codec's clone shares no buffers: it starts with none, enabled or
    /// not as this one.
    fn clone(&self) -> Self {
        Spares {
            enabled: self.enabled,
            ..Spares::default()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::VecDeque;

    use bytes::{BufMut, Bytes, BytesMut};
    use tokio_util::codec::{Decoder, Encoder};

    use super::{SPARE_BYTES, SPARE_MAX_LEN};
    use crate::HmacFrameCodec;

    /// What reading `count` frames of `len` bytes cost a decoder whose
    /// reader keeps the last `kept` messages, fed as `Framed` feeds it (a
    /// `reserve(1)`, then a read of up to 16 KiB, a TLS record, into the
    /// room there is).
    struct Read {
        /// Allocations the decoder made for its read buffer.
        allocated: usize,
        /// The most bytes it kept at once.
        most_kept: usize,
        /// The largest buffer it kept.
        largest_kept: usize,
        /// Times the read buffer moved to an allocation not the decoder's
        /// own (`Framed`'s `reserve`).
        moved_elsewhere: usize,
    }

    fn read(reuse: bool, len: usize, count: usize, kept: usize) -> Read {
        let key = [7u8; 32];
        let mut wire = BytesMut::new();
        let mut encoder = HmacFrameCodec::new(key.to_vec());
        for i in 0..count {
            let message = Bytes::from(vec![i as u8; len]);
            encoder.encode(message, &mut wire).unwrap();
        }
        let mut decoder = HmacFrameCodec::new(key.to_vec());
        if reuse {
            decoder.reuse_read_buffers();
        }
        let mut src = BytesMut::with_capacity(8 * 1024);
        let mut held = VecDeque::new();
        let mut read = Read {
            allocated: 0,
            most_kept: 0,
            largest_kept: 0,
            moved_elsewhere: 0,
        };
        let (mut at, mut got) = (0, 0);
        while at < wire.len() {
            let before = src.as_ptr();
            src.reserve(1);
            if src.as_ptr() != before {
                read.moved_elsewhere += 1;
            }
            let n = (src.capacity() - src.len())
                .min(16 * 1024)
                .min(wire.len() - at);
            src.put_slice(&wire[at..at + n]);
            at += n;
            while let Some(message) = decoder.decode(&mut src).unwrap() {
                assert_eq!(message, vec![got as u8; len]);
                got += 1;
                held.push_back(message);
                if held.len() > kept {
                    held.pop_front();
                }
                read.most_kept = read.most_kept.max(decoder.spares.bytes());
                read.largest_kept = read.largest_kept.max(decoder.spares.largest());
            }
        }
        assert_eq!(got, count);
        read.allocated = decoder.spares.allocated();
        read
    }

    #[test]
    fn a_reader_that_keeps_messages_a_while_reuses_a_few_read_buffers() {
        // Each read buffer holds about two 64 KiB frames; a reader that
        // keeps three of them pins two buffers at any time.
        let without = read(false, 64 * 1024, 200, 3);
        let with = read(true, 64 * 1024, 200, 3);
        assert!(without.allocated >= 90, "{}", without.allocated);
        assert!(with.allocated <= 4, "{}", with.allocated);
        assert!(with.most_kept <= SPARE_BYTES);
        // 1 KiB frames, 32 of them to a buffer: a reader 600 behind pins
        // about 20 buffers, and reuses them.
        let small_without = read(false, 1024, 6000, 600);
        let small_with = read(true, 1024, 6000, 600);
        assert!(
            small_without.allocated >= 150,
            "{}",
            small_without.allocated
        );
        assert!(small_with.allocated <= 30, "{}", small_with.allocated);
        assert!(small_with.most_kept <= SPARE_BYTES);
        // The decoder makes room before `Framed` would: its `reserve`
        // never moves the buffer (it would allocate and copy, shared).
        assert_eq!(without.moved_elsewhere, 0);
        assert_eq!(with.moved_elsewhere, 0);
    }

    #[test]
    fn buffers_over_the_size_limit_are_not_kept() {
        // 300 KiB frames grow their read buffers to about 600 KiB: only
        // the smaller steps on the way are kept.
        let large = read(true, 300 * 1024, 12, 2);
        assert!(
            large.largest_kept <= SPARE_MAX_LEN,
            "{}",
            large.largest_kept
        );
        assert!(large.most_kept <= SPARE_BYTES);
        let medium = read(true, 64 * 1024, 50, 3);
        assert!(medium.largest_kept > 64 * 1024, "{}", medium.largest_kept);
    }

    #[test]
    fn a_reader_that_drops_each_message_keeps_nothing() {
        // One allocation: the first frame outgrows the first buffer.
        let prompt = read(true, 64 * 1024, 100, 0);
        assert_eq!(prompt.allocated, 1);
        assert_eq!(prompt.most_kept, 0);
    }

    /// Of the kept buffers that fit, the smallest stands in (the codec's
    /// docs: a kept buffer may be larger than a fresh one would be, but
    /// no larger than it must).
    #[test]
    fn the_smallest_kept_buffer_that_fits_is_reused() {
        const KIB: usize = 1024;
        let mut spares = super::Spares::default();
        spares.enable();
        let mut src = BytesMut::new();
        spares.replace(&mut src, 32 * KIB);
        spares.replace(&mut src, 512 * KIB); // keeps the 32 KiB one
        spares.replace(&mut src, 64 * KIB); // keeps the 512 KiB one
        assert_eq!(spares.len(), 2);
        assert_eq!(spares.allocated(), 3);
        spares.replace(&mut src, 16 * KIB);
        assert_eq!(src.capacity(), 32 * KIB);
        assert_eq!(spares.allocated(), 3, "reused, not allocated");
    }

    #[test]
    fn a_clone_keeps_no_buffers_and_clear_drops_them() {
        let mut decoder = HmacFrameCodec::new(vec![7u8; 32]);
        decoder.reuse_read_buffers();
        let mut wire = BytesMut::new();
        let mut encoder = decoder.clone();
        for _ in 0..8 {
            encoder
                .encode(Bytes::from(vec![1u8; 64 * 1024]), &mut wire)
                .unwrap();
        }
        let mut src = BytesMut::new();
        let mut held = Vec::new();
        for chunk in wire.chunks(16 * 1024) {
            src.reserve(1);
            src.put_slice(chunk);
            while let Some(message) = decoder.decode(&mut src).unwrap() {
                held.push(message);
            }
        }
        assert_eq!(held.len(), 8);
        assert!(decoder.spare_read_buffers() > 0);
        assert_eq!(decoder.clone().spare_read_buffers(), 0);
        decoder.drop_spare_read_buffers();
        assert_eq!(decoder.spare_read_buffers(), 0);
    }
}
