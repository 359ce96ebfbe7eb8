//! The gateway's whole IKE driver (endpoint, tunnel book, lifetime timers)
//! in process, with simulated time: a client endpoint talks to it through
//! the control link, as through a worker.

use std::net::SocketAddr;
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
