//! The I/O driver around the sans-IO IKE endpoint: UDP 500 on its own
//! socket, UDP 4500 through the workers (they pass datagrams with the
//! non-ESP marker up and send ours out of the same sockets), timers, and
//! the CHILD SAs it negotiates installed into the data plane.
//!
//! When the outside port owns its interface (af_packet, af_xdp, dpdk) the
//! kernel has no address to bind 500 to: IKE on 500 then comes through the
//! workers too, with a zero marker the port prepended and `local_port` 500
//! (`dataplane::port::l2::outside`), and leaves through them from port 500.
//!
//! Here: the driver's state, its I/O and the poll that runs it all. Its
//! parts: `events` (what IKE negotiated, into the data plane),
//! `epoch_actions` (pings, pongs and what the epoch machines decide),
//! `timers` (lifetime rekeys, NAT keepalives) and `commands` (the control
//! socket's requests and reloads).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use config::schema::peer::{Peer, Role};
use dataplane::packet::{Encap, Packet};
use dataplane::sa::{SaTables, TunnelId};
use dataplane::worker::ControlLink;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::child_install::TunnelBook;
use super::epochs::{self, Epochs};
use super::policy::{address_pool, address_pool6, policy, responder_lookup};
use super::spi_slots::SpiSlots;
use crate::ike::sa::{IkeEndpoint, IkeSaId, Policy, Transmit};
use crate::ike::wire::strip_non_esp_marker;
use crate::tunnel::Settings as EpochSettings;

/// Logs at debug when `routine` (a rekey's SAs coming and going, hundreds a
/// second in a storm, thousands of lines a minute on a busy concentrator;
/// the counters and metrics still count them), else at info (a tunnel
/// appearing or going away).
macro_rules! routine_or_info {
    ($routine:expr, $($event:tt)+) => {
        if $routine {
            tracing::debug!($($event)+)
        } else {
            tracing::info!($($event)+)
        }
    };
}

mod commands;
mod epoch_actions;
mod events;
mod timers;

use timers::{Lifetimes, Timer};

/// How long an initiator waits before starting over after its IKE SA failed.
const RECONNECT_AFTER: Duration = Duration::from_secs(3);

struct Initiator {
    name: String,
    remote: SocketAddr,
    policy: Policy,
    sa: Option<IkeSaId>,
    retry_at: Option<Instant>,
}

/// Counters of the driver, for logs and the control socket.
#[derive(Clone, Copy, Debug, Default)]
pub struct DriverStats {
    pub ike_sas_established: u64,
    pub child_sas_installed: u64,
    pub child_sas_removed: u64,
    pub ike_sas_failed: u64,
    /// Tunnels whose peer was followed to a new NAT mapping.
    pub peer_moves: u64,
    /// Epoch switches (esp-ping peers): a tunnel's data moved to a new
    /// CHILD SA pair once its ping was answered, the first pair included.
    pub epoch_switches: u64,
}

pub struct IkeDriver {
    endpoint: IkeEndpoint,
    /// UDP 500, unless the outside port owns the interface.
    socket: Option<UdpSocket>,
    local_ike: SocketAddr,
    local_natt: SocketAddr,
    links: Vec<ControlLink>,
    book: TunnelBook,
    workers: usize,
    initiators: Vec<Initiator>,
    /// Our initiator SAs' peer names (shared, not a string per SA).
    peers_of: HashMap<IkeSaId, Arc<str>>,
    lifetimes: HashMap<String, Lifetimes>,
    /// The responder peer's name, for SAs we did not start.
    responder: Option<Arc<str>>,
    /// Which IKE SA a CHILD SA (by inbound SPI) belongs to now.
    child_owner: HashMap<u32, IkeSaId>,
    /// Peers we keep NAT mappings open to (our ESP-in-UDP tunnels).
    keepalive_to: HashMap<IkeSaId, SocketAddr>,
    nat_keepalive: Duration,
    /// Established IKE SAs, to delete on shutdown.
    established: HashSet<IkeSaId>,
    /// Lifetime rekeys and keepalives by deadline: one set entry each (a
    /// gateway has two per tunnel, so no vector per deadline).
    timers: BTreeSet<(Instant, Timer)>,
    /// esprit's epochs on negotiated tunnels (docs/ping.md).
    epochs: Epochs,
    epoch_settings: HashMap<String, Arc<EpochSettings>>,
    /// Pairs (our inbound SPI) a rekey replaced, kept only for their grace
    /// period: their lifetime timers do not rekey them again.
    replaced_children: HashSet<u32>,
    last_traffic_check: Instant,
    /// Between looks at the SA counters for traffic (idle pings).
    traffic_check: Duration,
    pub stats: DriverStats,
    /// The inner addresses responders leased to our initiator SAs.
    own_addresses: super::OwnAddresses,
    buf: Vec<u8>,
}

impl IkeDriver {
    /// Binds the IKE port next to the outside address and sets up the
    /// responder (the first `role = "responder"` peer) and the initiators.
    pub fn new(
        cfg: &config::Config,
        links: Vec<ControlLink>,
        slots: SpiSlots,
        first_tunnel: TunnelId,
    ) -> std::io::Result<IkeDriver> {
        let outside = cfg.gateway.outside.first().copied().ok_or_else(|| {
            std::io::Error::new(ErrorKind::InvalidInput, "gateway.outside is empty")
        })?;
        let local_ike = SocketAddr::new(outside.ip(), cfg.gateway.ike_port);
        let socket = if cfg.dataplane.port.owns_interface() {
            None
        } else {
            let s = UdpSocket::bind(local_ike)?;
            s.set_nonblocking(true)?;
            Some(s)
        };
        let mut endpoint = IkeEndpoint::new(Box::new(StdRng::from_os_rng()), Box::new(slots));
        // Rekeys we start keep their old pair until the epoch switch (or,
        // without esprit's ping, until we delete it right after).
        endpoint.set_defer_rekeyed_delete(true);
        let responders: Vec<&Peer> = cfg
            .peers
            .iter()
            .filter(|p| p.role == Role::Responder)
            .collect();
        let lifetimes = cfg
            .peers
            .iter()
            .map(|p| {
                let l = Lifetimes {
                    ike: p.ike_lifetime,
                    child: p.child_lifetime,
                    margin: cfg.ike.rekey_margin,
                    jitter: cfg.ike.rekey_jitter,
                };
                (p.name.clone(), l)
            })
            .collect();
        if let Some(r) = responders.first() {
            endpoint.accept(policy(r, &cfg.ike.retransmit), None);
            // Each client gets the template its identity matches, and
            // leases from that template's pool.
            endpoint.set_peer_policy(responder_lookup(&cfg.peers, &cfg.ike.retransmit));
            set_pools(&mut endpoint, &cfg.peers, &[]);
            // After accept, which sets the endpoint's default.
            endpoint.set_cookie_threshold(cfg.ike.cookie_threshold as usize);
        }
        endpoint.set_child_sa_limit(cfg.ike.child_sa_limit as usize);
        endpoint.set_unique_replace(cfg.ike.unique == config::schema::ike::Unique::Replace);
        let initiators = cfg
            .peers
            .iter()
            .filter(|p| p.role == Role::Initiator)
            .filter_map(|p| {
                let mut remote = p.remote?;
                if remote.port() == 0 {
                    remote.set_port(500);
                }
                Some(Initiator {
                    name: p.name.clone(),
                    remote,
                    policy: policy(p, &cfg.ike.retransmit),
                    sa: None,
                    retry_at: Some(Instant::now()),
                })
            })
            .collect();
        Ok(IkeDriver {
            endpoint,
            socket,
            local_ike: socket_addr(&local_ike),
            local_natt: outside,
            links,
            book: TunnelBook::new(first_tunnel, !cfg.gateway.raw_esp),
            workers: cfg.dataplane.workers.max(1),
            initiators,
            peers_of: HashMap::new(),
            lifetimes,
            responder: responders.first().map(|r| Arc::from(r.name.as_str())),
            child_owner: HashMap::new(),
            established: Default::default(),
            keepalive_to: HashMap::new(),
            nat_keepalive: cfg.ike.nat_keepalive,
            timers: BTreeSet::new(),
            epochs: Epochs::new(Instant::now()),
            epoch_settings: cfg
                .peers
                .iter()
                .map(|p| (p.name.clone(), Arc::new(epochs::settings(&p.liveness))))
                .collect(),
            replaced_children: HashSet::new(),
            last_traffic_check: Instant::now(),
            traffic_check: epochs::traffic_check_every(
                cfg.peers.iter().map(|p| p.liveness.idle_ping_after),
            ),
            stats: DriverStats::default(),
            own_addresses: Default::default(),
            buf: vec![0u8; 65536],
        })
    }

    /// The IKE socket, to sleep on (none when IKE comes through the workers).
    pub fn fd(&self) -> Option<RawFd> {
        self.socket.as_ref().map(|s| s.as_raw_fd())
    }

    /// When the driver next needs `poll` without new datagrams.
    pub fn next_timeout(&self) -> Option<Instant> {
        let retry = self
            .initiators
            .iter()
            .filter_map(|i| i.retry_at)
            .chain(self.timers.first().map(|(at, _)| *at))
            .chain(self.epochs.next_timeout())
            .min();
        match (self.endpoint.next_timeout(), retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Negotiated tunnels in the data plane now.
    pub fn tunnels(&self) -> usize {
        self.book.tunnels()
    }

    /// Handles everything pending; returns whether `tables` changed (the
    /// caller then publishes them).
    pub fn poll(&mut self, now: Instant, tables: &mut SaTables) -> bool {
        while let Some(socket) = &self.socket {
            match socket.recv_from(&mut self.buf) {
                Ok((n, from)) => {
                    let local = self.local_ike;
                    let data = &self.buf[..n];
                    self.endpoint
                        .handle_datagram(now, local, socket_addr(&from), data);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(error = %e, "IKE socket");
                    break;
                }
            }
        }
        for i in 0..self.links.len() {
            while let Some(p) = self.links[i].to_control.pop() {
                if p.meta.encap == Encap::Control {
                    self.on_control_message(now, p.meta.spi, p.data(), p.meta.remote, tables);
                    continue;
                }
                if p.meta.local_port == self.local_ike.port() {
                    // The port marked it like 4500 traffic; 500 has no marker.
                    if let Some(msg) = strip_non_esp_marker(p.data()) {
                        self.endpoint.handle_datagram(
                            now,
                            self.local_ike,
                            socket_addr(&p.meta.remote),
                            msg,
                        );
                    }
                    continue;
                }
                self.endpoint.handle_datagram(
                    now,
                    self.local_natt,
                    socket_addr(&p.meta.remote),
                    p.data(),
                );
            }
        }
        for i in self.initiators.iter_mut() {
            if i.retry_at.is_some_and(|t| t <= now) {
                i.retry_at = None;
                i.sa = self
                    .endpoint
                    .connect(now, self.local_ike, i.remote, i.policy.clone());
                match i.sa {
                    Some(id) => {
                        tracing::info!(peer = %i.name, remote = %i.remote, "initiating IKE SA");
                        self.peers_of.insert(id, Arc::from(i.name.as_str()));
                    }
                    None => i.retry_at = Some(now + RECONNECT_AFTER),
                }
            }
        }
        self.fire_timers(now);
        if self.endpoint.next_timeout().is_some_and(|t| t <= now) {
            self.endpoint.handle_timeout(now);
        }
        let mut changed = false;
        while let Some(e) = self.endpoint.poll_event() {
            changed |= self.on_event(now, e, tables);
        }
        if now.duration_since(self.last_traffic_check) >= self.traffic_check {
            self.last_traffic_check = now;
            self.epochs.notice_traffic(now, tables);
        }
        changed |= self.apply_epoch_actions(now, tables);
        // Epoch actions may have asked IKE for something.
        while let Some(e) = self.endpoint.poll_event() {
            changed |= self.on_event(now, e, tables);
        }
        changed |= self.apply_epoch_actions(now, tables);
        changed
    }

    /// Sends what IKE wants sent. Called after the caller published the
    /// tables `poll` changed: a peer answered by an IKE response must find
    /// the new SAs already in the workers' tables when its first ESP packet
    /// (a ping on the new epoch) arrives.
    pub fn flush(&mut self) {
        while let Some(t) = self.endpoint.poll_transmit() {
            self.send(t);
        }
    }

    /// Tells every peer we are going (INFORMATIONAL DELETE of each IKE SA,
    /// RFC 7296 1.4.1) and sends it; the caller keeps the workers running
    /// a moment so that messages on port 4500 leave.
    pub fn shutdown(&mut self, now: Instant, tables: &mut SaTables) {
        let ids: Vec<IkeSaId> = self.established.iter().copied().collect();
        for id in ids {
            self.endpoint.delete_ike_sa(now, id);
        }
        while let Some(t) = self.endpoint.poll_transmit() {
            self.send(t);
        }
        while let Some(e) = self.endpoint.poll_event() {
            self.on_event(now, e, tables);
        }
    }

    fn send(&mut self, t: Transmit) {
        let on_ike_port = t.local.port() == self.local_ike.port();
        if let (true, Some(socket)) = (on_ike_port, &self.socket) {
            if let Err(e) = socket.send_to(&t.payload, t.remote) {
                tracing::debug!(error = %e, remote = %t.remote, "IKE send");
            }
            return;
        }
        // Port 4500 belongs to the workers' sockets (and 500 too when the
        // port owns the interface): send through worker 0.
        let Some(mut p) = Packet::from_slice(&t.payload) else {
            tracing::warn!(
                len = t.payload.len(),
                "IKE message larger than a packet buffer"
            );
            return;
        };
        p.meta.remote = t.remote;
        p.meta.encap = Encap::EspInUdp;
        p.meta.local_port = if on_ike_port { t.local.port() } else { 0 };
        if let Some(link) = self.links.first() {
            if link.from_control.push(p).is_err() {
                tracing::debug!("control-to-worker queue full: IKE message dropped");
            }
        }
    }
}

/// IPv4-mapped IPv6 addresses as plain IPv4.
fn socket_addr(a: &SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => *a,
        },
        v4 => *v4,
    }
}

/// Gives each responder template its own pools (IPv4, IPv6), named after
/// it (as `policy()` names it in the template's policy); a family its
/// `pool` no longer has, or a template that is gone, loses its pool.
fn set_pools(endpoint: &mut IkeEndpoint, peers: &[config::schema::peer::Peer], removed: &[String]) {
    for p in peers {
        let name = p.name.as_str();
        let responder = p.role == Role::Responder;
        match address_pool(p).filter(|_| responder) {
            Some(pool) => endpoint.set_pool(Arc::from(name), pool),
            None => endpoint.remove_pool(name),
        }
        match address_pool6(p).filter(|_| responder) {
            Some(pool) => endpoint.set_pool6(Arc::from(name), pool),
            None => endpoint.remove_pool6(name),
        }
    }
    for name in removed {
        endpoint.remove_pool(name);
        endpoint.remove_pool6(name);
    }
}
