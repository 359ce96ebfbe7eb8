//! Building SA offers and choosing from the peer's (RFC 7296 §2.7, §3.3).

use super::Policy;
use crate::ike::crypto::{DhGroup, Prf};
use crate::ike::wire::{
    transform_id as id, Proposal, ProtocolId, SecurityAssociation, Transform, TransformType,
};

/// The negotiated IKE suite: AES-GCM-16 with `encr_bits`, a PRF, a DH group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IkeSuite {
    pub encr_bits: u16,
    pub prf: Prf,
    pub group: DhGroup,
}

/// The negotiated ESP suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EspSuite {
    pub encr_bits: u16,
    pub esn: bool,
    /// PFS group of a CREATE_CHILD_SA (never set for IKE_AUTH).
    pub group: Option<DhGroup>,
}

fn gcm(bits: u16) -> Transform {
    Transform::with_key_length(TransformType::ENCR, id::ENCR_AES_GCM_16, bits)
}

/// One IKE proposal with every algorithm of the policy.
pub fn ike_offer(p: &Policy) -> SecurityAssociation {
    let mut t: Vec<Transform> = p.ike_encr_bits.iter().map(|&b| gcm(b)).collect();
    t.extend(
        p.ike_prfs
            .iter()
            .map(|f| Transform::new(TransformType::PRF, f.transform_id())),
    );
    t.extend(
        p.ike_groups
            .iter()
            .map(|g| Transform::new(TransformType::DH, g.id())),
    );
    SecurityAssociation {
        proposals: vec![Proposal {
            number: 1,
            protocol: ProtocolId::IKE,
            spi: Vec::new(),
            transforms: t,
        }],
    }
}

/// One ESP proposal with our inbound SPI.
pub fn esp_offer(p: &Policy, spi: u32) -> SecurityAssociation {
    let mut t: Vec<Transform> = p.esp_encr_bits.iter().map(|&b| gcm(b)).collect();
    t.extend(
        p.esp_groups
            .iter()
            .map(|g| Transform::new(TransformType::DH, g.id())),
    );
    t.push(Transform::new(TransformType::ESN, id::ESN_NONE));
    t.push(Transform::new(TransformType::ESN, id::ESN_YES));
    SecurityAssociation {
        proposals: vec![Proposal {
            number: 1,
            protocol: ProtocolId::ESP,
            spi: spi.to_be_bytes().to_vec(),
            transforms: t,
        }],
    }
}

fn first_gcm(prop: &Proposal, ours: &[u16]) -> Option<u16> {
    prop.transforms_of(TransformType::ENCR)
        .filter(|t| t.id == id::ENCR_AES_GCM_16)
        .filter_map(Transform::key_length)
        .find(|b| ours.contains(b))
}

/// AEAD suites carry no integrity transform, or only "none" (RFC 5282 §8).
fn no_integ(prop: &Proposal) -> bool {
    prop.transforms_of(TransformType::INTEG).all(|t| t.id == 0)
}

/// Chooses an IKE suite from the peer's offer. The DH group of the peer's
/// KE payload wins if acceptable (saves an INVALID_KE_PAYLOAD round trip).
/// Returns the proposal to echo back (same number, one transform per type).
pub fn choose_ike(
    p: &Policy,
    sa: &SecurityAssociation,
    ke_group: u16,
) -> Option<(IkeSuite, Proposal)> {
    sa.proposals
        .iter()
        .filter(|x| x.protocol == ProtocolId::IKE && no_integ(x))
        .find_map(|prop| {
            let encr_bits = first_gcm(prop, &p.ike_encr_bits)?;
            let prf = prop
                .transforms_of(TransformType::PRF)
                .filter_map(|t| Prf::from_transform_id(t.id))
                .find(|f| p.ike_prfs.contains(f))?;
            let offered: Vec<DhGroup> = prop
                .transforms_of(TransformType::DH)
                .filter_map(|t| DhGroup::from_id(t.id))
                .filter(|g| p.ike_groups.contains(g))
                .collect();
            let group = offered
                .iter()
                .copied()
                .find(|g| g.id() == ke_group)
                .or_else(|| p.ike_groups.iter().copied().find(|g| offered.contains(g)))?;
            let suite = IkeSuite {
                encr_bits,
                prf,
                group,
            };
            Some((suite, ike_chosen(prop.number, suite)))
        })
}

pub fn ike_chosen(number: u8, s: IkeSuite) -> Proposal {
    Proposal {
        number,
        protocol: ProtocolId::IKE,
        spi: Vec::new(),
        transforms: vec![
            gcm(s.encr_bits),
            Transform::new(TransformType::PRF, s.prf.transform_id()),
            Transform::new(TransformType::DH, s.group.id()),
        ],
    }
}

/// Reads the suite the responder chose, which must be one we offered.
pub fn accept_ike(p: &Policy, sa: &SecurityAssociation) -> Option<IkeSuite> {
    let [prop] = sa.proposals.as_slice() else {
        return None;
    };
    let (suite, _) = choose_ike(p, sa, 0)?;
    // Exactly one transform of each type (§3.3.6).
    let one = |t| prop.transforms_of(t).count() == 1;
    (one(TransformType::ENCR) && one(TransformType::PRF) && one(TransformType::DH)).then_some(suite)
}

/// Chooses an ESP suite; returns it with the peer's SPI and the proposal to echo
/// (carrying `our_spi`). `ke_group` is the KE payload's group in a
/// CREATE_CHILD_SA, `None` in IKE_AUTH (where DH transforms are ignored, §1.2).
pub fn choose_esp(
    p: &Policy,
    sa: &SecurityAssociation,
    our_spi: u32,
    ke_group: Option<u16>,
) -> Option<(EspSuite, u32, Proposal)> {
    sa.proposals
        .iter()
        .filter(|x| x.protocol == ProtocolId::ESP && no_integ(x))
        .find_map(|prop| {
            let peer_spi = u32::from_be_bytes(prop.spi.as_slice().try_into().ok()?);
            let encr_bits = first_gcm(prop, &p.esp_encr_bits)?;
            let esn = match prop.transforms_of(TransformType::ESN).map(|t| t.id).next() {
                None | Some(id::ESN_NONE) => false,
                Some(id::ESN_YES) => true,
                Some(_) => return None,
            };
            let dh: Vec<u16> = prop
                .transforms_of(TransformType::DH)
                .map(|t| t.id)
                .collect();
            let group = match ke_group {
                None => None,
                Some(g) if dh.contains(&g) => {
                    Some(DhGroup::from_id(g).filter(|x| p.esp_groups.contains(x))?)
                }
                // No KE: acceptable only if the proposal allows no PFS.
                Some(_) if dh.is_empty() || dh.contains(&0) => None,
                Some(_) => return None,
            };
            let mut transforms = vec![gcm(encr_bits)];
            if let Some(g) = group {
                transforms.push(Transform::new(TransformType::DH, g.id()));
            }
            transforms.push(Transform::new(
                TransformType::ESN,
                if esn { id::ESN_YES } else { id::ESN_NONE },
            ));
            let chosen = Proposal {
                number: prop.number,
                protocol: ProtocolId::ESP,
                spi: our_spi.to_be_bytes().to_vec(),
                transforms,
            };
            Some((
                EspSuite {
                    encr_bits,
                    esn,
                    group,
                },
                peer_spi,
                chosen,
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ike::crypto::Secret;
    use crate::ike::wire::Identification;

    fn policy(groups: Vec<DhGroup>) -> Policy {
        Policy {
            local_id: Identification::fqdn("a"),
            remote_id: None,
            psk: Secret::from_slice(b"k"),
            ike_encr_bits: vec![256, 128],
            ike_prfs: vec![Prf::HmacSha384, Prf::HmacSha256],
            ike_groups: groups,
            esp_encr_bits: vec![128],
            esp_groups: vec![],
            local_ts: vec![],
            remote_ts: vec![],
            request_virtual_ip: false,
            request_virtual_ip6: false,
            dns: vec![],
            pool: None,
            retransmit: Default::default(),
        }
    }

    #[test]
    fn the_ke_group_is_chosen_when_acceptable() {
        let i = policy(vec![DhGroup::Ecp256, DhGroup::Curve25519]);
        let r = policy(vec![DhGroup::Curve25519, DhGroup::Ecp256]);
        let offer = ike_offer(&i);
        let (s, chosen) = choose_ike(&r, &offer, 19).unwrap();
        assert_eq!(s.group, DhGroup::Ecp256);
        assert_eq!((s.encr_bits, s.prf), (256, Prf::HmacSha384));
        let back = SecurityAssociation {
            proposals: vec![chosen],
        };
        assert_eq!(accept_ike(&i, &back), Some(s));
        // KE for a group the responder lacks: it picks its preferred one.
        let (s, _) = choose_ike(&r, &offer, 14).unwrap();
        assert_eq!(s.group, DhGroup::Curve25519);
    }

    #[test]
    fn disjoint_groups_choose_nothing() {
        let i = policy(vec![DhGroup::Ecp256]);
        let r = policy(vec![DhGroup::Curve25519]);
        assert!(choose_ike(&r, &ike_offer(&i), 19).is_none());
    }

    #[test]
    fn esp_offer_round_trips() {
        let p = policy(vec![DhGroup::Curve25519]);
        let (s, peer, chosen) =
            choose_esp(&p, &esp_offer(&p, 0x1234_5678), 0x9999_0000, None).unwrap();
        assert_eq!((s.encr_bits, s.esn, peer), (128, false, 0x1234_5678));
        assert_eq!(chosen.spi, 0x9999_0000u32.to_be_bytes());
    }
}
