//! IKEv2 cryptography: PRFs and prf+ (RFC 7296 §2.13), key derivation
//! (§2.14, §2.17, §2.18), Diffie-Hellman groups 19 and 31, PSK AUTH
//! (§2.15), SK payload protection with AES-GCM-16 (RFC 5282), NAT
//! detection hashes (§2.23).

mod auth;
mod child;
mod dh;
mod error;
mod ike_keys;
mod natd;
mod prf;
mod secret;
mod sk;

pub use auth::{psk_auth, signed_octets, verify_psk_auth};
pub use child::{ChildKeys, EspKey};
pub use dh::{DhGroup, DhPrivate};
pub use error::CryptoError;
pub use ike_keys::{skeyseed, skeyseed_rekey, IkeSaKeys};
pub use natd::nat_detection_hash;
pub use prf::Prf;
pub use secret::Secret;
pub use sk::SkCipher;
