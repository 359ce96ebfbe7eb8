//! AES-GCM for ESP (RFC 4106) and IKE's SK payload (RFC 5282).
//!
//! PLACEHOLDER: wraps the `aes-gcm` crate until the stitched AES-NI/PCLMULQDQ
//! implementation lands. The public API below is the contract.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce, Tag};

/// Errors of key set-up and authenticated decryption.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("AES-GCM key must be 16 or 32 bytes, got {0}")]
    KeyLength(usize),
    #[error("authentication tag mismatch")]
    AuthFailed,
}

/// Length of the GCM authentication tag (ICV) esprit uses: 16 bytes.
pub const TAG_LEN: usize = 16;

enum Inner {
    A128(Box<Aes128Gcm>),
    A256(Box<Aes256Gcm>),
}

/// An AES-GCM key with everything precomputed for per-packet use.
pub struct AesGcm {
    inner: Inner,
}

impl AesGcm {
    /// A 16-byte key selects AES-128, a 32-byte key AES-256.
    pub fn new(key: &[u8]) -> Result<AesGcm, CryptoError> {
        let inner = match key.len() {
            16 => Inner::A128(Box::new(
                Aes128Gcm::new_from_slice(key).map_err(|_| CryptoError::KeyLength(16))?,
            )),
            32 => Inner::A256(Box::new(
                Aes256Gcm::new_from_slice(key).map_err(|_| CryptoError::KeyLength(32))?,
            )),
            n => return Err(CryptoError::KeyLength(n)),
        };
        Ok(AesGcm { inner })
    }

    /// Key length in bytes (16 or 32).
    pub fn key_len(&self) -> usize {
        match self.inner {
            Inner::A128(_) => 16,
            Inner::A256(_) => 32,
        }
    }

    /// Encrypts `data` in place and returns the tag.
    pub fn seal_in_place(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; TAG_LEN] {
        let n = Nonce::from_slice(nonce);
        let tag = match &self.inner {
            Inner::A128(c) => c.encrypt_in_place_detached(n, aad, data),
            Inner::A256(c) => c.encrypt_in_place_detached(n, aad, data),
        };
        tag.map(Into::into).unwrap_or([0; TAG_LEN])
    }

    /// Verifies `tag` and decrypts `data` in place. On error `data` is
    /// unspecified and must be dropped.
    pub fn open_in_place(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        data: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError> {
        let n = Nonce::from_slice(nonce);
        let t = Tag::from_slice(tag);
        match &self.inner {
            Inner::A128(c) => c.decrypt_in_place_detached(n, aad, data, t),
            Inner::A256(c) => c.decrypt_in_place_detached(n, aad, data, t),
        }
        .map_err(|_| CryptoError::AuthFailed)
    }
}
