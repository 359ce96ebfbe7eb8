//! IKE policies from `[[peer]]` sections.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use config::schema::identity::Identity;
use config::schema::peer::{Peer, Role};
use config::schema::proposal::{Algorithm, DhGroup as CfgGroup, Prf as CfgPrf};
use ipnet::IpNet;

use crate::ike::crypto::{DhGroup, Prf, Secret};
use crate::ike::sa::{AddressPool, Policy, Retransmit};
use crate::ike::wire::{IdType, Identification, TrafficSelector};

/// The IKE form of a configured identity.
pub fn identification(id: &Identity) -> Identification {
    match id {
        Identity::Ip(IpAddr::V4(a)) => Identification {
            id_type: IdType::IPV4_ADDR,
            data: a.octets().to_vec(),
        },
        Identity::Ip(IpAddr::V6(a)) => Identification {
            id_type: IdType::IPV6_ADDR,
            data: a.octets().to_vec(),
        },
        Identity::Email(e) => Identification {
            id_type: IdType::RFC822_ADDR,
            data: e.as_bytes().to_vec(),
        },
        Identity::Fqdn(f) => Identification::fqdn(f),
        Identity::KeyId(k) => Identification {
            id_type: IdType::KEY_ID,
            data: k.clone(),
        },
    }
}

fn bits(a: Algorithm) -> u16 {
    (a.key_len() * 8) as u16
}

fn group(g: CfgGroup) -> DhGroup {
    match g {
        CfgGroup::X25519 => DhGroup::Curve25519,
        CfgGroup::Ecp256 => DhGroup::Ecp256,
    }
}

fn prf(p: CfgPrf) -> Prf {
    match p {
        CfgPrf::HmacSha256 => Prf::HmacSha256,
        CfgPrf::HmacSha384 => Prf::HmacSha384,
        CfgPrf::HmacSha512 => Prf::HmacSha512,
    }
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

/// The config's view of an identity a peer claimed, to match patterns.
pub fn identity(id: &Identification) -> Option<Identity> {
    let text = || String::from_utf8(id.data.clone()).ok();
    Some(match id.id_type {
        IdType::IPV4_ADDR => Identity::Ip(IpAddr::from(<[u8; 4]>::try_from(&id.data[..]).ok()?)),
        IdType::IPV6_ADDR => Identity::Ip(IpAddr::from(<[u8; 16]>::try_from(&id.data[..]).ok()?)),
        IdType::RFC822_ADDR => Identity::Email(text()?),
        IdType::FQDN => Identity::Fqdn(text()?),
        IdType::KEY_ID => Identity::KeyId(id.data.clone()),
        _ => return None,
    })
}

/// The responder's choice of policy by the identity a peer claims: the
/// first `role = "responder"` peer whose `remote_id` matches it. A peer
/// that matches none is refused (AUTHENTICATION_FAILED).
pub fn responder_lookup(
    peers: &[Peer],
    retransmit: &config::schema::ike::Retransmit,
) -> crate::ike::sa::PeerPolicy {
    let templates: Vec<(
        config::schema::identity::IdentityPattern,
        std::sync::Arc<Policy>,
    )> = peers
        .iter()
        .filter(|p| p.role == config::schema::peer::Role::Responder)
        .map(|p| {
            (
                p.remote_id.clone(),
                std::sync::Arc::new(policy(p, retransmit)),
            )
        })
        .collect();
    Box::new(move |id: &Identification| {
        let claimed = identity(id)?;
        templates
            .iter()
            .find(|(pattern, _)| pattern.matches(&claimed))
            .map(|(_, p)| p.clone())
    })
}

/// A prefix as the address range a traffic selector carries.
pub fn selector(net: &IpNet) -> TrafficSelector {
    TrafficSelector::range(net.network(), net.broadcast())
}

/// The IKE policy of a peer section (identities, PSK, proposals, selectors).
pub fn policy(peer: &Peer, retransmit: &config::schema::ike::Retransmit) -> Policy {
    let mut p = Policy {
        local_id: identification(&peer.local_id),
        remote_id: match &peer.remote_id {
            config::schema::identity::IdentityPattern::Exact(id) => Some(identification(id)),
            _ => None,
        },
        psk: Secret::new(peer.psk.as_bytes().to_vec()),
        ike_encr_bits: Vec::new(),
        ike_prfs: Vec::new(),
        ike_groups: Vec::new(),
        esp_encr_bits: Vec::new(),
        esp_groups: Vec::new(),
        local_ts: peer.local_ts.iter().map(selector).collect(),
        remote_ts: peer.remote_ts.iter().map(selector).collect(),
        request_virtual_ip: peer.virtual_ip,
        request_virtual_ip6: peer.virtual_ip6,
        dns: peer.dns.clone(),
        // A responder's clients lease from the pool of their own template.
        pool: (peer.role == config::schema::peer::Role::Responder
            && (address_pool(peer).is_some() || address_pool6(peer).is_some()))
        .then(|| std::sync::Arc::from(peer.name.as_str())),
        // `tries` counts resends, as strongSwan's `retransmit_tries` does.
        retransmit: Retransmit {
            initial: retransmit.timeout,
            base: retransmit.base,
            max_timeout: retransmit.max_timeout,
            max_tries: retransmit.tries.saturating_add(1),
            jitter: retransmit.jitter,
        },
    };
    for ike in &peer.proposals {
        push_unique(&mut p.ike_encr_bits, bits(ike.encryption));
        push_unique(&mut p.ike_prfs, prf(ike.prf));
        push_unique(&mut p.ike_groups, group(ike.dh));
    }
    for esp in &peer.esp_proposals {
        push_unique(&mut p.esp_encr_bits, bits(esp.encryption));
        if let Some(g) = esp.dh {
            push_unique(&mut p.esp_groups, group(g));
        }
    }
    p
}

/// The responder's IPv4 address pool of a peer section, if any.
pub fn address_pool(peer: &Peer) -> Option<AddressPool> {
    let (_, v4) = leased_prefix(peer)?;
    // Skip the network address; the pool hands out the rest.
    let first = Ipv4Addr::from(u32::from(v4.network()).checked_add(1)?);
    let size = (1u64 << (32 - v4.prefix_len()))
        .saturating_sub(2)
        .min(u32::MAX as u64);
    Some(AddressPool::new(first, size as u32))
}

/// The IPv6 pool of a responder `[[peer]]`: its first IPv6 prefix,
/// without the subnet-router anycast address (RFC 4291 §2.6.1), at most
/// 2^32 - 1 addresses of it.
pub fn address_pool6(peer: &Peer) -> Option<AddressPool<Ipv6Addr>> {
    let (_, v6) = leased_prefix6(peer)?;
    let first = Ipv6Addr::from(u128::from(v6.network()).checked_add(1)?);
    let host_bits = 128 - u32::from(v6.prefix_len());
    let size = if host_bits >= 32 {
        u32::MAX
    } else {
        (1u32 << host_bits) - 1
    };
    Some(AddressPool::new(first, size))
}

/// The prefixes clients lease addresses from, one per family and
/// responder template: the data plane indexes its host routes inside
/// them by address instead of hashing them (see `RouteTable::set_pools`).
pub fn leased_prefixes(peers: &[Peer]) -> Vec<IpNet> {
    let responders = peers.iter().filter(|p| p.role == Role::Responder);
    responders
        .flat_map(|p| {
            let v4 = leased_prefix(p).map(|(_, n)| IpNet::V4(n));
            let v6 = leased_prefix6(p).map(|(_, n)| IpNet::V6(n));
            v4.into_iter().chain(v6)
        })
        .collect()
}

/// The address pools whose host routes the data plane indexes by address
/// (`RouteTable::set_pools`): `[dataplane] route_pools` and the prefixes
/// responders lease addresses from.
pub fn route_pools(cfg: &config::Config) -> Vec<dataplane::sa::IpPrefix> {
    let leased = leased_prefixes(&cfg.peers);
    cfg.dataplane
        .route_pools
        .iter()
        .chain(&leased)
        .filter_map(|n| dataplane::sa::IpPrefix::new(n.network(), n.prefix_len()))
        .collect()
}

/// The prefix of a peer's `pool` that clients lease IPv4 addresses from
/// (its first IPv4 one), with its place in the list.
pub fn leased_prefix(peer: &Peer) -> Option<(usize, ipnet::Ipv4Net)> {
    peer.pool.iter().enumerate().find_map(|(i, net)| match net {
        IpNet::V4(v4) => Some((i, *v4)),
        IpNet::V6(_) => None,
    })
}

/// The same for IPv6: the first IPv6 prefix. Prefixes after the first of
/// each family are not handed out.
pub fn leased_prefix6(peer: &Peer) -> Option<(usize, ipnet::Ipv6Net)> {
    peer.pool.iter().enumerate().find_map(|(i, net)| match net {
        IpNet::V6(v6) => Some((i, *v6)),
        IpNet::V4(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = r#"
[ike]
local_id = "vpn.lab.test"

[[peer]]
name = "staff"
role = "responder"
remote_id = "*@staff.lab.test"
psk = "psk-for-the-staff-0123456789"
local_ts = ["10.1.0.0/16"]
pool = "10.3.0.0/16"

[[peer]]
name = "branch"
role = "responder"
remote_id = "branch1.lab.test"
psk = "psk-for-the-branch-0123456789"
local_ts = ["10.1.0.0/16"]
remote_ts = ["10.9.0.0/24"]
"#;

    #[test]
    fn the_configured_retransmission_is_what_ike_uses() {
        let text = CFG.replace(
            "local_id = \"vpn.lab.test\"",
            "local_id = \"vpn.lab.test\"\n[ike.retransmit]\ntimeout = \"1s\"\nbase = 1.5\ntries = 3\nmax_timeout = \"2s\"\njitter = 0.3",
        );
        let cfg = config::parse(&text, "test.toml").unwrap();
        let r = policy(&cfg.peers[0], &cfg.ike.retransmit).retransmit;
        // Three resends after the first send.
        assert_eq!(r.max_tries, 4);
        let ms = |n| r.timeout(n).as_millis();
        assert_eq!([ms(0), ms(1), ms(2), ms(3)], [1000, 1500, 2000, 2000]);
        assert_eq!(r.jitter, 0.3);
    }

    #[test]
    fn responders_pools_are_indexed_one_prefix_per_family() {
        let cfg = config::parse(CFG, "test.toml").unwrap();
        let pools: Vec<String> = leased_prefixes(&cfg.peers)
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(pools, ["10.3.0.0/16"], "branch has no pool");
    }

    #[test]
    fn each_identity_gets_the_template_it_matches_and_others_none() {
        let cfg = config::parse(CFG, "test.toml").unwrap();
        let lookup = responder_lookup(&cfg.peers, &cfg.ike.retransmit);
        let email = |s: &str| Identification {
            id_type: IdType::RFC822_ADDR,
            data: s.as_bytes().to_vec(),
        };
        let staff = lookup(&email("ann@staff.lab.test")).expect("staff template");
        assert_eq!(staff.psk.as_bytes(), b"psk-for-the-staff-0123456789");
        let branch = lookup(&Identification::fqdn("branch1.lab.test")).expect("branch template");
        assert_eq!(branch.psk.as_bytes(), b"psk-for-the-branch-0123456789");
        assert_eq!(branch.remote_ts.len(), 1);
        assert!(lookup(&email("eve@evil.lab.test")).is_none());
        assert!(lookup(&Identification::fqdn("branch2.lab.test")).is_none());
        let bad_ip = Identification {
            id_type: IdType::IPV4_ADDR,
            data: vec![1, 2, 3],
        };
        assert!(
            lookup(&bad_ip).is_none(),
            "malformed identities match nothing"
        );
    }
}
