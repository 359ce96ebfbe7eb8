//! ARP for IPv4 over Ethernet (RFC 826): the only hardware and protocol
//! types an outside port speaks.

use std::net::Ipv4Addr;

use super::ethernet::{ethertype, MacAddr};

/// Bytes of an Ethernet/IPv4 ARP packet.
pub const ARP_LEN: usize = 28;

/// `ar$op` values (RFC 826).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArpOp {
    Request = 1,
    Reply = 2,
}

/// An Ethernet/IPv4 ARP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpPacket {
    pub op: ArpOp,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

fn ip_at(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    let o: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(o))
}

impl ArpPacket {
    /// Parses an ARP packet (the Ethernet payload). `None` unless it is
    /// Ethernet (htype 1) / IPv4 with 6- and 4-byte addresses and a known op.
    pub fn parse(b: &[u8]) -> Option<ArpPacket> {
        let b = b.get(..ARP_LEN)?;
        let htype = u16::from_be_bytes([b[0], b[1]]);
        let ptype = u16::from_be_bytes([b[2], b[3]]);
        if htype != 1 || ptype != ethertype::IPV4 || b[4] != 6 || b[5] != 4 {
            return None;
        }
        let op = match u16::from_be_bytes([b[6], b[7]]) {
            1 => ArpOp::Request,
            2 => ArpOp::Reply,
            _ => return None,
        };
        Some(ArpPacket {
            op,
            sender_mac: MacAddr::from_bytes(b.get(8..14)?)?,
            sender_ip: ip_at(b, 14)?,
            target_mac: MacAddr::from_bytes(b.get(18..24)?)?,
            target_ip: ip_at(b, 24)?,
        })
    }

    /// Writes the packet into the first [`ARP_LEN`] bytes of `out`.
    pub fn emit(&self, out: &mut [u8]) -> Option<()> {
        let b = out.get_mut(..ARP_LEN)?;
        b[0..2].copy_from_slice(&1u16.to_be_bytes());
        b[2..4].copy_from_slice(&ethertype::IPV4.to_be_bytes());
        b[4] = 6;
        b[5] = 4;
        b[6..8].copy_from_slice(&(self.op as u16).to_be_bytes());
        b[8..14].copy_from_slice(&self.sender_mac.0);
        b[14..18].copy_from_slice(&self.sender_ip.octets());
        b[18..24].copy_from_slice(&self.target_mac.0);
        b[24..28].copy_from_slice(&self.target_ip.octets());
        Some(())
    }

    /// A request asking who has `target_ip` (target MAC zero, RFC 826).
    pub fn request(our_mac: MacAddr, our_ip: Ipv4Addr, target_ip: Ipv4Addr) -> ArpPacket {
        ArpPacket {
            op: ArpOp::Request,
            sender_mac: our_mac,
            sender_ip: our_ip,
            target_mac: MacAddr::ZERO,
            target_ip,
        }
    }

    /// The reply to this request from the owner of `target_ip`.
    pub fn reply_from(&self, our_mac: MacAddr) -> ArpPacket {
        ArpPacket {
            op: ArpOp::Reply,
            sender_mac: our_mac,
            sender_ip: self.target_ip,
            target_mac: self.sender_mac,
            target_ip: self.sender_ip,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "who-has 192.0.2.1 tell 192.0.2.2" as Linux sends it.
    const REQUEST: [u8; ARP_LEN] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x5e, 0x10, 0x00, 0x02, 192, 0,
        2, 2, 0, 0, 0, 0, 0, 0, 192, 0, 2, 1,
    ];

    #[test]
    fn parses_a_request_and_re_emits_it_byte_for_byte() {
        let a = ArpPacket::parse(&REQUEST).unwrap();
        assert_eq!(a.op, ArpOp::Request);
        assert_eq!(a.sender_ip, Ipv4Addr::new(192, 0, 2, 2));
        assert_eq!(a.target_ip, Ipv4Addr::new(192, 0, 2, 1));
        let mut out = [0u8; ARP_LEN];
        a.emit(&mut out).unwrap();
        assert_eq!(out, REQUEST);
    }

    #[test]
    fn reply_swaps_roles() {
        let a = ArpPacket::parse(&REQUEST).unwrap();
        let me = MacAddr([2, 0, 0, 0, 0, 1]);
        let r = a.reply_from(me);
        assert_eq!(r.op, ArpOp::Reply);
        assert_eq!((r.sender_mac, r.sender_ip), (me, a.target_ip));
        assert_eq!((r.target_mac, r.target_ip), (a.sender_mac, a.sender_ip));
    }

    #[test]
    fn rejects_other_hardware_protocols_ops_and_short_input() {
        for (i, v) in [(1usize, 6u8), (2, 0x86), (4, 8), (5, 16), (7, 3)] {
            let mut b = REQUEST;
            b[i] = v;
            assert!(ArpPacket::parse(&b).is_none(), "byte {i}");
        }
        assert!(ArpPacket::parse(&REQUEST[..27]).is_none());
    }
}
