//! A CHILD SA rekey of ours that completes after the peer rekeyed the IKE
//! SA it was asked on.

use std::time::Instant;

use super::super::Event;
use super::IkeEndpoint;

impl IkeEndpoint {
    /// A CHILD SA exchange of ours that crossed the peer's rekey of its IKE
    /// SA completes on the old SA after the successor took the CHILD SAs
    /// (§2.18): the new pair belongs to the successor too, or it would end
    /// with the old SA. Its event (from `events_before` on) names the
    /// successor, which also learns the pair it replaces, and deletes that
    /// pair unless the caller does later. (Only our own exchanges can end
    /// this way: a rekeyed SA refuses the peer's CREATE_CHILD_SA.)
    pub(super) fn hand_over_late_children(&mut self, now: Instant, spi: u64, events_before: usize) {
        let Some(successor) = self
            .sas
            .get(&spi)
            .filter(|sa| !sa.children.is_empty())
            .and_then(|sa| sa.successor)
            .filter(|s| self.sas.contains_key(&s.0))
        else {
            return;
        };
        let Some(sa) = self.sas.get_mut(&spi) else {
            return;
        };
        let old = sa.id();
        let late = std::mem::take(&mut sa.children);
        let mut replaced = Vec::new();
        for e in self.io.events.iter_mut().skip(events_before) {
            if let Event::ChildSaEstablished(c) = e {
                if c.ike_sa == old {
                    c.ike_sa = successor;
                    replaced.extend(c.replaces);
                }
            }
        }
        if let Some(heir) = self.sas.get_mut(&successor.0) {
            heir.children.extend(late);
            for r in replaced {
                heir.mark_replaced(r);
                if !self.io.defer_rekeyed_delete {
                    heir.delete_child(&mut self.io, now, r);
                }
            }
        }
        self.rearm(successor.0);
    }
}
