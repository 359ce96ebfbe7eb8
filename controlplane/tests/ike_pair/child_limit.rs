//! How many CHILD SAs a peer may have on one IKE SA (`set_child_sa_limit`):
//! past the limit the responder refuses with NO_ADDITIONAL_SAS and the IKE
//! SA stays up.

use crate::harness::*;

/// The server's CHILD SAs on its IKE SA.
fn server_children(p: &Pair) -> usize {
    p.server
        .ep
        .ike_sa(server_id(p))
        .map_or(0, |s| s.children.len())
}

fn refused(n: &Node) -> usize {
    n.events
        .iter()
        .filter(|e| {
            matches!(e, Event::ChildSaFailed { reason, .. }
                if *reason == NotifyType::NO_ADDITIONAL_SAS)
        })
        .count()
}

#[test]
fn a_peer_cannot_add_child_sas_past_the_limit() {
    let mut p = Pair::new();
    p.server.ep.set_child_sa_limit(3);
    let cid = p.connect(client_policy());
    p.drive();
    let first = p.client.children()[0].inbound_spi;
    for _ in 0..2 {
        assert!(p.client.ep.add_child_sa(p.now, cid, first));
        p.drive();
    }
    assert_eq!(server_children(&p), 3);
    assert_eq!(
        p.client.children().len(),
        3,
        "two more pairs, same selectors"
    );
    assert!(p.client.children().iter().all(|c| c.replaces.is_none()));
    assert_eq!(refused(&p.client), 0);

    assert!(p.client.ep.add_child_sa(p.now, cid, first));
    p.drive();
    assert_eq!(refused(&p.client), 1, "the fourth is refused");
    assert_eq!(server_children(&p), 3);
    // The IKE SA is still up: its pairs can be rekeyed.
    assert!(p.client.ep.rekey_child_sa(p.now, cid, first));
    p.drive();
    assert_eq!(p.client.children().len(), 4);
    assert_eq!(
        server_children(&p),
        3,
        "the old pair deleted after the rekey"
    );
}

/// A peer that rekeys and never deletes the pairs it replaced stops at
/// twice the limit.
#[test]
fn rekeys_that_keep_every_old_pair_stop_at_twice_the_limit() {
    let mut p = Pair::new();
    p.server.ep.set_child_sa_limit(2);
    p.client.ep.set_defer_rekeyed_delete(true);
    let cid = p.connect(client_policy());
    p.drive();
    let mut latest = p.client.children()[0].inbound_spi;
    for _ in 0..5 {
        assert!(p.client.ep.rekey_child_sa(p.now, cid, latest));
        p.drive();
        latest = p.client.children().last().map(|c| c.inbound_spi).unwrap();
    }
    assert_eq!(server_children(&p), 4);
    assert_eq!(refused(&p.client), 2, "the fourth and fifth rekeys");
    assert_eq!(p.client.ike_ended(), []);
}
