//! Encrypted and Authenticated payload SK (RFC 7296 §3.14), still sealed.
//! `ike::crypto::sk` opens it into an inner payload chain.

use super::PayloadType;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encrypted {
    /// The SK payload is last; its Next Payload names the first inner one.
    pub first_inner: PayloadType,
    /// IV || ciphertext (inner payloads, padding, pad length) || ICV.
    pub body: Vec<u8>,
}
