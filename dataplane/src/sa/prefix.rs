//! IP prefixes for traffic selectors and routes.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IPv4 or IPv6 prefix, host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpPrefix {
    addr: IpAddr,
    len: u8,
}

/// A prefix string or length that does not make sense.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid IP prefix {0:?}")]
pub struct BadPrefix(pub String);

impl IpPrefix {
    /// `addr/len` with host bits cleared; `None` if `len` is too long.
    pub fn new(addr: IpAddr, len: u8) -> Option<IpPrefix> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return None;
        }
        Some(IpPrefix {
            addr: mask(addr, len),
            len,
        })
    }

    /// The single-address prefix of `addr`.
    pub fn host(addr: IpAddr) -> IpPrefix {
        let len = if addr.is_ipv4() { 32 } else { 128 };
        IpPrefix { addr, len }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    pub fn is_host(&self) -> bool {
        self.len == if self.addr.is_ipv4() { 32 } else { 128 }
    }

    /// Whether `ip` lies inside this prefix (same family only).
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.len) == self.addr
            }
            _ => false,
        }
    }

    /// Whether the two prefixes share any address.
    pub fn overlaps(&self, other: &IpPrefix) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }
}

/// `ip` with all but the first `len` bits cleared.
#[inline]
pub fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - len.min(32))
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len.min(128))
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for IpPrefix {
    type Err = BadPrefix;

    /// `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a host prefix).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadPrefix(s.to_string());
        match s.split_once('/') {
            Some((a, l)) => {
                let addr: IpAddr = a.parse().map_err(|_| bad())?;
                let len: u8 = l.parse().map_err(|_| bad())?;
                IpPrefix::new(addr, len).ok_or_else(bad)
            }
            None => Ok(IpPrefix::host(s.parse().map_err(|_| bad())?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> IpPrefix {
        s.parse().unwrap()
    }

    #[test]
    fn contains_respects_length_and_family() {
        assert!(p("10.1.0.0/16").contains("10.1.200.3".parse().unwrap()));
        assert!(!p("10.1.0.0/16").contains("10.2.0.1".parse().unwrap()));
        assert!(p("0.0.0.0/0").contains("192.0.2.1".parse().unwrap()));
        assert!(!p("0.0.0.0/0").contains("::1".parse().unwrap()));
        assert!(p("2001:db8::/32").contains("2001:db8:1::5".parse().unwrap()));
        assert!(p("10.9.9.9").contains("10.9.9.9".parse().unwrap()));
    }

    #[test]
    fn parsing_clears_host_bits_and_rejects_nonsense() {
        assert_eq!(p("10.1.2.3/16").to_string(), "10.1.0.0/16");
        assert!("10.0.0.0/33".parse::<IpPrefix>().is_err());
        assert!("10.0.0/8".parse::<IpPrefix>().is_err());
        assert!("::/129".parse::<IpPrefix>().is_err());
        assert!(p("10.0.0.0/8").overlaps(&p("10.5.0.0/16")));
        assert!(!p("10.0.0.0/16").overlaps(&p("10.1.0.0/16")));
    }
}
