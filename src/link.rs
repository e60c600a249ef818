//! How the frame codec is laid over a TLS stream: buffer sizes and the
//! pairing of messages for hashing, shared by the client and the server.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls::ConnectionCommon;
use tokio_util::codec::Framed;
use zeroize::Zeroize;

use crate::codec::{AuthMode, PAIR_MIN_LEN, Role, SESSION_EXPORTER_LABEL, SESSION_EXPORTER_LEN};
use crate::{HmacFrameCodec, LinkError};

/// Bytes of encoded frames the write buffer collects before `poll_ready`
/// flushes it. tokio-util's default of 8 KiB makes small TLS records and one
/// write per 8 KiB; at 128 KiB, batched sends (`feed` + `flush`,
/// `send_all`) fill 16 KiB TLS records (`batched_frames_fill_whole_tls_records`
/// in tests/link.rs). Together with the once-keyed HMAC this is most of
/// the lead over a default-`Framed` codec at 64 B-1 KiB in BENCHMARKS.md.
pub(crate) const WRITE_BACKPRESSURE_BOUNDARY: usize = 128 * 1024;

/// Capacity of the read buffer of a connection that is waiting for a
/// message: what a new connection starts with, and what a larger buffer
/// is swapped for when the link is read dry (every byte received has been
/// decoded and the transport has nothing more). It grows as frames need
/// (see the codec's decoder contract). An idle connection's heap is
/// mostly this, rustls' session state and the codec (tests/idle_memory.rs
/// holds the server's share to 24 KiB); bulk transfers of large frames
/// still read into buffers of at least 32 KiB, and small frames read
/// 8 KiB at a time (BENCHMARKS.md, "Memory per connection").
pub(crate) const IDLE_READ_BUFFER: usize = 8 * 1024;

/// The largest write buffer kept once a flush has emptied it. A new
/// connection's write buffer is empty (no allocation) and grows with what
/// is encoded; a larger one, left by a large message or a long batch, is
/// released by the flush that empties it, so an idle connection does not
/// hold the memory of its largest burst.
pub(crate) const IDLE_WRITE_BUFFER: usize = 8 * 1024;

/// The largest message the sink holds back to pair with the next. Above
/// it the hold costs more than the interleaving gains: a pair of 1 MiB
/// messages is 2 MiB hashed before the first byte leaves, while the
/// receiver waits (over a 1 MiB duplex, ours/P2b went from 0.76-0.92 to
/// 0.96-1.03 at 1 MiB; BENCHMARKS.md).
const PAIR_MAX_HOLD: usize = 256 * 1024;

/// `io` framed with `codec`, buffered as described above.
pub(crate) fn framed<T: AsyncRead + AsyncWrite>(io: T, codec: HmacFrameCodec) -> FramedLink<T> {
    // `with_capacity` sizes both buffers; the write buffer starts empty.
    let mut framed = Framed::with_capacity(io, codec, IDLE_READ_BUFFER);
    *framed.write_buffer_mut() = BytesMut::new();
    framed.set_backpressure_boundary(WRITE_BACKPRESSURE_BOUNDARY);
    FramedLink { framed, held: None }
}

/// [`Framed`] with [`HmacFrameCodec`], except that a message of at least
/// `PAIR_MIN_LEN` bytes and at most `PAIR_MAX_HOLD` given to the sink is
/// held back until the next one arrives (or a flush or close), and the two
/// are encoded together with their tags hashed interleaved (see
/// `codec::PAIR_MIN_LEN`). The bytes on the wire are the same as frame by
/// frame; batched sends of messages from 1 KiB up get faster.
pub(crate) struct FramedLink<T> {
    framed: Framed<T, HmacFrameCodec>,
    /// A message accepted by `start_send` and not yet encoded.
    held: Option<Bytes>,
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

    /// Encodes the held message, if any, on its own.
    fn release(&mut self) -> Result<(), LinkError>
    where
        T: AsyncWrite + Unpin,
    {
        match self.held.take() {
            Some(item) => Pin::new(&mut self.framed).start_send(item),
            None => Ok(()),
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Sink<Bytes> for FramedLink<T> {
    type Error = LinkError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        Pin::new(&mut self.framed).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Bytes) -> Result<(), LinkError> {
        let this = self.get_mut();
        // Refuse an oversized message now, in the call that gave it.
        this.framed.codec().check_len(item.len())?;
        match this.held.take() {
            Some(first) => {
                // The codec and the write buffer both live in `framed`:
                // take the buffer out for the moment (no copy, no
                // allocation).
                let mut buffer = std::mem::take(this.framed.write_buffer_mut());
                let encoded = this
                    .framed
                    .codec_mut()
                    .encode_pair(&first, &item, &mut buffer);
                *this.framed.write_buffer_mut() = buffer;
                encoded
            }
            None if (PAIR_MIN_LEN..=PAIR_MAX_HOLD).contains(&item.len()) => {
                this.held = Some(item);
                Ok(())
            }
            None => Pin::new(&mut this.framed).start_send(item),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        self.release()?;
        let flushed = Pin::new(&mut self.framed).poll_flush(cx);
        if flushed.is_ready() {
            release_if_grown(self.framed.write_buffer_mut(), IDLE_WRITE_BUFFER, 0);
        }
        flushed
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        self.release()?;
        Pin::new(&mut self.framed).poll_close(cx)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Stream for FramedLink<T> {
    type Item = Result<Bytes, LinkError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = Pin::new(&mut self.framed).poll_next(cx);
        if next.is_pending() {
            // Read dry: nothing of a next frame has arrived. A buffer that
            // grew for large frames goes (messages handed out keep their
            // bytes: they own a share of the allocation).
            release_if_grown(
                self.framed.read_buffer_mut(),
                IDLE_READ_BUFFER,
                IDLE_READ_BUFFER,
            );
        }
        next
    }
}

/// Swaps an empty `buffer` whose allocation is larger than `idle` for a
/// fresh one of `fresh` bytes. An empty buffer's `capacity()` counts from
/// where its last byte was consumed, so it is reclaimed first (no copy:
/// nothing is in it) to see the whole allocation; when a message handed
/// out still shares the allocation it cannot be, and what is left of it
/// counts.
fn release_if_grown(buffer: &mut BytesMut, idle: usize, fresh: usize) {
    if !buffer.is_empty() {
        return;
    }
    let _whole = buffer.try_reclaim(buffer.capacity() + 1);
    if buffer.capacity() > idle {
        *buffer = BytesMut::with_capacity(fresh);
    }
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
