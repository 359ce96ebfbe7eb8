//! Payloads esprit does not interpret (CERT, CERTREQ, EAP, SKF, future
//! types), kept so that the message re-encodes unchanged.

use super::PayloadType;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownPayload {
    pub payload_type: PayloadType,
    pub critical: bool,
    pub body: Vec<u8>,
}
