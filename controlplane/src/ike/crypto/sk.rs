//! The SK payload with AES-GCM-16 (RFC 5282): IV (8) | ciphertext | ICV (16);
//! nonce = salt (4, the tail of SK_e) | IV; AAD = IKE header through the SK
//! payload's generic header (RFC 5282 §5.1).

use dataplane::crypto::{AesGcm, TAG_LEN};

use super::{CryptoError, Secret};
use crate::ike::wire::{
    chain_type, emit_chain, parse_chain, set_len, Header, Message, Payload, PayloadType,
    MESSAGE_ROOM,
};

const IV_LEN: usize = 8;

/// One direction of SK protection (SK_ei or SK_er).
///
/// Holds the key, not its expanded schedule: the data plane's AES-GCM
/// keeps about 1.3 KiB of round keys and GHASH powers, and a gateway holds
/// two SK keys for each of its 100,000 IKE SAs, which exchange a message
/// now and then. Expanding the key per message costs about a microsecond.
pub struct SkCipher {
    key: Secret,
    salt: [u8; 4],
}

impl std::fmt::Debug for SkCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SkCipher(AES-GCM-{})", self.key.as_bytes().len() * 8)
    }
}

impl SkCipher {
    /// `sk_e` is the AES key followed by the 4-byte salt.
    pub fn new(sk_e: &Secret) -> Result<SkCipher, CryptoError> {
        let b = sk_e.as_bytes();
        let n = b.len();
        if n != 20 && n != 36 {
            return Err(CryptoError::KeyLength(n));
        }
        let (key, salt) = b.split_at(n - 4);
        AesGcm::new(key).map_err(|_| CryptoError::KeyLength(n))?;
        let mut s = [0; 4];
        s.copy_from_slice(salt);
        Ok(SkCipher {
            key: Secret::from_slice(key),
            salt: s,
        })
    }

    /// The expanded key for one message, on the heap: expanded on the stack
    /// it would leave its round keys behind there (see `dataplane::crypto`).
    fn aead(&self) -> Box<AesGcm> {
        // The length was checked when the SkCipher was made.
        AesGcm::new_boxed(self.key.as_bytes()).expect("AES key length checked in SkCipher::new")
    }

    fn nonce(&self, iv: &[u8; IV_LEN]) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(&self.salt);
        n[4..].copy_from_slice(iv);
        n
    }

    /// Emits `header` with one SK payload holding `inner`. The IV must never
    /// repeat under one key: callers pass a per-SA counter. The inner
    /// payloads are written into the message and encrypted where they lie:
    /// no second buffer to grow, copy, or leave plaintext in.
    pub fn seal(&self, header: &Header, inner: &[Payload], iv: u64) -> Vec<u8> {
        let mut h = header.clone();
        h.next_payload = PayloadType::SK;
        let mut out = Vec::with_capacity(MESSAGE_ROOM);
        h.emit(&mut out);
        let sk_start = out.len();
        out.extend_from_slice(&[chain_type(inner).0, 0, 0, 0]);
        let aad_end = out.len();
        let iv = iv.to_be_bytes();
        out.extend_from_slice(&iv);
        let body_start = out.len();
        emit_chain(inner, &mut out);
        out.push(0); // Pad Length: GCM needs no padding (RFC 5282 §3).

        // The lengths count the tag that the seal appends; the AAD (header
        // and SK header) must hold them before it is sealed.
        let length = out.len() + TAG_LEN;
        Header::patch_length(&mut out, length);
        set_len(&mut out, sk_start, length - sk_start);
        let (aad, rest) = out.split_at_mut(aad_end);
        let data = rest.get_mut(IV_LEN..).unwrap_or_default();
        let tag = self.aead().seal_in_place(&self.nonce(&iv), aad, data);
        debug_assert_eq!(body_start, aad_end + IV_LEN);
        out.extend_from_slice(&tag);
        debug_assert_eq!(out.len(), length);
        out
    }

    /// Opens the SK payload of `msg`, parsed from `raw`, into its inner payloads.
    pub fn open(&self, raw: &[u8], msg: &Message) -> Result<Vec<Payload>, CryptoError> {
        let Some(Payload::Sk(sk)) = msg.payloads.last() else {
            return Err(CryptoError::NoSk);
        };
        let aad_len = raw
            .len()
            .checked_sub(sk.body.len())
            .ok_or(CryptoError::MalformedSk)?;
        let aad = raw.get(..aad_len).ok_or(CryptoError::MalformedSk)?;
        if sk.body.len() < IV_LEN + 1 + TAG_LEN {
            return Err(CryptoError::MalformedSk);
        }
        let (iv, rest) = sk.body.split_at(IV_LEN);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        let iv: [u8; IV_LEN] = iv.try_into().map_err(|_| CryptoError::MalformedSk)?;
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| CryptoError::MalformedSk)?;
        let mut plain = zeroize::Zeroizing::new(ct.to_vec());
        self.aead()
            .open_in_place(&self.nonce(&iv), aad, &mut plain, &tag)
            .map_err(|_| CryptoError::IntegrityCheckFailed)?;
        let (&pad_len, body) = plain.split_last().ok_or(CryptoError::MalformedSk)?;
        let end = body
            .len()
            .checked_sub(usize::from(pad_len))
            .ok_or(CryptoError::MalformedSk)?;
        let chain = body.get(..end).ok_or(CryptoError::MalformedSk)?;
        parse_chain(sk.first_inner, chain).map_err(CryptoError::Inner)
    }
}
