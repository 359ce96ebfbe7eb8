//! IKE SA keys: SKEYSEED and SK_* (RFC 7296 §2.14, rekey §2.18).

use super::{CryptoError, Prf, Secret};

/// SKEYSEED = prf(Ni | Nr, g^ir) (§2.14). HMAC PRFs take the whole nonces as key.
pub fn skeyseed(prf: Prf, ni: &[u8], nr: &[u8], g_ir: &Secret) -> Secret {
    let key = Secret::new([ni, nr].concat());
    prf.prf(key.as_bytes(), &[g_ir.as_bytes()])
}

/// SKEYSEED of a rekeyed IKE SA = prf(SK_d (old), g^ir (new) | Ni | Nr) (§2.18).
pub fn skeyseed_rekey(prf: Prf, old_sk_d: &Secret, g_ir: &Secret, ni: &[u8], nr: &[u8]) -> Secret {
    prf.prf(old_sk_d.as_bytes(), &[g_ir.as_bytes(), ni, nr])
}

/// The keys of one IKE SA. With AES-GCM there are no SK_ai/SK_ar (RFC 5282 §7)
/// and SK_ei/SK_er carry the 4-byte salt after the key (RFC 5282 §7.1).
#[derive(Clone, Debug)]
pub struct IkeSaKeys {
    pub prf: Prf,
    pub sk_d: Secret,
    pub sk_ei: Secret,
    pub sk_er: Secret,
    pub sk_pi: Secret,
    pub sk_pr: Secret,
}

impl IkeSaKeys {
    /// {SK_d | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr);
    /// `encr_key_len` is the AES key length (16 or 32), the salt comes on top.
    pub fn derive(
        prf: Prf,
        skeyseed: &Secret,
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
        encr_key_len: usize,
    ) -> Result<IkeSaKeys, CryptoError> {
        if encr_key_len != 16 && encr_key_len != 32 {
            return Err(CryptoError::KeyLength(encr_key_len));
        }
        let p = prf.output_len();
        let e = encr_key_len + 4;
        let km = prf.prf_plus(
            skeyseed.as_bytes(),
            &[ni, nr, &spi_i.to_be_bytes(), &spi_r.to_be_bytes()],
            3 * p + 2 * e,
        )?;
        let mut rest = km.as_bytes();
        let mut next = |n: usize| {
            let (a, b) = rest.split_at(n.min(rest.len()));
            rest = b;
            Secret::from_slice(a)
        };
        Ok(IkeSaKeys {
            prf,
            sk_d: next(p),
            sk_ei: next(e),
            sk_er: next(e),
            sk_pi: next(p),
            sk_pr: next(p),
        })
    }
}
