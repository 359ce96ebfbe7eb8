//! Nonce payload Ni/Nr (RFC 7296 §3.9): 16 to 256 bytes.

use super::ParseError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nonce(pub Vec<u8>);

impl Nonce {
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        if !(16..=256).contains(&body.len()) {
            return Err(ParseError::BadLength {
                what: "nonce",
                len: body.len(),
            });
        }
        Ok(Nonce(body.to_vec()))
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}
