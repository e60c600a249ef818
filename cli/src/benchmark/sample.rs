//! One measured transfer, and the median of several.

use std::time::Duration;

/// One measured transfer.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// From the first message handed to the client until the server has
    /// received the last one.
    pub elapsed: Duration,
    /// Payload bytes moved.
    pub bytes: u64,
    /// Messages moved.
    pub messages: u64,
    /// CPU time the whole process (both ends, and anything else it ran)
    /// spent over the same span, on Linux; `None` elsewhere.
    pub cpu: Option<Duration>,
}

impl Sample {
    /// Payload throughput in MB/s (10^6 bytes).
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }

    /// Messages per second.
    pub fn messages_per_s(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// CPU time per message, both ends together.
    pub fn cpu_per_message(&self) -> Option<Duration> {
        let messages = u32::try_from(self.messages.max(1)).ok()?;
        self.cpu.map(|cpu| cpu / messages)
    }

    /// CPU nanoseconds per payload byte, both ends together.
    pub fn cpu_ns_per_byte(&self) -> Option<f64> {
        self.cpu
            .map(|cpu| cpu.as_secs_f64() * 1e9 / self.bytes.max(1) as f64)
    }

    /// How many cores were busy on average: CPU time over elapsed time
    /// (2.0 is both cores of a 2-core machine all the time).
    pub fn cores_busy(&self) -> Option<f64> {
        self.cpu
            .map(|cpu| cpu.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-9))
    }
}

/// The median of `samples` by throughput.
pub fn median(samples: &[Sample]) -> Option<Sample> {
    let mut sorted = samples.to_vec();
    sorted.sort_by_key(|s| s.elapsed);
    sorted.get(sorted.len() / 2).copied()
}
