//! How the frame codec is laid over a TLS stream: buffer sizes and the
//! pairing of messages for hashing, shared by the client and the server.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
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

/// Initial capacity of the read buffer; it grows as frames need.
pub(crate) const READ_BUFFER_CAPACITY: usize = crate::codec::MIN_READ_BUFFER;

/// `io` framed with `codec`, buffered as described above.
pub(crate) fn framed<T: AsyncRead + AsyncWrite>(io: T, codec: HmacFrameCodec) -> FramedLink<T> {
    let mut framed = Framed::with_capacity(io, codec, READ_BUFFER_CAPACITY);
    framed.set_backpressure_boundary(WRITE_BACKPRESSURE_BOUNDARY);
    FramedLink { framed, held: None }
}

/// [`Framed`] with [`HmacFrameCodec`], except that a message of at least
/// `PAIR_MIN_LEN` bytes given to the sink is held back until the next one
/// arrives (or a flush or close), and the two are encoded together with
/// their tags hashed interleaved (see `codec::PAIR_MIN_LEN`). The bytes
/// on the wire are the same as frame by frame; batched sends of messages
/// from 1 KiB up get faster.
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
            None if item.len() >= PAIR_MIN_LEN => {
                this.held = Some(item);
                Ok(())
            }
            None => Pin::new(&mut this.framed).start_send(item),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        self.release()?;
        Pin::new(&mut self.framed).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        self.release()?;
        Pin::new(&mut self.framed).poll_close(cx)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Stream for FramedLink<T> {
    type Item = Result<Bytes, LinkError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.framed).poll_next(cx)
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
