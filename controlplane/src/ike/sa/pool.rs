//! Inner addresses handed to clients through CP (RFC 7296 §3.15), IPv4
//! or IPv6.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

/// An address family a pool can hand out: addresses are the pool's first
/// plus a 32-bit offset.
pub trait PoolAddress: Copy + std::fmt::Debug + PartialEq {
    /// `first + off`, wrapping (callers keep `off` below the pool's size).
    fn add(first: Self, off: u32) -> Self;
    /// `a - first` if it fits 32 bits.
    fn offset(first: Self, a: Self) -> Option<u32>;
}

impl PoolAddress for Ipv4Addr {
    fn add(first: Self, off: u32) -> Self {
        Ipv4Addr::from(u32::from(first).wrapping_add(off))
    }

    fn offset(first: Self, a: Self) -> Option<u32> {
        Some(u32::from(a).wrapping_sub(u32::from(first)))
    }
}

impl PoolAddress for Ipv6Addr {
    fn add(first: Self, off: u32) -> Self {
        Ipv6Addr::from(u128::from(first).wrapping_add(u128::from(off)))
    }

    fn offset(first: Self, a: Self) -> Option<u32> {
        u32::try_from(u128::from(a).checked_sub(u128::from(first))?).ok()
    }
}

/// Leases in O(log n): addresses below `next` were handed out at some
/// point; those given back wait in `free`. The lowest free address is the
/// lowest of `free`, or else `next`. Addresses at or above `next` that are
/// taken already (a reload's new pool keeps the old one's live leases) wait
/// in `reserved`, and `next` skips them.
#[derive(Clone, Debug)]
pub struct AddressPool<A: PoolAddress = Ipv4Addr> {
    first: A,
    size: u32,
    next: u32,
    free: BTreeSet<u32>,
    reserved: BTreeSet<u32>,
}

impl<A: PoolAddress> AddressPool<A> {
    /// `size` addresses starting at `first`.
    pub fn new(first: A, size: u32) -> Self {
        AddressPool {
            first,
            size,
            next: 0,
            free: BTreeSet::new(),
            reserved: BTreeSet::new(),
        }
    }

    /// Whether both pools hand out the same addresses.
    pub fn same_range(&self, other: &AddressPool<A>) -> bool {
        (self.first, self.size) == (other.first, other.size)
    }

    /// The lowest free address.
    pub fn lease(&mut self) -> Option<A> {
        let off = match self.free.pop_first() {
            Some(off) => off,
            None => {
                while self.reserved.remove(&self.next) {
                    self.next += 1;
                }
                if self.next >= self.size {
                    return None;
                }
                self.next += 1;
                self.next - 1
            }
        };
        Some(A::add(self.first, off))
    }

    /// The offset of `a` in the pool, if it is in it.
    fn offset(&self, a: A) -> Option<u32> {
        A::offset(self.first, a).filter(|&off| off < self.size)
    }

    /// Marks `a` as leased (a client holds it from before); an address
    /// outside the pool, or leased already, changes nothing.
    pub fn reserve(&mut self, a: A) {
        let Some(off) = self.offset(a) else {
            return;
        };
        if off < self.next {
            self.free.remove(&off);
        } else {
            self.reserved.insert(off);
        }
    }

    /// Gives `a` back; an address that is not leased changes nothing.
    pub fn release(&mut self, a: A) {
        let Some(off) = self.offset(a) else {
            return;
        };
        if off < self.next {
            self.free.insert(off);
        } else {
            self.reserved.remove(&off);
        }
    }

    pub fn leased(&self) -> usize {
        (self.next as usize).saturating_sub(self.free.len()) + self.reserved.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_lowest_free_and_runs_out() {
        let mut p = AddressPool::new(Ipv4Addr::new(10, 0, 0, 10), 2);
        assert_eq!(p.lease(), Some(Ipv4Addr::new(10, 0, 0, 10)));
        assert_eq!(p.lease(), Some(Ipv4Addr::new(10, 0, 0, 11)));
        assert_eq!(p.lease(), None);
        p.release(Ipv4Addr::new(10, 0, 0, 10));
        assert_eq!(p.lease(), Some(Ipv4Addr::new(10, 0, 0, 10)));
        assert_eq!(p.leased(), 2);
    }

    #[test]
    fn releasing_what_is_not_leased_changes_nothing() {
        let mut p = AddressPool::new(Ipv4Addr::new(10, 0, 0, 10), 4);
        p.lease();
        p.release(Ipv4Addr::new(10, 0, 0, 12)); // never leased
        p.release(Ipv4Addr::new(192, 0, 2, 1)); // not in the pool
        assert_eq!(p.leased(), 1);
        assert_eq!(p.lease(), Some(Ipv4Addr::new(10, 0, 0, 11)));
        p.release(Ipv4Addr::new(10, 0, 0, 10));
        p.release(Ipv4Addr::new(10, 0, 0, 10)); // twice
        assert_eq!(p.leased(), 1);
    }

    #[test]
    fn reserved_addresses_are_skipped_until_released() {
        let mut p = AddressPool::new(Ipv4Addr::new(10, 0, 0, 10), 4);
        assert_eq!(p.lease(), Some(Ipv4Addr::new(10, 0, 0, 10)));
        p.release(Ipv4Addr::new(10, 0, 0, 10));
        // One below `next` (was free), two above it, one outside the pool.
        for a in [10, 12, 13, 99] {
            p.reserve(Ipv4Addr::new(10, 0, 0, a));
        }
        assert_eq!(p.leased(), 3);
        assert_eq!(p.lease(), Some(Ipv4Addr::new(10, 0, 0, 11)));
        assert_eq!(p.lease(), None, "12 and 13 are taken");
        p.release(Ipv4Addr::new(10, 0, 0, 13));
        assert_eq!(p.lease(), Some(Ipv4Addr::new(10, 0, 0, 13)));
        assert_eq!(p.leased(), 4);
        assert!(p.same_range(&AddressPool::new(Ipv4Addr::new(10, 0, 0, 10), 4)));
        assert!(!p.same_range(&AddressPool::new(Ipv4Addr::new(10, 0, 0, 10), 8)));
    }

    #[test]
    fn given_back_addresses_are_leased_again_lowest_first() {
        let mut p = AddressPool::new(Ipv4Addr::new(10, 0, 0, 0), 1 << 16);
        let all: Vec<Ipv4Addr> = (0..1000).map(|_| p.lease().unwrap()).collect();
        for a in all.iter().rev().step_by(3) {
            p.release(*a);
        }
        let mut back: Vec<Ipv4Addr> = all.iter().rev().step_by(3).copied().collect();
        back.sort();
        let again: Vec<Ipv4Addr> = (0..back.len()).map(|_| p.lease().unwrap()).collect();
        assert_eq!(again, back);
        assert_eq!(
            p.lease(),
            Some(Ipv4Addr::new(10, 0, 3, 232)),
            "then the next new one"
        );
    }

    #[test]
    fn an_ipv6_pool_leases_and_takes_back_its_own_addresses() {
        let first: Ipv6Addr = "fd00:3::1".parse().unwrap();
        let mut p = AddressPool::new(first, 3);
        assert_eq!(p.lease(), Some(first));
        assert_eq!(p.lease(), Some("fd00:3::2".parse().unwrap()));
        p.reserve("fd00:3::3".parse().unwrap());
        assert_eq!(p.lease(), None, "the last one is reserved");
        p.release("fd00:3::1".parse().unwrap());
        p.release("fd00:4::1".parse().unwrap()); // not in the pool
        p.release("fd00:3::".parse().unwrap()); // below it
        assert_eq!(p.leased(), 2);
        assert_eq!(p.lease(), Some(first));
    }
}
