//! The inner source addresses a peer may use: its traffic selectors, as the
//! policy check after decryption reads them.
//!
//! Nearly every client has one selector (its leased address or its subnet),
//! so the first sits inline in the SA and the check reads no line outside
//! it: at 100,000 tunnels a separate allocation was one more cache miss per
//! packet. Any further selectors live behind a pointer.

use std::net::IpAddr;

use super::prefix::IpPrefix;

pub struct AllowedSources {
    first: Option<IpPrefix>,
    /// The others; empty (no allocation) for the usual single selector.
    rest: Box<[IpPrefix]>,
}

impl AllowedSources {
    pub fn new(prefixes: Vec<IpPrefix>) -> AllowedSources {
        let mut all = prefixes.into_iter();
        AllowedSources {
            first: all.next(),
            rest: all.collect(),
        }
    }

    /// Whether `src` lies in one of the prefixes.
    #[inline]
    pub fn allows(&self, src: IpAddr) -> bool {
        match self.first {
            Some(p) if p.contains(src) => true,
            Some(_) => self.rest.iter().any(|p| p.contains(src)),
            None => false,
        }
    }

    /// Asks the cache for the out-of-line selectors, if there are any.
    #[inline]
    pub fn prefetch(&self) {
        if !self.rest.is_empty() {
            crate::prefetch::prefetch(self.rest.as_ptr());
        }
    }

    /// How many prefixes there are.
    #[cfg(test)]
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> IpPrefix {
        s.parse().unwrap()
    }

    #[test]
    fn every_prefix_is_checked_and_nothing_else_passes() {
        let one = AllowedSources::new(vec![p("10.1.0.0/16")]);
        assert!(one.allows("10.1.2.3".parse().unwrap()));
        assert!(!one.allows("10.2.0.1".parse().unwrap()));
        let three = AllowedSources::new(vec![
            p("10.1.0.0/16"),
            p("192.0.2.7/32"),
            p("2001:db8::/64"),
        ]);
        for ok in ["10.1.9.9", "192.0.2.7", "2001:db8::5"] {
            assert!(three.allows(ok.parse().unwrap()), "{ok}");
        }
        for bad in ["192.0.2.8", "2001:db8:1::5", "10.0.0.1"] {
            assert!(!three.allows(bad.parse().unwrap()), "{bad}");
        }
        assert_eq!(three.len(), 3);
        let none = AllowedSources::new(Vec::new());
        assert!(!none.allows("10.1.2.3".parse().unwrap()));
        assert_eq!(none.len(), 0);
    }
}
