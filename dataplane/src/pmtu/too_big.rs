//! The ICMP error for an inner packet too big for its tunnel: IPv4
//! "destination unreachable, fragmentation needed and DF set" with the
//! next-hop MTU (RFC 792, RFC 1191 §4), IPv6 "packet too big" (RFC 4443
//! §3.2). It goes back to the inner source through the inside port.
//!
//! Its source is the inner packet's destination (the tunnel speaks for
//! it): the gateway's own inside address would be a martian to the kernel
//! the TUN hands it to ("source is local"), and is no better for a host
//! behind it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::packet::{Encap, Packet};
use crate::wire::checksum::{finish, sum};

/// Bytes of an IPv4 ICMP error at most (RFC 1812 §4.3.2.3: quote as much
/// as fits in 576).
const V4_MAX: usize = 576;
/// IPv6 ICMP errors fit the minimum MTU (RFC 4443 §2.4(c)).
const V6_MAX: usize = 1280;
const TTL: u8 = 64;

/// Writes into `out` the ICMP error telling the source of `inner` that at
/// most `mtu` bytes fit, and marks it an inner packet. Returns false (and
/// leaves `out` unspecified) when `inner` must not be answered: not IP, an
/// ICMP error itself (RFC 1122 §3.2.2, RFC 4443 §2.4(e)), a later
/// fragment, or from an address nobody can answer.
pub fn write_too_big(inner: &[u8], mtu: u16, out: &mut Packet) -> bool {
    let ok = match inner.first().map(|b| b >> 4) {
        Some(4) => write_v4(inner, mtu, out),
        Some(6) => write_v6(inner, mtu, out),
        _ => None,
    };
    if ok.is_some() {
        out.meta.encap = Encap::Inner;
    }
    ok.is_some()
}

fn write_v4(inner: &[u8], mtu: u16, out: &mut Packet) -> Option<()> {
    let ihl = usize::from(inner.first()? & 0x0f) * 4;
    let frag = u16::from_be_bytes([*inner.get(6)?, *inner.get(7)?]) & 0x1fff;
    let proto = *inner.get(9)?;
    let src = Ipv4Addr::from(<[u8; 4]>::try_from(inner.get(12..16)?).ok()?);
    let dst = Ipv4Addr::from(<[u8; 4]>::try_from(inner.get(16..20)?).ok()?);
    if ihl < 20 || frag != 0 || !answerable(IpAddr::V4(src)) {
        return None;
    }
    if proto == 1 && !matches!(inner.get(ihl), Some(0 | 8)) {
        return None; // an ICMP error (only echo and echo reply get answers)
    }
    let quote = &inner[..inner.len().min(V4_MAX - 28)];
    let total = 28 + quote.len();
    out.reset();
    out.set_data(&[0u8; 28]).ok()?;
    out.push_back(quote.len()).ok()?.copy_from_slice(quote);
    let d = out.data_mut();
    d[0] = 0x45;
    d[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    d[8] = TTL;
    d[9] = 1;
    d[12..16].copy_from_slice(&dst.octets());
    d[16..20].copy_from_slice(&src.octets());
    let c = finish(sum(&d[..20]));
    d[10..12].copy_from_slice(&c.to_be_bytes());
    d[20] = 3; // destination unreachable
    d[21] = 4; // fragmentation needed and DF set
    d[26..28].copy_from_slice(&mtu.to_be_bytes());
    let c = finish(sum(&d[20..]));
    d[22..24].copy_from_slice(&c.to_be_bytes());
    Some(())
}

fn write_v6(inner: &[u8], mtu: u16, out: &mut Packet) -> Option<()> {
    let next = *inner.get(6)?;
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(inner.get(8..24)?).ok()?);
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(inner.get(24..40)?).ok()?);
    if !answerable(IpAddr::V6(src)) {
        return None;
    }
    if next == 58 && inner.get(40).is_some_and(|t| *t < 128) {
        return None; // an ICMPv6 error
    }
    // RFC 8200 §5: every link carries 1280; never ask for less.
    let mtu = u32::from(mtu.max(1280));
    let quote = &inner[..inner.len().min(V6_MAX - 48)];
    let icmp_len = 8 + quote.len();
    out.reset();
    out.set_data(&[0u8; 48]).ok()?;
    out.push_back(quote.len()).ok()?.copy_from_slice(quote);
    let d = out.data_mut();
    d[0] = 0x60;
    d[4..6].copy_from_slice(&(icmp_len as u16).to_be_bytes());
    d[6] = 58;
    d[7] = TTL;
    d[8..24].copy_from_slice(&dst.octets());
    d[24..40].copy_from_slice(&src.octets());
    d[40] = 2; // packet too big
    d[44..48].copy_from_slice(&mtu.to_be_bytes());
    // Pseudo-header (RFC 8200 §8.1): addresses, length, next header.
    let pseudo = sum(&d[8..40]) + icmp_len as u32 + 58;
    let c = finish(pseudo + sum(&d[40..]));
    d[42..44].copy_from_slice(&c.to_be_bytes());
    Some(())
}

/// Not from an address an error cannot go back to.
fn answerable(src: IpAddr) -> bool {
    match src {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big_v4(len: usize, proto: u8) -> Vec<u8> {
        let mut p = vec![0xabu8; len];
        p[0] = 0x45;
        p[1] = 0;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[6] = 0x40;
        p[7] = 0;
        p[8] = 63;
        p[9] = proto;
        p[12..16].copy_from_slice(&[10, 1, 0, 7]);
        p[16..20].copy_from_slice(&[10, 3, 0, 1]);
        p[20] = 8; // echo request when ICMP
        p
    }

    #[test]
    fn ipv4_fragmentation_needed_carries_the_mtu_and_the_header() {
        let inner = big_v4(1500, 17);
        let mut out = Packet::new();
        assert!(write_too_big(&inner, 1438, &mut out));
        let d = out.data();
        assert_eq!(d.len(), 576);
        assert_eq!(out.meta.encap, Encap::Inner);
        assert_eq!(&d[12..16], &[10, 3, 0, 1], "from the inner destination");
        assert_eq!(&d[16..20], &[10, 1, 0, 7], "to the inner source");
        assert_eq!(finish(sum(&d[..20])), 0, "IP checksum");
        assert_eq!((d[20], d[21]), (3, 4));
        assert_eq!(u16::from_be_bytes([d[26], d[27]]), 1438);
        assert_eq!(finish(sum(&d[20..])), 0, "ICMP checksum");
        assert_eq!(&d[28..48], &inner[..20], "quotes the original header");
    }

    #[test]
    fn ipv6_packet_too_big_has_a_valid_checksum() {
        let mut inner = vec![0u8; 1500];
        inner[0] = 0x60;
        inner[6] = 17;
        inner[8] = 0xfd;
        inner[23] = 7;
        inner[24] = 0xfd;
        inner[39] = 1;
        let mut out = Packet::new();
        assert!(write_too_big(&inner, 1418, &mut out));
        let d = out.data();
        assert_eq!(d.len(), 1280);
        assert_eq!((d[6], d[40], d[41]), (58, 2, 0));
        assert_eq!(u32::from_be_bytes([d[44], d[45], d[46], d[47]]), 1418);
        assert_eq!(&d[24..40], &inner[8..24], "to the inner source");
        let icmp_len = (d.len() - 40) as u32;
        assert_eq!(finish(sum(&d[8..40]) + icmp_len + 58 + sum(&d[40..])), 0);
        // Never below the IPv6 minimum MTU.
        assert!(write_too_big(&inner, 1000, &mut out));
        assert_eq!(
            u32::from_be_bytes(out.data()[44..48].try_into().unwrap()),
            1280
        );
    }

    #[test]
    fn errors_fragments_and_junk_get_no_answer() {
        let mut out = Packet::new();
        let mut icmp_error = big_v4(1500, 1);
        icmp_error[20] = 3;
        assert!(!write_too_big(&icmp_error, 1400, &mut out));
        assert!(
            write_too_big(&big_v4(1500, 1), 1400, &mut out),
            "echo is answered"
        );
        let mut later = big_v4(1500, 17);
        later[7] = 0x10;
        assert!(!write_too_big(&later, 1400, &mut out));
        let mut multicast = big_v4(1500, 17);
        multicast[12] = 224;
        assert!(!write_too_big(&multicast, 1400, &mut out));
        let base = big_v4(64, 17);
        for n in 0..base.len() {
            let _ = write_too_big(&base[..n], 1400, &mut out);
        }
        assert!(!write_too_big(&[0x12, 0x34], 1400, &mut out));
    }
}
