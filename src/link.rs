//! How the frame codec is laid over a TLS stream: buffer sizes, shared by
//! the client and the server.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls::ConnectionCommon;
use tokio_util::codec::Framed;
use zeroize::Zeroize;

use crate::codec::{AuthMode, Role, SESSION_EXPORTER_LABEL, SESSION_EXPORTER_LEN};
use crate::{HmacFrameCodec, LinkError};

/// Bytes of encoded frames the write buffer collects before `poll_ready`
/// flushes it. tokio-util's default of 8 KiB makes small TLS records and one
/// write per 8 KiB; at 128 KiB, batched sends (`feed` + `flush`,
/// `send_all`) fill 16 KiB TLS records (`batched_frames_fill_whole_tls_records`
/// in tests/link.rs). Together with the once-keyed HMAC this is the 1.3-1.4x
/// over a default-`Framed` codec at 64 B-1 KiB in BENCHMARKS.md.
pub(crate) const WRITE_BACKPRESSURE_BOUNDARY: usize = 128 * 1024;

/// Initial capacity of the read buffer; it grows as frames need.
pub(crate) const READ_BUFFER_CAPACITY: usize = 32 * 1024;

/// `io` framed with `codec`, buffered as described above.
pub(crate) fn framed<T: AsyncRead + AsyncWrite>(
    io: T,
    codec: HmacFrameCodec,
) -> Framed<T, HmacFrameCodec> {
    let mut framed = Framed::with_capacity(io, codec, READ_BUFFER_CAPACITY);
    framed.set_backpressure_boundary(WRITE_BACKPRESSURE_BOUNDARY);
    framed
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
