//! Traffic Selector payloads TSi/TSr (RFC 7296 §3.13).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::reader::Reader;
use super::{ParseError, TsType};

/// One selector: an address range, a port range, an IP protocol (0 = any).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrafficSelector {
    pub ip_protocol: u8,
    pub start_port: u16,
    pub end_port: u16,
    /// Both ends have the same family; it gives the TS type (7 or 8).
    pub start_addr: IpAddr,
    pub end_addr: IpAddr,
}

impl TrafficSelector {
    /// All protocols and ports between two addresses of one family.
    pub fn range(start_addr: IpAddr, end_addr: IpAddr) -> Self {
        TrafficSelector {
            ip_protocol: 0,
            start_port: 0,
            end_port: 0xffff,
            start_addr,
            end_addr,
        }
    }

    pub fn ts_type(&self) -> TsType {
        match self.start_addr {
            IpAddr::V4(_) => TsType::IPV4_ADDR_RANGE,
            IpAddr::V6(_) => TsType::IPV6_ADDR_RANGE,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TrafficSelectors(pub Vec<TrafficSelector>);

impl TrafficSelectors {
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body, "TS payload");
        let n = r.u8()?;
        let _reserved = r.take(3)?;
        let mut v = Vec::new();
        for _ in 0..n {
            let ts_type = TsType(r.u8()?);
            let ip_protocol = r.u8()?;
            let len = usize::from(r.u16()?);
            let start_port = r.u16()?;
            let end_port = r.u16()?;
            let (start_addr, end_addr) = match (ts_type, len) {
                (TsType::IPV4_ADDR_RANGE, 16) => (
                    IpAddr::V4(Ipv4Addr::from(r.array::<4>()?)),
                    IpAddr::V4(Ipv4Addr::from(r.array::<4>()?)),
                ),
                (TsType::IPV6_ADDR_RANGE, 40) => (
                    IpAddr::V6(Ipv6Addr::from(r.array::<16>()?)),
                    IpAddr::V6(Ipv6Addr::from(r.array::<16>()?)),
                ),
                (TsType::IPV4_ADDR_RANGE | TsType::IPV6_ADDR_RANGE, _) => {
                    return Err(ParseError::BadLength {
                        what: "traffic selector",
                        len,
                    })
                }
                _ => {
                    return Err(ParseError::BadValue {
                        what: "traffic selector type",
                        value: u32::from(ts_type.0),
                    })
                }
            };
            v.push(TrafficSelector {
                ip_protocol,
                start_port,
                end_port,
                start_addr,
                end_addr,
            });
        }
        if !r.is_empty() {
            return Err(ParseError::BadLength {
                what: "TS payload",
                len: body.len(),
            });
        }
        Ok(TrafficSelectors(v))
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.0.len() as u8, 0, 0, 0]);
        for ts in &self.0 {
            let len: u16 = match ts.start_addr {
                IpAddr::V4(_) => 16,
                IpAddr::V6(_) => 40,
            };
            out.push(ts.ts_type().0);
            out.push(ts.ip_protocol);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&ts.start_port.to_be_bytes());
            out.extend_from_slice(&ts.end_port.to_be_bytes());
            for a in [ts.start_addr, ts.end_addr] {
                // A mixed-family selector is a caller bug; the end is written
                // in the start's family so the length stays consistent.
                match (ts.start_addr, a) {
                    (IpAddr::V4(_), IpAddr::V4(a)) => out.extend_from_slice(&a.octets()),
                    (IpAddr::V6(_), IpAddr::V6(a)) => out.extend_from_slice(&a.octets()),
                    (IpAddr::V4(_), IpAddr::V6(_)) => out.extend_from_slice(&[0xff; 4]),
                    (IpAddr::V6(_), IpAddr::V4(a)) => {
                        out.extend_from_slice(&a.to_ipv6_mapped().octets())
                    }
                }
            }
        }
    }
}
