//! [`Outbox`]: where a resilient end keeps what the peer has not
//! acknowledged, and [`MemoryOutbox`], the bounded in-memory one.

use std::collections::VecDeque;
use std::fmt;
use std::io;

use bytes::Bytes;

/// The default bound on the messages a [`MemoryOutbox`] holds.
pub const DEFAULT_OUTBOX_MESSAGES: usize = 4096;

/// The default bound on the payload bytes a [`MemoryOutbox`] holds: 16 MiB.
pub const DEFAULT_OUTBOX_BYTES: usize = 16 * 1024 * 1024;

/// What a session keeps beside its messages so that it can outlive the
/// process: its id and how far it has received
/// ([`Outbox::session`], [`Outbox::save_session`]).
///
/// Keep it as carefully as the HMAC key: a session is bound to the key
/// (and the client certificate, with mutual TLS), so the id lets nobody
/// without them in, but clients that share a key are one principal to the
/// server, and among them the id is what tells sessions apart.
#[derive(Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionRecord {
    /// The session's id: 128 random bits the client chose when it started
    /// the session. It names the session to the server.
    pub id: [u8; 16],
    /// The number of the next message this end expects from the peer:
    /// it has every message numbered below, and acknowledged them.
    pub received: u64,
}

impl SessionRecord {
    /// The record of session `id`, received up to (not including)
    /// message `received`: what an outbox read back from its storage
    /// returns from [`Outbox::session`].
    pub fn new(id: [u8; 16], received: u64) -> Self {
        SessionRecord { id, received }
    }
}

impl fmt::Debug for SessionRecord {
    // A prefix of the id names it in logs, as the link's own Debug does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRecord")
            .field("id", &hex::encode(&self.id[..4]))
            .field("received", &self.received)
            .finish()
    }
}

/// Storage for the messages sent but not yet acknowledged by the peer, in
/// sequence order, and for what else the session needs to survive a
/// restart of its process.
///
/// The resilient session pushes every message here before sending it and
/// releases it when the peer acknowledges it; after a reconnect it reads
/// the unacknowledged ones back to send them again. The trait is small on
/// purpose. An implementation that survives a crash of the sender (on
/// disk) keeps, beside the messages:
/// * the sequence numbers, and the next one even when it holds no message
///   ([`next_seq`](Outbox::next_seq)), so that a restarted process goes on
///   numbering where the last one stopped;
/// * the [`SessionRecord`] ([`session`](Outbox::session),
///   [`save_session`](Outbox::save_session)): a client given an outbox that
///   holds one resumes that session instead of starting a new one, and
///   tells the server how far it had received, so that nothing it
///   acknowledged is sent again and nothing after it is lost.
///
/// [`MemoryOutbox`] keeps the messages and numbers in memory and no
/// record: its session dies with the link.
///
/// # Contract
///
/// * Sequence numbers arrive in increasing order without gaps, starting
///   at [`next_seq`](Outbox::next_seq).
/// * [`has_room`](Outbox::has_room) decides the bound: the session never
///   calls [`push`](Outbox::push) when it said no, so a full outbox holds
///   the producer back (the sink's `poll_ready` is pending) instead of
///   growing.
/// * [`save_session`](Outbox::save_session) is called when a client's
///   session starts, and before any frame whose acknowledgement differs
///   from the last record (in practice once per pass of the session's
///   driver in which messages arrived; after a server that lost the
///   session, the record goes back with the new numbering): what it keeps
///   is never behind what the peer was told.
/// * An error from `push` fails that `start_send` with
///   [`LinkError::Outbox`](crate::LinkError::Outbox) (nothing was queued;
///   the next message gets the same number); one from `release` or
///   `save_session` ends the session with it, and a client does not
///   retry.
/// * Every method is called with the session's state locked, on a Tokio
///   worker thread: it must be quick (an outbox on disk that syncs on
///   every call holds the link to the disk's pace, and blocks that
///   thread meanwhile).
/// * The record's `received` counts the messages in this end's stream,
///   taken by the application or not: a process that dies loses those it
///   had not taken, as it would without a record (see the module docs).
pub trait Outbox: Send {
    /// Whether a message of `len` bytes fits now.
    fn has_room(&self, len: usize) -> bool;
    /// Keeps `message` as sequence number `seq`.
    fn push(&mut self, seq: u64, message: Bytes) -> io::Result<()>;
    /// The message `seq`, if it is still held.
    fn get(&self, seq: u64) -> Option<Bytes>;
    /// Forgets every message numbered below `ack` (the peer has them).
    fn release(&mut self, ack: u64) -> io::Result<()>;
    /// The oldest sequence number held.
    fn first(&self) -> Option<u64>;
    /// How many messages are held.
    fn len(&self) -> usize;
    /// Whether nothing is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Everything held, oldest first, leaving the outbox empty: what a
    /// sender that gives up hands back to its application.
    fn drain(&mut self) -> Vec<Bytes>;
    /// The number the next message gets: one past the last ever pushed,
    /// also when nothing is held any more. The default, one past the
    /// newest held or 0, suits only an outbox that starts empty with each
    /// session.
    fn next_seq(&self) -> u64 {
        self.first().map_or(0, |first| first + self.len() as u64)
    }
    /// The session this outbox was kept for, to resume it; `None` (the
    /// default) starts a new session.
    fn session(&self) -> Option<SessionRecord> {
        None
    }
    /// Keeps `record` (see the contract above for when it is called). The
    /// default forgets it.
    fn save_session(&mut self, record: SessionRecord) -> io::Result<()> {
        let _ = record;
        Ok(())
    }
}

impl<O: Outbox + ?Sized> Outbox for Box<O> {
    fn has_room(&self, len: usize) -> bool {
        (**self).has_room(len)
    }
    fn push(&mut self, seq: u64, message: Bytes) -> io::Result<()> {
        (**self).push(seq, message)
    }
    fn get(&self, seq: u64) -> Option<Bytes> {
        (**self).get(seq)
    }
    fn release(&mut self, ack: u64) -> io::Result<()> {
        (**self).release(ack)
    }
    fn first(&self) -> Option<u64> {
        (**self).first()
    }
    fn len(&self) -> usize {
        (**self).len()
    }
    fn drain(&mut self) -> Vec<Bytes> {
        (**self).drain()
    }
    fn next_seq(&self) -> u64 {
        (**self).next_seq()
    }
    fn session(&self) -> Option<SessionRecord> {
        (**self).session()
    }
    fn save_session(&mut self, record: SessionRecord) -> io::Result<()> {
        (**self).save_session(record)
    }
}

/// An [`Outbox`] in memory, bounded in messages and in payload bytes.
///
/// One message always fits in an empty outbox, however large (up to the
/// frame limit), so that a bound below the frame limit cannot wedge a
/// sender.
pub struct MemoryOutbox {
    messages: VecDeque<(u64, Bytes)>,
    /// One past the last pushed.
    next: u64,
    bytes: usize,
    max_messages: usize,
    max_bytes: usize,
}

impl MemoryOutbox {
    /// An outbox of at most `max_messages` messages (at least 1) and
    /// `max_bytes` payload bytes.
    pub fn new(max_messages: usize, max_bytes: usize) -> Self {
        MemoryOutbox {
            messages: VecDeque::new(),
            next: 0,
            bytes: 0,
            max_messages: max_messages.max(1),
            max_bytes,
        }
    }

    /// The payload bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Default for MemoryOutbox {
    /// [`DEFAULT_OUTBOX_MESSAGES`] and [`DEFAULT_OUTBOX_BYTES`].
    fn default() -> Self {
        MemoryOutbox::new(DEFAULT_OUTBOX_MESSAGES, DEFAULT_OUTBOX_BYTES)
    }
}

impl Outbox for MemoryOutbox {
    fn has_room(&self, len: usize) -> bool {
        self.messages.is_empty()
            || (self.messages.len() < self.max_messages
                && self.bytes.saturating_add(len) <= self.max_bytes)
    }

    fn push(&mut self, seq: u64, message: Bytes) -> io::Result<()> {
        if let Some(&(last, _)) = self.messages.back()
            && seq != last.wrapping_add(1)
        {
            return Err(io::Error::other(format!(
                "outbox: message {seq} after {last}"
            )));
        }
        self.bytes += message.len();
        self.messages.push_back((seq, message));
        self.next = seq.wrapping_add(1);
        Ok(())
    }

    fn get(&self, seq: u64) -> Option<Bytes> {
        let &(first, _) = self.messages.front()?;
        let index = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.messages.get(index).map(|(_, message)| message.clone())
    }

    fn release(&mut self, ack: u64) -> io::Result<()> {
        while let Some((seq, message)) = self.messages.front() {
            if *seq >= ack {
                break;
            }
            self.bytes -= message.len();
            self.messages.pop_front();
        }
        if self.messages.is_empty() {
            // Give back what a partition made the queue grow to.
            self.messages = VecDeque::new();
        }
        Ok(())
    }

    fn first(&self) -> Option<u64> {
        self.messages.front().map(|&(seq, _)| seq)
    }

    fn len(&self) -> usize {
        self.messages.len()
    }

    fn drain(&mut self) -> Vec<Bytes> {
        self.bytes = 0;
        std::mem::take(&mut self.messages)
            .into_iter()
            .map(|(_, message)| message)
            .collect()
    }

    fn next_seq(&self) -> u64 {
        self.next
    }
}

impl fmt::Debug for MemoryOutbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryOutbox")
            .field("messages", &self.messages.len())
            .field("bytes", &self.bytes)
            .field("max_messages", &self.max_messages)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_bounds_hold_in_messages_and_in_bytes() {
        let mut outbox = MemoryOutbox::new(2, 10);
        assert!(outbox.has_room(100), "one message always fits");
        outbox.push(0, Bytes::from_static(b"123456")).unwrap();
        assert!(outbox.has_room(4));
        assert!(!outbox.has_room(5), "6 + 5 bytes > 10");
        outbox.push(1, Bytes::from_static(b"1234")).unwrap();
        assert!(!outbox.has_room(0), "2 messages");
        assert_eq!((outbox.len(), outbox.bytes()), (2, 10));
        outbox.release(1).unwrap();
        assert_eq!(
            (outbox.len(), outbox.bytes(), outbox.first()),
            (1, 4, Some(1))
        );
        assert!(outbox.has_room(6) && !outbox.has_room(7));
    }

    #[test]
    fn messages_are_found_by_sequence_number_and_handed_back_in_order() {
        let mut outbox = MemoryOutbox::default();
        for seq in 10..15u64 {
            outbox.push(seq, Bytes::from(seq.to_string())).unwrap();
        }
        assert!(outbox.push(16, Bytes::new()).is_err(), "a gap is refused");
        assert_eq!(outbox.get(9), None);
        assert_eq!(outbox.get(12).as_deref(), Some(&b"12"[..]));
        assert_eq!(outbox.get(15), None);
        outbox.release(12).unwrap();
        assert_eq!(outbox.get(11), None);
        assert_eq!(outbox.drain(), ["12", "13", "14"]);
        assert!(outbox.is_empty() && outbox.bytes() == 0);
    }
}
