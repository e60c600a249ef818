//! TCP keepalive on every connection of `serve` and `send`: a peer that
//! vanished while the link is quiet (no write pending, no idle limit) is
//! found out by the kernel's probes. After `--keepalive-idle` seconds
//! without traffic the kernel sends a probe every `--keepalive-interval`
//! seconds, and `--keepalive-count` unanswered probes end the connection:
//! the link then fails with an I/O error ("connection timed out"). The
//! defaults, 60 s, 10 s and 6, notice a dead peer about two minutes after
//! the link went quiet. Set with socket2, the ecosystem's crate for socket
//! options; a library user does the same on their own `TcpStream`:
//!
//! ```text
//! let keepalive = socket2::TcpKeepalive::new()
//!     .with_time(Duration::from_secs(60))
//!     .with_interval(Duration::from_secs(10))
//!     .with_retries(6);
//! socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive)?;
//! ```

use std::time::Duration;

/// The keepalive flags of `serve` and `send`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub(crate) struct Keepalive {
    /// Seconds a connection may be quiet before TCP keepalive probes start
    /// (1 to 32767, Linux's limit).
    #[arg(long, default_value = "60", value_parser = probe_seconds)]
    keepalive_idle: Duration,
    /// Seconds between TCP keepalive probes (1 to 32767).
    #[arg(long, default_value = "10", value_parser = probe_seconds)]
    keepalive_interval: Duration,
    /// Unanswered TCP keepalive probes after which the kernel ends the
    /// connection (1 to 127).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=127))]
    keepalive_count: u32,
}

impl Keepalive {
    /// Turns keepalive on for `tcp` with these settings.
    pub(crate) fn apply(&self, tcp: &tokio::net::TcpStream) -> std::io::Result<()> {
        let params = socket2::TcpKeepalive::new()
            .with_time(self.keepalive_idle)
            .with_interval(self.keepalive_interval)
            .with_retries(self.keepalive_count);
        socket2::SockRef::from(tcp).set_tcp_keepalive(&params)
    }
}

/// A keepalive time: whole seconds from 1 to 32767 (`TCP_KEEPIDLE` and
/// `TCP_KEEPINTVL` take seconds, at most `MAX_TCP_KEEPIDLE`).
fn probe_seconds(value: &str) -> Result<Duration, String> {
    match value.trim().parse::<u64>() {
        Ok(seconds @ 1..=32767) => Ok(Duration::from_secs(seconds)),
        _ => Err(format!(
            "`{value}` is not a whole number of seconds from 1 to 32767"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_times_are_whole_seconds_the_kernel_takes() {
        assert_eq!(probe_seconds("60"), Ok(Duration::from_secs(60)));
        assert_eq!(probe_seconds("32767"), Ok(Duration::from_secs(32767)));
        for bad in ["0", "32768", "1.5", "-1", "inf", ""] {
            assert!(probe_seconds(bad).is_err(), "{bad}");
        }
    }
}
