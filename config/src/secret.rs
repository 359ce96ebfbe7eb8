//! Key material (SA keys, salts, PSKs): zeroized on drop, never printed.

use std::fmt;

use serde::de::Deserializer;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::with_hint;
use crate::schema::from_str::parse_str;

/// Bytes of key material. `Debug` prints `<redacted>`; equality does not stop at the first
/// differing byte.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// Decodes hex, with an optional `0x` prefix; `:` between bytes is allowed.
    pub fn from_hex(text: &str) -> Result<Self, hex::FromHexError> {
        let text = text.trim();
        let text = text.strip_prefix("0x").unwrap_or(text);
        let digits: Zeroizing<String> =
            Zeroizing::new(text.chars().filter(|c| *c != ':').collect());
        hex::decode(digits.as_bytes()).map(Self)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl Eq for Secret {}

/// `#[serde(deserialize_with = "crate::secret::deserialize_hex")]` for SA keys and salts.
pub(crate) fn deserialize_hex<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    parse_str(d, "hex digits", |text| {
        Secret::from_hex(text).map_err(|e| {
            with_hint(
                format!("not valid hex: {e}"),
                "write the bytes as hex digits, like \"00112233445566778899aabbccddeeff\"",
            )
        })
    })
}

/// A PSK: `"0x..."` is hex, anything else is the UTF-8 bytes of the string (as in strongSwan).
pub(crate) fn psk_from_text(text: &str) -> Result<Secret, hex::FromHexError> {
    if text.starts_with("0x") {
        Secret::from_hex(text)
    } else {
        Ok(Secret::new(text.as_bytes().to_vec()))
    }
}

/// `#[serde(deserialize_with = ...)]` for an inline `psk`.
pub(crate) fn deserialize_psk<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    parse_str(d, "a pre-shared key", |text| {
        psk_from_text(text).map(Some).map_err(|e| {
            with_hint(
                format!("psk starts with 0x but is not valid hex: {e}"),
                "a psk starting with 0x is read as hex; otherwise it is taken as text",
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let secret = Secret::new(b"hunter2".to_vec());
        assert_eq!(format!("{secret:?}"), "<redacted>");
    }

    #[test]
    fn decodes_hex_forms() {
        let expected = Secret::new(vec![0x00, 0x11, 0xab]);
        assert_eq!(Secret::from_hex("0011ab").ok(), Some(expected.clone()));
        assert_eq!(Secret::from_hex("0x0011AB").ok(), Some(expected.clone()));
        assert_eq!(Secret::from_hex("00:11:ab").ok(), Some(expected));
        assert!(Secret::from_hex("0g").is_err());
        assert!(Secret::from_hex("abc").is_err());
    }

    #[test]
    fn psk_text_or_hex() {
        assert_eq!(
            psk_from_text("abc").ok().map(|s| s.as_bytes().to_vec()),
            Some(b"abc".to_vec())
        );
        assert_eq!(
            psk_from_text("0x6162").ok().map(|s| s.as_bytes().to_vec()),
            Some(b"ab".to_vec())
        );
    }

    #[test]
    fn equality_compares_length_and_bytes() {
        assert_eq!(Secret::new(vec![1, 2]), Secret::new(vec![1, 2]));
        assert_ne!(Secret::new(vec![1, 2]), Secret::new(vec![1, 3]));
        assert_ne!(Secret::new(vec![1, 2]), Secret::new(vec![1, 2, 0]));
    }
}
