//! The outer IPv4 (RFC 791) and UDP (RFC 768) headers of outside packets.

use std::net::Ipv4Addr;

/// Bytes of an IPv4 header without options (what we emit).
pub const IPV4_HEADER_LEN: usize = 20;
/// Bytes of a UDP header.
pub const UDP_HEADER_LEN: usize = 8;

/// IP protocol numbers the outside port knows.
pub mod protocol {
    pub const ICMP: u8 = 1;
    pub const UDP: u8 = 17;
    pub const ESP: u8 = 50;
}

/// The Internet checksum (RFC 1071): ones' complement of the ones'
/// complement sum of 16-bit words.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Why an IPv4 header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipv4Error {
    /// Too short, wrong version, IHL < 5, lengths inconsistent.
    Malformed,
    /// The header checksum does not verify.
    BadChecksum,
    /// A fragment: we do not reassemble outer packets.
    Fragment,
}

/// The fields of a received IPv4 header the outside port needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Header {
    /// IHL * 4.
    pub header_len: usize,
    /// Header plus payload; bytes past it (Ethernet padding) are not packet.
    pub total_len: usize,
    pub protocol: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

impl Ipv4Header {
    /// Parses and checks the header at the front of `b`.
    pub fn parse(b: &[u8]) -> Result<Ipv4Header, Ipv4Error> {
        let fixed = b.get(..IPV4_HEADER_LEN).ok_or(Ipv4Error::Malformed)?;
        if fixed[0] >> 4 != 4 {
            return Err(Ipv4Error::Malformed);
        }
        let header_len = usize::from(fixed[0] & 0x0f) * 4;
        let total_len = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
        if header_len < IPV4_HEADER_LEN || total_len < header_len || total_len > b.len() {
            return Err(Ipv4Error::Malformed);
        }
        let header = b.get(..header_len).ok_or(Ipv4Error::Malformed)?;
        if checksum(header) != 0 {
            return Err(Ipv4Error::BadChecksum);
        }
        // RFC 791 §3.1: MF flag or a non-zero fragment offset.
        let frag = u16::from_be_bytes([fixed[6], fixed[7]]);
        if frag & 0x3fff != 0 {
            return Err(Ipv4Error::Fragment);
        }
        Ok(Ipv4Header {
            header_len,
            total_len,
            protocol: fixed[9],
            src: Ipv4Addr::new(fixed[12], fixed[13], fixed[14], fixed[15]),
            dst: Ipv4Addr::new(fixed[16], fixed[17], fixed[18], fixed[19]),
        })
    }
}

/// Writes a 20-byte IPv4 header for `payload_len` bytes of `protocol` into
/// the front of `out`, checksum included. DF is clear so that a path with a
/// smaller MTU fragments rather than black-holes the tunnel.
pub fn emit_ipv4(
    out: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    payload_len: usize,
    ident: u16,
    ttl: u8,
) -> Option<()> {
    let total = u16::try_from(IPV4_HEADER_LEN + payload_len).ok()?;
    let h = out.get_mut(..IPV4_HEADER_LEN)?;
    h[0] = 0x45;
    h[1] = 0;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[4..6].copy_from_slice(&ident.to_be_bytes());
    h[6..8].copy_from_slice(&[0, 0]);
    h[8] = ttl;
    h[9] = protocol;
    h[10..12].copy_from_slice(&[0, 0]);
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let c = checksum(h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    Some(())
}

/// The fields of a UDP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpHeader {
    pub src_port: u16,
    pub dst_port: u16,
    /// Header plus payload.
    pub len: usize,
}

impl UdpHeader {
    /// Parses the header at the front of the IP payload `b`. The checksum
    /// is not verified: ESP is authenticated end to end and RFC 3948 §3.1.2
    /// lets the receiver skip it; IKE messages carry their own integrity.
    pub fn parse(b: &[u8]) -> Option<UdpHeader> {
        let h = b.get(..UDP_HEADER_LEN)?;
        let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
        if len < UDP_HEADER_LEN || len > b.len() {
            return None;
        }
        Some(UdpHeader {
            src_port: u16::from_be_bytes([h[0], h[1]]),
            dst_port: u16::from_be_bytes([h[2], h[3]]),
            len,
        })
    }

    /// Writes the header into the front of `out` with a zero checksum, which
    /// RFC 3948 §2.1 asks for ESP-in-UDP over IPv4 (RFC 768 allows it).
    pub fn emit(&self, out: &mut [u8]) -> Option<()> {
        let len = u16::try_from(self.len).ok()?;
        let h = out.get_mut(..UDP_HEADER_LEN)?;
        h[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        h[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        h[4..6].copy_from_slice(&len.to_be_bytes());
        h[6..8].copy_from_slice(&[0, 0]);
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The IPv4/UDP headers Linux sends for `nc -u 192.0.2.1 4500` (DF set).
    const CAPTURED: [u8; 28] = [
        0x45, 0x00, 0x00, 0x20, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x11, 0x9a, 0x83, 192, 0, 2, 2, 192,
        0, 2, 1, 0x11, 0x94, 0x11, 0x94, 0x00, 0x0c, 0x00, 0x00,
    ];

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 §3: 0001 f203 f4f5 f6f7 sums to ddf2, checksum 220d.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
        assert_eq!(checksum(&[0xff]), 0x00ff, "odd length pads with zero");
    }

    #[test]
    fn parses_a_datagram_and_re_emits_headers_byte_for_byte() {
        let mut pkt = CAPTURED.to_vec();
        pkt.extend_from_slice(b"ping");
        let ip = Ipv4Header::parse(&pkt).unwrap();
        assert_eq!(ip.protocol, protocol::UDP);
        assert_eq!((ip.header_len, ip.total_len), (20, 32));
        assert_eq!(ip.src, Ipv4Addr::new(192, 0, 2, 2));
        let udp = UdpHeader::parse(&pkt[20..]).unwrap();
        assert_eq!((udp.src_port, udp.dst_port, udp.len), (4500, 4500, 12));

        let mut out = [0u8; 28];
        emit_ipv4(&mut out, ip.src, ip.dst, protocol::UDP, 12, 0x1c46, 64).unwrap();
        // We leave DF clear where Linux set it; everything else matches.
        assert_eq!(&out[..6], &CAPTURED[..6]);
        assert_eq!(&out[8..10], &CAPTURED[8..10]);
        assert_eq!(&out[12..20], &CAPTURED[12..20]);
        assert_eq!(checksum(&out[..20]), 0);
        udp.emit(&mut out[20..]).unwrap();
        assert_eq!(&out[20..], &CAPTURED[20..]);
    }

    #[test]
    fn refuses_bad_headers() {
        let mut good = [0u8; 32];
        good[..28].copy_from_slice(&CAPTURED);
        good[28..].copy_from_slice(b"ping");
        let mut bad_sum = good;
        bad_sum[10] ^= 1;
        assert_eq!(Ipv4Header::parse(&bad_sum), Err(Ipv4Error::BadChecksum));
        assert_eq!(Ipv4Header::parse(&good[..19]), Err(Ipv4Error::Malformed));
        let mut v6 = good;
        v6[0] = 0x65;
        assert_eq!(Ipv4Header::parse(&v6), Err(Ipv4Error::Malformed));
        let mut long = good;
        long[3] = 0x40; // total length 64 > 28 bytes present
        assert_eq!(Ipv4Header::parse(&long), Err(Ipv4Error::Malformed));
        // A first fragment (MF set): fix the checksum so only MF is wrong.
        let mut frag = good;
        frag[6] = 0x20;
        frag[10..12].copy_from_slice(&[0, 0]);
        let c = checksum(&frag[..20]);
        frag[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(Ipv4Header::parse(&frag), Err(Ipv4Error::Fragment));
        assert!(UdpHeader::parse(&good[20..27]).is_none());
        let mut udp_long = good;
        udp_long[25] = 0x40;
        assert!(UdpHeader::parse(&udp_long[20..]).is_none());
    }
}
