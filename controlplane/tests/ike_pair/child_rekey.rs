//! CHILD SA rekeys (CREATE_CHILD_SA, RFC 7296 2.8), with and without PFS.

use crate::harness::*;

#[test]
fn a_deferred_rekey_keeps_the_old_pair_until_the_caller_deletes_it() {
    let mut p = Pair::new();
    p.client.ep.set_defer_rekeyed_delete(true);
    let id = p.connect(client_policy());
    p.drive();
    let old = p.client.children()[0].clone();
    assert!(p.client.ep.rekey_child_sa(p.now, id, old.inbound_spi));
    p.drive();
    assert_eq!(p.client.children().len(), 2, "the new pair is up");
    assert_eq!(
        (child_deletions(&p.client), child_deletions(&p.server)),
        (0, 0),
        "old pair kept on both sides"
    );
    assert_eq!(p.client.spis.live().len(), 2);
    // The epoch switch and its grace period are over: now it goes.
    assert!(p.client.ep.delete_child_sa(p.now, id, old.inbound_spi));
    p.drive();
    assert_eq!(
        (child_deletions(&p.client), child_deletions(&p.server)),
        (1, 1)
    );
    assert_eq!(p.client.spis.live().len(), 1);
}

#[test]
fn a_client_that_ignores_peer_rekeys_refuses_them_and_keeps_its_pair() {
    let mut p = Pair::new();
    let id = p.connect(client_policy());
    p.drive();
    p.client.ep.refuse_peer_child_rekeys(id, true);
    let server_sa = server_id(&p);
    let old = p.server.children()[0].clone();
    assert!(p
        .server
        .ep
        .rekey_child_sa(p.now, server_sa, old.inbound_spi));
    p.drive();
    assert_eq!(p.client.children().len(), 1, "no new pair");
    let failed = p.server.events.iter().any(|e| {
        matches!(e, Event::ChildSaFailed { reason, .. } if *reason == NotifyType::NO_ADDITIONAL_SAS)
    });
    assert!(failed, "the server was told NO_ADDITIONAL_SAS");
    assert!(!p
        .server
        .events
        .iter()
        .any(|e| matches!(e, Event::ChildSaDeleted { .. })));
    // The client's own rekeys still work.
    let mine = p.client.children()[0].inbound_spi;
    assert!(p.client.ep.rekey_child_sa(p.now, id, mine));
    p.drive();
    assert_eq!(p.client.children().len(), 2);
}

#[test]
fn child_sa_rekey_without_pfs_replaces_the_pair() {
    rekey(vec![]);
}

#[test]
fn child_sa_rekey_with_pfs_replaces_the_pair() {
    let sizes = |p: &Pair, to_server: bool| {
        p.wire
            .iter()
            .find(|s| s.to_server == to_server && is_exchange(s, ExchangeType::CREATE_CHILD_SA))
            .unwrap()
            .t
            .payload
            .len()
    };
    let plain = rekey(vec![]);
    let pfs = rekey(vec![DhGroup::Ecp256]);
    // An ECP-256 KE payload (4 + 4 + 64) and a DH transform (8) each way.
    assert_eq!(sizes(&pfs, true) - sizes(&plain, true), 80);
    assert_eq!(sizes(&pfs, false) - sizes(&plain, false), 80);
}

#[test]
fn rekey_of_an_unknown_child_is_refused_locally() {
    let mut p = Pair::new();
    let id = p.connect(client_policy());
    p.drive();
    assert!(!p.client.ep.rekey_child_sa(p.now, id, 0xdead_beef));
    assert!(!p.client.ep.rekey_child_sa(p.now, IkeSaId(1), 0xc000_0000));
}

/// A responder whose CHILD SAs need PFS with X25519, and a client that
/// offers ECP-256 first: connected, with the client's IKE SA and first pair.
fn pfs_group_mismatch() -> (Pair, IkeSaId, u32) {
    let mut p = Pair::new();
    let mut s = server_policy();
    s.esp_groups = vec![DhGroup::Curve25519];
    p.server
        .ep
        .accept(s, Some(AddressPool::new(Ipv4Addr::new(10, 9, 0, 1), 4)));
    let mut c = client_policy();
    c.esp_groups = vec![DhGroup::Ecp256, DhGroup::Curve25519];
    let id = p.connect(c);
    p.drive();
    let first = p.client.children()[0].inbound_spi;
    (p, id, first)
}

/// INVALID_KE_PAYLOAD (RFC 7296 1.3): one retry with the group asked for,
/// and the second pair, replacing `replaces`, agrees on keys.
fn assert_retried_with_the_wanted_group(p: &Pair, replaces: Option<u32>) {
    assert_eq!(p.exchanges(true, ExchangeType::CREATE_CHILD_SA).len(), 2);
    let (c, s) = (p.client.children(), p.server.children());
    assert_eq!((c.len(), s.len()), (2, 2));
    assert_eq!(c[1].replaces, replaces);
    assert_eq!(
        c[1].outbound_key.0.as_bytes(),
        s[1].inbound_key.0.as_bytes()
    );
    assert!(!p
        .client
        .events
        .iter()
        .any(|e| matches!(e, Event::ChildSaFailed { .. })));
}

#[test]
fn child_rekey_retries_with_the_pfs_group_the_responder_wants() {
    let (mut p, id, old) = pfs_group_mismatch();
    assert!(p.client.ep.rekey_child_sa(p.now, id, old));
    p.drive();
    assert_retried_with_the_wanted_group(&p, Some(old));
    assert_eq!(p.client.spis.live().len(), 1);
}

/// The same retry for a further CHILD SA (`add_child_sa`).
#[test]
fn an_added_child_retries_with_the_pfs_group_the_responder_wants() {
    let (mut p, id, first) = pfs_group_mismatch();
    assert!(p.client.ep.add_child_sa(p.now, id, first));
    p.drive();
    assert_retried_with_the_wanted_group(&p, None);
    assert_eq!(p.client.spis.live().len(), 2, "both pairs stay");
}
