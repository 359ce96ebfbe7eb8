//! An inside port that sends every packet back where it came from: the
//! protected network of a gateway under load test (esprit-pktgen measures
//! what returns). Swapping the addresses and the ports changes no IPv4,
//! UDP or TCP checksum: they are sums, and a sum does not care about order.

use std::collections::VecDeque;
use std::io;

use super::Port;
use crate::packet::{Encap, Packet, PacketPool};

/// Reflects up to `capacity` packets in flight; more are dropped.
pub struct ReflectPort {
    queue: VecDeque<Packet>,
    capacity: usize,
    reflected: u64,
}

impl ReflectPort {
    pub fn new(capacity: usize) -> ReflectPort {
        ReflectPort {
            queue: VecDeque::with_capacity(capacity),
            capacity,
            reflected: 0,
        }
    }

    /// Packets sent back so far.
    pub fn reflected(&self) -> u64 {
        self.reflected
    }
}

/// Swaps source and destination address, and the L4 ports for UDP and TCP.
/// Returns false for what it cannot parse (the packet is then dropped).
pub fn swap_endpoints(d: &mut [u8]) -> bool {
    let (addrs, l4_at, proto) = match d.first().map(|b| b >> 4) {
        Some(4) if d.len() >= 20 => {
            let ihl = (d[0] & 0x0f) as usize * 4;
            (12..20, ihl, d[9])
        }
        Some(6) if d.len() >= 40 => (8..40, 40, d[6]),
        _ => return false,
    };
    let half = (addrs.end - addrs.start) / 2;
    let (a, b) = d[addrs].split_at_mut(half);
    a.swap_with_slice(b);
    if matches!(proto, 6 | 17) && d.len() >= l4_at + 4 {
        let (sp, dp) = d[l4_at..l4_at + 4].split_at_mut(2);
        sp.swap_with_slice(dp);
    }
    true
}

impl Port for ReflectPort {
    fn rx_burst(
        &mut self,
        _pool: &mut PacketPool,
        out: &mut Vec<Packet>,
        max: usize,
    ) -> io::Result<usize> {
        let n = max.min(self.queue.len());
        out.extend(self.queue.drain(..n));
        Ok(n)
    }

    fn tx_burst(&mut self, pkts: &mut Vec<Packet>, pool: &mut PacketPool) -> io::Result<usize> {
        let mut sent = 0;
        for mut p in pkts.drain(..) {
            if self.queue.len() < self.capacity && swap_endpoints(p.data_mut()) {
                p.meta.encap = Encap::Inner;
                self.queue.push_back(p);
                sent += 1;
            } else {
                pool.put(p);
            }
        }
        self.reflected += sent as u64;
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::ipv4_udp;
    use crate::wire::{ipv4, udp};
    use std::net::Ipv4Addr;

    #[test]
    fn packets_come_back_with_endpoints_swapped_and_checksums_valid() {
        let a = Ipv4Addr::new(10, 2, 0, 5);
        let b = Ipv4Addr::new(10, 1, 0, 1);
        let mut port = ReflectPort::new(2);
        let mut pool = PacketPool::with_capacity(0);
        let mut pkts = vec![
            Packet::from_slice(&ipv4_udp(a, b, (1000, 7), b"ping")).unwrap(),
            Packet::from_slice(&[0x99; 10]).unwrap(),
            Packet::from_slice(&ipv4_udp(a, b, (1001, 7), b"2")).unwrap(),
            Packet::from_slice(&ipv4_udp(a, b, (1002, 7), b"3")).unwrap(),
        ];
        assert_eq!(
            port.tx_burst(&mut pkts, &mut pool).unwrap(),
            2,
            "garbage and overflow dropped"
        );
        assert_eq!(pool.available(), 2);
        let mut back = Vec::new();
        assert_eq!(port.rx_burst(&mut pool, &mut back, 8).unwrap(), 2);
        let ip = ipv4::Packet::new_checked(back[0].data()).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (b, a));
        assert!(ip.verify_checksum());
        let u = udp::Packet::new_checked(ip.payload()).unwrap();
        assert_eq!((u.src_port(), u.dst_port()), (7, 1000));
        assert_eq!(back[0].meta.encap, Encap::Inner);
    }

    #[test]
    fn ipv6_addresses_swap_too() {
        let mut p = vec![0u8; 48];
        p[0] = 0x60;
        p[6] = 17;
        p[8..24].fill(1);
        p[24..40].fill(2);
        p[40..44].copy_from_slice(&[0, 1, 0, 2]);
        assert!(swap_endpoints(&mut p));
        assert!(p[8..24].iter().all(|b| *b == 2) && p[24..40].iter().all(|b| *b == 1));
        assert_eq!(&p[40..44], &[0, 2, 0, 1]);
        assert!(!swap_endpoints(&mut [0x45, 0, 0]));
    }
}
