//! Both ends rekeying the same CHILD SA at once (RFC 7296 2.8.1).

use crate::harness::*;

#[test]
fn simultaneous_child_rekeys_leave_exactly_one_pair() {
    for seed in 0..4u64 {
        let mut p = Pair::new();
        p.client = Node::new(10 + seed, 0xc000_0000);
        // Both ends with PFS, so each accepts the other's offer.
        let mut c = client_policy();
        c.esp_groups = vec![DhGroup::Curve25519];
        let cid = p.connect(c);
        p.drive();
        let sid = server_id(&p);
        let (ci, si) = (
            p.client.children()[0].inbound_spi,
            p.server.children()[0].inbound_spi,
        );
        assert!(p.client.ep.rekey_child_sa(p.now, cid, ci));
        assert!(p.server.ep.rekey_child_sa(p.now, sid, si));
        p.drive();
        assert_one_live_pair(&p);
        assert!(p.client.ike_ended().is_empty() && p.server.ike_ended().is_empty());
        // Both rekeys completed: two CREATE_CHILD_SA requests were answered
        // with new pairs, then one redundant pair and the old one deleted.
        assert_eq!(p.client.children().len() + p.server.children().len(), 6);
    }
}

/// Exactly one pair is live on each end, and it is the same pair (SPIs
/// and keys).
fn assert_one_live_pair(p: &Pair) {
    let (cl, sl) = (p.client.spis.live(), p.server.spis.live());
    assert_eq!(
        (cl.len(), sl.len()),
        (1, 1),
        "{:?} / {:?}",
        p.client.events,
        p.server.events
    );
    let c = p
        .client
        .children()
        .into_iter()
        .find(|c| c.inbound_spi == cl[0])
        .unwrap()
        .clone();
    assert_eq!(c.outbound_spi, sl[0]);
    let s = p
        .server
        .children()
        .into_iter()
        .find(|s| s.inbound_spi == sl[0])
        .unwrap()
        .clone();
    assert_eq!(c.outbound_key.0.as_bytes(), s.inbound_key.0.as_bytes());
}

/// Both ends keep the old pair for a grace period, as espritd does.
fn deferred_pair(seed: u64) -> (Pair, IkeSaId, IkeSaId) {
    let mut p = Pair::new();
    p.client = Node::new(20 + seed, 0xc000_0000);
    p.client.ep.set_defer_rekeyed_delete(true);
    p.server.ep.set_defer_rekeyed_delete(true);
    let mut c = client_policy();
    c.esp_groups = vec![DhGroup::Curve25519];
    let cid = p.connect(c);
    p.drive();
    let sid = server_id(&p);
    (p, cid, sid)
}

/// After the grace period both ends delete the pairs they replaced; then
/// exactly one pair is left, the same on both ends.
fn assert_one_pair_after_grace(p: &mut Pair, cid: IkeSaId, sid: IkeSaId, old: (u32, u32)) {
    p.client.ep.delete_child_sa(p.now, cid, old.0);
    p.server.ep.delete_child_sa(p.now, sid, old.1);
    p.drive();
    assert_one_live_pair(p);
}

#[test]
fn a_pair_the_peer_already_rekeyed_is_not_rekeyed_again() {
    let (mut p, cid, sid) = deferred_pair(0);
    let old = (
        p.client.children()[0].inbound_spi,
        p.server.children()[0].inbound_spi,
    );
    assert!(p.client.ep.rekey_child_sa(p.now, cid, old.0));
    p.drive();
    // The server's own lifetime timer for the old pair fires late: the pair
    // is already replaced, so no second (redundant) rekey starts.
    assert!(!p.server.ep.rekey_child_sa(p.now, sid, old.1));
    assert!(!p.client.ep.rekey_child_sa(p.now, cid, old.0));
    assert_one_pair_after_grace(&mut p, cid, sid, old);
    assert_eq!(p.exchanges(true, ExchangeType::CREATE_CHILD_SA).len(), 1);
    assert_eq!(p.exchanges(false, ExchangeType::CREATE_CHILD_SA).len(), 1);
}

#[test]
fn a_peer_rekey_that_crosses_a_completed_one_leaves_one_pair() {
    for seed in 0..6u64 {
        let (mut p, cid, sid) = deferred_pair(seed);
        let old = (
            p.client.children()[0].inbound_spi,
            p.server.children()[0].inbound_spi,
        );
        assert!(p.client.ep.rekey_child_sa(p.now, cid, old.0));
        assert!(p.server.ep.rekey_child_sa(p.now, sid, old.1));
        // The client's request reaches the server (which notes the
        // collision), and the server's answer overtakes the server's own
        // request: the client sees the collision only after its rekey is done.
        p.deliver_nth(true, 0);
        p.deliver_nth(false, 1); // the answer, behind the server's request
        p.deliver_nth(false, 0); // the server's request
        p.drive();
        let deletes = p.exchanges(true, ExchangeType::INFORMATIONAL).len()
            + p.exchanges(false, ExchangeType::INFORMATIONAL).len();
        assert!(deletes >= 1, "seed {seed}: the redundant pair was deleted");
        assert_one_pair_after_grace(&mut p, cid, sid, old);
    }
}
