//! The polled worker: one per core, owning its queues, buffers, counters
//! and the SAs steered to it.
//!
//! Each iteration loads the current SA snapshot once, then: outside rx
//! burst (classify, open, policy check), inside rx burst (route, seal),
//! packets handed over by other workers or the control plane, and the two
//! tx bursts. Per-packet functions return a verdict and the loop acts on it,
//! so the ESP code does no I/O.

mod links;
mod look_ahead;
mod stats;

pub use links::{handoff_mesh, ControlLink, Handoff, Queue, SealRequest};
pub use stats::{Counter, StatsSnapshot, WorkerStats};

use std::collections::{HashMap, VecDeque};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::drop_reason::DropReason;
use crate::esp::{self, next_header};
use crate::packet::{Encap, Packet, PacketPool};
use crate::pmtu::{self, PmtuConfig, TokenBucket};
use crate::port::{self, Port};
use crate::sa::{SaReader, SaTables, TunnelId, WorkerId};

/// Packets held per tunnel while its first epoch is probed.
const HOLD_PER_TUNNEL: usize = 16;
/// Packets held per worker in all.
const HOLD_TOTAL: usize = 1024;
use crate::wire;
use crate::wire::natt::Classified;

/// How a worker is set up.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub id: WorkerId,
    /// Packets per rx burst (DPDK style: 32-64).
    pub burst: usize,
    /// Core to pin the thread to.
    pub core: Option<usize>,
    /// Empty polls before the worker sleeps on its ports' fds; 0 = never
    /// sleep (pure busy polling, for dedicated cores).
    pub spin_before_sleep: u32,
    /// Buffers in the worker's pool at start.
    pub pool_size: usize,
    /// Path MTU of the tunnels: ICMP too-big and MSS clamping.
    pub pmtu: PmtuConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            id: 0,
            burst: 32,
            core: None,
            spin_before_sleep: 64,
            pool_size: 4096,
            pmtu: PmtuConfig::default(),
        }
    }
}

/// One data-plane worker over an outside port `O` and an inside port `I`.
pub struct Worker<O: Port, I: Port> {
    reader: SaReader,
    core: Core<O, I>,
}

struct Core<O: Port, I: Port> {
    cfg: WorkerConfig,
    outside: O,
    inside: I,
    pool: PacketPool,
    stats: Arc<WorkerStats>,
    handoff: Handoff,
    control: ControlLink,
    rx: Vec<Packet>,
    /// What the packets of `rx` will need, fetched a few packets ahead.
    look_ahead: look_ahead::LookAhead,
    outside_tx: Vec<Packet>,
    inside_tx: Vec<Packet>,
    idle_polls: u32,
    /// Data for tunnels still probing their first epoch (DESIGN.md 4).
    held: HashMap<TunnelId, VecDeque<Packet>>,
    held_total: usize,
    /// Rate limit of the ICMP too-big errors this worker sends.
    icmp_bucket: TokenBucket,
    /// Scratch for the fragments of an inner packet (kept: no allocation).
    fragments: Vec<Packet>,
    /// Scratch for the descriptors an idle worker sleeps on.
    wait_fds: Vec<RawFd>,
    poll_fds: Vec<libc::pollfd>,
}

impl<O: Port, I: Port> Worker<O, I> {
    pub fn new(
        cfg: WorkerConfig,
        outside: O,
        inside: I,
        reader: SaReader,
        handoff: Handoff,
        control: ControlLink,
    ) -> Self {
        let burst = cfg.burst.clamp(1, 256);
        let icmp_bucket = TokenBucket::new(cfg.pmtu.icmp_per_sec, cfg.pmtu.icmp_burst);
        let mut pool = PacketPool::with_capacity(cfg.pool_size);
        // A port that lends its buffers (DPDK) gets its packets back
        // without a copy.
        if let Some(source) = outside.buffer_source() {
            pool.set_source(source);
        }
        Worker {
            reader,
            core: Core {
                cfg: WorkerConfig { burst, ..cfg },
                outside,
                inside,
                pool,
                stats: Arc::new(WorkerStats::default()),
                handoff,
                control,
                rx: Vec::with_capacity(burst * 4),
                look_ahead: look_ahead::LookAhead::with_capacity(burst * 4),
                outside_tx: Vec::with_capacity(burst * 4),
                inside_tx: Vec::with_capacity(burst * 4),
                idle_polls: 0,
                held: HashMap::new(),
                held_total: 0,
                icmp_bucket,
                fragments: Vec::new(),
                wait_fds: Vec::new(),
                poll_fds: Vec::new(),
            },
        }
    }

    /// The worker's counters, for the control plane and reports.
    pub fn stats(&self) -> Arc<WorkerStats> {
        self.core.stats.clone()
    }

    /// One iteration of the loop; returns the number of packets handled.
    pub fn poll_once(&mut self) -> usize {
        let received = self.core.receive();
        // The tables are loaded after the burst is in, never before: a
        // packet sent in answer to something the control plane did after
        // publishing (the first ping on a new epoch follows the IKE
        // response that follows the publication) must meet those tables,
        // even if this worker was descheduled between the two.
        let tables = self.reader.load();
        received + self.core.process(tables)
    }

    /// Runs until `stop` is set, sleeping on the ports when idle.
    pub fn run(mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            if self.poll_once() == 0 {
                self.core.idle();
            } else {
                self.core.idle_polls = 0;
            }
        }
    }

    /// Runs on a new thread, pinned to the configured core.
    pub fn spawn(self, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>>
    where
        O: 'static,
        I: 'static,
    {
        let name = format!("esprit-worker-{}", self.core.cfg.id);
        std::thread::Builder::new().name(name).spawn(move || {
            if let Some(id) = self.core.cfg.core {
                if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
                    tracing::warn!(worker = self.core.cfg.id, core = id, "could not pin worker");
                }
            }
            self.run(&stop)
        })
    }
}

impl<O: Port, I: Port> Core<O, I> {
    /// Takes in a burst from the ports and the hand-off queues; returns
    /// how many packets.
    fn receive(&mut self) -> usize {
        let burst = self.cfg.burst;
        match self.outside.rx_burst(&mut self.pool, &mut self.rx, burst) {
            Ok(n) => self.stats.outside_rx.add(n as u64),
            Err(e) => tracing::debug!(worker = self.cfg.id, error = %e, "outside rx"),
        }
        match self.inside.rx_burst(&mut self.pool, &mut self.rx, burst) {
            Ok(n) => self.stats.inside_rx.add(n as u64),
            Err(e) => tracing::debug!(worker = self.cfg.id, error = %e, "inside rx"),
        }
        self.handoff.recv(&mut self.rx, burst);
        // The ports keep their own receive drops and super-packet counts;
        // the worker's counters mirror them.
        let port_drops = self.outside.rx_dropped() + self.inside.rx_dropped();
        self.stats.mirror_drops(DropReason::RxDropped, port_drops);
        let (read, written) = self.inside.super_packets();
        self.stats.inside_rx_super.set(read);
        self.stats.inside_tx_super.set(written);
        self.rx.len()
    }

    /// Opens, seals and forwards the burst `receive` took in, with the
    /// tables loaded after it; returns the other work done (control
    /// messages sealed, control-plane packets sent).
    fn process(&mut self, t: &SaTables) -> usize {
        let burst = self.cfg.burst;
        let mut work = 0;
        let mut rx = std::mem::take(&mut self.rx);
        let mut ahead = std::mem::take(&mut self.look_ahead);
        ahead.plan(t, &rx);
        for (i, p) in rx.drain(..).enumerate() {
            ahead.before(t, i);
            match p.meta.encap {
                Encap::Inner => self.inbound_clear(t, p, ahead.routed(i)),
                Encap::EspInUdp | Encap::RawEsp => self.inbound_outside(t, p),
                Encap::Control => self.discard(p, DropReason::Malformed),
            }
        }
        self.rx = rx;
        self.look_ahead = ahead;
        work += self.seal_control_messages();
        if self.held_total > 0 {
            self.release_held(t);
        }

        // The control plane's own packets (IKE replies on 4500) go out as is.
        while self.outside_tx.len() < burst * 2 {
            match self.control.from_control.pop() {
                Some(p) => {
                    self.outside_tx.push(p);
                    work += 1;
                }
                None => break,
            }
        }

        self.flush();
        work
    }

    fn flush(&mut self) {
        if !self.outside_tx.is_empty() {
            let n = self.outside_tx.len();
            let sent = self
                .outside
                .tx_burst(&mut self.outside_tx, &mut self.pool)
                .unwrap_or(0);
            self.stats.outside_tx.add(sent as u64);
            self.stats
                .count_drop(DropReason::TxFailed, n.saturating_sub(sent) as u64);
        }
        if !self.inside_tx.is_empty() {
            let n = self.inside_tx.len();
            let sent = self
                .inside
                .tx_burst(&mut self.inside_tx, &mut self.pool)
                .unwrap_or(0);
            self.stats.inside_tx.add(sent as u64);
            self.stats
                .count_drop(DropReason::TxFailed, n.saturating_sub(sent) as u64);
        }
    }

    #[inline]
    fn discard(&mut self, p: Packet, reason: DropReason) {
        self.stats.count_drop(reason, 1);
        self.pool.put(p);
    }

    /// Hands `p` to the worker that owns its SA.
    #[inline]
    fn hand_off(&mut self, owner: WorkerId, p: Packet) {
        match self.handoff.send(owner, p) {
            Ok(()) => self.stats.handed_off.add(1),
            Err(p) => self.discard(p, DropReason::QueueFull),
        }
    }

    /// A packet from the outside: NAT-T keepalive, IKE, or ESP.
    #[inline]
    fn inbound_outside(&mut self, t: &SaTables, p: Packet) {
        let d = p.data();
        if p.meta.encap == Encap::EspInUdp {
            match wire::natt::classify(d) {
                Classified::Esp => {}
                Classified::Ike(_) => return self.pass_to_control(p),
                Classified::Keepalive => {
                    self.stats.keepalives.add(1);
                    return self.pool.put(p);
                }
                Classified::Malformed => return self.discard(p, DropReason::Malformed),
            }
        }
        let Ok(h) = wire::esp::Packet::new_checked(d) else {
            return self.discard(p, DropReason::Malformed);
        };
        let spi = h.spi();
        let Some(sa) = t.inbound_sa(spi) else {
            return self.discard(p, DropReason::UnknownSpi);
        };
        if sa.owner != self.cfg.id {
            return self.hand_off(sa.owner, p);
        }
        let mut p = p;
        let outer = (p.meta.encap, p.meta.remote.is_ipv6());
        match esp::open(sa, &mut p) {
            Err(r) => self.discard(p, r),
            Ok(o) => match o.next_header {
                next_header::IPV4 | next_header::IPV6 => match wire::ip_src_dst(p.data()) {
                    Err(_) => self.discard(p, DropReason::Malformed),
                    // The next header says which IP the packet is (RFC
                    // 4303 §2.6); a peer that says otherwise is broken.
                    Ok((src, _)) if src.is_ipv6() != (o.next_header == next_header::IPV6) => {
                        self.discard(p, DropReason::Malformed)
                    }
                    Ok((src, _)) if !sa.allows_source(src) => {
                        self.discard(p, DropReason::PolicyMismatch)
                    }
                    Ok((src, _)) => {
                        // The peer's SYN-ACK gets the same clamp as ours.
                        let max =
                            pmtu::max_inner(usize::from(self.cfg.pmtu.outer_mtu), outer.0, outer.1);
                        self.clamp_mss(&mut p, max, src.is_ipv6());
                        p.meta.encap = Encap::Inner;
                        self.stats.decrypted.add(1);
                        self.inside_tx.push(p);
                    }
                },
                next_header::NONE => {
                    self.stats.dummies.add(1);
                    self.pool.put(p);
                }
                next_header::CONTROL => {
                    p.meta.encap = Encap::Control;
                    p.meta.spi = sa.spi;
                    self.pass_to_control(p);
                }
                _ => self.discard(p, DropReason::Malformed),
            },
        }
    }

    /// A cleartext packet from the protected network: route and seal.
    /// `routed` is the tunnel the look-ahead already found for it in `t`.
    #[inline]
    fn inbound_clear(&mut self, t: &SaTables, mut p: Packet, routed: Option<TunnelId>) {
        let Ok((_, dst)) = wire::ip_src_dst(p.data()) else {
            return self.discard(p, DropReason::Malformed);
        };
        let Some(tunnel) = routed.or_else(|| t.routes.lookup(dst)) else {
            return self.discard(p, DropReason::NoRoute);
        };
        let Some(sa) = t.outbound_sa(tunnel) else {
            if t.is_holding(tunnel) {
                return self.hold(tunnel, p);
            }
            return self.discard(p, DropReason::NoRoute);
        };
        if sa.owner != self.cfg.id {
            return self.hand_off(sa.owner, p);
        }
        let max = pmtu::max_inner(
            usize::from(self.cfg.pmtu.outer_mtu),
            sa.encap,
            sa.remote().is_ipv6(),
        );
        if p.len() > max {
            if pmtu::must_not_fragment(p.data()) {
                return self.too_big(p, max);
            }
            let mut rest = std::mem::take(&mut self.fragments);
            if pmtu::fragment_v4(&mut p, max, &mut self.pool, &mut rest) {
                self.stats.fragmented.add(1);
                // In order: the receiver reassembles sooner.
                self.seal_out(sa, p, next_header::IPV4);
                for f in rest.drain(..) {
                    self.seal_out(sa, f, next_header::IPV4);
                }
                self.fragments = rest;
                return;
            }
            self.fragments = rest;
        }
        self.clamp_mss(&mut p, max, dst.is_ipv6());
        let nh = if dst.is_ipv4() {
            next_header::IPV4
        } else {
            next_header::IPV6
        };
        self.seal_out(sa, p, nh);
    }

    #[inline]
    fn seal_out(&mut self, sa: &crate::sa::OutboundSa, mut p: Packet, nh: u8) {
        match esp::seal(sa, &mut p, nh) {
            Ok(()) => {
                self.stats.encrypted.add(1);
                self.outside_tx.push(p);
            }
            Err(r) => self.discard(p, r),
        }
    }

    /// Lowers a SYN's MSS to what fits in `max_inner` bytes, if enabled.
    #[inline]
    fn clamp_mss(&mut self, p: &mut Packet, max_inner: usize, v6: bool) {
        if self.cfg.pmtu.mss_clamp && pmtu::clamp_mss(p.data_mut(), pmtu::mss_for(max_inner, v6)) {
            self.stats.mss_clamped.add(1);
        }
    }

    /// Drops `p`, too big for its tunnel and not to be fragmented, and
    /// tells its source the MTU that fits (rate-limited).
    #[cold]
    fn too_big(&mut self, p: Packet, max_inner: usize) {
        if self.icmp_bucket.allow(std::time::Instant::now()) {
            let mut icmp = self.pool.get();
            let mtu = u16::try_from(max_inner).unwrap_or(u16::MAX);
            if pmtu::write_too_big(p.data(), mtu, &mut icmp) {
                self.stats.icmp_too_big_sent.add(1);
                self.inside_tx.push(icmp);
            } else {
                self.pool.put(icmp);
            }
        } else {
            self.stats.icmp_too_big_limited.add(1);
        }
        self.discard(p, DropReason::TooBig);
    }

    /// Keeps a packet for a tunnel whose first epoch is not confirmed yet.
    fn hold(&mut self, tunnel: TunnelId, p: Packet) {
        let q = self.held.entry(tunnel).or_default();
        if q.len() >= HOLD_PER_TUNNEL || self.held_total >= HOLD_TOTAL {
            return self.discard(p, DropReason::HoldDropped);
        }
        q.push_back(p);
        self.held_total += 1;
    }

    /// Sends what was held for tunnels that now have an outbound SA, and
    /// drops what was held for tunnels no longer probing.
    fn release_held(&mut self, t: &SaTables) {
        let ready: Vec<TunnelId> = self
            .held
            .keys()
            .copied()
            .filter(|tun| t.outbound_sa(*tun).is_some() || !t.is_holding(*tun))
            .collect();
        for tun in ready {
            let q = self.held.remove(&tun).unwrap_or_default();
            self.held_total -= q.len();
            let up = t.outbound_sa(tun).is_some();
            for p in q {
                if up {
                    self.inbound_clear(t, p, None);
                } else {
                    self.discard(p, DropReason::HoldDropped);
                }
            }
        }
    }

    /// Seals the control plane's messages on the SAs it named.
    fn seal_control_messages(&mut self) -> usize {
        let mut n = 0;
        while n < self.cfg.burst {
            let Some(req) = self.control.seal.pop() else {
                break;
            };
            n += 1;
            let mut p = req.packet;
            if req.sa.owner != self.cfg.id {
                // Only the owner may take sequence numbers of this SA.
                debug_assert!(false, "seal request sent to the wrong worker");
                self.discard(p, DropReason::QueueFull);
                continue;
            }
            match esp::seal(&req.sa, &mut p, next_header::CONTROL) {
                Ok(()) => self.outside_tx.push(p),
                Err(r) => self.discard(p, r),
            }
        }
        n
    }

    fn pass_to_control(&mut self, p: Packet) {
        match self.control.to_control.push(p) {
            Ok(()) => self.stats.to_control.add(1),
            Err(p) => self.discard(p, DropReason::QueueFull),
        }
    }

    /// Nothing to do: spin a while (cheap wake-up under load), then sleep on
    /// the ports' fds so an idle gateway does not burn its cores.
    fn idle(&mut self) {
        self.stats.idle_polls.add(1);
        self.idle_polls = self.idle_polls.saturating_add(1);
        let spin = self.cfg.spin_before_sleep;
        if spin == 0 || self.idle_polls < spin {
            std::hint::spin_loop();
            return;
        }
        self.wait_fds.clear();
        let outside = self.outside.readable_fds(&mut self.wait_fds);
        let inside = self.inside.readable_fds(&mut self.wait_fds);
        if outside && inside {
            port::wait_readable(&self.wait_fds, &mut self.poll_fds, Duration::from_millis(1));
        } else {
            // A port without an fd (mem): nap briefly instead.
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

#[cfg(test)]
mod tests;
