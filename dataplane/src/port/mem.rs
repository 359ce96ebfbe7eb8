//! In-memory port: two bounded lock-free rings joined like the two ends of a
//! cable. Used by tests, the demo and the pure data-plane benchmarks, where
//! the cost of real I/O must not hide the cost of ESP.

use std::io;
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use super::Port;
use crate::packet::{Packet, PacketPool};

/// One end of an in-memory link.
pub struct MemPort {
    rx: Arc<ArrayQueue<Packet>>,
    tx: Arc<ArrayQueue<Packet>>,
}

/// A link of two ends; what one end transmits the other receives. Each
/// direction holds up to `capacity` packets; beyond that tx drops.
pub fn link(capacity: usize) -> (MemPort, MemPort) {
    let a_to_b = Arc::new(ArrayQueue::new(capacity));
    let b_to_a = Arc::new(ArrayQueue::new(capacity));
    (
        MemPort {
            rx: b_to_a.clone(),
            tx: a_to_b.clone(),
        },
        MemPort {
            rx: a_to_b,
            tx: b_to_a,
        },
    )
}

impl MemPort {
    /// Injects one packet as if the far end had sent it; gives it back if
    /// the ring is full.
    pub fn send(&self, p: Packet) -> Result<(), Packet> {
        self.tx.push(p)
    }

    /// Takes one packet the far end sent.
    pub fn recv(&self) -> Option<Packet> {
        self.rx.pop()
    }

    /// Packets waiting to be received at this end.
    pub fn pending(&self) -> usize {
        self.rx.len()
    }
}

impl Port for MemPort {
    fn rx_burst(
        &mut self,
        _pool: &mut PacketPool,
        out: &mut Vec<Packet>,
        max: usize,
    ) -> io::Result<usize> {
        let mut n = 0;
        while n < max {
            match self.rx.pop() {
                Some(p) => {
                    out.push(p);
                    n += 1;
                }
                None => break,
            }
        }
        Ok(n)
    }

    fn tx_burst(&mut self, pkts: &mut Vec<Packet>, pool: &mut PacketPool) -> io::Result<usize> {
        let mut sent = 0;
        for p in pkts.drain(..) {
            match self.tx.push(p) {
                Ok(()) => sent += 1,
                Err(p) => pool.put(p),
            }
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_one_end_sends_the_other_receives() {
        let (mut a, mut b) = link(2);
        let mut pool = PacketPool::with_capacity(0);
        let mut out = vec![
            Packet::from_slice(b"1").unwrap(),
            Packet::from_slice(b"2").unwrap(),
            Packet::from_slice(b"3").unwrap(),
        ];
        assert_eq!(a.tx_burst(&mut out, &mut pool).unwrap(), 2, "ring holds 2");
        assert!(out.is_empty());
        assert_eq!(
            pool.available(),
            1,
            "the dropped packet's buffer is recycled"
        );
        let mut got = Vec::new();
        assert_eq!(b.rx_burst(&mut pool, &mut got, 8).unwrap(), 2);
        assert_eq!(got[0].data(), b"1");
        assert_eq!(got[1].data(), b"2");
        assert_eq!(a.rx_burst(&mut pool, &mut got, 8).unwrap(), 0);
    }
}
