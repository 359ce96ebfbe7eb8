//! Inbound SPIs for negotiated CHILD SAs: a free slot of the data plane's
//! inbound table and the slot's next generation (see `dataplane::sa::spi`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use dataplane::sa::spi::{generation_of, make_spi, next_generation, slot_of, SLOT_COUNT};

use crate::ike::sa::SpiAllocator;

/// Released slots that wait before reuse; at a rekey storm's 2,000
/// rekeys/s, a tenth of a second, many publications.
const COOLING: usize = 256;

#[derive(Default)]
struct Slots {
    /// Slots never used yet start here.
    next_fresh: usize,
    /// Released slots, in the order they were released. One is ready once
    /// more than [`COOLING`] wait behind it: by then the workers have long
    /// left the snapshots that held the slot's old SA, so the new one is
    /// built in the slot's cell of the inbound table, not on the heap (see
    /// `dataplane::sa::inbound_table`).
    cooling: VecDeque<usize>,
    /// Cooled slots, the lowest reused first: the SAs gather in the low
    /// chunks of the inbound table as they are rekeyed, and the chunks
    /// above empty and give their memory back after a peak of tunnels.
    ready: BinaryHeap<Reverse<usize>>,
    /// Last generation used in each slot (index = slot).
    generation: Vec<u8>,
    /// Whether each slot is cooling or ready (index = slot).
    is_free: Vec<bool>,
    /// Slots held by manually keyed SAs (their SPIs are the operator's).
    reserved: HashSet<usize>,
    in_use: usize,
}

/// The slot table, shared by the IKE endpoint (which allocates through it)
/// and the driver (which reserves manual slots). Control plane only.
#[derive(Clone, Default)]
pub struct SpiSlots(Arc<Mutex<Slots>>);

impl SpiSlots {
    pub fn new() -> SpiSlots {
        SpiSlots::default()
    }

    /// Keeps `spi`'s slot away from negotiated SAs (a manual SA uses it).
    pub fn reserve(&self, spi: u32) {
        if let Ok(mut s) = self.0.lock() {
            s.reserved.insert(slot_of(spi));
        }
    }

    /// SPIs handed out and not yet released.
    pub fn in_use(&self) -> usize {
        self.0.lock().map(|s| s.in_use).unwrap_or(0)
    }
}

impl SpiAllocator for SpiSlots {
    fn allocate(&mut self) -> Option<u32> {
        let mut s = self.0.lock().ok()?;
        // All fresh slots used: the cooling ones are all there is.
        let cooling = if s.next_fresh >= SLOT_COUNT {
            0
        } else {
            COOLING
        };
        while s.cooling.len() > cooling {
            if let Some(slot) = s.cooling.pop_front() {
                s.ready.push(Reverse(slot));
            }
        }
        let slot = loop {
            let slot = match s.ready.pop() {
                Some(Reverse(slot)) => {
                    s.is_free[slot] = false;
                    slot
                }
                None => {
                    // Slot 0 stays unused: with generation 1 it would give SPI 2^24,
                    // fine, but keeping it free makes a zeroed SPI never valid.
                    let slot = s.next_fresh.max(1);
                    if slot >= SLOT_COUNT {
                        return None;
                    }
                    s.next_fresh = slot + 1;
                    slot
                }
            };
            if !s.reserved.contains(&slot) {
                break slot;
            }
        };
        if s.generation.len() <= slot {
            s.generation.resize(slot + 1, 0);
        }
        let g = next_generation(s.generation[slot]);
        s.generation[slot] = g;
        s.in_use += 1;
        make_spi(slot, g)
    }

    fn release(&mut self, spi: u32) {
        let Ok(mut s) = self.0.lock() else { return };
        let slot = slot_of(spi);
        // Only the SPI currently issued for the slot frees it.
        if s.generation.get(slot) == Some(&generation_of(spi))
            && !s.is_free.get(slot).is_some_and(|f| *f)
        {
            if s.is_free.len() <= slot {
                s.is_free.resize(slot + 1, false);
            }
            s.is_free[slot] = true;
            s.cooling.push_back(slot);
            s.in_use = s.in_use.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_with_a_new_generation_and_reserved_ones_skipped() {
        let mut a = SpiSlots::new();
        a.reserve(make_spi(2, 0).unwrap());
        let s1 = a.allocate().unwrap();
        let s2 = a.allocate().unwrap();
        assert_eq!((slot_of(s1), slot_of(s2)), (1, 3), "slot 2 is reserved");
        assert!(s1 > 255 && s2 > 255);
        a.release(s1);
        a.release(s1); // twice: no double free
        assert_eq!(a.in_use(), 1);
        // Slot 1 cools while COOLING other slots are released after it.
        let others: Vec<u32> = (0..COOLING).map(|_| a.allocate().unwrap()).collect();
        assert!(
            others.iter().all(|s| slot_of(*s) != 1),
            "a released slot cools first"
        );
        others.iter().for_each(|s| a.release(*s));
        let s3 = a.allocate().unwrap();
        assert_eq!(slot_of(s3), 1, "then the lowest cooled slot comes back");
        assert_ne!(s3, s1, "a reused slot gets a new generation");
        assert_eq!(a.in_use(), 2);
        a.release(s1); // stale SPI of a reused slot: ignored
        assert_eq!(a.in_use(), 2);
    }

    #[test]
    fn rekeyed_sas_gather_in_the_lowest_slots_after_a_peak() {
        let mut a = SpiSlots::new();
        // A peak of 4,000, then all but every 20th go.
        let peak: Vec<u32> = (0..4000).map(|_| a.allocate().unwrap()).collect();
        // The highest go first (first-in first-out reuse hands those out
        // first again).
        for (_, s) in peak.iter().enumerate().rev().filter(|(i, _)| i % 20 != 0) {
            a.release(*s);
        }
        let mut live: Vec<u32> = peak.iter().step_by(20).copied().collect();
        assert!(live.iter().any(|s| slot_of(*s) > 3900));
        // Two rounds of rekeys: each a new SPI, then the old one released.
        for _ in 0..2 {
            for s in live.iter_mut() {
                let new = a.allocate().unwrap();
                a.release(std::mem::replace(s, new));
            }
        }
        // 200 live, in the lowest slots (first-in first-out reuse left
        // them in the highest).
        let highest = live.iter().map(|s| slot_of(*s)).max().unwrap();
        assert!(highest < 1000, "highest live slot {highest}");
        assert_eq!(a.in_use(), 200);
    }
}
