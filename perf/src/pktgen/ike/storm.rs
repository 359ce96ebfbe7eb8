//! A rekey storm during the traffic phase: every client rekeys its CHILD SA
//! once per round, the rekeys spread evenly over a given time
//! (`storm_schedule`), while its traffic flows. Each rekey is a new epoch
//! as docs/ping.md has it: the client pings on the new pair and moves its
//! data there only after the pong; it keeps receiving on the old pair for
//! the grace period, then deletes it. The traffic thread hands IKE
//! datagrams and pongs in ([`Hook`]) and applies the SA changes that come
//! out.

use std::time::{Duration, Instant};

use controlplane::ike::sa::ChildSa;
use controlplane::timer_wheel::TimerWheel;
use controlplane::tunnel::EpochSpis;
use dataplane::{Packet, PacketPool};
use serde::Serialize;

use super::{fake_local, Handshakes, Phase};
use crate::pktgen::engine::{Edit, Hook};
use crate::pktgen::ike::Schedule;

/// What a storm did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Rekeys {
    /// CREATE_CHILD_SA exchanges started.
    pub started: u64,
    /// New pairs that answered their ping and carry the data.
    pub completed: u64,
    /// Rekeys refused, or whose new pair never answered.
    pub failed: u64,
    /// The generator's own time on IKE and epochs during the traffic phase
    /// (the hook's calls), in ns: what the storm takes from its traffic.
    pub generator_work_ns: u64,
    /// A control run: the storm's rounds were timed and measured, but no
    /// client rekeyed, so its figures are the method's noise floor.
    pub control: bool,
}

/// The clients in `order` rekey at the times `schedule` gives, from `start`.
pub(super) struct Storm {
    start: Instant,
    schedule: Schedule,
    order: Vec<usize>,
    /// Rekeys started so far, over all rounds.
    next: usize,
    /// Timers of clients with a rekey under way (ping retries, the old
    /// pair's grace): one wheel, so a poll costs what is due, not what is
    /// busy.
    timers: TimerWheel<usize>,
    pub(super) counts: Rekeys,
}

/// Buffers the hook keeps for its IKE messages and pings, and those it
/// leaves the engine (a few receive bursts' worth).
const HOOK_SPARE_BUFFERS: usize = 64;
const ENGINE_KEEPS: usize = 256;

/// A machine timer further out than this is its idle ping, which the
/// traffic phase does not run.
const IDLE: Duration = Duration::from_secs(3600);

impl Handshakes {
    /// Every client that is up rekeys once a round, as `schedule` has it,
    /// counted from now; with `control`, none does, and only the rounds'
    /// figures are taken. Call before the traffic phase takes the sockets.
    pub fn plan_rekey_storm(&mut self, schedule: Schedule, control: bool) {
        let order: Vec<usize> = (0..self.clients.len())
            .filter(|&i| !control && self.clients.get(i).is_some_and(|c| c.phase == Phase::Up))
            .collect();
        // The old pair stays until its grace period is over; we delete it.
        self.ep.set_defer_rekeyed_delete(true);
        let now = Instant::now();
        self.storm = Some(Storm {
            start: now,
            schedule,
            order,
            next: 0,
            timers: TimerWheel::new(now, Duration::from_millis(1)),
            counts: Rekeys {
                control,
                ..Rekeys::default()
            },
        });
    }

    /// What the storm did so far.
    pub fn rekeys(&self) -> Option<Rekeys> {
        self.storm.as_ref().map(|s| s.counts)
    }

    /// Counts into the storm's figures (if a storm is planned).
    pub(super) fn count(&mut self, f: impl FnOnce(&mut Rekeys)) {
        if let Some(s) = self.storm.as_mut() {
            f(&mut s.counts);
        }
    }

    /// A rekey's new pair is up: receive on it at once, ping on it.
    pub(super) fn rekey_up(&mut self, now: Instant, c: &ChildSa) {
        let Some(&i) = self.by_ike.get(&c.ike_sa.0) else {
            return;
        };
        let Ok(sas) = self.build_sas(i, c) else {
            self.count(|r| r.failed += 1);
            return;
        };
        self.edits.push(Edit::AddInbound {
            client: i as u32,
            sa: sas.0.clone(),
        });
        self.by_spi.insert(c.inbound_spi, i);
        let Some(st) = self.clients.get_mut(i) else {
            return;
        };
        st.next_sas = Some(sas);
        if let Some(m) = st.machine.as_mut() {
            m.handle_epoch_ready(
                now,
                EpochSpis {
                    inbound: c.inbound_spi,
                    outbound: c.outbound_spi,
                },
            );
        }
        self.actions(now, i);
        self.rearm(now, i);
    }

    /// Puts client `i`'s next machine timer (if it is not the idle ping)
    /// on the storm's wheel.
    pub(super) fn rearm(&mut self, now: Instant, i: usize) {
        let next = self
            .clients
            .get(i)
            .and_then(|c| c.machine.as_ref())
            .and_then(|m| m.next_timeout())
            .filter(|t| *t < now + IDLE);
        if let Some(s) = self.storm.as_mut() {
            s.timers.set(i, next);
        }
    }

    /// The old pair's grace period is over: stop receiving on it, delete it.
    pub(super) fn retire(&mut self, now: Instant, i: usize, spi: u32) {
        self.edits.push(Edit::RemoveInbound { spi });
        self.by_spi.remove(&spi);
        if let Some(ike) = self.clients.get(i).and_then(|c| c.ike) {
            self.ep.delete_child_sa(now, ike, spi);
        }
    }

    /// Starts the rekeys that are due.
    fn start_due_rekeys(&mut self, now: Instant) {
        loop {
            let Some(s) = self.storm.as_mut() else {
                return;
            };
            let Some((at, index)) = s.schedule.due(s.next, s.order.len()) else {
                return;
            };
            let Some(&i) = s.order.get(index) else {
                return;
            };
            if s.start + at > now {
                return;
            }
            s.next += 1;
            let (ike, spi) = match self.clients.get(i) {
                Some(c) => (c.ike, c.sas.as_ref().map(|s| s.0.spi)),
                None => continue,
            };
            let started = match (ike, spi) {
                (Some(ike), Some(spi)) => self.ep.rekey_child_sa(now, ike, spi),
                _ => false,
            };
            self.count(|r| {
                if started {
                    r.started += 1;
                } else {
                    r.failed += 1;
                }
            });
        }
    }

    /// Runs the timers of clients with a rekey under way that are due.
    fn busy_timeouts(&mut self, now: Instant) {
        let due = match self.storm.as_mut() {
            Some(s) => s.timers.expire(now),
            None => return,
        };
        for i in due {
            if let Some(m) = self.clients.get_mut(i).and_then(|c| c.machine.as_mut()) {
                m.handle_timeout(now);
            }
            self.actions(now, i);
            self.rearm(now, i);
        }
    }

    /// Adds the time since `from` to the generator's storm work. Summed in
    /// nanoseconds: most calls take well under a microsecond.
    fn worked_since(&mut self, from: Instant) {
        let ns = from.elapsed().as_nanos() as u64;
        self.count(|r| r.generator_work_ns += ns);
    }
}

impl Hook for Handshakes {
    fn datagram(&mut self, now: Instant, lane: usize, p: &Packet) {
        if p.meta.remote == self.target.natt && p.data().get(..4) == Some(&[0, 0, 0, 0]) {
            self.ep.handle_datagram(
                now,
                fake_local(lane, 4500),
                self.target.endpoint_natt(),
                p.data(),
            );
            self.worked_since(now);
        }
    }

    fn control(&mut self, now: Instant, client: u32, spi: u32, payload: &[u8]) {
        let i = client as usize;
        if let Some(m) = self.clients.get_mut(i).and_then(|c| c.machine.as_mut()) {
            m.handle_control(now, spi, payload);
        }
        self.actions(now, i);
        self.rearm(now, i);
        self.worked_since(now);
    }

    fn poll(
        &mut self,
        now: Instant,
        edits: &mut Vec<Edit>,
        outbox: &mut Vec<(usize, Packet)>,
        pool: &mut PacketPool,
    ) {
        let from = Instant::now();
        // What this hook sends comes back to the engine's pool: take
        // buffers back, or every IKE message and ping is a fresh (zeroed)
        // allocation and the engine's pool grows by it.
        while self.pool.available() < HOOK_SPARE_BUFFERS && pool.available() > ENGINE_KEEPS {
            self.pool.put(pool.get());
        }
        if self.ep.next_timeout().is_some_and(|t| t <= now) {
            self.ep.handle_timeout(now);
        }
        self.start_due_rekeys(now);
        self.events(now);
        self.busy_timeouts(now);
        self.flush();
        edits.append(&mut self.edits);
        outbox.append(&mut self.outbox);
        self.worked_since(from);
    }
}
