//! One hashed timer wheel for all tunnels (DESIGN.md 4: "1M armed timers
//! must cost little"): arming, moving and firing a timer cost O(1), and a
//! tick looks at one slot, not at every tunnel.
//!
//! Each key has one deadline. A key sits in at most one slot at a time
//! when its deadline only moves later (the common case: traffic pushes the
//! idle ping back): the entry fires early, sees the later deadline and is
//! put back. Moving a deadline earlier adds an entry and leaves the old one
//! to be skipped when reached.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Slots in one turn of the wheel (a power of two).
const SLOTS: usize = 4096;

pub struct TimerWheel<K> {
    tick: Duration,
    origin: Instant,
    /// The next tick (counted from `origin`) whose slot has not been looked at.
    cursor: u64,
    slots: Vec<Vec<(K, Instant)>>,
    /// Each armed key: its deadline, and the time of its live wheel entry.
    armed: HashMap<K, (Instant, Instant)>,
}

impl<K: Copy + Eq + Hash> TimerWheel<K> {
    /// A wheel of `tick` resolution: timers fire up to one tick late.
    pub fn new(origin: Instant, tick: Duration) -> TimerWheel<K> {
        TimerWheel {
            tick: tick.max(Duration::from_micros(100)),
            origin,
            cursor: 0,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            armed: HashMap::new(),
        }
    }

    /// Number of armed keys.
    pub fn len(&self) -> usize {
        self.armed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.armed.is_empty()
    }

    /// Arms `key` for `at`, replacing its previous deadline; `None` disarms.
    pub fn set(&mut self, key: K, at: Option<Instant>) {
        let Some(at) = at else {
            self.armed.remove(&key);
            return;
        };
        match self.armed.get_mut(&key) {
            // Its entry fires no later than `at`: it will be put back then.
            Some((deadline, entry)) if *entry <= at => *deadline = at,
            _ => {
                self.armed.insert(key, (at, at));
                self.push(key, at);
            }
        }
    }

    /// The deadline of `key`, if armed.
    pub fn deadline(&self, key: &K) -> Option<Instant> {
        self.armed.get(key).map(|(d, _)| *d)
    }

    /// When `expire` may next have something to do: the end of the next
    /// non-empty slot among the next few ticks (or of the last of them).
    pub fn next_wakeup(&self) -> Option<Instant> {
        if self.armed.is_empty() {
            return None;
        }
        const LOOK_AHEAD: u64 = 64;
        let busy = (self.cursor..self.cursor + LOOK_AHEAD)
            .find(|t| !self.slots[slot_of(*t)].is_empty())
            .unwrap_or(self.cursor + LOOK_AHEAD);
        Some(self.time_of(busy + 1))
    }

    /// Disarms and returns every key whose deadline is at or before `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<K> {
        let mut fired = Vec::new();
        let target = self.tick_of(now);
        if target < self.cursor {
            return fired;
        }
        // Far behind (an idle stretch): one look at every slot is enough.
        let ticks = (target - self.cursor + 1).min(SLOTS as u64);
        let first = target + 1 - ticks;
        for t in first..=target {
            // Entries put back go at or after the next tick.
            self.cursor = t + 1;
            let entries = std::mem::take(&mut self.slots[slot_of(t)]);
            for (key, at) in entries {
                self.visit(key, at, now, &mut fired);
            }
        }
        fired
    }

    fn visit(&mut self, key: K, at: Instant, now: Instant, fired: &mut Vec<K>) {
        let Some(&(deadline, entry)) = self.armed.get(&key) else {
            return; // disarmed
        };
        if entry != at {
            return; // superseded by an earlier entry
        }
        if deadline <= now {
            self.armed.remove(&key);
            fired.push(key);
        } else {
            // Not yet: a later deadline, or a later turn of the wheel.
            self.armed.insert(key, (deadline, deadline));
            self.push(key, deadline);
        }
    }

    fn push(&mut self, key: K, at: Instant) {
        // Never behind the cursor: a past deadline fires on the next tick.
        let t = self.tick_of(at).max(self.cursor);
        self.slots[slot_of(t)].push((key, at));
    }

    fn tick_of(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.origin);
        (d.as_nanos() / self.tick.as_nanos()) as u64
    }

    fn time_of(&self, tick: u64) -> Instant {
        self.origin + self.tick * u32::try_from(tick).unwrap_or(u32::MAX)
    }
}

fn slot_of(tick: u64) -> usize {
    (tick as usize) & (SLOTS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(10);

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn timers_fire_at_their_deadline_within_one_tick() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, TICK);
        w.set(1u32, Some(ms(t0, 25)));
        w.set(2, Some(ms(t0, 1000)));
        assert!(w.expire(ms(t0, 20)).is_empty());
        assert_eq!(w.expire(ms(t0, 30)), [1]);
        assert!(w.expire(ms(t0, 990)).is_empty());
        assert_eq!(w.expire(ms(t0, 1000)), [2]);
        assert!(w.is_empty());
        assert_eq!(w.next_wakeup(), None);
    }

    #[test]
    fn moving_later_keeps_one_entry_and_fires_at_the_new_time() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, TICK);
        w.set(7u32, Some(ms(t0, 100)));
        for n in 1..=50 {
            w.set(7, Some(ms(t0, 100 + n * 10)));
        }
        let entries: usize = w.slots.iter().map(Vec::len).sum();
        assert_eq!(entries, 1, "pushing a deadline back adds no entry");
        assert!(w.expire(ms(t0, 500)).is_empty());
        assert_eq!(w.expire(ms(t0, 600)), [7]);
    }

    #[test]
    fn moving_earlier_or_disarming_wins_over_the_old_entry() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, TICK);
        w.set(1u32, Some(ms(t0, 500)));
        w.set(1, Some(ms(t0, 50)));
        assert_eq!(w.expire(ms(t0, 60)), [1]);
        assert!(w.expire(ms(t0, 600)).is_empty(), "the old entry is stale");
        w.set(2, Some(ms(t0, 700)));
        w.set(2, None);
        assert!(w.expire(ms(t0, 800)).is_empty());
    }

    #[test]
    fn deadlines_beyond_one_turn_and_idle_stretches_are_handled() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, TICK);
        let turn = TICK.as_millis() as u64 * SLOTS as u64;
        w.set(1u32, Some(ms(t0, turn * 3 + 5)));
        w.set(2, Some(ms(t0, 5)));
        // Nobody looked for ten turns: both fire, each once.
        let mut fired = w.expire(ms(t0, turn * 10));
        fired.sort();
        assert_eq!(fired, [1, 2]);
        // A deadline already past fires on the next look.
        w.set(3, Some(ms(t0, 1)));
        assert_eq!(w.expire(ms(t0, turn * 10 + 10)), [3]);
    }

    #[test]
    fn next_wakeup_points_at_the_first_busy_slot() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, TICK);
        w.set(1u32, Some(ms(t0, 105)));
        assert_eq!(w.next_wakeup(), Some(ms(t0, 110)));
    }

    #[test]
    fn a_million_timers_cost_one_slot_per_tick() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, TICK);
        // 1M tunnels with idle pings spread over 20 s.
        for k in 0..1_000_000u32 {
            w.set(k, Some(ms(t0, 1 + u64::from(k) % 20_000)));
        }
        // One tick fires only what is due in it (about 500 here).
        let fired = w.expire(ms(t0, 10));
        assert!((400..=600).contains(&fired.len()), "{}", fired.len());
        assert_eq!(w.len(), 1_000_000 - fired.len());
    }
}
