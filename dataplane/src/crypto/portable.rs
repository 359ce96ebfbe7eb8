//! Portable AES-GCM: the `aes` crate as a CTR keystream plus the `ghash`
//! crate (SP 800-38D §7). Used where AES-NI/PCLMULQDQ are missing, and as
//! the reference the fast kernel is tested against.

use aes::cipher::{BlockCipherEncrypt, KeyInit};
use aes::{Aes128, Aes256};
use ghash::universal_hash::UniversalHash;
use ghash::GHash;

use super::{counter_block, length_block, TAG_LEN};

type Block = aes::Block;

/// Keystream blocks generated per `encrypt_blocks` call: enough for the
/// `aes` crate's own parallel pipeline, small enough for the stack.
const BATCH: usize = 8;

enum Cipher {
    A128(Aes128),
    A256(Aes256),
}

impl Cipher {
    fn encrypt_blocks(&self, blocks: &mut [Block]) {
        match self {
            Cipher::A128(c) => c.encrypt_blocks(blocks),
            Cipher::A256(c) => c.encrypt_blocks(blocks),
        }
    }
}

/// Round keys (zeroized by the `aes` crate on drop) and the GHASH state
/// keyed with H (zeroized by `ghash` on drop).
pub(super) struct PortableKey {
    cipher: Cipher,
    ghash: GHash,
}

impl PortableKey {
    pub(super) fn new(key: &[u8]) -> Option<Box<PortableKey>> {
        let cipher = match key.len() {
            16 => Cipher::A128(Aes128::new_from_slice(key).ok()?),
            32 => Cipher::A256(Aes256::new_from_slice(key).ok()?),
            _ => return None,
        };
        let mut h = [Block::default()];
        cipher.encrypt_blocks(&mut h);
        let ghash = GHash::new(&h[0]);
        Some(Box::new(PortableKey { cipher, ghash }))
    }

    /// CTR keystream from counter 2 on (counter 1 masks the tag).
    fn apply_keystream(&self, nonce: &[u8; 12], data: &mut [u8]) {
        let mut ctr: u32 = 2;
        let mut ks = [Block::default(); BATCH];
        for chunk in data.chunks_mut(16 * BATCH) {
            let n = chunk.len().div_ceil(16);
            let ks = &mut ks[..n];
            for b in ks.iter_mut() {
                *b = counter_block(nonce, ctr).into();
                ctr = ctr.wrapping_add(1);
            }
            self.cipher.encrypt_blocks(ks);
            for (d, k) in chunk.chunks_mut(16).zip(ks.iter()) {
                for (x, y) in d.iter_mut().zip(k.iter()) {
                    *x ^= y;
                }
            }
        }
    }

    fn tag(&self, nonce: &[u8; 12], aad: &[u8], ciphertext: &[u8]) -> [u8; TAG_LEN] {
        let mut g = self.ghash.clone();
        g.update_padded(aad);
        g.update_padded(ciphertext);
        g.update(&[length_block(aad.len(), ciphertext.len()).into()]);
        let s = g.finalize();
        let mut j0 = [Block::from(counter_block(nonce, 1))];
        self.cipher.encrypt_blocks(&mut j0);
        let mut tag = [0u8; TAG_LEN];
        for ((t, a), b) in tag.iter_mut().zip(s.iter()).zip(j0[0].iter()) {
            *t = a ^ b;
        }
        tag
    }

    pub(super) fn seal(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; TAG_LEN] {
        self.apply_keystream(nonce, data);
        self.tag(nonce, aad, data)
    }

    /// Decrypts and returns the computed tag; the caller compares.
    pub(super) fn open(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = self.tag(nonce, aad, data);
        self.apply_keystream(nonce, data);
        tag
    }
}
