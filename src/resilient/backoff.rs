//! The reconnect schedule: exponential backoff with full jitter.

use std::time::Duration;

/// The first reconnect waits up to this long: 100 ms, ZeroMQ's default
/// reconnect interval (`ZMQ_RECONNECT_IVL`).
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(100);

/// The longest wait between reconnects: 10 s.
pub const DEFAULT_BACKOFF_CAP: Duration = Duration::from_secs(10);

/// A link that stayed up this long counts as healthy: the next failure
/// starts the schedule again from [`DEFAULT_BACKOFF_BASE`].
pub const DEFAULT_HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// Exponential backoff with full jitter (AWS Architecture Blog,
/// "Exponential Backoff And Jitter"): attempt `n` waits a uniformly random
/// time in `[0, min(cap, base * 2^n)]`, so that clients cut off together
/// do not come back together.
///
/// Sans-I/O: the caller supplies the randomness.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// The ceiling of the next wait.
    pub(crate) fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next wait, from 64 random bits; the ceiling doubles for the
    /// attempt after.
    pub(crate) fn next_delay(&mut self, random: u64) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        // Uniform in [0, ceiling]: the high bits of a 64x64 product.
        let scaled = (u128::from(random) * (u128::from(nanos) + 1)) >> 64;
        Duration::from_nanos(u64::try_from(scaled).unwrap_or(nanos))
    }

    /// After a healthy spell: the next failure waits like the first.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_ceiling_doubles_from_the_base_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP);
        let ceilings: Vec<u64> = (0..10)
            .map(|_| {
                let ceiling = backoff.ceiling();
                backoff.next_delay(u64::MAX);
                ceiling.as_millis() as u64
            })
            .collect();
        assert_eq!(
            ceilings,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
        );
        backoff.reset();
        assert_eq!(backoff.ceiling(), DEFAULT_BACKOFF_BASE);
    }

    #[test]
    fn the_extremes_of_the_random_bits_give_zero_and_the_ceiling() {
        let mut backoff = Backoff::new(DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP);
        assert_eq!(backoff.next_delay(0), Duration::ZERO);
        // 2^64 - 1 over 2^64: within a nanosecond of the ceiling.
        let top = backoff.next_delay(u64::MAX);
        assert!(top <= Duration::from_millis(200) && top > Duration::from_micros(199_999));
        for _ in 0..100 {
            backoff.next_delay(u64::MAX);
        }
        assert!(backoff.next_delay(u64::MAX) <= DEFAULT_BACKOFF_CAP);
    }

    proptest! {
        #[test]
        fn every_delay_lies_within_its_ceiling(
            randoms in proptest::collection::vec(any::<u64>(), 1..64),
        ) {
            let mut backoff = Backoff::new(DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP);
            for random in randoms {
                let ceiling = backoff.ceiling();
                let delay = backoff.next_delay(random);
                prop_assert!(delay <= ceiling && ceiling <= DEFAULT_BACKOFF_CAP);
            }
        }
    }

    #[test]
    fn delays_spread_over_the_whole_range() {
        // 1,000 draws at the cap from a fixed sequence: the mean is near half
        // the ceiling, and every tenth of the range is hit (full jitter, not
        // equal jitter or none).
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut buckets = [0u32; 10];
        let mut total = Duration::ZERO;
        for _ in 0..1000 {
            // splitmix64
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            let mut backoff = Backoff::new(DEFAULT_BACKOFF_CAP, DEFAULT_BACKOFF_CAP);
            let delay = backoff.next_delay(z ^ (z >> 31));
            total += delay;
            buckets[(delay.as_millis() as usize / 1000).min(9)] += 1;
        }
        let mean = total / 1000;
        assert!(mean > Duration::from_millis(4500) && mean < Duration::from_millis(5500));
        assert!(buckets.iter().all(|&n| n > 50), "{buckets:?}");
    }
}
