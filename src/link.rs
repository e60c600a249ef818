//! How the frame codec is laid over a TLS stream: buffer sizes and the
//! pairing of messages for hashing, shared by the client and the server.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Sleep;
use tokio_rustls::rustls::ConnectionCommon;
use tokio_util::codec::Framed;
use zeroize::Zeroize;

use crate::codec::{
    AuthMode, DeferredTag, Head, PAIR_MIN_LEN, Role, SESSION_EXPORTER_LABEL, SESSION_EXPORTER_LEN,
};
use crate::{HmacFrameCodec, LinkError};

/// Bytes of encoded frames the write buffer collects before `poll_ready`
/// flushes it. tokio-util's default of 8 KiB makes small TLS records and one
/// write per 8 KiB; at 128 KiB, batched sends (`feed` + `flush`,
/// `send_all`) fill 16 KiB TLS records (`batched_frames_fill_whole_tls_records`
/// in tests/link.rs). Together with the once-keyed HMAC this is most of
/// the lead over a default-`Framed` codec at 64 B-1 KiB in BENCHMARKS.md.
const WRITE_BACKPRESSURE_BOUNDARY: usize = 128 * 1024;

/// Capacity of the read buffer of a connection that is waiting for a
/// message: what a new connection starts with, and what a larger buffer
/// is swapped for once it is empty: when the message that grew it is
/// handed over with nothing after it, or when the link is read dry (see
/// [`RELEASE_AFTER`]). It
/// grows as frames need (see the codec's decoder contract). An idle
/// connection's heap is mostly this, rustls' session state and the codec
/// (the tool's cli/tests/idle_memory.rs holds the server's share to 24 KiB); bulk
/// transfers of large frames still read into buffers of at least 32 KiB,
/// and small frames read 8 KiB at a time (BENCHMARKS.md, "Memory per
/// connection").
const IDLE_READ_BUFFER: usize = 8 * 1024;

/// The largest write buffer an idle link keeps. A new connection's write
/// buffer is empty (no allocation) and grows with what is encoded; a
/// larger one, left by a large message or a long batch, is released on
/// the flush that empties it, and when the link is read dry (see
/// [`RELEASE_AFTER`]).
const IDLE_WRITE_BUFFER: usize = 8 * 1024;

/// How long a link busy with large frames keeps the buffers they grew.
/// A grown buffer goes as soon as the work that grew it is done: a read
/// buffer grown past [`IDLE_READ_BUFFER`] when its message is handed over
/// with nothing else buffered, an empty write buffer over
/// [`IDLE_WRITE_BUFFER`] on the flush that empties it, and both when the
/// link is read dry (every byte received decoded, nothing more to read);
/// unless one of them grew again within this long of the last time it
/// went: then the link keeps them until it has been read dry for this
/// long (a timer wakes the reading task; an idle server connection always
/// has a reader), or, on a link that never reads, until its first flush
/// after such a quiet spell.
///
/// Giving them back every time the link was read dry made a link that
/// carries one large message after another allocate its buffers afresh
/// for every message; the allocator hands such memory back to the system
/// in between, so each 64 KiB round trip paid about 50 page faults and
/// took 1.5 x as long as the hand-written codec's with the ends on two
/// threads (`back_to_back_large_messages_reuse_the_buffers` in
/// cli/tests/idle_memory.rs). Keeping them a second after every large
/// message instead held 400 connections' buffers at once after a burst of
/// one large message each, and the process's resident set stayed at the
/// peak (795 KiB per connection). The timer is only armed while a buffer
/// is grown: links of small messages never touch it.
const RELEASE_AFTER: Duration = Duration::from_secs(1);

/// The largest message the sink holds back to pair with the next. Above
/// it the hold costs more than the interleaving gains: a pair of 1 MiB
/// messages is 2 MiB hashed before the first byte leaves, while the
/// receiver waits (over a 1 MiB duplex, ours/P2b went from 0.76-0.92 to
/// 0.96-1.03 at 1 MiB; BENCHMARKS.md).
const PAIR_MAX_HOLD: usize = 256 * 1024;

/// Messages at least this long that answer the peer leave ahead of their
/// tag: their length and payload are flushed (or left for the next flush,
/// above the write buffer's boundary) and the tag is computed while the
/// peer receives them, which hashes them as they come
/// (`HmacFrameCodec::hash_ahead`). The bytes on the wire are the same;
/// the tag travels in a TLS record of its own.
///
/// "Answer" means the link delivered a message since it last sent one:
/// a reply, or a client's next request after a reply, where the peer is
/// waiting for this message and the round trip is what counts. A stream
/// of sends with nothing received in between keeps tag and payload
/// together: there the extra record and write per message cost about 20%
/// of per-message throughput at 16 KiB, and the peer is busy anyway. One
/// TLS record of payload (16 KiB) is the least for which deferring pays
/// (BENCHMARKS.md, "Latency").
const DEFER_TAG_MIN: usize = 16 * 1024;

/// `io` framed with `codec`, buffered as described above.
pub(crate) fn framed<T: AsyncRead + AsyncWrite>(io: T, codec: HmacFrameCodec) -> FramedLink<T> {
    // `with_capacity` sizes both buffers; the write buffer starts empty.
    let mut framed = Framed::with_capacity(io, codec, IDLE_READ_BUFFER);
    *framed.write_buffer_mut() = BytesMut::new();
    framed.set_backpressure_boundary(WRITE_BACKPRESSURE_BOUNDARY);
    let idle_read_at = framed.read_buffer().as_ptr().addr();
    FramedLink {
        framed,
        held: None,
        deferred: None,
        answering: false,
        held_answers: false,
        idle_read_at,
        release: None,
        read_released_at: None,
        write_released_at: None,
    }
}

/// [`Framed`] with [`HmacFrameCodec`], except that a message of at least
/// `PAIR_MIN_LEN` bytes and at most `PAIR_MAX_HOLD` given to the sink is
/// held back until the next one arrives (or a flush or close), and the two
/// are encoded together with their tags hashed interleaved (see
/// `codec::PAIR_MIN_LEN`). The bytes on the wire are the same as frame by
/// frame; batched sends of messages from 1 KiB up get faster.
pub(crate) struct FramedLink<T> {
    framed: Framed<T, HmacFrameCodec>,
    /// A message accepted by `start_send` and not yet encoded, with the
    /// head of its frame's payload (see [`start_send_parts`](Self::start_send_parts)).
    held: Option<(Head, Bytes)>,
    /// The tag of the last frame in the write buffer, not computed yet
    /// (see [`DEFER_TAG_MIN`]); finished before anything else is written.
    /// Boxed: an idle connection does not carry the room for an HMAC state.
    deferred: Option<Box<DeferredTag>>,
    /// Whether the stream delivered a message since the sink last took
    /// one (see [`DEFER_TAG_MIN`]).
    answering: bool,
    /// `answering` as it was when `held` was taken.
    held_answers: bool,
    /// When grown buffers go, if the link is busy with large frames (see
    /// [`RELEASE_AFTER`]); `None` otherwise. Armed at most once a second.
    release: Option<Pin<Box<Sleep>>>,
    /// When a grown read / write buffer last went (see `poll_release`).
    read_released_at: Option<tokio::time::Instant>,
    write_released_at: Option<tokio::time::Instant>,
    /// Where the read buffer's idle allocation starts (see `read_grown`).
    idle_read_at: usize,
}

impl<T> FramedLink<T> {
    pub(crate) fn get_ref(&self) -> &T {
        self.framed.get_ref()
    }

    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.framed.get_mut()
    }

    /// The stream underneath; a held message is lost, as is everything
    /// else buffered.
    pub(crate) fn into_inner(self) -> T {
        self.framed.into_inner()
    }

    pub(crate) fn codec(&self) -> &HmacFrameCodec {
        self.framed.codec()
    }

    /// Encodes the held message, if any, on its own (its tag deferred if
    /// `defer` and it is long enough).
    fn release(&mut self, defer: bool) -> Result<(), LinkError>
    where
        T: AsyncWrite + Unpin,
    {
        match self.held.take() {
            Some((head, item)) => self.encode_alone(head, item, defer && self.held_answers),
            None => Ok(()),
        }
    }

    /// Encodes `head` and `item` as one frame, its tag deferred if `defer`
    /// and it is at least [`DEFER_TAG_MIN`] long. Any deferred tag must be
    /// finished.
    #[inline]
    fn encode_alone(&mut self, head: Head, item: Bytes, defer: bool) -> Result<(), LinkError> {
        if !defer || head.as_slice().len() + item.len() < DEFER_TAG_MIN {
            return self.encode_with(|codec, buffer| codec.encode_parts(&head, &item, buffer));
        }
        let deferred =
            self.encode_with(|codec, buffer| codec.encode_deferred(head, item, buffer))?;
        self.deferred = Some(Box::new(deferred));
        Ok(())
    }

    /// `start_send` of one frame whose payload is `head` then `body` (the
    /// resilient mode's header and its message): the frame of the two
    /// joined, paired and deferred as any message, with no copy joining
    /// them. The caller has had `poll_ready`.
    pub(crate) fn start_send_parts(&mut self, head: Head, body: Bytes) -> Result<(), LinkError> {
        let len = head.as_slice().len() + body.len();
        // Refuse an oversized message now, in the call that gave it.
        self.framed.codec().check_len(len)?;
        self.finish_deferred();
        let answers = std::mem::take(&mut self.answering);
        match self.held.take() {
            Some((first_head, first)) => self.encode_with(|codec, buffer| {
                codec.encode_pair((&first_head, &first), (&head, &body), buffer)
            }),
            None if (PAIR_MIN_LEN..=PAIR_MAX_HOLD).contains(&len) => {
                self.held = Some((head, body));
                self.held_answers = answers;
                Ok(())
            }
            None => self.encode_alone(head, body, answers),
        }
    }

    /// Runs `encode` with the codec and the write buffer, which both live
    /// in `framed`: the buffer is taken out for the moment (no copy, no
    /// allocation).
    fn encode_with<R>(
        &mut self,
        encode: impl FnOnce(&mut HmacFrameCodec, &mut BytesMut) -> R,
    ) -> R {
        let mut buffer = std::mem::take(self.framed.write_buffer_mut());
        let encoded = encode(self.framed.codec_mut(), &mut buffer);
        *self.framed.write_buffer_mut() = buffer;
        encoded
    }

    /// Appends the tag of the frame whose payload went ahead, if any.
    fn finish_deferred(&mut self) {
        if let Some(tag) = self.deferred.take() {
            tag.finish(self.framed.write_buffer_mut());
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Sink<Bytes> for FramedLink<T> {
    type Error = LinkError;

    #[inline]
    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        Pin::new(&mut self.framed).poll_ready(cx)
    }

    #[inline]
    fn start_send(self: Pin<&mut Self>, item: Bytes) -> Result<(), LinkError> {
        self.get_mut().start_send_parts(Head::EMPTY, item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        self.release(true)?;
        if self.deferred.is_some() {
            // Let the payload leave while its tag is computed.
            let sent = Pin::new(&mut self.framed).poll_flush(cx);
            self.finish_deferred();
            if let Poll::Ready(Err(err)) = sent {
                return Poll::Ready(Err(err));
            }
        }
        let flushed = Pin::new(&mut self.framed).poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            // A link that only sends is never read dry: its write buffer
            // goes on the flush that empties it.
            if self.write_grown() {
                self.release_grown(false, true);
            }
        }
        flushed
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        self.finish_deferred();
        self.release(false)?;
        Pin::new(&mut self.framed).poll_close(cx)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Stream for FramedLink<T> {
    type Item = Result<Bytes, LinkError>;

    #[inline]
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = Pin::new(&mut self.framed).poll_next(cx);
        if let Poll::Ready(Some(Ok(_))) = next {
            self.answering = true;
            // The message that needed a grown buffer is handed over: with
            // nothing else buffered the buffer goes now, not when the
            // application next reads (a request/response client reads
            // only when it waits for its next reply).
            if self.framed.read_buffer().is_empty() && self.read_grown() {
                self.release_grown(true, false);
            }
        }
        if next.is_pending() {
            // Read dry: hash what there is of the frame in progress while
            // the rest is on its way.
            let buffer = std::mem::take(self.framed.read_buffer_mut());
            self.framed.codec_mut().hash_ahead(&buffer);
            *self.framed.read_buffer_mut() = buffer;
            self.poll_release(cx);
        }
        next
    }
}

impl<T> FramedLink<T> {
    /// See [`HmacFrameCodec::reuse_read_buffers`]: for a reader whose
    /// messages wait in a queue. They go with the grown read buffer when
    /// the link is idle.
    pub(crate) fn reuse_read_buffers(&mut self) {
        self.framed.codec_mut().reuse_read_buffers();
    }

    /// Called when the stream has found nothing to read. Grown buffers go
    /// at once when the link is read dry (every byte received decoded),
    /// unless one of them grew again within [`RELEASE_AFTER`] of the last
    /// time it went: then the link is busy with large frames, and they go
    /// once it has been read dry for that long (a timer registered with
    /// `cx`). Messages handed out keep their bytes: they own a share of
    /// the allocation.
    fn poll_release(&mut self, cx: &mut Context<'_>) {
        if self.release.is_none() {
            if !self.framed.read_buffer().is_empty() {
                return;
            }
            let (read, write) = (self.read_grown(), self.write_grown());
            if !read && !write {
                return;
            }
            self.release_grown(read, write);
        }
        let Some(timer) = &mut self.release else {
            return;
        };
        if timer.as_mut().poll(cx).is_pending() {
            return;
        }
        self.release = None;
        self.release_buffers(tokio::time::Instant::now(), true, true);
    }

    /// The grown buffers named (`read`, `write`), found empty, go now,
    /// unless one of them grew again within [`RELEASE_AFTER`] of the last
    /// time it went: then the link is busy with large frames, and the
    /// release timer is armed (if it is not), for `poll_release` to wait
    /// on when the link is next read dry. Until then such a buffer stays:
    /// on a link that only sends, until the first flush after a quiet
    /// second.
    fn release_grown(&mut self, read: bool, write: bool) {
        let now = tokio::time::Instant::now();
        let again = |released: Option<tokio::time::Instant>| {
            released.is_some_and(|at| now.saturating_duration_since(at) < RELEASE_AFTER)
        };
        let busy =
            (read && again(self.read_released_at)) || (write && again(self.write_released_at));
        if !busy {
            self.release_buffers(now, read, write);
            // A timer armed for a buffer that has gone since.
            if !self.read_grown() && !self.write_grown() {
                self.release = None;
            }
        } else if self.release.is_none() {
            self.release = Some(Box::pin(tokio::time::sleep_until(now + RELEASE_AFTER)));
        }
    }

    /// Swaps an empty, grown read buffer for a fresh idle one (if `read`)
    /// and drops an empty write buffer over its idle size (if `write`);
    /// notes when each went.
    fn release_buffers(&mut self, now: tokio::time::Instant, read: bool, write: bool) {
        if read && self.framed.read_buffer().is_empty() {
            self.framed.codec_mut().drop_spare_read_buffers();
        }
        if read && self.framed.read_buffer().is_empty() && self.read_grown() {
            *self.framed.read_buffer_mut() = BytesMut::with_capacity(IDLE_READ_BUFFER);
            self.idle_read_at = self.framed.read_buffer().as_ptr().addr();
            self.read_released_at = Some(now);
        }
        if write && self.framed.write_buffer().is_empty() && self.write_grown() {
            *self.framed.write_buffer_mut() = BytesMut::new();
            self.write_released_at = Some(now);
        }
    }

    /// Whether the read buffer may hold more than an idle link needs: it
    /// no longer reads into the allocation it was given (reserving more
    /// moved it, or messages handed out still share that one).
    /// `capacity()` cannot tell, as it counts from where the last byte was
    /// consumed and does not see an allocation shared with a message.
    fn read_grown(&self) -> bool {
        let at = self.framed.read_buffer().as_ptr().addr();
        !(self.idle_read_at..=self.idle_read_at + IDLE_READ_BUFFER).contains(&at)
    }

    /// Whether the write buffer holds more than an idle link keeps.
    fn write_grown(&mut self) -> bool {
        reclaimed_capacity(self.framed.write_buffer_mut()) > IDLE_WRITE_BUFFER
    }
}

/// The capacity of `buffer` counting from the start of its allocation when
/// it is empty and owns it alone (reclaiming it copies nothing then).
fn reclaimed_capacity(buffer: &mut BytesMut) -> usize {
    if buffer.is_empty() {
        let _whole = buffer.try_reclaim(buffer.capacity() + 1);
    }
    buffer.capacity()
}

/// The codec for one connection: the template as is in the lab format, or
/// bound to this TLS session in the session-bound format.
pub(crate) fn connection_codec<D>(
    template: &HmacFrameCodec,
    mode: AuthMode,
    conn: &ConnectionCommon<D>,
    role: Role,
) -> Result<HmacFrameCodec, LinkError> {
    match mode {
        AuthMode::Lab => Ok(template.clone()),
        AuthMode::SessionBound => {
            let mut exporter = conn.export_keying_material(
                [0u8; SESSION_EXPORTER_LEN],
                SESSION_EXPORTER_LABEL,
                None,
            )?;
            let codec = template.bound_to_session(&exporter, role);
            exporter.zeroize();
            Ok(codec)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    use tokio_util::codec::Encoder;

    use super::framed;
    use crate::HmacFrameCodec;

    /// One poll of `link`'s stream.
    async fn read_dry<T>(
        link: &mut super::FramedLink<T>,
    ) -> std::task::Poll<Option<Result<Bytes, crate::LinkError>>>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        std::future::poll_fn(|cx| std::task::Poll::Ready(link.poll_next_unpin(cx))).await
    }

    /// The read buffers a link keeps for reuse go when it is read dry, as
    /// its grown read buffer does (SECURITY.md, "What a peer can hold").
    #[tokio::test(start_paused = true)]
    async fn a_link_read_dry_drops_the_read_buffers_it_kept() {
        let key = b"a key for the spares test".to_vec();
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut link = framed(near, HmacFrameCodec::new(key.clone()));
        link.reuse_read_buffers();
        let mut wire = BytesMut::new();
        let mut encoder = HmacFrameCodec::new(key);
        for i in 0..8u8 {
            encoder
                .encode(Bytes::from(vec![i; 64 * 1024]), &mut wire)
                .unwrap();
        }
        far.write_all(&wire).await.unwrap();

        // Messages kept while more arrive: their buffers are kept too.
        let mut held = Vec::new();
        for _ in 0..7 {
            held.push(link.next().await.unwrap().unwrap());
        }
        assert!(link.framed.codec().spare_read_buffers() > 0);
        held.push(link.next().await.unwrap().unwrap());
        // Read dry; busy with large frames, so the buffers go a second
        // later (`RELEASE_AFTER`), on the reader's timer.
        assert!(read_dry(&mut link).await.is_pending());
        tokio::time::sleep(super::RELEASE_AFTER).await;
        assert!(read_dry(&mut link).await.is_pending());
        assert_eq!(link.framed.codec().spare_read_buffers(), 0);
        assert_eq!(held.len(), 8);
    }
}
