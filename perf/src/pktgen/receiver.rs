//! What came back: per-client sequence windows (loss and duplicates) and
//! the latency histogram.

use hdrhistogram::Histogram;

use super::traffic::Stamp;

/// Bits of history per client: a duplicate older than this is counted as
/// `late`, not as a duplicate (bounded memory at 100,000 clients).
pub const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

/// Which of one client's recent sequence numbers arrived.
#[derive(Clone, Default)]
pub struct SeqWindow {
    top: u64,
    bits: [u64; WORDS],
}

/// What a returned sequence number was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    New,
    Duplicate,
    /// Older than the window: cannot tell, counted apart.
    Late,
}

impl SeqWindow {
    fn bit(seq: u64) -> (usize, u64) {
        let i = seq % WINDOW;
        ((i / 64) as usize % WORDS, 1u64 << (i % 64))
    }

    pub fn see(&mut self, seq: u64) -> Arrival {
        if seq > self.top {
            // Clear the slots the window slides over.
            let gap = seq - self.top;
            if gap >= WINDOW {
                self.bits = [0; WORDS];
            } else {
                for s in self.top + 1..=seq {
                    let (w, m) = Self::bit(s);
                    self.bits[w] &= !m;
                }
            }
            self.top = seq;
        } else if self.top - seq >= WINDOW {
            return Arrival::Late;
        }
        let (w, m) = Self::bit(seq);
        if self.bits[w] & m != 0 {
            return Arrival::Duplicate;
        }
        self.bits[w] |= m;
        Arrival::New
    }
}

/// One receiver's tallies.
pub struct Tally {
    pub received: u64,
    pub duplicated: u64,
    pub late: u64,
    /// Inner bytes of the new arrivals.
    pub rx_bytes: u64,
    /// Stamps naming a client this receiver does not own, or not ours.
    pub foreign: u64,
    /// Round trip in nanoseconds.
    pub latency: Histogram<u64>,
}

/// Latency bounds: 100 ns to 60 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Constant, valid bounds: this cannot fail.
    Histogram::new_with_bounds(100, 60_000_000_000, 3).expect("valid histogram bounds")
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            received: 0,
            duplicated: 0,
            late: 0,
            rx_bytes: 0,
            foreign: 0,
            latency: new_histogram(),
        }
    }
}

impl Tally {
    /// Counts one returned packet of `len` inner bytes, stamped `stamp`,
    /// back at `now_ns`; `window` is its client's.
    pub fn record(&mut self, window: &mut SeqWindow, stamp: &Stamp, len: usize, now_ns: u64) {
        match window.see(stamp.seq) {
            Arrival::New => {
                self.received += 1;
                self.rx_bytes += len as u64;
                let _ = self
                    .latency
                    .record(now_ns.saturating_sub(stamp.sent_ns).max(100));
            }
            Arrival::Duplicate => self.duplicated += 1,
            Arrival::Late => self.late += 1,
        }
    }

    pub fn merge(&mut self, o: &Tally) {
        self.received += o.received;
        self.duplicated += o.duplicated;
        self.late += o.late;
        self.rx_bytes += o.rx_bytes;
        self.foreign += o.foreign;
        let _ = self.latency.add(&o.latency);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_tells_new_from_duplicate_and_late() {
        let mut w = SeqWindow::default();
        assert_eq!(w.see(1), Arrival::New);
        assert_eq!(w.see(3), Arrival::New);
        assert_eq!(w.see(2), Arrival::New, "reordered is still new");
        assert_eq!(w.see(3), Arrival::Duplicate);
        assert_eq!(w.see(3000), Arrival::New);
        assert_eq!(w.see(3), Arrival::Late);
        assert_eq!(w.see(3000 - 1023), Arrival::New);
        assert_eq!(w.see(3000 - 1024), Arrival::Late);
        assert_eq!(w.see(3001), Arrival::New);
        // A slot reused by a later sequence number is fresh again.
        assert_eq!(w.see(3001 + 1024), Arrival::New);
        assert_eq!(w.see(3001), Arrival::Late);
    }

    #[test]
    fn tallies_count_and_merge() {
        let mut t = Tally::default();
        let mut w = SeqWindow::default();
        let s = |seq| Stamp {
            client: 0,
            seq,
            sent_ns: 1_000,
        };
        t.record(&mut w, &s(1), 64, 51_000);
        t.record(&mut w, &s(1), 64, 52_000);
        t.record(&mut w, &s(2), 64, 21_000);
        assert_eq!((t.received, t.duplicated, t.rx_bytes), (2, 1, 128));
        let mut all = Tally::default();
        all.merge(&t);
        all.merge(&t);
        assert_eq!(all.received, 4);
        assert_eq!(all.latency.len(), 4);
        assert!(all.latency.max() >= 49_900);
    }
}
