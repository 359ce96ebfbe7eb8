//! The client behind each inbound SPI. pktgen hands its SPIs out in
//! sequence (gen-config from a base, IKE clients from `SequentialSpis`),
//! so a vector indexed from the lowest finds them without hashing: at
//! 100,000 clients a hash bucket was one more cold line per packet, where
//! the vector is read in the order the clients take turns. An SPI far from
//! the rest (below the base, or past what the vector may grow to) goes to
//! a hash map instead.

use rustc_hash::FxHashMap;

/// How far past the base the vector may grow: 2^21 entries of 24 bytes,
/// 48 MiB at most, room for 100,000 clients rekeying many times over.
const DENSE_MAX: usize = 1 << 21;

pub(super) struct BySpi<T> {
    base: u32,
    dense: Vec<Option<T>>,
    sparse: FxHashMap<u32, T>,
}

impl<T> BySpi<T> {
    /// A map whose vector starts at `base`, the lowest SPI expected.
    pub(super) fn starting_at(base: u32) -> Self {
        BySpi {
            base,
            dense: Vec::new(),
            sparse: FxHashMap::default(),
        }
    }

    fn index(&self, spi: u32) -> Option<usize> {
        let i = usize::try_from(spi.checked_sub(self.base)?).ok()?;
        (i < DENSE_MAX).then_some(i)
    }

    #[inline]
    pub(super) fn get(&self, spi: u32) -> Option<&T> {
        match self.index(spi) {
            Some(i) => self.dense.get(i)?.as_ref(),
            None => self.sparse.get(&spi),
        }
    }

    pub(super) fn insert(&mut self, spi: u32, value: T) {
        let Some(i) = self.index(spi) else {
            self.sparse.insert(spi, value);
            return;
        };
        if i >= self.dense.len() {
            self.dense.resize_with(i + 1, || None);
        }
        if let Some(slot) = self.dense.get_mut(i) {
            *slot = Some(value);
        }
    }

    pub(super) fn remove(&mut self, spi: u32) {
        match self.index(spi) {
            Some(i) => {
                if let Some(slot) = self.dense.get_mut(i) {
                    *slot = None;
                }
            }
            None => {
                self.sparse.remove(&spi);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spis_near_and_far_from_the_base_are_found_and_removed() {
        let mut m = BySpi::starting_at(0x1000);
        let spis = [
            0x1000,
            0x1001,
            0x5000,
            0x0fff,
            0x1000 + DENSE_MAX as u32,
            u32::MAX,
        ];
        for (n, &spi) in spis.iter().enumerate() {
            m.insert(spi, n);
        }
        for (n, &spi) in spis.iter().enumerate() {
            assert_eq!(m.get(spi), Some(&n), "{spi:#x}");
        }
        assert_eq!(m.get(0x1002), None);
        assert_eq!(m.get(0x1000 + DENSE_MAX as u32 - 1), None);
        assert_eq!(m.sparse.len(), 3, "below the base and past the vector");
        assert!(m.dense.len() <= 0x4001);
        for &spi in &spis {
            m.remove(spi);
            assert_eq!(m.get(spi), None, "{spi:#x}");
        }
        m.insert(0x1001, 7);
        assert_eq!(m.get(0x1001), Some(&7), "a removed SPI can come back");
    }
}
