//! Diffie-Hellman groups 31 (Curve25519, RFC 8031) and 19 (ECP-256, RFC 5903).

use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand::RngCore;
use zeroize::Zeroizing;

use super::{CryptoError, Secret};
use crate::ike::wire::transform_id;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DhGroup {
    Curve25519,
    Ecp256,
}

impl DhGroup {
    pub fn from_id(id: u16) -> Option<DhGroup> {
        match id {
            transform_id::DH_CURVE25519 => Some(DhGroup::Curve25519),
            transform_id::DH_ECP_256 => Some(DhGroup::Ecp256),
            _ => None,
        }
    }

    pub fn id(self) -> u16 {
        match self {
            DhGroup::Curve25519 => transform_id::DH_CURVE25519,
            DhGroup::Ecp256 => transform_id::DH_ECP_256,
        }
    }

    /// Length of the KE payload's public value.
    pub fn public_len(self) -> usize {
        match self {
            DhGroup::Curve25519 => 32,
            DhGroup::Ecp256 => 64,
        }
    }
}

enum Key {
    X25519(x25519_dalek::StaticSecret),
    P256(p256::SecretKey),
}

/// An ephemeral private value; zeroized on drop by the underlying crates.
pub struct DhPrivate {
    group: DhGroup,
    key: Key,
}

impl std::fmt::Debug for DhPrivate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DhPrivate({:?})", self.group)
    }
}

impl DhPrivate {
    /// A private value from 32 secret bytes; `None` if they are not a valid
    /// P-256 scalar (zero or not below the group order).
    pub fn from_bytes(group: DhGroup, bytes: &[u8; 32]) -> Option<DhPrivate> {
        let key = match group {
            DhGroup::Curve25519 => Key::X25519(x25519_dalek::StaticSecret::from(*bytes)),
            DhGroup::Ecp256 => Key::P256(p256::SecretKey::from_slice(bytes).ok()?),
        };
        Some(DhPrivate { group, key })
    }

    pub fn generate(group: DhGroup, rng: &mut dyn RngCore) -> DhPrivate {
        loop {
            let mut b = Zeroizing::new([0u8; 32]);
            rng.fill_bytes(&mut *b);
            if let Some(k) = DhPrivate::from_bytes(group, &b) {
                return k;
            }
        }
    }

    pub fn group(&self) -> DhGroup {
        self.group
    }

    /// The KE payload data: u for X25519, x || y for ECP-256 (RFC 5903 §7).
    pub fn public(&self) -> Vec<u8> {
        match &self.key {
            Key::X25519(s) => x25519_dalek::PublicKey::from(s).as_bytes().to_vec(),
            Key::P256(s) => {
                let p = s.public_key().to_encoded_point(false);
                p.as_bytes().get(1..).unwrap_or_default().to_vec()
            }
        }
    }

    /// g^ir: 32 bytes of X25519 output, or the x coordinate for ECP-256.
    pub fn shared_secret(&self, peer: &[u8]) -> Result<Secret, CryptoError> {
        let bad = CryptoError::InvalidPublicValue(self.group.id());
        match &self.key {
            Key::X25519(s) => {
                let p: [u8; 32] = peer.try_into().map_err(|_| bad.clone())?;
                let shared = s.diffie_hellman(&x25519_dalek::PublicKey::from(p));
                // RFC 8031 §2.3: reject the all-zero output of low-order points.
                if !shared.was_contributory() {
                    return Err(bad);
                }
                Ok(Secret::from_slice(shared.as_bytes()))
            }
            Key::P256(s) => {
                if peer.len() != 64 {
                    return Err(bad);
                }
                let sec1 = [&[0x04u8][..], peer].concat();
                let pk = p256::PublicKey::from_sec1_bytes(&sec1).map_err(|_| bad)?;
                let shared = p256::ecdh::diffie_hellman(s.to_nonzero_scalar(), pk.as_affine());
                Ok(Secret::from_slice(shared.raw_secret_bytes()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex32(s: &str) -> [u8; 32] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    // RFC 7748 §6.1.
    #[test]
    fn x25519_rfc7748_vector() {
        let a = DhPrivate::from_bytes(
            DhGroup::Curve25519,
            &hex32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"),
        )
        .unwrap();
        assert_eq!(
            hex::encode(a.public()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        let bob_pub =
            hex::decode("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
                .unwrap();
        assert_eq!(
            hex::encode(a.shared_secret(&bob_pub).unwrap().as_bytes()),
            "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
        );
    }

    // RFC 5903 §8.1 (ECP-256): the KE payload is x || y, g^ir is x.
    #[test]
    fn ecp256_rfc5903_vector() {
        let i = DhPrivate::from_bytes(
            DhGroup::Ecp256,
            &hex32("C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433"),
        )
        .unwrap();
        assert_eq!(
            hex::encode_upper(i.public()),
            "DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180\
             5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3"
        );
        let gr = hex::decode(
            "D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63\
             56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB",
        )
        .unwrap();
        assert_eq!(
            hex::encode_upper(i.shared_secret(&gr).unwrap().as_bytes()),
            "D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE"
        );
    }

    #[test]
    fn bad_public_values_are_rejected() {
        let mut rng = rand::rng();
        let x = DhPrivate::generate(DhGroup::Curve25519, &mut rng);
        assert!(x.shared_secret(&[0u8; 32]).is_err()); // low order
        assert!(x.shared_secret(&[9u8; 31]).is_err());
        let p = DhPrivate::generate(DhGroup::Ecp256, &mut rng);
        assert!(p.shared_secret(&[1u8; 64]).is_err()); // not on the curve
        assert!(p.shared_secret(&[]).is_err());
        assert!(DhPrivate::from_bytes(DhGroup::Ecp256, &[0; 32]).is_none());
        assert!(DhPrivate::from_bytes(DhGroup::Ecp256, &[0xff; 32]).is_none());
    }

    #[test]
    fn both_sides_agree() {
        let mut rng = rand::rng();
        for g in [DhGroup::Curve25519, DhGroup::Ecp256] {
            let a = DhPrivate::generate(g, &mut rng);
            let b = DhPrivate::generate(g, &mut rng);
            assert_eq!(a.public().len(), g.public_len());
            let s1 = a.shared_secret(&b.public()).unwrap();
            let s2 = b.shared_secret(&a.public()).unwrap();
            assert!(s1.ct_eq(s2.as_bytes()));
        }
    }
}
