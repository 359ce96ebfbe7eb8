//! What pktgen sends: inner packet sizes, the rate, when to stop, and the
//! stamp each inner UDP payload carries.

use std::str::FromStr;
use std::time::Duration;

/// Inner packet sizes (IPv4 header included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeMix {
    Fixed(usize),
    /// 7:4:1 of 64, 576 and 1500 bytes (the classic simple IMIX).
    Imix,
}

/// Smallest inner packet: IPv4 + UDP headers + the stamp.
pub const MIN_SIZE: usize = 28 + STAMP_LEN;
/// Largest inner packet (a 1500-byte MTU inside).
pub const MAX_SIZE: usize = 1500;

/// One IMIX cycle of 12 packets, the large one last and the others mixed.
const IMIX_CYCLE: [usize; 12] = [64, 576, 64, 64, 576, 64, 64, 576, 64, 64, 576, 1500];

impl SizeMix {
    /// The size of the `n`-th packet a sender sends.
    #[inline]
    pub fn size_at(&self, n: u64) -> usize {
        match self {
            SizeMix::Fixed(s) => *s,
            SizeMix::Imix => IMIX_CYCLE[(n % IMIX_CYCLE.len() as u64) as usize],
        }
    }

    /// Mean inner size in bytes.
    pub fn mean(&self) -> f64 {
        match self {
            SizeMix::Fixed(s) => *s as f64,
            SizeMix::Imix => IMIX_CYCLE.iter().sum::<usize>() as f64 / IMIX_CYCLE.len() as f64,
        }
    }

    pub fn name(&self) -> String {
        match self {
            SizeMix::Fixed(s) => s.to_string(),
            SizeMix::Imix => "imix".into(),
        }
    }
}

impl FromStr for SizeMix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("imix") {
            return Ok(SizeMix::Imix);
        }
        match s.parse::<usize>() {
            Ok(n) if (MIN_SIZE..=MAX_SIZE).contains(&n) => Ok(SizeMix::Fixed(n)),
            _ => Err(format!(
                "size must be imix or {MIN_SIZE}..={MAX_SIZE} bytes, not {s:?}"
            )),
        }
    }
}

/// When the send phase ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    After(Duration),
    /// Packets in total, over all clients.
    Count(u64),
}

/// What every sender thread does.
#[derive(Clone, Copy, Debug)]
pub struct TrafficSpec {
    pub size: SizeMix,
    /// Packets per second over all threads; `None` sends flat out.
    pub rate: Option<f64>,
    pub stop: Stop,
    /// After the send phase, how long to wait for what is still in flight.
    pub drain: Duration,
    /// Packets per send burst (sendmmsg batch).
    pub burst: usize,
    /// Packets in flight per thread at most (closed loop: the sender waits
    /// for replies); `None` sends open loop, at the rate or flat out.
    pub window: Option<usize>,
    /// Packets each client sends in a row before the next one's turn: 1
    /// is round robin (every packet on another tunnel, the worst case for
    /// the caches at both ends); more models traffic that comes in bursts
    /// per flow, as TCP windows do.
    pub train: usize,
    /// Clients take their turns in a fixed random order instead of their
    /// set-up order. In set-up order each tunnel's state, at both ends,
    /// tends to lie just after the previous one's, and the cores'
    /// prefetchers stream it; shuffled, every turn is a fresh miss, as
    /// with clients that send when they please.
    pub shuffle: bool,
}

/// Bytes of the stamp at the start of each inner UDP payload.
pub const STAMP_LEN: usize = 24;
/// "EPKG": tells our packets from anything else that might come back.
pub const STAMP_MAGIC: u32 = 0x4550_4b47;

/// What each inner packet carries: who sent it, its number, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub client: u32,
    /// Per client, from 1.
    pub seq: u64,
    /// Nanoseconds since the run's epoch.
    pub sent_ns: u64,
}

impl Stamp {
    pub fn write(&self, out: &mut [u8]) -> bool {
        let Some(b) = out.get_mut(..STAMP_LEN) else {
            return false;
        };
        b[..4].copy_from_slice(&STAMP_MAGIC.to_be_bytes());
        b[4..8].copy_from_slice(&self.client.to_be_bytes());
        b[8..16].copy_from_slice(&self.seq.to_be_bytes());
        b[16..24].copy_from_slice(&self.sent_ns.to_be_bytes());
        true
    }

    pub fn read(b: &[u8]) -> Option<Stamp> {
        let b: &[u8; STAMP_LEN] = b.get(..STAMP_LEN)?.try_into().ok()?;
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| ((u32_at(i) as u64) << 32) | u32_at(i + 4) as u64;
        (u32_at(0) == STAMP_MAGIC).then(|| Stamp {
            client: u32_at(4),
            seq: u64_at(8),
            sent_ns: u64_at(16),
        })
    }
}

/// A token bucket: how many packets may leave now.
pub struct Pacer {
    per_sec: Option<f64>,
    tokens: f64,
    cap: f64,
    last: std::time::Instant,
}

impl Pacer {
    pub fn new(per_sec: Option<f64>, burst: usize, now: std::time::Instant) -> Pacer {
        Pacer {
            per_sec,
            tokens: 0.0,
            // At most 1 ms (or one burst) of credit: a stalled sender must
            // not make up for the stall with a flood.
            cap: per_sec.map_or(0.0, |r| (r / 1000.0).max(burst as f64)),
            last: now,
        }
    }

    /// Packets allowed now, at most `max`.
    pub fn allow(&mut self, now: std::time::Instant, max: usize) -> usize {
        let Some(r) = self.per_sec else {
            return max;
        };
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * r).min(self.cap);
        let n = (self.tokens as usize).min(max);
        self.tokens -= n as f64;
        n
    }

    /// How long until the next packet may leave (zero when flat out).
    pub fn wait(&self) -> Duration {
        match self.per_sec {
            Some(r) if self.tokens < 1.0 && r > 0.0 => {
                Duration::from_secs_f64(((1.0 - self.tokens) / r).min(0.01))
            }
            _ => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn imix_is_7_4_1() {
        let sizes: Vec<usize> = (0..1200).map(|n| SizeMix::Imix.size_at(n)).collect();
        let count = |s| sizes.iter().filter(|x| **x == s).count();
        assert_eq!((count(64), count(576), count(1500)), (700, 400, 100));
        assert!((SizeMix::Imix.mean() - 354.33).abs() < 0.01);
        assert_eq!("imix".parse::<SizeMix>(), Ok(SizeMix::Imix));
        assert_eq!("1400".parse::<SizeMix>(), Ok(SizeMix::Fixed(1400)));
        assert!("40".parse::<SizeMix>().is_err() && "9000".parse::<SizeMix>().is_err());
    }

    #[test]
    fn stamps_round_trip_and_others_are_refused() {
        let s = Stamp {
            client: 7,
            seq: 1 << 40,
            sent_ns: 123_456_789,
        };
        let mut b = [0u8; 30];
        assert!(s.write(&mut b));
        assert_eq!(Stamp::read(&b), Some(s));
        assert_eq!(Stamp::read(&b[..10]), None);
        b[0] ^= 1;
        assert_eq!(Stamp::read(&b), None);
        assert!(!s.write(&mut [0u8; 8]));
    }

    #[test]
    fn the_pacer_keeps_the_rate() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Some(10_000.0), 32, t0);
        let mut sent = 0;
        for ms in 1..=100 {
            sent += p.allow(t0 + Duration::from_millis(ms), 1000);
        }
        assert!((990..=1000).contains(&sent), "{sent}");
        // A long stall earns at most the cap.
        assert!(p.allow(t0 + Duration::from_secs(5), 100_000) <= 32);
        let mut flat = Pacer::new(None, 32, t0);
        assert_eq!(flat.allow(t0, 64), 64);
        assert_eq!(flat.wait(), Duration::ZERO);
    }
}
