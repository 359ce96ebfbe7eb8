//! A persistent array indexed by a 24-bit key, for the SA tables.
//!
//! Three levels of 256-entry nodes behind `Arc`s. Workers read a snapshot;
//! the control plane edits its own copy, and `Arc::make_mut` copies only the
//! nodes on the path to an edited entry (path copying): publishing one change
//! costs three node copies whatever the number of entries, and the snapshot
//! the workers hold is never written.

use std::sync::Arc;

const FANOUT: usize = 256;
/// Keys must be below this.
pub const KEY_LIMIT: usize = FANOUT * FANOUT * FANOUT;

#[derive(Clone)]
struct Leaf<T> {
    items: [Option<T>; FANOUT],
}

#[derive(Clone)]
struct Mid<T> {
    leaves: [Option<Arc<Leaf<T>>>; FANOUT],
}

#[derive(Clone)]
struct Root<T> {
    mids: [Option<Arc<Mid<T>>>; FANOUT],
}

/// Persistent `key -> T` map over `0..KEY_LIMIT`; cheap to clone.
#[derive(Clone)]
pub struct RadixArray<T: Clone> {
    root: Arc<Root<T>>,
    len: usize,
}

impl<T: Clone> Default for RadixArray<T> {
    fn default() -> Self {
        RadixArray {
            root: Arc::new(Root {
                mids: std::array::from_fn(|_| None),
            }),
            len: 0,
        }
    }
}

#[inline]
fn split(key: usize) -> (usize, usize, usize) {
    ((key >> 16) & 0xff, (key >> 8) & 0xff, key & 0xff)
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
        if key >= KEY_LIMIT {
            return None;
        }
        let (a, b, c) = split(key);
        let mid = self.root.mids[a].as_ref()?;
        let leaf = mid.leaves[b].as_ref()?;
        leaf.items[c].as_ref()
    }

    /// Address of the leaf entry for `key`, for a software prefetch before
    /// a burst of lookups. `None` when the path does not exist.
    #[inline]
    pub fn entry_ptr(&self, key: usize) -> Option<*const Option<T>> {
        if key >= KEY_LIMIT {
            return None;
        }
        let (a, b, c) = split(key);
        let leaf = self.root.mids[a].as_ref()?.leaves[b].as_ref()?;
        Some(&leaf.items[c] as *const Option<T>)
    }

    /// Sets or clears `key`, returning the previous entry. Copies only the
    /// nodes on the path that are shared with a published snapshot.
    pub fn set(&mut self, key: usize, value: Option<T>) -> Option<T> {
        if key >= KEY_LIMIT {
            return None;
        }
        let (a, b, c) = split(key);
        let root = Arc::make_mut(&mut self.root);
        let mid = root.mids[a].get_or_insert_with(|| {
            Arc::new(Mid {
                leaves: std::array::from_fn(|_| None),
            })
        });
        let mid = Arc::make_mut(mid);
        let leaf = mid.leaves[b].get_or_insert_with(|| {
            Arc::new(Leaf {
                items: std::array::from_fn(|_| None),
            })
        });
        let leaf = Arc::make_mut(leaf);
        let old = std::mem::replace(&mut leaf.items[c], value);
        match (&old, &leaf.items[c]) {
            (None, Some(_)) => self.len += 1,
            (Some(_), None) => self.len -= 1,
            _ => {}
        }
        old
    }

    /// All present entries in key order (control plane, tests).
    pub fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.root.mids.iter().enumerate().flat_map(|(a, mid)| {
            mid.iter().flat_map(move |mid| {
                mid.leaves.iter().enumerate().flat_map(move |(b, leaf)| {
                    leaf.iter().flat_map(move |leaf| {
                        leaf.items.iter().enumerate().filter_map(move |(c, item)| {
                            item.as_ref().map(|v| ((a << 16) | (b << 8) | c, v))
                        })
                    })
                })
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
        r.set(0x01_0000, Some(2u8));
        let snapshot = r.clone();
        r.set(2, Some(3u8));
        // The untouched subtree (mid 1) is the same allocation in both.
        let shared = Arc::ptr_eq(
            snapshot.root.mids[1].as_ref().unwrap(),
            r.root.mids[1].as_ref().unwrap(),
        );
        assert!(shared);
        assert!(!Arc::ptr_eq(&snapshot.root, &r.root));
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
