//! Read deadlines of a server connection: the first authenticated message
//! must come within one limit, and later ones within an idle limit of the
//! peer's last activity.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::LinkError;

/// Tracks both deadlines with one timer. The timer is not reset per
/// message (that would cost a timer update per frame on a busy link): it
/// fires at the earliest possible deadline and is then pushed to the real
/// one, computed from the time the peer was last heard from.
pub(crate) struct ReadDeadline {
    first_message: Option<Duration>,
    idle: Option<Duration>,
    timer: Option<Pin<Box<Sleep>>>,
    received_any: bool,
    /// The last read found nothing to yield: the next message is news.
    waited: bool,
    last_heard: Instant,
}

impl ReadDeadline {
    pub(crate) fn new(first_message: Option<Duration>, idle: Option<Duration>) -> Self {
        let now = Instant::now();
        let timer = first_message
            .or(idle)
            .map(|limit| Box::pin(tokio::time::sleep_until(now + limit)));
        ReadDeadline {
            first_message,
            idle,
            timer,
            received_any: false,
            waited: true,
            last_heard: now,
        }
    }

    /// Records that a message was yielded.
    pub(crate) fn on_message(&mut self) {
        if self.timer.is_none() {
            return;
        }
        if !self.received_any {
            self.received_any = true;
            self.last_heard = Instant::now();
            match (self.idle, self.timer.as_mut()) {
                (Some(idle), Some(timer)) => timer.as_mut().reset(self.last_heard + idle),
                _ => self.timer = None,
            }
        } else if self.waited {
            // Messages decoded from one read share its arrival time; only
            // the first after a wait needs the clock.
            self.last_heard = Instant::now();
        }
        self.waited = false;
    }

    /// Called when the stream has nothing to yield: registers the timer
    /// with `cx` and reports an expired deadline.
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Option<LinkError> {
        self.waited = true;
        let timer = self.timer.as_mut()?;
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return None;
            }
            if !self.received_any {
                let limit = self.first_message.unwrap_or_default();
                return Some(LinkError::FirstMessageTimeout(limit));
            }
            let idle = self.idle?;
            let deadline = self.last_heard + idle;
            if deadline <= Instant::now() {
                return Some(LinkError::IdleTimeout(idle));
            }
            timer.as_mut().reset(deadline);
        }
    }
}
