//! x86-64 backend: AES-NI + PCLMULQDQ, selected once per key.

mod gcm;
mod ghash;
mod key_schedule;
mod tail;
mod wide;

use zeroize::Zeroize;

use super::TAG_LEN;

/// Round keys and GHASH powers of one key (16-byte aligned, as their
/// `__m128i` type is). The 256-bit forms the wide kernel wants are built
/// per call from these.
#[repr(C)]
pub(in crate::crypto) struct AesNiKey {
    rk: key_schedule::RoundKeys,
    powers: ghash::Powers,
    /// 10 (AES-128) or 14 (AES-256).
    rounds: usize,
    use_wide: bool,
}

impl AesNiKey {
    /// Whether this CPU runs the kernel. Checked once per key, in `new`.
    pub(in crate::crypto) fn supported() -> bool {
        is_x86_feature_detected!("aes")
            && is_x86_feature_detected!("pclmulqdq")
            && is_x86_feature_detected!("ssse3")
            && is_x86_feature_detected!("sse4.1")
    }

    /// Whether this CPU also runs the 256-bit VAES/VPCLMULQDQ kernel.
    pub(in crate::crypto) fn wide_supported() -> bool {
        Self::supported()
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("vaes")
            && is_x86_feature_detected!("vpclmulqdq")
    }

    /// `None` if the CPU lacks the features or the key length is wrong.
    /// `allow_wide` = false pins the 128-bit kernel (tests, benchmarks).
    pub(in crate::crypto) fn new(key: &[u8], allow_wide: bool) -> Option<AesNiKey> {
        if !Self::supported() {
            return None;
        }
        let use_wide = allow_wide && Self::wide_supported();
        // SAFETY: the features were checked just above.
        unsafe {
            let (rk, rounds) = match key.len() {
                16 => (key_schedule::expand_128(key.try_into().ok()?), 10),
                32 => (key_schedule::expand_256(key.try_into().ok()?), 14),
                _ => return None,
            };
            let mut h = [core::arch::x86_64::_mm_setzero_si128()];
            if rounds == 10 {
                key_schedule::encrypt::<1, 10>(&rk, &mut h);
            } else {
                key_schedule::encrypt::<1, 14>(&rk, &mut h);
            }
            let mut h_bytes = [0u8; 16];
            core::arch::x86_64::_mm_storeu_si128(h_bytes.as_mut_ptr().cast(), h[0]);
            let powers = ghash::Powers::new(&h_bytes);
            h_bytes.zeroize();
            h.zeroize();
            Some(AesNiKey {
                rk,
                powers,
                rounds,
                use_wide,
            })
        }
    }

    pub(in crate::crypto) fn name(&self) -> &'static str {
        if self.use_wide {
            "vaes+vpclmulqdq avx2 (stitched, 8 blocks)"
        } else {
            "aes-ni+pclmulqdq (stitched, 8 blocks)"
        }
    }

    pub(in crate::crypto) fn seal(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        data: &mut [u8],
    ) -> [u8; TAG_LEN] {
        // SAFETY: an AesNiKey only exists if `supported()` held in `new`,
        // and `use_wide` only if `wide_supported()` did.
        unsafe {
            let (rk, p) = (&self.rk, &self.powers);
            match (self.use_wide, self.rounds) {
                (true, 10) => return wide::seal::<10>(rk, p, nonce, aad, data),
                (true, _) => return wide::seal::<14>(rk, p, nonce, aad, data),
                _ => {}
            }
            if self.rounds == 10 {
                gcm::seal::<10>(&self.rk, &self.powers, nonce, aad, data)
            } else {
                gcm::seal::<14>(&self.rk, &self.powers, nonce, aad, data)
            }
        }
    }

    pub(in crate::crypto) fn open(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        data: &mut [u8],
    ) -> [u8; TAG_LEN] {
        // SAFETY: as in `seal`.
        unsafe {
            let (rk, p) = (&self.rk, &self.powers);
            match (self.use_wide, self.rounds) {
                (true, 10) => return wide::open::<10>(rk, p, nonce, aad, data),
                (true, _) => return wide::open::<14>(rk, p, nonce, aad, data),
                _ => {}
            }
            if self.rounds == 10 {
                gcm::open::<10>(&self.rk, &self.powers, nonce, aad, data)
            } else {
                gcm::open::<14>(&self.rk, &self.powers, nonce, aad, data)
            }
        }
    }
}

impl Drop for AesNiKey {
    fn drop(&mut self) {
        self.rk.zeroize();
        self.powers.h.zeroize();
        self.powers.d.zeroize();
    }
}
