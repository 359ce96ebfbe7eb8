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

#[cfg(test)]
mod tests {
    use super::*;

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
