//! One espritd responder establishes 1,000 IKE SAs, each with its CHILD SA
//! and an inner address from the pool, for an initiator built on the same
//! `ike` module running in another namespace (issue 3, item 4).

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::daemon::Espritd;
use common::netns::{privileged_or_skip, veth, NetNs};
use controlplane::ike::crypto::{DhGroup, Prf, Secret};
use controlplane::ike::sa::{Event, IkeEndpoint, Policy, Retransmit, SequentialSpis};
use controlplane::ike::wire::{Identification, TrafficSelector};
use rand::rngs::StdRng;
use rand::SeedableRng;

const CLIENTS: usize = 1000;
const PSK: &str = "many-clients-psk-0123456789";

fn client_policy(i: usize) -> Policy {
    Policy {
        local_id: Identification::fqdn(&format!("client{i}.lab.test")),
        remote_id: Some(Identification::fqdn("gw.lab.test")),
        psk: Secret::new(PSK.as_bytes().to_vec()),
        ike_encr_bits: vec![128],
        ike_prfs: vec![Prf::HmacSha256],
        ike_groups: vec![DhGroup::Curve25519],
        esp_encr_bits: vec![128],
        esp_groups: vec![],
        local_ts: vec![TrafficSelector::range(
            Ipv4Addr::UNSPECIFIED.into(),
            Ipv4Addr::BROADCAST.into(),
        )],
        remote_ts: vec![TrafficSelector::range(
            Ipv4Addr::new(10, 1, 0, 0).into(),
            Ipv4Addr::new(10, 1, 0, 255).into(),
        )],
        request_virtual_ip: true,
        request_virtual_ip6: false,
        dns: vec![],
        pool: None,
        retransmit: Retransmit {
            initial: Duration::from_secs(2),
            ..Retransmit::default()
        },
    }
}

#[test]
fn one_responder_establishes_1000_ike_and_child_sas() {
    if !privileged_or_skip("one_responder_establishes_1000_ike_and_child_sas") {
        return;
    }
    let id = std::process::id();
    let gw = NetNs::new(&format!("esprit-mg-{id}"));
    let cl = NetNs::new(&format!("esprit-mc-{id}"));
    veth(
        &gw,
        "veth-gw",
        "192.0.2.1/24",
        &cl,
        "veth-cl",
        "192.0.2.2/24",
    );
    let dir = std::env::temp_dir().join(format!("esprit-many-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("espritd.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[gateway]
outside = ["192.0.2.1:4500"]

[dataplane]
workers = 2

[dataplane.inside]
name = "esprit0"
addresses = ["10.1.0.1/24"]

[ike]
local_id = "gw.lab.test"
proposals = ["aes128gcm16-prfsha256-x25519"]
esp_proposals = ["aes128gcm16"]
cookie_threshold = 100000

[[peer]]
name = "clients"
role = "responder"
remote_id = "any"
psk = "{PSK}"
local_ts = ["10.1.0.0/24"]
pool = "10.3.0.0/16"
liveness = "off"
"#
        ),
    )
    .unwrap();
    let espritd = Espritd::start(&gw, &cfg, "esprit0");

    let started = Instant::now();
    let result = cl.run(move || {
        let sock = UdpSocket::bind("192.0.2.2:500").expect("bind 500");
        sock.set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let local: SocketAddr = "192.0.2.2:500".parse().unwrap();
        let remote: SocketAddr = "192.0.2.1:500".parse().unwrap();
        let mut ep = IkeEndpoint::new(
            Box::new(StdRng::seed_from_u64(7)),
            Box::new(SequentialSpis::starting_at(0x1000)),
        );
        let mut next = 0;
        let (mut children, mut failed) = (0usize, 0usize);
        let mut vips = std::collections::HashSet::new();
        let mut buf = vec![0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(120);
        while children + failed < CLIENTS && Instant::now() < deadline {
            let now = Instant::now();
            // Keep up to 64 handshakes in flight.
            while next < CLIENTS && next - children - failed < 64 {
                ep.connect(now, local, remote, client_policy(next))
                    .expect("connect");
                next += 1;
            }
            while let Some(t) = ep.poll_transmit() {
                sock.send_to(&t.payload, t.remote).expect("send");
            }
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                ep.handle_datagram(Instant::now(), local, from, &buf[..n]);
            }
            ep.handle_timeout(Instant::now());
            while let Some(e) = ep.poll_event() {
                match e {
                    Event::ChildSaEstablished(c) => {
                        children += 1;
                        vips.insert(c.virtual_ip);
                    }
                    Event::IkeSaDeleted { .. } | Event::ChildSaFailed { .. } => failed += 1,
                    _ => {}
                }
            }
        }
        (children, failed, vips.len(), ep.ike_sa_count())
    });
    let (children, failed, distinct_vips, ike_sas) = result.join().expect("initiator");
    let took = started.elapsed();
    eprintln!(
        "{children} CHILD SAs over {ike_sas} IKE SAs in {took:?} ({:.0} handshakes/s, both ends on 2 cores, debug build)",
        children as f64 / took.as_secs_f64()
    );
    assert_eq!(
        failed,
        0,
        "failed handshakes\n{}",
        espritd
            .log_text()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(children, CLIENTS);
    assert_eq!(ike_sas, CLIENTS);
    assert_eq!(
        distinct_vips, CLIENTS,
        "every client got its own pool address"
    );
    let installed = espritd.log_text().matches("CHILD SA installed").count();
    assert_eq!(
        installed, CLIENTS,
        "espritd installed every CHILD SA in its data plane"
    );
    // Their routes sit in the pool's index, not in a hash map.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_espritctl"))
        .arg("--socket")
        .arg(Espritd::socket(&cfg))
        .args(["--json", "status"])
        .output()
        .expect("espritctl");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    assert_eq!(
        status["data"]["indexed_pools"],
        serde_json::json!([{ "prefix": "10.3.0.0/16", "hosts": CLIENTS }]),
        "{status}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
