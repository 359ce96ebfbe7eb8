//! Where inbound SAs live: in cells at addresses computed from their
//! SPI's slot, so the table needs no pointer per SA.
//!
//! The slots of one table leaf share a chunk: pages of reference counts,
//! then one cache-line aligned cell per slot. The table finds an SA at
//! `cells + index * CELL` and keeps only a 2-byte tag per slot (2 MiB at
//! 1M SAs, about one core's L2 here) where a pointer per SA was 8 MiB:
//! the SPI lookup at 1M SAs went from 2.03-2.14x the time at 1k to
//! 1.17-1.26x (dataplane bench).
//!
//! A cell keeps its SA from the build until nothing refers to it: the
//! table leaves that list it, in every snapshot, and handles held outside
//! (a manual tunnel kept while it is down). The counts sit in the chunk's
//! first pages, apart from the SAs, so counting on the control plane never
//! writes a line a worker uses. A slot whose cell is still held when it is
//! reused gets its new SA on the heap (see `inbound_table`).

use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard};

use super::inbound::{InboundSa, InboundSpec};
use super::spi::slot_of;
use crate::crypto::CryptoError;
use crate::prefetch::LINE;

/// Slots per table leaf and per chunk. 2048 rather than the 1024 of the
/// outbound table: the SPI lookup at 1M / 1k SAs measured 1.17-1.26x
/// against 1.33-1.46x; a leaf copy then counts twice the cells (see
/// [`Counting`] for what that costs a rekey).
pub(super) const LEAF_BITS: u32 = 11;
pub(super) const FANOUT: usize = 1 << LEAF_BITS;

/// Bytes per cell: an SA rounded up to whole cache lines, so each starts on
/// a line and its look-ahead asks for no line it does not use.
pub(super) const CELL: usize = size_of::<InboundSa>().next_multiple_of(LINE);
const PAGE: usize = 4096;
/// The counts' page(s), before the cells: the number of cells in use,
/// then one count per cell.
pub(super) const COUNTS: usize = ((1 + FANOUT) * size_of::<u32>()).next_multiple_of(PAGE);
const CHUNK_BYTES: usize = COUNTS + FANOUT * CELL;
const _: () = assert!(align_of::<InboundSa>() <= LINE, "cells are line aligned");

/// Splits a slot into its leaf (chunk) and its index there.
#[inline]
pub(super) fn split(slot: usize) -> (usize, usize) {
    (slot >> LEAF_BITS, slot & (FANOUT - 1))
}

/// Proof that the count lock of the slab that mapped a chunk is held:
/// every count is read and written under it. One lock for a whole leaf's
/// counts is cheaper than an atomic operation per cell (the rekey bench,
/// three runs: 12.4-13.4 / 23.3-28.3 µs of the control thread at 1k / 100k
/// tunnels, against 17.1-17.4 / 28.1 with atomics), and nothing on a
/// worker's path counts.
pub(super) type Counting<'a> = MutexGuard<'a, ()>;

/// A chunk's base address; valid while the slab that mapped it lives.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Chunk(NonNull<u8>);

// SAFETY: a chunk is memory shared by design: its counts are only touched
// under the slab's count lock, and its cells are InboundSas (Send + Sync),
// each written only by whoever claimed the cell before anyone could see it.
unsafe impl Send for Chunk {}
// SAFETY: as above.
unsafe impl Sync for Chunk {}

impl Chunk {
    fn count(self, i: usize) -> *mut u32 {
        debug_assert!(i < FANOUT);
        // The first COUNTS bytes of a chunk are 1 + FANOUT u32s, zero when
        // mapped.
        self.0.as_ptr().cast::<u32>().wrapping_add(1 + i)
    }

    /// The number of cells in use (first among the counts, on the page
    /// the first cells' counts are on).
    fn live(self) -> *mut u32 {
        self.0.as_ptr().cast::<u32>()
    }

    /// The address of cell `i` (its SA, if one lives there).
    #[inline]
    pub(super) fn cell(self, i: usize) -> *mut InboundSa {
        self.0.as_ptr().wrapping_add(COUNTS + i * CELL).cast()
    }

    /// Takes cell `i` for a new SA if nothing holds it; the caller then
    /// owns its one count and must write the SA (or give the cell back).
    fn claim(self, i: usize, _: &Counting<'_>) -> bool {
        // SAFETY: a count of a mapped chunk, under the count lock.
        unsafe {
            let free = *self.count(i) == 0;
            if free {
                *self.count(i) = 1;
                *self.live() += 1;
            }
            free
        }
    }

    /// Gives back a claimed cell whose SA could not be built.
    fn unclaim(self, i: usize, c: &Counting<'_>) {
        // SAFETY: as in `claim`.
        unsafe { *self.count(i) = 0 };
        self.freed(c);
    }

    /// One more holder of cell `i`'s SA.
    ///
    /// # Safety
    /// The caller already holds a count of the cell.
    pub(super) unsafe fn retain(self, i: usize, _: &Counting<'_>) {
        // SAFETY: as in `claim`.
        unsafe { *self.count(i) += 1 };
    }

    /// One holder fewer; the last one drops the SA and frees the cell.
    ///
    /// # Safety
    /// The caller gives up a count it holds, and the chunk is still mapped.
    pub(super) unsafe fn release(self, i: usize, c: &Counting<'_>) {
        // SAFETY: as in `claim`; at zero nobody else can reach the SA
        // (what other holders did to it happened before, by the lock).
        unsafe {
            *self.count(i) -= 1;
            if *self.count(i) == 0 {
                std::ptr::drop_in_place(self.cell(i));
                self.freed(c);
            }
        }
    }

    /// One cell fewer in use. When none is, the cells' pages go back to
    /// the kernel (a later claim gets zero pages), so memory shrinks after
    /// a peak of tunnels. Whole chunks only: with single pages, a rekeying
    /// gateway whose SAs move between slots would give pages back and
    /// fault them in again all the time. Under the count lock, so no cell
    /// is claimed meanwhile; no worker reads a free cell (a leaf's cells
    /// are counted).
    fn freed(self, _: &Counting<'_>) {
        // SAFETY: counts of a mapped chunk, under the count lock.
        let live = unsafe {
            *self.live() -= 1;
            *self.live()
        };
        if live == 0 {
            // SAFETY: the cells of our own mapping, none in use;
            // MADV_DONTNEED on private anonymous memory leaves them mapped,
            // reading zeros.
            unsafe {
                libc::madvise(
                    self.0.as_ptr().add(COUNTS).cast(),
                    CHUNK_BYTES - COUNTS,
                    libc::MADV_DONTNEED,
                )
            };
        }
    }
}

const _: () = assert!(COUNTS.is_multiple_of(PAGE), "cells start on a page");

/// One mapped chunk, unmapped with its slab.
struct Mapping(Chunk);

impl Mapping {
    /// Bytes of the chunk in memory (pages touched), as the kernel counts.
    fn resident(&self) -> usize {
        let mut pages = vec![0u8; CHUNK_BYTES.div_ceil(PAGE)];
        // SAFETY: the mapping is ours and page aligned; `pages` has one
        // byte per page of it.
        let r =
            unsafe { libc::mincore(self.0 .0.as_ptr().cast(), CHUNK_BYTES, pages.as_mut_ptr()) };
        if r != 0 {
            return 0;
        }
        pages.iter().filter(|p| *p & 1 != 0).count() * PAGE
    }

    /// Anonymous memory, zero until first written: a chunk costs only the
    /// pages its SAs and counts use.
    fn new() -> Option<Mapping> {
        // SAFETY: a fresh private anonymous mapping, touching nothing else.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                CHUNK_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        NonNull::new(p.cast()).map(|p| Mapping(Chunk(p)))
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: mapped by `Mapping::new` with this length; the slab is
        // going, and with it everything that could point into the chunk.
        unsafe { libc::munmap(self.0 .0.as_ptr().cast(), CHUNK_BYTES) };
    }
}

/// The chunks of one family of tables (an editing copy and its snapshots).
#[derive(Default)]
pub(super) struct Slab {
    /// By leaf index; written only by the control plane, when it builds an
    /// SA for a leaf that has none yet.
    chunks: Mutex<Vec<Option<Mapping>>>,
    /// Guards every cell count of every chunk (see [`Counting`]).
    counts: Mutex<()>,
}

impl Slab {
    /// Takes the count lock (a panic elsewhere does not poison counting).
    pub(super) fn counting(&self) -> Counting<'_> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The chunk of leaf `a`, mapped on first use; `None` if the mapping
    /// failed (SAs then go on the heap).
    pub(super) fn chunk(&self, a: usize) -> Option<Chunk> {
        let mut chunks = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
        if chunks.len() <= a {
            chunks.resize_with(a + 1, || None);
        }
        if chunks[a].is_none() {
            chunks[a] = Mapping::new();
        }
        chunks[a].as_ref().map(|m| m.0)
    }

    /// Bytes of all chunks in memory: what the cells cost, which the
    /// allocator never sees (the memory bench adds it).
    pub(super) fn resident_bytes(&self) -> usize {
        let chunks = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
        chunks.iter().flatten().map(Mapping::resident).sum()
    }

    /// Builds the SA of `spec` in its slot's cell if the cell is free,
    /// else on the heap.
    pub(super) fn build(
        self: &Arc<Slab>,
        spec: InboundSpec<'_>,
    ) -> Result<InboundHandle, CryptoError> {
        let (a, i) = split(slot_of(spec.spi));
        let claimed = self.chunk(a).filter(|c| c.claim(i, &self.counting()));
        if let Some(chunk) = claimed {
            // SAFETY: the claim made the cell ours alone, and it is
            // line-aligned room for one InboundSa.
            return match unsafe { InboundSa::build_at(chunk.cell(i), spec) } {
                Ok(()) => Ok(InboundHandle(Held::Cell(CellRef {
                    slab: self.clone(),
                    chunk,
                    index: i as u16,
                }))),
                Err(e) => {
                    chunk.unclaim(i, &self.counting());
                    Err(e)
                }
            };
        }
        Ok(InboundHandle(Held::Heap(InboundSa::new(spec)?)))
    }
}

/// One count of a cell, with its slab kept mapped.
pub(super) struct CellRef {
    slab: Arc<Slab>,
    pub(super) chunk: Chunk,
    pub(super) index: u16,
}

impl CellRef {
    /// Wraps a count taken over from a table leaf.
    pub(super) fn adopt(slab: Arc<Slab>, chunk: Chunk, index: usize) -> CellRef {
        CellRef {
            slab,
            chunk,
            index: index as u16,
        }
    }

    pub(super) fn slab(&self) -> &Arc<Slab> {
        &self.slab
    }

    /// Hands the count over to the table leaf that now lists the cell
    /// (and releases it when dropped).
    pub(super) fn into_leaf_count(self) {
        let me = ManuallyDrop::new(self);
        // SAFETY: read once out of a value that is never dropped; the slab
        // count it held is dropped here, the cell's goes to the leaf.
        drop(unsafe { std::ptr::read(&me.slab) });
    }
}

impl Clone for CellRef {
    fn clone(&self) -> CellRef {
        // SAFETY: `self` holds a count.
        unsafe {
            self.chunk
                .retain(self.index as usize, &self.slab.counting())
        };
        CellRef {
            slab: self.slab.clone(),
            chunk: self.chunk,
            index: self.index,
        }
    }
}

impl Drop for CellRef {
    fn drop(&mut self) {
        // SAFETY: our count; `self.slab` keeps the chunk mapped until after.
        unsafe {
            self.chunk
                .release(self.index as usize, &self.slab.counting())
        };
    }
}

/// An inbound SA held outside a table: built for one, taken out of one,
/// or kept aside (a manual tunnel's while it is down).
#[derive(Clone)]
pub struct InboundHandle(pub(super) Held);

#[derive(Clone)]
pub(super) enum Held {
    /// On the heap: built apart from a table, or its cell was taken.
    Heap(Arc<InboundSa>),
    Cell(CellRef),
}

impl InboundHandle {
    /// Whether the SA lives in its slot's cell (a lookup finds it without
    /// reading a pointer) rather than on the heap.
    pub fn in_cell(&self) -> bool {
        matches!(self.0, Held::Cell(_))
    }
}

impl From<Arc<InboundSa>> for InboundHandle {
    fn from(sa: Arc<InboundSa>) -> InboundHandle {
        InboundHandle(Held::Heap(sa))
    }
}

impl Deref for InboundHandle {
    type Target = InboundSa;

    fn deref(&self) -> &InboundSa {
        match &self.0 {
            Held::Heap(sa) => sa,
            // SAFETY: the count we hold keeps the SA in its cell, and the
            // slab we hold keeps the cell mapped.
            Held::Cell(c) => unsafe { &*c.chunk.cell(c.index as usize) },
        }
    }
}

impl std::fmt::Debug for InboundHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}
