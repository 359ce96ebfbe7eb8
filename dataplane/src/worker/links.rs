//! Queues between workers, and between workers and the control plane.
//!
//! A packet that reaches a worker other than its SA's owner (the outside
//! steering missed, or an inner flow hashed to another TUN queue) is handed
//! to the owner through a bounded queue: one queue per ordered pair of
//! workers, so each has one producer and one consumer.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::packet::Packet;
use crate::sa::WorkerId;

pub type Queue = Arc<ArrayQueue<Packet>>;

/// One worker's ends of the hand-off queues.
pub struct Handoff {
    /// `to[w]`: packets for worker `w` (`None` for ourselves).
    to: Vec<Option<Queue>>,
    /// Packets other workers handed to us.
    from: Vec<Queue>,
}

impl Handoff {
    /// Queues a packet for `owner`; gives it back if the queue is full or
    /// there is no such worker.
    #[inline]
    pub fn send(&self, owner: WorkerId, p: Packet) -> Result<(), Packet> {
        match self.to.get(owner as usize) {
            Some(Some(q)) => q.push(p),
            _ => Err(p),
        }
    }

    /// Moves up to `max` handed-off packets into `out`.
    #[inline]
    pub fn recv(&self, out: &mut Vec<Packet>, max: usize) -> usize {
        let mut n = 0;
        for q in &self.from {
            while n < max {
                match q.pop() {
                    Some(p) => {
                        out.push(p);
                        n += 1;
                    }
                    None => break,
                }
            }
        }
        n
    }

    /// A worker alone has no hand-off queues.
    pub fn single() -> Handoff {
        Handoff {
            to: vec![None],
            from: Vec::new(),
        }
    }
}

/// Hand-off queues for `n` workers, each `capacity` packets deep.
pub fn handoff_mesh(n: usize, capacity: usize) -> Vec<Handoff> {
    let queues: Vec<Vec<Option<Queue>>> = (0..n)
        .map(|from| {
            (0..n)
                .map(|to| (from != to).then(|| Arc::new(ArrayQueue::new(capacity))))
                .collect()
        })
        .collect();
    (0..n)
        .map(|me| Handoff {
            to: queues[me].clone(),
            from: (0..n).filter_map(|from| queues[from][me].clone()).collect(),
        })
        .collect()
}

/// A control message the control plane wants sealed on a given outbound SA
/// (a ping on an epoch that carries no data yet, or a pong). It goes to the
/// SA's owning worker, the only writer of its sequence number.
pub struct SealRequest {
    pub sa: Arc<crate::sa::OutboundSa>,
    /// The message: becomes the ESP payload, next header 253.
    pub packet: Packet,
}

/// A worker's link to the control plane.
#[derive(Clone)]
pub struct ControlLink {
    /// Exception packets for the control plane: IKE on port 4500, and
    /// control messages found inside ESP.
    pub to_control: Queue,
    /// Packets the control plane wants sent from this worker's outside
    /// port (IKE replies on 4500 must leave from the socket they came in on).
    pub from_control: Queue,
    /// Control messages to seal and send (see [`SealRequest`]).
    pub seal: Arc<ArrayQueue<SealRequest>>,
}

impl ControlLink {
    pub fn new(capacity: usize) -> ControlLink {
        ControlLink {
            to_control: Arc::new(ArrayQueue::new(capacity)),
            from_control: Arc::new(ArrayQueue::new(capacity)),
            seal: Arc::new(ArrayQueue::new(capacity)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_has_its_own_queue() {
        let mesh = handoff_mesh(3, 4);
        mesh[0]
            .send(2, Packet::from_slice(b"0->2").unwrap())
            .unwrap();
        mesh[1]
            .send(2, Packet::from_slice(b"1->2").unwrap())
            .unwrap();
        assert!(mesh[2].send(2, Packet::new()).is_err(), "no queue to self");
        assert!(mesh[2].send(9, Packet::new()).is_err(), "no such worker");
        let mut got = Vec::new();
        assert_eq!(mesh[2].recv(&mut got, 8), 2);
        let mut names: Vec<&[u8]> = got.iter().map(|p| p.data()).collect();
        names.sort();
        assert_eq!(names, vec![&b"0->2"[..], b"1->2"]);
        assert_eq!(mesh[0].recv(&mut got, 8), 0);
    }
}
