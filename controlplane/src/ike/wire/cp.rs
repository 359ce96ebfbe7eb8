//! Configuration payload (RFC 7296 §3.15): inner addresses and DNS servers.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::reader::Reader;
use super::{CfgAttrType, CfgType, ParseError};

/// One attribute; `value` is empty in a request that asks for any value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CfgAttribute {
    pub attr_type: CfgAttrType,
    pub value: Vec<u8>,
}

impl CfgAttribute {
    pub fn request(attr_type: CfgAttrType) -> Self {
        CfgAttribute {
            attr_type,
            value: Vec::new(),
        }
    }

    pub fn ip4(attr_type: CfgAttrType, a: Ipv4Addr) -> Self {
        CfgAttribute {
            attr_type,
            value: a.octets().to_vec(),
        }
    }

    /// An IPv6 address without a prefix length (INTERNAL_IP6_DNS).
    pub fn ip6(attr_type: CfgAttrType, a: Ipv6Addr) -> Self {
        CfgAttribute {
            attr_type,
            value: a.octets().to_vec(),
        }
    }

    /// INTERNAL_IP6_ADDRESS and _SUBNET carry a prefix length byte (§3.15.1).
    pub fn ip6_prefix(attr_type: CfgAttrType, a: Ipv6Addr, prefix: u8) -> Self {
        let mut value = a.octets().to_vec();
        value.push(prefix);
        CfgAttribute { attr_type, value }
    }

    pub fn as_ip4(&self) -> Option<Ipv4Addr> {
        <[u8; 4]>::try_from(self.value.as_slice())
            .ok()
            .map(Ipv4Addr::from)
    }

    /// IPv6 address with optional prefix byte (17 bytes) or without (16, DNS).
    pub fn as_ip6(&self) -> Option<(Ipv6Addr, Option<u8>)> {
        let a: [u8; 16] = self.value.get(..16)?.try_into().ok()?;
        match self.value.len() {
            16 => Some((Ipv6Addr::from(a), None)),
            17 => Some((Ipv6Addr::from(a), self.value.get(16).copied())),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Configuration {
    pub cfg_type: CfgType,
    pub attributes: Vec<CfgAttribute>,
}

impl Configuration {
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body, "CP payload");
        let cfg_type = CfgType(r.u8()?);
        let _reserved = r.take(3)?;
        let mut attributes = Vec::new();
        while !r.is_empty() {
            // The top bit is reserved (§3.15.1).
            let attr_type = CfgAttrType(r.u16()? & 0x7fff);
            let len = usize::from(r.u16()?);
            attributes.push(CfgAttribute {
                attr_type,
                value: r.take(len)?.to_vec(),
            });
        }
        Ok(Configuration {
            cfg_type,
            attributes,
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.cfg_type.0, 0, 0, 0]);
        for a in &self.attributes {
            out.extend_from_slice(&(a.attr_type.0 & 0x7fff).to_be_bytes());
            out.extend_from_slice(&(a.value.len() as u16).to_be_bytes());
            out.extend_from_slice(&a.value);
        }
    }

    pub fn get(&self, t: CfgAttrType) -> impl Iterator<Item = &CfgAttribute> {
        self.attributes.iter().filter(move |a| a.attr_type == t)
    }
}
