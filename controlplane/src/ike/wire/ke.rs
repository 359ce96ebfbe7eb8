//! Key Exchange payload (RFC 7296 §3.4).

use super::reader::Reader;
use super::ParseError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyExchange {
    /// Diffie-Hellman group number (transform type 4 ID).
    pub group: u16,
    /// The public value; for ECP groups x || y (RFC 5903 §7).
    pub data: Vec<u8>,
}

impl KeyExchange {
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body, "KE payload");
        let group = r.u16()?;
        let _reserved = r.u16()?;
        Ok(KeyExchange {
            group,
            data: r.rest().to_vec(),
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.group.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.data);
    }
}
