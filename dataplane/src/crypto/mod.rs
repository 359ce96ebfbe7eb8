//! AES-GCM for ESP (RFC 4106) and IKE's SK payload (RFC 5282).
//!
//! Two backends behind one key type, chosen once per key in [`AesGcm::new`]:
//!
//! - **portable** (`portable`): the `aes` crate's block cipher driven as a
//!   CTR keystream plus the `ghash` crate. Correct everywhere, but the two
//!   crates each make their own pass over the packet and dispatch on CPU
//!   features per call, which caps it near 1.6 GB/s.
//! - **AES-NI + PCLMULQDQ** (`x86`): our own stitched kernel. One pass over
//!   the packet encrypts 8 counter blocks while GHASHing the previous 8
//!   ciphertext blocks with the precomputed powers H^1..H^8 (H^9 for the
//!   tail) and a single reduction per 8 blocks (Intel's CLMUL/GCM white
//!   paper, the approach of OpenSSL's aesni-gcm). Where the CPU has VAES + VPCLMULQDQ (AVX2) the
//!   same kernel runs on 256-bit registers, two blocks per instruction. The
//!   last < 8 blocks of every packet, and all of a short one (≤ 96 bytes
//!   with ESP's 8/12-byte AAD), are one straight-line pass unrolled for the
//!   block count: a 64-byte packet is one interleaved AES batch (counters
//!   plus E_K(J0)) and one GHASH reduction.
//!
//! The round keys (AES-NI key expansion, checked against the `aes` crate in
//! tests) and the GHASH key powers are computed once per key; CPU features
//! are detected once per key too, and the per-packet call is a single
//! `#[target_feature]` function over the whole packet: no detection, no
//! allocation, no setup beyond the counter block. Key material is zeroized on
//! drop and never printed. A key that lives long is expanded where it will
//! stay ([`AesGcm::new_boxed`], and the SAs' constructors through
//! [`AesGcm::unkeyed`] and [`AesGcm::set_key`]): built on the stack and moved,
//! it would leave copies of its round keys behind in dead stack frames.
//! The portable backend cannot avoid that: the `aes` crate returns its
//! key schedule by value.

mod portable;
#[cfg(target_arch = "x86_64")]
mod x86;

/// Errors of key set-up and authenticated decryption.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("AES-GCM key must be 16 or 32 bytes, got {0}")]
    KeyLength(usize),
    #[error("authentication tag mismatch")]
    AuthFailed,
}

/// Length of the GCM authentication tag (ICV) esprit uses: 16 bytes.
pub const TAG_LEN: usize = 16;

/// Length of the GCM nonce (RFC 4106 §4: 4-byte salt + 8-byte IV).
pub const NONCE_LEN: usize = 12;

/// The 32-bit block counter starts at 2 for data (SP 800-38D §7.1).
const MAX_DATA_LEN: u64 = ((1u64 << 32) - 2) * 16;

// The AES-NI key sits inline, so an SA's key shares its allocation and
// its cache lines' neighbourhood: one miss chain per packet, not two.
#[allow(clippy::large_enum_variant)]
enum Inner {
    Portable(Box<portable::PortableKey>),
    #[cfg(target_arch = "x86_64")]
    AesNi(x86::AesNiKey),
}

/// An AES-GCM key with everything precomputed for per-packet use.
///
/// Shared read-only across worker threads (`Send + Sync`). The key comes
/// last, so its unread round keys end the value (see [`AesGcm::unread_tail`]).
#[repr(C)]
pub struct AesGcm {
    key_len: usize,
    inner: Inner,
}

impl AesGcm {
    /// The most [`AesGcm::unread_tail`] can be: what an AES-128 key leaves
    /// unread. An SA's look-ahead leaves this much out without reading the
    /// SA (a cold line) to learn its key length, and asks for it later if
    /// the key turns out to use it.
    pub const SPARE_TAIL: usize = 64;

    /// The fastest backend this CPU supports, for a key of `key_len` bytes
    /// (16: AES-128, 32: AES-256), not keyed yet (all zeros): put it where
    /// it will stay, then [`AesGcm::set_key`].
    pub fn unkeyed(key_len: usize) -> Result<AesGcm, CryptoError> {
        check_key_len(key_len)?;
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = x86::AesNiKey::unkeyed(true) {
            return Ok(AesGcm {
                inner: Inner::AesNi(k),
                key_len,
            });
        }
        Self::new_portable(&[0; 32][..key_len])
    }

    /// Keys this value where it lies (the AES-NI round keys and GHASH
    /// powers are expanded into it). `key` must have the length the value
    /// was made for.
    pub fn set_key(&mut self, key: &[u8]) -> Result<(), CryptoError> {
        if key.len() != self.key_len {
            return Err(CryptoError::KeyLength(key.len()));
        }
        let ok = match &mut self.inner {
            Inner::Portable(k) => match portable::PortableKey::new(key) {
                Some(new) => {
                    *k = new;
                    true
                }
                None => false,
            },
            #[cfg(target_arch = "x86_64")]
            Inner::AesNi(k) => k.set_key(key),
        };
        if ok {
            Ok(())
        } else {
            Err(CryptoError::KeyLength(key.len()))
        }
    }

    /// A key made on the heap and expanded there, for keys that live long
    /// outside an SA (IKE's SK_e).
    pub fn new_boxed(key: &[u8]) -> Result<Box<AesGcm>, CryptoError> {
        let mut b = Box::new(Self::unkeyed(key.len())?);
        b.set_key(key)?;
        Ok(b)
    }

    /// A 16-byte key selects AES-128, a 32-byte key AES-256. Picks the
    /// fastest backend this CPU supports. The key moves with the value:
    /// keys that live long are made with [`AesGcm::new_boxed`] or keyed in
    /// place.
    pub fn new(key: &[u8]) -> Result<AesGcm, CryptoError> {
        let mut g = Self::unkeyed(key.len())?;
        g.set_key(key)?;
        Ok(g)
    }

    /// The portable backend regardless of the CPU: for tests, benchmarks and
    /// reference.
    #[doc(hidden)]
    pub fn new_portable(key: &[u8]) -> Result<AesGcm, CryptoError> {
        check_key_len(key.len())?;
        let k = portable::PortableKey::new(key).ok_or(CryptoError::KeyLength(key.len()))?;
        Ok(AesGcm {
            inner: Inner::Portable(k),
            key_len: key.len(),
        })
    }

    /// One instance per backend this CPU can run, fastest first, the
    /// portable one last: for tests and benchmarks that must cover them all.
    #[doc(hidden)]
    pub fn all_backends(key: &[u8]) -> Result<Vec<AesGcm>, CryptoError> {
        check_key_len(key.len())?;
        let mut out = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if x86::AesNiKey::wide_supported() {
                out.extend(x86::AesNiKey::new(key, true).map(|k| AesGcm {
                    inner: Inner::AesNi(k),
                    key_len: key.len(),
                }));
            }
            out.extend(x86::AesNiKey::new(key, false).map(|k| AesGcm {
                inner: Inner::AesNi(k),
                key_len: key.len(),
            }));
        }
        out.push(Self::new_portable(key)?);
        Ok(out)
    }

    /// Bytes at the end of this value that sealing and opening never read
    /// (an AES-128 key's four spare round keys), so a value that ends with
    /// its key can leave them out when it asks the cache for itself.
    /// At most [`AesGcm::SPARE_TAIL`].
    #[inline]
    pub fn unread_tail(&self) -> usize {
        match &self.inner {
            Inner::Portable(_) => 0,
            #[cfg(target_arch = "x86_64")]
            Inner::AesNi(k) => {
                debug_assert_eq!(
                    std::ptr::from_ref(k).addr() + size_of_val(k),
                    std::ptr::from_ref(self).addr() + size_of::<Self>(),
                    "the AES-NI key ends the value"
                );
                k.unread_tail()
            }
        }
    }

    /// Asks the cache for what of the key an SA's look-ahead left out:
    /// this value's last [`AesGcm::SPARE_TAIL`] bytes if the key reads
    /// them (AES-256), and the portable backend's key behind its pointer.
    #[inline]
    pub fn prefetch_rest(&self) {
        if let Inner::Portable(k) = &self.inner {
            crate::prefetch::prefetch_bytes(&**k, size_of_val(&**k));
        }
        if self.unread_tail() < Self::SPARE_TAIL {
            let end = std::ptr::from_ref(self)
                .cast::<u8>()
                .wrapping_add(size_of::<Self>());
            crate::prefetch::prefetch_bytes(end.wrapping_sub(Self::SPARE_TAIL), Self::SPARE_TAIL);
        }
    }

    /// Key length in bytes (16 or 32).
    pub fn key_len(&self) -> usize {
        self.key_len
    }

    /// Name of the backend serving this key, for logs.
    pub fn backend(&self) -> &'static str {
        match &self.inner {
            Inner::Portable(_) => "portable (aes + ghash crates)",
            #[cfg(target_arch = "x86_64")]
            Inner::AesNi(k) => k.name(),
        }
    }

    /// Encrypts `data` in place and returns the tag.
    ///
    /// `data` is a packet: GCM allows at most 2^32 - 2 blocks (64 GiB) per
    /// nonce (SP 800-38D §5.2.1.1).
    pub fn seal_in_place(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; TAG_LEN] {
        debug_assert!((data.len() as u64) <= MAX_DATA_LEN);
        match &self.inner {
            Inner::Portable(k) => k.seal(nonce, aad, data),
            #[cfg(target_arch = "x86_64")]
            Inner::AesNi(k) => k.seal(nonce, aad, data),
        }
    }

    /// Verifies `tag` and decrypts `data` in place. On error `data` is
    /// unspecified (in practice zeroed) and must be dropped.
    pub fn open_in_place(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        data: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError> {
        debug_assert!((data.len() as u64) <= MAX_DATA_LEN);
        let computed = match &self.inner {
            Inner::Portable(k) => k.open(nonce, aad, data),
            #[cfg(target_arch = "x86_64")]
            Inner::AesNi(k) => k.open(nonce, aad, data),
        };
        if tags_equal(&computed, tag) {
            Ok(())
        } else {
            // Never hand out plaintext that failed authentication.
            data.fill(0);
            Err(CryptoError::AuthFailed)
        }
    }
}

impl core::fmt::Debug for AesGcm {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AesGcm")
            .field("key_len", &self.key_len)
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

fn check_key_len(len: usize) -> Result<(), CryptoError> {
    match len {
        16 | 32 => Ok(()),
        n => Err(CryptoError::KeyLength(n)),
    }
}

/// Constant-time tag comparison: no early exit on the first differing byte.
fn tags_equal(a: &[u8; TAG_LEN], b: &[u8; TAG_LEN]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    core::hint::black_box(diff) == 0
}

/// The GCM length block: bit lengths of AAD and ciphertext (SP 800-38D §7.1).
fn length_block(aad_len: usize, data_len: usize) -> [u8; 16] {
    let mut b = [0u8; 16];
    let (a, c) = b.split_at_mut(8);
    a.copy_from_slice(&((aad_len as u64) * 8).to_be_bytes());
    c.copy_from_slice(&((data_len as u64) * 8).to_be_bytes());
    b
}

/// J0 = nonce || 0^31 || 1 for 96-bit nonces (SP 800-38D §7.1).
fn counter_block(nonce: &[u8; 12], ctr: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    let (n, c) = b.split_at_mut(12);
    n.copy_from_slice(nonce);
    c.copy_from_slice(&ctr.to_be_bytes());
    b
}

#[cfg(test)]
mod tests;
