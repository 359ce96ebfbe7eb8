//! The I/O driver around the sans-IO IKE endpoint: UDP 500 on its own
//! socket, UDP 4500 through the workers (they pass datagrams with the
//! non-ESP marker up and send ours out of the same sockets), timers, and
//! the CHILD SAs it negotiates installed into the data plane.
//!
//! When the outside port owns its interface (af_packet, af_xdp, dpdk) the
//! kernel has no address to bind 500 to: IKE on 500 then comes through the
//! workers too, with a zero marker the port prepended and `local_port` 500
//! (`dataplane::port::l2::outside`), and leaves through them from port 500.

use std::collections::{BTreeSet, HashMap};
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
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
use crate::ike::sa::{ChildSa, Event, IkeEndpoint, IkeSaEnd, IkeSaId, Policy, Transmit};
use crate::ike::wire::strip_non_esp_marker;
use crate::tunnel::{Action as EpochAction, Mode, Role as EpochRole, Settings as EpochSettings};
use dataplane::worker::SealRequest;
use std::collections::HashSet;
use std::sync::Arc;

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

/// How long an initiator waits before starting over after its IKE SA failed.
const RECONNECT_AFTER: Duration = Duration::from_secs(3);
/// A lifetime rekey that could not start (its IKE SA was busy with another
/// exchange) is tried again after this.
const REKEY_RETRY: Duration = Duration::from_millis(500);

/// Lifetimes of one peer's SAs: a rekey starts `margin` (minus up to
/// `jitter`, so tunnels set up together rekey apart) before they end.
#[derive(Clone, Copy, Debug)]
struct Lifetimes {
    ike: Duration,
    child: Duration,
    margin: Duration,
    jitter: Duration,
}

impl Lifetimes {
    fn rekey_after(&self, lifetime: Duration) -> Duration {
        let jitter_ms = self.jitter.as_millis() as u64;
        let spread = if jitter_ms == 0 {
            0
        } else {
            rand::random::<u64>() % jitter_ms
        };
        lifetime
            .saturating_sub(self.margin)
            .saturating_sub(Duration::from_millis(spread))
            .max(Duration::from_secs(1))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    RekeyChild {
        inbound_spi: u32,
    },
    RekeyIke {
        ike: IkeSaId,
    },
    /// A NAT keepalive to the peer of this IKE SA, then the next one.
    Keepalive {
        ike: IkeSaId,
    },
}

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
    established: std::collections::HashSet<IkeSaId>,
    /// Lifetime rekeys and keepalives by deadline: one set entry each (a
    /// gateway has two per tunnel, so no vector per deadline).
    timers: BTreeSet<(Instant, Timer)>,
    /// esprit's epochs on negotiated tunnels (docs/ping.md).
    epochs: Epochs,
    epoch_settings: HashMap<String, Arc<EpochSettings>>,
    /// Old inbound SPIs of CHILD SA rekeys we started: ours to delete.
    started_rekeys: HashSet<u32>,
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
            started_rekeys: HashSet::new(),
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

    /// IKE SAs as JSON rows for the control socket (no key material).
    pub fn status(&self) -> Vec<serde_json::Value> {
        let mut rows: Vec<serde_json::Value> = self
            .endpoint
            .ike_sas()
            .map(|st| {
                let peer_name = self
                    .peers_of
                    .get(&st.id)
                    .or(self.responder.as_ref())
                    .map(|n| n.to_string());
                let epochs: Vec<serde_json::Value> = self
                    .epochs
                    .tunnels_of(st.id)
                    .into_iter()
                    .filter_map(|t| Some((t, self.epochs.get(t)?)))
                    .map(|(t, e)| {
                        let s = e.machine.stats();
                        serde_json::json!({
                            "tunnel": t,
                            "state": format!("{:?}", e.machine.state()).to_lowercase(),
                            "epoch": s.epoch,
                            "last_rtt_ms": s.last_rtt.map(|d| d.as_secs_f64() * 1000.0),
                            "pings": s.pings_sent,
                            "retries": s.retries,
                            "rekeys": s.rekeys,
                            "restarts": s.restarts,
                            "rejected": s.rejected,
                        })
                    })
                    .collect();
                serde_json::json!({
                    "epochs": epochs,
                    "ike_sa": format!("{:016x}", st.id.0),
                    "peer": peer_name,
                    "state": format!("{:?}", st.state).to_lowercase(),
                    "initiator": st.initiator,
                    "remote": st.peer.to_string(),
                    "local": st.local.to_string(),
                    "peer_id": st.peer_id.as_ref().map(|i| String::from_utf8_lossy(&i.data).into_owned()),
                    "nat_detected": st.nat_detected,
                    "virtual_ip": st.virtual_ip.map(|a| a.to_string()),
                    "virtual_ip6": st.virtual_ip6.map(|a| a.to_string()),
                    "children": st.children.iter().map(|(i, o)| {
                        serde_json::json!({"inbound_spi": format!("{i:#010x}"), "outbound_spi": format!("{o:#010x}")})
                    }).collect::<Vec<_>>(),
                })
            })
            .collect();
        rows.sort_by(|a, b| a["ike_sa"].as_str().cmp(&b["ike_sa"].as_str()));
        rows
    }

    /// Number of IKE SAs (any state).
    pub fn ike_sa_count(&self) -> usize {
        self.endpoint.ike_sa_count()
    }

    /// Whether `name` is one of our initiator peers.
    pub fn has_initiator(&self, name: &str) -> bool {
        self.initiators.iter().any(|i| i.name == name)
    }

    /// Connects initiator peer `name` now (if not connected).
    pub fn initiate(&mut self, name: &str, now: Instant) -> Result<(), String> {
        let i = self
            .initiators
            .iter_mut()
            .find(|i| i.name == name)
            .ok_or_else(|| format!("no initiator peer named {name:?}"))?;
        if i.sa.is_some() {
            return Err(format!("peer {name:?} is already connected or connecting"));
        }
        i.retry_at = Some(now);
        Ok(())
    }

    /// The inner addresses responders leased to our initiator SAs.
    pub fn own_addresses(&self) -> &super::OwnAddresses {
        &self.own_addresses
    }

    /// Deletes initiator peer `name`'s IKE SA and does not reconnect.
    pub fn terminate(&mut self, name: &str, now: Instant) -> Result<(), String> {
        let i = self
            .initiators
            .iter_mut()
            .find(|i| i.name == name)
            .ok_or_else(|| format!("no initiator peer named {name:?}"))?;
        i.retry_at = None;
        let Some(id) = i.sa.take() else {
            return Err(format!("peer {name:?} is not connected"));
        };
        self.endpoint.delete_ike_sa(now, id);
        Ok(())
    }

    /// Rekeys every CHILD SA of peer `name` now.
    pub fn rekey(&mut self, name: &str, now: Instant) -> Result<usize, String> {
        let ids: Vec<IkeSaId> = self
            .peers_of
            .iter()
            .filter(|(_, n)| &***n == name)
            .map(|(id, _)| *id)
            .chain(
                self.responder
                    .as_deref()
                    .filter(|r| *r == name)
                    .into_iter()
                    .flat_map(|_| self.established.iter().copied()),
            )
            .collect();
        let children: Vec<(IkeSaId, u32)> = self
            .child_owner
            .iter()
            .filter(|(_, ike)| ids.contains(ike))
            .map(|(spi, ike)| (*ike, *spi))
            .collect();
        if children.is_empty() {
            return Err(format!("peer {name:?} has no CHILD SA to rekey"));
        }
        let mut started = 0;
        for (ike, spi) in children {
            if self.endpoint.rekey_child_sa(now, ike, spi) {
                self.started_rekeys.insert(spi);
                started += 1;
            }
        }
        Ok(started)
    }

    /// Applies a reloaded config's peers: responders' templates at once
    /// (new IKE SAs use them), removed or changed initiators deleted, added
    /// or changed ones connected.
    pub fn reconfigure(
        &mut self,
        now: Instant,
        cfg: &config::Config,
        peers: &config::NamedChanges,
    ) {
        // The first responder template may come with a reload: from now on
        // the endpoint answers clients (each with its own template's pool).
        if self.responder.is_none() {
            if let Some(r) = cfg.peers.iter().find(|p| p.role == Role::Responder) {
                self.endpoint.accept(policy(r, &cfg.ike.retransmit), None);
                self.endpoint
                    .set_cookie_threshold(cfg.ike.cookie_threshold as usize);
                self.responder = Some(Arc::from(r.name.as_str()));
            }
        }
        self.endpoint
            .set_peer_policy(responder_lookup(&cfg.peers, &cfg.ike.retransmit));
        // Unchanged pools keep their leases; a changed range keeps the
        // addresses its clients still hold.
        set_pools(&mut self.endpoint, &cfg.peers, &peers.removed);
        // Clients whose identity no responder template admits any more go
        // (their peer was removed, or its remote_id narrowed).
        let admits = responder_lookup(&cfg.peers, &cfg.ike.retransmit);
        let refused: Vec<IkeSaId> = self
            .established
            .iter()
            .copied()
            .filter(|id| !self.peers_of.contains_key(id))
            .filter(|id| {
                self.endpoint
                    .ike_sa(*id)
                    .and_then(|st| st.peer_id)
                    .is_some_and(|pid| admits(&pid).is_none())
            })
            .collect();
        for id in refused {
            tracing::info!(
                ike_sa = format_args!("{:016x}", id.0),
                "no responder peer admits this client any more: deleting its IKE SA"
            );
            self.endpoint.delete_ike_sa(now, id);
        }
        for name in peers.removed.iter().chain(&peers.changed) {
            if let Some(pos) = self.initiators.iter().position(|i| &i.name == name) {
                let i = self.initiators.remove(pos);
                if let Some(id) = i.sa {
                    self.endpoint.delete_ike_sa(now, id);
                }
            }
        }
        for name in &peers.removed {
            self.epoch_settings.remove(name);
        }
        // New tunnels of a reloaded peer take its liveness settings; the
        // traffic check follows the shortest idle_ping_after.
        self.traffic_check =
            epochs::traffic_check_every(cfg.peers.iter().map(|p| p.liveness.idle_ping_after));
        for name in peers.added.iter().chain(&peers.changed) {
            let Some(p) = cfg.peers.iter().find(|p| &p.name == name) else {
                continue;
            };
            self.epoch_settings
                .insert(p.name.clone(), Arc::new(epochs::settings(&p.liveness)));
            self.lifetimes.insert(
                p.name.clone(),
                Lifetimes {
                    ike: p.ike_lifetime,
                    child: p.child_lifetime,
                    margin: cfg.ike.rekey_margin,
                    jitter: cfg.ike.rekey_jitter,
                },
            );
            if let (Role::Initiator, Some(mut remote)) = (p.role, p.remote) {
                if remote.port() == 0 {
                    remote.set_port(500);
                }
                self.initiators.push(Initiator {
                    name: p.name.clone(),
                    remote,
                    policy: policy(p, &cfg.ike.retransmit),
                    sa: None,
                    retry_at: Some(now),
                });
            }
        }
    }

    /// Installs a negotiated CHILD SA. With esprit's ping its outbound SA
    /// waits for the epoch machine; without it data moves at once (and the
    /// old pair of a rekey we started is deleted right away).
    fn install_child(
        &mut self,
        now: Instant,
        c: &ChildSa,
        tables: &mut SaTables,
    ) -> Result<TunnelId, String> {
        let peer = self
            .peers_of
            .get(&c.ike_sa)
            .or(self.responder.as_ref())
            .cloned();
        let role = if self.peers_of.contains_key(&c.ike_sa) {
            EpochRole::Client
        } else {
            EpochRole::Server
        };
        let settings = peer
            .as_ref()
            .and_then(|p| self.epoch_settings.get(&**p))
            .cloned();
        let ours = c.replaces.filter(|old| self.started_rekeys.remove(old));
        let Some(settings) = settings.filter(|s| s.mode == Mode::EspPing) else {
            let tunnel = self.book.install(tables, c, self.workers)?;
            if let Some(old) = ours {
                self.endpoint.delete_child_sa(now, c.ike_sa, old);
            }
            return Ok(tunnel);
        };
        let (tunnel, outbound) = self.book.install_held(tables, c, self.workers)?;
        let e = self
            .epochs
            .machine(tunnel, role, settings, c.ike_sa, peer, now);
        e.held.insert(outbound.spi, outbound);
        let spis = epochs::spis(c.inbound_spi, c.outbound_spi);
        if c.replaces.is_some() && ours.is_none() {
            // The peer's rekey: it installs its side on our answer.
            e.machine.handle_peer_epoch_ready(now, spis);
        } else {
            e.machine.handle_epoch_ready(now, spis);
        }
        if let Some(old) = ours {
            self.epochs.to_delete_after_grace.insert(old, tunnel);
        }
        Ok(tunnel)
    }

    /// Clients set to `ignore_peer_rekey` refuse the server's CHILD rekeys.
    fn apply_ignore_peer_rekey(&mut self, id: IkeSaId) {
        let ignore = self
            .peers_of
            .get(&id)
            .and_then(|p| self.epoch_settings.get(&**p))
            .is_some_and(|s| s.ignore_peer_rekey);
        if ignore {
            self.endpoint.refuse_peer_child_rekeys(id, true);
        }
    }

    /// A ping or pong the workers decrypted (authenticated, not a replay),
    /// which came from `from`.
    fn on_control_message(
        &mut self,
        now: Instant,
        inbound_spi: u32,
        payload: &[u8],
        from: SocketAddr,
        tables: &SaTables,
    ) {
        let Some(tunnel) = self.book.tunnel_of(inbound_spi) else {
            return;
        };
        let Some(e) = self.epochs.get_mut(tunnel) else {
            return;
        };
        if !e.machine.handle_control(now, inbound_spi, payload) {
            return;
        }
        // An authentic ping from a new address: the client's NAT mapping
        // moved. Its epochs' SAs, and IKE, follow it (as RFC 7296 2.23 has
        // IKE follow an authenticated message), so the pong and the data
        // reach it without waiting for a rekey.
        let ike = e.ike;
        let outbound = tables
            .outbound_sa(tunnel)
            .into_iter()
            .chain(e.held.values())
            .filter(|sa| sa.encap == Encap::EspInUdp);
        let mut moved = false;
        for sa in outbound {
            moved |= sa.move_remote(from);
        }
        if moved {
            self.endpoint.peer_moved(ike, from);
            self.stats.peer_moves += 1;
            tracing::info!(tunnel, to = %from, "peer moved: its NAT mapping changed");
        }
    }

    /// Carries out what the epoch machines decided.
    fn apply_epoch_actions(&mut self, now: Instant, tables: &mut SaTables) -> bool {
        let mut changed = false;
        for (tunnel, action) in self.epochs.due_actions(now) {
            let Some(e) = self.epochs.get_mut(tunnel) else {
                continue;
            };
            match action {
                EpochAction::SendControl {
                    outbound_spi,
                    payload,
                } => {
                    let sa = e.held.get(&outbound_spi).cloned().or_else(|| {
                        tables
                            .outbound_sa(tunnel)
                            .filter(|s| s.spi == outbound_spi)
                            .cloned()
                    });
                    let (Some(sa), Some(packet)) = (sa, Packet::from_slice(&payload)) else {
                        continue;
                    };
                    if let Some(link) = self.links.get(sa.owner as usize) {
                        let _ = link.seal.push(SealRequest { sa, packet });
                    }
                }
                EpochAction::SwitchOutbound {
                    epoch,
                    outbound_spi,
                } => {
                    if let Some(sa) = e.held.remove(&outbound_spi) {
                        self.book.switch_outbound(tables, sa);
                        changed = true;
                        tracing::info!(
                            tunnel,
                            epoch,
                            outbound_spi = format_args!("{outbound_spi:#010x}"),
                            "epoch confirmed: data moves"
                        );
                    }
                }
                EpochAction::RemoveInbound { spi } => {
                    // Grace is over: the old pair of a rekey we started goes.
                    let ike = e.ike;
                    if self.epochs.to_delete_after_grace.remove(&spi).is_some() {
                        self.endpoint.delete_child_sa(now, ike, spi);
                    }
                }
                EpochAction::Rekey => {
                    let (ike, spi) = (e.ike, e.machine.latest_inbound());
                    let started = spi.is_some_and(|s| self.endpoint.rekey_child_sa(now, ike, s));
                    tracing::info!(tunnel, started, "rekey: the epoch's path does not answer");
                    match spi.filter(|_| started) {
                        Some(s) => {
                            self.started_rekeys.insert(s);
                        }
                        None => e.machine.handle_rekey_failed(now),
                    }
                }
                EpochAction::RestartIke => {
                    let ike = e.ike;
                    let peer = e.peer.clone();
                    tracing::warn!(tunnel, ?peer, "rekeys failed: starting a new IKE session");
                    if let Some(i) = self
                        .initiators
                        .iter_mut()
                        .find(|i| Some(i.name.as_str()) == peer.as_deref())
                    {
                        i.sa = None;
                        i.retry_at = Some(now);
                    }
                    self.endpoint.delete_ike_sa(now, ike);
                }
                EpochAction::CheckLiveness => {
                    let ike = e.ike;
                    self.endpoint.check_liveness(now, ike);
                }
            }
        }
        changed
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

    /// Starts the rekeys that are due.
    fn fire_timers(&mut self, now: Instant) {
        while let Some(&(at, t)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            match t {
                Timer::RekeyChild { inbound_spi } => {
                    let Some(ike) = self.child_owner.get(&inbound_spi).copied() else {
                        continue; // gone or already replaced
                    };
                    if self.replaced_children.contains(&inbound_spi) {
                        continue;
                    }
                    let started = self.endpoint.rekey_child_sa(now, ike, inbound_spi);
                    if started {
                        self.started_rekeys.insert(inbound_spi);
                    } else if self.endpoint.ike_sa(ike).is_some() {
                        // Another exchange of this IKE SA is under way
                        // (one CREATE_CHILD_SA at a time): try again soon.
                        self.arm(now + REKEY_RETRY, Timer::RekeyChild { inbound_spi });
                    }
                    tracing::debug!(
                        inbound_spi = format_args!("{:#010x}", inbound_spi),
                        started,
                        "CHILD SA rekey (lifetime)"
                    );
                }
                Timer::Keepalive { ike } => {
                    let Some(peer) = self.keepalive_to.get(&ike).copied() else {
                        continue; // the IKE SA is gone
                    };
                    self.send(Transmit {
                        local: self.local_natt,
                        remote: peer,
                        payload: vec![0xff],
                    });
                    self.arm(now + self.nat_keepalive, Timer::Keepalive { ike });
                }
                Timer::RekeyIke { ike } => {
                    let started = self.endpoint.rekey_ike_sa(now, ike);
                    tracing::info!(
                        ike_sa = format_args!("{:016x}", ike.0),
                        started,
                        "IKE SA rekey (lifetime)"
                    );
                }
            }
        }
    }

    fn lifetimes_of(&self, ike: IkeSaId) -> Option<Lifetimes> {
        let name = self.peers_of.get(&ike).or(self.responder.as_ref())?;
        self.lifetimes.get(&**name).copied()
    }

    fn arm(&mut self, at: Instant, t: Timer) {
        self.timers.insert((at, t));
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

    fn on_event(&mut self, now: Instant, e: Event, tables: &mut SaTables) -> bool {
        match e {
            Event::IkeSaEstablished { id, peer } => {
                self.stats.ike_sas_established += 1;
                self.established.insert(id);
                self.apply_ignore_peer_rekey(id);
                if let Some(l) = self.lifetimes_of(id) {
                    self.arm(now + l.rekey_after(l.ike), Timer::RekeyIke { ike: id });
                }
                tracing::info!(ike_sa = format_args!("{:016x}", id.0), %peer, "IKE SA established");
                false
            }
            Event::ChildSaEstablished(c) => match self.install_child(now, &c, tables) {
                Ok(tunnel) => {
                    self.stats.child_sas_installed += 1;
                    self.child_owner.insert(c.inbound_spi, c.ike_sa);
                    if let Some(old) = c.replaces {
                        self.replaced_children.insert(old);
                    }
                    let ours = self.peers_of.contains_key(&c.ike_sa);
                    if ours {
                        let leased: Vec<IpAddr> = (c.virtual_ip.map(IpAddr::V4).into_iter())
                            .chain(c.virtual_ip6.map(IpAddr::V6))
                            .collect();
                        // A CHILD SA without CP (a rekey) leaves the leases be.
                        if !leased.is_empty() {
                            self.own_addresses.set(c.ike_sa, leased);
                        }
                    }
                    // RFC 3948 2.3: whoever may sit behind a NAT keeps it open.
                    if ours && c.udp_encap && !self.nat_keepalive.is_zero() {
                        let first = self.keepalive_to.insert(c.ike_sa, c.peer).is_none();
                        if first {
                            self.arm(now + self.nat_keepalive, Timer::Keepalive { ike: c.ike_sa });
                        }
                    }
                    if let Some(l) = self.lifetimes_of(c.ike_sa) {
                        let spi = c.inbound_spi;
                        self.arm(
                            now + l.rekey_after(l.child),
                            Timer::RekeyChild { inbound_spi: spi },
                        );
                    }
                    routine_or_info!(
                        c.replaces.is_some(),
                        tunnel,
                        ike_sa = format_args!("{:016x}", c.ike_sa.0),
                        inbound_spi = format_args!("{:#010x}", c.inbound_spi),
                        outbound_spi = format_args!("{:#010x}", c.outbound_spi),
                        peer = %c.peer,
                        udp_encap = c.udp_encap,
                        virtual_ip = ?c.virtual_ip,
                        rekey = c.replaces.is_some(),
                        "CHILD SA installed"
                    );
                    true
                }
                Err(err) => {
                    tracing::warn!(error = %err, "CHILD SA not installed");
                    false
                }
            },
            Event::ChildSaDeleted {
                inbound_spi,
                outbound_spi,
                ..
            } => {
                self.child_owner.remove(&inbound_spi);
                self.replaced_children.remove(&inbound_spi);
                // A pending epoch on this pair (a rekey collision's loser)
                // is forgotten before the pair goes.
                if let Some(t) = self.book.tunnel_of(inbound_spi) {
                    if let Some(e) = self.epochs.get_mut(t) {
                        e.machine.handle_epoch_deleted(now, inbound_spi);
                        e.held.remove(&outbound_spi);
                    }
                }
                let removed = self.book.remove(tables, inbound_spi, outbound_spi);
                if let Some(tunnel) = removed {
                    self.stats.child_sas_removed += 1;
                    if !self.book.is_live(tunnel) {
                        self.epochs.forget(tunnel);
                    }
                    // A rekey's old pair (the tunnel lives on) is routine.
                    routine_or_info!(
                        self.book.is_live(tunnel),
                        tunnel,
                        inbound_spi = format_args!("{:#010x}", inbound_spi),
                        "CHILD SA removed"
                    );
                }
                removed.is_some()
            }
            Event::IkeSaDeleted { id, reason } => {
                self.established.remove(&id);
                self.own_addresses.remove(id);
                self.epochs.for_ike(id, |e| e.machine.handle_ike_down(now));
                self.keepalive_to.remove(&id);
                let name = self.peers_of.remove(&id);
                if !matches!(reason, IkeSaEnd::Deleted | IkeSaEnd::Rekeyed) {
                    self.stats.ike_sas_failed += 1;
                }
                tracing::info!(ike_sa = format_args!("{:016x}", id.0), ?reason, peer = ?name, "IKE SA ended");
                if let Some(i) = self.initiators.iter_mut().find(|i| i.sa == Some(id)) {
                    i.sa = None;
                    if reason != IkeSaEnd::Rekeyed {
                        i.retry_at = Some(now + RECONNECT_AFTER);
                    }
                }
                false
            }
            Event::IkeSaRekeyed { old, new } => {
                self.epochs.ike_rekeyed(old, new);
                self.own_addresses.rekeyed(old, new);

                self.established.remove(&old);
                self.established.insert(new);
                if let Some(peer) = self.keepalive_to.remove(&old) {
                    self.keepalive_to.insert(new, peer);
                    self.arm(now + self.nat_keepalive, Timer::Keepalive { ike: new });
                }
                // The new IKE SA took over the old one's CHILD SAs (2.8):
                // look at those, not at every tunnel's.
                let moved = self.endpoint.ike_sa(new).map(|s| s.children);
                for (inbound_spi, _) in moved.unwrap_or_default() {
                    if let Some(owner) = self.child_owner.get_mut(&inbound_spi) {
                        *owner = new;
                    }
                }
                if let Some(l) = self.lifetimes_of(old) {
                    self.arm(now + l.rekey_after(l.ike), Timer::RekeyIke { ike: new });
                }
                if let Some(name) = self.peers_of.remove(&old) {
                    self.peers_of.insert(new, name);
                }
                self.apply_ignore_peer_rekey(new);
                if let Some(i) = self.initiators.iter_mut().find(|i| i.sa == Some(old)) {
                    i.sa = Some(new);
                }
                false
            }
            Event::ChildSaFailed { id, reason } => {
                tracing::info!(
                    ike_sa = format_args!("{:016x}", id.0),
                    ?reason,
                    "CHILD SA failed"
                );
                self.epochs.for_ike(id, |e| {
                    if e.machine.state() == crate::tunnel::State::Rekeying {
                        e.machine.handle_rekey_failed(now);
                    }
                });
                false
            }
        }
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
