//! The IPv6 half of [`L2Outside`]'s receive side: neighbour discovery for
//! the outside address (RFC 4861) and ICMPv6 echo (RFC 4443 §4).

use std::net::{IpAddr, Ipv6Addr};
use std::time::Instant;

use super::{rx_raw_esp, L2Outside, RxVerdict, TTL};
use crate::packet::Packet;
use crate::port::l2::ethernet::{ethertype, EthernetHeader, MacAddr, HEADER_LEN};
use crate::port::l2::ipv4::protocol;
use crate::port::l2::ipv6::{
    emit_ipv6, multicast_mac, pseudo_checksum, solicited_node, Ipv6Header, ICMPV6, IPV6_HEADER_LEN,
};
use crate::port::l2::ndp::{self, NdMessage, ND_LEN};
use crate::port::l2::neighbour::Resolution;

impl L2Outside {
    pub(super) fn rx_ipv6(
        &mut self,
        pkt: &mut Packet,
        eth: EthernetHeader,
        now: Instant,
    ) -> RxVerdict {
        let Some(me) = self.cfg.ipv6 else {
            self.stats.rx_unsupported += 1;
            return RxVerdict::Drop;
        };
        let Some(ip) = pkt.data().get(HEADER_LEN..).and_then(Ipv6Header::parse) else {
            self.stats.rx_malformed += 1;
            return RxVerdict::Drop;
        };
        let to_me = ip.dst == me;
        if !to_me && ip.dst != solicited_node(me) {
            self.stats.rx_not_for_us += 1;
            return RxVerdict::Drop;
        }
        pkt.truncate(HEADER_LEN + IPV6_HEADER_LEN + ip.payload_len);
        let l4 = HEADER_LEN + IPV6_HEADER_LEN;
        match ip.next_header {
            protocol::UDP if to_me => self.rx_udp(pkt, IpAddr::V6(ip.src), l4),
            protocol::ESP if to_me => rx_raw_esp(pkt, IpAddr::V6(ip.src), l4),
            ICMPV6 => self.rx_icmpv6(pkt, eth, &ip, me, now),
            _ => {
                self.stats.rx_unsupported += 1;
                RxVerdict::Drop
            }
        }
    }

    fn rx_icmpv6(
        &mut self,
        pkt: &mut Packet,
        eth: EthernetHeader,
        ip: &Ipv6Header,
        me: Ipv6Addr,
        now: Instant,
    ) -> RxVerdict {
        let l4 = HEADER_LEN + IPV6_HEADER_LEN;
        let Some(msg) = pkt.data().get(l4..) else {
            self.stats.rx_malformed += 1;
            return RxVerdict::Drop;
        };
        if pseudo_checksum(ip.src, ip.dst, ICMPV6, msg) != 0 {
            self.stats.rx_bad_checksum += 1;
            return RxVerdict::Drop;
        }
        let kind = msg.first().copied().unwrap_or(0);
        if kind == ndp::ECHO_REQUEST && ip.dst == me {
            return self.answer_echo6(pkt, eth, ip, me);
        }
        if kind != ndp::NEIGHBOR_SOLICIT && kind != ndp::NEIGHBOR_ADVERT {
            self.stats.rx_unsupported += 1;
            return RxVerdict::Drop;
        }
        // RFC 4861 §7.1: only from the link itself.
        let Some(nd) = NdMessage::parse(msg).filter(|_| ip.hop_limit == 255) else {
            self.stats.rx_malformed += 1;
            return RxVerdict::Drop;
        };
        let reach = self.cfg.reachable_time;
        if nd.kind == ndp::NEIGHBOR_ADVERT {
            let target = IpAddr::V6(nd.target);
            let known = !matches!(
                self.neighbours.resolve(target, now, reach),
                Resolution::Unknown
            );
            if let Some(mac) = nd
                .mac
                .filter(|_| known || self.asking.contains_key(&target))
            {
                self.neighbours.shared().learn(target, mac, now, reach);
                self.stats.arp_learned += 1;
            }
            return RxVerdict::Consumed;
        }
        if nd.target != me {
            return RxVerdict::Consumed;
        }
        // A solicitation for us: learn the asker (§7.2.3), then advertise.
        let unspecified = ip.src.is_unspecified();
        if let Some(mac) = nd.mac.filter(|m| !unspecified && !m.is_multicast()) {
            self.neighbours.shared().learn(ip.src, mac, now, reach);
            self.stats.arp_learned += 1;
        }
        // §7.2.4: to the asker, or to all nodes if it has no address yet.
        let (dst, dst_mac) = if unspecified {
            let all = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
            (all, multicast_mac(all))
        } else {
            (ip.src, nd.mac.unwrap_or(eth.src))
        };
        let na = NdMessage {
            kind: ndp::NEIGHBOR_ADVERT,
            target: me,
            mac: Some(self.cfg.mac),
        };
        match write_nd_frame(pkt, dst_mac, self.cfg.mac, me, dst, &na) {
            Some(()) => {
                self.stats.nd_solicitations_answered += 1;
                RxVerdict::Reply
            }
            None => {
                self.stats.rx_malformed += 1;
                RxVerdict::Drop
            }
        }
    }

    fn answer_echo6(
        &mut self,
        pkt: &mut Packet,
        eth: EthernetHeader,
        ip: &Ipv6Header,
        me: Ipv6Addr,
    ) -> RxVerdict {
        let l4 = HEADER_LEN + IPV6_HEADER_LEN;
        let d = pkt.data_mut();
        if d.len() < l4 + 8 {
            self.stats.rx_malformed += 1;
            return RxVerdict::Drop;
        }
        d[l4] = ndp::ECHO_REPLY;
        d[l4 + 2..l4 + 4].copy_from_slice(&[0, 0]);
        let c = pseudo_checksum(me, ip.src, ICMPV6, &d[l4..]);
        d[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
        let h = &mut d[HEADER_LEN..l4];
        h[7] = TTL;
        h[8..24].copy_from_slice(&me.octets());
        h[24..40].copy_from_slice(&ip.src.octets());
        let back = EthernetHeader {
            dst: eth.src,
            src: self.cfg.mac,
            ethertype: ethertype::IPV6,
        };
        if back.emit(d).is_none() {
            self.stats.rx_malformed += 1;
            return RxVerdict::Drop;
        }
        self.stats.icmp_echo_answered += 1;
        RxVerdict::Reply
    }
}

/// Makes `pkt` an Ethernet/IPv6 frame carrying the ND message `nd` from
/// `src` to `dst`, hop limit 255 (RFC 4861 §7.1), checksum filled in.
pub(super) fn write_nd_frame(
    pkt: &mut Packet,
    dst_mac: MacAddr,
    src_mac: MacAddr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    nd: &NdMessage,
) -> Option<()> {
    pkt.set_data(&[0u8; HEADER_LEN + IPV6_HEADER_LEN + ND_LEN])
        .ok()?;
    let d = pkt.data_mut();
    EthernetHeader {
        dst: dst_mac,
        src: src_mac,
        ethertype: ethertype::IPV6,
    }
    .emit(d)?;
    emit_ipv6(d.get_mut(HEADER_LEN..)?, src, dst, ICMPV6, ND_LEN, 255)?;
    let msg = d.get_mut(HEADER_LEN + IPV6_HEADER_LEN..)?;
    nd.emit(msg)?;
    let c = pseudo_checksum(src, dst, ICMPV6, msg);
    msg.get_mut(2..4)?.copy_from_slice(&c.to_be_bytes());
    Some(())
}
