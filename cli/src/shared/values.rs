//! Flag values that clap's types cannot check alone: the number of seconds
//! of a `--*-timeout` flag, and a connection count. A value out of range
//! is a usage error (exit 2) that says what the range is. And what a
//! `--session-bound` flag selects.

use std::time::Duration;

/// A `--*-timeout` flag's value: a positive number of seconds, fractions
/// allowed. A value past what a `Duration` holds (about 584 billion years),
/// `inf` included, is taken as the longest `Duration`: no deadline in the
/// life of the process (every deadline formed from it saturates).
pub(crate) fn seconds(value: &str) -> Result<Duration, String> {
    let seconds: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not a number of seconds"))?;
    if seconds.is_nan() || seconds <= 0.0 {
        return Err(format!("must be a positive number of seconds, not {value}"));
    }
    // Cannot fail for a positive number but by overflow.
    let duration = Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX);
    if duration.is_zero() {
        return Err(format!("{value} seconds is less than a nanosecond"));
    }
    Ok(duration)
}

/// `--max-connections`: at least 1, at most what tokio's semaphore counts
/// (`Semaphore::MAX_PERMITS`).
pub(crate) fn connection_count(value: &str) -> Result<usize, String> {
    let max = tokio::sync::Semaphore::MAX_PERMITS;
    let count: u128 = value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not a whole number of connections"))?;
    match usize::try_from(count) {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(count) if count <= max => Ok(count),
        _ => Err(format!("{value} is too many: at most {max}")),
    }
}

/// The tag mode a `--session-bound` flag selects.
pub(crate) fn auth_mode(session_bound: bool) -> secure_link::AuthMode {
    if session_bound {
        secure_link::AuthMode::SessionBound
    } else {
        secure_link::AuthMode::Lab
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_positive_and_saturate_past_a_duration() {
        assert_eq!(seconds("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(
            seconds("1e19"),
            Ok(Duration::from_secs(10_000_000_000_000_000_000))
        );
        for huge in ["18446744073709551615", "1e30", "inf"] {
            assert_eq!(seconds(huge), Ok(Duration::MAX), "{huge}");
        }
        for bad in ["0", "-1", "NaN", "-inf", "ten", "", "1e-10"] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn connection_counts_fit_the_semaphore() {
        let max = tokio::sync::Semaphore::MAX_PERMITS;
        assert_eq!(connection_count("1"), Ok(1));
        assert_eq!(connection_count(&max.to_string()), Ok(max));
        for bad in [
            "0".to_owned(),
            (max + 1).to_string(),
            u64::MAX.to_string(),
            "340282366920938463463374607431768211456".to_owned(),
            "-1".to_owned(),
            "many".to_owned(),
        ] {
            assert!(connection_count(&bad).is_err(), "{bad}");
        }
    }
}
