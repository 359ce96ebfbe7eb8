//! IKEv2 (RFC 7296), sans-IO: message codec, key derivation and SK
//! protection, and the exchange state machines.

pub mod crypto;
pub mod sa;
pub mod wire;
