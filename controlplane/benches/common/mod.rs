//! What the IKE benches (and the in-process driver test) share: a
//! permissive PSK policy, an endpoint, and a concentrator's config.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use controlplane::gateway::InProcessGateway;
use controlplane::ike::crypto::{DhGroup, Prf, Secret};
use controlplane::ike::sa::{ChildSa, Event, IkeEndpoint, Policy, Retransmit, SequentialSpis};
use controlplane::ike::wire::{Identification, TrafficSelector};
use controlplane::tunnel::{Kind, PingMsg};
use rand::SeedableRng;

/// Any selectors, AES-128-GCM, HMAC-SHA-256, the given DH group; asks for
/// an inner address when `request_virtual_ip`.
pub fn policy(id: &str, group: DhGroup, request_virtual_ip: bool) -> Policy {
    let any = TrafficSelector::range(
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V4(Ipv4Addr::BROADCAST),
    );
    Policy {
        local_id: Identification::fqdn(id),
        remote_id: None,
        psk: Secret::from_slice(b"bench psk"),
        ike_encr_bits: vec![128],
        ike_prfs: vec![Prf::HmacSha256],
        ike_groups: vec![group],
        esp_encr_bits: vec![128],
        esp_groups: vec![],
        local_ts: vec![any.clone()],
        remote_ts: vec![any],
        request_virtual_ip,
        request_virtual_ip6: false,
        dns: vec![],
        pool: None,
        retransmit: Retransmit::default(),
    }
}

pub fn endpoint(seed: u64, first_spi: u32) -> IkeEndpoint {
    IkeEndpoint::new(
        Box::new(rand::rngs::StdRng::seed_from_u64(seed)),
        Box::new(SequentialSpis::starting_at(first_spi)),
    )
}

/// A concentrator whose outside port owns its interface (IKE comes through
/// the workers, so an `InProcessGateway` can run it), with one responder
/// peer for clients made by [`policy`]; `ike` and `peer` add lines to those
/// sections.
#[allow(dead_code)] // not every bench runs a whole gateway
pub fn gateway_config(ike: &str, peer: &str) -> String {
    format!(
        r#"
[gateway]
outside = ["203.0.113.1:4500"]

[dataplane]
workers = 1
port = "af_packet"

[dataplane.outside]
interface = "bench0"
address = "203.0.113.1/24"
gateway = "203.0.113.254"

[dataplane.inside]
name = "esprit0"
addresses = ["10.1.0.1/16"]

[ike]
local_id = "gw.test"
{ike}

[[peer]]
name = "clients"
role = "responder"
remote_id = "any"
psk = "bench psk"
local_ts = ["0.0.0.0/0"]
pool = "10.128.0.0/10"
{peer}
"#
    )
}

/// The client endpoint of batch `batch` (seeded `seed + batch`), its up to
/// 1000 clients of the `n` connecting to `server`, each asking for an
/// inner address.
#[allow(dead_code)] // not every bench connects clients
pub fn client_batch(
    n: usize,
    batch: usize,
    seed: u64,
    server: SocketAddr,
    now: Instant,
) -> IkeEndpoint {
    let mut client = endpoint(seed + batch as u64, 0x0200_0000);
    for k in batch * 1000..n.min((batch + 1) * 1000) {
        // 10.0.0.0/8 gives each of up to 16M clients its own address.
        let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + k as u32)), 500);
        let policy = policy(&format!("c{k}"), DhGroup::Curve25519, true);
        let _ = client.connect(now, local, server, policy);
    }
    client
}

/// Moves datagrams both ways between a client endpoint and the gateway
/// until neither side has anything to say; returns the client's events.
#[allow(dead_code)] // not every bench exchanges through the gateway
pub fn exchange(gw: &mut InProcessGateway, client: &mut IkeEndpoint, now: Instant) -> Vec<Event> {
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

/// Has a batch of clients delete every IKE SA it has (their datagrams
/// wait in the endpoint).
#[allow(dead_code)] // not every bench deletes
pub fn delete_all(client: &mut IkeEndpoint, now: Instant) {
    let ids: Vec<_> = client.ike_sas().map(|s| s.id).collect();
    for id in ids {
        client.delete_ike_sa(now, id);
    }
}

/// The client's ping on its pair `c`, handed to the gateway as its worker
/// hands one over after opening it.
#[allow(dead_code)] // not every bench pings
pub fn deliver_ping(gw: &mut InProcessGateway, c: &ChildSa, now: Instant) {
    let ping = PingMsg {
        kind: Kind::Ping,
        epoch: 1,
        nonce: u64::from(c.inbound_spi),
        sent_ns: 0,
    };
    gw.deliver_control(now, c.outbound_spi, &ping.encode(), c.local);
}
