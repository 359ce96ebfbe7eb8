//! GHASH with PCLMULQDQ, computed as POLYVAL (RFC 8452 Appendix A):
//! GHASH(H, X) = rev(POLYVAL(mulX(rev(H)), rev(X))), where rev() is one
//! `pshufb`. Products use the R/F method (4 carry-less multiplies per block,
//! one multiply per reduction, eprint 2025/2171, as in the `polyval` crate),
//! and blocks are aggregated 8 at a time against H^8..H^1 so a whole batch
//! costs a single reduction (Intel's CLMUL/GCM white paper, §"aggregated
//! reduction").

use core::arch::x86_64::*;

/// x^63 + x^62 + x^57: the high word of POLYVAL's reduction polynomial.
const P1: u64 = 0xC200_0000_0000_0000;

/// How many powers of H are kept: 8 for the bulk batches, a 9th so a
/// final 8-block tail plus the length block still take one reduction.
pub(super) const POWERS: usize = 9;

/// H^1..H^9 (index 0 = H^1) and their R/F companions D = swap(H) ^ H0*P1.
pub(super) struct Powers {
    pub(super) h: [__m128i; POWERS],
    pub(super) d: [__m128i; POWERS],
}

#[inline]
#[target_feature(enable = "ssse3")]
pub(super) unsafe fn rev(x: __m128i) -> __m128i {
    _mm_shuffle_epi8(
        x,
        _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
    )
}

#[inline]
#[target_feature(enable = "pclmulqdq,sse2")]
unsafe fn companion(h: __m128i) -> __m128i {
    #[allow(clippy::cast_possible_wrap)]
    let p = _mm_set_epi64x(P1 as i64, 0);
    _mm_xor_si128(_mm_shuffle_epi32(h, 0x4e), _mm_clmulepi64_si128(h, p, 0x10))
}

/// Adds the unreduced product m * H^k into (r, f).
#[inline]
#[target_feature(enable = "pclmulqdq,sse2")]
pub(super) unsafe fn mul_acc(r: &mut __m128i, f: &mut __m128i, m: __m128i, h: __m128i, d: __m128i) {
    *r = _mm_xor_si128(*r, _mm_clmulepi64_si128(m, d, 0x10));
    *r = _mm_xor_si128(*r, _mm_clmulepi64_si128(m, h, 0x11));
    *f = _mm_xor_si128(*f, _mm_clmulepi64_si128(m, d, 0x00));
    *f = _mm_xor_si128(*f, _mm_clmulepi64_si128(m, h, 0x01));
}

/// R ^ F1 ^ x^64*F0 ^ P1*F0: the product reduced modulo POLYVAL's polynomial.
#[inline]
#[target_feature(enable = "pclmulqdq,sse2")]
pub(super) unsafe fn reduce(r: __m128i, f: __m128i) -> __m128i {
    #[allow(clippy::cast_possible_wrap)]
    let p1 = _mm_set_epi64x(0, P1 as i64);
    let x = _mm_xor_si128(r, _mm_srli_si128(f, 8));
    let x = _mm_xor_si128(x, _mm_slli_si128(f, 8));
    _mm_xor_si128(x, _mm_clmulepi64_si128(f, p1, 0x00))
}

#[inline]
#[target_feature(enable = "pclmulqdq,sse2")]
unsafe fn mul(m: __m128i, h: __m128i, d: __m128i) -> __m128i {
    let mut r = _mm_setzero_si128();
    let mut f = _mm_setzero_si128();
    mul_acc(&mut r, &mut f, m, h, d);
    reduce(r, f)
}

impl Powers {
    /// All zero: no key yet.
    pub(super) fn zeroed() -> Powers {
        // SAFETY: setzero needs only SSE2, which x86-64 always has.
        let z = unsafe { _mm_setzero_si128() };
        Powers {
            h: [z; POWERS],
            d: [z; POWERS],
        }
    }

    /// Fills in the powers of the GHASH key H = E_K(0^128), given in GCM
    /// byte order, where they lie.
    #[target_feature(enable = "pclmulqdq,ssse3,sse2")]
    pub(super) unsafe fn fill(&mut self, h_gcm: &[u8; 16]) {
        // mulX_POLYVAL(rev(H)); rev(H) read little-endian is H read big-endian.
        let v = u128::from_be_bytes(*h_gcm);
        let top = v >> 127;
        let mut x = (v << 1) ^ top ^ (top << 127) ^ (top << 126) ^ (top << 121);
        let mut bytes = x.to_le_bytes();
        let h1 = _mm_loadu_si128(bytes.as_ptr().cast());
        zeroize::Zeroize::zeroize(&mut x);
        zeroize::Zeroize::zeroize(&mut bytes);

        self.h[0] = h1;
        self.d[0] = companion(h1);
        for i in 1..POWERS {
            let hi = mul(self.h[i - 1], h1, self.d[0]);
            self.h[i] = hi;
            self.d[i] = companion(hi);
        }
    }
}

/// GHASH state for one message: the accumulator plus up to 8 blocks
/// (already byte-reversed) waiting to be folded in with one reduction.
pub(super) struct Ghash<'k> {
    powers: &'k Powers,
    acc: __m128i,
    pending: [__m128i; 8],
    n: usize,
}

impl<'k> Ghash<'k> {
    #[inline]
    #[target_feature(enable = "sse2")]
    pub(super) unsafe fn new(powers: &'k Powers) -> Ghash<'k> {
        Ghash {
            powers,
            acc: _mm_setzero_si128(),
            pending: [_mm_setzero_si128(); 8],
            n: 0,
        }
    }

    /// Queues one block given in GCM byte order.
    #[inline]
    #[target_feature(enable = "pclmulqdq,ssse3,sse2")]
    pub(super) unsafe fn push(&mut self, block: __m128i) {
        if self.n == 8 {
            self.flush();
        }
        // n < 8 here: flush() resets it.
        if let Some(slot) = self.pending.get_mut(self.n) {
            *slot = rev(block);
        }
        self.n += 1;
    }

    /// Queues `bytes` zero-padded to a whole number of blocks.
    #[inline]
    #[target_feature(enable = "pclmulqdq,ssse3,sse2")]
    pub(super) unsafe fn push_padded(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(16);
        for c in &mut chunks {
            self.push(_mm_loadu_si128(c.as_ptr().cast()));
        }
        let tail = chunks.remainder();
        if !tail.is_empty() {
            self.push(super::tail::load_partial(tail));
        }
    }

    /// Folds the pending blocks into the accumulator: X_i * H^(n-i), one
    /// reduction for all of them.
    #[inline]
    #[target_feature(enable = "pclmulqdq,ssse3,sse2")]
    pub(super) unsafe fn flush(&mut self) {
        let n = self.n;
        if n == 0 {
            return;
        }
        let mut r = _mm_setzero_si128();
        let mut f = _mm_setzero_si128();
        let mut first = true;
        for (i, m) in self.pending.iter().take(n).enumerate() {
            let m = if first {
                first = false;
                _mm_xor_si128(*m, self.acc)
            } else {
                *m
            };
            let k = n - 1 - i;
            mul_acc(&mut r, &mut f, m, self.powers.h[k], self.powers.d[k]);
        }
        self.acc = reduce(r, f);
        self.n = 0;
    }

    /// Hashes 8 byte-reversed blocks straight into the accumulator (the
    /// stitched loop's path; nothing may be pending).
    #[inline]
    #[target_feature(enable = "pclmulqdq,sse2")]
    pub(super) unsafe fn hash8(&mut self, blocks: &[__m128i; 8]) {
        debug_assert_eq!(self.n, 0);
        let p = self.powers;
        let mut r = _mm_setzero_si128();
        let mut f = _mm_setzero_si128();
        mul_acc(
            &mut r,
            &mut f,
            _mm_xor_si128(blocks[0], self.acc),
            p.h[7],
            p.d[7],
        );
        mul_acc(&mut r, &mut f, blocks[1], p.h[6], p.d[6]);
        mul_acc(&mut r, &mut f, blocks[2], p.h[5], p.d[5]);
        mul_acc(&mut r, &mut f, blocks[3], p.h[4], p.d[4]);
        mul_acc(&mut r, &mut f, blocks[4], p.h[3], p.d[3]);
        mul_acc(&mut r, &mut f, blocks[5], p.h[2], p.d[2]);
        mul_acc(&mut r, &mut f, blocks[6], p.h[1], p.d[1]);
        mul_acc(&mut r, &mut f, blocks[7], p.h[0], p.d[0]);
        self.acc = reduce(r, f);
    }

    /// The accumulator, for kernels that hash whole batches themselves
    /// (nothing may be pending).
    #[inline]
    pub(super) fn acc(&self) -> __m128i {
        debug_assert_eq!(self.n, 0);
        self.acc
    }

    #[inline]
    pub(super) fn set_acc(&mut self, acc: __m128i) {
        debug_assert_eq!(self.n, 0);
        self.acc = acc;
    }
}
