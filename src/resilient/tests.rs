//! The session core driven directly: two ends, a connection that is cut
//! at random between any two frames, time that moves at random, and the
//! count of what each end delivered.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;

use super::config::ResilientConfig;
use super::outbox::{MemoryOutbox, Outbox, SessionRecord};
use super::session::{Event, Session};
use super::wire::{Hello, Message, SessionId};
use crate::LinkError;

const MAX_FRAME: usize = 1 << 20;

/// A deterministic source of choices (splitmix64), so that a failing long
/// run can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, per_thousand: u64) -> bool {
        self.below(1000) < per_thousand
    }
}

/// A message of 0 to 64 KiB, mostly small, named by its index.
fn message(rng: &mut Rng, index: u64) -> Bytes {
    let len = match rng.below(10) {
        0 => rng.below(65_537) as usize,
        1 => 0,
        _ => rng.below(200) as usize,
    };
    let mut body = index.to_be_bytes().repeat(len / 8 + 1);
    body.truncate(len);
    Bytes::from(body)
}

/// What `session` delivered since it was last asked, added to `got`.
fn take_delivered(session: &mut Session<MemoryOutbox>, got: &mut Vec<Bytes>) {
    let mut delivered = VecDeque::new();
    let bytes = session.take_delivered(&mut delivered);
    assert_eq!(bytes, delivered.iter().map(Bytes::len).sum::<usize>());
    got.extend(delivered);
}

/// Two ends, a connection between them (one queue of payloads each way),
/// and what each application sent and got.
struct World {
    now: Instant,
    client: Session<MemoryOutbox>,
    server: Option<Session<MemoryOutbox>>,
    /// Payloads in flight: client to server, server to client.
    up: VecDeque<Bytes>,
    down: VecDeque<Bytes>,
    connected: bool,
    /// The server end has seen this connection's hello.
    server_attached: bool,
    client_sent: Vec<Bytes>,
    server_sent: Vec<Bytes>,
    client_got: Vec<Bytes>,
    server_got: Vec<Bytes>,
    events: Vec<Event>,
    cuts: u64,
    server_restarts: u64,
    peer_restarted_seen: u64,
}

impl World {
    fn new(config: ResilientConfig, outbox: (usize, usize)) -> Self {
        let now = Instant::now();
        World {
            now,
            client: Session::client(
                SessionId([0xC1; 16]),
                config,
                MAX_FRAME,
                MemoryOutbox::new(outbox.0, outbox.1),
                now,
            ),
            server: None,
            up: VecDeque::new(),
            down: VecDeque::new(),
            connected: false,
            server_attached: false,
            client_sent: Vec::new(),
            server_sent: Vec::new(),
            client_got: Vec::new(),
            server_got: Vec::new(),
            events: Vec::new(),
            cuts: 0,
            server_restarts: 0,
            peer_restarted_seen: 0,
        }
    }

    fn connect(&mut self) {
        assert!(!self.connected);
        self.connected = true;
        self.server_attached = false;
        self.client.connected(self.now);
    }

    fn cut(&mut self) {
        if !self.connected {
            return;
        }
        self.cuts += 1;
        self.connected = false;
        self.up.clear();
        self.down.clear();
        self.client.disconnected();
        if let Some(server) = &mut self.server {
            server.disconnected();
        }
    }

    /// The receiving process restarts: its session is gone.
    fn restart_server(&mut self) {
        self.cut();
        self.server = None;
        self.server_restarts += 1;
    }

    fn client_transmit(&mut self) -> Result<bool, LinkError> {
        match self.client.poll_transmit(self.now)? {
            Some(payload) if self.connected => {
                self.up.push_back(payload);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn server_transmit(&mut self) -> Result<bool, LinkError> {
        if !self.server_attached {
            return Ok(false);
        }
        let Some(server) = &mut self.server else {
            return Ok(false);
        };
        match server.poll_transmit(self.now)? {
            Some(payload) => {
                self.down.push_back(payload);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The server's driver: the first payload of a connection is the
    /// client's hello, which picks the session (or makes one).
    fn deliver_up(&mut self) -> Result<bool, LinkError> {
        let Some(payload) = self.up.pop_front() else {
            return Ok(false);
        };
        if !self.server_attached {
            let Message::Hello { hello, .. } = Message::decode(payload.clone())? else {
                panic!("the first payload of a connection is a hello");
            };
            let known = self
                .server
                .as_ref()
                .is_some_and(|s| s.session_id() == hello.session);
            if !known {
                self.server = Some(Session::server(
                    hello.session,
                    ResilientConfig::new(),
                    MAX_FRAME,
                    MemoryOutbox::default(),
                    self.now,
                ));
            }
            if let Some(server) = &mut self.server {
                server.connected(self.now);
            }
            self.server_attached = true;
        }
        if let Some(server) = &mut self.server {
            server.handle(self.now, payload)?;
            take_delivered(server, &mut self.server_got);
            while let Some(event) = server.poll_event() {
                self.events.push(event);
            }
        }
        Ok(true)
    }

    fn deliver_down(&mut self) -> Result<bool, LinkError> {
        let Some(payload) = self.down.pop_front() else {
            return Ok(false);
        };
        self.client.handle(self.now, payload)?;
        take_delivered(&mut self.client, &mut self.client_got);
        while let Some(event) = self.client.poll_event() {
            match event {
                Event::Established {
                    peer_restarted: Some(_),
                    ..
                } => {
                    self.peer_restarted_seen += 1;
                    self.events.push(event);
                }
                other => self.events.push(other),
            }
        }
        Ok(true)
    }

    fn client_send(&mut self, rng: &mut Rng) -> bool {
        let body = message(rng, self.client_sent.len() as u64);
        if !self.client.has_room(body.len()) {
            return false;
        }
        self.send(body);
        true
    }

    /// The client's application sends `body` (and the world expects it
    /// at the server).
    fn send(&mut self, body: Bytes) {
        self.client.send(body.clone()).expect("send");
        self.client_sent.push(body);
    }

    fn server_send(&mut self, rng: &mut Rng) -> bool {
        let Some(server) = &mut self.server else {
            return false;
        };
        let body = message(rng, self.server_sent.len() as u64);
        if !server.has_room(body.len()) {
            return false;
        }
        server.send(body.clone()).expect("send");
        self.server_sent.push(body);
        true
    }

    /// Time passes; a dead peer ends the connection.
    fn advance(&mut self, by: Duration) -> Result<(), LinkError> {
        self.now += by;
        let mut dead = false;
        for result in [
            self.client.handle_timeout(self.now),
            self.server
                .as_mut()
                .map_or(Ok(()), |s| s.handle_timeout(self.now)),
        ] {
            match result {
                Ok(()) => {}
                Err(LinkError::PeerDead(_)) => dead = true,
                Err(other) => return Err(other),
            }
        }
        if dead {
            self.cut();
        }
        Ok(())
    }

    /// Move everything until nothing moves (no cuts): what a healed
    /// network does.
    fn settle(&mut self) -> Result<(), LinkError> {
        if !self.connected {
            self.connect();
        }
        for _ in 0..1_000_000 {
            let moved = self.client_transmit()?
                | self.server_transmit()?
                | self.deliver_up()?
                | self.deliver_down()?;
            if !moved {
                if self.client.all_acked() && self.server.as_ref().is_none_or(|s| s.all_acked()) {
                    return Ok(());
                }
                // Waiting for a delayed acknowledgement.
                self.advance(Duration::from_millis(5))?;
            }
        }
        panic!("the session did not settle");
    }

    /// Each end got what the other sent, once each, in order.
    fn assert_exactly_once(&self) {
        assert_eq!(self.server_got.len(), self.client_sent.len(), "server got");
        assert!(
            self.server_got == self.client_sent,
            "client to server order"
        );
        assert_eq!(self.client_got.len(), self.server_sent.len(), "client got");
        assert!(
            self.client_got == self.server_sent,
            "server to client order"
        );
    }
}

/// One random step of the world; `cut_per_thousand` steps cut the
/// connection.
fn step(world: &mut World, rng: &mut Rng, cut_per_thousand: u64) -> Result<(), LinkError> {
    match rng.below(100) {
        0..=19 => {
            world.client_send(rng);
        }
        20..=29 => {
            world.server_send(rng);
        }
        30..=49 => {
            world.client_transmit()?;
        }
        50..=59 => {
            world.server_transmit()?;
        }
        60..=74 => {
            world.deliver_up()?;
        }
        75..=89 => {
            world.deliver_down()?;
        }
        _ => world.advance(Duration::from_millis(rng.below(40)))?,
    }
    if rng.chance(cut_per_thousand) {
        world.cut();
    }
    if !world.connected && rng.chance(300) {
        world.connect();
    }
    Ok(())
}

fn run(seed: u64, steps: usize, cut_per_thousand: u64) -> World {
    let mut rng = Rng(seed);
    let mut world = World::new(ResilientConfig::new(), (64, 1 << 20));
    world.connect();
    for _ in 0..steps {
        if let Err(err) = step(&mut world, &mut rng, cut_per_thousand) {
            panic!("seed {seed}: {err}");
        }
    }
    if let Err(err) = world.settle() {
        panic!("seed {seed}: {err}");
    }
    world
}

#[test]
fn thousands_of_messages_through_thousands_of_cuts_arrive_once_in_order() {
    let world = run(0x5EED, 200_000, 10);
    world.assert_exactly_once();
    assert!(
        world.client_sent.len() > 5_000,
        "{}",
        world.client_sent.len()
    );
    assert!(
        world.server_sent.len() > 2_000,
        "{}",
        world.server_sent.len()
    );
    assert!(world.cuts > 1_000, "{} cuts", world.cuts);
    let stats = world.client.stats();
    assert!(stats.resent > 0 && stats.resumes > 100, "{stats:?}");
    assert_eq!(stats.duplicates, 0, "resends start at the peer's ack");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_cut_pattern_loses_and_duplicates_nothing(
        seed in any::<u64>(),
        cut_per_thousand in 0u64..200,
    ) {
        let world = run(seed, 4_000, cut_per_thousand);
        world.assert_exactly_once();
    }
}

#[test]
fn a_restarted_receiver_loses_nothing_acknowledged_and_the_sender_is_told() {
    let mut rng = Rng(7);
    let mut world = World::new(ResilientConfig::new(), (64, 1 << 20));
    world.connect();
    let mut delivered_by_dead = Vec::new();
    let mut acked_before_restart = 0;
    for round in 0..20 {
        for _ in 0..2_000 {
            step(&mut world, &mut rng, 5).expect("step");
        }
        if round % 4 == 3 {
            // What the client saw acknowledged must survive the restart.
            acked_before_restart = world.client_sent.len() - world.client.unacked();
            delivered_by_dead.append(&mut world.server_got);
            world.restart_server();
            world.server_sent.clear();
            world.client_got.clear();
        }
    }
    world.settle().expect("settle");
    assert_eq!(world.server_restarts, 5);
    assert_eq!(world.peer_restarted_seen, 5, "{:?}", world.events);
    // Every message arrived at least once over the incarnations, in order
    // within each; the last incarnation's first delivery is the first the
    // client had not seen acknowledged, or earlier (a resend).
    let covered = |delivered: &[Bytes]| {
        let mut next = 0;
        for body in delivered {
            if next < world.client_sent.len() && *body == world.client_sent[next] {
                next += 1;
            }
        }
        next
    };
    assert!(acked_before_restart > 1_000, "{acked_before_restart}");
    assert!(
        covered(&delivered_by_dead) >= acked_before_restart,
        "what was acknowledged before the last restart was delivered before it"
    );
    let mut all = delivered_by_dead.clone();
    all.extend(world.server_got.iter().cloned());
    assert_eq!(
        covered(&all),
        world.client_sent.len(),
        "every message arrived"
    );
    let tail = &world.client_sent[world.client_sent.len() - world.server_got.len()..];
    assert!(
        world.server_got == tail,
        "the last incarnation got a suffix, in order"
    );
}

fn pair(config: ResilientConfig) -> World {
    let mut world = World::new(config, (64, 1 << 20));
    world.connect();
    world.settle().expect("hello");
    world
}

#[test]
fn a_duplicate_is_acknowledged_and_dropped() {
    let mut world = pair(ResilientConfig::new());
    world.send(Bytes::from_static(b"once"));
    world.client_transmit().expect("transmit");
    let copy = world.up[0].clone();
    world.deliver_up().expect("deliver");
    world.up.push_back(copy);
    world.deliver_up().expect("the copy");
    let server = world.server.as_ref().expect("server");
    assert_eq!(server.stats().duplicates, 1);
    assert_eq!(world.server_got, ["once"]);
    world.settle().expect("settle");
    world.assert_exactly_once();
}

#[test]
fn a_gap_or_an_ack_of_the_unsent_is_a_protocol_error() {
    let mut world = pair(ResilientConfig::new());
    let gap = Message::Data {
        seq: 1,
        ack: 0,
        ack_now: false,
        body: Bytes::new(),
    };
    let server = world.server.as_mut().expect("server");
    let now = world.now;
    assert!(
        matches!(server.handle(now, gap.encode()), Err(LinkError::Protocol(r)) if r.contains("missing"))
    );
    let ack = Message::Ack { ack: 5 };
    assert!(
        matches!(world.client.handle(now, ack.encode()), Err(LinkError::Protocol(r)) if r.contains("acknowledges"))
    );
}

#[test]
fn a_lone_message_is_acknowledged_at_once_and_a_stream_every_sixteen() {
    let mut world = pair(ResilientConfig::new());
    world.send(Bytes::from_static(b"lone"));
    world.client_transmit().expect("transmit");
    world.deliver_up().expect("deliver");
    // No time passes: the ack goes out because the data asked for it.
    world.server_transmit().expect("ack");
    world.deliver_down().expect("ack");
    assert!(world.client.all_acked());

    // 1,600 messages queued before the first is sent: only the last asks.
    for i in 0..1600u64 {
        world.send(Bytes::from(i.to_be_bytes().to_vec()));
    }
    let before = world
        .server
        .as_ref()
        .expect("server")
        .stats()
        .standalone_acks;
    while world.client_transmit().expect("transmit") {
        world.deliver_up().expect("deliver");
        world.server_transmit().expect("ack");
        world.deliver_down().expect("ack");
    }
    let acks = world
        .server
        .as_ref()
        .expect("server")
        .stats()
        .standalone_acks
        - before;
    assert_eq!(acks, 100, "one per 16 of 1,600");
    assert!(world.client.all_acked());
    world.assert_exactly_once();
}

#[test]
fn an_unflagged_message_is_acknowledged_after_the_ack_delay() {
    let mut world = pair(ResilientConfig::new());
    for i in 0..2u64 {
        world.client.send(Bytes::from(vec![i as u8])).expect("send");
    }
    world.client_transmit().expect("first, not flagged");
    world.deliver_up().expect("deliver");
    let server = world.server.as_mut().expect("server");
    let now = world.now;
    assert_eq!(server.poll_transmit(now).expect("poll"), None);
    assert_eq!(server.poll_timeout(), Some(now + super::DEFAULT_ACK_DELAY));
    let later = now + super::DEFAULT_ACK_DELAY;
    let ack = server.poll_transmit(later).expect("poll").expect("the ack");
    assert_eq!(
        Message::decode(ack).expect("decode"),
        Message::Ack { ack: 1 }
    );
}

#[test]
fn a_quiet_link_sends_heartbeats_measures_the_round_trip_and_stays_up() {
    let mut world = pair(ResilientConfig::new());
    for _ in 0..(3600 / 5) {
        world.advance(Duration::from_secs(5)).expect("alive");
        world.client_transmit().expect("heartbeat");
        world.server_transmit().expect("heartbeat");
        world.deliver_up().expect("to server");
        world.deliver_down().expect("to client");
        world.advance(Duration::from_millis(30)).expect("alive");
        world.server_transmit().expect("answer");
        world.client_transmit().expect("answer");
        world.deliver_up().expect("to server");
        world.deliver_down().expect("to client");
    }
    assert!(world.connected, "an hour of heartbeats kept the link");
    assert!(world.client.stats().heartbeats >= 700);
    let rtts = world
        .events
        .iter()
        .filter(|e| matches!(e, Event::RoundTrip(rtt) if *rtt == Duration::from_millis(30)))
        .count();
    assert_eq!(rtts, 2 * 720, "every heartbeat of both ends answered");
}

#[test]
fn a_silent_peer_is_dead_at_the_dead_time_on_both_ends() {
    let mut world = pair(ResilientConfig::new());
    let start = world.now;
    // Heartbeats go out but nothing arrives (a black hole).
    let mut client_dead = None;
    let mut server_dead = None;
    for ms in (0..20_000).step_by(10) {
        let now = start + Duration::from_millis(ms);
        let _ = world.client.poll_transmit(now);
        if let Some(server) = &mut world.server {
            let _ = server.poll_transmit(now);
            if server_dead.is_none() && server.handle_timeout(now).is_err() {
                server_dead = Some(ms);
            }
        }
        if client_dead.is_none() && world.client.handle_timeout(now).is_err() {
            client_dead = Some(ms);
        }
    }
    assert_eq!(client_dead, Some(15_000));
    assert_eq!(server_dead, Some(15_000));
    // A byte of a large frame still arriving keeps the peer alive.
    let mut world = pair(ResilientConfig::new());
    let start = world.now;
    world.client.heard(start + Duration::from_secs(14));
    assert!(
        world
            .client
            .handle_timeout(start + Duration::from_secs(28))
            .is_ok()
    );
    assert!(matches!(
        world.client.handle_timeout(start + Duration::from_secs(29)),
        Err(LinkError::PeerDead(d)) if d == Duration::from_secs(15)
    ));
}

#[test]
fn heartbeats_faster_than_the_minimum_close_the_link() {
    let mut world = pair(ResilientConfig::new());
    let server = world.server.as_mut().expect("server");
    let mut now = world.now;
    let mut results = Vec::new();
    for nonce in 0..4 {
        now += Duration::from_millis(500);
        results.push(
            server
                .handle(now, Message::Heartbeat { nonce, ack: 0 }.encode())
                .is_ok(),
        );
    }
    assert_eq!(results, [true, true, true, false], "two strikes forgiven");
    // Spaced heartbeats never strike, over a day.
    let mut world = pair(ResilientConfig::new());
    let server = world.server.as_mut().expect("server");
    let mut now = world.now;
    for nonce in 0..86_400 {
        now += Duration::from_secs(1);
        server
            .handle(now, Message::Heartbeat { nonce, ack: 0 }.encode())
            .expect("spaced");
    }
    // Data between fast heartbeats forgives them.
    let mut world = pair(ResilientConfig::new());
    let server = world.server.as_mut().expect("server");
    let mut now = world.now;
    for seq in 0..100 {
        now += Duration::from_millis(100);
        server
            .handle(now, Message::Heartbeat { nonce: seq, ack: 0 }.encode())
            .expect("hb");
        server
            .handle(
                now,
                Message::Data {
                    seq,
                    ack: 0,
                    ack_now: false,
                    body: Bytes::new(),
                }
                .encode(),
            )
            .expect("data");
    }
}

#[test]
fn a_hello_with_a_heartbeat_below_the_minimum_is_refused() {
    let config = ResilientConfig::new()
        .with_min_heartbeat_interval(Duration::from_millis(100))
        .with_heartbeat_interval(Duration::from_millis(100))
        .with_dead_time(Duration::from_secs(1));
    config.validate().expect("valid");
    let mut world = World::new(config, (64, 1 << 20));
    world.connect();
    assert!(matches!(world.settle(), Err(LinkError::TooManyHeartbeats)));
}

#[test]
fn a_full_outbox_refuses_room_until_the_peer_acknowledges() {
    let mut world = World::new(ResilientConfig::new(), (8, 1 << 20));
    world.connect();
    world.settle().expect("hello");
    world.cut();
    let mut rng = Rng(1);
    let mut taken = 0;
    while world.client_send(&mut rng) {
        taken += 1;
        assert!(taken <= 8);
    }
    assert_eq!(taken, 8, "a partition holds the producer at the bound");
    world.settle().expect("heal");
    assert!(world.client.has_room(1));
    world.assert_exactly_once();
}

#[test]
fn ending_the_session_follows_the_data_and_the_peer_learns_it() {
    let mut world = pair(ResilientConfig::new());
    world.send(Bytes::from_static(b"last"));
    world.client.end("done");
    assert!(matches!(
        world.client.send(Bytes::new()),
        Err(LinkError::SinkClosed)
    ));
    world.settle().expect("settle");
    assert!(world.client.is_ended());
    assert!(world.server.as_ref().is_some_and(|s| s.is_ended()));
    assert!(
        world
            .events
            .iter()
            .any(|e| matches!(e, Event::Ended { reason, unacked: 0 } if reason == "done"))
    );
    world.assert_exactly_once();
}

#[test]
fn take_unacked_hands_back_everything_in_order() {
    let mut world = pair(ResilientConfig::new());
    world.cut();
    for i in 0..5u8 {
        world.client.send(Bytes::from(vec![i])).expect("send");
    }
    assert_eq!(
        world.client.take_unacked(),
        [vec![0u8], vec![1], vec![2], vec![3], vec![4]]
    );
    assert!(world.client.all_acked() && world.client.unacked() == 0);
}

#[test]
fn the_outbox_bound_in_bytes_holds() {
    let mut outbox = MemoryOutbox::new(1000, 100);
    let mut session = Session::client(
        SessionId([1; 16]),
        ResilientConfig::new(),
        MAX_FRAME,
        MemoryOutbox::new(1000, 100),
        Instant::now(),
    );
    let mut taken = 0;
    while session.has_room(30) {
        session.send(Bytes::from(vec![0; 30])).expect("send");
        outbox.push(taken, Bytes::from(vec![0; 30])).expect("push");
        taken += 1;
    }
    assert_eq!(taken, 3, "3 x 30 <= 100 < 4 x 30");
}

#[test]
fn a_duplicate_after_everything_was_acknowledged_is_acknowledged_again() {
    let mut world = pair(ResilientConfig::new());
    world.send(Bytes::from_static(b"once"));
    world.client_transmit().expect("transmit");
    let copy = world.up[0].clone();
    world.settle().expect("delivered and acknowledged");
    let now = world.now;
    let server = world.server.as_mut().expect("server");
    // The client did not hear the acknowledgement and sent it again.
    server.handle(now, copy).expect("the copy");
    // Within the ack delay, not at once: a stream of copies is not
    // answered one for one.
    assert!(server.poll_transmit(now).expect("transmit").is_none());
    let now = now + super::DEFAULT_ACK_DELAY;
    let answer = server.poll_transmit(now).expect("transmit");
    let answer = answer.map(|payload| Message::decode(payload).expect("decode"));
    assert!(
        matches!(answer, Some(Message::Ack { ack: 1 })),
        "{answer:?}"
    );
    // Nothing left due now: a driver sleeps instead of waking at once
    // for an acknowledgement it would never send.
    assert!(server.poll_timeout().is_some_and(|at| at > now));
    assert!(server.poll_transmit(now).expect("transmit").is_none());
}

#[test]
fn answers_to_this_ends_own_heartbeats_never_strike_even_bunched_up() {
    let mut world = pair(ResilientConfig::new());
    let start = world.now;
    let server = world.server.as_mut().expect("server");
    let mut sent = Vec::new();
    for s in 1..=30 {
        let now = start + Duration::from_secs(5 * s);
        server.heard(now);
        match server
            .poll_transmit(now)
            .expect("transmit")
            .map(Message::decode)
        {
            Some(Ok(Message::Heartbeat { nonce, .. })) => sent.push(nonce),
            other => panic!("{other:?}"),
        }
    }
    // All thirty answers come at once (they waited behind a slow reader).
    let now = start + Duration::from_secs(151);
    for &nonce in &sent {
        server
            .handle(now, Message::Answer { nonce, ack: 0 }.encode())
            .expect("an answer to this end's heartbeat");
    }
    // An answer to a heartbeat never sent, or a second one, is idle.
    let mut results = Vec::new();
    for nonce in [sent[3], 1_000, 1_001, 1_002] {
        results.push(
            server
                .handle(now, Message::Answer { nonce, ack: 0 }.encode())
                .is_ok(),
        );
    }
    assert_eq!(results, [true, true, true, false]);
}

#[test]
fn a_stall_of_this_end_neither_kills_the_peer_nor_holds_its_bunched_heartbeats_against_it() {
    let mut world = pair(ResilientConfig::new());
    let start = world.now;
    let server = world.server.as_mut().expect("server");
    // The application takes nothing for 30 s: the driver stops reading.
    for s in 0..=30 {
        server.stalled(start + Duration::from_secs(s));
        server
            .handle_timeout(start + Duration::from_secs(s))
            .expect("not dead while this end does not read");
    }
    let now = start + Duration::from_secs(30);
    server.unstalled(now);
    // What the peer sent meanwhile, one heartbeat a second, comes at once.
    let mut results = Vec::new();
    for nonce in 0..34 {
        results.push(
            server
                .handle(now, Message::Heartbeat { nonce, ack: 0 }.encode())
                .is_ok(),
        );
    }
    let forgiven = results.iter().take_while(|ok| **ok).count();
    // 30 intervals of 1 s and one more, then the two strikes.
    assert_eq!(forgiven, 31 + 2, "{results:?}");
    assert!(!results[33]);

    // However long the stall, at most the unread queue's worth.
    let mut world = pair(ResilientConfig::new());
    let start = world.now;
    let server = world.server.as_mut().expect("server");
    server.stalled(start);
    let now = start + Duration::from_secs(24 * 3600);
    server.stalled(now);
    server.unstalled(now);
    let forgiven = (0..5000)
        .take_while(|nonce| {
            server
                .handle(
                    now,
                    Message::Heartbeat {
                        nonce: *nonce,
                        ack: 0,
                    }
                    .encode(),
                )
                .is_ok()
        })
        .count();
    assert_eq!(forgiven, super::MAX_UNREAD_MESSAGES + 2);
}

#[test]
fn copies_of_delivered_data_are_held_to_the_heartbeat_rate() {
    let mut world = pair(ResilientConfig::new());
    let now = world.now;
    let server = world.server.as_mut().expect("server");
    let data = |seq| {
        Message::Data {
            seq,
            ack: 0,
            ack_now: false,
            body: Bytes::new(),
        }
        .encode()
    };
    server.handle(now, data(0)).expect("new data");
    // The same message again and again, as fast as the peer can.
    let results: Vec<bool> = (0..4)
        .map(|_| server.handle(now, data(0)).is_ok())
        .collect();
    assert_eq!(results, [true, true, true, false], "two strikes forgiven");
    // A peer cannot start a session at the last number and overflow it.
    let now = world.now;
    let id = SessionId([9; 16]);
    let mut server = Session::server(
        id,
        ResilientConfig::new(),
        MAX_FRAME,
        MemoryOutbox::default(),
        now,
    );
    server.connected(now);
    let hello = Message::Hello {
        first: u64::MAX,
        ack: 0,
        hello: Hello {
            session: id,
            resumed: false,
            heartbeat_interval: super::DEFAULT_HEARTBEAT_INTERVAL,
            dead_time: super::DEFAULT_DEAD_TIME,
        },
    };
    server.handle(now, hello.encode()).expect("hello");
    let last = server.handle(now, data(u64::MAX));
    assert!(matches!(last, Err(LinkError::Protocol(_))), "{last:?}");
}

/// An outbox that remembers its session record where the test can read it.
#[derive(Default)]
struct Recording {
    messages: MemoryOutbox,
    record: std::sync::Arc<std::sync::Mutex<Option<SessionRecord>>>,
}

impl Outbox for Recording {
    fn has_room(&self, len: usize) -> bool {
        self.messages.has_room(len)
    }
    fn push(&mut self, seq: u64, message: Bytes) -> std::io::Result<()> {
        self.messages.push(seq, message)
    }
    fn get(&self, seq: u64) -> Option<Bytes> {
        self.messages.get(seq)
    }
    fn release(&mut self, ack: u64) -> std::io::Result<()> {
        self.messages.release(ack)
    }
    fn first(&self) -> Option<u64> {
        self.messages.first()
    }
    fn len(&self) -> usize {
        self.messages.len()
    }
    fn drain(&mut self) -> Vec<Bytes> {
        self.messages.drain()
    }
    fn next_seq(&self) -> u64 {
        self.messages.next_seq()
    }
    fn session(&self) -> Option<SessionRecord> {
        *self.record.lock().unwrap()
    }
    fn save_session(&mut self, record: SessionRecord) -> std::io::Result<()> {
        *self.record.lock().unwrap() = Some(record);
        Ok(())
    }
}

/// Messages that arrive in a pass that ends before anything is sent (the
/// connection failed right after them) are in the record before the next
/// connection's hello acknowledges them.
#[test]
fn the_record_is_saved_before_a_hello_acknowledges_more() {
    let now = Instant::now();
    let id = SessionId([7; 16]);
    let outbox = Recording::default();
    let record = outbox.record.clone();
    let config = ResilientConfig::new();
    let mut client = Session::client(id, config.clone(), MAX_FRAME, outbox, now);
    let mut server = Session::server(id, config, MAX_FRAME, MemoryOutbox::default(), now);
    client.connected(now);
    server.connected(now);
    let hello = client
        .poll_transmit(now)
        .unwrap()
        .expect("the client's hello");
    server.handle(now, hello).expect("hello");
    let answer = server
        .poll_transmit(now)
        .unwrap()
        .expect("the server's hello");
    client.handle(now, answer).expect("answer");
    for i in 0..3u8 {
        server.send(Bytes::from(vec![i])).expect("send");
        let data = server.poll_transmit(now).unwrap().expect("data");
        client.handle(now, data).expect("data");
    }
    // The connection fails before the client sends anything.
    client.disconnected();
    client.connected(now);
    let hello = client.poll_transmit(now).unwrap().expect("the next hello");
    assert!(
        matches!(Message::decode(hello), Ok(Message::Hello { ack: 3, .. })),
        "the hello acknowledges the three"
    );
    assert_eq!(record.lock().unwrap().map(|r| r.received), Some(3));
}
