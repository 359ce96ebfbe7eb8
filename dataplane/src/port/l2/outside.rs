//! The L2 side of an outside port that owns a whole interface (AF_PACKET,
//! AF_XDP, DPDK): turns received Ethernet frames into the packets the
//! worker expects (starting at the ESP header, or at the non-ESP marker for
//! IKE) and wraps the worker's packets in UDP/IPv4/Ethernet on the way out.
//! It answers ARP and ICMP echo for its own address itself.
//!
//! No I/O here: the port feeds frames and collects frames to send, so all
//! of it is tested without sockets.
//!
//! IKE on UDP 500 has no non-ESP marker on the wire (RFC 3948 §2.2 marks
//! only port 4500). So that the worker's existing rule ("four zero bytes:
//! to the control plane") carries it too, rx prepends a zero marker and
//! sets `meta.local_port = 500`; the control plane strips the marker when
//! `local_port` is the IKE port. On tx the packet is sent as given, from
//! UDP port `meta.local_port` (the NAT-T port when 0).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::arp::{ArpOp, ArpPacket, ARP_LEN};
use super::ethernet::{ethertype, EthernetHeader, MacAddr, HEADER_LEN};
use super::icmp::answer_echo;
use super::ipv4::{
    checksum, emit_ipv4, protocol, Ipv4Error, Ipv4Header, UdpHeader, IPV4_HEADER_LEN,
    UDP_HEADER_LEN,
};
use super::ipv6::{emit_ipv6, multicast_mac, pseudo_checksum, solicited_node, IPV6_HEADER_LEN};
use super::ndp::{self, NdMessage};
use super::neighbour::{NeighbourCache, Resolution, SharedNeighbours};
use crate::packet::{Encap, Packet, PacketPool};

/// The non-ESP marker (RFC 3948 §2.2).
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];
/// TTL of the packets we originate (RFC 1700's default).
const TTL: u8 = 64;

/// How an outside interface is addressed.
#[derive(Clone, Debug)]
pub struct L2Config {
    /// The interface's MAC.
    pub mac: MacAddr,
    /// The gateway's outside address on this interface.
    pub ipv4: Ipv4Addr,
    pub prefix_len: u8,
    /// Next hop for peers outside the prefix; `None`: on-link only.
    pub gateway: Option<Ipv4Addr>,
    /// The outside IPv6 address, if any: neighbour discovery and echo for
    /// it, ESP to IPv6 peers.
    pub ipv6: Option<Ipv6Addr>,
    pub prefix6_len: u8,
    /// IPv6 next hop for peers outside `prefix6_len` (often link-local).
    pub gateway6: Option<Ipv6Addr>,
    /// Static routes (from the config), longest prefix first-class: they
    /// win over the gateways, on-link peers win over them.
    pub routes: Vec<Route>,
    /// ESP-in-UDP and IKE after NAT detection (RFC 3948).
    pub nat_t_port: u16,
    /// IKE (RFC 7296 §2).
    pub ike_port: u16,
    /// Largest IP packet the link carries.
    pub mtu: usize,
    /// An entry older than this is re-asked (Linux: base_reachable_time 30 s).
    pub reachable_time: Duration,
    /// Between ARP requests for one next hop.
    pub arp_retry: Duration,
    /// Requests before the held packets for a next hop are dropped.
    pub arp_tries: u32,
    /// Packets held per port while their next hop is unresolved.
    pub hold_limit: usize,
}

impl L2Config {
    pub fn new(mac: MacAddr, ipv4: Ipv4Addr, prefix_len: u8) -> L2Config {
        L2Config {
            mac,
            ipv4,
            prefix_len: prefix_len.min(32),
            gateway: None,
            ipv6: None,
            prefix6_len: 64,
            gateway6: None,
            routes: Vec::new(),
            nat_t_port: 4500,
            ike_port: 500,
            mtu: 1500,
            reachable_time: Duration::from_secs(30),
            arp_retry: Duration::from_secs(1),
            arp_tries: 3,
            hold_limit: 256,
        }
    }

    fn on_link(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0);
        u32::from(ip) & mask == u32::from(self.ipv4) & mask
    }

    fn on_link6(&self, ip: Ipv6Addr) -> bool {
        let Some(me) = self.ipv6 else { return false };
        // fe80::/10 is always on-link (RFC 4291 §2.5.6).
        if ip.segments()[0] & 0xffc0 == 0xfe80 {
            return true;
        }
        let mask = u128::MAX
            .checked_shl(128 - u32::from(self.prefix6_len.min(128)))
            .unwrap_or(0);
        u128::from(ip) & mask == u128::from(me) & mask
    }

    /// The next hop towards `dst`, if any.
    fn next_hop(&self, dst: IpAddr) -> Option<IpAddr> {
        let on_link = match dst {
            IpAddr::V4(d) => self.on_link(d),
            IpAddr::V6(d) => self.on_link6(d),
        };
        if on_link {
            return Some(dst);
        }
        let best = self
            .routes
            .iter()
            .filter(|r| r.contains(dst))
            .max_by_key(|r| r.prefix_len);
        if let Some(r) = best {
            return Some(r.via);
        }
        match dst {
            IpAddr::V4(d) if self.on_link(d) => Some(dst),

            IpAddr::V4(_) => self.gateway.map(IpAddr::V4),
            IpAddr::V6(d) if self.on_link6(d) => Some(dst),
            IpAddr::V6(_) => self.gateway6.map(IpAddr::V6),
        }
    }
}

/// A static route: peers in `dest/prefix_len` are reached via `via`, an
/// on-link neighbour of the same family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub dest: IpAddr,
    pub prefix_len: u8,
    pub via: IpAddr,
}

impl Route {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.dest, ip) {
            (IpAddr::V4(d), IpAddr::V4(i)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len.min(32)))
                    .unwrap_or(0);
                u32::from(d) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(d), IpAddr::V6(i)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len.min(128)))
                    .unwrap_or(0);
                u128::from(d) & mask == u128::from(i) & mask
            }
            _ => false,
        }
    }
}

/// Counters of the L2 layer (per port).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L2Stats {
    /// Frames for another MAC or IP address.
    pub rx_not_for_us: u64,
    /// Truncated or inconsistent headers.
    pub rx_malformed: u64,
    pub rx_bad_checksum: u64,
    /// Outer IPv4 fragments (not reassembled).
    pub rx_fragment: u64,
    /// Other EtherTypes (IPv6 without an IPv6 address), protocols, ports.
    pub rx_unsupported: u64,
    pub arp_requests_answered: u64,
    /// IPv6 neighbour solicitations answered (RFC 4861 §7.2.4).
    pub nd_solicitations_answered: u64,
    pub nd_solicitations_sent: u64,
    pub arp_requests_sent: u64,
    pub arp_learned: u64,
    pub icmp_echo_answered: u64,
    /// Packets that waited for ARP.
    pub tx_held: u64,
    /// Packets dropped because ARP did not resolve (or the hold queue was full).
    pub tx_unresolved: u64,
    /// No gateway for an off-link peer.
    pub tx_no_route: u64,
    /// Larger than the MTU, or no headroom for the headers.
    pub tx_too_big: u64,
    /// IPv6 peers without an IPv6 address, inner packets on the outside.
    pub tx_unsupported: u64,
}

/// What to do with a received frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxVerdict {
    /// The packet now starts at the ESP header (or the non-ESP marker) and
    /// its `meta` is set: give it to the worker.
    Deliver,
    /// The packet now holds an answer frame (ARP reply, echo reply): send it.
    Reply,
    /// Used up here (an ARP reply learned): recycle it.
    Consumed,
    /// Dropped and counted: recycle it.
    Drop,
}

struct Held {
    next_hop: IpAddr,
    since: Instant,
    pkt: Packet,
}

struct Asking {
    last: Instant,
    tries: u32,
}

/// One port's L2 state.
pub struct L2Outside {
    cfg: L2Config,
    neighbours: NeighbourCache,
    held: VecDeque<Held>,
    asking: HashMap<IpAddr, Asking>,
    ident: u16,
    stats: L2Stats,
}

impl L2Outside {
    /// `neighbours` is shared by all the ports of one interface.
    pub fn new(cfg: L2Config, neighbours: SharedNeighbours) -> L2Outside {
        L2Outside {
            cfg,
            neighbours: NeighbourCache::new(neighbours),
            held: VecDeque::new(),
            asking: HashMap::new(),
            ident: 0,
            stats: L2Stats::default(),
        }
    }

    pub fn config(&self) -> &L2Config {
        &self.cfg
    }

    pub fn stats(&self) -> L2Stats {
        self.stats
    }

    /// Packets waiting for ARP now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Sorts one received frame the way every L2 port does: delivered
    /// packets go to `out` (returns true), replies such as ARP answers to
    /// `frames` for the wire, everything else back to `pool`.
    pub fn rx_into(
        &mut self,
        mut pkt: Packet,
        now: Instant,
        out: &mut Vec<Packet>,
        frames: &mut Vec<Packet>,
        pool: &mut PacketPool,
    ) -> bool {
        match self.rx(&mut pkt, now) {
            RxVerdict::Deliver => {
                out.push(pkt);
                return true;
            }
            RxVerdict::Reply => frames.push(pkt),
            RxVerdict::Consumed | RxVerdict::Drop => pool.put(pkt),
        }
        false
    }

    /// Frames a worker's whole burst into `frames` (then runs `poll`) and
    /// returns how many packets L2 refused or gave up on; the port counts
    /// the rest as handed over, less what the wire did not take.
    pub fn tx_burst(
        &mut self,
        pkts: &mut Vec<Packet>,
        now: Instant,
        frames: &mut Vec<Packet>,
        pool: &mut PacketPool,
    ) -> usize {
        let refused =
            |s: L2Stats| s.tx_no_route + s.tx_too_big + s.tx_unsupported + s.tx_unresolved;
        let before = refused(self.stats);
        for p in pkts.drain(..) {
            self.tx(p, now, frames, pool);
        }
        self.poll(now, frames, pool);
        (refused(self.stats) - before) as usize
    }

    /// Classifies a received frame and rewrites `pkt` per the verdict.
    pub fn rx(&mut self, pkt: &mut Packet, now: Instant) -> RxVerdict {
        let Some(eth) = EthernetHeader::parse(pkt.data()) else {
            self.stats.rx_malformed += 1;
            return RxVerdict::Drop;
        };
        let solicited = self
            .cfg
            .ipv6
            .is_some_and(|me| eth.dst == multicast_mac(solicited_node(me)));
        if eth.dst != self.cfg.mac && !eth.dst.is_broadcast() && !solicited {
            self.stats.rx_not_for_us += 1;
            return RxVerdict::Drop;
        }
        match eth.ethertype {
            ethertype::ARP => self.rx_arp(pkt, now),
            ethertype::IPV4 if eth.dst == self.cfg.mac => self.rx_ipv4(pkt, eth),
            ethertype::IPV4 => {
                self.stats.rx_not_for_us += 1;
                RxVerdict::Drop
            }
            ethertype::IPV6 if self.cfg.ipv6.is_some() && !eth.dst.is_broadcast() => {
                self.rx_ipv6(pkt, eth, now)
            }
            _ => {
                self.stats.rx_unsupported += 1;
                RxVerdict::Drop
            }
        }
    }

    fn rx_arp(&mut self, pkt: &mut Packet, now: Instant) -> RxVerdict {
        let Some(arp) = pkt.data().get(HEADER_LEN..).and_then(ArpPacket::parse) else {
            self.stats.rx_malformed += 1;
            return RxVerdict::Drop;
        };
        let for_us = arp.target_ip == self.cfg.ipv4;
        // RFC 826 "merge": update a sender we know or are asking for, add
        // one that asks us. Probes (sender 0.0.0.0, RFC 5227) teach nothing.
        let sender = IpAddr::V4(arp.sender_ip);
        let known = !matches!(
            self.neighbours
                .resolve(sender, now, self.cfg.reachable_time),
            Resolution::Unknown
        );
        let wanted = self.asking.contains_key(&sender);
        if !arp.sender_ip.is_unspecified()
            && !arp.sender_mac.is_multicast()
            && (for_us || known || wanted)
        {
            self.neighbours.shared().learn(
                arp.sender_ip,
                arp.sender_mac,
                now,
                self.cfg.reachable_time,
            );
            self.stats.arp_learned += 1;
        }
        if arp.op != ArpOp::Request || !for_us {
            return RxVerdict::Consumed;
        }
        let reply = arp.reply_from(self.cfg.mac);
        match write_arp_frame(pkt, arp.sender_mac, self.cfg.mac, &reply) {
            Some(()) => {
                self.stats.arp_requests_answered += 1;
                RxVerdict::Reply
            }
            None => {
                self.stats.rx_malformed += 1;
                RxVerdict::Drop
            }
        }
    }

    fn rx_ipv4(&mut self, pkt: &mut Packet, eth: EthernetHeader) -> RxVerdict {
        let ip = match pkt.data().get(HEADER_LEN..).map(Ipv4Header::parse) {
            Some(Ok(ip)) => ip,
            Some(Err(Ipv4Error::BadChecksum)) => {
                self.stats.rx_bad_checksum += 1;
                return RxVerdict::Drop;
            }
            Some(Err(Ipv4Error::Fragment)) => {
                self.stats.rx_fragment += 1;
                return RxVerdict::Drop;
            }
            Some(Err(Ipv4Error::Malformed)) | None => {
                self.stats.rx_malformed += 1;
                return RxVerdict::Drop;
            }
        };
        if ip.dst != self.cfg.ipv4 {
            self.stats.rx_not_for_us += 1;
            return RxVerdict::Drop;
        }
        // Short frames are padded to 60 bytes: the IP length is the truth.
        pkt.truncate(HEADER_LEN + ip.total_len);
        let l4 = HEADER_LEN + ip.header_len;
        match ip.protocol {
            protocol::UDP => self.rx_udp(pkt, IpAddr::V4(ip.src), l4),
            protocol::ESP => rx_raw_esp(pkt, IpAddr::V4(ip.src), l4),
            protocol::ICMP => self.rx_icmp(pkt, eth, l4),
            _ => {
                self.stats.rx_unsupported += 1;
                RxVerdict::Drop
            }
        }
    }

    fn rx_udp(&mut self, pkt: &mut Packet, src: IpAddr, l4: usize) -> RxVerdict {
        let Some(udp) = pkt.data().get(l4..).and_then(UdpHeader::parse) else {
            self.stats.rx_malformed += 1;
            return RxVerdict::Drop;
        };
        let ike = udp.dst_port == self.cfg.ike_port;
        if udp.dst_port != self.cfg.nat_t_port && !ike {
            self.stats.rx_unsupported += 1;
            return RxVerdict::Drop;
        }
        pkt.truncate(l4 + udp.len);
        pkt.pull_front(l4 + UDP_HEADER_LEN);
        if ike {
            match pkt.push_front(NON_ESP_MARKER.len()) {
                Ok(m) => m.copy_from_slice(&NON_ESP_MARKER),
                Err(_) => {
                    self.stats.rx_malformed += 1;
                    return RxVerdict::Drop;
                }
            }
        }
        pkt.meta.remote = SocketAddr::new(src, udp.src_port);
        pkt.meta.local_port = udp.dst_port;
        pkt.meta.encap = Encap::EspInUdp;
        RxVerdict::Deliver
    }

    fn rx_icmp(&mut self, pkt: &mut Packet, eth: EthernetHeader, l4: usize) -> RxVerdict {
        let answered = pkt.data_mut().get_mut(l4..).is_some_and(answer_echo);
        if !answered {
            self.stats.rx_unsupported += 1;
            return RxVerdict::Drop;
        }
        let d = pkt.data_mut();
        let Some(ip) = d.get_mut(HEADER_LEN..l4) else {
            self.stats.rx_malformed += 1;
            return RxVerdict::Drop;
        };
        // Back to the sender: swap addresses, fresh TTL, new checksum.
        let (src, dst) = (
            [ip[12], ip[13], ip[14], ip[15]],
            [ip[16], ip[17], ip[18], ip[19]],
        );
        ip[12..16].copy_from_slice(&dst);
        ip[16..20].copy_from_slice(&src);
        ip[8] = TTL;
        ip[10..12].copy_from_slice(&[0, 0]);
        let c = checksum(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let back = EthernetHeader {
            dst: eth.src,
            src: self.cfg.mac,
            ethertype: ethertype::IPV4,
        };
        if back.emit(d).is_none() {
            self.stats.rx_malformed += 1;
            return RxVerdict::Drop;
        }
        self.stats.icmp_echo_answered += 1;
        RxVerdict::Reply
    }

    /// Wraps the worker's packet `pkt` (ESP, or a control-plane datagram)
    /// for the wire. Frames ready to send go to `out` (with any ARP request
    /// or neighbour solicitation it takes); unresolved ones are held;
    /// dropped ones go back to `pool`.
    pub fn tx(
        &mut self,
        mut pkt: Packet,
        now: Instant,
        out: &mut Vec<Packet>,
        pool: &mut PacketPool,
    ) {
        let remote = pkt.meta.remote;
        let proto = match pkt.meta.encap {
            Encap::EspInUdp => protocol::UDP,
            Encap::RawEsp => protocol::ESP,
            Encap::Inner | Encap::Control => {
                self.stats.tx_unsupported += 1;
                return pool.put(pkt);
            }
        };
        let ip_len = match (remote, self.cfg.ipv6) {
            (SocketAddr::V4(_), _) => IPV4_HEADER_LEN,
            (SocketAddr::V6(_), Some(_)) => IPV6_HEADER_LEN,
            (SocketAddr::V6(_), None) => {
                self.stats.tx_unsupported += 1;
                return pool.put(pkt);
            }
        };
        let l4_extra = if proto == protocol::UDP {
            UDP_HEADER_LEN
        } else {
            0
        };
        if ip_len + l4_extra + pkt.len() > self.cfg.mtu {
            self.stats.tx_too_big += 1;
            return pool.put(pkt);
        }
        if proto == protocol::UDP {
            let src_port = match pkt.meta.local_port {
                0 => self.cfg.nat_t_port,
                p => p,
            };
            let udp = UdpHeader {
                src_port,
                dst_port: remote.port(),
                len: UDP_HEADER_LEN + pkt.len(),
            };
            if pkt
                .push_front(UDP_HEADER_LEN)
                .ok()
                .and_then(|h| udp.emit(h))
                .is_none()
            {
                self.stats.tx_too_big += 1;
                return pool.put(pkt);
            }
        }
        let payload = pkt.len();
        let ok = match (remote, self.cfg.ipv6) {
            (SocketAddr::V4(r), _) => {
                self.ident = self.ident.wrapping_add(1);
                let (src, ident) = (self.cfg.ipv4, self.ident);
                pkt.push_front(IPV4_HEADER_LEN)
                    .ok()
                    .and_then(|h| emit_ipv4(h, src, *r.ip(), proto, payload, ident, TTL))
            }
            (SocketAddr::V6(r), Some(me)) => {
                // UDP over IPv6 must carry a checksum (RFC 8200 §8.1).
                if proto == protocol::UDP {
                    let c = match pseudo_checksum(me, *r.ip(), proto, pkt.data()) {
                        0 => 0xffff,
                        c => c,
                    };
                    if let Some(f) = pkt.data_mut().get_mut(6..8) {
                        f.copy_from_slice(&c.to_be_bytes());
                    }
                }
                pkt.push_front(IPV6_HEADER_LEN)
                    .ok()
                    .and_then(|h| emit_ipv6(h, me, *r.ip(), proto, payload, TTL))
            }
            (SocketAddr::V6(_), None) => None,
        };
        if ok.is_none() {
            self.stats.tx_too_big += 1;
            return pool.put(pkt);
        }
        let Some(next_hop) = self.cfg.next_hop(remote.ip()) else {
            self.stats.tx_no_route += 1;
            return pool.put(pkt);
        };
        self.send_via(next_hop, pkt, now, out, pool);
    }

    fn send_via(
        &mut self,
        next_hop: IpAddr,
        pkt: Packet,
        now: Instant,
        out: &mut Vec<Packet>,
        pool: &mut PacketPool,
    ) {
        match self
            .neighbours
            .resolve(next_hop, now, self.cfg.reachable_time)
        {
            Resolution::Reachable(mac) => self.push_framed(mac, next_hop, pkt, out, pool),
            Resolution::Stale(mac) => {
                self.push_framed(mac, next_hop, pkt, out, pool);
                self.ask(next_hop, now, out, pool);
            }
            Resolution::Unknown => {
                if self.held.len() >= self.cfg.hold_limit {
                    self.stats.tx_unresolved += 1;
                    pool.put(pkt);
                } else {
                    self.stats.tx_held += 1;
                    self.held.push_back(Held {
                        next_hop,
                        since: now,
                        pkt,
                    });
                }
                self.ask(next_hop, now, out, pool);
            }
        }
    }

    fn push_framed(
        &mut self,
        mac: MacAddr,
        next_hop: IpAddr,
        mut pkt: Packet,
        out: &mut Vec<Packet>,
        pool: &mut PacketPool,
    ) {
        let eth = EthernetHeader {
            dst: mac,
            src: self.cfg.mac,
            ethertype: if next_hop.is_ipv4() {
                ethertype::IPV4
            } else {
                ethertype::IPV6
            },
        };
        match pkt.push_front(HEADER_LEN).ok().and_then(|h| eth.emit(h)) {
            Some(()) => out.push(pkt),
            None => {
                self.stats.tx_too_big += 1;
                pool.put(pkt);
            }
        }
    }

    /// Sends an ARP request or neighbour solicitation for `ip` unless one
    /// went out within the retry time.
    fn ask(&mut self, ip: IpAddr, now: Instant, out: &mut Vec<Packet>, pool: &mut PacketPool) {
        if let Some(a) = self.asking.get(&ip) {
            if now.saturating_duration_since(a.last) < self.cfg.arp_retry {
                return;
            }
        }
        let a = self.asking.entry(ip).or_insert(Asking {
            last: now,
            tries: 0,
        });
        a.last = now;
        a.tries += 1;
        let mut p = pool.get();
        let written = match (ip, self.cfg.ipv6) {
            (IpAddr::V4(ip), _) => {
                let req = ArpPacket::request(self.cfg.mac, self.cfg.ipv4, ip);
                let w = write_arp_frame(&mut p, MacAddr::BROADCAST, self.cfg.mac, &req);
                self.stats.arp_requests_sent += u64::from(w.is_some());
                w
            }
            (IpAddr::V6(target), Some(me)) => {
                // RFC 4861 §7.2.2: to the target's solicited-node group.
                let group = solicited_node(target);
                let ns = NdMessage {
                    kind: ndp::NEIGHBOR_SOLICIT,
                    target,
                    mac: Some(self.cfg.mac),
                };
                let w = write_nd_frame(&mut p, multicast_mac(group), self.cfg.mac, me, group, &ns);
                self.stats.nd_solicitations_sent += u64::from(w.is_some());
                w
            }
            (IpAddr::V6(_), None) => None,
        };
        if written.is_some() {
            out.push(p);
        } else {
            pool.put(p);
        }
    }

    /// Timers and news: releases held packets whose next hop is now known,
    /// drops those that waited through all requests, re-asks. Call it on
    /// every burst; it costs an atomic load when nothing is pending.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Packet>, pool: &mut PacketPool) {
        let news = self.neighbours.refresh();
        if self.held.is_empty() && self.asking.is_empty() {
            return;
        }
        let give_up = self.cfg.arp_retry * self.cfg.arp_tries;
        if news || !self.held.is_empty() {
            for _ in 0..self.held.len() {
                let Some(h) = self.held.pop_front() else {
                    break;
                };
                match self
                    .neighbours
                    .resolve(h.next_hop, now, self.cfg.reachable_time)
                {
                    Resolution::Reachable(mac) | Resolution::Stale(mac) => {
                        self.push_framed(mac, h.next_hop, h.pkt, out, pool)
                    }
                    Resolution::Unknown if now.saturating_duration_since(h.since) >= give_up => {
                        self.stats.tx_unresolved += 1;
                        pool.put(h.pkt);
                    }
                    Resolution::Unknown => self.held.push_back(h),
                }
            }
        }
        let mut again = Vec::new();
        let (reach, retry, tries) = (
            self.cfg.reachable_time,
            self.cfg.arp_retry,
            self.cfg.arp_tries,
        );
        self.asking.retain(|ip, a| {
            if matches!(
                self.neighbours.resolve(*ip, now, reach),
                Resolution::Reachable(_)
            ) {
                return false;
            }
            if now.saturating_duration_since(a.last) < retry {
                return true;
            }
            if a.tries >= tries {
                return false;
            }
            again.push(*ip);
            true
        });
        for ip in again {
            self.ask(ip, now, out, pool);
        }
    }
}

/// Makes `pkt` an Ethernet frame carrying `arp`.
fn write_arp_frame(pkt: &mut Packet, dst: MacAddr, src: MacAddr, arp: &ArpPacket) -> Option<()> {
    pkt.set_data(&[0u8; HEADER_LEN + ARP_LEN]).ok()?;
    let d = pkt.data_mut();
    EthernetHeader {
        dst,
        src,
        ethertype: ethertype::ARP,
    }
    .emit(d)?;
    arp.emit(d.get_mut(HEADER_LEN..)?)
}

/// Takes the IP payload from `l4` on as raw ESP from `src`.
pub(super) fn rx_raw_esp(pkt: &mut Packet, src: IpAddr, l4: usize) -> RxVerdict {
    pkt.pull_front(l4);
    pkt.meta.remote = SocketAddr::new(src, 0);
    pkt.meta.local_port = 0;
    pkt.meta.encap = Encap::RawEsp;
    RxVerdict::Deliver
}

mod v6;

use v6::write_nd_frame;

#[cfg(test)]
mod tests;
