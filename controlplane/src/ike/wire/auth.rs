//! Authentication payload (RFC 7296 §3.8).

use super::reader::Reader;
use super::{AuthMethod, ParseError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authentication {
    pub method: AuthMethod,
    pub data: Vec<u8>,
}

impl Authentication {
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body, "AUTH payload");
        let method = AuthMethod(r.u8()?);
        let _reserved = r.take(3)?;
        Ok(Authentication {
            method,
            data: r.rest().to_vec(),
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.method.0, 0, 0, 0]);
        out.extend_from_slice(&self.data);
    }
}
