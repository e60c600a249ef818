//! The session-bound format ([`AuthMode::SessionBound`]): keys derived
//! from the TLS exporter, a direction label and a per-direction counter
//! hashed before each payload. The counters advance here and nowhere
//! else.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::HmacFrameCodec;
use super::frame::TAG_LEN;
use super::keys::keyed_mac;

/// Which end of the link a session-bound codec serves: it signs frames in
/// its own direction and verifies frames in the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The end that opened the connection: sends `c2s`, receives `s2c`.
    Client,
    /// The end that accepted it: sends `s2c`, receives `c2s`.
    Server,
}

/// How frame tags are computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMode {
    /// The lab's format: `tag = HMAC-SHA256(key, payload)`. A (payload,
    /// tag) pair is valid on any connection that uses the key.
    #[default]
    Lab,
    /// Tags bound to the TLS session and to the message's position:
    /// `tag = HMAC-SHA256(K, dir || counter || payload)` with
    /// `K = HMAC-SHA256(key, exporter)`; see SECURITY.md for the protocol.
    /// Frames cannot be replayed, relayed into another connection,
    /// reordered or dropped without detection. Both ends must use it.
    SessionBound,
}

/// The TLS exporter label of [`AuthMode::SessionBound`] (RFC 8446 §7.5).
pub const SESSION_EXPORTER_LABEL: &[u8] = b"EXPORTER-secure-link-session-v1";

/// Bytes of keying material exported for [`AuthMode::SessionBound`].
pub const SESSION_EXPORTER_LEN: usize = 32;

/// Direction labels and per-direction message counters.
#[derive(Clone, Copy, Debug)]
pub(super) struct SessionBinding {
    send_dir: &'static [u8; 3],
    recv_dir: &'static [u8; 3],
    /// Index of the next frame sent / expected. At 10^9 frames a second a
    /// u64 lasts 584 years, so it is not checked for overflow.
    sent: u64,
    received: u64,
}

/// Which of a codec's two directions a tag is for.
#[derive(Clone, Copy)]
pub(super) enum Direction {
    Send,
    Receive,
}

impl SessionBinding {
    /// The label and the index of the next frame in `direction`.
    fn next(&self, direction: Direction) -> (&'static [u8; 3], u64) {
        match direction {
            Direction::Send => (self.send_dir, self.sent),
            Direction::Receive => (self.recv_dir, self.received),
        }
    }
}

impl HmacFrameCodec {
    /// Bytes a frame's MAC has hashed before its payload: the session-bound
    /// prefix (direction label and counter), or none.
    pub(super) fn mac_prefix_len(&self) -> usize {
        self.session
            .as_ref()
            .map_or(0, |session| session.next(Direction::Send).0.len() + 8)
    }

    /// A codec in the session-bound format ([`AuthMode::SessionBound`]) for
    /// one connection: keyed with `K = HMAC-SHA256(key, exporter)`, where
    /// `key` is this codec's key and `exporter` the connection's
    /// [`SESSION_EXPORTER_LEN`] bytes of TLS keying material exported with
    /// [`SESSION_EXPORTER_LABEL`] and no context. Counters start at 0; the
    /// maximum frame length is kept.
    ///
    /// [`SecureConnector`](crate::SecureConnector) and
    /// [`SecureAcceptor`](crate::SecureAcceptor) do this for you with
    /// `with_auth_mode(AuthMode::SessionBound)`.
    pub fn bound_to_session(&self, exporter: &[u8], role: Role) -> Self {
        let mut codec = HmacFrameCodec::new(&derive_session_key(&self.keyed, exporter)[..]);
        codec.candidates = self
            .candidates
            .iter()
            .map(|keyed| keyed_mac(&derive_session_key(keyed, exporter)[..]))
            .collect();
        let (send_dir, recv_dir) = match role {
            Role::Client => (b"c2s", b"s2c"),
            Role::Server => (b"s2c", b"c2s"),
        };
        codec.session = Some(SessionBinding {
            send_dir,
            recv_dir,
            sent: 0,
            received: 0,
        });
        codec.max_frame_len = self.max_frame_len;
        codec.first_frame_max_len = self.first_frame_max_len;
        codec.receive_max = self.receive_max;
        codec
    }

    /// The keyed state, ready for the next frame in `direction`: the
    /// session-bound prefix (direction label and counter) hashed. The
    /// caller must finish it with `finalize_reset` (or
    /// [`tag_matches`](super::verify::tag_matches)) before it returns,
    /// whatever happens: see the `keyed` field.
    #[inline]
    pub(super) fn start_mac(&mut self, direction: Direction) -> &mut Hmac<Sha256> {
        if let Some(session) = &self.session {
            let (dir, next) = session.next(direction);
            self.keyed.update(dir);
            self.keyed.update(&next.to_be_bytes());
        }
        &mut self.keyed
    }

    /// A clone of the keyed MAC for the frame `index_ahead` after the next
    /// in `direction`, with the session-bound prefix (direction label and
    /// counter) already hashed: for a state that outlives the call.
    #[inline]
    pub(super) fn mac_for(&self, direction: Direction, index_ahead: u64) -> Hmac<Sha256> {
        self.mac_with(&self.keyed, direction, index_ahead)
    }

    /// [`mac_for`](Self::mac_for) with another keyed state (a candidate
    /// key during a rotation).
    #[inline]
    pub(super) fn mac_with(
        &self,
        keyed: &Hmac<Sha256>,
        direction: Direction,
        index_ahead: u64,
    ) -> Hmac<Sha256> {
        let mut mac = keyed.clone();
        if let Some(session) = &self.session {
            let (dir, next) = session.next(direction);
            mac.update(dir);
            mac.update(&(next + index_ahead).to_be_bytes());
        }
        mac
    }

    /// Advances the session-bound send counter past `frames` frames.
    pub(super) fn count_sent(&mut self, frames: u64) {
        if let Some(session) = &mut self.session {
            session.sent += frames;
        }
    }

    /// Advances the session-bound receive counter past `frames` frames.
    pub(super) fn count_received(&mut self, frames: u64) {
        if let Some(session) = &mut self.session {
            session.received += frames;
        }
    }
}

/// `K = HMAC-SHA256(key, exporter)` for the session-bound format, from the
/// state keyed with `key`; wiped on drop.
fn derive_session_key(keyed: &Hmac<Sha256>, exporter: &[u8]) -> zeroize::Zeroizing<[u8; TAG_LEN]> {
    let mut derive = keyed.clone();
    derive.update(exporter);
    zeroize::Zeroizing::new(derive.finalize().into_bytes().into())
}
