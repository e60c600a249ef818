//! [`ResilientConfig`]: the resilient mode's timings and bounds, each
//! with its default and where the default comes from.

use std::time::Duration;

use crate::LinkError;

pub use super::backoff::{DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP, DEFAULT_HEALTHY_AFTER};

/// A quiet link sends a heartbeat after this long: 5 s.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// The peer is dead when no byte arrived for this long: 15 s, three
/// heartbeat intervals (MQTT allows 1.5 keep-alive intervals; three lets a
/// heartbeat be late twice).
pub const DEFAULT_DEAD_TIME: Duration = Duration::from_secs(15);

/// Frames that carry nothing new (heartbeats, acknowledgements that
/// acknowledge nothing, unasked answers) may not arrive closer together
/// than this: 1 s by default. gRPC's servers anchor this with their
/// minimum ping interval and its "too many pings" close.
pub const DEFAULT_MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// How many too-close frames that carry nothing new are forgiven before
/// the link is closed with [`LinkError::TooManyHeartbeats`]: 2, gRPC's
/// `max_ping_strikes`. A spaced one or any data forgives them all.
pub const MAX_HEARTBEAT_STRIKES: u32 = 2;

/// A receiver acknowledges at the latest this long after a message it has
/// not yet acknowledged: 25 ms, QUIC's default `max_ack_delay`. Data the
/// sender marks as the last it has for now is acknowledged at once.
pub const DEFAULT_ACK_DELAY: Duration = Duration::from_millis(25);

/// A receiver acknowledges at least every this many messages, whatever
/// the delay: 16.
pub const ACK_EVERY: u64 = 16;

/// A server forgets a session no connection has resumed for this long:
/// 5 minutes.
pub const DEFAULT_SESSION_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// A server holds at most this many sessions (with or without a
/// connection): 1,024.
pub const DEFAULT_MAX_SESSIONS: usize = 1024;

/// The resilient mode's timings and bounds. Both ends have one; a hello
/// tells the peer the heartbeat interval and the dead time.
///
/// # Rules
///
/// [`validate`](ResilientConfig::validate) (called by the ends that take
/// a configuration) refuses, as [`LinkError::Config`]:
/// * a heartbeat interval shorter than the minimum heartbeat interval;
/// * a dead time of less than two heartbeat intervals, or less than three
///   minimum intervals (a peer sends a heartbeat every third of this end's
///   dead time when that is sooner than its own interval);
/// * a zero ack delay or backoff base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResilientConfig {
    pub(crate) heartbeat_interval: Duration,
    pub(crate) dead_time: Duration,
    pub(crate) min_heartbeat_interval: Duration,
    pub(crate) ack_delay: Duration,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_cap: Duration,
    pub(crate) healthy_after: Duration,
    pub(crate) give_up_after: Option<Duration>,
    pub(crate) session_expiry: Duration,
    pub(crate) max_sessions: usize,
}

impl Default for ResilientConfig {
    fn default() -> Self {
        ResilientConfig {
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            dead_time: DEFAULT_DEAD_TIME,
            min_heartbeat_interval: DEFAULT_MIN_HEARTBEAT_INTERVAL,
            ack_delay: DEFAULT_ACK_DELAY,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_cap: DEFAULT_BACKOFF_CAP,
            healthy_after: DEFAULT_HEALTHY_AFTER,
            give_up_after: None,
            session_expiry: DEFAULT_SESSION_EXPIRY,
            max_sessions: DEFAULT_MAX_SESSIONS,
        }
    }
}

impl ResilientConfig {
    /// The defaults ([`DEFAULT_HEARTBEAT_INTERVAL`] and the other
    /// constants of this module).
    pub fn new() -> Self {
        ResilientConfig::default()
    }

    /// A heartbeat after this much quiet (default
    /// [`DEFAULT_HEARTBEAT_INTERVAL`]).
    pub fn with_heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// The peer is dead after this long without a byte (default
    /// [`DEFAULT_DEAD_TIME`]): the connection is dropped; a client
    /// reconnects, a server keeps the session for the client's return.
    pub fn with_dead_time(mut self, dead_time: Duration) -> Self {
        self.dead_time = dead_time;
        self
    }

    /// The closest spacing allowed for frames that carry nothing new
    /// (default [`DEFAULT_MIN_HEARTBEAT_INTERVAL`]); a hello declaring a
    /// shorter heartbeat interval is refused.
    pub fn with_min_heartbeat_interval(mut self, interval: Duration) -> Self {
        self.min_heartbeat_interval = interval;
        self
    }

    /// The longest wait before acknowledging (default
    /// [`DEFAULT_ACK_DELAY`]).
    pub fn with_ack_delay(mut self, delay: Duration) -> Self {
        self.ack_delay = delay;
        self
    }

    /// The reconnect schedule (client): the first wait's ceiling and the
    /// largest one (defaults [`DEFAULT_BACKOFF_BASE`],
    /// [`DEFAULT_BACKOFF_CAP`]).
    pub fn with_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_cap = cap;
        self
    }

    /// A connection that lived this long resets the reconnect schedule
    /// (default [`DEFAULT_HEALTHY_AFTER`]).
    pub fn with_healthy_after(mut self, healthy_after: Duration) -> Self {
        self.healthy_after = healthy_after;
        self
    }

    /// The client stops reconnecting when it has had no established
    /// connection for this long, and hands back what the server did not
    /// acknowledge ([`LinkError::GaveUp`]). Default: never.
    pub fn with_give_up_after(mut self, limit: Duration) -> Self {
        self.give_up_after = Some(limit);
        self
    }

    /// A server forgets a session without a connection after this long
    /// (default [`DEFAULT_SESSION_EXPIRY`]).
    pub fn with_session_expiry(mut self, expiry: Duration) -> Self {
        self.session_expiry = expiry;
        self
    }

    /// A server holds at most this many sessions (default
    /// [`DEFAULT_MAX_SESSIONS`]); a new one beyond it evicts the session
    /// idle the longest, or is refused when every session has a
    /// connection.
    pub fn with_max_sessions(mut self, max: usize) -> Self {
        self.max_sessions = max;
        self
    }

    /// The heartbeat interval in force.
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
    }

    /// The dead time in force.
    pub fn dead_time(&self) -> Duration {
        self.dead_time
    }

    /// Checks the rules above.
    pub fn validate(&self) -> Result<(), LinkError> {
        let refuse = |reason: String| Err(LinkError::Config(reason));
        if self.heartbeat_interval < self.min_heartbeat_interval {
            return refuse(format!(
                "heartbeat interval {:?} is shorter than the minimum {:?}",
                self.heartbeat_interval, self.min_heartbeat_interval
            ));
        }
        if self.dead_time < self.heartbeat_interval * 2
            || self.dead_time < self.min_heartbeat_interval * 3
        {
            return refuse(format!(
                "dead time {:?} is shorter than two heartbeat intervals ({:?}) or three minimum intervals ({:?})",
                self.dead_time, self.heartbeat_interval, self.min_heartbeat_interval
            ));
        }
        if self.ack_delay.is_zero() || self.backoff_base.is_zero() {
            return refuse("the ack delay and the backoff base must be above zero".into());
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_pass_and_each_rule_refuses() {
        assert!(ResilientConfig::new().validate().is_ok());
        let bad = [
            ResilientConfig::new().with_heartbeat_interval(Duration::from_millis(999)),
            ResilientConfig::new().with_dead_time(Duration::from_secs(9)),
            ResilientConfig::new()
                .with_heartbeat_interval(Duration::from_secs(1))
                .with_dead_time(Duration::from_millis(2500)),
            ResilientConfig::new().with_ack_delay(Duration::ZERO),
            ResilientConfig::new().with_backoff(Duration::ZERO, Duration::from_secs(1)),
        ];
        for config in bad {
            assert!(
                matches!(config.validate(), Err(LinkError::Config(_))),
                "{config:?}"
            );
        }
    }
}
