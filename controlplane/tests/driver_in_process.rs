//! The gateway's whole IKE driver (endpoint, tunnel book, lifetime timers)
//! in process, with simulated time: a client endpoint talks to it through
//! the control link, as through a worker.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

#[path = "../benches/common/mod.rs"]
mod bench_common;

use bench_common::exchange;
use controlplane::gateway::InProcessGateway;
use controlplane::ike::crypto::DhGroup;
use controlplane::ike::sa::{ChildSa, Event, IkeEndpoint};

/// A responder whose lifetimes make it rekey the IKE SA at 25 s and the
/// CHILD SA at 35 s (the next IKE rekey is at 50 s), with `liveness` (the
/// grace period is the default 10 s).
fn gateway_with(liveness: &str) -> InProcessGateway {
    let text = bench_common::gateway_config(
        "rekey_margin = \"5s\"\nrekey_jitter = \"0s\"",
        &format!("ike_lifetime = \"30s\"\nchild_lifetime = \"40s\"\nliveness = \"{liveness}\""),
    );
    gateway_from(&text)
}

fn gateway_from(text: &str) -> InProcessGateway {
    let cfg = config::parse(text, "test").unwrap_or_else(|e| panic!("{e}"));
    InProcessGateway::new(&cfg).expect("gateway")
}

/// Client `seed`, named `id`, at 198.51.100.`seed`, starting its IKE SA to
/// the gateway (the first datagram waits in the endpoint).
fn client(gw: &InProcessGateway, id: &str, seed: u64, now: Instant) -> IkeEndpoint {
    let mut c = bench_common::endpoint(seed, 0x0300_0000 + (seed as u32) * 16);
    let local: SocketAddr = format!("198.51.100.{seed}:500").parse().unwrap();
    let policy = bench_common::policy(id, DhGroup::Curve25519, true);
    c.connect(now, local, gw.ike, policy).expect("connect");
    c
}

/// Without esprit's ping: the client is a bare endpoint.
fn gateway() -> InProcessGateway {
    gateway_with("off")
}

#[test]
fn the_lifetime_child_rekey_after_an_ike_rekey_runs_on_the_new_ike_sa() {
    let mut gw = gateway();
    let t0 = Instant::now();
    let mut client = client(&gw, "c1", 1, t0);
    let up = exchange(&mut gw, &mut client, t0);
    let first = up
        .iter()
        .find_map(|e| match e {
            Event::ChildSaEstablished(c) => Some(c.inbound_spi),
            _ => None,
        })
        .expect("the first CHILD SA");
    assert_eq!(gw.driver.tunnels(), 1);

    // 26 s: the gateway rekeys the IKE SA; its CHILD SA moves along.
    let events = exchange(&mut gw, &mut client, t0 + Duration::from_secs(26));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::IkeSaRekeyed { .. })),
        "the gateway rekeyed the IKE SA: {events:?}"
    );

    // 36 s: the CHILD SA's lifetime timer must find the new IKE SA.
    let events = exchange(&mut gw, &mut client, t0 + Duration::from_secs(36));
    let rekeyed = events.iter().find_map(|e| match e {
        Event::ChildSaEstablished(c) => Some(c.replaces),
        _ => None,
    });
    assert_eq!(
        rekeyed,
        Some(Some(first)),
        "the gateway rekeyed the CHILD SA on the new IKE SA: {events:?}"
    );
    assert_eq!(gw.driver.tunnels(), 1, "the rekey kept the tunnel");
    assert_eq!(gw.driver.stats.child_sas_installed, 2);
}

fn new_child(events: &[Event]) -> Option<ChildSa> {
    events.iter().find_map(|e| match e {
        Event::ChildSaEstablished(c) => Some((**c).clone()),
        _ => None,
    })
}

/// The SPIs of the inbound SAs in the gateway's tables.
fn inbound_spis(gw: &mut InProcessGateway) -> Vec<u32> {
    gw.tables().inbound.iter().map(|(_, s)| s.spi).collect()
}

/// The gateway answers a client's CHILD rekey, then rekeys the IKE SA, and
/// its DELETE of the old IKE SA overtakes the answer: the client never
/// learns of the new pair, and rekeys again. The gateway's pair from the
/// lost answer never carries data; once the client has proven the pair of
/// its second try and the grace period is over, the gateway deletes the
/// lost one instead of keeping it until its lifetime ends.
#[test]
fn a_pair_whose_answer_the_client_never_got_is_deleted_after_the_grace() {
    let mut gw = gateway_with("esp-ping");
    let t0 = Instant::now();
    let mut client = client(&gw, "c7", 7, t0);
    // An esprit client: the old pair of its rekey goes after the new one's pong.
    client.set_defer_rekeyed_delete(true);
    let first = new_child(&exchange(&mut gw, &mut client, t0)).expect("the first pair");
    bench_common::deliver_ping(&mut gw, &first, t0);
    gw.poll(t0);
    assert_eq!(gw.take_sealed().len(), 1, "the first pair's pong");

    // 24 s: the client rekeys its pair; the gateway's answer is held back.
    let t1 = t0 + Duration::from_secs(24);
    assert!(client.rekey_child_sa(t1, first.ike_sa, first.inbound_spi));
    while let Some(t) = client.poll_transmit() {
        gw.deliver(t1, &t);
    }
    let answer = gw.poll(t1);
    assert_eq!(answer.len(), 1, "the gateway answers the rekey");
    assert_eq!(inbound_spis(&mut gw).len(), 2, "and installs its new pair");

    // 26 s: the gateway rekeys the IKE SA and deletes the old one; the
    // DELETE reaches the client first, then the answer, too late.
    let t2 = t0 + Duration::from_secs(26);
    let mut events = exchange(&mut gw, &mut client, t2);
    for t in &answer {
        client.handle_datagram(t2, t.remote, t.local, &t.payload);
    }
    events.extend(std::iter::from_fn(|| client.poll_event()));
    let ike = events
        .iter()
        .find_map(|e| match e {
            Event::IkeSaRekeyed { new, .. } => Some(*new),
            _ => None,
        })
        .expect("the gateway rekeyed the IKE SA");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ChildSaFailed { id, .. } if *id == ike)),
        "the client's rekey failed: {events:?}"
    );
    assert!(new_child(&events).is_none(), "the client has no new pair");

    // 27 s: the client rekeys again, proves the new pair with a ping and
    // deletes its old pair.
    let t3 = t0 + Duration::from_secs(27);
    assert!(client.rekey_child_sa(t3, ike, first.inbound_spi));
    let second = new_child(&exchange(&mut gw, &mut client, t3)).expect("the second try");
    bench_common::deliver_ping(&mut gw, &second, t3);
    gw.poll(t3);
    assert_eq!(gw.take_sealed().len(), 1, "the new pair's pong");
    assert!(client.delete_child_sa(t3, ike, first.inbound_spi));
    exchange(&mut gw, &mut client, t3);
    let lost: Vec<u32> = inbound_spis(&mut gw)
        .into_iter()
        .filter(|&s| s != second.outbound_spi)
        .collect();
    assert_eq!(lost.len(), 1, "the lost answer's pair is still there");

    // The grace period (10 s) is over: the lost pair goes, the tunnel stays.
    exchange(&mut gw, &mut client, t3 + Duration::from_secs(11));
    assert_eq!(inbound_spis(&mut gw), [second.outbound_spi]);
    assert_eq!(gw.driver.tunnels(), 1);
}

/// The published tables' pools, each with its number of host routes.
fn pools(gw: &InProcessGateway) -> Vec<String> {
    gw.published()
        .routes
        .pools()
        .map(|(p, hosts)| format!("{p} {hosts}"))
        .collect()
}

/// Two responder templates, each with its own pool: the staff's clients
/// (`*.staff.test`) and everyone else.
fn two_pools_config(staff_pool: &str) -> config::Config {
    let text = bench_common::gateway_config("", "")
        .replace(r#"remote_id = "any""#, r#"remote_id = "*.guest.test""#)
        + &format!(
            r#"
[[peer]]
name = "staff"
role = "responder"
remote_id = "*.staff.test"
psk = "bench psk"
local_ts = ["0.0.0.0/0"]
pool = "{staff_pool}"
"#
        );
    config::parse(&text, "test").unwrap_or_else(|e| panic!("{e}"))
}

/// Connects a client named `id` and returns the inner address it was given.
fn lease(gw: &mut InProcessGateway, id: &str, seed: u64, now: Instant) -> Option<Ipv4Addr> {
    let mut client = client(gw, id, seed, now);
    exchange(gw, &mut client, now).iter().find_map(|e| match e {
        Event::ChildSaEstablished(c) => c.virtual_ip,
        _ => None,
    })
}

#[test]
fn each_responder_peer_leases_from_its_own_pool_and_a_reload_keeps_the_leases() {
    let cfg = two_pools_config("10.200.0.0/24");
    let mut gw = InProcessGateway::new(&cfg).expect("gateway");
    let now = Instant::now();
    assert_eq!(
        lease(&mut gw, "a.staff.test", 1, now),
        Some(Ipv4Addr::new(10, 200, 0, 1))
    );
    assert_eq!(
        lease(&mut gw, "b.guest.test", 2, now),
        Some(Ipv4Addr::new(10, 128, 0, 1)),
        "the guests' template, the guests' pool"
    );
    assert_eq!(
        lease(&mut gw, "c.staff.test", 3, now),
        Some(Ipv4Addr::new(10, 200, 0, 2))
    );
    // Their host routes are indexed by address in each pool, as espritd
    // has them, not hashed.
    assert_eq!(pools(&gw), ["10.128.0.0/10 1", "10.200.0.0/24 2"]);

    // A reload that widens the staff's pool: the two staff clients keep
    // their addresses, and the next one gets a free address, not theirs.
    let wider = two_pools_config("10.200.0.0/16");
    let diff = cfg.diff(&wider);
    assert_eq!(diff.peers.changed, ["staff"]);
    gw.reconfigure(now, &wider, &diff.peers);
    assert_eq!(
        lease(&mut gw, "d.staff.test", 4, now),
        Some(Ipv4Addr::new(10, 200, 0, 3))
    );
    assert_eq!(
        lease(&mut gw, "e.guest.test", 5, now),
        Some(Ipv4Addr::new(10, 128, 0, 2)),
        "the unchanged pool kept its leases"
    );
    // The widened pool is indexed as it is now, with all its hosts.
    assert_eq!(pools(&gw), ["10.128.0.0/10 2", "10.200.0.0/16 3"]);
    assert_eq!(gw.driver.tunnels(), 5);
}

/// `[ike] child_sa_limit` reaches the gateway's IKE: a client may add one
/// CHILD SA to its first, not two.
#[test]
fn the_configured_child_sa_limit_refuses_a_clients_third_pair() {
    let text = bench_common::gateway_config("child_sa_limit = 2", "liveness = \"off\"");
    let mut gw = gateway_from(&text);
    let now = Instant::now();
    let mut client = client(&gw, "c9", 9, now);
    let first = new_child(&exchange(&mut gw, &mut client, now)).expect("the first pair");
    assert!(client.add_child_sa(now, first.ike_sa, first.inbound_spi));
    assert!(new_child(&exchange(&mut gw, &mut client, now)).is_some());
    assert!(client.add_child_sa(now, first.ike_sa, first.inbound_spi));
    let events = exchange(&mut gw, &mut client, now);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ChildSaFailed { .. })),
        "the third pair is refused: {events:?}"
    );
    assert_eq!(gw.driver.stats.child_sas_installed, 2);
}

/// The gateway's lifetime rekey of a pair is refused; later the client
/// rekeys that pair itself. The old pair is then the client's to delete
/// (RFC 7296 2.8): the gateway, which once started a rekey of it, must not
/// take the client's rekey for its own and delete the pair under the
/// client's packets.
#[test]
fn a_clients_rekey_of_a_pair_whose_gateway_rekey_failed_is_the_clients() {
    let text = bench_common::gateway_config(
        "rekey_margin = \"5s\"\nrekey_jitter = \"0s\"",
        "ike_lifetime = \"300s\"\nchild_lifetime = \"40s\"\nliveness = \"off\"",
    );
    let mut gw = gateway_from(&text);
    let t0 = Instant::now();
    let mut client = client(&gw, "c11", 11, t0);
    client.set_defer_rekeyed_delete(true);
    let first = new_child(&exchange(&mut gw, &mut client, t0)).expect("the first pair");
    client.refuse_peer_child_rekeys(first.ike_sa, true);

    // 36 s: the gateway's lifetime rekey, refused.
    let events = exchange(&mut gw, &mut client, t0 + Duration::from_secs(36));
    assert!(new_child(&events).is_none(), "refused: {events:?}");
    assert_eq!(gw.driver.stats.child_sas_installed, 1);

    // 37 s: the client rekeys the pair itself and keeps the old one for
    // its packets in flight.
    let t = t0 + Duration::from_secs(37);
    assert!(client.rekey_child_sa(t, first.ike_sa, first.inbound_spi));
    let events = exchange(&mut gw, &mut client, t);
    assert!(new_child(&events).is_some());
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::ChildSaDeleted { .. })),
        "the gateway deleted nothing: {events:?}"
    );
    assert!(
        gw.tables().inbound_sa(first.outbound_spi).is_some(),
        "the old pair still opens the client's packets"
    );
}

/// Moves datagrams between the gateway and two clients, each answered at
/// its own address, until all are quiet; returns each client's events.
fn exchange_two(
    gw: &mut InProcessGateway,
    clients: &mut [(SocketAddr, &mut IkeEndpoint); 2],
    now: Instant,
) -> [Vec<Event>; 2] {
    let mut events = [Vec::new(), Vec::new()];
    for _ in 0..32 {
        let mut quiet = true;
        for (_, c) in clients.iter_mut() {
            while let Some(t) = c.poll_transmit() {
                gw.deliver(now, &t);
                quiet = false;
            }
        }
        for t in gw.poll(now) {
            if let Some((_, c)) = clients.iter_mut().find(|(a, _)| *a == t.remote) {
                c.handle_datagram(now, t.remote, t.local, &t.payload);
            }
            quiet = false;
        }
        for (i, (_, c)) in clients.iter_mut().enumerate() {
            events[i].extend(std::iter::from_fn(|| c.poll_event()));
        }
        if quiet {
            break;
        }
    }
    events
}

fn unique_config(unique: &str) -> String {
    bench_common::gateway_config(&format!("unique = \"{unique}\""), "liveness = \"off\"")
}

fn second_session_of_one_identity(unique: &str) -> (Vec<Event>, Vec<u32>) {
    second_session_on(&mut gateway_from(&unique_config(unique)))
}

/// Client "c9" has a session from 198.51.100.9; then a second device (or
/// the same client after a reboot, without INITIAL_CONTACT) proves the
/// same identity from 198.51.100.10. Returns the first device's events
/// after the second session and the gateway's inbound SPIs then.
fn second_session_on(gw: &mut InProcessGateway) -> (Vec<Event>, Vec<u32>) {
    let now = Instant::now();
    let mut first = client(gw, "c9", 9, now);
    assert!(new_child(&exchange(gw, &mut first, now)).is_some());
    let mut second = bench_common::endpoint(10, 0x0400_0000);
    second.set_send_initial_contact(false);
    let policy = bench_common::policy("c9", DhGroup::Curve25519, true);
    let at = |host: u8| -> SocketAddr { format!("198.51.100.{host}:500").parse().unwrap() };
    second
        .connect(now, at(10), gw.ike, policy)
        .expect("connect");
    let [first_events, second_events] =
        exchange_two(gw, &mut [(at(9), &mut first), (at(10), &mut second)], now);
    assert!(
        new_child(&second_events).is_some(),
        "the second session is up"
    );
    (first_events, inbound_spis(gw))
}

#[test]
fn unique_replace_deletes_an_identitys_older_session_and_its_sas() {
    let (first, spis) = second_session_of_one_identity("replace");
    assert!(
        first
            .iter()
            .any(|e| matches!(e, Event::IkeSaDeleted { .. })),
        "the gateway deleted the first session: {first:?}"
    );
    assert_eq!(spis.len(), 1, "only the second session's pair is left");
}

#[test]
fn by_default_an_identitys_sessions_live_side_by_side() {
    let (first, spis) = second_session_of_one_identity("no");
    assert!(!first
        .iter()
        .any(|e| matches!(e, Event::IkeSaDeleted { .. })));
    assert_eq!(spis.len(), 2);
}

#[test]
fn a_reload_turns_unique_replace_on() {
    let mut gw = gateway_from(&unique_config("no"));
    let parse = |t: &str| config::parse(t, "test").unwrap_or_else(|e| panic!("{e}"));
    let (old, new) = (
        parse(&unique_config("no")),
        parse(&unique_config("replace")),
    );
    let diff = old.diff(&new);
    assert!(diff.restart_required.is_empty() && diff.ike_changed);
    gw.reconfigure(Instant::now(), &new, &diff.peers);
    let (first, spis) = second_session_on(&mut gw);
    assert!(first
        .iter()
        .any(|e| matches!(e, Event::IkeSaDeleted { .. })));
    assert_eq!(spis.len(), 1);
}

/// A client rekeys its CHILD SA 300 times while workers lag four rekeys
/// behind (each holds the tables it saw then). A slot is reused only after
/// many others were released, when no snapshot holds its old SA any more,
/// so every new inbound SA is built in its slot's cell (found without a
/// pointer) and none on the heap; and slots are reused, not used up.
#[test]
fn rekeyed_inbound_sas_are_built_in_their_cells_though_workers_lag() {
    let mut gw = gateway();
    let t0 = Instant::now();
    let mut client = client(&gw, "c3", 3, t0);
    let mut current = new_child(&exchange(&mut gw, &mut client, t0)).expect("the first pair");
    let mut lagging = std::collections::VecDeque::new();
    let mut on_heap = 0;
    for round in 1..=300u64 {
        lagging.push_back(gw.published());
        if lagging.len() > 4 {
            lagging.pop_front();
        }
        let now = t0 + Duration::from_millis(10 * round);
        assert!(client.rekey_child_sa(now, current.ike_sa, current.inbound_spi));
        let next = new_child(&exchange(&mut gw, &mut client, now)).expect("the rekey");
        assert_eq!(next.replaces, Some(current.inbound_spi));
        current = next;
        assert_eq!(
            inbound_spis(&mut gw),
            vec![current.outbound_spi],
            "the old pair went"
        );
        on_heap += gw.tables().inbound.on_heap();
    }
    assert_eq!(on_heap, 0, "every new inbound SA was built in its cell");
    let slot = dataplane::sa::spi::slot_of(current.outbound_spi);
    assert!(slot < 300, "slots are reused (the last one is {slot})");
}

#[test]
fn the_inbound_sas_memory_comes_back_when_their_clients_go() {
    let mut gw = gateway();
    let now = Instant::now();
    // 2,100 clients: their SAs fill the first chunk of 2,048 slots and
    // begin the second.
    let n: usize = 2100;
    let mut batches: Vec<IkeEndpoint> = (0..n.div_ceil(1000))
        .map(|b| {
            let mut c = bench_common::client_batch(n, b, 7000, gw.ike, now);
            exchange(&mut gw, &mut c, now);
            c
        })
        .collect();
    assert_eq!(gw.driver.tunnels(), n);
    let peak = gw.tables().inbound.cell_bytes();
    // All but the first thousand go: the second chunk empties.
    for c in batches.iter_mut().skip(1) {
        bench_common::delete_all(c, now);
        exchange(&mut gw, c, now);
    }
    assert_eq!(gw.driver.tunnels(), 1000);
    let after = gw.tables().inbound.cell_bytes();
    // Slots 2,048-2,100, 53 cells of 704 bytes: 9 pages or more.
    assert!(after + 32 * 1024 <= peak, "{after} of {peak} bytes");
}
