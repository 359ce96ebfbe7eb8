//! IPv4 addresses handed to clients through CP (RFC 7296 §3.15).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

#[derive(Clone, Debug)]
pub struct AddressPool {
    first: u32,
    size: u32,
    leased: BTreeSet<u32>,
}

impl AddressPool {
    /// `size` addresses starting at `first`.
    pub fn new(first: Ipv4Addr, size: u32) -> Self {
        AddressPool {
            first: u32::from(first),
            size,
            leased: BTreeSet::new(),
        }
    }

    /// The lowest free address.
    pub fn lease(&mut self) -> Option<Ipv4Addr> {
        let off = (0..self.size).find(|o| !self.leased.contains(o))?;
        self.leased.insert(off);
        Some(Ipv4Addr::from(self.first.wrapping_add(off)))
    }

    pub fn release(&mut self, a: Ipv4Addr) {
        self.leased.remove(&u32::from(a).wrapping_sub(self.first));
    }

    pub fn leased(&self) -> usize {
        self.leased.len()
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
}
