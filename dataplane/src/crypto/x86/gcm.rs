//! The stitched AES-GCM kernel (SP 800-38D §7) for AES-NI + PCLMULQDQ.
//!
//! Bulk: 8 counter blocks are encrypted while the previous 8 ciphertext
//! blocks are hashed (seal) or while the same 8 are hashed (open, where the
//! ciphertext is the input); the two have no data dependency, so the AES and
//! carry-less-multiply units run side by side. Tail (< 8 blocks): the
//! remaining counters and E_K(J0) are encrypted in one interleaved batch, and
//! AAD, tail and length block share the aggregated hash.

use core::arch::x86_64::*;

use super::ghash::{rev, Ghash, Powers};
use super::key_schedule::{encrypt, RoundKeys};
use super::short::{self, keep_first, load_partial, store_partial};
use crate::crypto::{length_block, TAG_LEN};

pub(super) const BATCH: usize = 128;

/// The counter in `rev` form: lane 0 holds the 32-bit block counter, so
/// inc32 is one `paddd`.
#[inline]
#[target_feature(enable = "ssse3,sse2")]
unsafe fn next_counters<const N: usize>(ctr: &mut __m128i) -> [__m128i; N] {
    let mut out = [_mm_setzero_si128(); N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = rev(_mm_add_epi32(*ctr, _mm_set_epi32(0, 0, 0, i as i32 + 1)));
    }
    *ctr = _mm_add_epi32(*ctr, _mm_set_epi32(0, 0, 0, N as i32));
    out
}

/// J0 = nonce || 0^31 || 1 (SP 800-38D §7.1), built in a register.
#[inline]
#[target_feature(enable = "sse4.1,sse2")]
pub(super) unsafe fn load_j0(nonce: &[u8; 12]) -> __m128i {
    let lo = _mm_loadl_epi64(nonce.as_ptr().cast());
    let w = core::ptr::read_unaligned(nonce.as_ptr().add(8).cast::<i32>());
    // Counter 1 big-endian is the bytes 00 00 00 01: 0x0100_0000 read LE.
    _mm_insert_epi32(_mm_insert_epi32(lo, w, 2), 0x0100_0000, 3)
}

/// Encrypts one 128-byte chunk in place; returns its ciphertext blocks in
/// hash order (byte-reversed).
#[inline]
#[target_feature(enable = "aes,ssse3,sse2")]
unsafe fn seal8<const NR: usize>(
    rk: &RoundKeys,
    ctr: &mut __m128i,
    chunk: &mut [u8],
) -> [__m128i; 8] {
    debug_assert_eq!(chunk.len(), BATCH);
    let mut b = next_counters::<8>(ctr);
    encrypt::<8, NR>(rk, &mut b);
    let p = chunk.as_mut_ptr().cast::<__m128i>();
    for (i, x) in b.iter_mut().enumerate() {
        let c = _mm_xor_si128(_mm_loadu_si128(p.add(i)), *x);
        _mm_storeu_si128(p.add(i), c);
        *x = rev(c);
    }
    b
}

/// Loads the 8 ciphertext blocks of a chunk in hash order.
#[inline]
#[target_feature(enable = "ssse3,sse2")]
unsafe fn load8_rev(chunk: &[u8]) -> [__m128i; 8] {
    debug_assert_eq!(chunk.len(), BATCH);
    let p = chunk.as_ptr().cast::<__m128i>();
    let mut out = [_mm_setzero_si128(); 8];
    for (i, o) in out.iter_mut().enumerate() {
        *o = rev(_mm_loadu_si128(p.add(i)));
    }
    out
}

#[inline]
#[target_feature(enable = "aes,sse2")]
unsafe fn xor8_in_place<const NR: usize>(rk: &RoundKeys, ctr: &mut __m128i, chunk: &mut [u8]) {
    let mut b = next_counters::<8>(ctr);
    encrypt::<8, NR>(rk, &mut b);
    let p = chunk.as_mut_ptr().cast::<__m128i>();
    for (i, x) in b.iter().enumerate() {
        _mm_storeu_si128(p.add(i), _mm_xor_si128(_mm_loadu_si128(p.add(i)), *x));
    }
}

/// Up to 7 whole blocks plus a partial one, and E_K(J0): `M` = blocks + 1
/// AES blocks in one batch. Returns E_K(J0).
#[inline]
#[target_feature(enable = "aes,pclmulqdq,ssse3,sse2")]
unsafe fn tail<const M: usize, const NR: usize, const OPEN: bool>(
    rk: &RoundKeys,
    ctr: &mut __m128i,
    j0: __m128i,
    data: &mut [u8],
    gh: &mut Ghash<'_>,
) -> __m128i {
    let mut b = next_counters::<M>(ctr);
    // Slot 0 carries J0 instead of a counter; the others shift by one.
    let mut ks = [j0; M];
    ks[1..].copy_from_slice(&b[..M - 1]);
    b = ks;
    encrypt::<M, NR>(rk, &mut b);
    for (chunk, k) in data.chunks_mut(16).zip(b.iter().skip(1)) {
        let l = chunk.len();
        if l == 16 {
            let p = chunk.as_mut_ptr().cast::<__m128i>();
            let x = _mm_loadu_si128(p);
            let y = _mm_xor_si128(x, *k);
            _mm_storeu_si128(p, y);
            gh.push(if OPEN { x } else { y });
        } else {
            let x = load_partial(chunk);
            let y = _mm_xor_si128(x, *k);
            store_partial(chunk, y);
            // GHASH sees the ciphertext zero-padded, not keystream bytes.
            gh.push(if OPEN { x } else { keep_first(y, l) });
        }
    }
    b[0]
}

#[inline]
#[target_feature(enable = "aes,pclmulqdq,ssse3,sse2")]
pub(super) unsafe fn finish_tail<const NR: usize, const OPEN: bool>(
    rk: &RoundKeys,
    ctr: &mut __m128i,
    j0: __m128i,
    data: &mut [u8],
    aad_len: usize,
    total_len: usize,
    mut gh: Ghash<'_>,
) -> [u8; TAG_LEN] {
    let ek_j0 = match data.len().div_ceil(16) {
        0 => tail::<1, NR, OPEN>(rk, ctr, j0, data, &mut gh),
        1 => tail::<2, NR, OPEN>(rk, ctr, j0, data, &mut gh),
        2 => tail::<3, NR, OPEN>(rk, ctr, j0, data, &mut gh),
        3 => tail::<4, NR, OPEN>(rk, ctr, j0, data, &mut gh),
        4 => tail::<5, NR, OPEN>(rk, ctr, j0, data, &mut gh),
        5 => tail::<6, NR, OPEN>(rk, ctr, j0, data, &mut gh),
        6 => tail::<7, NR, OPEN>(rk, ctr, j0, data, &mut gh),
        7 => tail::<8, NR, OPEN>(rk, ctr, j0, data, &mut gh),
        _ => tail::<9, NR, OPEN>(rk, ctr, j0, data, &mut gh),
    };
    let lens = length_block(aad_len, total_len);
    gh.push(_mm_loadu_si128(lens.as_ptr().cast()));
    let s = gh.finish();
    let mut tag = [0u8; TAG_LEN];
    _mm_storeu_si128(tag.as_mut_ptr().cast(), _mm_xor_si128(s, ek_j0));
    tag
}

/// # Safety
/// The CPU must support AES-NI, PCLMULQDQ, SSSE3 and SSE4.1.
#[target_feature(enable = "aes,pclmulqdq,ssse3,sse4.1,sse2")]
pub(super) unsafe fn seal<const NR: usize>(
    rk: &RoundKeys,
    powers: &Powers,
    nonce: &[u8; 12],
    aad: &[u8],
    data: &mut [u8],
) -> [u8; TAG_LEN] {
    let j0 = load_j0(nonce);
    if data.len() <= short::MAX_DATA && aad.len() <= short::MAX_AAD {
        return short::run::<NR, false>(rk, powers, j0, aad, data);
    }
    let mut ctr = rev(j0);
    let mut gh = Ghash::new(powers);
    gh.push_padded(aad);
    let total = data.len();
    let (bulk, rest) = data.split_at_mut(total - total % BATCH);
    let mut chunks = bulk.chunks_exact_mut(BATCH);
    if let Some(first) = chunks.next() {
        gh.flush();
        let mut prev = seal8::<NR>(rk, &mut ctr, first);
        for chunk in chunks {
            gh.hash8(&prev);
            prev = seal8::<NR>(rk, &mut ctr, chunk);
        }
        gh.hash8(&prev);
    }
    finish_tail::<NR, false>(rk, &mut ctr, j0, rest, aad.len(), total, gh)
}

/// Decrypts in place and returns the computed tag (the caller compares).
///
/// # Safety
/// The CPU must support AES-NI, PCLMULQDQ, SSSE3 and SSE4.1.
#[target_feature(enable = "aes,pclmulqdq,ssse3,sse4.1,sse2")]
pub(super) unsafe fn open<const NR: usize>(
    rk: &RoundKeys,
    powers: &Powers,
    nonce: &[u8; 12],
    aad: &[u8],
    data: &mut [u8],
) -> [u8; TAG_LEN] {
    let j0 = load_j0(nonce);
    if data.len() <= short::MAX_DATA && aad.len() <= short::MAX_AAD {
        return short::run::<NR, true>(rk, powers, j0, aad, data);
    }
    let mut ctr = rev(j0);
    let mut gh = Ghash::new(powers);
    gh.push_padded(aad);
    let total = data.len();
    let (bulk, rest) = data.split_at_mut(total - total % BATCH);
    if !bulk.is_empty() {
        gh.flush();
    }
    for chunk in bulk.chunks_exact_mut(BATCH) {
        let c = load8_rev(chunk);
        gh.hash8(&c);
        xor8_in_place::<NR>(rk, &mut ctr, chunk);
    }
    finish_tail::<NR, true>(rk, &mut ctr, j0, rest, aad.len(), total, gh)
}
