//! Identification payloads IDi/IDr (RFC 7296 §3.5).

use super::reader::Reader;
use super::{IdType, ParseError};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identification {
    pub id_type: IdType,
    pub data: Vec<u8>,
}

impl Identification {
    pub fn fqdn(name: &str) -> Self {
        Identification {
            id_type: IdType::FQDN,
            data: name.as_bytes().to_vec(),
        }
    }

    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body, "ID payload");
        let id_type = IdType(r.u8()?);
        let _reserved = r.take(3)?;
        Ok(Identification {
            id_type,
            data: r.rest().to_vec(),
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.id_type.0, 0, 0, 0]);
        out.extend_from_slice(&self.data);
    }

    /// The payload body, which is what AUTH signs as IDx' (§2.15).
    pub fn body(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(4 + self.data.len());
        self.emit(&mut v);
        v
    }
}
