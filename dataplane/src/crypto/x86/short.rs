//! Short packets (≤ 96 bytes of data, ≤ 16 bytes of AAD: every ESP AAD,
//! RFC 4106 §5): one straight-line pass with everything known at compile
//! time except the last block's length. E_K(J0) and the counters go through
//! AES as one interleaved batch; the AAD block is multiplied while AES runs;
//! AAD, data and length blocks share one reduction (at most 8 blocks, so
//! H^1..H^8 suffice). No stack arrays indexed at run time, no memcpy calls.

use core::arch::x86_64::*;

use super::ghash::{mul_acc, reduce, rev, Powers};
use super::key_schedule::{encrypt, RoundKeys};
use crate::crypto::{length_block, TAG_LEN};

/// Largest data length this path takes: 6 blocks + AAD + length = 8.
pub(super) const MAX_DATA: usize = 96;
pub(super) const MAX_AAD: usize = 16;

/// Loads `src.len()` ≤ 16 bytes zero-extended, with fixed-size moves only.
#[inline]
#[target_feature(enable = "sse2")]
pub(super) unsafe fn load_partial(src: &[u8]) -> __m128i {
    let n = src.len();
    if n >= 16 {
        return _mm_loadu_si128(src.as_ptr().cast());
    }
    let mut buf = [0u8; 16];
    let (s, d) = (src.as_ptr(), buf.as_mut_ptr());
    let mut o = 0;
    if n & 8 != 0 {
        core::ptr::copy_nonoverlapping(s, d, 8);
        o = 8;
    }
    if n & 4 != 0 {
        core::ptr::copy_nonoverlapping(s.add(o), d.add(o), 4);
        o += 4;
    }
    if n & 2 != 0 {
        core::ptr::copy_nonoverlapping(s.add(o), d.add(o), 2);
        o += 2;
    }
    if n & 1 != 0 {
        *d.add(o) = *s.add(o);
    }
    _mm_loadu_si128(buf.as_ptr().cast())
}

/// Stores the first `dst.len()` ≤ 16 bytes of `v`.
#[inline]
#[target_feature(enable = "sse2")]
pub(super) unsafe fn store_partial(dst: &mut [u8], v: __m128i) {
    let n = dst.len();
    if n >= 16 {
        _mm_storeu_si128(dst.as_mut_ptr().cast(), v);
        return;
    }
    let mut buf = [0u8; 16];
    _mm_storeu_si128(buf.as_mut_ptr().cast(), v);
    let (s, d) = (buf.as_ptr(), dst.as_mut_ptr());
    let mut o = 0;
    if n & 8 != 0 {
        core::ptr::copy_nonoverlapping(s, d, 8);
        o = 8;
    }
    if n & 4 != 0 {
        core::ptr::copy_nonoverlapping(s.add(o), d.add(o), 4);
        o += 4;
    }
    if n & 2 != 0 {
        core::ptr::copy_nonoverlapping(s.add(o), d.add(o), 2);
        o += 2;
    }
    if n & 1 != 0 {
        *d.add(o) = *s.add(o);
    }
}

/// Keeps the first `n` bytes of `v`, zeroes the rest.
#[inline]
#[target_feature(enable = "sse2")]
pub(super) unsafe fn keep_first(v: __m128i, n: usize) -> __m128i {
    const MASKS: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let start = 16 - n.min(16);
    _mm_and_si128(v, _mm_loadu_si128(MASKS.as_ptr().add(start).cast()))
}

/// `M` = data blocks + 1 (for J0), 1..=7.
#[inline]
#[target_feature(enable = "aes,pclmulqdq,ssse3,sse2")]
unsafe fn short<const M: usize, const NR: usize, const OPEN: bool>(
    rk: &RoundKeys,
    p: &Powers,
    j0: __m128i,
    aad: &[u8],
    data: &mut [u8],
) -> [u8; TAG_LEN] {
    let n = M - 1;
    debug_assert!(n <= 6 && data.len().div_ceil(16) == n && aad.len() <= MAX_AAD);
    let ctr = rev(j0);
    let mut b = [j0; M];
    for (i, x) in b.iter_mut().enumerate().skip(1) {
        *x = rev(_mm_add_epi32(ctr, _mm_set_epi32(0, 0, 0, i as i32)));
    }
    let mut r = _mm_setzero_si128();
    let mut f = _mm_setzero_si128();
    // Blocks in order: [AAD], data 0..n, lengths; block k of T gets H^(T-k).
    if !aad.is_empty() {
        mul_acc(
            &mut r,
            &mut f,
            rev(load_partial(aad)),
            p.h[n + 1],
            p.d[n + 1],
        );
    }
    let lens = length_block(aad.len(), data.len());
    let lens = _mm_loadu_si128(lens.as_ptr().cast());
    mul_acc(&mut r, &mut f, rev(lens), p.h[0], p.d[0]);

    encrypt::<M, NR>(rk, &mut b);

    let len = data.len();
    let ptr = data.as_mut_ptr().cast::<__m128i>();
    for i in 0..n {
        let k = n - i;
        if i + 1 < n || len == 16 * n {
            let x = _mm_loadu_si128(ptr.add(i));
            let y = _mm_xor_si128(x, b[i + 1]);
            _mm_storeu_si128(ptr.add(i), y);
            mul_acc(
                &mut r,
                &mut f,
                rev(if OPEN { x } else { y }),
                p.h[k],
                p.d[k],
            );
        } else {
            let last = data.get_mut(16 * i..).unwrap_or_default();
            let l = last.len();
            let x = load_partial(last);
            let y = _mm_xor_si128(x, b[i + 1]);
            store_partial(last, y);
            let c = if OPEN { x } else { keep_first(y, l) };
            mul_acc(&mut r, &mut f, rev(c), p.h[k], p.d[k]);
        }
    }
    let s = rev(reduce(r, f));
    let mut tag = [0u8; TAG_LEN];
    _mm_storeu_si128(tag.as_mut_ptr().cast(), _mm_xor_si128(s, b[0]));
    tag
}

/// Seals or opens a packet with `data.len() <= MAX_DATA` and
/// `aad.len() <= MAX_AAD`.
#[inline]
#[target_feature(enable = "aes,pclmulqdq,ssse3,sse2")]
pub(super) unsafe fn run<const NR: usize, const OPEN: bool>(
    rk: &RoundKeys,
    p: &Powers,
    j0: __m128i,
    aad: &[u8],
    data: &mut [u8],
) -> [u8; TAG_LEN] {
    match data.len().div_ceil(16) {
        0 => short::<1, NR, OPEN>(rk, p, j0, aad, data),
        1 => short::<2, NR, OPEN>(rk, p, j0, aad, data),
        2 => short::<3, NR, OPEN>(rk, p, j0, aad, data),
        3 => short::<4, NR, OPEN>(rk, p, j0, aad, data),
        4 => short::<5, NR, OPEN>(rk, p, j0, aad, data),
        5 => short::<6, NR, OPEN>(rk, p, j0, aad, data),
        _ => short::<7, NR, OPEN>(rk, p, j0, aad, data),
    }
}
