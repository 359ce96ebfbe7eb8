//! Ethernet II framing (IEEE 802.3 with an EtherType, RFC 894).

use std::fmt;

/// Bytes of an Ethernet II header: destination, source, EtherType.
pub const HEADER_LEN: usize = 14;

/// EtherTypes the outside port knows.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const IPV6: u16 = 0x86dd;
}

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    pub fn is_broadcast(&self) -> bool {
        *self == MacAddr::BROADCAST
    }

    /// Group addresses have the I/G bit (lowest bit of the first byte) set.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// Reads a MAC from the first six bytes of `b`.
    pub fn from_bytes(b: &[u8]) -> Option<MacAddr> {
        Some(MacAddr(b.get(..6)?.try_into().ok()?))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The parsed fields of an Ethernet II header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthernetHeader {
    pub dst: MacAddr,
    pub src: MacAddr,
    pub ethertype: u16,
}

impl EthernetHeader {
    /// Parses the header at the front of `frame`; `None` if too short.
    pub fn parse(frame: &[u8]) -> Option<EthernetHeader> {
        let h = frame.get(..HEADER_LEN)?;
        Some(EthernetHeader {
            dst: MacAddr::from_bytes(h.get(0..6)?)?,
            src: MacAddr::from_bytes(h.get(6..12)?)?,
            ethertype: u16::from_be_bytes([*h.get(12)?, *h.get(13)?]),
        })
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `out`;
    /// `None` if `out` is shorter.
    pub fn emit(&self, out: &mut [u8]) -> Option<()> {
        let h = out.get_mut(..HEADER_LEN)?;
        h[0..6].copy_from_slice(&self.dst.0);
        h[6..12].copy_from_slice(&self.src.0);
        h[12..14].copy_from_slice(&self.ethertype.to_be_bytes());
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_re_emits_a_captured_header() {
        // An ARP request from a Linux veth, as tcpdump -xx shows it.
        let raw = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x5e, 0x10, 0x00, 0x02, 0x08, 0x06,
        ];
        let h = EthernetHeader::parse(&raw).unwrap();
        assert!(h.dst.is_broadcast() && h.dst.is_multicast());
        assert_eq!(h.src.to_string(), "02:00:5e:10:00:02");
        assert_eq!(h.ethertype, ethertype::ARP);
        let mut out = [0u8; HEADER_LEN];
        h.emit(&mut out).unwrap();
        assert_eq!(out, raw);
        assert!(EthernetHeader::parse(&raw[..13]).is_none());
        assert!(h.emit(&mut [0u8; 13]).is_none());
    }
}
