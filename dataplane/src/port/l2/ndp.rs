//! IPv6 neighbour discovery (RFC 4861 §4.3, §4.4, §7) for the outside
//! address, and ICMPv6 echo (RFC 4443 §4): the IPv6 counterparts of ARP and
//! ICMP echo. Messages are ICMPv6 bodies (after the IPv6 header).

use std::net::Ipv6Addr;

use super::ethernet::MacAddr;

pub const NEIGHBOR_SOLICIT: u8 = 135;
pub const NEIGHBOR_ADVERT: u8 = 136;
pub const ECHO_REQUEST: u8 = 128;
pub const ECHO_REPLY: u8 = 129;
/// Option types (RFC 4861 §4.6.1).
const OPT_SOURCE_LL: u8 = 1;
const OPT_TARGET_LL: u8 = 2;
/// NA flags: solicited, override (§4.4).
const NA_SOLICITED: u8 = 0x40;
const NA_OVERRIDE: u8 = 0x20;
/// Type, code, checksum, reserved/flags, target, one 8-byte MAC option.
pub const ND_LEN: usize = 32;

/// A neighbour solicitation or advertisement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NdMessage {
    pub kind: u8,
    pub target: Ipv6Addr,
    /// The link-layer address option (source for NS, target for NA).
    pub mac: Option<MacAddr>,
}

impl NdMessage {
    /// Parses an NS or NA body (checksum and hop limit are the caller's).
    pub fn parse(m: &[u8]) -> Option<NdMessage> {
        let kind = *m.first()?;
        if !(kind == NEIGHBOR_SOLICIT || kind == NEIGHBOR_ADVERT) || *m.get(1)? != 0 {
            return None;
        }
        let t: [u8; 16] = m.get(8..24)?.try_into().ok()?;
        let want = if kind == NEIGHBOR_SOLICIT {
            OPT_SOURCE_LL
        } else {
            OPT_TARGET_LL
        };
        // Options: (type, length in units of 8 bytes, data); a zero
        // length is invalid and ends the walk (§4.6).
        let mut mac = None;
        let mut at = 24;
        while let (Some(&ty), Some(&len)) = (m.get(at), m.get(at + 1)) {
            let bytes = usize::from(len) * 8;
            if bytes == 0 {
                return None;
            }
            if ty == want && len == 1 {
                mac = m.get(at + 2..at + 8).and_then(MacAddr::from_bytes);
            }
            at += bytes;
        }
        Some(NdMessage {
            kind,
            target: Ipv6Addr::from(t),
            mac,
        })
    }

    /// Writes the message (with its MAC option) into the first [`ND_LEN`]
    /// bytes of `out`, checksum zero: the caller fills it in.
    pub fn emit(&self, out: &mut [u8]) -> Option<()> {
        let b = out.get_mut(..ND_LEN)?;
        b.fill(0);
        b[0] = self.kind;
        if self.kind == NEIGHBOR_ADVERT {
            b[4] = NA_SOLICITED | NA_OVERRIDE;
        }
        b[8..24].copy_from_slice(&self.target.octets());
        b[24] = if self.kind == NEIGHBOR_SOLICIT {
            OPT_SOURCE_LL
        } else {
            OPT_TARGET_LL
        };
        b[25] = 1;
        b[26..32].copy_from_slice(&self.mac?.0);
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solicitation_round_trips_with_its_source_mac() {
        let ns = NdMessage {
            kind: NEIGHBOR_SOLICIT,
            target: "2001:db8::1".parse().unwrap(),
            mac: Some(MacAddr([2, 0, 0, 0, 0, 2])),
        };
        let mut b = [0u8; ND_LEN];
        ns.emit(&mut b).unwrap();
        assert_eq!(&b[24..26], &[1, 1]);
        assert_eq!(NdMessage::parse(&b), Some(ns));
        let na = NdMessage {
            kind: NEIGHBOR_ADVERT,
            ..ns
        };
        na.emit(&mut b).unwrap();
        assert_eq!(b[4], 0x60, "solicited + override");
        assert_eq!(NdMessage::parse(&b), Some(na));
    }

    #[test]
    fn refuses_zero_length_options_and_other_types() {
        let mut b = [0u8; ND_LEN];
        NdMessage {
            kind: NEIGHBOR_SOLICIT,
            target: Ipv6Addr::LOCALHOST,
            mac: Some(MacAddr::ZERO),
        }
        .emit(&mut b)
        .unwrap();
        b[25] = 0;
        assert!(NdMessage::parse(&b).is_none());
        b[25] = 1;
        b[0] = ECHO_REQUEST;
        assert!(NdMessage::parse(&b).is_none());
        assert!(NdMessage::parse(&b[..20]).is_none());
        // Without an option: no MAC, still a message (DAD probes).
        b[0] = NEIGHBOR_SOLICIT;
        assert_eq!(NdMessage::parse(&b[..24]).unwrap().mac, None);
    }
}
