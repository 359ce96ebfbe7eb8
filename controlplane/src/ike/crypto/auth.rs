//! AUTH with a pre-shared key (RFC 7296 §2.15).

use super::secret::ct_eq;
use super::{Prf, Secret};

const KEY_PAD: &[u8] = b"Key Pad for IKEv2";

/// `<SignedOctets>` = RealMessage | NonceData of the peer | prf(SK_p, IDx'), where
/// `message` is this side's first message as sent (IKE_SA_INIT), `peer_nonce`
/// the other side's nonce, `sk_p` this side's SK_pi/SK_pr and `id_body` its ID
/// payload body.
pub fn signed_octets(
    prf: Prf,
    message: &[u8],
    peer_nonce: &[u8],
    sk_p: &Secret,
    id_body: &[u8],
) -> Vec<u8> {
    let maced_id = prf.prf(sk_p.as_bytes(), &[id_body]);
    [message, peer_nonce, maced_id.as_bytes()].concat()
}

/// `AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)`.
pub fn psk_auth(prf: Prf, psk: &Secret, octets: &[u8]) -> Secret {
    let k = prf.prf(psk.as_bytes(), &[KEY_PAD]);
    prf.prf(k.as_bytes(), &[octets])
}

/// Checks a received AUTH value in constant time.
pub fn verify_psk_auth(prf: Prf, psk: &Secret, octets: &[u8], received: &[u8]) -> bool {
    ct_eq(psk_auth(prf, psk, octets).as_bytes(), received)
}
