//! Simultaneous CHILD SA rekeying (RFC 7296 §2.8.1): when both ends rekey
//! the same pair, the new pair made with the lowest of the four nonces is
//! redundant and deleted by the end that initiated its exchange.

use super::child::ChildOffer;
use super::ike_sa::{IkeSa, RequestKind};

/// The peer's rekey of a pair we were rekeying too.
pub(crate) struct Collision {
    /// Our inbound SPI of the pair both ends rekeyed.
    pub old: u32,
    pub ni: Vec<u8>,
    pub nr: Vec<u8>,
}

impl IkeSa {
    /// Our DELETE of the pair with our `inbound_spi` is outstanding or queued.
    pub(crate) fn deleting_child(&self, inbound_spi: u32) -> bool {
        let k = RequestKind::DeleteChild(inbound_spi);
        self.pending.as_ref().is_some_and(|p| p.kind == k) || self.queued.iter().any(|q| q.2 == k)
    }

    /// Responder: remembers the peer's rekey if it collides with ours.
    pub(crate) fn note_collision(&mut self, replaces: Option<u32>, ni: &[u8], nr: &[u8]) {
        let ours = self.child_offer.as_ref().and_then(|o| o.replaces);
        if let Some(old) = replaces.filter(|r| Some(*r) == ours) {
            self.rekey_collision = Some(Collision {
                old,
                ni: ni.to_vec(),
                nr: nr.to_vec(),
            });
        }
    }

    /// Initiator, our rekey done: true if its new pair is the redundant one.
    pub(crate) fn lost_collision(&mut self, offer: &ChildOffer, nr: &[u8]) -> bool {
        let Some(c) = self.rekey_collision.take() else {
            return false;
        };
        if Some(c.old) != offer.replaces {
            return false;
        }
        let lowest_theirs = c.ni.as_slice().min(c.nr.as_slice());
        let lowest_ours = offer.ni.as_slice().min(nr);
        lowest_ours < lowest_theirs
    }
}
