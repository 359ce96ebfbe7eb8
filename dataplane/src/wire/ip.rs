//! Helpers for inner packets, used per packet on the fast path.

use std::net::IpAddr;

use super::{ipv4, ipv6, WireError};

/// Source and destination of an IPv4 or IPv6 packet, with its lengths
/// checked.
#[inline]
pub fn ip_src_dst(buf: &[u8]) -> Result<(IpAddr, IpAddr), WireError> {
    match buf.first().map(|b| b >> 4) {
        Some(4) => {
            let p = ipv4::Packet::new_checked(buf)?;
            Ok((p.src_addr().into(), p.dst_addr().into()))
        }
        Some(6) => {
            let p = ipv6::Packet::new_checked(buf)?;
            Ok((p.src_addr().into(), p.dst_addr().into()))
        }
        None => Err(WireError::Truncated),
        Some(_) => Err(WireError::Malformed),
    }
}

/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// Which IPv4 fragments [`tcp_offset`] takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragments {
    /// Whole packets and first fragments: the TCP header, options and all,
    /// is in the first (MSS clamping).
    First,
    /// Whole packets only (the offloads cut and merge whole segments).
    None,
}

/// Where the TCP header of IP packet `ip` starts, if it is TCP (no IPv6
/// extension headers) and a fragment `take` accepts. Only the IP header is
/// checked; the caller checks the TCP header's own length.
#[inline]
pub fn tcp_offset(ip: &[u8], take: Fragments) -> Option<usize> {
    l4_offset(ip, PROTO_TCP, take)
}

/// Where the header of protocol `proto` starts in IP packet `ip`, as
/// [`tcp_offset`] for TCP.
#[inline]
pub fn l4_offset(ip: &[u8], proto: u8, take: Fragments) -> Option<usize> {
    match ip.first()? >> 4 {
        4 => {
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            // Fragment offset; with `None`, the more-fragments flag too.
            let mask = match take {
                Fragments::First => 0x1fff,
                Fragments::None => 0x3fff,
            };
            let frag = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]) & mask;
            (ihl >= 20 && frag == 0 && *ip.get(9)? == proto).then_some(ihl)
        }
        6 => (*ip.get(6)? == proto).then_some(40),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_offset_takes_the_fragments_it_is_told_to() {
        let mut v4 = [0u8; 40];
        v4[0] = 0x46; // a 24-byte header
        v4[9] = PROTO_TCP;
        assert_eq!(tcp_offset(&v4, Fragments::None), Some(24));
        v4[6] = 0x20; // more fragments: a first fragment
        assert_eq!(tcp_offset(&v4, Fragments::First), Some(24));
        assert_eq!(tcp_offset(&v4, Fragments::None), None);
        v4[7] = 1; // a later fragment: no TCP header in it
        assert_eq!(tcp_offset(&v4, Fragments::First), None);
        v4[9] = 17;
        v4[6..8].fill(0);
        assert_eq!(tcp_offset(&v4, Fragments::First), None, "UDP");
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[6] = PROTO_TCP;
        assert_eq!(tcp_offset(&v6, Fragments::None), Some(40));
        for short in [&[][..], &[0x45, 0, 0, 0][..], &[0x60][..], &[0x10; 20][..]] {
            assert_eq!(tcp_offset(short, Fragments::First), None);
        }
    }

    #[test]
    fn both_families_and_garbage() {
        let v4 = include_bytes!("../../tests/fixtures/esp_in_udp.bin");
        let (s, d) = ip_src_dst(v4).unwrap();
        assert_eq!(
            (s.to_string(), d.to_string()),
            ("192.0.2.1".into(), "192.0.2.2".into())
        );
        let v6 = crate::wire::ipv6::tests_support::SCAPY_V6_UDP;
        assert!(ip_src_dst(&v6).unwrap().0.is_ipv6());
        assert_eq!(ip_src_dst(&[]), Err(WireError::Truncated));
        assert_eq!(ip_src_dst(&[0x50; 40]), Err(WireError::Malformed));
        assert_eq!(
            ip_src_dst(&v4[..30]),
            Err(WireError::Truncated),
            "total length beyond the buffer"
        );
    }
}
