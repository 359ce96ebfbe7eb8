//! IKE SA rekeys (RFC 7296 2.18) and the CHILD exchanges that cross them.

use crate::harness::*;

#[test]
fn ike_sa_rekey_moves_the_child_sas_to_the_new_sa() {
    for server_starts in [false, true] {
        let mut p = Pair::new();
        let cid = p.connect(client_policy());
        p.drive();
        let sid = server_id(&p);
        if server_starts {
            assert!(p.server.ep.rekey_ike_sa(p.now, sid));
        } else {
            assert!(p.client.ep.rekey_ike_sa(p.now, cid));
        }
        p.drive();
        let (c, s) = (rekeyed(&p.client), rekeyed(&p.server));
        assert_eq!((c.len(), s.len()), (1, 1), "server_starts={server_starts}");
        assert_eq!((c[0].0, s[0].0), (cid, sid));
        assert_ne!(c[0].1, cid);
        for n in [&p.client, &p.server] {
            assert_eq!(n.ike_ended(), [IkeSaEnd::Rekeyed]);
            assert!(!n
                .events
                .iter()
                .any(|e| matches!(e, Event::ChildSaDeleted { .. })));
            assert_eq!(n.ep.ike_sa_count(), 1);
        }
        // The new SA works: it carries a CHILD rekey and then a full delete.
        let (new_c, child) = (c[0].1, p.client.children()[0].inbound_spi);
        assert!(p.client.ep.rekey_child_sa(p.now, new_c, child));
        p.drive();
        assert_eq!(p.server.children().len(), 2);
        assert!(p.client.ep.delete_ike_sa(p.now, new_c));
        p.drive();
        for n in [&p.client, &p.server] {
            assert_eq!(n.ike_ended(), [IkeSaEnd::Rekeyed, IkeSaEnd::Deleted]);
            assert!(n.spis.live().is_empty());
            assert_eq!(n.ep.ike_sa_count(), 0);
        }
        // The lease went back to the pool whichever end rekeyed.
        p.connect(client_policy());
        p.drive();
        let last = p.client.children().last().unwrap().virtual_ip;
        assert_eq!(
            last,
            Some(Ipv4Addr::new(10, 9, 0, 1)),
            "server_starts={server_starts}"
        );
    }
}

/// RFC 7296 2.18: the CHILD SAs of a rekeyed IKE SA move to its successor,
/// and so must one that an exchange in flight completes on the old SA
/// afterwards, or it ends with the old SA while the peer keeps it.
#[test]
fn a_child_rekey_crossing_the_peers_ike_rekey_ends_under_the_new_ike_sa() {
    let mut p = crossing_rekeys(true);
    let new_cid = rekeyed(&p.client)[0].1;
    let old_child = p.client.children()[0].inbound_spi;
    let (fresh, owner, replaces) = p
        .client
        .children()
        .last()
        .map(|c| (c.inbound_spi, c.ike_sa, c.replaces))
        .unwrap();
    assert_eq!(replaces, Some(old_child));
    assert_eq!(owner, new_cid, "the new pair belongs to the successor");
    assert_eq!(p.client.ike_ended(), [IkeSaEnd::Rekeyed]);
    let deleted = |n: &Node, spi: u32| {
        n.events
            .iter()
            .any(|e| matches!(e, Event::ChildSaDeleted { inbound_spi, .. } if *inbound_spi == spi))
    };
    assert!(
        !deleted(&p.client, fresh),
        "the new pair outlived the old IKE SA"
    );
    // The old pair is retired through the successor, on both ends.
    assert!(p.client.ep.delete_child_sa(p.now, new_cid, old_child));
    p.drive();
    assert!(deleted(&p.client, old_child));
    assert!(deleted(&p.server, p.server.children()[0].inbound_spi));
    // What is left: one IKE SA each with the new pair, which still rekeys.
    for n in [&p.client, &p.server] {
        assert_eq!(n.ep.ike_sa_count(), 1);
    }
    assert!(p.client.ep.rekey_child_sa(p.now, new_cid, fresh));
    p.drive();
    assert_eq!(p.client.children().len(), 3);
}

/// Our own CHILD rekey and IKE rekey asked for together cannot cross: one
/// request at a time (window 1, §2.3), so the IKE rekey waits and takes
/// the new pair along to the successor.
#[test]
fn our_own_child_and_ike_rekeys_asked_together_run_in_turn() {
    let mut p = Pair::new();
    let cid = p.connect(client_policy());
    p.drive();
    p.client.ep.set_defer_rekeyed_delete(true);
    let old_child = p.client.children()[0].inbound_spi;
    assert!(p.client.ep.rekey_child_sa(p.now, cid, old_child));
    assert!(p.client.ep.rekey_ike_sa(p.now, cid));
    p.collect();
    assert_eq!(
        p.queue.iter().filter(|(to_server, _)| *to_server).count(),
        1,
        "one request in flight"
    );
    p.drive();
    let new_cid = rekeyed(&p.client)[0].1;
    let (fresh, owner) = p
        .client
        .children()
        .last()
        .map(|c| (c.inbound_spi, c.ike_sa))
        .unwrap();
    assert_ne!(fresh, old_child, "the CHILD rekey completed");
    // First, on the old IKE SA; then the IKE rekey moved it with the rest.
    assert_eq!(owner, cid);
    assert_eq!(rekeyed(&p.client)[0].0, cid);
    assert_eq!(
        (child_deletions(&p.client), child_deletions(&p.server)),
        (0, 0)
    );
    assert!(p.client.ep.delete_child_sa(p.now, new_cid, old_child));
    p.drive();
    assert_eq!(
        (child_deletions(&p.client), child_deletions(&p.server)),
        (1, 1)
    );
    for n in [&p.client, &p.server] {
        assert_eq!(n.ep.ike_sa_count(), 1);
    }
}

/// A pair with one CHILD SA whose client rekeys it while the server rekeys
/// the IKE SA, the server's IKE request reaching the client before the
/// answer to its CHILD rekey; driven to the end. `defer`: the client keeps
/// the old pair for its caller to delete.
fn crossing_rekeys(defer: bool) -> Pair {
    let mut p = Pair::new();
    let cid = p.connect(client_policy());
    p.drive();
    let sid = server_id(&p);
    p.client.ep.set_defer_rekeyed_delete(defer);
    let old_child = p.client.children()[0].inbound_spi;
    assert!(p.client.ep.rekey_child_sa(p.now, cid, old_child));
    p.deliver_nth(true, 0);
    assert!(p.server.ep.rekey_ike_sa(p.now, sid));
    p.deliver_nth(false, 1);
    p.deliver_nth(false, 0);
    p.drive();
    p
}

#[test]
fn without_deferral_the_crossing_rekeys_old_pair_is_deleted_through_the_successor() {
    let p = crossing_rekeys(false);
    // The old pair, on both ends; the new one stays.
    assert_eq!(
        (child_deletions(&p.client), child_deletions(&p.server)),
        (1, 1)
    );
    let fresh = p.client.children()[1].inbound_spi;
    assert!(!p
        .client
        .events
        .iter()
        .any(|e| matches!(e, Event::ChildSaDeleted { inbound_spi, .. } if *inbound_spi == fresh)));
    for n in [&p.client, &p.server] {
        assert_eq!(n.ep.ike_sa_count(), 1);
    }
}

/// The peer's DELETE of the old IKE SA overtakes its answer to our CHILD
/// rekey (reordered datagrams): the late answer finds no IKE SA. The rekey
/// must not vanish silently: it is reported failed on the successor, which
/// still carries the old pair and can rekey it again.
#[test]
fn a_child_rekey_whose_answer_the_ike_delete_overtakes_is_reported_failed() {
    let mut p = Pair::new();
    let cid = p.connect(client_policy());
    p.drive();
    let sid = server_id(&p);
    p.client.ep.set_defer_rekeyed_delete(true);
    let old_child = p.client.children()[0].inbound_spi;
    assert!(p.client.ep.rekey_child_sa(p.now, cid, old_child));
    p.deliver_nth(true, 0); // the server answers the CHILD rekey (held)
    assert!(p.server.ep.rekey_ike_sa(p.now, sid));
    p.deliver_nth(false, 1); // the client answers the IKE rekey
    p.deliver_nth(true, 0); // the server deletes the old IKE SA
    p.deliver_nth(false, 1); // its DELETE reaches the client first
    p.deliver_nth(false, 0); // then the CHILD answer, too late
    p.drive();
    let new_cid = rekeyed(&p.client)[0].1;
    let failed: Vec<IkeSaId> = p
        .client
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ChildSaFailed { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(
        failed,
        [new_cid],
        "the lost rekey is reported on the successor"
    );
    assert_eq!(p.client.children().len(), 1, "no new pair on the client");
    // The old pair still works under the successor: rekeying it again
    // succeeds.
    assert!(p.client.ep.rekey_child_sa(p.now, new_cid, old_child));
    p.drive();
    assert_eq!(p.client.children().len(), 2);
}
