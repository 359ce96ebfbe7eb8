//! Inner packets for tests, the demo and the load generator.

use std::net::Ipv4Addr;

/// Writes an IPv4/UDP packet (UDP checksum 0, allowed on IPv4) with
/// `payload` into `out`, returning its length, or `None` if it does not fit.
pub fn write_ipv4_udp(
    out: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ports: (u16, u16),
    payload: &[u8],
) -> Option<usize> {
    let total = 20 + 8 + payload.len();
    if total > out.len() || total > u16::MAX as usize {
        return None;
    }
    let ip = &mut out[..20];
    ip.copy_from_slice(&[
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let sum = ipv4_checksum(ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let udp = &mut out[20..28];
    udp[..2].copy_from_slice(&ports.0.to_be_bytes());
    udp[2..4].copy_from_slice(&ports.1.to_be_bytes());
    udp[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    out[28..total].copy_from_slice(payload);
    Some(total)
}

/// An IPv4/UDP packet as a vector.
pub fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, ports: (u16, u16), payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; 28 + payload.len()];
    let n = write_ipv4_udp(&mut v, src, dst, ports, payload).unwrap_or(0);
    v.truncate(n);
    v
}

/// The payload of an IPv4/UDP packet written by [`write_ipv4_udp`].
pub fn ipv4_udp_payload(pkt: &[u8]) -> Option<&[u8]> {
    let ihl = (*pkt.first()? & 0x0f) as usize * 4;
    pkt.get(ihl + 8..)
}

/// The IPv4 header checksum (RFC 791) of `header`, with its checksum field
/// taken as zero.
pub fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for (i, pair) in header.chunks(2).enumerate() {
        if i == 5 {
            continue;
        }
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += word as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
