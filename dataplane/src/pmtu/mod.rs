//! Inner packets against the tunnel's path MTU: what fits in one outer
//! packet once ESP is added, ICMP "fragmentation needed" / "packet too
//! big" for what does not and may not be fragmented (RFC 1191 §4, RFC
//! 4443 §3.2; RFC 4301 §8.2 has the gateway send them), inner IPv4
//! fragmentation for what may, and TCP MSS clamping so that TCP never gets
//! there (the `TCPMSS --clamp-mss-to-pmtu` of a Linux IPsec gateway).
//!
//! All of it is sans-IO over byte slices; the worker calls it per packet.

pub mod fragment;
pub mod mss;
pub mod rate;
pub mod too_big;

use crate::esp::{FRONT_OVERHEAD, ICV_LEN};
use crate::packet::Encap;

pub use fragment::fragment_v4;
pub use mss::clamp_mss;
pub use rate::TokenBucket;
pub use too_big::write_too_big;

/// How a worker treats inner packets entering tunnels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmtuConfig {
    /// Largest outer IP packet the outside path carries.
    pub outer_mtu: u16,
    /// Lower the MSS of TCP SYNs crossing a tunnel to what fits.
    pub mss_clamp: bool,
    /// ICMP errors a worker may send per second, and in a burst
    /// (RFC 1812 §4.3.2.8, RFC 4443 §2.4(f): rate-limit them).
    pub icmp_per_sec: u32,
    pub icmp_burst: u32,
}

impl Default for PmtuConfig {
    fn default() -> Self {
        PmtuConfig {
            outer_mtu: 1500,
            mss_clamp: true,
            icmp_per_sec: 100,
            icmp_burst: 10,
        }
    }
}

/// The largest inner packet that, sealed with ESP (RFC 4303: header, IV,
/// padding to 4 bytes, pad length and next header, ICV) in `encap` over an
/// IPv4 or IPv6 outer header, is at most `outer_mtu` bytes.
pub fn max_inner(outer_mtu: usize, encap: Encap, outer_v6: bool) -> usize {
    let ip = if outer_v6 { 40 } else { 20 };
    let udp = if encap == Encap::EspInUdp { 8 } else { 0 };
    let room = outer_mtu.saturating_sub(ip + udp + FRONT_OVERHEAD + ICV_LEN);
    // The encrypted part (inner + pad + 2) is a multiple of 4.
    (room & !3).saturating_sub(2)
}

/// The MSS a TCP segment of an IPv4 (or IPv6) inner packet of at most
/// `max_inner` bytes can carry (no IP or TCP options assumed).
pub fn mss_for(max_inner: usize, v6: bool) -> u16 {
    let headers = if v6 { 60 } else { 40 };
    u16::try_from(max_inner.saturating_sub(headers)).unwrap_or(u16::MAX)
}

/// Whether the inner packet `ip` must not be fragmented on its way: IPv4
/// with DF set, or any IPv6 packet (only sources fragment, RFC 8200 §5).
pub fn must_not_fragment(ip: &[u8]) -> bool {
    match ip.first().map(|b| b >> 4) {
        Some(4) => ip.get(6).is_some_and(|f| f & 0x40 != 0),
        Some(6) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_inner_on_a_1500_byte_path() {
        // 20 + 8 + 8 + 8 + 1440 + 16 = 1500, and 1440 = 1438 + 2 (no pad).
        assert_eq!(max_inner(1500, Encap::EspInUdp, false), 1438);
        assert_eq!(max_inner(1500, Encap::RawEsp, false), 1446);
        assert_eq!(max_inner(1500, Encap::EspInUdp, true), 1418);
        // 1401: room 1401 - 60 = 1341, 1340 - 2.
        assert_eq!(max_inner(1401, Encap::EspInUdp, false), 1338);
        assert_eq!(max_inner(40, Encap::EspInUdp, false), 0);
        assert_eq!(mss_for(1438, false), 1398);
        assert_eq!(mss_for(1418, true), 1358);
    }

    #[test]
    fn sealed_size_of_max_inner_is_the_mtu() {
        for mtu in 576..1600usize {
            let inner = max_inner(mtu, Encap::EspInUdp, false);
            let sealed = |n: usize| 20 + 8 + 8 + 8 + (n + 2).div_ceil(4) * 4 + 16;
            assert!(sealed(inner) <= mtu, "{mtu}");
            assert!(sealed(inner + 1) > mtu || sealed(inner + 3) > mtu, "{mtu}");
        }
    }

    #[test]
    fn df_and_ipv6_must_not_be_fragmented() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        assert!(!must_not_fragment(&v4));
        v4[6] = 0x40;
        assert!(must_not_fragment(&v4));
        assert!(must_not_fragment(&[0x60; 40]));
        assert!(!must_not_fragment(&[]));
        assert!(!must_not_fragment(&[0x45]));
    }
}
