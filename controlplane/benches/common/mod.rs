//! What the IKE benches share: a permissive PSK policy and an endpoint.

use std::net::{IpAddr, Ipv4Addr};

use controlplane::ike::crypto::{DhGroup, Prf, Secret};
use controlplane::ike::sa::{IkeEndpoint, Policy, Retransmit, SequentialSpis};
use controlplane::ike::wire::{Identification, TrafficSelector};
use rand::SeedableRng;

/// Any selectors, AES-128-GCM, HMAC-SHA-256, the given DH group; asks for
/// an inner address when `request_virtual_ip`.
pub fn policy(id: &str, group: DhGroup, request_virtual_ip: bool) -> Policy {
    let any = TrafficSelector::range(
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V4(Ipv4Addr::BROADCAST),
    );
    Policy {
        local_id: Identification::fqdn(id),
        remote_id: None,
        psk: Secret::from_slice(b"bench psk"),
        ike_encr_bits: vec![128],
        ike_prfs: vec![Prf::HmacSha256],
        ike_groups: vec![group],
        esp_encr_bits: vec![128],
        esp_groups: vec![],
        local_ts: vec![any.clone()],
        remote_ts: vec![any],
        request_virtual_ip,
        dns: vec![],
        retransmit: Retransmit::default(),
    }
}

pub fn endpoint(seed: u64, first_spi: u32) -> IkeEndpoint {
    IkeEndpoint::new(
        Box::new(rand::rngs::StdRng::seed_from_u64(seed)),
        Box::new(SequentialSpis::starting_at(first_spi)),
    )
}
