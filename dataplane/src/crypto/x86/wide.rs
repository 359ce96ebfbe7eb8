//! The stitched kernel on 256-bit registers (VAES + VPCLMULQDQ, AVX2):
//! each register holds two blocks, so one batch of 8 blocks is 4 registers
//! and every AES round or carry-less multiply covers two blocks. Same shape
//! as `gcm` (which still serves the < 8-block tail and E_K(J0)).

use core::arch::x86_64::*;

use super::gcm::{load_j0, BATCH};
use super::ghash::{reduce, rev, Ghash, Powers};
use super::key_schedule::RoundKeys;
use super::tail;
use crate::crypto::TAG_LEN;
use zeroize::Zeroize;

/// The powers paired per register: register i holds (H^(8-2i), H^(7-2i))
/// for blocks 2i and 2i+1. Built per call, like the round keys broadcast
/// to both lanes ([`broadcast_round_keys`]), from the narrow key: kept per
/// SA they cost 736 bytes, and a concentrator holds two SAs per tunnel
/// (issue 7: under 4 KiB per tunnel); building them is a few dozen
/// instructions per packet of at least 8 blocks.
pub(super) struct WideKey {
    pub(super) h: [__m256i; 4],
    pub(super) d: [__m256i; 4],
}

/// The round keys in both lanes of 256-bit registers, for one call. Only
/// the `NR + 1` keys the rounds use are read (an AES-128 SA leaves the
/// rest out of its prefetch).
#[inline]
#[target_feature(enable = "avx2,avx")]
unsafe fn broadcast_round_keys<const NR: usize>(rk: &RoundKeys) -> [__m256i; 15] {
    let mut w = [_mm256_setzero_si256(); 15];
    for (y, x) in w.iter_mut().zip(&rk[..=NR]) {
        *y = _mm256_broadcastsi128_si256(*x);
    }
    w
}

impl WideKey {
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2,avx")]
    pub(super) unsafe fn new(p: &Powers) -> WideKey {
        let mut w = WideKey::zeroed();
        for i in 0..4 {
            w.h[i] = _mm256_set_m128i(p.h[6 - 2 * i], p.h[7 - 2 * i]);
            w.d[i] = _mm256_set_m128i(p.d[6 - 2 * i], p.d[7 - 2 * i]);
        }
        w
    }

    /// All zero: for CPUs without VAES, where it is never used.
    fn zeroed() -> WideKey {
        // SAFETY: SIMD registers are plain bits; all-zero is a valid value.
        unsafe { core::mem::zeroed() }
    }
}

#[inline]
#[target_feature(enable = "avx2,avx")]
unsafe fn rev2(x: __m256i) -> __m256i {
    _mm256_shuffle_epi8(
        x,
        _mm256_broadcastsi128_si256(_mm_set_epi8(
            0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
        )),
    )
}

/// Counters ctr+1..ctr+8 in GCM byte order, two per register.
#[inline]
#[target_feature(enable = "avx2,avx")]
unsafe fn next_counters(ctr: &mut __m128i) -> [__m256i; 4] {
    let base = _mm256_broadcastsi128_si256(*ctr);
    let mut out = [_mm256_setzero_si256(); 4];
    for (i, o) in out.iter_mut().enumerate() {
        let k = 2 * i as i32;
        *o = rev2(_mm256_add_epi32(
            base,
            _mm256_set_epi32(0, 0, 0, k + 2, 0, 0, 0, k + 1),
        ));
    }
    *ctr = _mm_add_epi32(*ctr, _mm_set_epi32(0, 0, 0, 8));
    out
}

#[inline]
#[target_feature(enable = "avx2,avx,vaes")]
unsafe fn encrypt<const NR: usize>(rk: &[__m256i; 15], b: &mut [__m256i; 4]) {
    for x in b.iter_mut() {
        *x = _mm256_xor_si256(*x, rk[0]);
    }
    for k in &rk[1..NR] {
        for x in b.iter_mut() {
            *x = _mm256_aesenc_epi128(*x, *k);
        }
    }
    for x in b.iter_mut() {
        *x = _mm256_aesenclast_epi128(*x, rk[NR]);
    }
}

/// Folds 8 byte-reversed blocks (4 registers) into the accumulator with
/// one reduction.
#[inline]
#[target_feature(enable = "avx2,avx,vpclmulqdq,pclmulqdq")]
unsafe fn hash8(w: &WideKey, gh: &mut Ghash<'_>, blocks: &[__m256i; 4]) {
    let mut r = _mm256_setzero_si256();
    let mut f = _mm256_setzero_si256();
    for (i, m) in blocks.iter().enumerate() {
        let m = if i == 0 {
            _mm256_xor_si256(*m, _mm256_zextsi128_si256(gh.acc()))
        } else {
            *m
        };
        r = _mm256_xor_si256(r, _mm256_clmulepi64_epi128(m, w.d[i], 0x10));
        r = _mm256_xor_si256(r, _mm256_clmulepi64_epi128(m, w.h[i], 0x11));
        f = _mm256_xor_si256(f, _mm256_clmulepi64_epi128(m, w.d[i], 0x00));
        f = _mm256_xor_si256(f, _mm256_clmulepi64_epi128(m, w.h[i], 0x01));
    }
    let r = _mm_xor_si128(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    let f = _mm_xor_si128(_mm256_castsi256_si128(f), _mm256_extracti128_si256(f, 1));
    gh.set_acc(reduce(r, f));
}

#[inline]
#[target_feature(enable = "avx2,avx,vaes")]
unsafe fn seal8<const NR: usize>(
    rk: &[__m256i; 15],
    ctr: &mut __m128i,
    chunk: &mut [u8],
) -> [__m256i; 4] {
    debug_assert_eq!(chunk.len(), BATCH);
    let mut b = next_counters(ctr);
    encrypt::<NR>(rk, &mut b);
    let p = chunk.as_mut_ptr().cast::<__m256i>();
    for (i, x) in b.iter_mut().enumerate() {
        let c = _mm256_xor_si256(_mm256_loadu_si256(p.add(i)), *x);
        _mm256_storeu_si256(p.add(i), c);
        *x = rev2(c);
    }
    b
}

/// # Safety
/// The CPU must support AES-NI, PCLMULQDQ, SSSE3, SSE4.1, AVX2, VAES and
/// VPCLMULQDQ.
#[target_feature(enable = "aes,pclmulqdq,ssse3,sse4.1,sse2,avx,avx2,vaes,vpclmulqdq")]
pub(super) unsafe fn seal<const NR: usize>(
    rk: &RoundKeys,
    powers: &Powers,
    nonce: &[u8; 12],
    aad: &[u8],
    data: &mut [u8],
) -> [u8; TAG_LEN] {
    let j0 = load_j0(nonce);
    let mut ctr = rev(j0);
    if data.len() <= tail::SHORT_MAX_DATA && aad.len() <= tail::SHORT_MAX_AAD {
        return tail::finish::<NR, false>(
            rk,
            powers,
            j0,
            ctr,
            None,
            aad,
            data,
            aad.len(),
            data.len(),
        );
    }
    let mut w = WideKey::new(powers);
    let mut gh = Ghash::new(powers);
    gh.push_padded(aad);
    gh.flush();
    let total = data.len();
    let (bulk, rest) = data.split_at_mut(total - total % BATCH);
    let mut chunks = bulk.chunks_exact_mut(BATCH);
    let mut wrk = broadcast_round_keys::<NR>(rk);
    if let Some(first) = chunks.next() {
        let mut prev = seal8::<NR>(&wrk, &mut ctr, first);
        for chunk in chunks {
            hash8(&w, &mut gh, &prev);
            prev = seal8::<NR>(&wrk, &mut ctr, chunk);
        }
        hash8(&w, &mut gh, &prev);
    }
    wrk.zeroize();
    w.h.zeroize();
    w.d.zeroize();
    let acc = Some(gh.acc());
    tail::finish::<NR, false>(rk, powers, j0, ctr, acc, &[], rest, aad.len(), total)
}

/// Decrypts in place and returns the computed tag (the caller compares).
///
/// # Safety
/// As for [`seal`].
#[target_feature(enable = "aes,pclmulqdq,ssse3,sse4.1,sse2,avx,avx2,vaes,vpclmulqdq")]
pub(super) unsafe fn open<const NR: usize>(
    rk: &RoundKeys,
    powers: &Powers,
    nonce: &[u8; 12],
    aad: &[u8],
    data: &mut [u8],
) -> [u8; TAG_LEN] {
    let j0 = load_j0(nonce);
    let mut ctr = rev(j0);
    if data.len() <= tail::SHORT_MAX_DATA && aad.len() <= tail::SHORT_MAX_AAD {
        return tail::finish::<NR, true>(
            rk,
            powers,
            j0,
            ctr,
            None,
            aad,
            data,
            aad.len(),
            data.len(),
        );
    }
    let mut w = WideKey::new(powers);
    let mut gh = Ghash::new(powers);
    gh.push_padded(aad);
    gh.flush();
    let total = data.len();
    let (bulk, rest) = data.split_at_mut(total - total % BATCH);
    let mut wrk = broadcast_round_keys::<NR>(rk);
    for chunk in bulk.chunks_exact_mut(BATCH) {
        let p = chunk.as_mut_ptr().cast::<__m256i>();
        let mut c = [_mm256_setzero_si256(); 4];
        for (i, x) in c.iter_mut().enumerate() {
            *x = _mm256_loadu_si256(p.add(i));
        }
        let mut b = next_counters(&mut ctr);
        encrypt::<NR>(&wrk, &mut b);
        for (i, (k, x)) in b.iter().zip(c.iter_mut()).enumerate() {
            _mm256_storeu_si256(p.add(i), _mm256_xor_si256(*x, *k));
            *x = rev2(*x);
        }
        hash8(&w, &mut gh, &c);
    }
    wrk.zeroize();
    w.h.zeroize();
    w.d.zeroize();
    let acc = Some(gh.acc());
    tail::finish::<NR, true>(rk, powers, j0, ctr, acc, &[], rest, aad.len(), total)
}
