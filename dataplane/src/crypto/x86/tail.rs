//! The end of every packet, and all of a short one (≤ 96 bytes of data,
//! ≤ 16 bytes of AAD: every ESP AAD, RFC 4106 §5): one straight-line pass,
//! unrolled for the block count, with only the last block's length known at
//! run time. E_K(J0) and the counters go through AES as one interleaved
//! batch; the AAD block, the length block and the incoming accumulator are
//! multiplied while AES runs; everything shares one reduction (at most 9
//! blocks: H^1..H^9). No stack arrays indexed at run time, no memcpy calls.

use core::arch::x86_64::*;

use super::ghash::{mul_acc, reduce, rev, Powers, POWERS};
use super::key_schedule::{encrypt, RoundKeys};
use crate::crypto::TAG_LEN;

/// Largest data length this path takes: 6 blocks + AAD + length = 8.
pub(super) const SHORT_MAX_DATA: usize = 96;
pub(super) const SHORT_MAX_AAD: usize = 16;

/// Loads `src.len()` ≤ 16 bytes zero-extended, in loads of at most 4
/// bytes into general registers. Through a stack buffer (small stores, then
/// one 16-byte load), or with 8-byte loads over bytes just written by
/// 4-byte stores (ESP's AAD: SPI, sequence number), the load would span
/// several stores and stall on store forwarding, which costs more than a
/// 64-byte seal's whole AAD block.
#[inline]
#[target_feature(enable = "sse2")]
pub(super) unsafe fn load_partial(src: &[u8]) -> __m128i {
    let n = src.len();
    let p = src.as_ptr();
    if n >= 16 {
        return _mm_loadu_si128(p.cast());
    }
    let word = |i: usize| u64::from(core::ptr::read_unaligned(p.add(4 * i).cast::<u32>()));
    let whole = n / 4;
    let rest = read_le_below_4(p.add(4 * whole), n % 4);
    let (lo, hi) = match whole {
        0 => (rest, 0),
        1 => (word(0) | rest << 32, 0),
        2 => (word(0) | word(1) << 32, rest),
        _ => (word(0) | word(1) << 32, word(2) | rest << 32),
    };
    #[allow(clippy::cast_possible_wrap)]
    _mm_set_epi64x(hi as i64, lo as i64)
}

/// The `n` < 4 bytes at `p` as a little-endian integer.
#[inline]
unsafe fn read_le_below_4(p: *const u8, n: usize) -> u64 {
    let mut v = 0u64;
    if n & 2 != 0 {
        v = u64::from(core::ptr::read_unaligned(p.cast::<u16>()));
    }
    if n & 1 != 0 {
        v |= u64::from(*p.add(n & 2)) << (8 * (n & 2));
    }
    v
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

/// The GCM length block (bit lengths of AAD and data, big-endian, SP
/// 800-38D §7.1) built in a register: through memory, its two 8-byte
/// stores and one 16-byte load would stall on store forwarding.
#[inline]
#[target_feature(enable = "sse2")]
unsafe fn length_block(aad_len: usize, data_len: usize) -> __m128i {
    let be = |n: usize| ((n as u64) * 8).swap_bytes() as i64;
    _mm_set_epi64x(be(data_len), be(aad_len))
}

/// `M` = data blocks + 1 (for J0), 1..=9. `ctr` is the last counter used
/// (in `rev` form), `acc` the GHASH of everything before, `aad` (≤ 16
/// bytes, may be empty) is hashed here as the first block.
#[inline]
#[target_feature(enable = "aes,pclmulqdq,ssse3,sse2")]
#[allow(clippy::too_many_arguments)]
unsafe fn straight<const M: usize, const NR: usize, const OPEN: bool>(
    rk: &RoundKeys,
    p: &Powers,
    j0: __m128i,
    ctr: __m128i,
    acc: Option<__m128i>,
    aad: &[u8],
    data: &mut [u8],
    lens: (usize, usize),
) -> [u8; TAG_LEN] {
    let n = M - 1;
    let has_aad = !aad.is_empty();
    // Blocks hashed here: [AAD], data 0..n, lengths; T of them. The k-th
    // (1-based) gets H^(T+1-k); the incoming accumulator gets H^T.
    let t = usize::from(has_aad) + n + 1;
    debug_assert!(t <= POWERS && data.len().div_ceil(16) == n && aad.len() <= SHORT_MAX_AAD);
    let mut b = [j0; M];
    for (i, x) in b.iter_mut().enumerate().skip(1) {
        *x = rev(_mm_add_epi32(ctr, _mm_set_epi32(0, 0, 0, i as i32)));
    }
    let mut r = _mm_setzero_si128();
    let mut f = _mm_setzero_si128();
    if let Some(acc) = acc {
        mul_acc(&mut r, &mut f, acc, p.h[t - 1], p.d[t - 1]);
    }
    if has_aad {
        mul_acc(
            &mut r,
            &mut f,
            rev(load_partial(aad)),
            p.h[n + 1],
            p.d[n + 1],
        );
    }
    let len_block = length_block(lens.0, lens.1);
    mul_acc(&mut r, &mut f, rev(len_block), p.h[0], p.d[0]);

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
            // GHASH sees the ciphertext zero-padded, not keystream bytes.
            let c = if OPEN { x } else { keep_first(y, l) };
            mul_acc(&mut r, &mut f, rev(c), p.h[k], p.d[k]);
        }
    }
    let s = rev(reduce(r, f));
    let mut tag = [0u8; TAG_LEN];
    _mm_storeu_si128(tag.as_mut_ptr().cast(), _mm_xor_si128(s, b[0]));
    tag
}

/// Finishes a packet: the last `data.len()` < 128 bytes (≤ 96 when `aad`
/// is not empty), the length block and the tag, in one reduction.
/// `aad_len`/`total_len` are the whole message's, for the length block.
#[inline]
#[target_feature(enable = "aes,pclmulqdq,ssse3,sse2")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn finish<const NR: usize, const OPEN: bool>(
    rk: &RoundKeys,
    p: &Powers,
    j0: __m128i,
    ctr: __m128i,
    acc: Option<__m128i>,
    aad: &[u8],
    data: &mut [u8],
    aad_len: usize,
    total_len: usize,
) -> [u8; TAG_LEN] {
    let l = (aad_len, total_len);
    match data.len().div_ceil(16) {
        0 => straight::<1, NR, OPEN>(rk, p, j0, ctr, acc, aad, data, l),
        1 => straight::<2, NR, OPEN>(rk, p, j0, ctr, acc, aad, data, l),
        2 => straight::<3, NR, OPEN>(rk, p, j0, ctr, acc, aad, data, l),
        3 => straight::<4, NR, OPEN>(rk, p, j0, ctr, acc, aad, data, l),
        4 => straight::<5, NR, OPEN>(rk, p, j0, ctr, acc, aad, data, l),
        5 => straight::<6, NR, OPEN>(rk, p, j0, ctr, acc, aad, data, l),
        6 => straight::<7, NR, OPEN>(rk, p, j0, ctr, acc, aad, data, l),
        7 => straight::<8, NR, OPEN>(rk, p, j0, ctr, acc, aad, data, l),
        _ => straight::<9, NR, OPEN>(rk, p, j0, ctr, acc, aad, data, l),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_loads_are_the_bytes_zero_extended() {
        if !is_x86_feature_detected!("sse2") {
            return;
        }
        let src: Vec<u8> = (1..=16).collect();
        for n in 0..=16 {
            let mut want = [0u8; 16];
            want[..n].copy_from_slice(&src[..n]);
            let mut got = [0u8; 16];
            // SAFETY: SSE2 was checked above.
            unsafe { _mm_storeu_si128(got.as_mut_ptr().cast(), load_partial(&src[..n])) };
            assert_eq!(got, want, "{n} bytes");
        }
    }
}
