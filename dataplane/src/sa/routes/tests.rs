use super::*;
use proptest::prelude::*;

fn p(s: &str) -> IpPrefix {
    s.parse().unwrap()
}
fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn longest_prefix_wins() {
    let mut r = RouteTable::default();
    r.insert(p("10.0.0.0/8"), 1);
    r.insert(p("10.1.0.0/16"), 2);
    r.insert(p("0.0.0.0/0"), 3);
    assert_eq!(r.lookup(ip("10.1.2.3")), Some(2));
    assert_eq!(r.lookup(ip("10.2.2.3")), Some(1));
    assert_eq!(r.lookup(ip("192.0.2.1")), Some(3));
    assert_eq!(r.lookup(ip("2001:db8::1")), None);
    r.remove(p("10.1.0.0/16"), 2);
    assert_eq!(r.lookup(ip("10.1.2.3")), Some(1));
}

#[test]
fn pool_hosts_are_indexed_and_snapshots_are_stable() {
    let mut r = RouteTable::default();
    r.add_pool(p("10.3.0.0/16")).unwrap();
    r.add_pool(p("fd00:1::/104")).unwrap();
    r.insert(p("10.3.0.0/16"), 9); // the pool's own prefix as a fallback
    r.insert(p("10.3.1.7/32"), 42);
    r.insert(p("fd00:1::5/128"), 43);
    let snapshot = r.clone();
    r.remove(p("10.3.1.7/32"), 42);
    assert_eq!(snapshot.lookup(ip("10.3.1.7")), Some(42));
    assert_eq!(snapshot.lookup(ip("fd00:1::5")), Some(43));
    assert_eq!(r.lookup(ip("10.3.1.7")), Some(9));
    assert_eq!(r.lookup(ip("10.3.1.8")), Some(9));
}

#[test]
fn many_prefixes_cost_one_probe_per_length_and_edits_leave_snapshots_alone() {
    let mut r = RouteTable::default();
    for i in 0..10_000u32 {
        let net = IpPrefix::new(IpAddr::from((0x0a00_0000 | (i << 8)).to_be_bytes()), 24).unwrap();
        r.insert(net, i);
    }
    r.insert(p("10.0.0.0/8"), 99_999);
    assert_eq!(r.groups.len(), 2, "two lengths in use");
    assert_eq!(r.lookup(ip("10.0.42.7")), Some(42));
    assert_eq!(
        r.lookup(ip("10.200.0.1")),
        Some(99_999),
        "beyond the /24s: the /8"
    );
    let snapshot = r.clone();
    r.remove(p("10.0.42.0/24"), 42);
    r.remove(p("10.0.43.0/24"), 7); // not its tunnel: ignored
    assert_eq!(r.lookup(ip("10.0.42.7")), Some(99_999));
    assert_eq!(r.lookup(ip("10.0.43.7")), Some(43));
    assert_eq!(snapshot.lookup(ip("10.0.42.7")), Some(42));
}

#[test]
fn pools_must_be_small_and_disjoint() {
    let mut r = RouteTable::default();
    assert!(matches!(
        r.add_pool(p("10.0.0.0/7")),
        Err(RouteError::PoolTooLarge(_))
    ));
    r.add_pool(p("10.0.0.0/8")).unwrap();
    assert!(matches!(
        r.add_pool(p("10.1.0.0/16")),
        Err(RouteError::PoolOverlap(..))
    ));
}

#[test]
fn a_new_pool_takes_in_its_host_routes_and_a_removed_one_gives_them_back() {
    let mut r = RouteTable::default();
    r.insert(p("10.3.1.7/32"), 42);
    r.insert(p("10.9.0.1/32"), 43);
    r.insert(p("10.3.0.0/16"), 9);
    r.add_pool(p("10.3.0.0/16")).unwrap();
    assert_eq!(
        r.pools().collect::<Vec<_>>(),
        vec![(p("10.3.0.0/16"), 1)],
        "the /32 inside moved in"
    );
    assert_eq!(r.group(true, 32).map(|g| g.routes.len()), Some(1));
    assert_eq!(r.lookup(ip("10.3.1.7")), Some(42));
    assert_eq!(r.lookup(ip("10.9.0.1")), Some(43));
    let snapshot = r.clone();
    assert!(r.set_pools(&[]).is_empty());
    assert_eq!(r.pools().count(), 0);
    assert_eq!(r.lookup(ip("10.3.1.7")), Some(42), "kept, in the hash map");
    assert_eq!(r.lookup(ip("10.3.1.8")), Some(9));
    assert_eq!(snapshot.lookup(ip("10.3.1.7")), Some(42));
    assert_eq!(snapshot.pools().count(), 1);
    r.remove(p("10.3.1.7/32"), 42);
    assert_eq!(r.lookup(ip("10.3.1.7")), Some(9));
}

#[test]
fn set_pools_reports_the_pools_it_refuses() {
    let mut r = RouteTable::default();
    let refused = r.set_pools(&[p("10.0.0.0/16"), p("10.0.1.0/24"), p("fd00::/64")]);
    assert_eq!(
        refused,
        vec![
            RouteError::PoolOverlap(p("10.0.1.0/24"), p("10.0.0.0/16")),
            RouteError::PoolTooLarge(p("fd00::/64")),
        ]
    );
    assert_eq!(r.pools().collect::<Vec<_>>(), vec![(p("10.0.0.0/16"), 0)]);
    assert!(
        r.set_pools(&[p("10.0.0.0/16")]).is_empty(),
        "unchanged: no-op"
    );
}

/// An edit: a route added or removed, or the pools replaced.
#[derive(Clone, Debug)]
enum Edit {
    Insert(u8, u8, TunnelId),
    Remove(u8, u8, TunnelId),
    Pools(Vec<u8>),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0u8..4, any::<u8>(), 0u32..4).prop_map(|(n, h, t)| Edit::Insert(n, h, t)),
        (0u8..4, any::<u8>(), 0u32..4).prop_map(|(n, h, t)| Edit::Remove(n, h, t)),
        proptest::collection::vec(0u8..4, 0..3).prop_map(Edit::Pools),
    ]
}

proptest! {
    /// Pools change where host routes live, never what a lookup answers:
    /// the same edits with and without pools route every address alike.
    #[test]
    fn pools_never_change_a_lookup(edits in proptest::collection::vec(edit(), 0..40)) {
        let host = |n: u8, h: u8| IpPrefix::host(IpAddr::from([10, 0, n, h]));
        let pool = |n: u8| IpPrefix::new(IpAddr::from([10, 0, n, 0]), 24).unwrap();
        let (mut with, mut without) = (RouteTable::default(), RouteTable::default());
        with.insert(p("10.0.0.0/16"), 99);
        without.insert(p("10.0.0.0/16"), 99);
        for e in edits {
            match e {
                Edit::Insert(n, h, t) => {
                    with.insert(host(n, h), t);
                    without.insert(host(n, h), t);
                }
                Edit::Remove(n, h, t) => {
                    with.remove(host(n, h), t);
                    without.remove(host(n, h), t);
                }
                Edit::Pools(ns) => {
                    let ps: Vec<IpPrefix> = ns.iter().map(|n| pool(*n)).collect();
                    with.set_pools(&ps);
                }
            }
        }
        for n in 0..4u8 {
            for h in 0..=255u8 {
                let a = IpAddr::from([10, 0, n, h]);
                prop_assert_eq!(with.lookup(a), without.lookup(a), "{}", a);
            }
        }
    }
}
