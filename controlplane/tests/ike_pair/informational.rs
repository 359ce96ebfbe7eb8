//! INFORMATIONAL exchanges: deleting IKE and CHILD SAs, liveness checks.

use crate::harness::*;

#[test]
fn initiator_deletes_the_ike_sa_and_both_sides_drop_everything() {
    let mut p = Pair::new();
    let id = p.connect(client_policy());
    p.drive();
    assert!(p.client.ep.delete_ike_sa(p.now, id));
    p.drive();
    assert_eq!(p.client.ike_ended(), [IkeSaEnd::Deleted]);
    assert_eq!(p.server.ike_ended(), [IkeSaEnd::Deleted]);
    for n in [&p.client, &p.server] {
        let deleted = n
            .events
            .iter()
            .filter(|e| matches!(e, Event::ChildSaDeleted { .. }))
            .count();
        assert_eq!(deleted, 1);
        assert!(n.spis.live().is_empty());
        assert_eq!(n.ep.ike_sa_count(), 0);
    }
    // The lease went back: the next client gets the same address.
    p.connect(client_policy());
    p.drive();
    assert_eq!(
        p.client.children()[1].virtual_ip,
        Some(Ipv4Addr::new(10, 9, 0, 1))
    );
}

#[test]
fn child_sa_delete_names_each_sides_inbound_spi() {
    let mut p = Pair::new();
    let id = p.connect(client_policy());
    p.drive();
    let spi = p.client.children()[0].inbound_spi;
    assert!(p.client.ep.delete_child_sa(p.now, id, spi));
    p.drive();
    let del = |n: &Node| {
        n.events
            .iter()
            .find_map(|e| match e {
                Event::ChildSaDeleted {
                    inbound_spi,
                    outbound_spi,
                    ..
                } => Some((*inbound_spi, *outbound_spi)),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(del(&p.client), (0xc000_0000, 0x5000_0000));
    assert_eq!(del(&p.server), (0x5000_0000, 0xc000_0000));
    assert!(p.client.ike_ended().is_empty() && p.server.ike_ended().is_empty());
    assert!(p.server.spis.live().is_empty());
}

#[test]
fn liveness_check_is_answered_and_silence_kills_the_sa() {
    let mut p = Pair::new();
    let id = p.connect(client_policy());
    p.drive();
    assert!(p.client.ep.check_liveness(p.now, id));
    p.drive();
    assert!(p.client.ike_ended().is_empty());
    assert_eq!(p.exchanges(false, ExchangeType::INFORMATIONAL).len(), 1);
    p.drop = Box::new(|_| true);
    assert!(p.client.ep.check_liveness(p.now, id));
    p.drive_for(Duration::from_secs(60));
    assert_eq!(p.client.ike_ended(), [IkeSaEnd::Timeout]);
    let deleted = p
        .client
        .events
        .iter()
        .filter(|e| matches!(e, Event::ChildSaDeleted { .. }))
        .count();
    assert_eq!(deleted, 1);
}
