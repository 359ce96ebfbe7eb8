//! esprit's epochs on negotiated tunnels (docs/ping.md): one `Tunnel`
//! machine per CHILD SA lineage, fed by IKE events, control messages from
//! the workers and the SAs' counters, and turned into data-plane edits,
//! sealed pings and IKE requests by the driver.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::sa::{OutboundSa, SaTables, TunnelId};

use crate::ike::sa::IkeSaId;
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
    pub peer: Option<String>,
    /// Outbound SAs not yet carrying data, by SPI (epochs being probed).
    pub held: HashMap<u32, Arc<OutboundSa>>,
    /// Inbound packets counted at the last look (traffic seen).
    pub seen_packets: u64,
}

/// All negotiated tunnels' machines.
#[derive(Default)]
pub struct Epochs {
    pub tunnels: HashMap<TunnelId, EpochTunnel>,
    /// Old inbound SPIs of rekeys we started, deleted after their grace.
    pub to_delete_after_grace: HashMap<u32, TunnelId>,
}

impl Epochs {
    /// The machine for a tunnel, created on its first epoch.
    pub fn machine(
        &mut self,
        tunnel: TunnelId,
        role: Role,
        settings: Arc<Settings>,
        ike: IkeSaId,
        peer: Option<String>,
        now: Instant,
    ) -> &mut EpochTunnel {
        self.tunnels.entry(tunnel).or_insert_with(|| EpochTunnel {
            machine: Tunnel::new(role, settings, now, rand::random()),
            ike,
            peer,
            held: HashMap::new(),
            seen_packets: 0,
        })
    }

    /// Feeds each tunnel whether its inbound SAs counted new packets (one
    /// pass over the inbound table).
    pub fn notice_traffic(&mut self, now: Instant, tables: &SaTables) {
        let mut per_tunnel: HashMap<TunnelId, u64> = HashMap::new();
        for (_, s) in tables.inbound.iter() {
            if self.tunnels.contains_key(&s.sa.tunnel) {
                *per_tunnel.entry(s.sa.tunnel).or_default() += s.sa.counters.packets();
            }
        }
        for (tunnel, packets) in per_tunnel {
            if let Some(e) = self.tunnels.get_mut(&tunnel) {
                if packets != e.seen_packets {
                    e.seen_packets = packets;
                    e.machine.handle_traffic_seen(now);
                }
            }
        }
    }

    /// The earliest timer of any machine.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.tunnels
            .values()
            .filter_map(|e| e.machine.next_timeout())
            .min()
    }

    /// Fires due timers and collects every machine's actions.
    pub fn due_actions(&mut self, now: Instant) -> Vec<(TunnelId, Action)> {
        let mut out = Vec::new();
        for (tunnel, e) in self.tunnels.iter_mut() {
            if e.machine.next_timeout().is_some_and(|t| t <= now) {
                e.machine.handle_timeout(now);
            }
            while let Some(a) = e.machine.poll_action() {
                out.push((*tunnel, a));
            }
        }
        out
    }

    /// Forgets a tunnel that ended.
    pub fn forget(&mut self, tunnel: TunnelId) {
        self.tunnels.remove(&tunnel);
        self.to_delete_after_grace.retain(|_, t| *t != tunnel);
    }
}

/// How often the driver looks at SA counters for traffic.
pub const TRAFFIC_CHECK: Duration = Duration::from_millis(500);

/// An epoch's SPIs as the machine wants them.
pub fn spis(inbound: u32, outbound: u32) -> EpochSpis {
    EpochSpis { inbound, outbound }
}
