//! Security Association payload: proposals, transforms, attributes (RFC 7296 §3.3).

use super::reader::Reader;
use super::types::transform_id::ATTR_KEY_LENGTH;
use super::{ParseError, ProtocolId, TransformType};

/// A transform attribute (§3.3.5): TV when the AF bit is set, else TLV.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttributeValue {
    Short(u16),
    Long(Vec<u8>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransformAttribute {
    /// Attribute type without the AF bit.
    pub attr_type: u16,
    pub value: AttributeValue,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transform {
    pub transform_type: TransformType,
    pub id: u16,
    pub attributes: Vec<TransformAttribute>,
}

impl Transform {
    pub fn new(transform_type: TransformType, id: u16) -> Self {
        Transform {
            transform_type,
            id,
            attributes: Vec::new(),
        }
    }

    pub fn with_key_length(transform_type: TransformType, id: u16, bits: u16) -> Self {
        Transform {
            transform_type,
            id,
            attributes: vec![TransformAttribute {
                attr_type: ATTR_KEY_LENGTH,
                value: AttributeValue::Short(bits),
            }],
        }
    }

    /// The Key Length attribute in bits, if present.
    pub fn key_length(&self) -> Option<u16> {
        self.attributes.iter().find_map(|a| match a.value {
            AttributeValue::Short(v) if a.attr_type == ATTR_KEY_LENGTH => Some(v),
            _ => None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    pub number: u8,
    pub protocol: ProtocolId,
    pub spi: Vec<u8>,
    pub transforms: Vec<Transform>,
}

impl Proposal {
    /// Transforms of one type, in the order offered.
    pub fn transforms_of(&self, t: TransformType) -> impl Iterator<Item = &Transform> {
        self.transforms
            .iter()
            .filter(move |x| x.transform_type == t)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SecurityAssociation {
    pub proposals: Vec<Proposal>,
}

const AF_BIT: u16 = 0x8000;

impl SecurityAssociation {
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body, "SA payload");
        let mut proposals = Vec::new();
        while !r.is_empty() {
            let mut h = Reader::new(r.take(4)?, "proposal header");
            let _last_or_more = h.u8()?;
            let _reserved = h.u8()?;
            let len = usize::from(h.u16()?);
            if len < 8 {
                return Err(ParseError::BadLength {
                    what: "proposal",
                    len,
                });
            }
            let mut p = Reader::new(r.take(len - 4)?, "proposal");
            proposals.push(Self::parse_proposal(&mut p)?);
        }
        Ok(SecurityAssociation { proposals })
    }

    fn parse_proposal(p: &mut Reader<'_>) -> Result<Proposal, ParseError> {
        let number = p.u8()?;
        let protocol = ProtocolId(p.u8()?);
        let spi_size = usize::from(p.u8()?);
        let num_transforms = p.u8()?;
        let spi = p.take(spi_size)?.to_vec();
        let mut transforms = Vec::new();
        while !p.is_empty() {
            let mut h = Reader::new(p.take(4)?, "transform header");
            let _last_or_more = h.u8()?;
            let _reserved = h.u8()?;
            let len = usize::from(h.u16()?);
            if len < 8 {
                return Err(ParseError::BadLength {
                    what: "transform",
                    len,
                });
            }
            let mut t = Reader::new(p.take(len - 4)?, "transform");
            let transform_type = TransformType(t.u8()?);
            let _reserved = t.u8()?;
            let id = t.u16()?;
            let mut attributes = Vec::new();
            while !t.is_empty() {
                let ty = t.u16()?;
                let value = if ty & AF_BIT != 0 {
                    AttributeValue::Short(t.u16()?)
                } else {
                    let n = usize::from(t.u16()?);
                    AttributeValue::Long(t.take(n)?.to_vec())
                };
                attributes.push(TransformAttribute {
                    attr_type: ty & !AF_BIT,
                    value,
                });
            }
            transforms.push(Transform {
                transform_type,
                id,
                attributes,
            });
        }
        if transforms.len() != usize::from(num_transforms) {
            return Err(ParseError::BadValue {
                what: "proposal transform count",
                value: u32::from(num_transforms),
            });
        }
        Ok(Proposal {
            number,
            protocol,
            spi,
            transforms,
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        let n = self.proposals.len();
        for (i, p) in self.proposals.iter().enumerate() {
            let start = out.len();
            out.extend_from_slice(&[if i + 1 == n { 0 } else { 2 }, 0, 0, 0]);
            out.push(p.number);
            out.push(p.protocol.0);
            out.push(p.spi.len() as u8);
            out.push(p.transforms.len() as u8);
            out.extend_from_slice(&p.spi);
            let m = p.transforms.len();
            for (j, t) in p.transforms.iter().enumerate() {
                let tstart = out.len();
                out.extend_from_slice(&[if j + 1 == m { 0 } else { 3 }, 0, 0, 0]);
                out.push(t.transform_type.0);
                out.push(0);
                out.extend_from_slice(&t.id.to_be_bytes());
                for a in &t.attributes {
                    match &a.value {
                        AttributeValue::Short(v) => {
                            out.extend_from_slice(&(a.attr_type | AF_BIT).to_be_bytes());
                            out.extend_from_slice(&v.to_be_bytes());
                        }
                        AttributeValue::Long(v) => {
                            out.extend_from_slice(&(a.attr_type & !AF_BIT).to_be_bytes());
                            out.extend_from_slice(&(v.len() as u16).to_be_bytes());
                            out.extend_from_slice(v);
                        }
                    }
                }
                put_len(out, tstart);
            }
            put_len(out, start);
        }
    }
}

/// Writes the length of the structure that starts at `start` and ends
/// `out` into its bytes 2..4.
pub(crate) fn put_len(out: &mut [u8], start: usize) {
    set_len(out, start, out.len() - start);
}

/// Writes `len` into bytes 2..4 of the structure (payload, proposal or
/// transform) that starts at `start`.
pub(crate) fn set_len(out: &mut [u8], start: usize, len: usize) {
    if let Some(b) = out.get_mut(start + 2..start + 4) {
        b.copy_from_slice(&(len as u16).to_be_bytes());
    }
}
