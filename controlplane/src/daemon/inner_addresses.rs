//! The inner addresses responders lease to us, on the inside TUN: which to
//! add, which to take off, and when to try again after a failure (the
//! device may be briefly down, IPv6 off on it, the kernel busy). Sans-IO:
//! the device is a trait, time is passed in.
//!
//! Only what we added is ours to take off: an address that was there
//! already (the operator's) is left alone and not tried again.

use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Adding and removing host addresses (/32, /128) on a device.
pub trait HostAddresses {
    /// `ErrorKind::AlreadyExists` if the address is there already.
    fn add(&self, a: IpAddr) -> io::Result<()>;
    /// `ErrorKind::AddrNotAvailable` if the address is not there.
    fn remove(&self, a: IpAddr) -> io::Result<()>;
    /// The device's name, for logs.
    fn name(&self) -> &str;
}

/// The first wait after a failure; each failure in a row doubles it.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);

/// What has been applied to the device.
#[derive(Debug, Default)]
pub struct InnerAddresses {
    /// The leases' version last applied (perhaps with failures).
    version: u64,
    /// The addresses we added.
    ours: BTreeSet<IpAddr>,
    /// After a failure: when to try again, and the wait that led there.
    retry: Option<(Instant, Duration)>,
}

impl InnerAddresses {
    /// Whether [`InnerAddresses::sync`] has work: the leases changed, or a
    /// retry is due.
    pub fn due(&self, version: u64, now: Instant) -> bool {
        version != self.version || self.retry.is_some_and(|(at, _)| now >= at)
    }

    /// When a retry is due, if one is pending.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry.map(|(at, _)| at)
    }

    /// The addresses we added and hold.
    pub fn ours(&self) -> &BTreeSet<IpAddr> {
        &self.ours
    }

    /// Makes the device hold `wanted` (leases at `version`): takes off ours
    /// that are no longer wanted, adds the wanted ones it lacks. Whatever
    /// failed is tried again later, each failure in a row waiting twice as
    /// long, up to a minute.
    pub fn sync(
        &mut self,
        dev: &dyn HostAddresses,
        version: u64,
        wanted: &BTreeSet<IpAddr>,
        now: Instant,
    ) {
        let mut failed = false;
        let stale: Vec<IpAddr> = self.ours.difference(wanted).copied().collect();
        for a in stale {
            match dev.remove(a) {
                Ok(()) => {
                    tracing::info!(address = %a, dev = dev.name(), "leased inner address removed")
                }
                Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {}
                Err(e) => {
                    tracing::warn!(address = %a, error = %e, "could not remove a leased inner address; will try again");
                    failed = true;
                    continue;
                }
            }
            self.ours.remove(&a);
        }
        let missing: Vec<IpAddr> = wanted.difference(&self.ours).copied().collect();
        for a in missing {
            match dev.add(a) {
                Ok(()) => {
                    tracing::info!(address = %a, dev = dev.name(), "leased inner address added");
                    self.ours.insert(a);
                }
                // There already (the operator's): usable, and not ours.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    tracing::warn!(address = %a, error = %e, "could not add a leased inner address; will try again");
                    failed = true;
                }
            }
        }
        self.version = version;
        self.retry = failed.then(|| {
            let wait = match self.retry {
                Some((_, last)) => (last * 2).min(MAX_RETRY),
                None => FIRST_RETRY,
            };
            (now + wait, wait)
        });
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use super::*;

    /// A device holding `present`; the next `fail` calls fail as a busy
    /// kernel would.
    #[derive(Default)]
    struct Fake {
        present: RefCell<BTreeSet<IpAddr>>,
        fail: Cell<u32>,
    }

    impl Fake {
        fn transient(&self) -> io::Result<()> {
            match self.fail.get() {
                0 => Ok(()),
                n => {
                    self.fail.set(n - 1);
                    Err(io::Error::other("RTNETLINK answers: Network is down"))
                }
            }
        }
    }

    impl HostAddresses for Fake {
        fn add(&self, a: IpAddr) -> io::Result<()> {
            self.transient()?;
            match self.present.borrow_mut().insert(a) {
                true => Ok(()),
                false => Err(io::ErrorKind::AlreadyExists.into()),
            }
        }
        fn remove(&self, a: IpAddr) -> io::Result<()> {
            self.transient()?;
            match self.present.borrow_mut().remove(&a) {
                true => Ok(()),
                false => Err(io::ErrorKind::AddrNotAvailable.into()),
            }
        }
        fn name(&self) -> &str {
            "fake0"
        }
    }

    fn set(a: &[&str]) -> BTreeSet<IpAddr> {
        a.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn a_failed_add_is_tried_again_later_until_it_holds() {
        let dev = Fake::default();
        let t0 = Instant::now();
        let mut s = InnerAddresses::default();
        let wanted = set(&["10.50.0.1", "fd00:50::1"]);
        dev.fail.set(1);
        assert!(s.due(1, t0));
        s.sync(&dev, 1, &wanted, t0);
        assert_eq!(*dev.present.borrow(), set(&["fd00:50::1"]));
        assert!(!s.due(1, t0 + Duration::from_millis(999)), "not yet");
        assert!(s.due(1, t0 + FIRST_RETRY));
        s.sync(&dev, 1, &wanted, t0 + FIRST_RETRY);
        assert_eq!(*dev.present.borrow(), wanted);
        assert_eq!(*s.ours(), wanted);
        assert_eq!(s.retry_at(), None);
        assert!(
            !s.due(1, t0 + Duration::from_secs(3600)),
            "nothing left to do"
        );
    }

    #[test]
    fn failures_in_a_row_wait_twice_as_long_each_up_to_a_minute() {
        let dev = Fake::default();
        let t0 = Instant::now();
        let mut s = InnerAddresses::default();
        let wanted = set(&["10.50.0.1"]);
        dev.fail.set(100);
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..9 {
            s.sync(&dev, 1, &wanted, now);
            let at = s.retry_at().expect("a retry after a failure");
            waits.push((at - now).as_secs());
            now = at;
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        dev.fail.set(0);
        s.sync(&dev, 1, &wanted, now);
        assert_eq!((s.retry_at(), s.ours().len()), (None, 1));
    }

    #[test]
    fn an_address_that_was_there_already_is_left_alone() {
        let dev = Fake::default();
        dev.present
            .borrow_mut()
            .insert("10.50.0.9".parse().unwrap());
        let t0 = Instant::now();
        let mut s = InnerAddresses::default();
        s.sync(&dev, 1, &set(&["10.50.0.9", "10.50.0.1"]), t0);
        assert_eq!(
            (s.retry_at(), s.ours().clone()),
            (None, set(&["10.50.0.1"]))
        );
        // The leases go: ours comes off, the operator's stays.
        s.sync(&dev, 2, &BTreeSet::new(), t0);
        assert_eq!(*dev.present.borrow(), set(&["10.50.0.9"]));
        assert!(s.ours().is_empty());
    }

    #[test]
    fn a_failed_removal_is_tried_again_and_one_already_gone_counts_as_done() {
        let dev = Fake::default();
        let t0 = Instant::now();
        let mut s = InnerAddresses::default();
        s.sync(&dev, 1, &set(&["10.50.0.1", "10.50.0.2"]), t0);
        dev.present
            .borrow_mut()
            .remove(&"10.50.0.2".parse().unwrap());
        dev.fail.set(1);
        s.sync(&dev, 2, &BTreeSet::new(), t0);
        assert_eq!(
            *s.ours(),
            set(&["10.50.0.1"]),
            "the one that failed is still ours"
        );
        assert!(s.due(2, t0 + FIRST_RETRY));
        s.sync(&dev, 2, &BTreeSet::new(), t0 + FIRST_RETRY);
        assert!(dev.present.borrow().is_empty() && s.ours().is_empty());
        assert_eq!(s.retry_at(), None);
    }
}
