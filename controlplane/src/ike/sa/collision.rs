//! Simultaneous CHILD SA rekeying (RFC 7296 §2.8.1): when both ends rekey
//! the same pair, the new pair made with the lowest of the four nonces is
//! redundant and deleted by the end that initiated its exchange.
//!
//! Each end decides for the exchange it initiated, once it knows all four
//! nonces. That happens in one of two orders: the peer's request arrives
//! while our own rekey is outstanding ([`IkeSa::note_collision`], decided
//! when our response comes), or after our rekey already completed (the
//! requests crossed, but our response overtook the peer's request:
//! [`IkeSa::late_collision`], decided at once).

use super::child::ChildOffer;
use super::ike_sa::{IkeSa, RequestKind};

/// The peer's rekey of a pair we were rekeying too.
pub(crate) struct Collision {
    /// Our inbound SPI of the pair both ends rekeyed.
    pub old: u32,
    pub ni: Vec<u8>,
    pub nr: Vec<u8>,
}

/// Our last completed rekey, kept to recognise a peer's rekey of the same
/// pair that crossed ours.
pub(crate) struct CompletedRekey {
    /// Our inbound SPI of the pair we replaced.
    pub old: u32,
    /// Our inbound SPI of the pair that replaced it.
    pub new: u32,
    /// Lowest of the two nonces of our exchange.
    pub lowest_nonce: Vec<u8>,
}

impl IkeSa {
    /// Our DELETE of the pair with our `inbound_spi` is outstanding or queued.
    pub(crate) fn deleting_child(&self, inbound_spi: u32) -> bool {
        let k = RequestKind::DeleteChild(inbound_spi);
        self.pending.as_ref().is_some_and(|p| p.kind == k) || self.queued.iter().any(|q| q.2 == k)
    }

    /// The pair with our `inbound_spi` was replaced by a rekey (either
    /// end's): rekeying it again would only make a redundant pair.
    pub(crate) fn child_replaced(&self, inbound_spi: u32) -> bool {
        self.children
            .iter()
            .any(|c| c.inbound_spi == inbound_spi && c.replaced)
    }

    /// Marks the pair with our `inbound_spi` as replaced.
    pub(crate) fn mark_replaced(&mut self, inbound_spi: u32) {
        if let Some(c) = self
            .children
            .iter_mut()
            .find(|c| c.inbound_spi == inbound_spi)
        {
            c.replaced = true;
        }
    }

    /// Responder: remembers the peer's rekey if it collides with ours.
    pub(crate) fn note_collision(&mut self, replaces: Option<u32>, ni: &[u8], nr: &[u8]) {
        let ours = self.child_offer.as_ref().and_then(|o| o.replaces());
        if let Some(old) = replaces.filter(|r| Some(*r) == ours) {
            self.rekey_collision = Some(Box::new(Collision {
                old,
                ni: ni.to_vec(),
                nr: nr.to_vec(),
            }));
        }
    }

    /// Initiator, our rekey done: true if its new pair is the redundant one.
    /// Otherwise our rekey is remembered for [`IkeSa::late_collision`].
    pub(crate) fn lost_collision(&mut self, offer: &ChildOffer, new: u32, nr: &[u8]) -> bool {
        let lowest_ours = offer.ni.as_slice().min(nr);
        let noted = self
            .rekey_collision
            .take()
            .filter(|c| Some(c.old) == offer.replaces());
        if let Some(c) = noted {
            return lowest_ours < c.ni.as_slice().min(c.nr.as_slice());
        }
        self.last_rekey = offer.replaces().map(|old| CompletedRekey {
            old,
            new,
            lowest_nonce: lowest_ours.to_vec(),
        });
        false
    }

    /// Responder: the peer rekeyed a pair our completed rekey already
    /// replaced. Returns our new pair if it is the redundant one.
    pub(crate) fn late_collision(
        &mut self,
        replaces: Option<u32>,
        ni: &[u8],
        nr: &[u8],
    ) -> Option<u32> {
        let done = self.last_rekey.take_if(|d| Some(d.old) == replaces)?;
        (done.lowest_nonce.as_slice() < ni.min(nr)).then_some(done.new)
    }
}
