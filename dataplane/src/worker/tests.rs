//! Workers joined by in-memory links, end to end through real ESP.

use std::net::{Ipv4Addr, SocketAddr};

use crate::testkit::manual_keys as keys;

use super::*;
use crate::port::mem::{link, MemPort};
use crate::sa::manual::{install, ManualTunnel};
use crate::sa::SaPublisher;
use crate::testkit::{ipv4_udp, ipv4_udp_payload};

const CLIENT_INNER: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 5);
const SERVER_INNER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 9);

/// The gateway's view of the tunnel to the client.
fn gateway_tunnel() -> ManualTunnel {
    ManualTunnel {
        tunnel: 3,
        remote: "192.0.2.2:4500".parse().unwrap(),
        encap: Encap::EspInUdp,
        remote_ts: vec!["10.2.0.0/16".parse().unwrap()],
        inbound: keys(0x0100_0101, 1),
        outbound: keys(0x0100_0202, 2),
        replay_window: 1024,
    }
}

/// One side: `n` workers, an outside and an inside mem port each.
struct Side {
    publisher: SaPublisher,
    workers: Vec<Worker<MemPort, MemPort>>,
    /// The far ends of each worker's inside port (the protected network).
    inside: Vec<MemPort>,
    control: Vec<ControlLink>,
}

fn side(n: usize, outside: Vec<MemPort>, tunnel: &ManualTunnel) -> Side {
    let mut publisher = SaPublisher::new();
    install(publisher.edit(), tunnel, n).unwrap();
    publisher.publish();
    let mut mesh = handoff_mesh(n, 64).into_iter();
    let mut workers = Vec::new();
    let mut inside_far = Vec::new();
    let mut control = Vec::new();
    for (id, out) in outside.into_iter().enumerate() {
        let (ins, far) = link(256);
        let ctl = ControlLink::new(16);
        let cfg = WorkerConfig {
            id: id as WorkerId,
            ..WorkerConfig::default()
        };
        let handoff = mesh.next().unwrap();
        workers.push(Worker::new(
            cfg,
            out,
            ins,
            publisher.reader(),
            handoff,
            ctl.clone(),
        ));
        inside_far.push(far);
        control.push(ctl);
    }
    Side {
        publisher,
        workers,
        inside: inside_far,
        control,
    }
}

fn run_all(sides: &mut [&mut Side]) {
    for _ in 0..8 {
        for s in sides.iter_mut() {
            for w in s.workers.iter_mut() {
                w.poll_once();
            }
        }
    }
}

fn total(s: &Side) -> StatsSnapshot {
    let mut t = StatsSnapshot::default();
    for w in &s.workers {
        t.add(&w.stats().snapshot());
    }
    t
}

fn send_inner(port: &MemPort, pkt: Vec<u8>) {
    let mut p = Packet::from_slice(&pkt).unwrap();
    p.meta.encap = Encap::Inner;
    port.send(p).ok().unwrap();
}

fn recv_all(port: &MemPort) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| port.recv())
        .map(|p| p.data().to_vec())
        .collect()
}

/// A gateway with one worker and a client with one worker, cabled.
fn pair() -> (Side, Side) {
    let (gw_out, cl_out) = link(256);
    let gw_t = gateway_tunnel();
    let cl_t = gw_t.mirrored(
        "192.0.2.1:4500".parse::<SocketAddr>().unwrap(),
        vec!["10.1.0.0/16".parse().unwrap()],
    );
    let gw = side(1, vec![gw_out], &gw_t);
    let cl = side(1, vec![cl_out], &cl_t);
    (gw, cl)
}

#[test]
fn traffic_crosses_the_tunnel_both_ways() {
    let (mut gw, mut cl) = pair();
    for i in 0..100u32 {
        let up = ipv4_udp(CLIENT_INNER, SERVER_INNER, (1000, 2000), &i.to_be_bytes());
        send_inner(&cl.inside[0], up);
        let down = ipv4_udp(
            SERVER_INNER,
            CLIENT_INNER,
            (2000, 1000),
            &(i + 1000).to_be_bytes(),
        );
        send_inner(&gw.inside[0], down);
    }
    run_all(&mut [&mut gw, &mut cl]);
    let at_gw = recv_all(&gw.inside[0]);
    let at_cl = recv_all(&cl.inside[0]);
    assert_eq!(at_gw.len(), 100);
    assert_eq!(at_cl.len(), 100);
    for (i, p) in at_gw.iter().enumerate() {
        assert_eq!(ipv4_udp_payload(p).unwrap(), (i as u32).to_be_bytes());
    }
    for (i, p) in at_cl.iter().enumerate() {
        assert_eq!(
            ipv4_udp_payload(p).unwrap(),
            (i as u32 + 1000).to_be_bytes()
        );
    }
    let g = total(&gw);
    assert_eq!((g.decrypted, g.encrypted, g.total_drops()), (100, 100, 0));
    let sa = gw.publisher.published();
    let inb = sa.inbound_sa(0x0100_0101).unwrap();
    assert_eq!(inb.counters.packets(), 100);
    assert_eq!(inb.highest_seq(), 100);
}

#[test]
fn every_bad_packet_is_dropped_and_counted_by_reason() {
    let (mut gw, mut cl) = pair();
    // Inner source outside the client's selectors: sealed by the client,
    // refused by the gateway's policy check after decryption.
    let spoofed = ipv4_udp(Ipv4Addr::new(10, 9, 9, 9), SERVER_INNER, (1, 2), b"x");
    send_inner(&cl.inside[0], spoofed);
    run_all(&mut [&mut gw, &mut cl]);
    // No route on the gateway.
    send_inner(
        &gw.inside[0],
        ipv4_udp(SERVER_INNER, Ipv4Addr::new(10, 7, 0, 1), (1, 2), b"x"),
    );
    send_inner(&gw.inside[0], vec![0x45, 0, 0]); // truncated inner
                                                 // From "the network": unknown SPI, too short, keepalive, IKE.
    let from_net = |bytes: &[u8]| {
        let mut p = Packet::from_slice(bytes).unwrap();
        p.meta.encap = Encap::EspInUdp;
        p
    };
    let mut unknown = vec![0x77, 0, 0, 1, 0, 0, 0, 1];
    unknown.extend_from_slice(&[0u8; 40]);
    // The gateway's outside port is fed from the client's end of the cable.
    let cl_outside = &cl.workers[0].core.outside;
    for b in [
        &unknown[..],
        &[1, 2, 3][..],
        &[0xff][..],
        &[0, 0, 0, 0, 0x11, 0x22][..],
    ] {
        cl_outside.send(from_net(b)).ok().unwrap();
    }
    run_all(&mut [&mut gw]);
    let g = total(&gw);
    assert_eq!(g.drops(DropReason::PolicyMismatch), 1);
    assert_eq!(g.drops(DropReason::NoRoute), 1);
    assert_eq!(g.drops(DropReason::UnknownSpi), 1);
    assert_eq!(
        g.drops(DropReason::Malformed),
        2,
        "short ESP and truncated inner"
    );
    assert_eq!(g.keepalives, 1);
    assert_eq!(g.to_control, 1);
    let ike = gw.control[0].to_control.pop().unwrap();
    assert_eq!(ike.data(), &[0, 0, 0, 0, 0x11, 0x22]);
    assert!(recv_all(&gw.inside[0]).is_empty());
}

#[test]
fn esp_whose_next_header_names_the_other_ip_version_is_malformed() {
    let (mut gw, cl) = pair();
    let cl_t = gateway_tunnel().mirrored(
        "192.0.2.1:4500".parse::<SocketAddr>().unwrap(),
        vec!["10.1.0.0/16".parse().unwrap()],
    );
    let (_, out) = crate::sa::manual::build(&cl_t, 1).unwrap();
    let inner = ipv4_udp(CLIENT_INNER, SERVER_INNER, (1, 2), b"x");
    for nh in [next_header::IPV6, next_header::IPV4] {
        let mut p = Packet::from_slice(&inner).unwrap();
        esp::seal(&out, &mut p, nh).unwrap();
        p.meta.encap = Encap::EspInUdp;
        cl.workers[0].core.outside.send(p).ok().unwrap();
    }
    run_all(&mut [&mut gw]);
    assert_eq!(
        total(&gw).drops(DropReason::Malformed),
        1,
        "IPv4 sent as IPv6"
    );
    assert_eq!(
        recv_all(&gw.inside[0]),
        vec![inner],
        "the honest one passes"
    );
}

#[test]
fn replayed_esp_is_dropped() {
    let (mut gw, mut cl) = pair();
    send_inner(
        &cl.inside[0],
        ipv4_udp(CLIENT_INNER, SERVER_INNER, (1, 2), b"once"),
    );
    cl.workers[0].poll_once();
    // Capture the ESP packet on the wire and deliver it twice.
    let esp = gw.workers[0].core.outside.recv().unwrap();
    let copy = Packet::from_slice(esp.data()).map(|mut p| {
        p.meta = esp.meta;
        p
    });
    let cl_out = &cl.workers[0].core.outside;
    cl_out.send(esp).ok().unwrap();
    cl_out.send(copy.unwrap()).ok().unwrap();
    gw.workers[0].poll_once();
    assert_eq!(recv_all(&gw.inside[0]).len(), 1);
    assert_eq!(total(&gw).drops(DropReason::Replay), 1);
}

#[test]
fn packets_reaching_the_wrong_worker_are_handed_to_the_owner() {
    // Gateway with two workers; the client's packets all arrive on worker 0
    // and the tunnel belongs to worker owner_of_spi(spi, 2).
    let gw_t = gateway_tunnel();
    let owner = crate::sa::owner_of_spi(gw_t.inbound.spi, 2) as usize;
    let (w0_out, cl_out) = link(256);
    let (w1_out, w1_far) = link(256);
    let cl_t = gw_t.mirrored(
        "192.0.2.1:4500".parse().unwrap(),
        vec!["10.1.0.0/16".parse().unwrap()],
    );
    let mut gw = side(2, vec![w0_out, w1_out], &gw_t);
    let mut cl = side(1, vec![cl_out], &cl_t);
    for i in 0..10u32 {
        send_inner(
            &cl.inside[0],
            ipv4_udp(CLIENT_INNER, SERVER_INNER, (1, 2), &i.to_be_bytes()),
        );
        // Replies enter at the non-owner's inside port.
        send_inner(
            &gw.inside[1 - owner],
            ipv4_udp(SERVER_INNER, CLIENT_INNER, (2, 1), b"r"),
        );
    }
    run_all(&mut [&mut gw, &mut cl]);
    assert_eq!(
        recv_all(&gw.inside[owner]).len(),
        10,
        "decrypted by the owner"
    );
    let s_owner = gw.workers[owner].stats().snapshot();
    let s_other = gw.workers[1 - owner].stats().snapshot();
    assert_eq!(s_owner.decrypted, 10);
    assert_eq!(s_owner.encrypted, 10);
    assert_eq!(s_other.decrypted + s_other.encrypted, 0);
    assert_eq!(s_other.handed_off, if owner == 0 { 10 } else { 20 });
    // Both workers' sockets face the same network: move what worker 1 sent
    // onto the client's cable.
    while let Some(p) = w1_far.recv() {
        gw.workers[0].core.outside.send(p).unwrap();
    }
    run_all(&mut [&mut cl]);
    assert_eq!(recv_all(&cl.inside[0]).len(), 10);
}

#[test]
fn a_published_rekey_switches_the_outbound_sa_without_a_pause() {
    let (mut gw, mut cl) = pair();
    send_inner(
        &gw.inside[0],
        ipv4_udp(SERVER_INNER, CLIENT_INNER, (2, 1), b"old"),
    );
    run_all(&mut [&mut gw, &mut cl]);
    assert_eq!(recv_all(&cl.inside[0]).len(), 1);
    // New epoch: client installs the new inbound SA first (make before
    // break), then the gateway switches its outbound SA.
    let mut new_cl = gateway_tunnel().mirrored(
        "192.0.2.1:4500".parse().unwrap(),
        vec!["10.1.0.0/16".parse().unwrap()],
    );
    new_cl.inbound = keys(0x0200_0303, 9);
    let mut t = cl.publisher.edit().clone();
    let new_in = crate::sa::InboundSa::new(crate::sa::InboundSpec {
        spi: new_cl.inbound.spi,
        tunnel: 3,
        owner: 0,
        key: &new_cl.inbound.key,
        salt: new_cl.inbound.salt,
        esn: true,
        replay_window: 1024,
        allowed_sources: vec!["10.1.0.0/16".parse().unwrap()],
        limits: Default::default(),
    })
    .unwrap();
    t.install_inbound(new_in).unwrap();
    *cl.publisher.edit() = t;
    cl.publisher.publish();
    let new_out = crate::sa::OutboundSa::new(crate::sa::OutboundSpec {
        spi: 0x0200_0303,
        tunnel: 3,
        owner: 0,
        key: &[9; 16],
        salt: [9; 4],
        esn: true,
        remote: "192.0.2.2:4500".parse().unwrap(),
        encap: Encap::EspInUdp,
        limits: Default::default(),
    })
    .unwrap();
    gw.publisher.edit().install_outbound(new_out);
    gw.publisher.publish();
    send_inner(
        &gw.inside[0],
        ipv4_udp(SERVER_INNER, CLIENT_INNER, (2, 1), b"new"),
    );
    run_all(&mut [&mut gw, &mut cl]);
    let got = recv_all(&cl.inside[0]);
    assert_eq!(got.len(), 1);
    assert_eq!(ipv4_udp_payload(&got[0]).unwrap(), b"new");
    let cl_tables = cl.publisher.published();
    assert_eq!(
        cl_tables
            .inbound_sa(0x0200_0303)
            .unwrap()
            .counters
            .packets(),
        1
    );
    assert_eq!(
        cl_tables
            .inbound_sa(0x0100_0202)
            .unwrap()
            .counters
            .packets(),
        1
    );
}

#[test]
fn control_messages_are_sealed_on_request_and_passed_up_after_opening() {
    let (mut gw, mut cl) = pair();
    let out_sa = gw.publisher.published().outbound_sa(3).unwrap().clone();
    let msg = b"EPNG ping on this epoch";
    gw.control[0]
        .seal
        .push(SealRequest {
            sa: out_sa,
            packet: Packet::from_slice(msg).unwrap(),
        })
        .ok()
        .unwrap();
    run_all(&mut [&mut gw, &mut cl]);
    let got = cl.control[0]
        .to_control
        .pop()
        .expect("control message reached the client's control plane");
    assert_eq!(got.meta.encap, Encap::Control);
    assert_eq!(
        got.meta.spi, 0x0100_0202,
        "tagged with the inbound SA it came on"
    );
    assert_eq!(got.data(), msg);
    assert!(recv_all(&cl.inside[0]).is_empty(), "never forwarded inside");
    assert_eq!(total(&cl).to_control, 1);
}

#[test]
fn data_for_a_probing_tunnel_is_held_then_sent_or_dropped() {
    let (mut gw, mut cl) = pair();
    // The gateway's tunnel has a route but its outbound SA is not confirmed.
    let sa = gw.publisher.edit().remove_outbound(3).unwrap();
    gw.publisher.edit().set_holding(3, true);
    gw.publisher.publish();
    for i in 0..20u32 {
        send_inner(
            &gw.inside[0],
            ipv4_udp(SERVER_INNER, CLIENT_INNER, (2, 1), &i.to_be_bytes()),
        );
    }
    run_all(&mut [&mut gw, &mut cl]);
    assert!(
        recv_all(&cl.inside[0]).is_empty(),
        "nothing leaves before the epoch is confirmed"
    );
    assert_eq!(
        total(&gw).drops(DropReason::HoldDropped),
        4,
        "16 held, 4 over the bound"
    );
    // The pong came back: the outbound SA goes in, the held data follows.
    gw.publisher.edit().install_outbound(sa);
    gw.publisher.edit().set_holding(3, false);
    gw.publisher.publish();
    run_all(&mut [&mut gw, &mut cl]);
    let got = recv_all(&cl.inside[0]);
    assert_eq!(got.len(), 16);
    assert_eq!(
        ipv4_udp_payload(&got[0]).unwrap(),
        0u32.to_be_bytes(),
        "in order"
    );
    // A tunnel that stops probing without an SA drops what it held.
    let sa = gw.publisher.edit().remove_outbound(3).unwrap();
    gw.publisher.edit().set_holding(3, true);
    gw.publisher.publish();
    send_inner(
        &gw.inside[0],
        ipv4_udp(SERVER_INNER, CLIENT_INNER, (2, 1), b"late"),
    );
    run_all(&mut [&mut gw]);
    gw.publisher.edit().set_holding(3, false);
    gw.publisher.publish();
    run_all(&mut [&mut gw]);
    assert_eq!(total(&gw).drops(DropReason::HoldDropped), 5);
    drop(sa);
}

/// `pkt` with DF set or cleared (and the header checksum fixed).
fn set_df(mut pkt: Vec<u8>, df: bool) -> Vec<u8> {
    pkt[6] = if df { pkt[6] | 0x40 } else { pkt[6] & !0x40 };
    pkt[10..12].copy_from_slice(&[0, 0]);
    let c = crate::wire::checksum::checksum(&pkt[..20]);
    pkt[10..12].copy_from_slice(&c.to_be_bytes());
    pkt
}

#[test]
fn a_df_packet_too_big_for_the_tunnel_gets_fragmentation_needed_rate_limited() {
    let (mut gw, mut cl) = pair();
    // 1439 bytes: one more than fits in ESP-in-UDP over IPv4 on 1500.
    let udp = |len: usize| ipv4_udp(SERVER_INNER, CLIENT_INNER, (1, 2), &vec![7u8; len - 28]);
    let big = set_df(udp(1439), true);
    for _ in 0..25 {
        send_inner(&gw.inside[0], big.clone());
    }
    // Without DF the packet is split in two fragments that fit, and 1438
    // with DF fits as it is.
    send_inner(&gw.inside[0], set_df(udp(1439), false));
    let fits = set_df(udp(1438), true);
    send_inner(&gw.inside[0], fits.clone());
    run_all(&mut [&mut gw, &mut cl]);

    let back = recv_all(&gw.inside[0]);
    let burst = PmtuConfig::default().icmp_burst as usize;
    assert_eq!(back.len(), burst, "ICMP up to the burst, then limited");
    let icmp = &back[0];
    assert_eq!(&icmp[16..20], &SERVER_INNER.octets(), "to the sender");
    assert_eq!(
        &icmp[12..16],
        &CLIENT_INNER.octets(),
        "from the destination"
    );
    assert_eq!((icmp[20], icmp[21]), (3, 4), "fragmentation needed");
    assert_eq!(u16::from_be_bytes([icmp[26], icmp[27]]), 1438);
    assert_eq!(&icmp[28..48], &big[..20]);
    let g = total(&gw);
    assert_eq!(g.drops(DropReason::TooBig), 25);
    assert_eq!(g.icmp_too_big_sent, burst as u64);
    assert_eq!(g.icmp_too_big_limited, 25 - burst as u64);
    assert_eq!(g.fragmented, 1);
    assert_eq!(g.encrypted, 3);
    let arrived = recv_all(&cl.inside[0]);
    assert_eq!(arrived.len(), 3);
    assert!(arrived.contains(&fits));
    let frags: Vec<&Vec<u8>> = arrived.iter().filter(|a| **a != fits).collect();
    assert_eq!(frags[0].len(), 20 + 1416);
    assert_eq!(frags[1].len(), 20 + 3);
    let body = [&frags[0][20..], &frags[1][20..]].concat();
    assert_eq!(body, big[20..], "the fragments carry the whole packet");
}

/// An IPv4 TCP SYN from `src` to `dst` with an MSS option of `mss` and a
/// correct TCP checksum.
fn tcp_syn(src: Ipv4Addr, dst: Ipv4Addr, mss: u16) -> Vec<u8> {
    use crate::wire::checksum::{finish, sum};
    let mut p = vec![0u8; 44];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&44u16.to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = finish(sum(&p[..20]));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&80u16.to_be_bytes());
    p[32] = 6 << 4;
    p[33] = 0x02;
    p[34..36].copy_from_slice(&65535u16.to_be_bytes());
    p[40..44].copy_from_slice(&[2, 4, 0, 0]);
    p[42..44].copy_from_slice(&mss.to_be_bytes());
    let c = tcp_sum(&p);
    p[36..38].copy_from_slice(&c.to_be_bytes());
    p
}

fn tcp_sum(p: &[u8]) -> u16 {
    use crate::wire::checksum::{finish, sum};
    let mut t = p[20..].to_vec();
    t[16] = 0;
    t[17] = 0;
    let pseudo = sum(&p[12..20]) + 6 + t.len() as u32;
    finish(pseudo + sum(&t))
}

#[test]
fn tcp_syns_crossing_the_tunnel_have_their_mss_clamped_both_ways() {
    let (mut gw, mut cl) = pair();
    send_inner(&gw.inside[0], tcp_syn(SERVER_INNER, CLIENT_INNER, 1460));
    send_inner(&cl.inside[0], tcp_syn(CLIENT_INNER, SERVER_INNER, 1200));
    run_all(&mut [&mut gw, &mut cl]);
    let at_client = recv_all(&cl.inside[0]);
    assert_eq!(at_client.len(), 1);
    let syn = &at_client[0];
    assert_eq!(u16::from_be_bytes([syn[42], syn[43]]), 1398, "1438 - 40");
    assert_eq!(u16::from_be_bytes([syn[36], syn[37]]), tcp_sum(syn));
    let at_gw = recv_all(&gw.inside[0]);
    assert_eq!(
        u16::from_be_bytes([at_gw[0][42], at_gw[0][43]]),
        1200,
        "small enough"
    );
    assert_eq!(total(&gw).mss_clamped, 1);

    // Switched off, the SYN crosses as it was.
    let mut gw_t = gateway_tunnel();
    gw_t.remote_ts = vec!["10.2.0.0/16".parse().unwrap()];
    let (gw_out, cl_out) = link(256);
    let mut off = side(1, vec![gw_out], &gw_t);
    off.workers[0].core.cfg.pmtu.mss_clamp = false;
    let cl_t = gw_t.mirrored(
        "192.0.2.1:4500".parse::<SocketAddr>().unwrap(),
        vec!["10.1.0.0/16".parse().unwrap()],
    );
    let mut cl2 = side(1, vec![cl_out], &cl_t);
    cl2.workers[0].core.cfg.pmtu.mss_clamp = false;
    send_inner(&off.inside[0], tcp_syn(SERVER_INNER, CLIENT_INNER, 1460));
    run_all(&mut [&mut off, &mut cl2]);
    let got = recv_all(&cl2.inside[0]);
    assert_eq!(u16::from_be_bytes([got[0][42], got[0][43]]), 1460);
}

#[test]
fn with_thousands_of_tunnels_every_packet_meets_its_own_sa() {
    // Above the ESP look-ahead's threshold: ESP and clear packets fetch
    // their SAs ahead.
    let n = look_ahead::ESP_FROM_SAS + 904;
    let host = |base: [u8; 4], i: usize| Ipv4Addr::from(u32::from(Ipv4Addr::from(base)) + i as u32);
    let (gw_out, cl_out) = link(256);
    let mut gw = side(1, vec![gw_out], &gateway_tunnel());
    let mut cl = side(
        1,
        vec![cl_out],
        &gateway_tunnel().mirrored(
            "192.0.2.1:4500".parse::<SocketAddr>().unwrap(),
            vec!["10.1.0.0/16".parse().unwrap()],
        ),
    );
    for i in 0..n {
        let spi = crate::sa::spi::make_spi(i + 1, 1).unwrap();
        let gw_t = ManualTunnel {
            tunnel: 10 + i as u32,
            remote: "192.0.2.2:4500".parse().unwrap(),
            encap: Encap::EspInUdp,
            remote_ts: vec![format!("{}/32", host([10, 128, 0, 0], i)).parse().unwrap()],
            inbound: keys(spi, (i % 200) as u8 + 3),
            outbound: keys(spi, (i % 190) as u8 + 5),
            replay_window: 1024,
        };
        let cl_t = gw_t.mirrored(
            "192.0.2.1:4500".parse::<SocketAddr>().unwrap(),
            vec![format!("{}/32", host([10, 64, 0, 0], i)).parse().unwrap()],
        );
        install(gw.publisher.edit(), &gw_t, 1).unwrap();
        install(cl.publisher.edit(), &cl_t, 1).unwrap();
    }
    gw.publisher.publish();
    cl.publisher.publish();
    // Every tenth tunnel, both ways, in one burst-sized batch at a time.
    let picks: Vec<usize> = (0..n).step_by(10).collect();
    let (mut at_gw, mut at_cl) = (Vec::new(), Vec::new());
    for chunk in picks.chunks(32) {
        for &i in chunk {
            let (c, s) = (host([10, 128, 0, 0], i), host([10, 64, 0, 0], i));
            send_inner(
                &cl.inside[0],
                ipv4_udp(c, s, (1000, 2000), &(i as u32).to_be_bytes()),
            );
            send_inner(
                &gw.inside[0],
                ipv4_udp(s, c, (2000, 1000), &(i as u32).to_be_bytes()),
            );
        }
        run_all(&mut [&mut gw, &mut cl]);
        at_gw.extend(recv_all(&gw.inside[0]));
        at_cl.extend(recv_all(&cl.inside[0]));
    }
    assert_eq!((at_gw.len(), at_cl.len()), (picks.len(), picks.len()));
    let g = total(&gw);
    assert_eq!(g.total_drops(), 0);
    let sa = gw.publisher.published();
    for &i in &picks {
        let spi = crate::sa::spi::make_spi(i + 1, 1).unwrap();
        assert_eq!(
            sa.inbound_sa(spi).unwrap().counters.packets(),
            1,
            "tunnel {i}"
        );
    }
}

/// A mem port with something happening at each burst it takes in.
struct HookedPort {
    port: MemPort,
    /// Published as the first burst arrives: what a worker sees when it is
    /// descheduled while the control plane publishes a new SA and the
    /// peer's first packet on it arrives.
    publish: Option<(SaPublisher, ManualTunnel)>,
    /// Packets the port drops of its own at each burst (as a TUN queue
    /// does with oversize reads).
    drops_per_burst: u64,
    dropped: u64,
}

impl HookedPort {
    fn new(port: MemPort) -> HookedPort {
        HookedPort {
            port,
            publish: None,
            drops_per_burst: 0,
            dropped: 0,
        }
    }
}

impl Port for HookedPort {
    fn rx_burst(
        &mut self,
        pool: &mut PacketPool,
        out: &mut Vec<Packet>,
        max: usize,
    ) -> std::io::Result<usize> {
        if let Some((mut publisher, tunnel)) = self.publish.take() {
            install(publisher.edit(), &tunnel, 1).unwrap();
            publisher.publish();
        }
        self.dropped += self.drops_per_burst;
        self.port.rx_burst(pool, out, max)
    }

    fn tx_burst(
        &mut self,
        pkts: &mut Vec<Packet>,
        pool: &mut PacketPool,
    ) -> std::io::Result<usize> {
        self.port.tx_burst(pkts, pool)
    }

    fn rx_dropped(&self) -> u64 {
        self.dropped
    }
}

#[test]
fn a_packet_received_after_a_publication_meets_the_new_tables() {
    let (gw_out, cl_out) = link(256);
    let gw_t = gateway_tunnel();
    let cl_t = gw_t.mirrored(
        "192.0.2.1:4500".parse::<SocketAddr>().unwrap(),
        vec!["10.1.0.0/16".parse().unwrap()],
    );
    let mut cl = side(1, vec![cl_out], &cl_t);
    // The gateway starts without the tunnel; it is published only as the
    // client's first packet on it comes in.
    let mut publisher = SaPublisher::new();
    publisher.publish();
    let reader = publisher.reader();
    let (inside, inside_far) = link(256);
    let mut gw = Worker::new(
        WorkerConfig::default(),
        HookedPort {
            publish: Some((publisher, gw_t)),
            ..HookedPort::new(gw_out)
        },
        inside,
        reader,
        handoff_mesh(1, 64).pop().unwrap(),
        ControlLink::new(16),
    );
    send_inner(
        &cl.inside[0],
        ipv4_udp(CLIENT_INNER, SERVER_INNER, (1, 2), b"first"),
    );
    run_all(&mut [&mut cl]);
    gw.poll_once();
    let s = gw.stats().snapshot();
    assert_eq!(
        s.drops(DropReason::UnknownSpi),
        0,
        "opened with stale tables"
    );
    assert_eq!(s.decrypted, 1);
    assert_eq!(recv_all(&inside_far).len(), 1);
}

#[test]
fn what_a_port_drops_on_receive_is_counted_with_the_workers_drops() {
    let (outside, _outside_far) = link(16);
    let (inside, _inside_far) = link(16);
    let publisher = SaPublisher::new();
    let mut w = Worker::new(
        WorkerConfig::default(),
        outside,
        HookedPort {
            drops_per_burst: 3,
            ..HookedPort::new(inside)
        },
        publisher.reader(),
        handoff_mesh(1, 64).pop().unwrap(),
        ControlLink::new(16),
    );
    for _ in 0..4 {
        w.poll_once();
    }
    let s = w.stats().snapshot();
    assert_eq!(s.drops(DropReason::RxDropped), 12);
    assert_eq!(s.total_drops(), 12);
}

#[test]
fn an_idle_worker_on_a_dual_port_sleeps_on_both_sockets_and_wakes_for_either() {
    use crate::port::dual::DualPort;
    use crate::port::udp::UdpPort;
    let bind = || UdpPort::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let (udp, raw, inside) = (bind(), bind(), bind());
    let raw_addr = raw.local_addr();
    let publisher = SaPublisher::new();
    let w = Worker::new(
        WorkerConfig {
            spin_before_sleep: 4,
            ..WorkerConfig::default()
        },
        DualPort::new(udp, raw),
        inside,
        publisher.reader(),
        handoff_mesh(1, 64).pop().unwrap(),
        ControlLink::new(16),
    );
    let stats = w.stats();
    let stop = Arc::new(AtomicBool::new(false));
    let thread = w.spawn(stop.clone()).unwrap();
    let idle = Duration::from_millis(300);
    std::thread::sleep(idle);
    // Sleeping in poll (1 ms) is a few hundred idle polls in 300 ms;
    // napping 100 µs at a time was thousands.
    let polls = stats.idle_polls.get();
    // A datagram on the second socket wakes it.
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.send_to(&[0u8; 12], raw_addr).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while stats.outside_rx.get() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
    assert!(polls < 600, "{polls} idle polls in {idle:?}: not sleeping");
    assert_eq!(stats.outside_rx.get(), 1, "the raw side's datagram");
}
