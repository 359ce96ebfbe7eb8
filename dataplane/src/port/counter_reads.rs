//! Drop counters a port reads from the kernel (`XDP_STATISTICS`) or its
//! device (`rte_eth_stats_get`): a system call or a register read over
//! PCI, too dear for every burst, so at most every [`COUNTER_READS_EVERY`].

use std::time::{Duration, Instant};

/// How often a port reads its kernel's or device's counters at most.
pub const COUNTER_READS_EVERY: Duration = Duration::from_millis(100);

/// When a port last read them.
#[derive(Debug, Default)]
pub(crate) struct CounterReads {
    last: Option<Instant>,
}

impl CounterReads {
    /// Whether to read now; if so, this counts as the read.
    pub(crate) fn due(&mut self, now: Instant) -> bool {
        let due = self
            .last
            .is_none_or(|t| now.duration_since(t) >= COUNTER_READS_EVERY);
        if due {
            self.last = Some(now);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_come_at_most_every_period() {
        let t0 = Instant::now();
        let mut r = CounterReads::default();
        assert!(r.due(t0), "the first read is at once");
        assert!(!r.due(t0 + COUNTER_READS_EVERY / 2));
        assert!(r.due(t0 + COUNTER_READS_EVERY));
        assert!(!r.due(t0 + COUNTER_READS_EVERY));
    }
}
