//! The gateway's whole IKE driver (endpoint, tunnel book, lifetime timers)
//! in process, with simulated time: a client endpoint talks to it through
//! the control link, as through a worker.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

#[path = "../benches/common/mod.rs"]
mod bench_common;

use controlplane::gateway::InProcessGateway;
use controlplane::ike::crypto::DhGroup;
use controlplane::ike::sa::{Event, IkeEndpoint};

/// A responder whose lifetimes make it rekey the IKE SA at 25 s and the
/// CHILD SA at 35 s (the next IKE rekey is at 50 s), without esprit's ping
/// (the client is a bare endpoint).
fn gateway() -> InProcessGateway {
    let text = bench_common::gateway_config(
        "rekey_margin = \"5s\"\nrekey_jitter = \"0s\"",
        "ike_lifetime = \"30s\"\nchild_lifetime = \"40s\"\nliveness = \"off\"",
    );
    let cfg = config::parse(&text, "test").unwrap_or_else(|e| panic!("{e}"));
    InProcessGateway::new(&cfg).expect("gateway")
}

/// Moves datagrams both ways until neither side has anything to say;
/// returns the client's events.
fn exchange(gw: &mut InProcessGateway, client: &mut IkeEndpoint, now: Instant) -> Vec<Event> {
    let mut events = Vec::new();
    for _ in 0..16 {
        let mut quiet = true;
        while let Some(t) = client.poll_transmit() {
            gw.deliver(now, &t);
            quiet = false;
        }
        for t in gw.poll(now) {
            client.handle_datagram(now, t.remote, t.local, &t.payload);
            quiet = false;
        }
        events.extend(std::iter::from_fn(|| client.poll_event()));
        if quiet {
            break;
        }
    }
    events
}

#[test]
fn the_lifetime_child_rekey_after_an_ike_rekey_runs_on_the_new_ike_sa() {
    let mut gw = gateway();
    let mut client = bench_common::endpoint(1, 0x0200_0000);
    let t0 = Instant::now();
    let local: SocketAddr = "198.51.100.7:500".parse().unwrap();
    let policy = bench_common::policy("c1", DhGroup::Curve25519, true);
    client.connect(t0, local, gw.ike, policy).expect("connect");
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
    let mut client = bench_common::endpoint(seed, 0x0300_0000 + (seed as u32) * 16);
    let local: SocketAddr = format!("198.51.100.{seed}:500").parse().unwrap();
    let policy = bench_common::policy(id, DhGroup::Curve25519, true);
    client.connect(now, local, gw.ike, policy).expect("connect");
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

    // A reload that widens the staff's pool: the two staff clients keep
    // their addresses, and the next one gets a free address, not theirs.
    let wider = two_pools_config("10.200.0.0/16");
    let diff = cfg.diff(&wider);
    assert_eq!(diff.peers.changed, ["staff"]);
    gw.driver.reconfigure(now, &wider, &diff.peers);
    assert_eq!(
        lease(&mut gw, "d.staff.test", 4, now),
        Some(Ipv4Addr::new(10, 200, 0, 3))
    );
    assert_eq!(
        lease(&mut gw, "e.guest.test", 5, now),
        Some(Ipv4Addr::new(10, 128, 0, 2)),
        "the unchanged pool kept its leases"
    );
    assert_eq!(gw.driver.tunnels(), 5);
}
