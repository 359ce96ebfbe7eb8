//! The responder state machine against strongSwan's real IKE_SA_INIT
//! request (frame 19 of the capture, see ike_codec_capture.rs).

mod ike_fixtures;

use std::net::Ipv4Addr;
use std::time::Instant;

use controlplane::ike::crypto::{nat_detection_hash, DhGroup, Prf, Secret};
use controlplane::ike::sa::*;
use controlplane::ike::wire::*;
use rand::SeedableRng;

fn responder(groups: Vec<DhGroup>) -> IkeEndpoint {
    let mut ep = IkeEndpoint::new(
        Box::new(rand::rngs::StdRng::seed_from_u64(7)),
        Box::new(SequentialSpis::starting_at(0x1000)),
    );
    ep.accept(
        Policy {
            local_id: Identification::fqdn("right.lab.test"),
            remote_id: Some(Identification::fqdn("left.lab.test")),
            psk: Secret::from_slice(b"interop-lab-psk-0123456789"),
            ike_encr_bits: vec![128],
            ike_prfs: vec![Prf::HmacSha256],
            ike_groups: groups,
            esp_encr_bits: vec![128],
            esp_groups: vec![],
            local_ts: vec![],
            remote_ts: vec![],
            request_virtual_ip: false,
            request_virtual_ip6: false,
            dns: vec![],
            pool: None,
            retransmit: Retransmit::default(),
        },
        Some(AddressPool::new(Ipv4Addr::new(10, 9, 0, 1), 4)),
    );
    ep
}

#[test]
fn strongswan_ike_sa_init_request_gets_a_well_formed_answer() {
    let d = ike_fixtures::frame(19);
    let mut ep = responder(vec![DhGroup::Curve25519]);
    let now = Instant::now();
    ep.handle_datagram(now, d.dst, d.src, &d.payload);
    let t = ep.poll_transmit().expect("a response");
    assert_eq!((t.local, t.remote), (d.dst, d.src));
    let m = Message::parse(&t.payload).unwrap();
    assert_eq!(m.header.exchange, ExchangeType::IKE_SA_INIT);
    assert!(m.header.flags.response() && !m.header.flags.initiator());
    assert_eq!(m.header.spi_i, 0x9cf3_633e_72a7_ae9a);
    assert_ne!(m.header.spi_r, 0);
    let kinds: Vec<_> = m.payloads.iter().map(Payload::payload_type).collect();
    use PayloadType as P;
    assert_eq!(kinds, [P::SA, P::KE, P::NONCE, P::NOTIFY, P::NOTIFY]);
    let Payload::Sa(sa) = &m.payloads[0] else {
        panic!()
    };
    let p = &sa.proposals[0];
    assert_eq!(p.number, 1);
    assert_eq!(
        p.transforms_of(TransformType::ENCR)
            .next()
            .unwrap()
            .key_length(),
        Some(128)
    );
    let Payload::Ke(ke) = &m.payloads[1] else {
        panic!()
    };
    assert_eq!((ke.group, ke.data.len()), (31, 32));
    // Our NAT-D hashes cover the addresses as we see them.
    let src = m.notify(NotifyType::NAT_DETECTION_SOURCE_IP).unwrap();
    assert_eq!(
        src.data,
        nat_detection_hash(m.header.spi_i, m.header.spi_r, d.dst)
    );
    assert_eq!(ep.half_open_count(), 1);
    // strongSwan faked its NAT-D source (see ike_crypto_capture.rs), so a
    // retransmission is answered from the cache with the same bytes.
    ep.handle_datagram(now, d.dst, d.src, &d.payload);
    assert_eq!(ep.poll_transmit().unwrap().payload, t.payload);
    assert_eq!(ep.ike_sa_count(), 1);
    // No IKE_AUTH follows: the half-open SA is forgotten after 30 s, silently.
    let t = ep.next_timeout().unwrap();
    assert_eq!(t - now, std::time::Duration::from_secs(30));
    ep.handle_timeout(t);
    assert_eq!((ep.ike_sa_count(), ep.half_open_count()), (0, 0));
    assert_eq!(ep.next_timeout(), None);
    assert!(ep.poll_event().is_none());
}

#[test]
fn strongswan_offer_without_a_common_group_gets_no_proposal_chosen() {
    let d = ike_fixtures::frame(19);
    let mut ep = responder(vec![DhGroup::Ecp256]);
    ep.handle_datagram(Instant::now(), d.dst, d.src, &d.payload);
    let m = Message::parse(&ep.poll_transmit().unwrap().payload).unwrap();
    // strongSwan offered only group 31: nothing to agree on.
    assert_eq!(
        m.notifies().map(|n| n.notify_type).collect::<Vec<_>>(),
        [NotifyType::NO_PROPOSAL_CHOSEN]
    );
    assert_eq!(m.header.spi_r, 0);
    assert_eq!(ep.ike_sa_count(), 0);
}
