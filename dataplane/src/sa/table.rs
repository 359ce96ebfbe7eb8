//! SA table snapshots and their RCU-style publication.
//!
//! The control plane edits its private [`SaTables`] and publishes a snapshot
//! with one atomic pointer swap; workers pick the new snapshot up at their
//! next burst and never wait. Every part of a snapshot is persistent, so a
//! publication copies only what changed. Old snapshots are retired to the
//! publisher and freed there once no worker holds them, so deallocation
//! never lands on a worker's fast path.

use std::sync::Arc;

use arc_swap::{ArcSwap, Cache};

use super::inbound::{InboundSa, InboundSpec};
pub use super::inbound_slab::InboundHandle;
pub use super::inbound_table::{ForeignCell, InboundTable};
use super::outbound::OutboundSa;
use super::radix::RadixArray;
use super::routes::RouteTable;
use super::TunnelId;
use crate::crypto::CryptoError;

/// One immutable view of all SAs and routes.
#[derive(Clone, Default)]
pub struct SaTables {
    /// Inbound SAs by SPI.
    pub inbound: InboundTable,
    /// Each tunnel's current outbound SA, by tunnel id.
    pub outbound: RadixArray<Arc<OutboundSa>>,
    pub routes: RouteTable,
    /// Tunnels whose first epoch is being probed: their data waits in the
    /// workers' small hold queues instead of being dropped as unroutable.
    pub holding: RadixArray<()>,
    /// Incremented at every publication.
    pub version: u64,
}

impl SaTables {
    /// The inbound SA for `spi`: the slot's tag, then the SA at an address
    /// computed from the slot (see [`InboundTable`]).
    #[inline]
    pub fn inbound_sa(&self, spi: u32) -> Option<&InboundSa> {
        self.inbound.get(spi)
    }

    /// Starts loading the table entry for `spi` into the cache. A worker
    /// calls this for a whole burst before looking any of it up, so the
    /// cache misses of many SAs overlap instead of queueing (the DPDK way).
    #[inline]
    pub fn prefetch_inbound(&self, spi: u32) {
        self.inbound.prefetch(spi)
    }

    /// Asks for the cell of `tunnel` that [`SaTables::outbound_sa`] reads
    /// (the pointer to its SA), a few packets before it is read.
    #[inline]
    pub fn prefetch_outbound_cell(&self, tunnel: TunnelId) {
        if let Some(cell) = self.outbound.entry_ptr(tunnel as usize) {
            crate::prefetch::prefetch(cell);
        }
    }

    /// The outbound SA currently used by `tunnel`.
    #[inline]
    pub fn outbound_sa(&self, tunnel: TunnelId) -> Option<&Arc<OutboundSa>> {
        self.outbound.get(tunnel as usize)
    }

    /// Builds an inbound SA where this table keeps it: in its slot's cell
    /// if that is free. Install it with [`SaTables::install_inbound`].
    pub fn build_inbound(&self, spec: InboundSpec<'_>) -> Result<InboundHandle, CryptoError> {
        self.inbound.build(spec)
    }

    /// Installs an inbound SA in its slot, returning what was there.
    pub fn install_inbound(
        &mut self,
        sa: impl Into<InboundHandle>,
    ) -> Result<Option<InboundHandle>, ForeignCell> {
        self.inbound.install(sa)
    }

    /// Removes the inbound SA with exactly this SPI.
    pub fn remove_inbound(&mut self, spi: u32) -> Option<InboundHandle> {
        self.inbound.remove(spi)
    }

    /// Makes `sa` its tunnel's outbound SA (the epoch switch).
    pub fn install_outbound(&mut self, sa: Arc<OutboundSa>) -> Option<Arc<OutboundSa>> {
        self.outbound.set(sa.tunnel as usize, Some(sa))
    }

    pub fn remove_outbound(&mut self, tunnel: TunnelId) -> Option<Arc<OutboundSa>> {
        self.outbound.set(tunnel as usize, None)
    }

    /// Marks (or unmarks) `tunnel` as probing its first epoch.
    pub fn set_holding(&mut self, tunnel: TunnelId, holding: bool) {
        self.holding.set(tunnel as usize, holding.then_some(()));
    }

    #[inline]
    pub fn is_holding(&self, tunnel: TunnelId) -> bool {
        self.holding.get(tunnel as usize).is_some()
    }
}

/// The control plane's side: edit, then publish.
pub struct SaPublisher {
    editing: SaTables,
    shared: Arc<ArcSwap<SaTables>>,
    retired: Vec<Arc<SaTables>>,
}

impl Default for SaPublisher {
    fn default() -> Self {
        Self::new()
    }
}

impl SaPublisher {
    pub fn new() -> SaPublisher {
        SaPublisher {
            editing: SaTables::default(),
            shared: Arc::new(ArcSwap::from_pointee(SaTables::default())),
            retired: Vec::new(),
        }
    }

    /// The private copy to edit; workers see nothing until `publish`.
    pub fn edit(&mut self) -> &mut SaTables {
        &mut self.editing
    }

    /// What the workers see now.
    pub fn published(&self) -> Arc<SaTables> {
        self.shared.load_full()
    }

    /// Swaps the edited tables in for the workers. Costs a clone of the
    /// snapshot's root pointers, whatever the number of SAs.
    pub fn publish(&mut self) {
        self.editing.version += 1;
        let old = self.shared.swap(Arc::new(self.editing.clone()));
        self.retired.push(old);
        self.reclaim();
    }

    /// Frees retired snapshots no worker holds any more; returns how many
    /// are still held.
    pub fn reclaim(&mut self) -> usize {
        self.retired.retain(|s| Arc::strong_count(s) > 1);
        self.retired.len()
    }

    /// A handle for one worker.
    pub fn reader(&self) -> SaReader {
        SaReader {
            cache: Cache::new(self.shared.clone()),
        }
    }
}

/// A worker's view: reloads only when a new snapshot was published.
pub struct SaReader {
    cache: Cache<Arc<ArcSwap<SaTables>>, Arc<SaTables>>,
}

impl SaReader {
    /// The current snapshot; call once per burst.
    #[inline]
    pub fn load(&mut self) -> &Arc<SaTables> {
        self.cache.load()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sa::spi::{make_spi, slot_of};

    fn sa(spi: u32) -> Arc<InboundSa> {
        crate::testkit::inbound_sa(spi, 1)
    }

    #[test]
    fn only_the_current_generation_of_a_slot_finds_its_sa() {
        let mut t = SaTables::default();
        let (old, new) = (make_spi(5, 1).unwrap(), make_spi(5, 2).unwrap());
        assert!(t.install_inbound(sa(old)).unwrap().is_none());
        assert_eq!(t.inbound_sa(old).map(|s| s.spi), Some(old));
        assert!(t.inbound_sa(new).is_none());
        // The slot is reused: the late packet's SPI misses.
        let replaced = t.install_inbound(sa(new)).unwrap();
        assert_eq!(replaced.map(|s| s.spi), Some(old));
        assert!(t.inbound_sa(old).is_none());
        assert_eq!(t.inbound_sa(new).map(|s| s.spi), Some(new));
        // Removing by the stale SPI leaves the successor alone.
        assert!(t.remove_inbound(old).is_none());
        assert_eq!(t.remove_inbound(new).map(|s| s.spi), Some(new));
        assert!(t.inbound.is_empty());
    }

    #[test]
    fn a_published_snapshot_keeps_its_sas_alive() {
        let mut p = SaPublisher::new();
        let spi = make_spi(9, 3).unwrap();
        let a = sa(spi);
        p.edit().install_inbound(a.clone()).unwrap();
        p.publish();
        let seen = p.published();
        p.edit().remove_inbound(spi);
        p.publish();
        assert_eq!(seen.inbound_sa(spi).map(|s| s.spi), Some(spi));
        assert!(p.published().inbound_sa(spi).is_none());
        drop(seen);
        p.reclaim();
        assert_eq!(Arc::strong_count(&a), 1, "no slot still counts the SA");
    }

    #[test]
    fn workers_reading_snapshots_never_see_a_reused_cell() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let mut p = SaPublisher::new();
        let slots = 1..65usize;
        for slot in slots.clone() {
            let sa = p
                .edit()
                .build_inbound(crate::testkit::inbound_spec(make_spi(slot, 1).unwrap(), 1));
            p.edit().install_inbound(sa.unwrap()).unwrap();
        }
        p.publish();
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (mut reader, stop) = (p.reader(), stop.clone());
                std::thread::spawn(move || {
                    let mut seen = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let t = reader.load().clone();
                        for (slot, sa) in t.inbound.iter() {
                            assert_eq!(slot_of(sa.spi), slot);
                            assert!(std::ptr::eq(t.inbound_sa(sa.spi).unwrap(), sa));
                            seen += sa.counters.packets() + 1;
                        }
                    }
                    seen
                })
            })
            .collect();
        let (mut generation, mut in_cell) = (1u8, 0);
        for round in 0..3000 {
            let slot = slots.start + round % slots.len();
            if slot == slots.start {
                generation = crate::sa::spi::next_generation(generation);
            }
            let old = p
                .edit()
                .inbound
                .iter()
                .find(|(s, _)| *s == slot)
                .map(|(_, sa)| sa.spi);
            p.edit().remove_inbound(old.unwrap());
            let spec = crate::testkit::inbound_spec(make_spi(slot, generation).unwrap(), 1);
            let sa = p.edit().build_inbound(spec).unwrap();
            in_cell += usize::from(sa.in_cell());
            p.edit().install_inbound(sa).unwrap();
            p.publish();
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
        assert_eq!(p.published().inbound.len(), slots.len());
        assert!(in_cell > 0, "freed cells are built into again");
    }
}
