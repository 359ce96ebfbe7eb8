//! Why a datagram could not be parsed as an IKEv2 message.

use super::PayloadType;

/// Parse failure. Never a panic: every field is length-checked first.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("bad length {len} in {what}")]
    BadLength { what: &'static str, len: usize },
    #[error("bad value {value} in {what}")]
    BadValue { what: &'static str, value: u32 },
    /// RFC 7296 §2.11: answer INVALID_MAJOR_VERSION.
    #[error("unsupported IKE major version {0}")]
    InvalidMajorVersion(u8),
    /// RFC 7296 §2.5: reject, answer UNSUPPORTED_CRITICAL_PAYLOAD.
    #[error("unsupported critical payload {0:?}")]
    UnsupportedCriticalPayload(PayloadType),
    #[error("header length {header} does not match message length {actual}")]
    MessageLength { header: u32, actual: usize },
}
