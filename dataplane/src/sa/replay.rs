//! Anti-replay window with 64-bit extended sequence numbers.
//!
//! The bitmap follows RFC 6479: a ring of 64-bit blocks where advancing the
//! window only clears the blocks it passes, so the cost does not grow with
//! the window size. The high 32 bits of an ESN are never sent; they are
//! inferred from the window as in RFC 4303 appendix A2.2.
//!
//! The state lives in atomics so that an `InboundSa` can be shared read-only
//! by all workers, but only the SA's owning worker ever writes it (the data
//! plane steers every SA to one worker), so `Relaxed` plain loads and stores
//! are enough and no cache line is written by two cores.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Largest window a config may ask for.
pub const MAX_WINDOW: u32 = 4096;

/// Why a sequence number was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayError {
    /// Left of the window, or already seen.
    Replayed,
    /// Sequence number 0 is never sent (RFC 4303 3.3.3).
    Zero,
}

/// Anti-replay state of one inbound SA.
pub struct ReplayWindow {
    /// Highest authenticated sequence number (full 64 bits); 0 = none yet.
    top: AtomicU64,
    blocks: Box<[AtomicU64]>,
    /// Window size in packets (0 = replay check off, ESN inference only).
    size: u64,
    esn: bool,
}

impl ReplayWindow {
    /// Asks the cache for the bitmap line the next packet in order marks
    /// (the one after the top): the only line an in-order packet touches.
    #[inline]
    pub fn prefetch(&self) {
        let (block, _) = self.position(self.top().wrapping_add(1));
        if let Some(word) = self.blocks.get(block) {
            crate::prefetch::prefetch(word);
        }
    }

    /// A window of `size` packets (rounded up to a multiple of 64; 0 turns
    /// the replay check off), with or without extended sequence numbers.
    pub fn new(size: u32, esn: bool) -> ReplayWindow {
        let size = size.min(MAX_WINDOW) as usize;
        // One spare block so the window's oldest block is never the one
        // being cleared for the newest (RFC 6479 section 2).
        let nblocks = (size.div_ceil(64) + 1).next_power_of_two();
        ReplayWindow {
            top: AtomicU64::new(0),
            blocks: (0..nblocks).map(|_| AtomicU64::new(0)).collect(),
            size: size.div_ceil(64) as u64 * 64,
            esn,
        }
    }

    /// Window size in packets.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Highest sequence number accepted so far.
    pub fn top(&self) -> u64 {
        self.top.load(Relaxed)
    }

    /// Checks the 32 bits from the wire before authentication and returns
    /// the full sequence number to authenticate (it goes into the AAD with
    /// ESN). Nothing changes until [`ReplayWindow::accept`].
    #[inline]
    pub fn check(&self, seq_low: u32) -> Result<u64, ReplayError> {
        let top = self.top.load(Relaxed);
        let seq = if self.esn {
            self.infer_esn(top, seq_low)
        } else {
            seq_low as u64
        };
        if seq == 0 {
            return Err(ReplayError::Zero);
        }
        if seq > top || self.size == 0 {
            return Ok(seq);
        }
        if top - seq >= self.size {
            return Err(ReplayError::Replayed);
        }
        let (block, bit) = self.position(seq);
        if self.blocks[block].load(Relaxed) & bit != 0 {
            return Err(ReplayError::Replayed);
        }
        Ok(seq)
    }

    /// Records `seq` (from [`ReplayWindow::check`]) after the packet
    /// authenticated. Re-checks, since another packet may have moved the
    /// window in between; returns false if `seq` is now a replay.
    #[inline]
    pub fn accept(&self, seq: u64) -> bool {
        let top = self.top.load(Relaxed);
        if self.size == 0 {
            if seq > top {
                self.top.store(seq, Relaxed);
            }
            return true;
        }
        if seq > top {
            self.advance(top, seq);
            self.top.store(seq, Relaxed);
        } else if top - seq >= self.size {
            return false;
        }
        let (block, bit) = self.position(seq);
        let word = self.blocks[block].load(Relaxed);
        if word & bit != 0 {
            return false;
        }
        self.blocks[block].store(word | bit, Relaxed);
        true
    }

    #[inline]
    fn position(&self, seq: u64) -> (usize, u64) {
        let mask = self.blocks.len() as u64 - 1;
        (((seq >> 6) & mask) as usize, 1u64 << (seq & 63))
    }

    /// Clears the blocks between the old top's block and the new one.
    fn advance(&self, top: u64, seq: u64) {
        let nblocks = self.blocks.len() as u64;
        let old_block = top >> 6;
        let new_block = seq >> 6;
        let steps = (new_block - old_block).min(nblocks);
        for i in 1..=steps {
            let idx = ((old_block + i) & (nblocks - 1)) as usize;
            self.blocks[idx].store(0, Relaxed);
        }
    }

    /// RFC 4303 A2.2: pick the high half that puts `seq_low` in or right of
    /// the window.
    fn infer_esn(&self, top: u64, seq_low: u32) -> u64 {
        let tl = top as u32;
        let th = (top >> 32) as u32;
        // A window of at least 1 so the arithmetic holds with replay off.
        let w = self.size.clamp(1, u32::MAX as u64) as u32;
        let bottom = tl.wrapping_sub(w - 1);
        let high = if tl >= w - 1 {
            // The window lies within one 2^32 subspace.
            if seq_low >= bottom {
                th
            } else {
                th.wrapping_add(1)
            }
        } else if seq_low >= bottom {
            // The window spans two subspaces and seq is in the lower one
            // (there is none below the first: saturate).
            th.saturating_sub(1)
        } else {
            th
        };
        ((high as u64) << 32) | seq_low as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(w: &ReplayWindow, seq_low: u32) -> Result<u64, ReplayError> {
        let s = w.check(seq_low)?;
        assert!(w.accept(s));
        Ok(s)
    }

    #[test]
    fn rejects_duplicates_and_too_old() {
        let w = ReplayWindow::new(1024, false);
        assert_eq!(take(&w, 1), Ok(1));
        assert_eq!(w.check(1), Err(ReplayError::Replayed));
        assert_eq!(take(&w, 3000), Ok(3000));
        assert_eq!(take(&w, 3000 - 1023), Ok(1977), "oldest in the window");
        assert_eq!(
            w.check(3000 - 1024),
            Err(ReplayError::Replayed),
            "left of window"
        );
        assert_eq!(take(&w, 2500), Ok(2500));
        assert_eq!(w.check(2500), Err(ReplayError::Replayed));
        assert_eq!(w.check(0), Err(ReplayError::Zero));
    }

    #[test]
    fn check_does_not_change_state_until_accept() {
        let w = ReplayWindow::new(1024, false);
        assert_eq!(w.check(5), Ok(5));
        assert_eq!(
            w.check(5),
            Ok(5),
            "an unauthenticated packet leaves no trace"
        );
        assert_eq!(w.top(), 0);
    }

    #[test]
    fn window_of_at_least_1024_keeps_every_slot_distinct() {
        let w = ReplayWindow::new(1024, false);
        // Accept in reverse within the window: all distinct, all accepted.
        assert!(w.accept(2048));
        for s in (1025..2048).rev() {
            assert_eq!(take(&w, s as u32), Ok(s));
        }
        for s in 1025..=2048 {
            assert_eq!(w.check(s as u32), Err(ReplayError::Replayed), "{s}");
        }
    }

    #[test]
    fn windows_of_every_size_hold_exactly_their_size() {
        for size in [64, 1024, 1984, 2048, MAX_WINDOW] {
            let w = ReplayWindow::new(size, false);
            let top = 3 * size as u64;
            assert!(w.accept(top));
            for s in (top - size as u64 + 1..top).rev() {
                assert_eq!(take(&w, s as u32), Ok(s), "window {size}");
            }
            for s in top - size as u64 + 1..=top {
                assert_eq!(w.check(s as u32), Err(ReplayError::Replayed), "{size}: {s}");
            }
            let left = top - size as u64;
            assert_eq!(w.check(left as u32), Err(ReplayError::Replayed), "{size}");
        }
    }

    #[test]
    fn big_jump_clears_old_bits() {
        let w = ReplayWindow::new(1024, false);
        for s in 1..=100 {
            take(&w, s).unwrap();
        }
        take(&w, 1_000_000).unwrap();
        // Same block positions as 1..=100 modulo the ring: must be free now.
        for s in (1_000_000 - 1000)..1_000_000u32 {
            assert!(w.check(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn esn_infers_the_high_half_across_the_wrap() {
        let w = ReplayWindow::new(1024, true);
        assert!(w.accept(u32::MAX as u64 - 10));
        // Wire carries low 32 bits only: 5 after the wrap means 2^32 + 5.
        assert_eq!(take(&w, 5), Ok((1u64 << 32) + 5));
        // A late packet from before the wrap is still inside the window.
        assert_eq!(take(&w, u32::MAX - 3), Ok(u32::MAX as u64 - 3));
        assert_eq!(w.check(u32::MAX - 3), Err(ReplayError::Replayed));
        assert_eq!(w.top(), (1u64 << 32) + 5);
    }

    #[test]
    fn without_esn_the_sequence_never_wraps() {
        let w = ReplayWindow::new(64, false);
        assert!(w.accept(u32::MAX as u64));
        assert_eq!(w.check(1), Err(ReplayError::Replayed));
    }

    #[test]
    fn window_zero_only_refuses_zero() {
        let w = ReplayWindow::new(0, false);
        take(&w, 10).unwrap();
        assert_eq!(take(&w, 10), Ok(10));
        assert_eq!(w.check(0), Err(ReplayError::Zero));
    }
}
