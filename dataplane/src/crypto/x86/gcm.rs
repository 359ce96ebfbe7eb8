//! The stitched AES-GCM kernel (SP 800-38D §7) for AES-NI + PCLMULQDQ.
//!
//! Bulk: 8 counter blocks are encrypted while the previous 8 ciphertext
//! blocks are hashed (seal) or while the same 8 are hashed (open, where the
//! ciphertext is the input); the two have no data dependency, so the AES and
//! carry-less-multiply units run side by side. The last < 8 blocks, the
//! length block and the tag are `tail::finish`, which also takes whole
//! packets that are short enough.

use core::arch::x86_64::*;

use super::ghash::{rev, Ghash, Powers};
use super::key_schedule::{encrypt, RoundKeys};
use super::tail;
use crate::crypto::TAG_LEN;

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
    // Three 4-byte loads: ESP builds the nonce just before as a 4-byte salt
    // and an 8-byte IV, and a load must lie within one store to be
    // forwarded from it; an 8-byte load across the two would stall.
    let w = |i: usize| core::ptr::read_unaligned(nonce.as_ptr().add(4 * i).cast::<i32>());
    // Counter 1 big-endian is the bytes 00 00 00 01: 0x0100_0000 read LE.
    _mm_set_epi32(0x0100_0000, w(2), w(1), w(0))
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

/// Decrypts one 128-byte chunk in place; returns its ciphertext blocks in
/// hash order (byte-reversed). Each block is loaded once.
#[inline]
#[target_feature(enable = "aes,ssse3,sse2")]
unsafe fn open8<const NR: usize>(
    rk: &RoundKeys,
    ctr: &mut __m128i,
    chunk: &mut [u8],
) -> [__m128i; 8] {
    debug_assert_eq!(chunk.len(), BATCH);
    let p = chunk.as_mut_ptr().cast::<__m128i>();
    let mut c = [_mm_setzero_si128(); 8];
    for (i, x) in c.iter_mut().enumerate() {
        *x = _mm_loadu_si128(p.add(i));
    }
    let mut b = next_counters::<8>(ctr);
    encrypt::<8, NR>(rk, &mut b);
    for (i, (k, x)) in b.iter().zip(c.iter_mut()).enumerate() {
        _mm_storeu_si128(p.add(i), _mm_xor_si128(*x, *k));
        *x = rev(*x);
    }
    c
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
    let mut gh = Ghash::new(powers);
    gh.push_padded(aad);
    gh.flush();
    let total = data.len();
    let (bulk, rest) = data.split_at_mut(total - total % BATCH);
    let mut chunks = bulk.chunks_exact_mut(BATCH);
    if let Some(first) = chunks.next() {
        let mut prev = seal8::<NR>(rk, &mut ctr, first);
        for chunk in chunks {
            gh.hash8(&prev);
            prev = seal8::<NR>(rk, &mut ctr, chunk);
        }
        gh.hash8(&prev);
    }
    let acc = Some(gh.acc());
    tail::finish::<NR, false>(rk, powers, j0, ctr, acc, &[], rest, aad.len(), total)
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
    let mut gh = Ghash::new(powers);
    gh.push_padded(aad);
    gh.flush();
    let total = data.len();
    let (bulk, rest) = data.split_at_mut(total - total % BATCH);
    for chunk in bulk.chunks_exact_mut(BATCH) {
        let c = open8::<NR>(rk, &mut ctr, chunk);
        gh.hash8(&c);
    }
    let acc = Some(gh.acc());
    tail::finish::<NR, true>(rk, powers, j0, ctr, acc, &[], rest, aad.len(), total)
}
