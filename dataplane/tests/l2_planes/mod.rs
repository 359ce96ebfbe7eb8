//! Two whole data planes (a gateway and a client, one worker each, real
//! ESP with manual SAs) whose outside ports are given L2 ports cabled to
//! each other; the inside ports are in-memory. Used by the AF_PACKET,
//! AF_XDP and DPDK tests.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dataplane::packet::Encap;
use dataplane::port::mem::{link, MemPort};
use dataplane::port::Port;
use dataplane::sa::manual::{install, ManualTunnel};
use dataplane::sa::SaPublisher;
use dataplane::testkit::manual_keys as keys;
use dataplane::testkit::{ipv4_udp, ipv4_udp_payload};
use dataplane::worker::{ControlLink, Handoff, Worker, WorkerConfig};
use dataplane::{DropReason, Packet};

const CLIENT_INNER: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 5);
const SERVER_INNER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 9);

fn plane<O: Port>(outside: O, tunnel: &ManualTunnel) -> (SaPublisher, Worker<O, MemPort>, MemPort) {
    let mut publisher = SaPublisher::new();
    install(publisher.edit(), tunnel, 1).unwrap();
    publisher.publish();
    let (inside, far) = link(512);
    let w = Worker::new(
        WorkerConfig::default(),
        outside,
        inside,
        publisher.reader(),
        Handoff::single(),
        ControlLink::new(16),
    );
    (publisher, w, far)
}

fn inner(pkt: Vec<u8>) -> Packet {
    let mut p = Packet::from_slice(&pkt).unwrap();
    p.meta.encap = Encap::Inner;
    p
}

/// The gateway's outside port owns 192.0.2.1, the client's 192.0.2.2.
/// Sends `n` inner packets each way, sealed and opened by the workers;
/// checks every payload arrived in order and nothing was dropped.
pub fn traffic_both_ways<O: Port>(gw_port: O, cl_port: O, n: u32) {
    let gw_t = ManualTunnel {
        tunnel: 3,
        remote: "192.0.2.2:4500".parse().unwrap(),
        encap: Encap::EspInUdp,
        remote_ts: vec!["10.2.0.0/16".parse().unwrap()],
        inbound: keys(0x0100_0101, 1),
        outbound: keys(0x0100_0202, 2),
        replay_window: 1024,
    };
    let cl_t = gw_t.mirrored(
        "192.0.2.1:4500".parse().unwrap(),
        vec!["10.1.0.0/16".parse().unwrap()],
    );
    let (_gp, mut gw, gw_inside) = plane(gw_port, &gw_t);
    let (_cp, mut cl, cl_inside) = plane(cl_port, &cl_t);
    let (mut at_gw, mut at_cl) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut sent = 0;
    while (at_gw.len() < n as usize || at_cl.len() < n as usize) && Instant::now() < deadline {
        // A few in flight at a time: kernel rings are bounded.
        if sent < n && sent as usize <= at_gw.len().min(at_cl.len()) + 16 {
            let up = ipv4_udp(
                CLIENT_INNER,
                SERVER_INNER,
                (1000, 2000),
                &sent.to_be_bytes(),
            );
            cl_inside.send(inner(up)).ok().unwrap();
            let down = ipv4_udp(
                SERVER_INNER,
                CLIENT_INNER,
                (2000, 1000),
                &(sent + 1000).to_be_bytes(),
            );
            gw_inside.send(inner(down)).ok().unwrap();
            sent += 1;
        }
        gw.poll_once();
        cl.poll_once();
        at_gw.extend(std::iter::from_fn(|| gw_inside.recv()).map(|p| p.data().to_vec()));
        at_cl.extend(std::iter::from_fn(|| cl_inside.recv()).map(|p| p.data().to_vec()));
    }
    assert_eq!((at_gw.len(), at_cl.len()), (n as usize, n as usize));
    for (i, p) in at_gw.iter().enumerate() {
        assert_eq!(ipv4_udp_payload(p).unwrap(), (i as u32).to_be_bytes());
    }
    for (i, p) in at_cl.iter().enumerate() {
        assert_eq!(
            ipv4_udp_payload(p).unwrap(),
            (i as u32 + 1000).to_be_bytes()
        );
    }
    for w in [&gw.stats(), &cl.stats()] {
        let s = w.snapshot();
        assert_eq!((s.decrypted, s.encrypted), (u64::from(n), u64::from(n)));
        assert_eq!(s.drops[DropReason::TxFailed.index()], 0);
        assert_eq!(s.total_drops(), 0, "{s:?}");
    }
}
