//! The inbound table: SPI -> SA, with one 2-byte read per lookup.
//!
//! Persistent like [`RadixArray`](super::radix::RadixArray): a root only as
//! long as the highest leaf in use, leaves of 2048 slots behind `Arc`s,
//! and an edit copies only the root and the leaf it touches. A leaf keeps
//! a tag per slot (the SPI's generation and where the SA is) and its
//! chunk's address: an SA in its cell is found at an address computed
//! from the slot (see `inbound_slab`), so the lookup reads no pointer and
//! never the SA. An SA on the heap (its cell was still held when the slot
//! was reused, or it was built apart from the table) is found through the
//! leaf's pointer array, one dependent load more.

use std::sync::Arc;

use super::inbound::{InboundSa, InboundSpec};
use super::inbound_slab::{split, CellRef, Chunk, Held, InboundHandle, Slab, FANOUT};
use super::radix::grow_root;
use super::spi::{generation_of, slot_of};
use crate::crypto::CryptoError;

/// A slot's tag: what is there, and the generation byte of its SPI.
const EMPTY: u16 = 0;
const IN_CELL: u16 = 0x100;
const ON_HEAP: u16 = 0x200;
const KIND: u16 = 0xff00;

/// An SA handle built for another family of tables.
#[derive(Debug, thiserror::Error)]
#[error("SA {spi:#010x} lives in another table's cells")]
pub struct ForeignCell {
    pub spi: u32,
}

struct Leaf {
    /// Keeps the chunks mapped, and holds the count lock.
    slab: Arc<Slab>,
    /// Where this leaf's cells are; `None` only if mapping it failed.
    chunk: Option<Chunk>,
    /// SAs on the heap, by index; allocated when the leaf gets its first.
    heap: Option<Box<[Option<Arc<InboundSa>>]>>,
    tags: [u16; FANOUT],
}

impl Leaf {
    fn new(slab: Arc<Slab>, chunk: Option<Chunk>) -> Leaf {
        Leaf {
            slab,
            chunk,
            heap: None,
            tags: [EMPTY; FANOUT],
        }
    }

    /// Slot `i`'s SA, given its tag and this leaf's chunk (which the root
    /// entry carries too, so a lookup need not read this leaf's header).
    #[inline]
    fn sa(&self, chunk: Option<Chunk>, i: usize, tag: u16) -> Option<&InboundSa> {
        match tag & KIND {
            // SAFETY: an IN_CELL tag is a count this leaf holds on the
            // cell, so its SA lives; the table holds the slab mapped.
            IN_CELL => Some(unsafe { &*chunk?.cell(i) }),
            ON_HEAP => self.heap.as_ref()?[i].as_deref(),
            _ => None,
        }
    }

    /// Takes slot `i`'s entry out (a cell's count goes with it).
    fn take(&mut self, i: usize) -> Option<InboundHandle> {
        let tag = std::mem::replace(&mut self.tags[i], EMPTY);
        let held = match tag & KIND {
            IN_CELL => Held::Cell(CellRef::adopt(self.slab.clone(), self.chunk?, i)),
            ON_HEAP => Held::Heap(self.heap.as_mut()?[i].take()?),
            _ => return None,
        };
        Some(InboundHandle(held))
    }

    fn cells(&self) -> impl Iterator<Item = (Chunk, usize)> + '_ {
        let chunk = self.chunk;
        self.tags
            .iter()
            .enumerate()
            .filter(|(_, t)| *t & KIND == IN_CELL)
            .filter_map(move |(i, _)| Some((chunk?, i)))
    }
}

impl Clone for Leaf {
    /// The copy holds the cells it lists too (counts in the chunk's first
    /// pages, none of them a line a worker reads).
    fn clone(&self) -> Leaf {
        let counting = self.slab.counting();
        for (chunk, i) in self.cells() {
            // SAFETY: `self` holds a count of each of its cells.
            unsafe { chunk.retain(i, &counting) };
        }
        drop(counting);
        Leaf {
            slab: self.slab.clone(),
            chunk: self.chunk,
            heap: self.heap.clone(),
            tags: self.tags,
        }
    }
}

impl Drop for Leaf {
    fn drop(&mut self) {
        let counting = self.slab.counting();
        for (chunk, i) in self.cells() {
            // SAFETY: the leaf's own count; its slab keeps the chunk mapped.
            unsafe { chunk.release(i, &counting) };
        }
    }
}

/// A root entry: a leaf and its chunk side by side, so a lookup has the
/// chunk's address from the root's line (hot) and reads one tag besides.
#[derive(Clone)]
struct Branch {
    leaf: Arc<Leaf>,
    chunk: Option<Chunk>,
}

/// Persistent `SPI -> InboundSa` map; cheap to clone.
#[derive(Clone)]
pub struct InboundTable {
    /// Entry `a` holds slots `a * FANOUT..(a + 1) * FANOUT`.
    root: Arc<[Option<Branch>]>,
    slab: Arc<Slab>,
    len: usize,
}

impl Default for InboundTable {
    fn default() -> Self {
        InboundTable {
            root: Arc::new([]),
            slab: Arc::default(),
            len: 0,
        }
    }
}

impl InboundTable {
    /// Number of SAs present.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of memory the cells take (pages touched), which the allocator
    /// never sees: the memory bench adds them.
    pub fn cell_bytes(&self) -> usize {
        self.slab.resident_bytes()
    }

    /// How many SAs are on the heap rather than in their cells (a scan:
    /// control plane and tests).
    pub fn on_heap(&self) -> usize {
        let leaves = self.root.iter().flatten();
        leaves
            .map(|b| b.leaf.tags.iter().filter(|t| *t & KIND == ON_HEAP).count())
            .sum()
    }

    #[inline]
    fn branch(&self, a: usize) -> Option<&Branch> {
        self.root.get(a)?.as_ref()
    }

    /// The SA for `spi`: its slot's tag must carry the SPI's generation, so
    /// a stale SPI misses without the SA being read.
    #[inline]
    pub fn get(&self, spi: u32) -> Option<&InboundSa> {
        let (a, i) = split(slot_of(spi));
        let b = self.branch(a)?;
        let tag = b.leaf.tags[i];
        if tag & 0xff != generation_of(spi) as u16 {
            return None;
        }
        b.leaf.sa(b.chunk, i, tag)
    }

    /// Starts loading `spi`'s tag into the cache (a worker does this for a
    /// whole burst before looking any of it up).
    #[inline]
    pub fn prefetch(&self, spi: u32) {
        let (a, i) = split(slot_of(spi));
        if let Some(b) = self.branch(a) {
            crate::prefetch::prefetch(&b.leaf.tags[i]);
        }
    }

    /// Builds the SA of `spec` in its slot's cell when the cell is free,
    /// else on the heap; it is not in the table until
    /// [`InboundTable::install`].
    pub fn build(&self, spec: InboundSpec<'_>) -> Result<InboundHandle, CryptoError> {
        self.slab.build(spec)
    }

    /// The leaf for `a`, copied if a snapshot shares it (control plane).
    fn leaf_mut(&mut self, a: usize) -> &mut Leaf {
        if a >= self.root.len() {
            grow_root(&mut self.root, a + 1);
        }
        let slab = &self.slab;
        let b = Arc::make_mut(&mut self.root)[a].get_or_insert_with(|| {
            let chunk = slab.chunk(a);
            Branch {
                leaf: Arc::new(Leaf::new(slab.clone(), chunk)),
                chunk,
            }
        });
        if b.chunk.is_none() {
            // The leaf lists no cells yet, so a later mapping can be adopted.
            b.chunk = slab.chunk(a);
        }
        let leaf = Arc::make_mut(&mut b.leaf);
        leaf.chunk = b.chunk;
        leaf
    }

    /// Puts `sa` in its slot, returning what was there. An SA built by
    /// this table in its cell goes in as a tag; any other as a pointer.
    pub fn install(
        &mut self,
        sa: impl Into<InboundHandle>,
    ) -> Result<Option<InboundHandle>, ForeignCell> {
        let sa = sa.into();
        let spi = sa.spi;
        let (a, i) = split(slot_of(spi));
        if let Held::Cell(c) = &sa.0 {
            // Ours, and the cell the SPI's slot picks (as `build` makes it).
            let ours = Arc::ptr_eq(c.slab(), &self.slab)
                && c.index as usize == i
                && self.slab.chunk(a) == Some(c.chunk);
            if !ours {
                return Err(ForeignCell { spi });
            }
        }
        let leaf = self.leaf_mut(a);
        let old = leaf.take(i);
        let generation = generation_of(spi) as u16;
        match sa.0 {
            Held::Cell(c) => {
                // Checked above: the leaf's chunk (the slab maps one per
                // leaf) and the slot's index in it.
                c.into_leaf_count();
                leaf.tags[i] = IN_CELL | generation;
            }
            Held::Heap(sa) => {
                let heap = leaf
                    .heap
                    .get_or_insert_with(|| (0..FANOUT).map(|_| None).collect());
                heap[i] = Some(sa);
                leaf.tags[i] = ON_HEAP | generation;
            }
        }
        if old.is_none() {
            self.len += 1;
        }
        Ok(old)
    }

    /// Removes the SA with exactly this SPI.
    pub fn remove(&mut self, spi: u32) -> Option<InboundHandle> {
        self.get(spi)?;
        let (a, i) = split(slot_of(spi));
        let old = self.leaf_mut(a).take(i);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// All SAs in slot order (control plane, tests).
    pub fn iter(&self) -> impl Iterator<Item = (usize, &InboundSa)> {
        self.root.iter().enumerate().flat_map(|(a, b)| {
            b.iter().flat_map(move |b| {
                (0..FANOUT).filter_map(move |i| {
                    let sa = b.leaf.sa(b.chunk, i, b.leaf.tags[i]);
                    sa.map(|sa| (a * FANOUT + i, sa))
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sa::spi::make_spi;
    use crate::testkit::{inbound_sa, inbound_spec};

    fn spi(slot: usize, generation: u8) -> u32 {
        make_spi(slot, generation).unwrap()
    }

    #[test]
    fn an_sa_the_table_builds_lives_in_its_cell_and_is_found_there() {
        let mut t = InboundTable::default();
        let s = spi(3 * FANOUT + 17, 4);
        let built = t.build(inbound_spec(s, 1)).unwrap();
        assert!(built.in_cell());
        let at: *const InboundSa = &*built;
        let bytes = t.cell_bytes();
        assert!(
            (size_of::<InboundSa>()..3 * 4096 + 4096).contains(&bytes),
            "{bytes}"
        );
        assert!(t.install(built).unwrap().is_none());
        assert!(std::ptr::eq(t.get(s).unwrap(), at));
        assert_eq!(t.get(s).map(|sa| sa.spi), Some(s));
        assert!(
            t.get(spi(3 * FANOUT + 17, 5)).is_none(),
            "another generation"
        );
        assert!(t.get(spi(3 * FANOUT + 18, 4)).is_none(), "another slot");
        assert_eq!(
            (t.len(), t.iter().map(|(slot, _)| slot).collect::<Vec<_>>()),
            (1, vec![3 * FANOUT + 17])
        );
    }

    #[test]
    fn a_cell_held_by_a_snapshot_sends_its_slots_next_sa_to_the_heap() {
        let mut t = InboundTable::default();
        let (old, new, third) = (spi(9, 1), spi(9, 2), spi(9, 3));
        t.install(t.build(inbound_spec(old, 1)).unwrap()).unwrap();
        let snapshot = t.clone();
        assert_eq!(t.remove(old).map(|sa| sa.spi), Some(old));
        let next = t.build(inbound_spec(new, 1)).unwrap();
        assert!(!next.in_cell(), "the snapshot still holds the cell");
        t.install(next).unwrap();
        assert_eq!(snapshot.get(old).map(|sa| sa.spi), Some(old));
        assert!(snapshot.get(new).is_none());
        assert_eq!(t.get(new).map(|sa| sa.spi), Some(new));
        assert!(t.get(old).is_none());
        drop(snapshot);
        // Nothing holds the old SA now: the slot's cell takes the next one.
        t.remove(new);
        let last = t.build(inbound_spec(third, 1)).unwrap();
        assert!(last.in_cell());
        t.install(last).unwrap();
        assert_eq!(t.get(third).map(|sa| sa.spi), Some(third));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_handle_kept_aside_keeps_its_sa_and_goes_back_in_as_a_cell() {
        let mut t = InboundTable::default();
        let s = spi(40, 1);
        let handle = t.build(inbound_spec(s, 6)).unwrap();
        t.install(handle.clone()).unwrap();
        let taken = t.remove(s).unwrap();
        assert!(taken.in_cell() && t.get(s).is_none());
        drop(taken);
        assert!(
            !t.build(inbound_spec(s, 6)).unwrap().in_cell(),
            "the handle holds the cell"
        );
        t.install(handle.clone()).unwrap();
        assert!(std::ptr::eq(t.get(s).unwrap(), &*handle));
        drop(handle);
        assert_eq!(t.get(s).map(|sa| sa.tunnel), Some(6), "the table holds it");
    }

    #[test]
    fn heap_sas_and_foreign_cells() {
        let (mut a, b) = (InboundTable::default(), InboundTable::default());
        let s = spi(70_000, 2);
        assert!(a.install(inbound_sa(s, 1)).unwrap().is_none());
        assert_eq!(a.get(s).map(|sa| sa.spi), Some(s));
        assert_eq!(a.on_heap(), 1);
        let foreign = b.build(inbound_spec(spi(5, 1), 1)).unwrap();
        assert!(a.install(foreign).is_err());
        assert_eq!(a.len(), 1);
        // A manual SA's SPI has generation 0, like an empty slot's tag.
        let manual = 0x0000_1234;
        assert!(a.get(manual).is_none());
        a.install(a.build(inbound_spec(manual, 3)).unwrap())
            .unwrap();
        assert_eq!(a.get(manual).map(|sa| sa.tunnel), Some(3));
    }

    #[test]
    fn the_pages_of_freed_cells_go_back_to_the_kernel() {
        let mut t = InboundTable::default();
        let n = 200;
        for slot in 0..n {
            t.install(t.build(inbound_spec(spi(slot, 1), 1)).unwrap())
                .unwrap();
        }
        let full = t.cell_bytes();
        assert!(full >= n * size_of::<InboundSa>(), "{full}");
        // Every other SA goes: each page still holds a live one.
        for slot in (0..n).step_by(2) {
            t.remove(spi(slot, 1));
        }
        assert_eq!(t.cell_bytes(), full);
        // The rest go: only the counts' pages stay.
        for slot in (1..n).step_by(2) {
            t.remove(spi(slot, 1));
        }
        let after = t.cell_bytes();
        assert!(
            after <= crate::sa::inbound_slab::COUNTS,
            "{after} of {full}"
        );
        // A returned page's cell takes an SA again.
        let again = t.build(inbound_spec(spi(7, 2), 3)).unwrap();
        assert!(again.in_cell());
        t.install(again).unwrap();
        assert_eq!(t.get(spi(7, 2)).map(|sa| sa.tunnel), Some(3));
        assert!(t.cell_bytes() > after);
    }
}
