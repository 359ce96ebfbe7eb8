//! The inner addresses responders leased to our own initiator IKE SAs (CP,
//! RFC 7296 §3.15), by IKE SA, for the daemon to put on its inside
//! interface: traffic selectors are narrowed to them, so the hosts there
//! must be able to send from them.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use crate::ike::sa::IkeSaId;

#[derive(Debug, Default)]
pub struct OwnAddresses {
    by_sa: HashMap<IkeSaId, Vec<IpAddr>>,
    /// Bumped at every change, so a reader knows when to look again.
    version: u64,
}

impl OwnAddresses {
    /// `sa` holds `addrs` now (an empty list: none).
    pub fn set(&mut self, sa: IkeSaId, addrs: Vec<IpAddr>) {
        let changed = if addrs.is_empty() {
            self.by_sa.remove(&sa).is_some()
        } else {
            self.by_sa.insert(sa, addrs.clone()).as_ref() != Some(&addrs)
        };
        self.version += u64::from(changed);
    }

    /// An IKE SA rekey: the new SA keeps the old one's leases (§2.8).
    pub fn rekeyed(&mut self, old: IkeSaId, new: IkeSaId) {
        if let Some(a) = self.by_sa.remove(&old) {
            self.by_sa.insert(new, a);
        }
    }

    /// The IKE SA ended: its leases with it.
    pub fn remove(&mut self, sa: IkeSaId) {
        self.set(sa, Vec::new());
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Every address some SA of ours holds.
    pub fn all(&self) -> BTreeSet<IpAddr> {
        self.by_sa.values().flatten().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn leases_follow_their_ike_sa_through_rekeys_and_go_with_it() {
        let mut o = OwnAddresses::default();
        let (a, b) = (IkeSaId(1), IkeSaId(2));
        o.set(a, vec![ip("10.50.0.1"), ip("fd00:50::1")]);
        let v = o.version();
        assert_eq!(o.all(), [ip("10.50.0.1"), ip("fd00:50::1")].into());
        // A CHILD SA rekey reports the same leases: nothing to do.
        o.set(a, vec![ip("10.50.0.1"), ip("fd00:50::1")]);
        assert_eq!(o.version(), v);
        o.rekeyed(a, b);
        assert_eq!(o.all().len(), 2);
        o.remove(a);
        assert_eq!(o.version(), v, "the old SA holds nothing any more");
        o.remove(b);
        assert!(o.all().is_empty());
        assert!(o.version() > v);
    }
}
