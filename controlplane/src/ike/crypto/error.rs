//! Why a cryptographic operation of IKE failed.

use crate::ike::wire::ParseError;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("unsupported Diffie-Hellman group {0}")]
    UnsupportedGroup(u16),
    #[error("invalid peer public value for group {0}")]
    InvalidPublicValue(u16),
    #[error("prf+ cannot produce {0} bytes")]
    PrfPlusTooLong(usize),
    #[error("bad key length {0}")]
    KeyLength(usize),
    #[error("SK payload too short or bad padding")]
    MalformedSk,
    #[error("no SK payload in message")]
    NoSk,
    #[error("SK payload integrity check failed")]
    IntegrityCheckFailed,
    #[error("decrypted payloads do not parse: {0}")]
    Inner(ParseError),
}
