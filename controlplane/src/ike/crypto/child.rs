//! CHILD SA keying material (RFC 7296 §2.17) for ESP with AES-GCM (RFC 4106).

use super::{CryptoError, Prf, Secret};

/// One direction's ESP key: AES key then the 4-byte salt (RFC 4106 §8.1).
#[derive(Clone, Debug)]
pub struct EspKey(pub Secret);

impl EspKey {
    pub fn key(&self) -> &[u8] {
        let b = self.0.as_bytes();
        b.get(..b.len().saturating_sub(4)).unwrap_or_default()
    }

    pub fn salt(&self) -> [u8; 4] {
        let b = self.0.as_bytes();
        let mut s = [0; 4];
        if let Some(t) = b.get(b.len().saturating_sub(4)..) {
            if t.len() == 4 {
                s.copy_from_slice(t);
            }
        }
        s
    }
}

/// The two ESP keys of a CHILD SA pair.
#[derive(Clone, Debug)]
pub struct ChildKeys {
    /// Protects initiator-to-responder traffic.
    pub encr_i: EspKey,
    /// Protects responder-to-initiator traffic.
    pub encr_r: EspKey,
}

impl ChildKeys {
    /// KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr); the initiator-to-responder
    /// key comes first (§2.17). `g_ir` is `Some` with PFS.
    pub fn derive(
        prf: Prf,
        sk_d: &Secret,
        g_ir: Option<&Secret>,
        ni: &[u8],
        nr: &[u8],
        encr_key_len: usize,
    ) -> Result<ChildKeys, CryptoError> {
        if encr_key_len != 16 && encr_key_len != 32 {
            return Err(CryptoError::KeyLength(encr_key_len));
        }
        let e = encr_key_len + 4;
        let km = match g_ir {
            Some(g) => prf.prf_plus(sk_d.as_bytes(), &[g.as_bytes(), ni, nr], 2 * e)?,
            None => prf.prf_plus(sk_d.as_bytes(), &[ni, nr], 2 * e)?,
        };
        let (i, r) = km.as_bytes().split_at(e);
        Ok(ChildKeys {
            encr_i: EspKey(Secret::from_slice(i)),
            encr_r: EspKey(Secret::from_slice(r)),
        })
    }
}
