//! Pseudo-random functions and prf+ (RFC 7296 §2.13).

use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha384, Sha512};
use zeroize::Zeroizing;

use super::{CryptoError, Secret};
use crate::ike::wire::transform_id;

/// The PRFs esprit negotiates (RFC 4868).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prf {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

fn hmac<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

impl Prf {
    pub fn from_transform_id(id: u16) -> Option<Prf> {
        match id {
            transform_id::PRF_HMAC_SHA2_256 => Some(Prf::HmacSha256),
            transform_id::PRF_HMAC_SHA2_384 => Some(Prf::HmacSha384),
            transform_id::PRF_HMAC_SHA2_512 => Some(Prf::HmacSha512),
            _ => None,
        }
    }

    pub fn transform_id(self) -> u16 {
        match self {
            Prf::HmacSha256 => transform_id::PRF_HMAC_SHA2_256,
            Prf::HmacSha384 => transform_id::PRF_HMAC_SHA2_384,
            Prf::HmacSha512 => transform_id::PRF_HMAC_SHA2_512,
        }
    }

    /// Output length, which is also the length of SK_d, SK_pi, SK_pr (§2.14).
    pub fn output_len(self) -> usize {
        match self {
            Prf::HmacSha256 => 32,
            Prf::HmacSha384 => 48,
            Prf::HmacSha512 => 64,
        }
    }

    /// `prf(key, parts[0] | parts[1] | ...)`.
    pub fn prf(self, key: &[u8], parts: &[&[u8]]) -> Secret {
        Secret::new(match self {
            Prf::HmacSha256 => hmac::<Hmac<Sha256>>(key, parts),
            Prf::HmacSha384 => hmac::<Hmac<Sha384>>(key, parts),
            Prf::HmacSha512 => hmac::<Hmac<Sha512>>(key, parts),
        })
    }

    /// prf+(K, S) = T1 | T2 | ..., Tn = prf(K, Tn-1 | S | n), cut to `len`.
    pub fn prf_plus(self, key: &[u8], seed: &[&[u8]], len: usize) -> Result<Secret, CryptoError> {
        // §2.13: the counter is one octet, so at most 255 blocks.
        if len > 255 * self.output_len() {
            return Err(CryptoError::PrfPlusTooLong(len));
        }
        let mut out = Zeroizing::new(Vec::with_capacity(len + self.output_len()));
        let mut t = Secret::default();
        let mut n: u8 = 1;
        while out.len() < len {
            let counter = [n];
            let mut parts: Vec<&[u8]> = Vec::with_capacity(seed.len() + 2);
            parts.push(t.as_bytes());
            parts.extend_from_slice(seed);
            parts.push(&counter);
            t = self.prf(key, &parts);
            out.extend_from_slice(t.as_bytes());
            n = n.wrapping_add(1);
        }
        out.truncate(len);
        Ok(Secret::new(std::mem::take(&mut *out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4231 test case 2 (HMAC with key "Jefe").
    #[test]
    fn hmac_sha2_rfc4231_case_2() {
        let data: &[u8] = b"what do ya want for nothing?";
        let k = b"Jefe";
        assert_eq!(
            hex::encode(Prf::HmacSha256.prf(k, &[data]).as_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(Prf::HmacSha384.prf(k, &[&data[..4], &data[4..]]).as_bytes()),
            "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649"
        );
        assert_eq!(
            hex::encode(Prf::HmacSha512.prf(k, &[data]).as_bytes()),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
    }

    #[test]
    fn prf_plus_is_the_chained_prf() {
        let k = b"key";
        let s: &[u8] = b"seed";
        let out = Prf::HmacSha256.prf_plus(k, &[s], 70).unwrap();
        let t1 = Prf::HmacSha256.prf(k, &[s, &[1]]);
        let t2 = Prf::HmacSha256.prf(k, &[t1.as_bytes(), s, &[2]]);
        let t3 = Prf::HmacSha256.prf(k, &[t2.as_bytes(), s, &[3]]);
        let mut want = [t1.as_bytes(), t2.as_bytes(), t3.as_bytes()].concat();
        want.truncate(70);
        assert_eq!(out.as_bytes(), &want[..]);
    }

    #[test]
    fn prf_plus_refuses_more_than_255_blocks() {
        assert!(Prf::HmacSha256.prf_plus(b"k", &[b"s"], 255 * 32).is_ok());
        assert_eq!(
            Prf::HmacSha256
                .prf_plus(b"k", &[b"s"], 255 * 32 + 1)
                .unwrap_err(),
            CryptoError::PrfPlusTooLong(255 * 32 + 1)
        );
    }
}
