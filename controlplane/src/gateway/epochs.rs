//! esprit's epochs on negotiated tunnels (docs/ping.md): one `Tunnel`
//! machine per CHILD SA lineage, fed by IKE events, control messages from
//! the workers and the SAs' counters, and turned into data-plane edits,
//! sealed pings and IKE requests by the driver.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::sa::{OutboundSa, SaTables, TunnelId};

use crate::ike::sa::IkeSaId;
use crate::timer_wheel::TimerWheel;
use crate::tunnel::{Action, EpochSpis, Mode, Role, Settings, Tunnel};

/// Settings of a peer section.
pub fn settings(l: &config::Liveness) -> Settings {
    Settings {
        mode: match l.mode {
            config::LivenessMode::EspPing => Mode::EspPing,
            config::LivenessMode::Ike => Mode::Ike,
            config::LivenessMode::Off => Mode::Off,
        },
        ping_timeout: l.ping_timeout,
        ping_retries: l.ping_retries,
        idle_ping_after: l.idle_ping_after,
        rekey_attempts: l.rekey_attempts,
        ignore_peer_rekey: l.ignore_peer_rekey,
        grace_period: l.grace_period,
    }
}

/// One negotiated tunnel's epoch state.
pub struct EpochTunnel {
    pub machine: Tunnel,
    /// The IKE SA its CHILD SAs belong to now.
    pub ike: IkeSaId,
    pub peer: Option<Arc<str>>,
    /// Outbound SAs not yet carrying data (epochs being probed; rarely
    /// more than one, so a list).
    pub held: HeldSas,
    /// Inbound packets counted at the last look (traffic seen).
    pub seen_packets: u64,
    /// The sum being taken in the current look.
    counting: u64,
}

/// All negotiated tunnels' machines, their timers on one wheel, and an
/// index by IKE SA: no operation looks at every tunnel but the periodic
/// traffic check.
pub struct Epochs {
    /// Boxed: a map grown to 2^k buckets would hold a whole machine in
    /// every empty one.
    tunnels: HashMap<TunnelId, Box<EpochTunnel>>,
    /// Mostly one tunnel per IKE SA: a short list each.
    by_ike: HashMap<IkeSaId, Vec<TunnelId>>,
    wheel: TimerWheel<TunnelId>,
    /// Machines handled since their actions were last collected.
    touched: Vec<TunnelId>,
    /// The last `now` seen, for `next_timeout` while machines are touched.
    last_now: Instant,
    /// Old inbound SPIs of rekeys we started, deleted after their grace.
    pub to_delete_after_grace: HashMap<u32, TunnelId>,
}

/// A tunnel's outbound SAs waiting for their epoch's pong, by SPI.
#[derive(Default)]
pub struct HeldSas(Vec<Arc<OutboundSa>>);

impl HeldSas {
    pub fn insert(&mut self, spi: u32, sa: Arc<OutboundSa>) {
        self.remove(&spi);
        self.0.push(sa);
    }

    pub fn get(&self, spi: &u32) -> Option<&Arc<OutboundSa>> {
        self.0.iter().find(|s| s.spi == *spi)
    }

    pub fn remove(&mut self, spi: &u32) -> Option<Arc<OutboundSa>> {
        let i = self.0.iter().position(|s| s.spi == *spi)?;
        Some(self.0.swap_remove(i))
    }

    pub fn values(&self) -> impl Iterator<Item = &Arc<OutboundSa>> {
        self.0.iter()
    }
}

/// Resolution of the tunnels' timers (pings, grace periods).
const TIMER_TICK: Duration = Duration::from_millis(5);

impl Epochs {
    pub fn new(now: Instant) -> Epochs {
        Epochs {
            tunnels: HashMap::new(),
            by_ike: HashMap::new(),
            wheel: TimerWheel::new(now, TIMER_TICK),
            touched: Vec::new(),
            last_now: now,
            to_delete_after_grace: HashMap::new(),
        }
    }

    /// The machine for a tunnel, created on its first epoch; its CHILD SAs
    /// now belong to `ike`.
    pub fn machine(
        &mut self,
        tunnel: TunnelId,
        role: Role,
        settings: Arc<Settings>,
        ike: IkeSaId,
        peer: Option<Arc<str>>,
        now: Instant,
    ) -> &mut EpochTunnel {
        let e = self.tunnels.entry(tunnel).or_insert_with(|| {
            Box::new(EpochTunnel {
                machine: Tunnel::new(role, settings, now, rand::random()),
                ike,
                peer,
                held: HeldSas::default(),
                seen_packets: 0,
                counting: 0,
            })
        });
        if e.ike != ike {
            if let Some(list) = self.by_ike.get_mut(&e.ike) {
                list.retain(|t| *t != tunnel);
            }
            e.ike = ike;
        }
        let list = self.by_ike.entry(ike).or_default();
        if !list.contains(&tunnel) {
            list.push(tunnel);
        }
        self.touched.push(tunnel);
        e
    }

    /// A tunnel's machine, to feed it (its actions are collected next).
    pub fn get_mut(&mut self, tunnel: TunnelId) -> Option<&mut EpochTunnel> {
        let e = self.tunnels.get_mut(&tunnel)?;
        self.touched.push(tunnel);
        Some(e)
    }

    pub fn get(&self, tunnel: TunnelId) -> Option<&EpochTunnel> {
        self.tunnels.get(&tunnel).map(|e| &**e)
    }

    /// The tunnels whose CHILD SAs belong to `ike`.
    pub fn tunnels_of(&self, ike: IkeSaId) -> Vec<TunnelId> {
        self.by_ike.get(&ike).cloned().unwrap_or_default()
    }

    /// Feeds every tunnel of `ike`.
    pub fn for_ike(&mut self, ike: IkeSaId, mut f: impl FnMut(&mut EpochTunnel)) {
        for t in self.tunnels_of(ike) {
            if let Some(e) = self.get_mut(t) {
                f(e);
            }
        }
    }

    /// The CHILD SAs of IKE SA `old` moved to its successor `new`.
    pub fn ike_rekeyed(&mut self, old: IkeSaId, new: IkeSaId) {
        let Some(moved) = self.by_ike.remove(&old) else {
            return;
        };
        for t in &moved {
            if let Some(e) = self.tunnels.get_mut(t) {
                e.ike = new;
            }
        }
        let list = self.by_ike.entry(new).or_default();
        for t in moved {
            if !list.contains(&t) {
                list.push(t);
            }
        }
    }

    /// Feeds each tunnel whether its inbound SAs counted new packets (one
    /// pass over the inbound table, summing into the tunnels themselves).
    /// Traffic only moves a machine's idle deadline later, so the tunnel is
    /// not queued for work: its wheel entry fires at the old deadline, finds
    /// nothing due and is set again. With every tunnel busy, a check then
    /// costs the pass, not a re-arm of every tunnel.
    pub fn notice_traffic(&mut self, now: Instant, tables: &SaTables) {
        for (_, s) in tables.inbound.iter() {
            if let Some(e) = self.tunnels.get_mut(&s.tunnel) {
                e.counting += s.counters.packets();
            }
        }
        for e in self.tunnels.values_mut() {
            let packets = std::mem::take(&mut e.counting);
            if packets != e.seen_packets {
                e.seen_packets = packets;
                e.machine.handle_traffic_seen(now);
            }
        }
    }

    /// When `due_actions` next has work.
    pub fn next_timeout(&self) -> Option<Instant> {
        if self.touched.is_empty() {
            self.wheel.next_wakeup()
        } else {
            Some(self.last_now)
        }
    }

    /// Fires due timers and collects the actions of every machine that
    /// fired or was fed since the last call.
    pub fn due_actions(&mut self, now: Instant) -> Vec<(TunnelId, Action)> {
        self.last_now = now;
        let fired = self.wheel.expire(now);
        for t in &fired {
            if let Some(e) = self.tunnels.get_mut(t) {
                if e.machine.next_timeout().is_some_and(|d| d <= now) {
                    e.machine.handle_timeout(now);
                }
            }
        }
        let mut work = std::mem::take(&mut self.touched);
        work.extend(fired);
        work.sort_unstable();
        work.dedup();
        let mut out = Vec::new();
        for t in work {
            let Some(e) = self.tunnels.get_mut(&t) else {
                continue;
            };
            while let Some(a) = e.machine.poll_action() {
                out.push((t, a));
            }
            self.wheel.set(t, e.machine.next_timeout());
        }
        out
    }

    /// Forgets a tunnel that ended.
    pub fn forget(&mut self, tunnel: TunnelId) {
        if let Some(e) = self.tunnels.remove(&tunnel) {
            if let Some(list) = self.by_ike.get_mut(&e.ike) {
                list.retain(|t| *t != tunnel);
                if list.is_empty() {
                    self.by_ike.remove(&e.ike);
                }
            }
        }
        self.wheel.set(tunnel, None);
        self.to_delete_after_grace.retain(|_, t| *t != tunnel);
    }
}

/// How often the driver looks at SA counters for traffic: a fifth of the
/// shortest `idle_ping_after` (the idle ping comes up to that much late),
/// within these bounds. Each look is a pass over every inbound SA.
pub fn traffic_check_every(idle_ping_after: impl Iterator<Item = Duration>) -> Duration {
    idle_ping_after
        .min()
        .map_or(MAX_TRAFFIC_CHECK, |d| d / 5)
        .clamp(MIN_TRAFFIC_CHECK, MAX_TRAFFIC_CHECK)
}

const MIN_TRAFFIC_CHECK: Duration = Duration::from_millis(200);
const MAX_TRAFFIC_CHECK: Duration = Duration::from_secs(5);

/// An epoch's SPIs as the machine wants them.
pub fn spis(inbound: u32, outbound: u32) -> EpochSpis {
    EpochSpis { inbound, outbound }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::Mode;

    fn settings() -> Arc<Settings> {
        Arc::new(Settings {
            mode: Mode::EspPing,
            ping_timeout: Duration::from_millis(500),
            ping_retries: 2,
            idle_ping_after: Duration::from_secs(20),
            rekey_attempts: 1,
            ignore_peer_rekey: false,
            grace_period: Duration::from_secs(1),
        })
    }

    fn pings(actions: &[(TunnelId, Action)]) -> usize {
        actions
            .iter()
            .filter(|(_, a)| matches!(a, Action::SendControl { .. }))
            .count()
    }

    #[test]
    fn timers_fire_through_the_wheel_for_many_tunnels() {
        let t0 = Instant::now();
        let mut e = Epochs::new(t0);
        let n = 20_000u32;
        for t in 0..n {
            let m = e.machine(
                t,
                Role::Client,
                settings(),
                IkeSaId(u64::from(t % 100)),
                None,
                t0,
            );
            m.machine.handle_epoch_ready(t0, spis(t, t));
        }
        assert_eq!(
            pings(&e.due_actions(t0)),
            n as usize,
            "each pings its epoch"
        );
        // Nothing is due before the ping timeout...
        assert!(e.due_actions(t0 + Duration::from_millis(400)).is_empty());
        // ...then every tunnel re-pings, found by the wheel.
        let later = t0 + Duration::from_millis(510);
        assert_eq!(pings(&e.due_actions(later)), n as usize);
        assert!(e.next_timeout().is_some());
    }

    /// A client tunnel up on its first epoch (pinged and answered) at
    /// `t0`, with an inbound SA in `tables` that has counted no packet.
    fn up_with_an_inbound_sa(
        e: &mut Epochs,
        tables: &mut SaTables,
        t0: Instant,
    ) -> Arc<dataplane::sa::InboundSa> {
        let m = e.machine(7, Role::Client, settings(), IkeSaId(1), None, t0);
        m.machine.handle_epoch_ready(t0, spis(0x100, 0x200));
        let ping = e
            .due_actions(t0)
            .into_iter()
            .find_map(|(_, a)| match a {
                Action::SendControl { payload, .. } => Some(payload),
                _ => None,
            })
            .expect("the first epoch is pinged");
        let mut pong = crate::tunnel::PingMsg::decode(&ping).unwrap();
        pong.kind = crate::tunnel::Kind::Pong;
        let m = e.get_mut(7).unwrap();
        m.machine.handle_control(t0, 0x100, &pong.encode());
        assert_eq!(
            m.machine.stats().pongs_received,
            1,
            "{:?}",
            m.machine.stats()
        );
        let sa = dataplane::testkit::inbound_sa(0x100, 7);
        tables.install_inbound(sa.clone()).unwrap();
        let _ = e.due_actions(t0);
        sa
    }

    #[test]
    fn traffic_postpones_the_idle_ping_without_queueing_the_tunnel() {
        let t0 = Instant::now();
        let (mut e, mut tables) = (Epochs::new(t0), SaTables::default());
        let sa = up_with_an_inbound_sa(&mut e, &mut tables, t0);
        let idle_at = e.wheel.deadline(&7).expect("the idle ping is armed");
        assert_eq!(idle_at.duration_since(t0).as_secs(), 20);
        // Traffic at 15 s: nothing queued, the wheel keeps the old deadline.
        let t1 = t0 + Duration::from_secs(15);
        sa.counters.add(64);
        e.notice_traffic(t1, &tables);
        assert!(e.touched.is_empty(), "no work queued");
        assert_eq!(e.wheel.deadline(&7), Some(idle_at));
        // The old deadline fires, finds the tunnel busy, and sets the next.
        assert_eq!(pings(&e.due_actions(idle_at)), 0);
        let next = e.wheel.deadline(&7).expect("set again");
        assert_eq!(next.duration_since(t1).as_secs(), 20);
        assert_eq!(
            pings(&e.due_actions(next)),
            1,
            "idle 20 s after the traffic"
        );
        // Without new packets a later check changes nothing.
        e.notice_traffic(next, &tables);
        assert_eq!(pings(&e.due_actions(next + Duration::from_millis(1))), 0);
    }

    #[test]
    fn traffic_is_checked_often_enough_for_the_shortest_idle_ping() {
        let s = |v: &[u64]| traffic_check_every(v.iter().map(|&x| Duration::from_millis(x)));
        assert_eq!(s(&[20_000]), Duration::from_secs(4));
        assert_eq!(s(&[20_000, 1_000]), Duration::from_millis(200));
        assert_eq!(s(&[]), Duration::from_secs(5));
        assert_eq!(s(&[3_600_000]), Duration::from_secs(5));
    }

    #[test]
    fn the_ike_index_follows_rekeys_and_forgotten_tunnels() {
        let t0 = Instant::now();
        let mut e = Epochs::new(t0);
        for t in 0..3 {
            e.machine(t, Role::Server, settings(), IkeSaId(1), None, t0);
        }
        e.machine(9, Role::Server, settings(), IkeSaId(2), None, t0);
        e.ike_rekeyed(IkeSaId(1), IkeSaId(5));
        let mut of5 = e.tunnels_of(IkeSaId(5));
        of5.sort();
        assert_eq!(of5, [0, 1, 2]);
        assert!(e.tunnels_of(IkeSaId(1)).is_empty());
        assert_eq!(e.get(1).map(|x| x.ike), Some(IkeSaId(5)));
        e.forget(1);
        let mut of5 = e.tunnels_of(IkeSaId(5));
        of5.sort();
        assert_eq!(of5, [0, 2]);
        // A tunnel whose new epoch comes on another IKE SA moves over.
        e.machine(9, Role::Server, settings(), IkeSaId(5), None, t0);
        assert_eq!(e.tunnels_of(IkeSaId(5)).len(), 3);
        assert!(e.tunnels_of(IkeSaId(2)).is_empty());
    }
}
