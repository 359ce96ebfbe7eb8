//! Outbound routing: which tunnel carries an inner destination.
//!
//! Two kinds of routes, both persistent (cheap snapshot, edits copy little):
//! - host routes inside an address pool (the concentrator case: each client
//!   gets one address from a pool): a radix array indexed by the address's
//!   offset in the pool, so lookup is O(1) and an edit copies three nodes;
//! - other prefixes (site-to-site selectors, manual tunnels): one hash map
//!   per prefix length, longest first, so a lookup costs one probe per
//!   length in use, whatever the number of routes. An edit copies the map
//!   of its length if a published snapshot shares it.

use rustc_hash::FxHashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::prefix::{mask, IpPrefix};
use super::radix::{RadixArray, KEY_LIMIT};
use super::TunnelId;

#[derive(Clone)]
struct PoolRoutes {
    prefix: IpPrefix,
    hosts: RadixArray<TunnelId>,
}

/// A route could not be added.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("pool {0} is larger than 2^24 addresses")]
    PoolTooLarge(IpPrefix),
    #[error("pool {0} overlaps pool {1}")]
    PoolOverlap(IpPrefix, IpPrefix),
}

/// Routes of one prefix length and family, by masked address. FxHash,
/// not the default SipHash: every clear packet probes these maps, SipHash
/// cost a sixth of a 64-byte worker loop, and the keys are the control
/// plane's (configured or negotiated prefixes), not the packets'.
#[derive(Clone)]
struct LengthGroup {
    v4: bool,
    len: u8,
    routes: Arc<FxHashMap<IpAddr, TunnelId>>,
}

/// Inner destination -> tunnel.
#[derive(Clone, Default)]
pub struct RouteTable {
    pools: Arc<Vec<PoolRoutes>>,
    /// Longest prefix first.
    groups: Arc<Vec<LengthGroup>>,
}

fn offset_in(pool: &IpPrefix, ip: IpAddr) -> Option<usize> {
    if !pool.contains(ip) {
        return None;
    }
    let off = match (pool.addr(), ip) {
        (IpAddr::V4(base), IpAddr::V4(a)) => (u32::from(a) - u32::from(base)) as u128,
        (IpAddr::V6(base), IpAddr::V6(a)) => u128::from(a) - u128::from(base),
        _ => return None,
    };
    usize::try_from(off).ok().filter(|o| *o < KEY_LIMIT)
}

impl RouteTable {
    /// Declares an address pool whose host routes get O(1) lookup.
    pub fn add_pool(&mut self, prefix: IpPrefix) -> Result<(), RouteError> {
        let host_bits = if prefix.addr().is_ipv4() { 32 } else { 128 } - prefix.prefix_len() as u32;
        if host_bits > 24 {
            return Err(RouteError::PoolTooLarge(prefix));
        }
        if let Some(p) = self.pools.iter().find(|p| p.prefix.overlaps(&prefix)) {
            if p.prefix == prefix {
                return Ok(());
            }
            return Err(RouteError::PoolOverlap(prefix, p.prefix));
        }
        Arc::make_mut(&mut self.pools).push(PoolRoutes {
            prefix,
            hosts: RadixArray::new(),
        });
        Ok(())
    }

    /// Routes `prefix` into `tunnel` (replacing an equal route).
    pub fn insert(&mut self, prefix: IpPrefix, tunnel: TunnelId) {
        if prefix.is_host() {
            let pools = Arc::make_mut(&mut self.pools);
            for pool in pools.iter_mut() {
                if let Some(off) = offset_in(&pool.prefix, prefix.addr()) {
                    pool.hosts.set(off, Some(tunnel));
                    return;
                }
            }
        }
        let v4 = prefix.addr().is_ipv4();
        let len = prefix.prefix_len();
        let groups = Arc::make_mut(&mut self.groups);
        let at = match groups.iter().position(|g| g.v4 == v4 && g.len == len) {
            Some(i) => i,
            None => {
                // Longest first so the first hit is the most specific route.
                let i = groups.partition_point(|g| g.len >= len);
                groups.insert(
                    i,
                    LengthGroup {
                        v4,
                        len,
                        routes: Arc::default(),
                    },
                );
                i
            }
        };
        Arc::make_mut(&mut groups[at].routes).insert(prefix.addr(), tunnel);
    }

    /// Removes the route for exactly `prefix`, if it points to `tunnel`.
    pub fn remove(&mut self, prefix: IpPrefix, tunnel: TunnelId) {
        if prefix.is_host() {
            let hit = self.pools.iter().position(|p| {
                offset_in(&p.prefix, prefix.addr())
                    .is_some_and(|off| p.hosts.get(off) == Some(&tunnel))
            });
            if let Some(i) = hit {
                let pool = &mut Arc::make_mut(&mut self.pools)[i];
                if let Some(off) = offset_in(&pool.prefix, prefix.addr()) {
                    pool.hosts.set(off, None);
                }
                return;
            }
        }
        let (v4, len) = (prefix.addr().is_ipv4(), prefix.prefix_len());
        let Some(i) = self.groups.iter().position(|g| g.v4 == v4 && g.len == len) else {
            return;
        };
        if self.groups[i].routes.get(&prefix.addr()) != Some(&tunnel) {
            return;
        }
        let groups = Arc::make_mut(&mut self.groups);
        Arc::make_mut(&mut groups[i].routes).remove(&prefix.addr());
        if groups[i].routes.is_empty() {
            groups.remove(i);
        }
    }

    /// The tunnel for `dst`: a pool host route first, then the longest prefix.
    #[inline]
    pub fn lookup(&self, dst: IpAddr) -> Option<TunnelId> {
        for pool in self.pools.iter() {
            if let Some(off) = offset_in(&pool.prefix, dst) {
                if let Some(t) = pool.hosts.get(off) {
                    return Some(*t);
                }
            }
        }
        let v4 = dst.is_ipv4();
        self.groups
            .iter()
            .filter(|g| g.v4 == v4)
            .find_map(|g| g.routes.get(&mask(dst, g.len)).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> IpPrefix {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let mut r = RouteTable::default();
        r.insert(p("10.0.0.0/8"), 1);
        r.insert(p("10.1.0.0/16"), 2);
        r.insert(p("0.0.0.0/0"), 3);
        assert_eq!(r.lookup(ip("10.1.2.3")), Some(2));
        assert_eq!(r.lookup(ip("10.2.2.3")), Some(1));
        assert_eq!(r.lookup(ip("192.0.2.1")), Some(3));
        assert_eq!(r.lookup(ip("2001:db8::1")), None);
        r.remove(p("10.1.0.0/16"), 2);
        assert_eq!(r.lookup(ip("10.1.2.3")), Some(1));
    }

    #[test]
    fn pool_hosts_are_indexed_and_snapshots_are_stable() {
        let mut r = RouteTable::default();
        r.add_pool(p("10.3.0.0/16")).unwrap();
        r.add_pool(p("fd00:1::/104")).unwrap();
        r.insert(p("10.3.0.0/16"), 9); // the pool's own prefix as a fallback
        r.insert(p("10.3.1.7/32"), 42);
        r.insert(p("fd00:1::5/128"), 43);
        let snapshot = r.clone();
        r.remove(p("10.3.1.7/32"), 42);
        assert_eq!(snapshot.lookup(ip("10.3.1.7")), Some(42));
        assert_eq!(snapshot.lookup(ip("fd00:1::5")), Some(43));
        assert_eq!(r.lookup(ip("10.3.1.7")), Some(9));
        assert_eq!(r.lookup(ip("10.3.1.8")), Some(9));
    }

    #[test]
    fn many_prefixes_cost_one_probe_per_length_and_edits_leave_snapshots_alone() {
        let mut r = RouteTable::default();
        for i in 0..10_000u32 {
            let net =
                IpPrefix::new(IpAddr::from((0x0a00_0000 | (i << 8)).to_be_bytes()), 24).unwrap();
            r.insert(net, i);
        }
        r.insert(p("10.0.0.0/8"), 99_999);
        assert_eq!(r.groups.len(), 2, "two lengths in use");
        assert_eq!(r.lookup(ip("10.0.42.7")), Some(42));
        assert_eq!(
            r.lookup(ip("10.200.0.1")),
            Some(99_999),
            "beyond the /24s: the /8"
        );
        let snapshot = r.clone();
        r.remove(p("10.0.42.0/24"), 42);
        r.remove(p("10.0.43.0/24"), 7); // not its tunnel: ignored
        assert_eq!(r.lookup(ip("10.0.42.7")), Some(99_999));
        assert_eq!(r.lookup(ip("10.0.43.7")), Some(43));
        assert_eq!(snapshot.lookup(ip("10.0.42.7")), Some(42));
    }

    #[test]
    fn pools_must_be_small_and_disjoint() {
        let mut r = RouteTable::default();
        assert!(matches!(
            r.add_pool(p("10.0.0.0/7")),
            Err(RouteError::PoolTooLarge(_))
        ));
        r.add_pool(p("10.0.0.0/8")).unwrap();
        assert!(matches!(
            r.add_pool(p("10.1.0.0/16")),
            Err(RouteError::PoolOverlap(..))
        ));
    }
}
