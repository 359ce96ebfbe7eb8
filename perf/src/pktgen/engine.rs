//! One sender/receiver thread: it owns some sockets and the clients on
//! them, seals and sends their numbered packets at its share of the rate,
//! and opens and counts what the gateway reflects back. Nothing is shared
//! between threads but a few progress counters.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::esp::{next_header, open, seal};
use dataplane::port::udp::UdpPort;
use dataplane::port::Port;
use dataplane::sa::{InboundSa, OutboundSa};
use dataplane::testkit::{ip_udp_payload, write_ip_udp};
use dataplane::{DropReason, Packet, PacketPool};
use rustc_hash::FxHashMap;

use super::by_spi::BySpi;
use super::clients::Client;
use super::cpu::CpuTime;
use super::look_ahead::{LookAhead, Receiver};
use super::receiver::{SeqWindow, Tally};
use super::traffic::{Pacer, Stamp, Stop, TrafficSpec, MAX_SIZE, STAMP_LEN};

/// Where the inner packets go: an address on the gateway's protected side
/// (the reflecting inside sends them back with the endpoints swapped).
pub const TARGET: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
/// The same for clients with IPv6 inner addresses (in gen-config's
/// `PROTECTED6`).
pub const TARGET6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, 1);
const TARGET_PORT: u16 = 7;

/// One socket and the clients that send through it.
pub struct Lane {
    pub port: UdpPort,
    pub clients: Vec<Client>,
}

/// Counters the main thread reads for the progress line.
#[derive(Default)]
pub struct Progress {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub rx_bytes: AtomicU64,
}

impl Progress {
    /// Shows the thread's counts so far to the progress line.
    fn publish(&self, res: &ThreadResult) {
        self.sent.store(res.sent, Ordering::Relaxed);
        self.received.store(res.tally.received, Ordering::Relaxed);
        self.rx_bytes.store(res.tally.rx_bytes, Ordering::Relaxed);
    }
}

/// Why packets did not count, besides loss.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Errors {
    /// Sealed but refused by the socket (its buffer full).
    pub tx_dropped: u64,
    /// Could not be sealed (sequence numbers or lifetime exhausted).
    pub seal_failed: u64,
    /// ESP whose SPI is none of ours.
    pub unknown_spi: u64,
    /// Datagrams that were not ESP (IKE, keepalives).
    pub not_esp: u64,
    /// ESP that did not open, by reason (authentication, replay, ...).
    pub open_failed: u64,
    pub auth_failed: u64,
    pub replayed: u64,
    /// Opened, but no stamp of ours inside (or another client's).
    pub foreign: u64,
    /// Opened, and an ICMP message inside: the protected network answered
    /// with an error (a closed port, no route) instead of echoing.
    pub icmp: u64,
}

impl Errors {
    pub fn merge(&mut self, o: &Errors) {
        self.tx_dropped += o.tx_dropped;
        self.seal_failed += o.seal_failed;
        self.unknown_spi += o.unknown_spi;
        self.not_esp += o.not_esp;
        self.open_failed += o.open_failed;
        self.auth_failed += o.auth_failed;
        self.replayed += o.replayed;
        self.foreign += o.foreign;
        self.icmp += o.icmp;
    }
}

/// What one thread did.
pub struct ThreadResult {
    pub sent: u64,
    /// Inner bytes handed to the socket.
    pub tx_bytes: u64,
    pub tally: Tally,
    pub errors: Errors,
    /// From its first send to its last.
    pub send_time: Duration,
    /// The thread's CPU time in the traffic loop, and the loop's length.
    pub cpu: CpuTime,
    pub wall: Duration,
    /// Packet buffers its pool allocated (steady traffic needs a few
    /// bursts' worth; more that grows with the run is a leak).
    pub buffers: u64,
    /// The sockets and clients, handed back (IKE mode deletes its SAs
    /// through them afterwards).
    pub lanes: Vec<Lane>,
}

/// What the traffic phase hands to IKE while it runs (`ike` mode with a
/// rekey storm): the clients' IKE datagrams and pongs go in, datagrams to
/// send and changes to the clients' SAs come out.
pub trait Hook: Send {
    /// A datagram on lane `lane` that is not ESP (IKE on the NAT-T port).
    fn datagram(&mut self, now: Instant, lane: usize, p: &Packet);
    /// A control message (pong) opened on client `client`'s SA `spi`.
    fn control(&mut self, now: Instant, client: u32, spi: u32, payload: &[u8]);
    /// Timers and rekeys: datagrams to send go to `outbox` (lane, packet),
    /// changes to the clients' SAs to `edits`. Sent packets return to the
    /// engine's `pool`, where the hook takes its buffers back from.
    fn poll(
        &mut self,
        now: Instant,
        edits: &mut Vec<Edit>,
        outbox: &mut Vec<(usize, Packet)>,
        pool: &mut PacketPool,
    );
}

/// A change to a client's SAs, made by a rekey.
pub enum Edit {
    /// The client also receives on this SA from now on.
    AddInbound { client: u32, sa: Arc<InboundSa> },
    /// The client sends on this SA from now on.
    SetOutbound { client: u32, sa: Arc<OutboundSa> },
    /// The old SA's grace period is over.
    RemoveInbound { spi: u32 },
}

/// A thread's share of the work.
pub struct Share {
    /// Packets per second for this thread.
    pub rate: Option<f64>,
    /// Packets for this thread (with `Stop::Count`).
    pub quota: u64,
}

/// Splits the spec between `threads` threads.
pub fn share(spec: &TrafficSpec, threads: usize, index: usize) -> Share {
    let t = threads.max(1) as u64;
    let i = index as u64;
    let quota = match spec.stop {
        Stop::Count(n) => n / t + u64::from(i < n % t),
        Stop::After(_) => u64::MAX,
    };
    Share {
        rate: spec.rate.map(|r| r / t as f64),
        quota,
    }
}

/// Whose turn it is to send: `train` packets from each client in a row,
/// the clients in order, round and round.
#[derive(Debug)]
struct Turns {
    clients: usize,
    train: usize,
    current: usize,
    sent_in_train: usize,
}

impl Turns {
    fn new(clients: usize, train: usize) -> Turns {
        Turns {
            clients,
            train: train.max(1),
            current: 0,
            sent_in_train: 0,
        }
    }

    /// The client (index in send order) of the next packet.
    fn next(&mut self) -> usize {
        let c = self.current;
        self.sent_in_train += 1;
        if self.sent_in_train == self.train {
            self.sent_in_train = 0;
            self.current = (self.current + 1) % self.clients.max(1);
        }
        c
    }
}

/// Puts each lane's clients in a random order, the same in every run (the
/// seed is fixed), so runs compare. The lanes keep their turns: shuffling
/// across them would split every send burst between sockets, and measure
/// smaller batches instead of colder tunnels.
fn shuffle(order: &mut [(usize, usize)]) {
    use rand::{seq::SliceRandom, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    for lane in order.chunk_by_mut(|a, b| a.0 == b.0) {
        lane.shuffle(&mut rng);
    }
}

struct Sender {
    /// (lane, client) in send order: round robin over all clients.
    order: Vec<(usize, usize)>,
    turn: Turns,
    /// The slots (in `order`) of the burst being sealed.
    upcoming: Vec<usize>,
    seq: Vec<u64>,
    scratch: Vec<u8>,
    n: u64,
    /// Inner bytes sealed per lane and not yet flushed.
    inner_bytes: Vec<usize>,
    look_ahead: LookAhead,
}

/// Runs one thread until its send phase and drain are over, or `abort`.
pub fn run(
    mut lanes: Vec<Lane>,
    spec: TrafficSpec,
    share: Share,
    epoch: Instant,
    progress: &Progress,
    abort: &AtomicBool,
    mut hook: Option<&mut (dyn Hook + 'static)>,
) -> ThreadResult {
    let mut pool = PacketPool::with_capacity(spec.burst * 4);
    let mut order = Vec::new();
    let lowest = lanes
        .iter()
        .flat_map(|l| &l.clients)
        .map(|c| c.inbound.spi)
        .min();
    let mut by_spi = BySpi::starting_at(lowest.unwrap_or(0));
    let mut by_id: FxHashMap<u32, (usize, usize)> = FxHashMap::default();
    for (l, lane) in lanes.iter().enumerate() {
        for (c, client) in lane.clients.iter().enumerate() {
            order.push((l, c));
            by_spi.insert(client.inbound.spi, (l, c, client.inbound.clone()));
            by_id.insert(client.id, (l, c));
        }
    }
    let (mut edits, mut outbox) = (Vec::new(), Vec::new());
    let mut windows: Vec<Vec<SeqWindow>> = lanes
        .iter()
        .map(|l| vec![SeqWindow::default(); l.clients.len()])
        .collect();
    let mut tx: Vec<Vec<Packet>> = lanes.iter().map(|_| Vec::new()).collect();
    let mut hook_tx: Vec<Vec<Packet>> = lanes.iter().map(|_| Vec::new()).collect();
    if spec.shuffle {
        shuffle(&mut order);
    }
    let look_ahead = LookAhead::for_clients(order.len());
    let mut sender = Sender {
        look_ahead,
        seq: vec![0; order.len()],
        turn: Turns::new(order.len(), spec.train),
        order,
        upcoming: Vec::with_capacity(spec.burst),
        scratch: vec![0u8; MAX_SIZE],
        n: 0,
        inner_bytes: vec![0; lanes.len()],
    };
    let fds: Vec<RawFd> = lanes.iter().filter_map(|l| l.port.readable_fd()).collect();
    let mut pollfds = Vec::with_capacity(fds.len());
    let mut rx = Vec::with_capacity(64);
    let mut res = ThreadResult {
        sent: 0,
        tx_bytes: 0,
        tally: Tally::default(),
        errors: Errors::default(),
        send_time: Duration::ZERO,
        cpu: CpuTime::default(),
        wall: Duration::ZERO,
        buffers: 0,
        lanes: Vec::new(),
    };
    let start = Instant::now();
    let cpu_at_start = CpuTime::of_this_thread();
    let end = match spec.stop {
        Stop::After(d) => start + d,
        Stop::Count(_) => start + Duration::from_secs(24 * 3600),
    };
    let mut pacer = Pacer::new(share.rate, spec.burst, start);
    let mut drain_until: Option<Instant> = None;
    let mut window = Window {
        size: spec.window,
        written_off: 0,
        last_rx: start,
    };
    loop {
        let now = Instant::now();
        let sending = drain_until.is_none()
            && res.sent < share.quota
            && now < end
            && !abort.load(Ordering::Relaxed);
        let (mut sent_now, mut blocked) = (0, false);
        if sending && !sender.order.is_empty() {
            let left = usize::try_from(share.quota - res.sent).unwrap_or(usize::MAX);
            let room = window.room(&res, now);
            let n = pacer.allow(now, spec.burst.min(left).min(room));
            let now_ns = epoch.elapsed().as_nanos() as u64;
            sender.plan(n);
            for i in 0..n {
                sender.before(&lanes, i);
                if let Some(&slot) = sender.upcoming.get(i) {
                    sender.one(slot, &lanes, &mut tx, &mut pool, &spec, now_ns, &mut res);
                }
            }
            (sent_now, blocked) = sender.flush(&mut lanes, &mut tx, &mut pool, &mut res);
            res.send_time = now.duration_since(start);
        } else if drain_until.is_none() {
            drain_until = Some(now + spec.drain);
        }
        let got = receive(
            &mut lanes,
            &mut windows,
            &by_spi,
            &mut rx,
            &mut pool,
            look_ahead,
            epoch,
            &mut res,
            hook.as_deref_mut(),
        );
        if let Some(h) = hook.as_deref_mut() {
            h.poll(now, &mut edits, &mut outbox, &mut pool);
            apply(&mut lanes, &mut by_spi, &by_id, &mut edits);
            send_outbox(&mut lanes, &mut outbox, &mut hook_tx, &mut pool);
        }
        if got > 0 {
            window.last_rx = now;
        }
        progress.publish(&res);
        if let Some(until) = drain_until {
            let all_back = res.tally.received + res.tally.late >= res.sent;
            if all_back || now >= until || abort.load(Ordering::Relaxed) {
                break;
            }
        }
        if sent_now == 0 && got == 0 {
            let wait = if blocked || (sending && window.full(&res, now)) {
                Duration::from_micros(50)
            } else if sending {
                pacer.wait().max(Duration::from_micros(20))
            } else {
                Duration::from_millis(1)
            };
            dataplane::port::wait_readable(&fds, &mut pollfds, wait);
        }
    }
    res.cpu = CpuTime::of_this_thread().since(cpu_at_start);
    res.wall = start.elapsed();
    res.buffers = pool.allocated();
    for (lane, out) in lanes.iter_mut().zip(tx.iter_mut()) {
        pool.put_all(out);
        lane.port.release_buffers(&mut pool);
    }
    res.lanes = lanes;
    res
}

/// The closed-loop limit on packets in flight.
struct Window {
    size: Option<usize>,
    /// Packets given up on (lost), so loss cannot close the window for good.
    written_off: u64,
    last_rx: Instant,
}

/// With the window full and nothing back for this long, what is in flight
/// is taken as lost.
const WRITE_OFF_AFTER: Duration = Duration::from_millis(100);

impl Window {
    fn in_flight(&self, res: &ThreadResult) -> u64 {
        res.sent
            .saturating_sub(res.tally.received + res.tally.late + self.written_off)
    }

    /// Packets that may leave now.
    fn room(&mut self, res: &ThreadResult, now: Instant) -> usize {
        let Some(size) = self.size else {
            return usize::MAX;
        };
        let flying = self.in_flight(res);
        if flying >= size as u64 && now.duration_since(self.last_rx) >= WRITE_OFF_AFTER {
            self.written_off += flying;
            self.last_rx = now;
            return size;
        }
        size.saturating_sub(usize::try_from(flying).unwrap_or(usize::MAX))
    }

    fn full(&self, res: &ThreadResult, _now: Instant) -> bool {
        self.size.is_some_and(|s| self.in_flight(res) >= s as u64)
    }
}

impl Sender {
    /// Hands each lane's sealed packets to its port; returns how many the
    /// kernel took and whether a port refused some (its buffer is full).
    fn flush(
        &mut self,
        lanes: &mut [Lane],
        tx: &mut [Vec<Packet>],
        pool: &mut PacketPool,
        res: &mut ThreadResult,
    ) -> (usize, bool) {
        let (mut sent, mut blocked) = (0, false);
        for ((lane, out), inner) in lanes
            .iter_mut()
            .zip(tx.iter_mut())
            .zip(self.inner_bytes.iter_mut())
        {
            if out.is_empty() {
                continue;
            }
            let total = out.len();
            let bytes = std::mem::take(inner);
            let ok = lane.port.tx_burst(out, pool).unwrap_or(0);
            if ok < total {
                blocked = true;
                res.errors.tx_dropped += (total - ok) as u64;
            }
            // Only what the kernel took counts as sent; on a partial send
            // the bytes are prorated.
            res.sent += ok as u64;
            res.tx_bytes += (bytes * ok / total.max(1)) as u64;
            sent += ok;
        }
        (sent, blocked)
    }

    /// Takes the next `n` turns.
    fn plan(&mut self, n: usize) {
        self.upcoming.clear();
        for _ in 0..n {
            let slot = self.turn.next();
            self.upcoming.push(slot);
        }
    }

    /// Before the `i`th packet of the burst is sealed: asks for the SAs of
    /// the clients whose turns come next (see `look_ahead`).
    fn before(&self, lanes: &[Lane], i: usize) {
        let client_of = |j: usize| {
            let &(l, c) = self.order.get(*self.upcoming.get(j)?)?;
            lanes.get(l)?.clients.get(c)
        };
        self.look_ahead.before_seal(client_of, i);
    }

    /// Builds, stamps and seals the next packet of the client in `slot`.
    #[allow(clippy::too_many_arguments)]
    fn one(
        &mut self,
        slot: usize,
        lanes: &[Lane],
        tx: &mut [Vec<Packet>],
        pool: &mut PacketPool,
        spec: &TrafficSpec,
        now_ns: u64,
        res: &mut ThreadResult,
    ) {
        let Some(&(l, c)) = self.order.get(slot) else {
            return;
        };
        let (Some(client), Some(out), Some(seq)) = (
            lanes.get(l).and_then(|lane| lane.clients.get(c)),
            tx.get_mut(l),
            self.seq.get_mut(slot),
        ) else {
            return;
        };
        *seq += 1;
        let size = spec.size.size_at(self.n);
        self.n += 1;
        let stamp = Stamp {
            client: client.id,
            seq: *seq,
            sent_ns: now_ns,
        };
        // An IPv6 packet is never shorter than its headers and the stamp.
        use dataplane::wire::{ipv4, ipv6, udp};
        let (target, headers, proto) = match client.inner {
            IpAddr::V4(_) => (
                IpAddr::V4(TARGET),
                ipv4::HEADER_LEN + udp::HEADER_LEN,
                next_header::IPV4,
            ),
            IpAddr::V6(_) => (
                IpAddr::V6(TARGET6),
                ipv6::HEADER_LEN + udp::HEADER_LEN,
                next_header::IPV6,
            ),
        };
        let Some(payload) = self
            .scratch
            .get_mut(..size.saturating_sub(headers).max(STAMP_LEN))
        else {
            return;
        };
        stamp.write(payload);
        let mut p = pool.get();
        let n = write_ip_udp(
            p.rx_space(),
            client.inner,
            target,
            (10_000 + (client.id % 50_000) as u16, TARGET_PORT),
            payload,
        )
        .unwrap_or(0);
        p.set_received_len(n);
        match seal(&client.outbound, &mut p, proto) {
            Ok(()) => {
                out.push(p);
                if let Some(b) = self.inner_bytes.get_mut(l) {
                    *b += n;
                }
            }
            Err(_) => {
                res.errors.seal_failed += 1;
                pool.put(p);
            }
        }
    }
}

/// Sends the hook's packets (IKE messages, pings) on their lanes, one
/// burst per lane (`per_lane` is scratch): during a storm a poll's outbox
/// holds several, and one system call each was 2% of the thread.
fn send_outbox(
    lanes: &mut [Lane],
    outbox: &mut Vec<(usize, Packet)>,
    per_lane: &mut [Vec<Packet>],
    pool: &mut PacketPool,
) {
    for (lane, p) in outbox.drain(..) {
        match per_lane.get_mut(lane) {
            Some(out) => out.push(p),
            None => pool.put(p),
        }
    }
    for (l, out) in lanes.iter_mut().zip(per_lane.iter_mut()) {
        if !out.is_empty() {
            let _ = l.port.tx_burst(out, pool);
            pool.put_all(out);
        }
    }
}

/// Carries out the hook's changes to the clients' SAs.
fn apply(
    lanes: &mut [Lane],
    by_spi: &mut BySpi<Receiver>,
    by_id: &FxHashMap<u32, (usize, usize)>,
    edits: &mut Vec<Edit>,
) {
    for e in edits.drain(..) {
        match e {
            Edit::AddInbound { client, sa } => {
                if let Some(&(l, c)) = by_id.get(&client) {
                    by_spi.insert(sa.spi, (l, c, sa));
                }
            }
            Edit::SetOutbound { client, sa } => {
                let slot = by_id
                    .get(&client)
                    .and_then(|&(l, c)| lanes.get_mut(l)?.clients.get_mut(c));
                if let Some(cl) = slot {
                    cl.outbound = sa;
                }
            }
            Edit::RemoveInbound { spi } => {
                by_spi.remove(spi);
            }
        }
    }
}

/// Datagrams taken from a socket at once.
const RX_BURST: usize = 64;

/// Receives and counts everything waiting on the lanes; returns how many
/// datagrams it took.
#[allow(clippy::too_many_arguments)]
fn receive(
    lanes: &mut [Lane],
    windows: &mut [Vec<SeqWindow>],
    by_spi: &BySpi<Receiver>,
    rx: &mut Vec<Packet>,
    pool: &mut PacketPool,
    look_ahead: LookAhead,
    epoch: Instant,
    res: &mut ThreadResult,
    mut hook: Option<&mut (dyn Hook + 'static)>,
) -> usize {
    let mut total = 0;
    for li in 0..lanes.len() {
        // Bounded per call, so sending is never starved by receiving.
        for _ in 0..16 {
            let Some(lane) = lanes.get_mut(li) else {
                break;
            };
            let n = lane.port.rx_burst(pool, rx, RX_BURST).unwrap_or(0);
            if n == 0 {
                break;
            }
            total += n;
            // One SPI lookup per packet, all of them before the first
            // open, so that the look-ahead knows where each SA is.
            let lookup = |p: &Packet| by_spi.get(esp_spi(p)?);
            let receivers: [Option<&Receiver>; RX_BURST] =
                std::array::from_fn(|i| rx.get(i).and_then(lookup));
            let now_ns = epoch.elapsed().as_nanos() as u64;
            for (i, mut p) in rx.drain(..).enumerate() {
                look_ahead.before_open(&receivers, windows, i);
                let receiver = match receivers.get(i) {
                    Some(r) => *r,
                    None => lookup(&p),
                };
                count_one(
                    lanes,
                    windows,
                    receiver,
                    &mut p,
                    now_ns,
                    res,
                    li,
                    hook.as_deref_mut(),
                );
                pool.put(p);
            }
        }
    }
    total
}

/// The SPI of an ESP datagram; `None` for IKE on port 4500 (the zero
/// non-ESP marker, RFC 3948 2.2) and keepalives.
fn esp_spi(p: &Packet) -> Option<u32> {
    match p.data().get(..4) {
        Some(b) if p.len() > 8 && b != [0, 0, 0, 0] => {
            Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }
        _ => None,
    }
}

#[allow(clippy::too_many_arguments)]
fn count_one(
    lanes: &[Lane],
    windows: &mut [Vec<SeqWindow>],
    receiver: Option<&Receiver>,
    p: &mut Packet,
    now_ns: u64,
    res: &mut ThreadResult,
    lane: usize,
    hook: Option<&mut (dyn Hook + 'static)>,
) {
    let Some(spi) = esp_spi(p) else {
        match hook {
            Some(h) => h.datagram(Instant::now(), lane, p),
            None => res.errors.not_esp += 1,
        }
        return;
    };
    let Some((l, c, sa)) = receiver else {
        res.errors.unknown_spi += 1;
        return;
    };
    let (Some(client), Some(window)) = (
        lanes.get(*l).and_then(|lane| lane.clients.get(*c)),
        windows.get_mut(*l).and_then(|w| w.get_mut(*c)),
    ) else {
        return;
    };
    match open(sa, p) {
        Ok(o) if o.next_header == next_header::IPV4 || o.next_header == next_header::IPV6 => {}
        Ok(o) if o.next_header == next_header::CONTROL && hook.is_some() => {
            if let Some(h) = hook {
                h.control(Instant::now(), client.id, spi, p.data());
            }
            return;
        }
        Ok(_) => {
            res.errors.foreign += 1;
            return;
        }
        Err(DropReason::AuthFailed) => {
            res.errors.auth_failed += 1;
            return;
        }
        Err(DropReason::Replay) => {
            res.errors.replayed += 1;
            return;
        }
        Err(_) => {
            res.errors.open_failed += 1;
            return;
        }
    }
    match ip_udp_payload(p.data()).and_then(Stamp::read) {
        Some(s) if s.client == client.id => res.tally.record(window, &s, p.len(), now_ns),
        _ if is_icmp(p.data()) => res.errors.icmp += 1,
        _ => res.errors.foreign += 1,
    }
}

fn is_icmp(inner: &[u8]) -> bool {
    const ICMP: u8 = 1;
    const ICMPV6: u8 = 58;
    match inner.first().map(|b| b >> 4) {
        Some(6) => dataplane::wire::ipv6::Packet::new_checked(inner)
            .is_ok_and(|ip| ip.next_header() == ICMPV6),
        _ => dataplane::wire::ipv4::Packet::new_checked(inner)
            .is_ok_and(|ip| ip.next_header() == ICMP),
    }
}

/// Progress of all threads.
pub fn totals(all: &[Arc<Progress>]) -> (u64, u64, u64) {
    all.iter().fold((0, 0, 0), |(s, r, b), p| {
        (
            s + p.sent.load(Ordering::Relaxed),
            r + p.received.load(Ordering::Relaxed),
            b + p.rx_bytes.load(Ordering::Relaxed),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::{is_icmp, shuffle, Turns};
    use dataplane::testkit::ipv4_udp;

    #[test]
    fn an_icmp_error_inside_is_told_from_foreign_traffic() {
        let a = std::net::Ipv4Addr::new(10, 1, 0, 1);
        let mut p = ipv4_udp(a, a, (7, 7), &[0; 8]);
        assert!(!is_icmp(&p), "UDP");
        p[9] = 1; // the protocol field: ICMP
        assert!(is_icmp(&p));
        assert!(!is_icmp(&p[..10]), "too short for a header");
        let mut v6 = [0u8; 64];
        let n = dataplane::testkit::write_ip_udp(
            &mut v6,
            super::TARGET6.into(),
            super::TARGET6.into(),
            (7, 7),
            &[0; 8],
        )
        .unwrap();
        assert!(!is_icmp(&v6[..n]), "UDP over IPv6");
        v6[6] = 58; // the next header field: ICMPv6
        assert!(is_icmp(&v6[..n]));
        v6[6] = 1;
        assert!(!is_icmp(&v6[..n]), "IPv6 does not carry ICMP for IPv4");
    }

    #[test]
    fn a_shuffled_order_mixes_each_lanes_clients_and_repeats() {
        let ordered: Vec<(usize, usize)> =
            (0..2).flat_map(|l| (0..500).map(move |c| (l, c))).collect();
        let mut a = ordered.clone();
        shuffle(&mut a);
        let moved = a.iter().zip(&ordered).filter(|(x, y)| x != y).count();
        assert!(moved > 900, "only {moved} of 1000 moved");
        assert!(
            a.iter().take(500).all(|x| x.0 == 0) && a.iter().skip(500).all(|x| x.0 == 1),
            "each lane's turns stay together"
        );
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, ordered, "a permutation");
        let mut b = ordered.clone();
        shuffle(&mut b);
        assert_eq!(a, b, "the same order every run");
    }

    #[test]
    fn clients_take_turns_in_trains() {
        let mut t = Turns::new(3, 1);
        let got: Vec<usize> = (0..7).map(|_| t.next()).collect();
        assert_eq!(got, [0, 1, 2, 0, 1, 2, 0], "round robin");
        let mut t = Turns::new(3, 2);
        let got: Vec<usize> = (0..8).map(|_| t.next()).collect();
        assert_eq!(got, [0, 0, 1, 1, 2, 2, 0, 0]);
        let mut t = Turns::new(2, 0);
        assert_eq!([t.next(), t.next()], [0, 1], "a train of 0 is 1");
    }
}
