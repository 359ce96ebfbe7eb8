//! The responder's address pools, one per template that names one, kept
//! across reloads with the leases its clients hold.

use std::collections::HashMap;
use std::net::Ipv6Addr;

use super::super::ike_sa::IkeSa;
use super::super::policy::PoolName;
use super::super::pool::PoolAddress;
use super::super::AddressPool;
use super::IkeEndpoint;

impl IkeEndpoint {
    /// Gives the templates whose `Policy::pool` is `name` their pool. The
    /// same range again keeps the pool as it is (its leases with it); a new
    /// range starts a new pool in which the addresses that clients of the
    /// template still hold stay taken, so no address is handed out twice.
    pub fn set_pool(&mut self, name: PoolName, pool: AddressPool) {
        replace_pool(&mut self.io.pools, &self.sas, name, pool, |sa| sa.leased_ip);
    }

    /// [`set_pool`](Self::set_pool) for the IPv6 pool of the same name.
    pub fn set_pool6(&mut self, name: PoolName, pool: AddressPool<Ipv6Addr>) {
        replace_pool(&mut self.io.pools6, &self.sas, name, pool, |sa| {
            sa.leased_ip6
        });
    }

    /// Drops the IPv4 pool of `name` (its template is gone or has none
    /// any more): its clients then get no IPv4 address; those they hold
    /// go back with their IKE SAs, to nothing.
    pub fn remove_pool(&mut self, name: &str) {
        self.io.pools.remove(&Some(PoolName::from(name)));
    }

    /// [`remove_pool`](Self::remove_pool) for the IPv6 pool.
    pub fn remove_pool6(&mut self, name: &str) {
        self.io.pools6.remove(&Some(PoolName::from(name)));
    }

    /// Addresses leased from the pool `name` (`None`: `accept`'s).
    pub fn pool_leases(&self, name: Option<&str>) -> usize {
        let key = name.map(PoolName::from);
        self.io.pools.get(&key).map_or(0, |p| p.leased())
    }

    /// IPv6 addresses leased from the pool `name`.
    pub fn pool6_leases(&self, name: Option<&str>) -> usize {
        let key = name.map(PoolName::from);
        self.io.pools6.get(&key).map_or(0, |p| p.leased())
    }
}

/// [`IkeEndpoint::set_pool`] for either family: `leased` is what an IKE SA
/// holds of it.
fn replace_pool<A: PoolAddress>(
    pools: &mut HashMap<Option<PoolName>, AddressPool<A>>,
    sas: &HashMap<u64, Box<IkeSa>>,
    name: PoolName,
    mut pool: AddressPool<A>,
    leased: impl Fn(&IkeSa) -> Option<A>,
) {
    let key = Some(name);
    if pools.get(&key).is_some_and(|p| p.same_range(&pool)) {
        return;
    }
    for sa in sas.values().filter(|sa| sa.policy.pool == key) {
        if let Some(a) = leased(sa) {
            pool.reserve(a);
        }
    }
    pools.insert(key, pool);
}
