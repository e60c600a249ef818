//! [`Session`]: the resilient protocol as a sans-I/O state machine.
//!
//! It reads no clock and owns no socket: the driver hands it `now`, each
//! frame's payload and the news that bytes arrived, and takes from it the
//! payloads to send ([`Session::poll_transmit`]), what happened
//! ([`Session::poll_event`]) and when to call again
//! ([`Session::poll_timeout`]). The property tests drive it directly
//! through thousands of cuts.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::config::{ACK_EVERY, MAX_HEARTBEAT_STRIKES, ResilientConfig};
use super::outbox::{Outbox, SessionRecord};
use super::wire::{HEADER_LEN, Hello, Message, SessionId, protocol};
use crate::LinkError;
use crate::codec::Head;

/// The most idle frames a stall forgives ([`Session::unstalled`]): what
/// the unread queue holds in messages.
const MAX_IDLE_CREDIT: u32 = super::link::MAX_UNREAD_MESSAGES as u32;

/// Which end of the session this is: the client dials and speaks first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Client,
    Server,
}

/// What the driver reports to its application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A connection carries the session (again).
    Established {
        session: SessionId,
        /// The peer still had the session: nothing it acknowledged was
        /// lost, nothing is sent twice.
        resumed: bool,
        /// The peer had lost the session (it restarted): the messages
        /// it never acknowledged are sent again; `Some(n)`: the `n` of
        /// them that went to the dead incarnation, which may have
        /// delivered some already.
        peer_restarted: Option<u64>,
    },
    /// A heartbeat's round trip.
    RoundTrip(Duration),
    /// The peer ended the session; `unacked` of this end's messages were
    /// never acknowledged.
    Ended { reason: String, unacked: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No connection.
    Disconnected,
    /// A connection, hellos not yet exchanged.
    Greeting,
    Established,
    Ended,
}

/// Counters for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stats {
    /// Data messages sent, resends included.
    pub(crate) data_sent: u64,
    /// Data messages sent again after a reconnect.
    pub(crate) resent: u64,
    /// Data messages that arrived twice and were dropped.
    pub(crate) duplicates: u64,
    /// Acknowledgements sent on their own (not carried by other frames).
    pub(crate) standalone_acks: u64,
    /// Heartbeats sent.
    pub(crate) heartbeats: u64,
    /// Messages delivered.
    pub(crate) delivered: u64,
    /// Hellos that resumed a session.
    pub(crate) resumes: u64,
}

/// One end of a resilient session.
pub(crate) struct Session<O> {
    role: Role,
    config: ResilientConfig,
    max_message_len: usize,
    outbox: O,
    state: State,
    session: SessionId,
    /// The session was established before (a server's hello resumes it;
    /// a client whose server starts it anew learns the server restarted).
    known: bool,
    /// The last hello resumed the session.
    resumed_now: bool,
    // Sending.
    next_seq: u64,
    /// Next to transmit on this connection.
    cursor: u64,
    /// Everything below it, the peer has.
    peer_ack: u64,
    /// Everything below it was transmitted at some time (resends count).
    transmitted: u64,
    // Receiving.
    expected: u64,
    /// The acknowledgement last transmitted.
    told: u64,
    /// The `received` of the outbox's last session record, if any. The
    /// record follows `expected` both ways: a peer that lost the session
    /// numbers its messages from 0 again.
    saved: Option<u64>,
    ack_due: Option<Instant>,
    // Liveness.
    peer: Option<Hello>,
    last_sent: Instant,
    last_heard: Instant,
    ping: Option<(u64, Instant)>,
    nonce: u64,
    /// The highest heartbeat nonce answered.
    answered: u64,
    answer: Option<u64>,
    last_idle: Option<Instant>,
    strikes: u32,
    /// Frames that carry nothing new forgiven after a stall.
    idle_credit: u32,
    stalled_since: Option<Instant>,
    hello_due: bool,
    end_due: Option<String>,
    events: VecDeque<Event>,
    /// The peer's messages, in order, each once, not yet taken
    /// ([`take_delivered`](Session::take_delivered)).
    delivered: VecDeque<Bytes>,
    /// The bytes in `delivered`.
    delivered_bytes: usize,
    stats: Stats,
}

impl<O: Outbox> Session<O> {
    /// A client's session named `id` (random, [`SessionId::random`]). An
    /// outbox whose [`session`](Outbox::session) record names `id` resumes
    /// it: the session is known (a server that lost it is a restarted
    /// peer), and receiving goes on from the record.
    ///
    /// [`SessionId::random`]: super::wire::SessionId::random
    pub(crate) fn client(
        id: SessionId,
        config: ResilientConfig,
        max_frame_len: usize,
        outbox: O,
        now: Instant,
    ) -> Self {
        Session::new(Role::Client, id, config, max_frame_len, outbox, now)
    }

    /// A server's new session, named `id` by the client's hello.
    pub(crate) fn server(
        id: SessionId,
        config: ResilientConfig,
        max_frame_len: usize,
        outbox: O,
        now: Instant,
    ) -> Self {
        Session::new(Role::Server, id, config, max_frame_len, outbox, now)
    }

    fn new(
        role: Role,
        session: SessionId,
        config: ResilientConfig,
        max_frame_len: usize,
        outbox: O,
        now: Instant,
    ) -> Self {
        let next_seq = outbox.next_seq();
        let first = outbox.first().unwrap_or(next_seq);
        let received = outbox
            .session()
            .filter(|record| role == Role::Client && record.id == session.0)
            .map(|record| record.received);
        Session {
            role,
            config,
            max_message_len: max_frame_len.saturating_sub(HEADER_LEN),
            outbox,
            state: State::Disconnected,
            session,
            known: received.is_some(),
            resumed_now: false,
            next_seq,
            cursor: first,
            peer_ack: first,
            // A resumed record's held messages may all have gone out from
            // the process before: a peer that lost them may have had them.
            transmitted: if received.is_some() { next_seq } else { first },
            expected: received.unwrap_or(0),
            told: received.unwrap_or(0),
            saved: received,
            ack_due: None,
            peer: None,
            last_sent: now,
            last_heard: now,
            ping: None,
            nonce: 0,
            answered: 0,
            answer: None,
            last_idle: None,
            strikes: 0,
            idle_credit: 0,
            stalled_since: None,
            hello_due: false,
            end_due: None,
            events: VecDeque::new(),
            delivered: VecDeque::new(),
            delivered_bytes: 0,
            stats: Stats::default(),
        }
    }

    // ---- The application's side ----------------------------------------

    /// Whether the outbox takes a message of `len` bytes now.
    pub(crate) fn has_room(&self, len: usize) -> bool {
        self.outbox.has_room(len)
    }

    /// Queues a message; it is transmitted by [`poll_transmit`] and kept
    /// until the peer acknowledges it. The caller checks
    /// [`has_room`](Session::has_room) first.
    ///
    /// [`poll_transmit`]: Session::poll_transmit
    pub(crate) fn send(&mut self, message: Bytes) -> Result<u64, LinkError> {
        if self.state == State::Ended || self.end_due.is_some() {
            return Err(LinkError::SinkClosed);
        }
        if message.len() > self.max_message_len {
            return Err(LinkError::FrameTooLarge {
                len: message.len() as u64,
                max: self.max_message_len as u64,
            });
        }
        let seq = self.next_seq;
        self.outbox.push(seq, message).map_err(LinkError::Outbox)?;
        self.next_seq += 1;
        Ok(seq)
    }

    /// Whether the peer acknowledged everything sent.
    pub(crate) fn all_acked(&self) -> bool {
        self.peer_ack == self.next_seq
    }

    /// Messages not yet acknowledged.
    pub(crate) fn unacked(&self) -> usize {
        self.outbox.len()
    }

    /// Ends the session: an `End` follows the data already queued.
    pub(crate) fn end(&mut self, reason: &str) -> bool {
        if self.state != State::Ended && self.end_due.is_none() {
            self.end_due = Some(reason.to_owned());
            return true;
        }
        false
    }

    /// Whether the session is over (an `End` went out or came in).
    pub(crate) fn is_ended(&self) -> bool {
        self.state == State::Ended
    }

    /// Whether a connection carries the session now.
    pub(crate) fn is_established(&self) -> bool {
        self.state == State::Established
    }

    /// What was not acknowledged, oldest first; the outbox is left empty.
    pub(crate) fn take_unacked(&mut self) -> Vec<Bytes> {
        self.peer_ack = self.next_seq;
        self.cursor = self.next_seq;
        self.outbox.drain()
    }

    pub(crate) fn session_id(&self) -> SessionId {
        self.session
    }

    pub(crate) fn stats(&self) -> Stats {
        self.stats
    }

    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The messages delivered and not taken yet, and their bytes.
    pub(crate) fn delivered(&self) -> (usize, usize) {
        (self.delivered.len(), self.delivered_bytes)
    }

    /// Moves the messages delivered since the last call to the end of
    /// `into`, in order; their bytes.
    pub(crate) fn take_delivered(&mut self, into: &mut VecDeque<Bytes>) -> usize {
        into.append(&mut self.delivered);
        std::mem::take(&mut self.delivered_bytes)
    }

    // ---- The connection's side ------------------------------------------

    /// A new connection carries the session: a client sends its hello, a
    /// server waits for the client's.
    pub(crate) fn connected(&mut self, now: Instant) {
        if self.state == State::Ended {
            return;
        }
        self.state = State::Greeting;
        self.hello_due = self.role == Role::Client;
        self.last_sent = now;
        self.last_heard = now;
        self.reset_connection_state();
    }

    /// The connection is gone; the session waits for the next one.
    pub(crate) fn disconnected(&mut self) {
        if self.state != State::Ended {
            self.state = State::Disconnected;
        }
        self.hello_due = false;
        self.reset_connection_state();
    }

    fn reset_connection_state(&mut self) {
        self.cursor = self.peer_ack;
        self.ack_due = None;
        self.ping = None;
        self.answer = None;
        self.last_idle = None;
        self.strikes = 0;
    }

    /// Bytes arrived (perhaps only part of a frame): the peer lives.
    pub(crate) fn heard(&mut self, now: Instant) {
        self.last_heard = self.last_heard.max(now);
    }

    /// One frame's payload. An error ends the connection: the driver
    /// drops it (and a client retries only errors that can heal).
    pub(crate) fn handle(&mut self, now: Instant, payload: Bytes) -> Result<(), LinkError> {
        self.heard(now);
        // The hot path: data on an established session, no `Message` built.
        let payload = if self.state == State::Established {
            match Message::decode_data(payload) {
                Ok((header, body)) => {
                    self.handle_ack(header.ack)?;
                    return self.handle_data(now, header.seq, header.ack_now(), body);
                }
                Err(payload) => payload,
            }
        } else {
            payload
        };
        let message = Message::decode(payload)?;
        if self.state == State::Disconnected {
            return Err(protocol("a message without a connection"));
        }
        if let Message::Hello { first, ack, hello } = message {
            return self.handle_hello(now, first, ack, hello);
        }
        if self.state == State::Ended {
            // After this end's End, acknowledgements may still come.
            return self.handle_ack(message.ack()).map(drop);
        }
        if self.state != State::Established {
            if let Message::End { reason, .. } = message {
                return Err(protocol(format!("the peer refused the session: {reason}")));
            }
            return Err(protocol("a message before the hello"));
        }
        let advanced = self.handle_ack(message.ack())?;
        match message {
            Message::Data {
                seq, ack_now, body, ..
            } => self.handle_data(now, seq, ack_now, body),
            Message::Ack { .. } => {
                if advanced {
                    Ok(())
                } else {
                    self.idle(now)
                }
            }
            Message::Heartbeat { nonce, .. } => {
                self.answer = Some(nonce);
                self.idle(now)
            }
            // An answer to a heartbeat this end sent (each once, in
            // order) is asked for, even one to an older heartbeat than
            // the last (they bunch up behind a slow reader): their number
            // is this end's own rate. Any other answer is idle.
            Message::Answer { nonce, .. } if nonce > self.answered && nonce <= self.nonce => {
                self.answered = nonce;
                if let Some((asked, sent)) = self.ping
                    && asked == nonce
                {
                    self.ping = None;
                    self.events
                        .push_back(Event::RoundTrip(now.saturating_duration_since(sent)));
                }
                Ok(())
            }
            Message::Answer { .. } => self.idle(now),
            Message::End { reason, .. } => {
                self.state = State::Ended;
                self.events.push_back(Event::Ended {
                    reason,
                    unacked: self.outbox.len(),
                });
                Ok(())
            }
            Message::Hello { .. } => Ok(()),
        }
    }

    fn handle_hello(
        &mut self,
        now: Instant,
        first: u64,
        ack: u64,
        hello: Hello,
    ) -> Result<(), LinkError> {
        if self.state != State::Greeting || self.hello_due {
            return Err(protocol("a hello out of turn"));
        }
        check_timings(&hello, &self.config)?;
        if hello.session != self.session {
            return Err(protocol("a hello for another session"));
        }
        let mut peer_restarted = None;
        let fresh = match self.role {
            // The driver chose this session by the hello's id: either it
            // knew it, or it is new.
            Role::Server => !self.known,
            Role::Client => {
                if !hello.resumed && self.known {
                    // Those the dead incarnation may have had.
                    peer_restarted = Some(self.transmitted.saturating_sub(self.peer_ack));
                }
                !hello.resumed
            }
        };
        if fresh {
            self.expected = first;
        } else if first > self.expected {
            return Err(protocol(format!(
                "the peer resumes at message {first}, but this end has only {}: messages would be lost",
                self.expected
            )));
        }
        // A new server session knows nothing of the ack a client brings
        // from an earlier one: it has sent nothing yet.
        let ack = if self.role == Role::Server && fresh {
            self.peer_ack
        } else {
            ack
        };
        if ack < self.peer_ack || ack > self.next_seq {
            return Err(protocol(format!(
                "the peer acknowledges up to {ack}, but this end holds {}..{}",
                self.peer_ack, self.next_seq
            )));
        }
        self.release(ack)?;
        self.cursor = ack;
        self.told = self.expected;
        self.peer = Some(hello);
        self.state = State::Established;
        self.hello_due = self.role == Role::Server;
        let resumed = self.known && !fresh;
        self.known = true;
        self.resumed_now = resumed;
        if resumed {
            self.stats.resumes += 1;
        }
        self.last_heard = now;
        self.events.push_back(Event::Established {
            session: self.session,
            resumed,
            peer_restarted,
        });
        Ok(())
    }

    /// The cumulative acknowledgement every message carries; whether it
    /// acknowledged something new.
    fn handle_ack(&mut self, ack: u64) -> Result<bool, LinkError> {
        if ack > self.next_seq {
            return Err(protocol(format!(
                "the peer acknowledges message {} of {}",
                ack, self.next_seq
            )));
        }
        if ack <= self.peer_ack {
            return Ok(false);
        }
        self.release(ack)?;
        self.cursor = self.cursor.max(ack);
        Ok(true)
    }

    fn release(&mut self, ack: u64) -> Result<(), LinkError> {
        if ack > self.peer_ack {
            self.outbox.release(ack).map_err(LinkError::Outbox)?;
            self.peer_ack = ack;
        }
        Ok(())
    }

    fn handle_data(
        &mut self,
        now: Instant,
        seq: u64,
        ack_now: bool,
        body: Bytes,
    ) -> Result<(), LinkError> {
        if seq >= self.expected {
            // New data forgives the idle frames before it.
            self.strikes = 0;
            self.last_idle = None;
        }
        if seq < self.expected {
            // Sent again though it arrived before: acknowledge, drop. After
            // the hellos a peer resends only what crossed a cut, so a
            // stream of them carries nothing new: it is held to the
            // heartbeats' rate, and acknowledged within the ack delay.
            self.stats.duplicates += 1;
            let due = now + self.config.ack_delay;
            self.ack_due = Some(self.ack_due.map_or(due, |at| at.min(due)));
            return self.idle(now);
        }
        if seq > self.expected {
            return Err(protocol(format!(
                "message {seq} when {} was next: messages are missing",
                self.expected
            )));
        }
        self.expected = seq
            .checked_add(1)
            .ok_or_else(|| protocol("message numbers ran out"))?;
        self.stats.delivered += 1;
        self.delivered_bytes += body.len();
        self.delivered.push_back(body);
        let due = if ack_now || self.expected - self.told >= ACK_EVERY {
            now
        } else {
            now + self.config.ack_delay
        };
        self.ack_due = Some(self.ack_due.map_or(due, |at| at.min(due)));
        Ok(())
    }

    /// A frame that carried nothing new: too many too close together end
    /// the connection.
    fn idle(&mut self, now: Instant) -> Result<(), LinkError> {
        if self.idle_credit > 0 {
            // Sent while this end did not read, and bunched up since: one
            // per minimum interval of the stall is the peer's due.
            self.idle_credit -= 1;
            self.last_idle = Some(now);
            return Ok(());
        }
        if let Some(last) = self.last_idle {
            if now.saturating_duration_since(last) < self.config.min_heartbeat_interval {
                self.strikes += 1;
                if self.strikes > MAX_HEARTBEAT_STRIKES {
                    return Err(LinkError::TooManyHeartbeats);
                }
            } else {
                self.strikes = 0;
            }
        }
        self.last_idle = Some(now);
        Ok(())
    }

    /// How often this end sends heartbeats: its own interval, or a third
    /// of the peer's dead time when that is sooner.
    fn heartbeat_interval(&self) -> Duration {
        let own = self.config.heartbeat_interval;
        self.peer.map_or(own, |peer| own.min(peer.dead_time / 3))
    }

    /// The next payload to send, joined (see
    /// [`poll_transmit_parts`](Session::poll_transmit_parts)).
    #[cfg(test)]
    pub(crate) fn poll_transmit(&mut self, now: Instant) -> Result<Option<Bytes>, LinkError> {
        Ok(self
            .poll_transmit_parts(now)?
            .map(|(head, body)| super::wire::join(head.as_slice(), &body)))
    }

    /// The next payload to send, if any, as the header and the body of
    /// the frame's payload (the link joins them in the frame, not before);
    /// `None` until something changes.
    ///
    /// An error is an outbox that lost a message it had to keep, or one
    /// that could not save the session record.
    pub(crate) fn poll_transmit_parts(
        &mut self,
        now: Instant,
    ) -> Result<Option<(Head, Bytes)>, LinkError> {
        if self.saved != Some(self.expected) {
            // Kept before the peer is told (a hello carries it too), and
            // before anything changes: a restarted process never
            // acknowledges less than this one did, and a failed save leaves
            // nothing half sent. In practice once per pass of the driver in
            // which messages arrived.
            self.outbox
                .save_session(SessionRecord::new(self.session.0, self.expected))
                .map_err(LinkError::Outbox)?;
            self.saved = Some(self.expected);
        }
        let Some(message) = self.next_message(now)? else {
            return Ok(None);
        };
        self.told = self.expected;
        self.ack_due = None;
        self.last_sent = now;
        let (header, body) = message.encode_parts();
        Ok(Some((Head::from_array(header), body)))
    }

    fn next_message(&mut self, now: Instant) -> Result<Option<Message>, LinkError> {
        let ack = self.expected;
        if self.hello_due {
            self.hello_due = false;
            let first = self.outbox.first().unwrap_or(self.next_seq);
            return Ok(Some(Message::Hello {
                first,
                ack,
                hello: Hello {
                    session: self.session,
                    // The client's hello is always answered; the server's
                    // says whether it had the session.
                    resumed: self.role == Role::Server && self.resumed_now,
                    heartbeat_interval: self.config.heartbeat_interval,
                    dead_time: self.config.dead_time,
                },
            }));
        }
        if self.state != State::Established {
            return Ok(None);
        }
        if let Some(nonce) = self.answer.take() {
            return Ok(Some(Message::Answer { nonce, ack }));
        }
        if self.cursor < self.next_seq {
            let seq = self.cursor;
            // The outbox holds everything from peer_ack on, and
            // cursor >= peer_ack; a lost entry is a broken outbox.
            let Some(body) = self.outbox.get(seq) else {
                return Err(LinkError::Outbox(std::io::Error::other(format!(
                    "the outbox lost message {seq}"
                ))));
            };
            self.cursor += 1;
            self.stats.data_sent += 1;
            if seq < self.transmitted {
                self.stats.resent += 1;
            } else {
                self.transmitted = seq + 1;
            }
            return Ok(Some(Message::Data {
                seq,
                ack,
                ack_now: self.cursor == self.next_seq,
                body,
            }));
        }
        if let Some(reason) = self.end_due.take() {
            self.state = State::Ended;
            return Ok(Some(Message::End { ack, reason }));
        }
        // Due after a delivery, or after a duplicate (then `told` may be
        // `expected` already: the peer resent it, so it did not hear).
        if self.ack_due.is_some_and(|at| at <= now) {
            self.stats.standalone_acks += 1;
            return Ok(Some(Message::Ack { ack }));
        }
        if now >= self.last_sent + self.heartbeat_interval() {
            self.nonce += 1;
            self.ping = Some((self.nonce, now));
            self.stats.heartbeats += 1;
            return Ok(Some(Message::Heartbeat {
                nonce: self.nonce,
                ack,
            }));
        }
        Ok(None)
    }

    /// The peer is dead when nothing arrived for the dead time: the
    /// driver drops the connection.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Result<(), LinkError> {
        if matches!(self.state, State::Greeting | State::Established)
            && now >= self.last_heard + self.config.dead_time
        {
            return Err(LinkError::PeerDead(self.config.dead_time));
        }
        Ok(())
    }

    /// The driver does not read (its application is behind): the peer's
    /// silence says nothing, so it counts as heard, and what the peer
    /// sends meanwhile bunches up.
    pub(crate) fn stalled(&mut self, now: Instant) {
        self.heard(now);
        self.stalled_since.get_or_insert(now);
    }

    /// The driver reads again after [`stalled`](Session::stalled): as many
    /// frames that carry nothing new as minimum intervals passed in the
    /// stall (plus one) are not held against the peer
    /// ([`LinkError::TooManyHeartbeats`]): the peer sent them at its due
    /// rate, this end's stall bunched them.
    pub(crate) fn unstalled(&mut self, now: Instant) {
        if let Some(since) = self.stalled_since.take() {
            let stall = now.saturating_duration_since(since).as_nanos();
            let per = self.config.min_heartbeat_interval.as_nanos().max(1);
            // Not a sum over stalls (an allowance that only grew would end
            // the limit): at most the longest stall's due, never more than
            // the unread queue's worth, and spent as it is used.
            let credit = u32::try_from(stall / per).unwrap_or(u32::MAX);
            self.idle_credit = self
                .idle_credit
                .max(credit.saturating_add(1))
                .min(MAX_IDLE_CREDIT);
        }
    }

    /// When the peer will be dead unless a byte comes: the one deadline
    /// that does not wait for [`poll_transmit`](Session::poll_transmit) (a
    /// driver whose connection takes nothing now waits for this one and
    /// for the connection; the others would wake it for nothing).
    pub(crate) fn dead_deadline(&self) -> Option<Instant> {
        match self.state {
            State::Disconnected | State::Ended => None,
            State::Greeting | State::Established => Some(self.last_heard + self.config.dead_time),
        }
    }

    /// When to call [`handle_timeout`](Session::handle_timeout) and
    /// [`poll_transmit`](Session::poll_transmit) next, if anything waits
    /// for time.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let dead = self.dead_deadline()?;
        if self.state != State::Established {
            return Some(dead);
        }
        let at = dead.min(self.last_sent + self.heartbeat_interval());
        Some(self.ack_due.map_or(at, |due| at.min(due)))
    }
}

/// Whether a peer's hello asks for timings this end allows: heartbeats
/// no closer than its minimum interval, a dead time of at least one
/// heartbeat.
pub(crate) fn check_timings(hello: &Hello, config: &ResilientConfig) -> Result<(), LinkError> {
    if hello.heartbeat_interval < config.min_heartbeat_interval {
        return Err(LinkError::TooManyHeartbeats);
    }
    if hello.dead_time < hello.heartbeat_interval {
        return Err(protocol("a dead time shorter than the heartbeat interval"));
    }
    Ok(())
}

impl<O> std::fmt::Debug for Session<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("session", &self.session)
            .field("next_seq", &self.next_seq)
            .field("peer_ack", &self.peer_ack)
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}
