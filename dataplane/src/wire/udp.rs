//! UDP header view (RFC 768) with checksums over the IPv4 and IPv6
//! pseudo-headers.

use std::net::IpAddr;

use super::checksum;
use super::WireError;

mod field {
    use std::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// A view whose accessors cannot panic: the length field at least 8 and
    /// within the buffer.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> Result<(), WireError> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let len = self.len() as usize;
        if len < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if b.len() < len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::SRC_PORT];
        u16::from_be_bytes([b[0], b[1]])
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::DST_PORT];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The length field: header plus payload.
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::LENGTH];
        u16::from_be_bytes([b[0], b[1]])
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::CHECKSUM];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.len() as usize]
    }

    /// Whether the checksum is right for these addresses. A zero checksum
    /// means "none" and is accepted over IPv4 only (RFC 768, RFC 8200 8.1).
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        if self.checksum() == 0 {
            return src.is_ipv4();
        }
        let len = self.len();
        let data = &self.buffer.as_ref()[..len as usize];
        checksum::finish(pseudo_header_sum(src, dst, len) + checksum::sum(data)) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = self.len() as usize;
        &mut self.buffer.as_mut()[HEADER_LEN..len]
    }

    /// Computes and stores the checksum (0 becomes 0xffff, RFC 768).
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) {
        let len = self.len();
        let b = self.buffer.as_mut();
        b[field::CHECKSUM].copy_from_slice(&[0, 0]);
        let c =
            checksum::finish(pseudo_header_sum(src, dst, len) + checksum::sum(&b[..len as usize]));
        let c = if c == 0 { 0xffff } else { c };
        b[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }
}

fn pseudo_header_sum(src: IpAddr, dst: IpAddr, len: u16) -> u32 {
    let mut acc = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => checksum::sum(&s.octets()) + checksum::sum(&d.octets()),
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                IpAddr::V6(a) => a.octets(),
            };
            checksum::sum(&v6(s)) + checksum::sum(&v6(d))
        }
    };
    acc += 17 + len as u32;
    acc
}

/// The meaning of a UDP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload_len: usize,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr, WireError> {
        Ok(Repr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            payload_len: p.len() as usize - HEADER_LEN,
        })
    }

    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the header; the checksum is filled when `addrs` is given
    /// (the payload must already be in place), else left 0 (IPv4 only).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        p: &mut Packet<T>,
        addrs: Option<(IpAddr, IpAddr)>,
    ) -> Result<(), WireError> {
        let len = u16::try_from(self.buffer_len()).map_err(|_| WireError::Malformed)?;
        let b = p.buffer.as_mut();
        if b.len() < self.buffer_len() {
            return Err(WireError::Truncated);
        }
        b[field::SRC_PORT].copy_from_slice(&self.src_port.to_be_bytes());
        b[field::DST_PORT].copy_from_slice(&self.dst_port.to_be_bytes());
        b[field::LENGTH].copy_from_slice(&len.to_be_bytes());
        b[field::CHECKSUM].copy_from_slice(&[0, 0]);
        if let Some((s, d)) = addrs {
            p.fill_checksum(s, d);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4;

    const CAPTURED: &[u8] = include_bytes!("../../tests/fixtures/esp_in_udp.bin");

    #[test]
    fn captured_esp_in_udp_decodes_and_checksums_like_scapy() {
        let ip = ipv4::Packet::new_checked(CAPTURED).unwrap();
        let (s, d) = (ip.src_addr().into(), ip.dst_addr().into());
        let udp = Packet::new_checked(ip.payload()).unwrap();
        assert_eq!((udp.src_port(), udp.dst_port()), (4500, 4500));
        // The capture was taken on a veth with checksum offload: the field
        // holds only the partial pseudo-header sum, which must not verify.
        assert_eq!(udp.checksum(), 0x8495);
        assert!(!udp.verify_checksum(s, d));
        let r = Repr::parse(&udp).unwrap();
        assert_eq!(r.payload_len, udp.payload().len());
        let mut out = ip.payload().to_vec();
        out[..8].fill(0);
        r.emit(&mut Packet::new_unchecked(&mut out[..]), Some((s, d)))
            .unwrap();
        let fixed = Packet::new_checked(&out[..]).unwrap();
        // scapy 2.8 computes 0x3433 for this datagram.
        assert_eq!(fixed.checksum(), 0x3433);
        assert!(fixed.verify_checksum(s, d));
        assert_eq!(&out[..6], &ip.payload()[..6]);
        assert_eq!(&out[8..], &ip.payload()[8..]);
    }

    #[test]
    fn ipv6_checksum_matches_scapy() {
        let v6 = crate::wire::ipv6::tests_support::SCAPY_V6_UDP;
        let ip = crate::wire::ipv6::Packet::new_checked(&v6[..]).unwrap();
        let (s, d) = (ip.src_addr().into(), ip.dst_addr().into());
        let udp = Packet::new_checked(ip.payload()).unwrap();
        assert!(udp.verify_checksum(s, d));
        assert_eq!(udp.payload(), b"esprit");
        let mut copy = ip.payload().to_vec();
        let mut p = Packet::new_unchecked(&mut copy[..]);
        p.fill_checksum(s, d);
        assert_eq!(p.checksum(), udp.checksum());
        // A zero checksum is no checksum on IPv4 only.
        copy[6..8].fill(0);
        assert!(!Packet::new_checked(&copy[..])
            .unwrap()
            .verify_checksum(s, d));
    }

    #[test]
    fn refuses_bad_lengths() {
        assert_eq!(
            Packet::new_checked(&[0u8; 7][..]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            Packet::new_checked(&[0, 1, 0, 2, 0, 4, 0, 0][..]).unwrap_err(),
            WireError::Malformed
        );
        assert_eq!(
            Packet::new_checked(&[0, 1, 0, 2, 0, 9, 0, 0][..]).unwrap_err(),
            WireError::Truncated
        );
    }
}
