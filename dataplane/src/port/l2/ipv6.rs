//! The outer IPv6 header (RFC 8200) and the addresses neighbour discovery
//! uses (RFC 4291 §2.7.1 solicited-node, RFC 2464 §7 multicast MACs).

use std::net::Ipv6Addr;

use super::ethernet::MacAddr;

/// Bytes of the fixed IPv6 header.
pub const IPV6_HEADER_LEN: usize = 40;
/// ICMPv6's next-header value.
pub const ICMPV6: u8 = 58;

/// The fields of a received IPv6 header the outside port needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Header {
    pub payload_len: usize,
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
}

fn addr_at(b: &[u8], at: usize) -> Option<Ipv6Addr> {
    let o: [u8; 16] = b.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(o))
}

impl Ipv6Header {
    /// Parses the fixed header at the front of `b`; `None` if not version
    /// 6 or the payload runs past the bytes. Extension headers are the
    /// caller's to refuse (the next header says so).
    pub fn parse(b: &[u8]) -> Option<Ipv6Header> {
        let h = b.get(..IPV6_HEADER_LEN)?;
        if h[0] >> 4 != 6 {
            return None;
        }
        let payload_len = usize::from(u16::from_be_bytes([h[4], h[5]]));
        if IPV6_HEADER_LEN + payload_len > b.len() {
            return None;
        }
        Some(Ipv6Header {
            payload_len,
            next_header: h[6],
            hop_limit: h[7],
            src: addr_at(h, 8)?,
            dst: addr_at(h, 24)?,
        })
    }
}

/// Writes a fixed IPv6 header into the front of `out`.
pub fn emit_ipv6(
    out: &mut [u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: u8,
    payload_len: usize,
    hop_limit: u8,
) -> Option<()> {
    let len = u16::try_from(payload_len).ok()?;
    let h = out.get_mut(..IPV6_HEADER_LEN)?;
    h[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
    h[4..6].copy_from_slice(&len.to_be_bytes());
    h[6] = next_header;
    h[7] = hop_limit;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
    Some(())
}

/// The Internet checksum of `data` behind the IPv6 pseudo-header (RFC 8200
/// §8.1), for UDP and ICMPv6. A result of 0 over a message that carries its
/// checksum means it verifies.
pub fn pseudo_checksum(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut add = |b: &[u8]| {
        let mut words = b.chunks_exact(2);
        for w in &mut words {
            sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [last] = words.remainder() {
            sum += u64::from(*last) << 8;
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(data.len() as u32).to_be_bytes());
    add(&[0, 0, 0, next_header]);
    add(data);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// ff02::1:ffXX:XXXX, where a neighbour solicitation for `addr` is sent.
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// 33:33 and the low 32 bits of a multicast IPv6 address.
pub fn multicast_mac(group: Ipv6Addr) -> MacAddr {
    let o = group.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0x12, 0x3456);

    #[test]
    fn solicited_node_address_and_its_mac() {
        let g = solicited_node(A);
        assert_eq!(g, "ff02::1:ff12:3456".parse::<Ipv6Addr>().unwrap());
        assert_eq!(multicast_mac(g).to_string(), "33:33:ff:12:34:56");
    }

    #[test]
    fn header_round_trips_and_refuses_short_or_wrong_version() {
        let mut b = [0u8; 48];
        emit_ipv6(&mut b, A, Ipv6Addr::LOCALHOST, 17, 8, 64).unwrap();
        let h = Ipv6Header::parse(&b).unwrap();
        assert_eq!((h.payload_len, h.next_header, h.hop_limit), (8, 17, 64));
        assert_eq!((h.src, h.dst), (A, Ipv6Addr::LOCALHOST));
        assert!(
            Ipv6Header::parse(&b[..47]).is_none(),
            "payload past the end"
        );
        b[0] = 0x40;
        assert!(Ipv6Header::parse(&b).is_none());
    }

    #[test]
    fn checksum_verifies_over_a_message_that_carries_it() {
        let (s, d) = (A, Ipv6Addr::LOCALHOST);
        let mut msg = vec![128u8, 0, 0, 0, 0, 1, 0, 7, b'p', b'i', b'n', b'g', b'!'];
        let c = pseudo_checksum(s, d, ICMPV6, &msg);
        msg[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(pseudo_checksum(s, d, ICMPV6, &msg), 0);
        msg[9] ^= 1;
        assert_ne!(pseudo_checksum(s, d, ICMPV6, &msg), 0);
    }
}
