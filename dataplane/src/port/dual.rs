//! Two outside ports as one: ESP-in-UDP and raw ESP side by side. Receive
//! takes from both; transmit sends each packet on the port of its
//! encapsulation.

use std::io;
use std::os::fd::RawFd;

use super::Port;
use crate::packet::{Encap, Packet, PacketPool};

/// `udp` carries ESP-in-UDP (and IKE on 4500), `raw` carries raw ESP.
pub struct DualPort<U: Port, R: Port> {
    pub udp: U,
    pub raw: R,
    raw_tx: Vec<Packet>,
}

impl<U: Port, R: Port> DualPort<U, R> {
    pub fn new(udp: U, raw: R) -> Self {
        DualPort {
            udp,
            raw,
            raw_tx: Vec::new(),
        }
    }
}

impl<U: Port, R: Port> Port for DualPort<U, R> {
    fn rx_burst(
        &mut self,
        pool: &mut PacketPool,
        out: &mut Vec<Packet>,
        max: usize,
    ) -> io::Result<usize> {
        let n = self.udp.rx_burst(pool, out, max)?;
        Ok(n + self.raw.rx_burst(pool, out, max.saturating_sub(n))?)
    }

    fn tx_burst(&mut self, pkts: &mut Vec<Packet>, pool: &mut PacketPool) -> io::Result<usize> {
        // Both sides keep the burst's order: a swap_remove here once sent
        // a burst's raw ESP packets first, then the rest backwards.
        if pkts.iter().any(|p| p.meta.encap == Encap::RawEsp) {
            self.raw_tx
                .extend(pkts.extract_if(.., |p| p.meta.encap == Encap::RawEsp));
        }
        let mut sent = self.udp.tx_burst(pkts, pool)?;
        if !self.raw_tx.is_empty() {
            sent += self.raw.tx_burst(&mut self.raw_tx, pool)?;
        }
        Ok(sent)
    }

    /// Both sockets: an idle worker sleeps until either has a packet (with
    /// only `readable_fd` it napped 100 µs at a time, awake 10,000 times a
    /// second with nothing to do).
    fn readable_fds(&self, fds: &mut Vec<RawFd>) -> bool {
        // Both asked, so neither's fd is left out of a partial list.
        let udp = self.udp.readable_fds(fds);
        let raw = self.raw.readable_fds(fds);
        udp && raw
    }

    fn rx_dropped(&self) -> u64 {
        self.udp.rx_dropped() + self.raw.rx_dropped()
    }
}

impl<P: Port + ?Sized> Port for Box<P> {
    fn rx_burst(
        &mut self,
        pool: &mut PacketPool,
        out: &mut Vec<Packet>,
        max: usize,
    ) -> io::Result<usize> {
        (**self).rx_burst(pool, out, max)
    }

    fn tx_burst(&mut self, pkts: &mut Vec<Packet>, pool: &mut PacketPool) -> io::Result<usize> {
        (**self).tx_burst(pkts, pool)
    }

    fn readable_fd(&self) -> Option<RawFd> {
        (**self).readable_fd()
    }

    fn readable_fds(&self, fds: &mut Vec<RawFd>) -> bool {
        (**self).readable_fds(fds)
    }

    fn rx_dropped(&self) -> u64 {
        (**self).rx_dropped()
    }

    fn super_packets(&self) -> (u64, u64) {
        (**self).super_packets()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::mem::link;

    #[test]
    fn each_packet_leaves_by_its_encapsulation_and_both_are_received() {
        let (udp, udp_far) = link(8);
        let (raw, raw_far) = link(8);
        let mut dual = DualPort::new(udp, raw);
        let mut pool = PacketPool::with_capacity(0);
        let mk = |b: &[u8], e| {
            let mut p = Packet::from_slice(b).unwrap();
            p.meta.encap = e;
            p
        };
        let mut out = vec![
            mk(b"r0", Encap::RawEsp),
            mk(b"u1", Encap::EspInUdp),
            mk(b"r1", Encap::RawEsp),
            mk(b"u2", Encap::EspInUdp),
            mk(b"r2", Encap::RawEsp),
            mk(b"u3", Encap::EspInUdp),
        ];
        assert_eq!(dual.tx_burst(&mut out, &mut pool).unwrap(), 6);
        // Each side in the burst's order.
        for (far, want) in [
            (&udp_far, [b"u1", b"u2", b"u3"]),
            (&raw_far, [b"r0", b"r1", b"r2"]),
        ] {
            for w in want {
                assert_eq!(far.recv().unwrap().data(), w);
            }
            assert_eq!(far.pending(), 0);
        }
        udp_far.send(mk(b"in-u", Encap::EspInUdp)).unwrap();
        raw_far.send(mk(b"in-r", Encap::RawEsp)).unwrap();
        let mut got = Vec::new();
        assert_eq!(dual.rx_burst(&mut pool, &mut got, 8).unwrap(), 2);
    }
}
