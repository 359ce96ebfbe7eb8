//! A token bucket for ICMP errors: a flood of oversized packets must not
//! become a flood of ICMP (RFC 4443 §2.4(f), RFC 1812 §4.3.2.8).

use std::time::{Duration, Instant};

/// `per_sec` tokens a second, at most `burst` saved up.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    per_sec: u32,
    burst: u32,
    tokens: u32,
    last: Option<Instant>,
}

impl TokenBucket {
    pub fn new(per_sec: u32, burst: u32) -> TokenBucket {
        TokenBucket {
            per_sec,
            burst,
            tokens: burst,
            last: None,
        }
    }

    /// Takes a token if there is one.
    pub fn allow(&mut self, now: Instant) -> bool {
        let last = *self.last.get_or_insert(now);
        let elapsed = now.saturating_duration_since(last);
        let earned = elapsed.as_nanos() * u128::from(self.per_sec) / 1_000_000_000;
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(earned).min(self.burst);
            // Keep the fraction of a token not yet earned.
            let used = Duration::from_nanos(
                u64::from(earned).saturating_mul(1_000_000_000) / u64::from(self.per_sec.max(1)),
            );
            self.last = Some(last + used.min(elapsed));
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100, 10);
        let first = (0..50).filter(|_| b.allow(t0)).count();
        assert_eq!(first, 10, "the burst");
        // One second later, 100 more (capped by the burst of 10 at once).
        let mut sent = 0;
        for ms in 1..=1000u64 {
            if b.allow(t0 + Duration::from_millis(ms)) {
                sent += 1;
            }
        }
        assert!((99..=101).contains(&sent), "{sent} in one second");
        assert!(!b.allow(t0 + Duration::from_millis(1000)));
    }

    #[test]
    fn fractions_add_up() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3, 1);
        assert!(b.allow(t0));
        // Every 100 ms for 2 s: 3 per second.
        let n = (1..=20u64)
            .filter(|i| b.allow(t0 + Duration::from_millis(100 * i)))
            .count();
        assert_eq!(n, 6);
    }
}
