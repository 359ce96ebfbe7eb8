//! AES-NI key expansion (FIPS 197 §5.2) and block encryption for the
//! kernels. Rounds are a const generic so every loop unrolls.

use core::arch::x86_64::*;

/// Round keys, up to AES-256's 15.
pub(super) type RoundKeys = [__m128i; 15];

/// Folds the previous round key with the `aeskeygenassist` word in `t`.
#[inline]
#[target_feature(enable = "aes,sse2")]
unsafe fn fold(prev: __m128i, t: __m128i) -> __m128i {
    let mut k = prev;
    k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
    k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
    k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
    _mm_xor_si128(k, t)
}

macro_rules! next128 {
    ($prev:expr, $rcon:literal) => {
        fold(
            $prev,
            _mm_shuffle_epi32(_mm_aeskeygenassist_si128($prev, $rcon), 0xff),
        )
    };
}

/// AES-128: 11 round keys from a 16-byte key, written into `rk` where it
/// lies (the rest zeroed), so no copy of them is left anywhere else.
#[target_feature(enable = "aes,sse2")]
pub(super) unsafe fn expand_128(key: &[u8; 16], rk: &mut RoundKeys) {
    *rk = [_mm_setzero_si128(); 15];
    let mut k = _mm_loadu_si128(key.as_ptr().cast());
    rk[0] = k;
    k = next128!(k, 0x01);
    rk[1] = k;
    k = next128!(k, 0x02);
    rk[2] = k;
    k = next128!(k, 0x04);
    rk[3] = k;
    k = next128!(k, 0x08);
    rk[4] = k;
    k = next128!(k, 0x10);
    rk[5] = k;
    k = next128!(k, 0x20);
    rk[6] = k;
    k = next128!(k, 0x40);
    rk[7] = k;
    k = next128!(k, 0x80);
    rk[8] = k;
    k = next128!(k, 0x1b);
    rk[9] = k;
    k = next128!(k, 0x36);
    rk[10] = k;
}

macro_rules! next256 {
    ($rk:ident, $i:literal, $rcon:literal) => {{
        let t = _mm_shuffle_epi32(_mm_aeskeygenassist_si128($rk[$i - 1], $rcon), 0xff);
        $rk[$i] = fold($rk[$i - 2], t);
        let t = _mm_shuffle_epi32(_mm_aeskeygenassist_si128($rk[$i], 0), 0xaa);
        $rk[$i + 1] = fold($rk[$i - 1], t);
    }};
}

/// AES-256: 15 round keys from a 32-byte key, written into `rk` where it
/// lies.
#[target_feature(enable = "aes,sse2")]
pub(super) unsafe fn expand_256(key: &[u8; 32], rk: &mut RoundKeys) {
    rk[0] = _mm_loadu_si128(key.as_ptr().cast());
    rk[1] = _mm_loadu_si128(key.as_ptr().add(16).cast());
    next256!(rk, 2, 0x01);
    next256!(rk, 4, 0x02);
    next256!(rk, 6, 0x04);
    next256!(rk, 8, 0x08);
    next256!(rk, 10, 0x10);
    next256!(rk, 12, 0x20);
    let t = _mm_shuffle_epi32(_mm_aeskeygenassist_si128(rk[13], 0x40), 0xff);
    rk[14] = fold(rk[12], t);
}

/// Encrypts `N` independent blocks, interleaved round by round so the
/// AES unit's pipeline stays full.
#[inline]
#[target_feature(enable = "aes,sse2")]
pub(super) unsafe fn encrypt<const N: usize, const NR: usize>(
    rk: &RoundKeys,
    b: &mut [__m128i; N],
) {
    for x in b.iter_mut() {
        *x = _mm_xor_si128(*x, rk[0]);
    }
    for k in &rk[1..NR] {
        for x in b.iter_mut() {
            *x = _mm_aesenc_si128(*x, *k);
        }
    }
    for x in b.iter_mut() {
        *x = _mm_aesenclast_si128(*x, rk[NR]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::{BlockCipherEncrypt, KeyInit};

    fn have_aesni() -> bool {
        is_x86_feature_detected!("aes") && is_x86_feature_detected!("sse2")
    }

    fn expanded(f: impl FnOnce(&mut RoundKeys)) -> RoundKeys {
        // SAFETY: setzero needs only SSE2, which x86-64 always has.
        let mut rk = [unsafe { _mm_setzero_si128() }; 15];
        f(&mut rk);
        rk
    }

    fn ours<const NR: usize>(rk: &RoundKeys, block: [u8; 16]) -> [u8; 16] {
        let mut out = [0u8; 16];
        unsafe {
            let mut b = [_mm_loadu_si128(block.as_ptr().cast())];
            encrypt::<1, NR>(rk, &mut b);
            _mm_storeu_si128(out.as_mut_ptr().cast(), b[0]);
        }
        out
    }

    #[test]
    fn aes128_expansion_matches_aes_crate() {
        if !have_aesni() {
            return;
        }
        for seed in 0u8..32 {
            let key: [u8; 16] = core::array::from_fn(|i| (i as u8).wrapping_mul(31) ^ seed);
            let block: [u8; 16] = core::array::from_fn(|i| (i as u8) ^ seed.wrapping_mul(7));
            let rk = expanded(|rk| unsafe { expand_128(&key, rk) });
            let mut want = aes::Block::from(block);
            aes::Aes128::new(&key.into()).encrypt_block(&mut want);
            assert_eq!(
                ours::<10>(&rk, block),
                <[u8; 16]>::from(want),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn aes256_expansion_matches_aes_crate() {
        if !have_aesni() {
            return;
        }
        for seed in 0u8..32 {
            let key: [u8; 32] = core::array::from_fn(|i| (i as u8).wrapping_mul(13) ^ seed);
            let block: [u8; 16] = core::array::from_fn(|i| (i as u8) ^ seed.wrapping_mul(5));
            let rk = expanded(|rk| unsafe { expand_256(&key, rk) });
            let mut want = aes::Block::from(block);
            aes::Aes256::new(&key.into()).encrypt_block(&mut want);
            assert_eq!(
                ours::<14>(&rk, block),
                <[u8; 16]>::from(want),
                "seed {seed}"
            );
        }
    }

    /// FIPS 197 Appendix C.1 / C.3 known answers.
    #[test]
    fn fips197_known_answers() {
        if !have_aesni() {
            return;
        }
        let pt: [u8; 16] = core::array::from_fn(|i| (i as u8) * 0x11);
        let k128: [u8; 16] = core::array::from_fn(|i| i as u8);
        let k256: [u8; 32] = core::array::from_fn(|i| i as u8);
        let rk = expanded(|rk| unsafe { expand_128(&k128, rk) });
        assert_eq!(
            hex::encode(ours::<10>(&rk, pt)),
            "69c4e0d86a7b0430d8cdb78070b4c55a"
        );
        let rk = expanded(|rk| unsafe { expand_256(&k256, rk) });
        assert_eq!(
            hex::encode(ours::<14>(&rk, pt)),
            "8ea2b7ca516745bfeafc49904b496089"
        );
    }
}
