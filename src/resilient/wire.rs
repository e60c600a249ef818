//! The resilient header: what the payload of every frame carries in the
//! resilient mode (drawn in the [module docs](super)).

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::LinkError;

/// The version of the resilient protocol this code speaks. A header with
/// another version is refused ([`LinkError::Protocol`]); a later version is
/// negotiated by a new ALPN id, never by this byte alone.
pub(crate) const VERSION: u8 = 1;

/// Bytes of the header in front of every resilient payload:
/// version, kind, flags, `seq: u64`, `ack: u64`.
pub(crate) const HEADER_LEN: usize = 1 + 1 + 1 + 8 + 8;

/// Bytes of a hello's body: session id, heartbeat interval, dead time.
pub(crate) const HELLO_LEN: usize = 16 + 4 + 4;

/// The longest reason an `End` may carry; longer reasons are cut.
pub(crate) const MAX_END_REASON: usize = 256;

/// Data flag: acknowledge this data at once (it is the last its sender
/// has for now).
const FLAG_ACK_NOW: u8 = 0x01;

/// Hello flag (the server's only): the server still had the session.
const FLAG_RESUMED: u8 = 0x02;

/// A session's random 128-bit id, chosen by the client when it starts
/// the session.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct SessionId(pub(crate) [u8; 16]);

impl SessionId {
    /// A fresh random id (the crypto provider's secure random source).
    pub(crate) fn random() -> Result<Self, LinkError> {
        let mut id = [0u8; 16];
        crate::tls::provider()
            .secure_random
            .fill(&mut id)
            .map_err(|_| LinkError::Config("no secure random source".into()))?;
        Ok(SessionId(id))
    }
}

impl std::fmt::Debug for SessionId {
    // Only a prefix: the id is a bearer of nothing (sessions are bound to
    // the peer's key), but a log needs no more than a name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionId({})", hex::encode(&self.0[..4]))
    }
}

/// What a hello declares beside the sequence numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hello {
    /// The session.
    pub(crate) session: SessionId,
    /// From the server: it still had the session (else it starts it anew).
    pub(crate) resumed: bool,
    /// How often the sender sends a heartbeat on a quiet link.
    pub(crate) heartbeat_interval: Duration,
    /// How long the sender waits for bytes before it declares the peer dead.
    pub(crate) dead_time: Duration,
}

/// One resilient message: the decoded header and its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Message {
    /// Application data, numbered `seq`.
    Data {
        seq: u64,
        ack: u64,
        ack_now: bool,
        body: Bytes,
    },
    /// A standalone acknowledgement.
    Ack { ack: u64 },
    /// "Are you there?", numbered so that the answer gives a round trip.
    Heartbeat { nonce: u64, ack: u64 },
    /// The answer to the heartbeat `nonce`.
    Answer { nonce: u64, ack: u64 },
    /// Opens or resumes a session. `first` is the oldest sequence number
    /// the sender still holds (its next one when it holds none); `ack` the
    /// next one it expects.
    Hello { first: u64, ack: u64, hello: Hello },
    /// The end of the session, with a reason in words.
    End { ack: u64, reason: String },
}

#[derive(Clone, Copy)]
#[repr(u8)]
enum Kind {
    Data = 0,
    Ack = 1,
    Heartbeat = 2,
    Answer = 3,
    Hello = 4,
    End = 5,
}

impl Message {
    /// The cumulative acknowledgement every kind carries.
    pub(crate) fn ack(&self) -> u64 {
        match self {
            Message::Data { ack, .. }
            | Message::Ack { ack }
            | Message::Heartbeat { ack, .. }
            | Message::Answer { ack, .. }
            | Message::Hello { ack, .. }
            | Message::End { ack, .. } => *ack,
        }
    }

    /// The payload of the frame that carries this message, joined (for
    /// frames sent through a link's `Sink<Bytes>`, and tests).
    pub(crate) fn encode(&self) -> Bytes {
        let (header, body) = self.clone().encode_parts();
        join(&header, &body)
    }

    /// The payload of the frame that carries this message, as its header
    /// and its body: the link writes and hashes the two in turn, so a data
    /// message's body goes from the outbox into the frame with no copy in
    /// between.
    pub(crate) fn encode_parts(self) -> ([u8; HEADER_LEN], Bytes) {
        let (kind, flags, seq) = match &self {
            Message::Data { seq, ack_now, .. } => {
                (Kind::Data, if *ack_now { FLAG_ACK_NOW } else { 0 }, *seq)
            }
            Message::Ack { .. } => (Kind::Ack, 0, 0),
            Message::Heartbeat { nonce, .. } => (Kind::Heartbeat, 0, *nonce),
            Message::Answer { nonce, .. } => (Kind::Answer, 0, *nonce),
            Message::Hello { first, hello, .. } => (
                Kind::Hello,
                if hello.resumed { FLAG_RESUMED } else { 0 },
                *first,
            ),
            Message::End { .. } => (Kind::End, 0, 0),
        };
        let header = header(kind, flags, seq, self.ack());
        let body = match self {
            Message::Data { body, .. } => body,
            Message::Hello { hello, .. } => {
                let mut out = BytesMut::with_capacity(HELLO_LEN);
                out.put_slice(&hello.session.0);
                out.put_u32(millis(hello.heartbeat_interval));
                out.put_u32(millis(hello.dead_time));
                out.freeze()
            }
            Message::End { reason, .. } => Bytes::copy_from_slice(end_reason(&reason).as_bytes()),
            Message::Ack { .. } | Message::Heartbeat { .. } | Message::Answer { .. } => {
                Bytes::new()
            }
        };
        (header, body)
    }

    /// A data message's fields and body (the payload past the header), if
    /// `payload` is a well-formed one: the hot path, which builds no
    /// `Message`. Anything else is given back whole, for
    /// [`decode`](Message::decode) to read or refuse.
    pub(crate) fn decode_data(mut payload: Bytes) -> Result<(Header, Bytes), Bytes> {
        match Header::read(&payload) {
            Some(header)
                if header.version == VERSION
                    && header.kind == Kind::Data as u8
                    && header.flags & !FLAG_ACK_NOW == 0 =>
            {
                payload.advance(HEADER_LEN);
                Ok((header, payload))
            }
            _ => Err(payload),
        }
    }

    /// Reads a frame's payload. Every malformed payload is
    /// [`LinkError::Protocol`]; a data body is a slice of `payload`, not a
    /// copy.
    pub(crate) fn decode(mut payload: Bytes) -> Result<Message, LinkError> {
        let Some(Header {
            version,
            kind,
            flags,
            seq,
            ack,
        }) = Header::read(&payload)
        else {
            return Err(protocol(format!(
                "a payload of {} bytes is shorter than the {HEADER_LEN}-byte header",
                payload.len()
            )));
        };
        if version != VERSION {
            return Err(protocol(format!(
                "version {version}, this end speaks {VERSION}"
            )));
        }
        payload.advance(HEADER_LEN);
        let empty = |message: Message, body: &Bytes| {
            if body.is_empty() {
                Ok(message)
            } else {
                Err(protocol(format!("a kind {kind} message with a body")))
            }
        };
        let allowed = match kind {
            k if k == Kind::Data as u8 => FLAG_ACK_NOW,
            k if k == Kind::Hello as u8 => FLAG_RESUMED,
            _ => 0,
        };
        if flags & !allowed != 0 {
            return Err(protocol(format!(
                "unknown flags {flags:#x} on a kind {kind} message"
            )));
        }
        match kind {
            k if k == Kind::Data as u8 => Ok(Message::Data {
                seq,
                ack,
                ack_now: flags & FLAG_ACK_NOW != 0,
                body: payload,
            }),
            k if k == Kind::Ack as u8 => empty(Message::Ack { ack }, &payload),
            k if k == Kind::Heartbeat as u8 => {
                empty(Message::Heartbeat { nonce: seq, ack }, &payload)
            }
            k if k == Kind::Answer as u8 => empty(Message::Answer { nonce: seq, ack }, &payload),
            k if k == Kind::Hello as u8 => {
                if payload.len() != HELLO_LEN {
                    return Err(protocol(format!(
                        "a hello of {} bytes, not {HELLO_LEN}",
                        payload.len()
                    )));
                }
                let mut session = [0u8; 16];
                payload.copy_to_slice(&mut session);
                let heartbeat_interval = Duration::from_millis(payload.get_u32().into());
                let dead_time = Duration::from_millis(payload.get_u32().into());
                Ok(Message::Hello {
                    first: seq,
                    ack,
                    hello: Hello {
                        session: SessionId(session),
                        resumed: flags & FLAG_RESUMED != 0,
                        heartbeat_interval,
                        dead_time,
                    },
                })
            }
            k if k == Kind::End as u8 => {
                if payload.len() > MAX_END_REASON {
                    return Err(protocol(format!(
                        "an end reason of {} bytes (at most {MAX_END_REASON})",
                        payload.len()
                    )));
                }
                let reason = String::from_utf8_lossy(&payload).into_owned();
                Ok(Message::End { ack, reason })
            }
            other => Err(protocol(format!("unknown message kind {other}"))),
        }
    }
}

/// The header's fields as they are on the wire, not checked yet: read by
/// [`Header::read`], the only place they are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) version: u8,
    pub(crate) kind: u8,
    pub(crate) flags: u8,
    pub(crate) seq: u64,
    pub(crate) ack: u64,
}

impl Header {
    /// The fields of the header `payload` starts with; `None` if it is
    /// shorter than one.
    fn read(payload: &[u8]) -> Option<Header> {
        let header: &[u8; HEADER_LEN] = payload.get(..HEADER_LEN)?.try_into().ok()?;
        let word = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&header[at..at + 8]);
            u64::from_be_bytes(bytes)
        };
        Some(Header {
            version: header[0],
            kind: header[1],
            flags: header[2],
            seq: word(3),
            ack: word(11),
        })
    }

    /// A data message's flag: acknowledge it at once.
    pub(crate) fn ack_now(&self) -> bool {
        self.flags & FLAG_ACK_NOW != 0
    }
}

/// The header's bytes, as drawn in the module docs: the only place they
/// are written.
fn header(kind: Kind, flags: u8, seq: u64, ack: u64) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[0] = VERSION;
    header[1] = kind as u8;
    header[2] = flags;
    header[3..11].copy_from_slice(&seq.to_be_bytes());
    header[11..].copy_from_slice(&ack.to_be_bytes());
    header
}

/// A frame's payload in one piece: `header` then `body`.
pub(crate) fn join(header: &[u8], body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(header.len() + body.len());
    out.put_slice(header);
    out.put_slice(body);
    out.freeze()
}

/// A reason cut to [`MAX_END_REASON`] bytes at a character boundary.
fn end_reason(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_END_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// Milliseconds for the wire, saturating (a configuration never gets near
/// 49 days).
fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

pub(crate) fn protocol(reason: impl Into<String>) -> LinkError {
    LinkError::Protocol(reason.into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A data message numbered 0 with no body, encoded.
    fn empty_data() -> Bytes {
        Message::Data {
            seq: 0,
            ack: 0,
            ack_now: false,
            body: Bytes::new(),
        }
        .encode()
    }

    fn hello() -> Hello {
        Hello {
            session: SessionId([7; 16]),
            resumed: true,
            heartbeat_interval: Duration::from_secs(5),
            dead_time: Duration::from_secs(15),
        }
    }

    #[test]
    fn every_kind_reads_back_as_written() {
        let messages = [
            Message::Data {
                seq: 1 << 40,
                ack: 3,
                ack_now: true,
                body: Bytes::from_static(b"payload"),
            },
            Message::Data {
                seq: 0,
                ack: 0,
                ack_now: false,
                body: Bytes::new(),
            },
            Message::Ack { ack: u64::MAX },
            Message::Heartbeat { nonce: 9, ack: 1 },
            Message::Answer { nonce: 9, ack: 2 },
            Message::Hello {
                first: 4,
                ack: 5,
                hello: hello(),
            },
            Message::End {
                ack: 6,
                reason: "closed by the application".into(),
            },
        ];
        for message in messages {
            assert_eq!(Message::decode(message.encode()).ok(), Some(message));
        }
    }

    #[test]
    fn the_data_fast_path_reads_what_decode_does() {
        for (seq, ack, ack_now, body) in [
            (1 << 40, 3, true, &b"payload"[..]),
            (0, 0, false, &b""[..]),
            (u64::MAX, u64::MAX - 1, false, &[0xff; 100][..]),
        ] {
            let message = Message::Data {
                seq,
                ack,
                ack_now,
                body: Bytes::copy_from_slice(body),
            };
            let bytes = message.encode();
            let (header, read) = Message::decode_data(bytes).unwrap();
            assert_eq!(
                (header.seq, header.ack, header.ack_now()),
                (seq, ack, ack_now)
            );
            assert_eq!(&read[..], body);
        }
        // Anything but a well-formed data message is given back whole,
        // for `decode` to read or refuse.
        let data = empty_data();
        for other in [
            Message::Ack { ack: 1 }.encode(),
            Message::Heartbeat { nonce: 1, ack: 1 }.encode(),
            Bytes::from([&[2u8][..], &data[1..]].concat()),
            Bytes::from([&data[..2], &[2u8][..], &data[3..]].concat()),
            data.slice(..HEADER_LEN - 1),
        ] {
            assert_eq!(Message::decode_data(other.clone()), Err(other));
        }
    }

    #[test]
    fn the_bytes_on_the_wire_are_the_drawn_layout() {
        let data = Message::Data {
            seq: 0x0102,
            ack: 0x0304,
            ack_now: true,
            body: Bytes::from_static(b"hi"),
        };
        assert_eq!(
            &data.encode()[..],
            b"\x01\x00\x01\0\0\0\0\0\0\x01\x02\0\0\0\0\0\0\x03\x04hi"
        );
        let hello = Message::Hello {
            first: 1,
            ack: 2,
            hello: hello(),
        };
        let bytes = hello.encode();
        assert_eq!(bytes.len(), HEADER_LEN + HELLO_LEN);
        assert_eq!(&bytes[..3], b"\x01\x04\x02");
        assert_eq!(&bytes[19..35], &[7; 16]);
        assert_eq!(&bytes[35..], b"\0\0\x13\x88\0\0\x3a\x98");
    }

    #[test]
    fn malformed_payloads_are_protocol_errors() {
        let good = Message::Ack { ack: 1 }.encode();
        let mut cases: Vec<(Vec<u8>, &str)> = vec![
            (good[..HEADER_LEN - 1].to_vec(), "shorter"),
            ([&[2u8][..], &good[1..]].concat(), "version 2"),
            (
                [&good[..1], &[9u8][..], &good[2..]].concat(),
                "unknown message kind 9",
            ),
            ([&good[..], b"x"].concat(), "with a body"),
            ([&good[..2], &[1u8][..], &good[3..]].concat(), "flags"),
        ];
        let data = empty_data();
        cases.push((
            [&data[..2], &[2u8][..], &data[3..]].concat(),
            "unknown flags",
        ));
        let hello = Message::Hello {
            first: 0,
            ack: 0,
            hello: hello(),
        }
        .encode();
        cases.push((hello[..hello.len() - 1].to_vec(), "a hello of 23 bytes"));
        let end = Message::End {
            ack: 0,
            reason: String::new(),
        }
        .encode();
        cases.push((
            [&end[..], &[b'x'; 257][..]].concat(),
            "an end reason of 257",
        ));
        for (bytes, expected) in cases {
            match Message::decode(Bytes::from(bytes)) {
                Err(LinkError::Protocol(reason)) => {
                    assert!(reason.contains(expected), "{reason:?} lacks {expected:?}")
                }
                other => panic!("{other:?} for {expected:?}"),
            }
        }
    }

    #[test]
    fn a_long_end_reason_is_cut_at_a_character_boundary() {
        let reason = "é".repeat(200);
        let message = Message::End { ack: 0, reason };
        match Message::decode(message.encode()) {
            Ok(Message::End { reason, .. }) => assert_eq!(reason, "é".repeat(128)),
            other => panic!("{other:?}"),
        }
    }
}
