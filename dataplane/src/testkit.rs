//! Inner packets for tests, the demo and the load generator.

use std::net::Ipv4Addr;

use crate::wire::{ipv4, udp};

/// Writes an IPv4/UDP packet (UDP checksum 0, allowed on IPv4) with
/// `payload` into `out`, returning its length, or `None` if it does not fit.
pub fn write_ipv4_udp(
    out: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ports: (u16, u16),
    payload: &[u8],
) -> Option<usize> {
    let udp_repr = udp::Repr {
        src_port: ports.0,
        dst_port: ports.1,
        payload_len: payload.len(),
    };
    let ip_repr = ipv4::Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: 17,
        payload_len: udp_repr.buffer_len(),
        hop_limit: 64,
        dscp_ecn: 0,
        ident: 0,
        dont_frag: true,
    };
    let total = ip_repr.buffer_len();
    let buf = out.get_mut(..total)?;
    ip_repr
        .emit(&mut ipv4::Packet::new_unchecked(&mut buf[..]))
        .ok()?;
    let l4 = &mut buf[ipv4::HEADER_LEN..];
    l4[udp::HEADER_LEN..].copy_from_slice(payload);
    udp_repr
        .emit(&mut udp::Packet::new_unchecked(l4), None)
        .ok()?;
    Some(total)
}

/// An IPv4/UDP packet as a vector.
pub fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, ports: (u16, u16), payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; ipv4::HEADER_LEN + udp::HEADER_LEN + payload.len()];
    let n = write_ipv4_udp(&mut v, src, dst, ports, payload).unwrap_or(0);
    v.truncate(n);
    v
}

/// The UDP payload of an IPv4/UDP packet.
pub fn ipv4_udp_payload(pkt: &[u8]) -> Option<&[u8]> {
    let ip = ipv4::Packet::new_checked(pkt).ok()?;
    let (hl, total) = (ip.header_len() as usize, ip.total_len() as usize);
    let l4 = pkt.get(hl..total)?;
    let n = udp::Packet::new_checked(l4).ok()?.len() as usize;
    l4.get(udp::HEADER_LEN..n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_valid_packet_and_reads_it_back() {
        let p = ipv4_udp(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            (1, 2),
            b"hi",
        );
        let ip = ipv4::Packet::new_checked(&p[..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ipv4_udp_payload(&p), Some(&b"hi"[..]));
        let mut small = [0u8; 20];
        assert_eq!(
            write_ipv4_udp(
                &mut small,
                Ipv4Addr::LOCALHOST,
                Ipv4Addr::LOCALHOST,
                (1, 2),
                b"x"
            ),
            None
        );
    }
}
