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
///
/// The round keys come last: an AES-128 key never reads the last four of
/// the fifteen, so those 64 bytes end the value, and an SA that also ends
/// with its key can leave that line out of its prefetch (`unread_tail`).
#[repr(C)]
pub(in crate::crypto) struct AesNiKey {
    /// 10 (AES-128) or 14 (AES-256).
    rounds: usize,
    use_wide: bool,
    powers: ghash::Powers,
    rk: key_schedule::RoundKeys,
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
    /// The key moves with the value: see [`AesNiKey::set_key`].
    pub(in crate::crypto) fn new(key: &[u8], allow_wide: bool) -> Option<AesNiKey> {
        let mut k = Self::unkeyed(allow_wide)?;
        k.set_key(key).then_some(k)
    }

    /// A key of zeros, to be keyed where it will stay with `set_key`;
    /// `None` if the CPU lacks the features.
    pub(in crate::crypto) fn unkeyed(allow_wide: bool) -> Option<AesNiKey> {
        Self::supported().then(|| AesNiKey {
            // SAFETY: setzero needs only SSE2, which x86-64 always has.
            rk: [unsafe { core::arch::x86_64::_mm_setzero_si128() }; 15],
            powers: ghash::Powers::zeroed(),
            rounds: 10,
            use_wide: allow_wide && Self::wide_supported(),
        })
    }

    /// Expands `key` (16 or 32 bytes) into this value's own round keys and
    /// GHASH powers, in place: nothing of it is built elsewhere and moved
    /// in, so no copy is left behind on the stack. `false` (and nothing
    /// changed) for another length.
    pub(in crate::crypto) fn set_key(&mut self, key: &[u8]) -> bool {
        // SAFETY: an AesNiKey only exists where `supported()` held.
        unsafe {
            self.rounds = match key.len() {
                16 => match key.try_into() {
                    Ok(k) => {
                        key_schedule::expand_128(k, &mut self.rk);
                        10
                    }
                    Err(_) => return false,
                },
                32 => match key.try_into() {
                    Ok(k) => {
                        key_schedule::expand_256(k, &mut self.rk);
                        14
                    }
                    Err(_) => return false,
                },
                _ => return false,
            };
            let mut h = [core::arch::x86_64::_mm_setzero_si128()];
            if self.rounds == 10 {
                key_schedule::encrypt::<1, 10>(&self.rk, &mut h);
            } else {
                key_schedule::encrypt::<1, 14>(&self.rk, &mut h);
            }
            let mut h_bytes = [0u8; 16];
            core::arch::x86_64::_mm_storeu_si128(h_bytes.as_mut_ptr().cast(), h[0]);
            self.powers.fill(&h_bytes);
            h_bytes.zeroize();
            h.zeroize();
        }
        true
    }

    /// Bytes at the end of this value that sealing and opening never read:
    /// the round keys past the last round.
    pub(in crate::crypto) fn unread_tail(&self) -> usize {
        (self.rk.len() - (self.rounds + 1)) * size_of::<core::arch::x86_64::__m128i>()
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
