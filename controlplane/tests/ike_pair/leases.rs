//! Inner addresses from the responder templates' pools (CP, RFC 7296 3.15).

use crate::harness::*;

#[test]
fn each_template_leases_from_its_own_pool_and_a_new_range_keeps_held_addresses() {
    let template = |pool: &str| {
        let mut s = server_policy();
        s.pool = Some(pool.into());
        Arc::new(s)
    };
    let (staff, guests) = (template("staff"), template("guests"));
    let lookup: PeerPolicy = Box::new(move |id: &Identification| {
        if id.data.ends_with(b".staff") {
            Some(staff.clone())
        } else {
            Some(guests.clone())
        }
    });
    let mut p = Pair::new();
    p.server.ep.set_peer_policy(lookup);
    let staff_pool = || AddressPool::new(Ipv4Addr::new(10, 20, 0, 1), 4);
    p.server.ep.set_pool("staff".into(), staff_pool());
    p.server.ep.set_pool(
        "guests".into(),
        AddressPool::new(Ipv4Addr::new(10, 30, 0, 1), 4),
    );
    let client_as = |name: &str| {
        let mut c = client_policy();
        c.local_id = Identification::fqdn(name);
        c
    };
    let vip = |p: &Pair| p.client.children().last().and_then(|c| c.virtual_ip);

    p.connect(client_as("alice.staff"));
    p.drive();
    assert_eq!(vip(&p), Some(Ipv4Addr::new(10, 20, 0, 1)));
    p.client = Node::new(7, 0xa000_0000);
    p.connect(client_as("bob.guest"));
    p.drive();
    assert_eq!(
        vip(&p),
        Some(Ipv4Addr::new(10, 30, 0, 1)),
        "the guests' pool"
    );
    assert_eq!(p.server.ep.pool_leases(Some("staff")), 1);
    assert_eq!(p.server.ep.pool_leases(Some("guests")), 1);

    // The same range again (a reload that left the pool alone) keeps it.
    p.server.ep.set_pool("staff".into(), staff_pool());
    assert_eq!(p.server.ep.pool_leases(Some("staff")), 1);
    // A wider range is a new pool, but alice keeps 10.20.0.1: the next
    // staff client gets 10.20.0.2, not a second 10.20.0.1.
    p.server.ep.set_pool(
        "staff".into(),
        AddressPool::new(Ipv4Addr::new(10, 20, 0, 1), 16),
    );
    assert_eq!(p.server.ep.pool_leases(Some("staff")), 1);
    p.client = Node::new(8, 0xb000_0000);
    p.connect(client_as("carol.staff"));
    p.drive();
    assert_eq!(vip(&p), Some(Ipv4Addr::new(10, 20, 0, 2)));
}

/// A client that asks for both families gets one address of each from
/// its template's pools, with TSi narrowed to the two; one that asks for
/// IPv6 alone from a template without an IPv6 pool gets no CHILD SA. The
/// leases go back with the IKE SA.
#[test]
fn a_dual_stack_client_gets_an_address_of_each_family() {
    let mut s = server_policy();
    s.pool = Some("dual".into());
    let dns: Vec<IpAddr> = vec![
        "fd00:40::53".parse().unwrap(),
        "10.40.0.53".parse().unwrap(),
    ];
    s.dns = dns.clone();
    let dual = Arc::new(s);
    let lookup: PeerPolicy = Box::new(move |_: &Identification| Some(dual.clone()));
    let mut p = Pair::new();
    p.server.ep.set_peer_policy(lookup);
    p.server.ep.set_pool(
        "dual".into(),
        AddressPool::new(Ipv4Addr::new(10, 40, 0, 1), 4),
    );
    let first6: std::net::Ipv6Addr = "fd00:40::1".parse().unwrap();
    p.server
        .ep
        .set_pool6("dual".into(), AddressPool::new(first6, 4));

    let mut both = client_policy();
    both.request_virtual_ip6 = true;
    let id = p.connect(both);
    p.drive();
    let c = p.client.children()[0].clone();
    assert_eq!(c.virtual_ip, Some(Ipv4Addr::new(10, 40, 0, 1)));
    assert_eq!(c.virtual_ip6, Some(first6));
    assert_eq!(
        c.local_ts,
        [ts("10.40.0.1", "10.40.0.1"), ts("fd00:40::1", "fd00:40::1")]
    );
    assert_eq!(p.server.children()[0].remote_ts, c.local_ts);
    assert_eq!(c.dns, dns, "INTERNAL_IP6_DNS and _IP4_DNS, in order");
    let st: Vec<IkeSaStatus> = p.client.ep.ike_sas().collect();
    assert_eq!(st[0].virtual_ip6, Some(first6));
    let st: Vec<IkeSaStatus> = p.server.ep.ike_sas().collect();
    assert_eq!(
        st[0].virtual_ip6,
        Some(first6),
        "the server's view of the lease"
    );
    assert_eq!(p.server.ep.pool6_leases(Some("dual")), 1);

    assert!(p.client.ep.delete_ike_sa(p.now, id));
    p.drive();
    assert_eq!(p.server.ep.pool6_leases(Some("dual")), 0);
    assert_eq!(p.server.ep.pool_leases(Some("dual")), 0);

    // IPv6 alone, and the template loses its IPv6 pool: no address, no CHILD SA.
    p.server.ep.remove_pool6("dual");
    p.client = Node::new(9, 0xb000_0000);
    let mut v6_only = client_policy();
    v6_only.request_virtual_ip = false;
    v6_only.request_virtual_ip6 = true;
    p.connect(v6_only);
    p.drive();
    assert!(p.client.children().is_empty());
    assert!(
        p.client
            .events
            .iter()
            .any(|e| matches!(e, Event::ChildSaFailed { reason, .. } if *reason == NotifyType::INTERNAL_ADDRESS_FAILURE)),
        "{:?}",
        p.client.events
    );
}
