//! Handshakes that must fail cleanly: a wrong PSK or identity, no common
//! proposal, unacceptable selectors, an empty pool, forged datagrams.

use crate::harness::*;

#[test]
fn wrong_psk_fails_cleanly_on_both_sides() {
    let mut p = Pair::new();
    let mut c = client_policy();
    c.psk = Secret::from_slice(b"wrong");
    p.connect(c);
    p.drive();
    assert_eq!(
        p.server.ike_ended(),
        [IkeSaEnd::LocalError("AUTHENTICATION_FAILED")]
    );
    assert_eq!(
        p.client.ike_ended(),
        [IkeSaEnd::PeerError(NotifyType::AUTHENTICATION_FAILED)]
    );
    assert_eq!(p.client.established() + p.server.established(), 0);
    assert!(p.client.children().is_empty() && p.server.children().is_empty());
    assert_eq!(
        (p.client.ep.ike_sa_count(), p.server.ep.ike_sa_count()),
        (0, 0)
    );
    assert!(p.client.spis.live().is_empty(), "offered SPI released");
    assert_eq!(p.server.ep.half_open_count(), 0);
}

#[test]
fn wrong_responder_identity_is_refused_by_the_initiator() {
    let mut p = Pair::new();
    let mut c = client_policy();
    c.remote_id = Some(Identification::fqdn("other.test"));
    p.connect(c);
    p.drive();
    assert_eq!(
        p.client.ike_ended(),
        [IkeSaEnd::LocalError("responder AUTH invalid")]
    );
    assert_eq!(p.client.established(), 0);
}

#[test]
fn group_mismatch_recovers_with_invalid_ke_payload() {
    let mut p = Pair::new();
    let mut s = server_policy();
    s.ike_groups = vec![DhGroup::Ecp256];
    p.server
        .ep
        .accept(s, Some(AddressPool::new(Ipv4Addr::new(10, 9, 0, 1), 4)));
    let mut c = client_policy();
    c.ike_groups = vec![DhGroup::Curve25519, DhGroup::Ecp256];
    p.connect(c);
    p.drive();
    assert_eq!(p.exchanges(true, ExchangeType::IKE_SA_INIT).len(), 2);
    let first_reply = p.wire.iter().find(|s| !s.to_server).unwrap();
    let m = Message::parse(&first_reply.t.payload).unwrap();
    assert_eq!(
        m.notify(NotifyType::INVALID_KE_PAYLOAD).unwrap().data,
        [0, 19]
    );
    assert_eq!(p.client.children().len(), 1);
    assert_eq!(p.server.children().len(), 1);
}

#[test]
fn no_common_proposal_fails_the_initiator() {
    let mut p = Pair::new();
    let mut c = client_policy();
    c.ike_prfs = vec![Prf::HmacSha384];
    p.connect(c);
    p.drive();
    assert_eq!(
        p.client.ike_ended(),
        [IkeSaEnd::PeerError(NotifyType::NO_PROPOSAL_CHOSEN)]
    );
    assert_eq!(p.server.ep.ike_sa_count(), 0, "responder kept no state");
}

#[test]
fn unacceptable_selectors_keep_the_ike_sa_but_fail_the_child() {
    let mut p = Pair::new();
    let mut c = client_policy();
    c.remote_ts = vec![ts("172.16.0.0", "172.16.255.255")];
    p.connect(c);
    p.drive();
    assert_eq!((p.client.established(), p.server.established()), (1, 1));
    for n in [&p.client, &p.server] {
        assert!(n.events.iter().any(|e| matches!(
            e,
            Event::ChildSaFailed {
                reason: NotifyType::TS_UNACCEPTABLE,
                ..
            }
        )));
        assert!(n.children().is_empty());
    }
    assert!(p.client.spis.live().is_empty());
    assert!(p.server.spis.live().is_empty());
}

#[test]
fn forged_or_garbage_datagrams_change_nothing() {
    let mut p = Pair::new();
    p.connect(client_policy());
    p.drive();
    let before = (p.client.events.len(), p.server.events.len());
    // Replay the IKE_AUTH request with a flipped ciphertext byte: ICV fails, dropped.
    let auth = p
        .wire
        .iter()
        .find(|s| s.to_server && is_exchange(s, ExchangeType::IKE_AUTH))
        .unwrap()
        .clone();
    let mut b = auth.t.payload.clone();
    let n = b.len();
    b[n - 20] ^= 1;
    p.server
        .ep
        .handle_datagram(p.now, auth.t.remote, auth.t.local, &b);
    p.server
        .ep
        .handle_datagram(p.now, auth.t.remote, auth.t.local, &[1, 2, 3]);
    p.drive();
    assert_eq!((p.client.events.len(), p.server.events.len()), before);
    assert_eq!(p.server.ep.stats().malformed, 1);
}

#[test]
fn cp_reply_carries_dns_and_an_empty_pool_fails_the_child_only() {
    let mut p = Pair::new();
    p.server.ep.accept(
        server_policy(),
        Some(AddressPool::new(Ipv4Addr::new(10, 9, 0, 1), 1)),
    );
    p.connect(client_policy());
    p.drive();
    let v4_dns: IpAddr = Ipv4Addr::new(10, 1, 0, 53).into();
    assert_eq!(p.client.children()[0].dns, [v4_dns]);
    // A second client finds the pool empty: IKE SA up, CHILD SA refused.
    let mut other = client_policy();
    other.local_id = Identification::fqdn("other.test");
    p.client = Node::new(5, 0xf000_0000);
    p.connect(other);
    p.drive();
    assert_eq!(p.client.established(), 1);
    assert!(p.client.children().is_empty());
    assert!(p.client.events.iter().any(|e| matches!(
        e,
        Event::ChildSaFailed {
            reason: NotifyType::INTERNAL_ADDRESS_FAILURE,
            ..
        }
    )));
    assert!(p.client.spis.live().is_empty());
}
