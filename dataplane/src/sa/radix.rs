//! A persistent array indexed by a 24-bit key: the outbound SAs and the
//! holding marks by tunnel. (Inbound SAs have a table of their own,
//! `inbound_table`, on the same plan.)
//!
//! Two levels behind `Arc`s: a root only as long as the highest leaf in
//! use, and leaves of 1024 entries. Workers read a snapshot; the control
//! plane edits its own copy, and `Arc::make_mut` copies only the nodes on
//! the path to an edited entry (path copying): publishing a batch of
//! changes copies the root and each edited leaf once, whatever the number
//! of entries, and the snapshot the workers hold is never written.
//!
//! Two levels rather than three of 256: a lookup is one dependent load
//! fewer (the SPI lookup at 1M SAs went from 9.6 to about 4 ns here). The
//! sizes are a trade between lookups and publications, measured with the
//! dataplane bench and the rekey bench (`controlplane/benches/rekey.rs`),
//! against a fixed root of 4096 leaves of 4096: that root was 32 KiB
//! copied per table at every publication, and with the 32 KiB leaves and
//! the freeing of the old ones it cost a CHILD SA rekey 26 / 47 µs of the
//! control thread at 1k / 100k tunnels, against 13.5 / 24 µs now; lookups
//! are 10-13% slower (1k 1.85 -> 2.1 ns, 1M 3.8 -> 4.3), the worker's
//! round robin over 100k tunnels unchanged.

use std::sync::Arc;

const LEAF_BITS: u32 = 10;
const FANOUT: usize = 1 << LEAF_BITS;
/// Keys must be below this (the root then has at most 16384 leaves).
pub const KEY_LIMIT: usize = 1 << 24;

#[derive(Clone)]
struct Leaf<T> {
    items: [Option<T>; FANOUT],
}

/// Persistent `key -> T` map over `0..KEY_LIMIT`; cheap to clone.
#[derive(Clone)]
pub struct RadixArray<T: Clone> {
    /// Leaf `i` holds keys `i * FANOUT..(i + 1) * FANOUT`.
    root: Arc<[Option<Arc<Leaf<T>>>]>,
    len: usize,
}

impl<T: Clone> Default for RadixArray<T> {
    fn default() -> Self {
        RadixArray {
            root: Arc::new([]),
            len: 0,
        }
    }
}

/// Lengthens a persistent root to `len` entries, the new ones empty (a new
/// root: snapshots keep theirs).
pub(super) fn grow_root<T: Clone>(root: &mut Arc<[Option<T>]>, len: usize) {
    let more = len.saturating_sub(root.len());
    *root = root
        .iter()
        .cloned()
        .chain(std::iter::repeat_n(None, more))
        .collect();
}

#[inline]
fn split(key: usize) -> (usize, usize) {
    (key >> LEAF_BITS, key & (FANOUT - 1))
}

impl<T: Clone> RadixArray<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of keys present.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entry at `key`; `None` if absent or out of range.
    #[inline]
    pub fn get(&self, key: usize) -> Option<&T> {
        let (a, b) = split(key);
        self.root.get(a)?.as_ref()?.items[b].as_ref()
    }

    /// Address of the leaf entry for `key`, for a software prefetch before
    /// a burst of lookups. `None` when the path does not exist.
    #[inline]
    pub fn entry_ptr(&self, key: usize) -> Option<*const Option<T>> {
        let (a, b) = split(key);
        let leaf = self.root.get(a)?.as_ref()?;
        Some(&leaf.items[b] as *const Option<T>)
    }

    /// Sets or clears `key`, returning the previous entry. Copies only the
    /// nodes on the path that are shared with a published snapshot (the
    /// root, a few words per leaf in use, and one leaf).
    pub fn set(&mut self, key: usize, value: Option<T>) -> Option<T> {
        if key >= KEY_LIMIT {
            return None;
        }
        let (a, b) = split(key);
        if a >= self.root.len() {
            // Clearing an absent key: nothing to grow for.
            value.as_ref()?;
            grow_root(&mut self.root, a + 1);
        }
        let root = Arc::make_mut(&mut self.root);
        let leaf = root[a].get_or_insert_with(|| {
            Arc::new(Leaf {
                items: std::array::from_fn(|_| None),
            })
        });
        let leaf = Arc::make_mut(leaf);
        let old = std::mem::replace(&mut leaf.items[b], value);
        match (&old, &leaf.items[b]) {
            (None, Some(_)) => self.len += 1,
            (Some(_), None) => self.len -= 1,
            _ => {}
        }
        old
    }

    /// All present entries in key order (control plane, tests).
    pub fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.root.iter().enumerate().flat_map(|(a, leaf)| {
            leaf.iter().flat_map(move |leaf| {
                leaf.items
                    .iter()
                    .enumerate()
                    .filter_map(move |(b, item)| item.as_ref().map(|v| ((a << LEAF_BITS) | b, v)))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_clear() {
        let mut r = RadixArray::new();
        assert_eq!(r.set(0x12_3456, Some(7u32)), None);
        assert_eq!(r.get(0x12_3456), Some(&7));
        assert_eq!(r.get(0x12_3457), None);
        assert_eq!(r.get(KEY_LIMIT), None);
        assert_eq!(r.len(), 1);
        assert_eq!(r.set(0x12_3456, None), Some(7));
        assert_eq!(r.len(), 0);
        assert_eq!(r.set(KEY_LIMIT + 1, Some(1)), None);
        assert_eq!(r.len(), 0, "out of range keys are ignored");
    }

    #[test]
    fn a_snapshot_never_sees_later_edits() {
        let mut r = RadixArray::new();
        r.set(5, Some("a"));
        let snapshot = r.clone();
        r.set(5, Some("b"));
        r.set(70_000, Some("c"));
        assert_eq!(snapshot.get(5), Some(&"a"));
        assert_eq!(snapshot.get(70_000), None);
        assert_eq!(r.get(5), Some(&"b"));
    }

    #[test]
    fn an_edit_shares_every_node_off_its_path() {
        let mut r = RadixArray::new();
        r.set(1, Some(1u8));
        r.set(FANOUT, Some(2u8));
        let snapshot = r.clone();
        r.set(2, Some(3u8));
        // The untouched leaf (1) is the same allocation in both; the edited
        // one (0) and the root were copied.
        let leaf = |r: &RadixArray<u8>, i: usize| r.root[i].clone().unwrap();
        assert!(Arc::ptr_eq(&leaf(&snapshot, 1), &leaf(&r, 1)));
        assert!(!Arc::ptr_eq(&leaf(&snapshot, 0), &leaf(&r, 0)));
        assert!(!Arc::ptr_eq(&snapshot.root, &r.root));
    }

    #[test]
    fn the_root_is_as_long_as_the_highest_leaf_in_use() {
        let mut r = RadixArray::new();
        assert_eq!(r.root.len(), 0);
        assert_eq!(r.set(3 * FANOUT + 1, None::<u8>), None);
        assert_eq!(r.root.len(), 0, "clearing an absent key grows nothing");
        r.set(5, Some(1u8));
        assert_eq!(r.root.len(), 1);
        let snapshot = r.clone();
        r.set(3 * FANOUT + 1, Some(2));
        assert_eq!(r.root.len(), 4);
        assert_eq!((r.get(5), r.get(3 * FANOUT + 1)), (Some(&1), Some(&2)));
        assert_eq!(r.get(2 * FANOUT), None);
        assert_eq!(snapshot.get(3 * FANOUT + 1), None);
        assert_eq!(snapshot.root.len(), 1, "the snapshot keeps its own root");
        assert!(r.entry_ptr(9 * FANOUT).is_none());
        assert!(r.entry_ptr(3 * FANOUT + 7).is_some());
    }

    #[test]
    fn iterates_in_key_order() {
        let mut r = RadixArray::new();
        for k in [0x30_0000usize, 3, 0x100] {
            r.set(k, Some(k));
        }
        let keys: Vec<usize> = r.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![3, 0x100, 0x30_0000]);
    }
}
