//! The neighbour table: next hop -> MAC, learned from ARP (RFC 826) and
//! IPv6 neighbour discovery (RFC 4861), and shared by the ports of all workers, since an ARP reply reaches only
//! one of them (fanout, RSS).
//!
//! Workers read a private copy, refreshed when the shared generation moves
//! (one atomic load per burst); learning takes a lock, which only ARP
//! traffic does. Entries older than the reachable time are still used, but
//! the port re-asks (unicast would do; we broadcast, like a first request),
//! which is RFC 1122 §2.3.2.1's "refresh" without a separate state machine.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ethernet::MacAddr;

/// One learned neighbour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub mac: MacAddr,
    pub learned: Instant,
}

/// The table shared by a port group.
#[derive(Clone, Default)]
pub struct SharedNeighbours {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    generation: AtomicU64,
    table: Mutex<HashMap<IpAddr, Neighbour>>,
}

impl SharedNeighbours {
    pub fn new() -> SharedNeighbours {
        SharedNeighbours::default()
    }

    /// Records `ip` at `mac`; moves the generation only if that changes the
    /// MAC or revives an old entry, so steady traffic costs no copies.
    pub fn learn(&self, ip: impl Into<IpAddr>, mac: MacAddr, now: Instant, reachable: Duration) {
        let ip = ip.into();
        let Ok(mut t) = self.inner.table.lock() else {
            return;
        };
        let fresh = Neighbour { mac, learned: now };
        let changed = match t.insert(ip, fresh) {
            Some(old) => old.mac != mac || now.saturating_duration_since(old.learned) >= reachable,
            None => true,
        };
        if changed {
            self.inner.generation.fetch_add(1, Ordering::Release);
        }
    }

    /// Adds a static entry (from the config); it never goes stale.
    pub fn insert_static(&self, ip: impl Into<IpAddr>, mac: MacAddr) {
        self.learn(ip, mac, far_future(), Duration::ZERO);
    }

    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// A copy of the table.
    pub fn snapshot(&self) -> HashMap<IpAddr, Neighbour> {
        self.inner
            .table
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    /// The MAC of `ip`, if known (control plane, tests).
    pub fn lookup(&self, ip: impl Into<IpAddr>) -> Option<MacAddr> {
        let ip = ip.into();
        self.inner
            .table
            .lock()
            .ok()
            .and_then(|t| t.get(&ip).map(|n| n.mac))
    }
}

/// A time no entry reaches, for static entries: about a century ahead.
fn far_future() -> Instant {
    let now = Instant::now();
    now.checked_add(Duration::from_secs(100 * 365 * 86_400))
        .unwrap_or(now)
}

/// A worker's read copy of the shared table.
pub struct NeighbourCache {
    shared: SharedNeighbours,
    seen: u64,
    local: HashMap<IpAddr, Neighbour>,
    /// The last next hop found, and its entry: nearly every packet leaves
    /// through the same router, and hashing its address per packet was a
    /// tenth of the crypto's time in a profile of the DPDK port.
    last: Cell<Option<(IpAddr, Neighbour)>>,
}

/// What the cache knows about a next hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    Reachable(MacAddr),
    /// Known but old: use it and ask again.
    Stale(MacAddr),
    Unknown,
}

impl NeighbourCache {
    pub fn new(shared: SharedNeighbours) -> NeighbourCache {
        let seen = shared.generation();
        let local = shared.snapshot();
        NeighbourCache {
            shared,
            seen,
            local,
            last: Cell::new(None),
        }
    }

    pub fn shared(&self) -> &SharedNeighbours {
        &self.shared
    }

    /// Picks up what other workers learned; true if anything changed.
    pub fn refresh(&mut self) -> bool {
        let g = self.shared.generation();
        if g == self.seen {
            return false;
        }
        self.local = self.shared.snapshot();
        self.last.set(None);
        self.seen = g;
        true
    }

    pub fn resolve(&self, ip: IpAddr, now: Instant, reachable: Duration) -> Resolution {
        let n = match self.last.get() {
            Some((hop, n)) if hop == ip => n,
            _ => match self.local.get(&ip) {
                None => return Resolution::Unknown,
                Some(&n) => {
                    self.last.set(Some((ip, n)));
                    n
                }
            },
        };
        if now.saturating_duration_since(n.learned) < reachable {
            Resolution::Reachable(n.mac)
        } else {
            Resolution::Stale(n.mac)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
    const REACH: Duration = Duration::from_secs(30);

    #[test]
    fn another_workers_learning_reaches_this_cache() {
        let shared = SharedNeighbours::new();
        let mut mine = NeighbourCache::new(shared.clone());
        let t0 = Instant::now();
        assert_eq!(mine.resolve(IP.into(), t0, REACH), Resolution::Unknown);
        shared.learn(IP, MAC, t0, REACH);
        assert!(mine.refresh());
        assert!(!mine.refresh(), "nothing new");
        assert_eq!(
            mine.resolve(IP.into(), t0, REACH),
            Resolution::Reachable(MAC)
        );
        assert_eq!(
            mine.resolve(IP.into(), t0 + REACH, REACH),
            Resolution::Stale(MAC),
            "old entries are used but re-asked"
        );
    }

    #[test]
    fn the_remembered_next_hop_follows_the_table() {
        let shared = SharedNeighbours::new();
        let t0 = Instant::now();
        shared.learn(IP, MAC, t0, REACH);
        let other = Ipv4Addr::new(192, 0, 2, 3);
        shared.learn(other, MacAddr([2, 0, 0, 0, 0, 3]), t0, REACH);
        let mut mine = NeighbourCache::new(shared.clone());
        let at = |c: &NeighbourCache, ip: Ipv4Addr, t| c.resolve(ip.into(), t, REACH);
        assert_eq!(at(&mine, IP, t0), Resolution::Reachable(MAC));
        assert_eq!(
            at(&mine, other, t0),
            Resolution::Reachable(MacAddr([2, 0, 0, 0, 0, 3])),
            "another hop is not answered with the remembered one"
        );
        assert_eq!(at(&mine, IP, t0), Resolution::Reachable(MAC));
        assert_eq!(
            at(&mine, IP, t0 + REACH),
            Resolution::Stale(MAC),
            "age still counts"
        );
        let moved = MacAddr([2, 0, 0, 0, 0, 9]);
        shared.learn(IP, moved, t0, REACH);
        assert!(mine.refresh());
        assert_eq!(
            at(&mine, IP, t0),
            Resolution::Reachable(moved),
            "a move is seen"
        );
    }

    #[test]
    fn relearning_the_same_mac_does_not_churn_the_generation() {
        let shared = SharedNeighbours::new();
        let t0 = Instant::now();
        shared.learn(IP, MAC, t0, REACH);
        let g = shared.generation();
        shared.learn(IP, MAC, t0 + Duration::from_secs(1), REACH);
        assert_eq!(shared.generation(), g);
        shared.learn(IP, MacAddr([2, 0, 0, 0, 0, 9]), t0, REACH);
        assert_ne!(shared.generation(), g, "a moved neighbour is news");
        shared.learn(IP, MacAddr([2, 0, 0, 0, 0, 9]), t0 + REACH, REACH);
        assert_eq!(shared.generation(), g + 2, "a refreshed stale entry too");
    }

    #[test]
    fn static_entries_never_go_stale() {
        let shared = SharedNeighbours::new();
        shared.insert_static(IP, MAC);
        let c = NeighbourCache::new(shared);
        let later = Instant::now() + Duration::from_secs(86_400);
        assert_eq!(
            c.resolve(IP.into(), later, REACH),
            Resolution::Reachable(MAC)
        );
    }
}
