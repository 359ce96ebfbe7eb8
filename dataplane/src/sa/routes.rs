//! Outbound routing: which tunnel carries an inner destination.
//!
//! Two kinds of routes, both persistent (cheap snapshot, edits copy little):
//! - host routes inside an address pool (the concentrator case: each client
//!   gets one address from a pool): a radix array indexed by the address's
//!   offset in the pool, so lookup is O(1) and an edit copies two nodes;
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

/// The address `off` places into `pool`.
fn address_at(pool: &IpPrefix, off: usize) -> Option<IpAddr> {
    match pool.addr() {
        IpAddr::V4(base) => u32::from(base)
            .checked_add(u32::try_from(off).ok()?)
            .map(|a| IpAddr::V4(a.into())),
        IpAddr::V6(base) => u128::from(base)
            .checked_add(off as u128)
            .map(|a| IpAddr::V6(a.into())),
    }
}

impl RouteTable {
    /// Declares an address pool whose host routes get O(1) lookup. Host
    /// routes already in the table that fall inside it move into it.
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
        let mut pool = PoolRoutes {
            prefix,
            hosts: RadixArray::new(),
        };
        let host_len = if prefix.addr().is_ipv4() { 32 } else { 128 };
        let moved: Vec<(IpAddr, TunnelId)> = self
            .group(prefix.addr().is_ipv4(), host_len)
            .map(|g| {
                g.routes
                    .iter()
                    .filter(|(a, _)| prefix.contains(**a))
                    .map(|(a, t)| (*a, *t))
                    .collect()
            })
            .unwrap_or_default();
        for (addr, tunnel) in moved {
            if let Some(off) = offset_in(&prefix, addr) {
                self.remove_hashed(IpPrefix::host(addr), tunnel);
                pool.hosts.set(off, Some(tunnel));
            }
        }
        Arc::make_mut(&mut self.pools).push(pool);
        Ok(())
    }

    /// Forgets the pool `prefix`; its host routes stay, in the hash maps.
    pub fn remove_pool(&mut self, prefix: IpPrefix) {
        let Some(i) = self.pools.iter().position(|p| p.prefix == prefix) else {
            return;
        };
        let pool = Arc::make_mut(&mut self.pools).remove(i);
        for (off, tunnel) in pool.hosts.iter() {
            if let Some(addr) = address_at(&prefix, off) {
                self.insert_hashed(IpPrefix::host(addr), *tunnel);
            }
        }
    }

    /// Makes the pools exactly `wanted` (the responders' address pools),
    /// keeping every route. Returns the pools refused (too large, or
    /// overlapping another): their hosts stay in the hash maps, correct
    /// but a hash probe per packet instead of an index.
    pub fn set_pools(&mut self, wanted: &[IpPrefix]) -> Vec<RouteError> {
        let gone: Vec<IpPrefix> = self
            .pools
            .iter()
            .map(|p| p.prefix)
            .filter(|p| !wanted.contains(p))
            .collect();
        for p in gone {
            self.remove_pool(p);
        }
        wanted
            .iter()
            .filter_map(|p| self.add_pool(*p).err())
            .collect()
    }

    /// The pools in use, in the order they were added, each with its
    /// number of host routes.
    pub fn pools(&self) -> impl Iterator<Item = (IpPrefix, usize)> + '_ {
        self.pools.iter().map(|p| (p.prefix, p.hosts.len()))
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
        self.insert_hashed(prefix, tunnel);
    }

    fn group(&self, v4: bool, len: u8) -> Option<&LengthGroup> {
        self.groups.iter().find(|g| g.v4 == v4 && g.len == len)
    }

    fn insert_hashed(&mut self, prefix: IpPrefix, tunnel: TunnelId) {
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
        self.remove_hashed(prefix, tunnel);
    }

    fn remove_hashed(&mut self, prefix: IpPrefix, tunnel: TunnelId) {
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

    /// Asks for the cell that [`RouteTable::lookup`] will read for `dst`
    /// when a pool holds it (hashed routes are left alone): a worker asks a
    /// few packets ahead, so that the lookup finds its cell in the cache.
    #[inline]
    pub fn prefetch(&self, dst: IpAddr) {
        for pool in self.pools.iter() {
            if let Some(off) = offset_in(&pool.prefix, dst) {
                if let Some(cell) = pool.hosts.entry_ptr(off) {
                    crate::prefetch::prefetch(cell);
                }
                return;
            }
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
mod tests;
