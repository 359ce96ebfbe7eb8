//! The set-up phase: every client runs IKE_SA_INIT and IKE_AUTH with the
//! gateway (one sans-IO endpoint holds them all), gets an inner address
//! from its pool, then pings on its first epoch and waits for the pong
//! (docs/ping.md) before any data may flow. Bounded: at most `in_flight`
//! handshakes at a time, and a deadline.
//!
//! Each client presents NAT-D hashes of a private address that names its
//! socket (`fake_local`), so both ends see a NAT (RFC 7296 2.23): the
//! client moves to the NAT-T port and the gateway sends ESP-in-UDP to the
//! source it observes, as for real clients behind NAT. Many clients share
//! one socket; SPIs keep them apart.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use controlplane::ike::sa::{ChildSa, Event, IkeEndpoint, IkeSaId, SequentialSpis};
use controlplane::tunnel::{Action, EpochSpis, Mode, Role, Settings, Tunnel};
use dataplane::esp::{next_header, open, seal};
use dataplane::packet::Encap;
use dataplane::port::udp::UdpPort;
use dataplane::port::Port;
use dataplane::sa::{HardLimits, InboundSa, InboundSpec, OutboundSa, OutboundSpec};
use dataplane::{Packet, PacketPool};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use super::policy::{ClientPolicy, Target};
use crate::pktgen::clients::Client;
use crate::pktgen::engine::{Edit, Lane};
use crate::pktgen::report::{Setup, Teardown};

/// Socket `k`'s clients claim to be at 10.255.k.k (high, low byte).
const FAKE_BASE: u32 = u32::from_be_bytes([10, 255, 0, 0]);

fn fake_local(lane: usize, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(FAKE_BASE + lane as u32)), port)
}

fn lane_of(fake: SocketAddr) -> Option<usize> {
    match fake.ip() {
        IpAddr::V4(a) => usize::try_from(u32::from(a).checked_sub(FAKE_BASE)?).ok(),
        IpAddr::V6(_) => None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Waiting,
    Ike,
    Probing,
    Up,
    Failed,
}

struct ClientState {
    lane: usize,
    phase: Phase,
    ike: Option<IkeSaId>,
    inner: Option<IpAddr>,
    sas: Option<(Arc<InboundSa>, Arc<OutboundSa>)>,
    machine: Option<Tunnel>,
    /// A rekey's new pair, until its pong moves the data there.
    next_sas: Option<(Arc<InboundSa>, Arc<OutboundSa>)>,
}

/// What the set-up phase may use.
#[derive(Clone, Debug)]
pub struct HandshakeOptions {
    /// Handshakes in progress at most.
    pub in_flight: usize,
    /// Give up on clients not up by then.
    pub timeout: Duration,
    pub progress: bool,
}

/// All clients' IKE and epoch state, and their sockets.
pub struct Handshakes {
    ep: IkeEndpoint,
    ports: Vec<UdpPort>,
    pool: PacketPool,
    target: Target,
    policy: ClientPolicy,
    settings: Arc<Settings>,
    clients: Vec<ClientState>,
    by_ike: HashMap<u64, usize>,
    by_spi: HashMap<u32, usize>,
    probing: Vec<usize>,
    rng: StdRng,
    next: usize,
    established: u64,
    up: u64,
    failed: u64,
    /// While the traffic phase owns the sockets: what to send, and the
    /// changes to the clients' SAs (see `storm`).
    outbox: Vec<(usize, Packet)>,
    edits: Vec<Edit>,
    storm: Option<storm::Storm>,
}

#[path = "storm.rs"]
mod storm;
pub use storm::Rekeys;

impl Handshakes {
    pub fn new(
        ports: Vec<UdpPort>,
        target: Target,
        policy: ClientPolicy,
        clients: usize,
    ) -> Handshakes {
        let lanes = ports.len().max(1);
        Handshakes {
            ep: IkeEndpoint::new(
                Box::new(StdRng::from_os_rng()),
                Box::new(SequentialSpis::starting_at(0x1000)),
            ),
            ports,
            pool: PacketPool::with_capacity(256),
            target,
            policy,
            settings: Arc::new(Settings {
                mode: Mode::EspPing,
                ping_timeout: Duration::from_secs(1),
                ping_retries: 3,
                // The traffic phase answers no pings: keep the client
                // machine from probing on its own while it runs.
                idle_ping_after: Duration::from_secs(24 * 3600),
                rekey_attempts: 0,
                ignore_peer_rekey: true,
                grace_period: Duration::from_secs(1),
            }),
            clients: (0..clients)
                .map(|i| ClientState {
                    lane: i % lanes,
                    phase: Phase::Waiting,
                    ike: None,
                    inner: None,
                    sas: None,
                    machine: None,
                    next_sas: None,
                })
                .collect(),
            by_ike: HashMap::new(),
            by_spi: HashMap::new(),
            probing: Vec::new(),
            rng: StdRng::from_os_rng(),
            next: 0,
            established: 0,
            up: 0,
            failed: 0,
            outbox: Vec::new(),
            edits: Vec::new(),
            storm: None,
        }
    }

    /// Runs the set-up phase until every client is up or failed, or the
    /// timeout.
    pub fn run(&mut self, opt: &HandshakeOptions) -> Setup {
        let start = Instant::now();
        let deadline = start + opt.timeout;
        let mut last_up = start;
        let mut next_print = start + Duration::from_secs(1);
        let n = self.clients.len() as u64;
        while self.up + self.failed < n {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            while self.next < self.clients.len()
                && (self.next as u64) < self.up + self.failed + opt.in_flight as u64
            {
                self.connect(now, self.next);
                self.next += 1;
            }
            let before = self.up;
            let got = self.receive(now);
            if self.ep.next_timeout().is_some_and(|t| t <= now) {
                self.ep.handle_timeout(now);
            }
            self.events(now);
            self.machine_timeouts(now);
            let sent = self.flush();
            if self.up > before {
                last_up = Instant::now();
            }
            if opt.progress && now >= next_print {
                next_print += Duration::from_secs(1);
                eprintln!(
                    "[{:6.1}s] IKE: {} established, {} up (pinged), {} failed, {} in progress",
                    now.duration_since(start).as_secs_f64(),
                    self.established,
                    self.up,
                    self.failed,
                    self.next as u64 - self.up - self.failed
                );
            }
            if got == 0 && sent == 0 {
                let wait = self
                    .ep
                    .next_timeout()
                    .map(|t| t.saturating_duration_since(now))
                    .unwrap_or(Duration::MAX)
                    .clamp(Duration::from_micros(50), Duration::from_millis(2));
                let fds: Vec<_> = self.ports.iter().filter_map(|p| p.readable_fd()).collect();
                dataplane::port::wait_readable(&fds, &mut Vec::new(), wait);
            }
        }
        // Whoever is not up by now does not take part.
        for c in self.clients.iter_mut() {
            if !matches!(c.phase, Phase::Up | Phase::Failed) {
                c.phase = Phase::Failed;
                self.failed += 1;
            }
        }
        let seconds = last_up.duration_since(start).as_secs_f64().max(1e-6);
        Setup {
            tunnels: self.established,
            failed: self.failed,
            seconds,
            tunnels_per_sec: self.up as f64 / seconds,
            pinged: self.up,
        }
    }

    fn connect(&mut self, now: Instant, i: usize) {
        let Some(lane) = self.clients.get(i).map(|c| c.lane) else {
            return;
        };
        let port = self.ports.get(lane).map_or(0, |p| p.local_addr().port());
        let id = self.ep.connect(
            now,
            fake_local(lane, port),
            self.target.ike,
            self.policy.for_client(i),
        );
        let Some(c) = self.clients.get_mut(i) else {
            return;
        };
        match id {
            Some(id) => {
                c.phase = Phase::Ike;
                c.ike = Some(id);
                self.by_ike.insert(id.0, i);
            }
            None => {
                c.phase = Phase::Failed;
                self.failed += 1;
            }
        }
    }

    /// Reads every socket; IKE goes to the endpoint, ESP to the clients'
    /// epoch machines (pongs). Returns the datagrams read.
    fn receive(&mut self, now: Instant) -> usize {
        let mut total = 0;
        let mut rx = Vec::with_capacity(64);
        for lane in 0..self.ports.len() {
            let Some(port) = self.ports.get_mut(lane) else {
                continue;
            };
            let local_port = port.local_addr().port();
            let n = port.rx_burst(&mut self.pool, &mut rx, 64).unwrap_or(0);
            total += n;
            for mut p in rx.drain(..) {
                let from = p.meta.remote;
                if from == self.target.natt {
                    if p.data().get(..4) == Some(&[0, 0, 0, 0]) {
                        self.ep.handle_datagram(
                            now,
                            fake_local(lane, 4500),
                            self.target.endpoint_natt(),
                            p.data(),
                        );
                    } else {
                        self.esp(now, &mut p);
                    }
                } else if from == self.target.ike {
                    self.ep
                        .handle_datagram(now, fake_local(lane, local_port), from, p.data());
                }
                self.pool.put(p);
            }
        }
        total
    }

    /// A pong (or anything else) on a client's inbound SA.
    fn esp(&mut self, now: Instant, p: &mut Packet) {
        let Some(spi) = p
            .data()
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        else {
            return;
        };
        let Some(&i) = self.by_spi.get(&spi) else {
            return;
        };
        let Some(c) = self.clients.get_mut(i) else {
            return;
        };
        let Some((inbound, _)) = &c.sas else {
            return;
        };
        if let Ok(o) = open(inbound, p) {
            if o.next_header == next_header::CONTROL {
                if let Some(m) = c.machine.as_mut() {
                    m.handle_control(now, spi, p.data());
                }
                self.actions(now, i);
            }
        }
    }

    fn events(&mut self, now: Instant) {
        while let Some(e) = self.ep.poll_event() {
            match e {
                Event::ChildSaEstablished(c) if c.replaces.is_some() => self.rekey_up(now, &c),
                Event::ChildSaEstablished(c) => self.child_up(now, &c),
                Event::ChildSaFailed { id, .. } | Event::IkeSaDeleted { id, .. } => {
                    if let Some(&i) = self.by_ike.get(&id.0) {
                        self.fail(i);
                    }
                }
                Event::IkeSaRekeyed { old, new } => {
                    if let Some(i) = self.by_ike.remove(&old.0) {
                        self.by_ike.insert(new.0, i);
                    }
                }
                _ => {}
            }
        }
    }

    fn fail(&mut self, i: usize) {
        if let Some(c) = self.clients.get_mut(i) {
            if !matches!(c.phase, Phase::Up | Phase::Failed) {
                c.phase = Phase::Failed;
                self.failed += 1;
            }
        }
    }

    /// The first CHILD SA: build the client's SAs and ping on the epoch.
    fn child_up(&mut self, now: Instant, c: &ChildSa) {
        let Some(&i) = self.by_ike.get(&c.ike_sa.0) else {
            return;
        };
        let built = self.build_sas(i, c);
        let leased = c.virtual_ip.map(IpAddr::V4);
        let (Ok(sas), Some(vip)) = (built, leased.or(c.virtual_ip6.map(IpAddr::V6))) else {
            self.fail(i);
            return;
        };
        self.established += 1;
        self.by_spi.insert(c.inbound_spi, i);
        let mut m = Tunnel::new(
            Role::Client,
            self.settings.clone(),
            now,
            self.rng.next_u64(),
        );
        m.handle_epoch_ready(
            now,
            EpochSpis {
                inbound: c.inbound_spi,
                outbound: c.outbound_spi,
            },
        );
        if let Some(st) = self.clients.get_mut(i) {
            st.phase = Phase::Probing;
            st.inner = Some(vip);
            st.sas = Some(sas);
            st.machine = Some(m);
        }
        self.probing.push(i);
        self.actions(now, i);
    }

    /// Client `i`'s SA pair of CHILD SA `c`.
    fn build_sas(
        &self,
        i: usize,
        c: &ChildSa,
    ) -> Result<(Arc<InboundSa>, Arc<OutboundSa>), dataplane::crypto::CryptoError> {
        let tunnel = i as u32;
        InboundSa::new(InboundSpec {
            spi: c.inbound_spi,
            tunnel,
            owner: 0,
            key: c.inbound_key.key(),
            salt: c.inbound_key.salt(),
            esn: c.esn,
            replay_window: 1024,
            allowed_sources: Vec::new(),
            limits: HardLimits::default(),
        })
        .and_then(|inbound| {
            let outbound = OutboundSa::new(OutboundSpec {
                spi: c.outbound_spi,
                tunnel,
                owner: 0,
                key: c.outbound_key.key(),
                salt: c.outbound_key.salt(),
                esn: c.esn,
                remote: self.target.natt,
                encap: Encap::EspInUdp,
                limits: HardLimits::default(),
            })?;
            Ok((inbound, outbound))
        })
    }

    /// Carries out what client `i`'s epoch machine asks for.
    fn actions(&mut self, now: Instant, i: usize) {
        loop {
            let Some(c) = self.clients.get_mut(i) else {
                return;
            };
            let Some(a) = c.machine.as_mut().and_then(|m| m.poll_action()) else {
                return;
            };
            match a {
                Action::SendControl {
                    outbound_spi,
                    payload,
                } => {
                    // The ping goes on the epoch it probes.
                    let sa = [&c.next_sas, &c.sas]
                        .into_iter()
                        .flatten()
                        .map(|s| s.1.clone())
                        .find(|s| s.spi == outbound_spi);
                    let lane = c.lane;
                    if let Some(sa) = sa {
                        self.send_control(lane, &sa, &payload);
                    }
                }
                Action::SwitchOutbound { outbound_spi, .. } => {
                    if c.phase == Phase::Probing {
                        c.phase = Phase::Up;
                        self.up += 1;
                    } else if c.next_sas.as_ref().is_some_and(|n| n.1.spi == outbound_spi) {
                        // A rekey's epoch answered: data moves there.
                        c.sas = c.next_sas.take();
                        if let Some((_, out)) = &c.sas {
                            self.edits.push(Edit::SetOutbound {
                                client: i as u32,
                                sa: out.clone(),
                            });
                        }
                        self.count(|r| r.completed += 1);
                    }
                }
                Action::RemoveInbound { spi } | Action::DeleteUnused { spi } => {
                    self.retire(now, i, spi)
                }
                // During set-up a client whose epoch never answers counts as
                // failed; a rekey that fails is counted by the storm.
                Action::Rekey | Action::RestartIke => {
                    if self.storm.is_some() {
                        self.count(|r| r.failed += 1);
                    } else {
                        self.fail(i);
                    }
                }
                Action::CheckLiveness => {}
            }
        }
    }

    /// Packet buffers the clients' IKE has allocated so far.
    pub fn buffers_allocated(&self) -> u64 {
        self.pool.allocated()
    }

    fn send_control(&mut self, lane: usize, sa: &OutboundSa, payload: &[u8]) {
        let mut p = self.pool.get();
        if p.set_data(payload).is_err() || seal(sa, &mut p, next_header::CONTROL).is_err() {
            self.pool.put(p);
            return;
        }
        match self.ports.get_mut(lane) {
            Some(port) => {
                let _ = port.tx_burst(&mut vec![p], &mut self.pool);
            }
            // The traffic phase has the sockets.
            None => self.outbox.push((lane, p)),
        }
    }

    fn machine_timeouts(&mut self, now: Instant) {
        let mut k = 0;
        while let Some(&i) = self.probing.get(k) {
            let Some(c) = self.clients.get_mut(i) else {
                self.probing.swap_remove(k);
                continue;
            };
            if c.phase != Phase::Probing {
                self.probing.swap_remove(k);
                continue;
            }
            if let Some(m) = c.machine.as_mut() {
                if m.next_timeout().is_some_and(|t| t <= now) {
                    m.handle_timeout(now);
                    self.actions(now, i);
                }
            }
            k += 1;
        }
    }

    /// Sends what the endpoint has queued; returns how many datagrams.
    fn flush(&mut self) -> usize {
        let mut out: Vec<Vec<Packet>> = self.ports.iter().map(|_| Vec::new()).collect();
        let mut n = 0;
        while let Some(t) = self.ep.poll_transmit() {
            let (Some(lane), mut p) = (lane_of(t.local), self.pool.get()) else {
                continue;
            };
            if p.set_data(&t.payload).is_err() {
                self.pool.put(p);
                continue;
            }
            p.meta.remote = self.target.wire(t.remote);
            p.meta.encap = Encap::EspInUdp;
            match out.get_mut(lane) {
                Some(v) => v.push(p),
                None if self.ports.is_empty() => self.outbox.push((lane, p)),
                None => self.pool.put(p),
            }
            n += 1;
        }
        if self.ports.is_empty() {
            // The traffic phase has the sockets.
            return n;
        }
        for (port, pkts) in self.ports.iter_mut().zip(out.iter_mut()) {
            if !pkts.is_empty() {
                let _ = port.tx_burst(pkts, &mut self.pool);
            }
        }
        n
    }

    /// The sockets and the clients that are up, for the traffic phase.
    pub fn take_lanes(&mut self) -> Vec<Lane> {
        let mut lanes: Vec<Lane> = self
            .ports
            .drain(..)
            .map(|port| Lane {
                port,
                clients: Vec::new(),
            })
            .collect();
        for (i, c) in self.clients.iter().enumerate() {
            let (Phase::Up, Some(inner), Some((inbound, outbound))) = (c.phase, c.inner, &c.sas)
            else {
                continue;
            };
            if let Some(lane) = lanes.get_mut(c.lane) {
                lane.clients.push(Client {
                    id: i as u32,
                    inner,
                    local: lane.port.local_addr(),
                    gateway: self.target.natt,
                    outbound: outbound.clone(),
                    inbound: inbound.clone(),
                });
            }
        }
        lanes
    }

    /// Deletes every IKE SA (INFORMATIONAL DELETE) through `lanes`' sockets,
    /// at most `in_flight` at a time, and waits up to `wait` for the
    /// gateway's answers, so the gateway frees the tunnels and the pool
    /// addresses now. All at once, thousands of DELETEs overflow the
    /// gateway's queue to its control plane, and their retransmissions
    /// meet the same fate.
    pub fn delete_all(&mut self, lanes: Vec<Lane>, in_flight: usize, wait: Duration) -> Teardown {
        self.ports = lanes.into_iter().map(|l| l.port).collect();
        let ids: Vec<IkeSaId> = self.clients.iter().filter_map(|c| c.ike).collect();
        let mut ids = ids.into_iter();
        let (before, mut started) = (self.ep.ike_sa_count(), 0);
        let start = Instant::now();
        let until = start + wait;
        while self.ep.ike_sa_count() > 0 && Instant::now() < until {
            let now = Instant::now();
            let confirmed = before - self.ep.ike_sa_count();
            while started - confirmed.min(started) < in_flight.max(1) {
                let Some(id) = ids.next() else { break };
                self.ep.delete_ike_sa(now, id);
                started += 1;
            }
            let sent = self.flush();
            let got = self.receive(now);
            if self.ep.next_timeout().is_some_and(|t| t <= now) {
                self.ep.handle_timeout(now);
            }
            while self.ep.poll_event().is_some() {}
            if sent == 0 && got == 0 {
                let fds: Vec<_> = self.ports.iter().filter_map(|p| p.readable_fd()).collect();
                dataplane::port::wait_readable(&fds, &mut Vec::new(), Duration::from_millis(2));
            }
        }
        let left = self.ep.ike_sa_count();
        Teardown {
            deleted: (before - left.min(before)) as u64,
            left: left as u64,
            seconds: start.elapsed().as_secs_f64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fake_local_address_names_the_socket() {
        for lane in [0usize, 1, 300, 65535] {
            assert_eq!(lane_of(fake_local(lane, 4500)), Some(lane));
        }
        assert_eq!(lane_of("10.254.0.1:500".parse().unwrap()), None);
    }
}
