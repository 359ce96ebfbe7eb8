use super::*;
use crate::port::l2::ipv4::checksum;
use crate::port::l2::ipv6::{Ipv6Header, ICMPV6};
use crate::port::l2::ndp::ND_LEN;
use proptest::prelude::*;
use std::net::SocketAddrV4;

const A_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
const B_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);
const A_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

fn engine(mac: MacAddr, ip: Ipv4Addr) -> L2Outside {
    L2Outside::new(L2Config::new(mac, ip, 24), SharedNeighbours::new())
}

fn esp_to(dst: Ipv4Addr, port: u16, body: &[u8]) -> Packet {
    let mut p = Packet::from_slice(body).unwrap();
    p.meta.remote = SocketAddr::V4(SocketAddrV4::new(dst, port));
    p.meta.encap = if port == 0 {
        Encap::RawEsp
    } else {
        Encap::EspInUdp
    };
    p
}

/// A frame from B to A: Ethernet + IPv4 + `l4` of `proto`.
fn frame_b_to_a(proto: u8, l4: &[u8]) -> Packet {
    let mut p = Packet::from_slice(l4).unwrap();
    let n = p.len();
    emit_ipv4(p.push_front(20).unwrap(), B_IP, A_IP, proto, n, 7, 64).unwrap();
    EthernetHeader {
        dst: A_MAC,
        src: B_MAC,
        ethertype: ethertype::IPV4,
    }
    .emit(p.push_front(14).unwrap())
    .unwrap();
    p
}

fn udp(src: u16, dst: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; 8];
    UdpHeader {
        src_port: src,
        dst_port: dst,
        len: 8 + payload.len(),
    }
    .emit(&mut v)
    .unwrap();
    v.extend_from_slice(payload);
    v
}

/// Runs frames between two engines until quiet; returns what each delivered.
fn exchange(
    a: &mut L2Outside,
    b: &mut L2Outside,
    mut a_out: Vec<Packet>,
    now: Instant,
) -> (Vec<Packet>, Vec<Packet>) {
    let mut pool = PacketPool::with_capacity(0);
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    let mut b_out = Vec::new();
    for _ in 0..8 {
        for mut f in a_out.drain(..) {
            match b.rx(&mut f, now) {
                RxVerdict::Deliver => got_b.push(f),
                RxVerdict::Reply => b_out.push(f),
                _ => {}
            }
        }
        b.poll(now, &mut b_out, &mut pool);
        for mut f in b_out.drain(..) {
            match a.rx(&mut f, now) {
                RxVerdict::Deliver => got_a.push(f),
                RxVerdict::Reply => a_out.push(f),
                _ => {}
            }
        }
        a.poll(now, &mut a_out, &mut pool);
    }
    (got_a, got_b)
}

#[test]
fn first_packet_waits_for_arp_then_reaches_the_peer_as_esp() {
    let (mut a, mut b) = (engine(A_MAC, A_IP), engine(B_MAC, B_IP));
    let mut pool = PacketPool::with_capacity(0);
    let now = Instant::now();
    let mut out = Vec::new();
    a.tx(
        esp_to(B_IP, 4500, b"\x00\x00\x10\x01esp-body"),
        now,
        &mut out,
        &mut pool,
    );
    assert_eq!(a.held(), 1);
    assert_eq!(out.len(), 1, "only the ARP request leaves");
    assert_eq!(
        EthernetHeader::parse(out[0].data()).unwrap().ethertype,
        ethertype::ARP
    );
    let (_, got_b) = exchange(&mut a, &mut b, out, now);
    assert_eq!(a.held(), 0);
    assert_eq!(got_b.len(), 1);
    assert_eq!(got_b[0].data(), b"\x00\x00\x10\x01esp-body");
    assert_eq!(got_b[0].meta.remote, "192.0.2.1:4500".parse().unwrap());
    assert_eq!(got_b[0].meta.local_port, 4500);
    assert_eq!(a.stats().arp_requests_sent, 1);
    assert_eq!(b.stats().arp_requests_answered, 1);
    // Both sides learned: B from the request for it, A from the reply.
    assert!(a.neighbours.shared().lookup(B_IP) == Some(B_MAC));
    assert!(b.neighbours.shared().lookup(A_IP) == Some(A_MAC));
    // The next packet goes straight out.
    let mut out = Vec::new();
    a.tx(esp_to(B_IP, 4500, b"second"), now, &mut out, &mut pool);
    assert_eq!(out.len(), 1);
    let f = out[0].data();
    assert_eq!(&f[..6], &B_MAC.0);
    assert_eq!(checksum(&f[14..34]), 0, "outer IPv4 checksum verifies");
    assert_eq!(&f[34..36], &4500u16.to_be_bytes(), "source port");
    assert_eq!(&f[40..42], &[0, 0], "UDP checksum zero (RFC 3948)");
}

#[test]
fn raw_esp_and_ike_on_500_reach_the_worker() {
    let mut a = engine(A_MAC, A_IP);
    let now = Instant::now();
    let mut esp = frame_b_to_a(protocol::ESP, b"\x00\x00\x00\x07rawesp");
    assert_eq!(a.rx(&mut esp, now), RxVerdict::Deliver);
    assert_eq!(esp.data(), b"\x00\x00\x00\x07rawesp");
    assert_eq!(esp.meta.encap, Encap::RawEsp);
    assert_eq!(esp.meta.remote, "192.0.2.2:0".parse().unwrap());

    let mut ike = frame_b_to_a(protocol::UDP, &udp(500, 500, b"IKE_SA_INIT"));
    assert_eq!(a.rx(&mut ike, now), RxVerdict::Deliver);
    assert_eq!(
        &ike.data()[..4],
        &NON_ESP_MARKER,
        "marker added for the worker"
    );
    assert_eq!(&ike.data()[4..], b"IKE_SA_INIT");
    assert_eq!(ike.meta.local_port, 500);
    assert_eq!(ike.meta.remote, "192.0.2.2:500".parse().unwrap());
}

#[test]
fn ethernet_padding_is_not_payload() {
    let mut a = engine(A_MAC, A_IP);
    let mut f = frame_b_to_a(protocol::UDP, &udp(4500, 4500, &[0xff]));
    f.push_back(60 - f.len()).unwrap().fill(0);
    assert_eq!(a.rx(&mut f, Instant::now()), RxVerdict::Deliver);
    assert_eq!(f.data(), [0xff], "a NAT-T keepalive, no padding");
}

#[test]
fn answers_arp_and_ping_for_its_own_address_only() {
    let mut a = engine(A_MAC, A_IP);
    let now = Instant::now();
    let mut req = Packet::new();
    write_arp_frame(
        &mut req,
        MacAddr::BROADCAST,
        B_MAC,
        &ArpPacket::request(B_MAC, B_IP, A_IP),
    )
    .unwrap();
    assert_eq!(a.rx(&mut req, now), RxVerdict::Reply);
    let eth = EthernetHeader::parse(req.data()).unwrap();
    assert_eq!((eth.dst, eth.src), (B_MAC, A_MAC));
    let rep = ArpPacket::parse(&req.data()[14..]).unwrap();
    assert_eq!(
        (rep.op, rep.sender_mac, rep.sender_ip),
        (ArpOp::Reply, A_MAC, A_IP)
    );

    let mut other = Packet::new();
    let q = ArpPacket::request(B_MAC, B_IP, Ipv4Addr::new(192, 0, 2, 9));
    write_arp_frame(&mut other, MacAddr::BROADCAST, B_MAC, &q).unwrap();
    assert_eq!(a.rx(&mut other, now), RxVerdict::Consumed);

    let mut echo = vec![8, 0, 0, 0, 0, 1, 0, 1, b'h', b'i'];
    let c = checksum(&echo);
    echo[2..4].copy_from_slice(&c.to_be_bytes());
    let mut ping = frame_b_to_a(protocol::ICMP, &echo);
    assert_eq!(a.rx(&mut ping, now), RxVerdict::Reply);
    let d = ping.data();
    assert_eq!((&d[..6], &d[6..12]), (&B_MAC.0[..], &A_MAC.0[..]));
    let ip = Ipv4Header::parse(&d[14..]).unwrap();
    assert_eq!((ip.src, ip.dst), (A_IP, B_IP));
    assert_eq!(d[34], 0, "echo reply");
    assert_eq!(checksum(&d[34..]), 0);
    assert_eq!(a.stats().icmp_echo_answered, 1);
    assert_eq!(a.stats().arp_requests_answered, 1);
}

#[test]
fn drops_and_counts_what_is_not_for_it() {
    let mut a = engine(A_MAC, A_IP);
    let now = Instant::now();
    let mut wrong_mac = frame_b_to_a(protocol::ESP, b"spi!");
    wrong_mac.data_mut()[5] = 0x77;
    assert_eq!(a.rx(&mut wrong_mac, now), RxVerdict::Drop);
    let mut other_port = frame_b_to_a(protocol::UDP, &udp(4500, 53, b"dns?"));
    assert_eq!(a.rx(&mut other_port, now), RxVerdict::Drop);
    let mut bad_sum = frame_b_to_a(protocol::ESP, b"spi!");
    bad_sum.data_mut()[24] ^= 1;
    assert_eq!(a.rx(&mut bad_sum, now), RxVerdict::Drop);
    let mut short = Packet::from_slice(&[0u8; 13]).unwrap();
    assert_eq!(a.rx(&mut short, now), RxVerdict::Drop);
    let mut v6 = frame_b_to_a(protocol::ESP, b"spi!");
    v6.data_mut()[12..14].copy_from_slice(&ethertype::IPV6.to_be_bytes());
    assert_eq!(a.rx(&mut v6, now), RxVerdict::Drop);
    let s = a.stats();
    assert_eq!(
        (
            s.rx_not_for_us,
            s.rx_unsupported,
            s.rx_bad_checksum,
            s.rx_malformed
        ),
        (1, 2, 1, 1)
    );
}

#[test]
fn unresolved_packets_are_dropped_after_the_last_request() {
    let mut a = engine(A_MAC, A_IP);
    let mut pool = PacketPool::with_capacity(0);
    let t0 = Instant::now();
    let mut out = Vec::new();
    a.tx(esp_to(B_IP, 4500, b"x"), t0, &mut out, &mut pool);
    a.tx(esp_to(B_IP, 4500, b"y"), t0, &mut out, &mut pool);
    assert_eq!(out.len(), 1, "one request for both");
    for s in 1..=3 {
        a.poll(t0 + Duration::from_secs(s), &mut out, &mut pool);
    }
    assert_eq!(a.stats().arp_requests_sent, 3);
    assert_eq!(a.held(), 0);
    assert_eq!(a.stats().tx_unresolved, 2);
    assert_eq!(pool.available(), 2, "held buffers went back to the pool");
}

#[test]
fn the_hold_queue_is_bounded() {
    let mut cfg = L2Config::new(A_MAC, A_IP, 24);
    cfg.hold_limit = 2;
    let mut a = L2Outside::new(cfg, SharedNeighbours::new());
    let mut pool = PacketPool::with_capacity(0);
    let mut out = Vec::new();
    for _ in 0..5 {
        a.tx(
            esp_to(B_IP, 4500, b"x"),
            Instant::now(),
            &mut out,
            &mut pool,
        );
    }
    assert_eq!((a.held(), a.stats().tx_unresolved), (2, 3));
}

#[test]
fn off_link_peers_go_via_the_gateway_or_nowhere() {
    let mut pool = PacketPool::with_capacity(0);
    let far = Ipv4Addr::new(198, 51, 100, 7);
    let mut a = engine(A_MAC, A_IP);
    let mut out = Vec::new();
    a.tx(esp_to(far, 4500, b"x"), Instant::now(), &mut out, &mut pool);
    assert_eq!((out.len(), a.stats().tx_no_route), (0, 1));

    let mut cfg = L2Config::new(A_MAC, A_IP, 24);
    cfg.gateway = Some(Ipv4Addr::new(192, 0, 2, 254));
    let shared = SharedNeighbours::new();
    let gw_mac = MacAddr([2, 0, 0, 0, 0, 0xfe]);
    shared.insert_static(Ipv4Addr::new(192, 0, 2, 254), gw_mac);
    let mut a = L2Outside::new(cfg, shared);
    a.tx(
        esp_to(far, 0, b"\x00\x00\x00\x01raw"),
        Instant::now(),
        &mut out,
        &mut pool,
    );
    assert_eq!(out.len(), 1);
    let f = out[0].data();
    assert_eq!(&f[..6], &gw_mac.0);
    let ip = Ipv4Header::parse(&f[14..]).unwrap();
    assert_eq!((ip.dst, ip.protocol), (far, protocol::ESP));
    assert_eq!(&f[34..], b"\x00\x00\x00\x01raw");
}

#[test]
fn refuses_what_it_cannot_send() {
    let mut a = engine(A_MAC, A_IP);
    let mut pool = PacketPool::with_capacity(0);
    let mut out = Vec::new();
    a.tx(
        esp_to(B_IP, 4500, &[0u8; 1473]),
        Instant::now(),
        &mut out,
        &mut pool,
    );
    let mut v6 = esp_to(B_IP, 4500, b"x");
    v6.meta.remote = "[2001:db8::1]:4500".parse().unwrap();
    a.tx(v6, Instant::now(), &mut out, &mut pool);
    let mut inner = esp_to(B_IP, 4500, b"x");
    inner.meta.encap = Encap::Inner;
    a.tx(inner, Instant::now(), &mut out, &mut pool);
    assert!(out.is_empty());
    assert_eq!((a.stats().tx_too_big, a.stats().tx_unsupported), (1, 2));
    assert_eq!(pool.available(), 3);
}

const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

fn engine6(mac: MacAddr, ip: Ipv4Addr, ip6: Ipv6Addr) -> L2Outside {
    let mut cfg = L2Config::new(mac, ip, 24);
    cfg.ipv6 = Some(ip6);
    L2Outside::new(cfg, SharedNeighbours::new())
}

#[test]
fn ipv6_peers_are_resolved_by_neighbour_discovery_and_reached() {
    let (mut a, mut b) = (engine6(A_MAC, A_IP, A6), engine6(B_MAC, B_IP, B6));
    let mut pool = PacketPool::with_capacity(0);
    let now = Instant::now();
    let mut out = Vec::new();
    let mut p = Packet::from_slice(b"\x00\x00\x30\x03esp6").unwrap();
    p.meta.remote = SocketAddr::new(B6.into(), 4500);
    a.tx(p, now, &mut out, &mut pool);
    assert_eq!((a.held(), out.len()), (1, 1), "held, one solicitation out");
    let ns = out[0].data();
    assert_eq!(
        &ns[..6],
        &[0x33, 0x33, 0xff, 0, 0, 2],
        "to B's solicited-node group"
    );
    let (_, got_b) = exchange(&mut a, &mut b, out, now);
    assert_eq!(a.held(), 0);
    assert_eq!(got_b.len(), 1);
    assert_eq!(got_b[0].data(), b"\x00\x00\x30\x03esp6");
    assert_eq!(got_b[0].meta.remote, SocketAddr::new(A6.into(), 4500));
    assert_eq!(a.stats().nd_solicitations_sent, 1);
    assert_eq!(b.stats().nd_solicitations_answered, 1);
    // The frame on the wire carries a valid UDP checksum.
    let mut out = Vec::new();
    let mut p = Packet::from_slice(b"again").unwrap();
    p.meta.remote = SocketAddr::new(B6.into(), 4500);
    a.tx(p, now, &mut out, &mut pool);
    let f = out[0].data();
    assert_eq!(&f[12..14], &ethertype::IPV6.to_be_bytes());
    assert_eq!(pseudo_checksum(A6, B6, protocol::UDP, &f[54..]), 0);
}

#[test]
fn answers_ping6_and_refuses_routed_neighbour_discovery() {
    let mut a = engine6(A_MAC, A_IP, A6);
    let now = Instant::now();
    let frame6 = |dst: Ipv6Addr, hop: u8, msg: &mut Vec<u8>| {
        let c = pseudo_checksum(B6, dst, ICMPV6, msg);
        msg[2..4].copy_from_slice(&c.to_be_bytes());
        let mut p = Packet::from_slice(msg).unwrap();
        emit_ipv6(p.push_front(40).unwrap(), B6, dst, ICMPV6, msg.len(), hop).unwrap();
        EthernetHeader {
            dst: A_MAC,
            src: B_MAC,
            ethertype: ethertype::IPV6,
        }
        .emit(p.push_front(14).unwrap())
        .unwrap();
        p
    };
    let mut echo = vec![128, 0, 0, 0, 0, 9, 0, 1, b'v', b'6'];
    let mut ping = frame6(A6, 64, &mut echo);
    assert_eq!(a.rx(&mut ping, now), RxVerdict::Reply);
    let d = ping.data();
    assert_eq!(&d[..6], &B_MAC.0);
    let ip = Ipv6Header::parse(&d[14..]).unwrap();
    assert_eq!((ip.src, ip.dst), (A6, B6));
    assert_eq!(d[54], 129, "echo reply");
    assert_eq!(pseudo_checksum(A6, B6, ICMPV6, &d[54..]), 0);

    let mut ns = vec![0u8; ND_LEN];
    NdMessage {
        kind: ndp::NEIGHBOR_SOLICIT,
        target: A6,
        mac: Some(B_MAC),
    }
    .emit(&mut ns)
    .unwrap();
    let mut routed = frame6(solicited_node(A6), 64, &mut ns.clone());
    assert_eq!(
        a.rx(&mut routed, now),
        RxVerdict::Drop,
        "hop limit must be 255"
    );
    let mut good = frame6(solicited_node(A6), 255, &mut ns);
    good.data_mut()[..6].copy_from_slice(&multicast_mac(solicited_node(A6)).0);
    assert_eq!(a.rx(&mut good, now), RxVerdict::Reply);
    let na = NdMessage::parse(&good.data()[54..]).unwrap();
    assert_eq!(
        (na.kind, na.target, na.mac),
        (ndp::NEIGHBOR_ADVERT, A6, Some(A_MAC))
    );
    assert_eq!(
        a.neighbours.shared().lookup(B6),
        Some(B_MAC),
        "learned the asker"
    );
}

#[test]
fn without_an_ipv6_address_ipv6_is_refused_both_ways() {
    let mut a = engine(A_MAC, A_IP);
    let mut pool = PacketPool::with_capacity(0);
    let mut out = Vec::new();
    let mut p = Packet::from_slice(b"x").unwrap();
    p.meta.remote = SocketAddr::new(B6.into(), 4500);
    a.tx(p, Instant::now(), &mut out, &mut pool);
    assert!(out.is_empty());
    assert_eq!(a.stats().tx_unsupported, 1);
}

proptest! {
    #[test]
    fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), ip in any::<bool>()) {
        let mut a = engine6(A_MAC, A_IP, A6);
        let mut p = if ip {
            // Valid Ethernet + IPv4 front so the fuzz reaches the inner parsers.
            frame_b_to_a(protocol::UDP, &bytes)
        } else {
            Packet::from_slice(&bytes).unwrap()
        };
        let _ = a.rx(&mut p, Instant::now());
    }
}

proptest! {
    #[test]
    fn arbitrary_ipv6_payloads_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..120),
        next in prop_oneof![Just(17u8), Just(50u8), Just(58u8), any::<u8>()],
        hop in any::<u8>(),
        to_group in any::<bool>(),
    ) {
        let mut a = engine6(A_MAC, A_IP, A6);
        let dst = if to_group { solicited_node(A6) } else { A6 };
        let mut p = Packet::from_slice(&bytes).unwrap();
        emit_ipv6(p.push_front(40).unwrap(), B6, dst, next, bytes.len(), hop).unwrap();
        EthernetHeader { dst: A_MAC, src: B_MAC, ethertype: ethertype::IPV6 }
            .emit(p.push_front(14).unwrap())
            .unwrap();
        let _ = a.rx(&mut p, Instant::now());
    }
}

#[test]
fn static_routes_pick_the_longest_prefix_over_the_gateway() {
    let mut cfg = L2Config::new(A_MAC, A_IP, 24);
    let gw = Ipv4Addr::new(192, 0, 2, 254);
    let r1 = Ipv4Addr::new(192, 0, 2, 253);
    let r2 = Ipv4Addr::new(192, 0, 2, 252);
    cfg.gateway = Some(gw);
    cfg.routes = vec![
        Route {
            dest: Ipv4Addr::new(198, 51, 100, 0).into(),
            prefix_len: 24,
            via: r1.into(),
        },
        Route {
            dest: Ipv4Addr::new(198, 51, 100, 128).into(),
            prefix_len: 25,
            via: r2.into(),
        },
        Route {
            dest: B6.into(),
            prefix_len: 0,
            via: B6.into(),
        },
    ];
    let hop = |ip: [u8; 4]| cfg.next_hop(Ipv4Addr::from(ip).into());
    assert_eq!(hop([198, 51, 100, 7]), Some(r1.into()));
    assert_eq!(hop([198, 51, 100, 200]), Some(r2.into()), "longest prefix");
    assert_eq!(hop([203, 0, 113, 1]), Some(gw.into()), "default gateway");
    assert_eq!(
        hop([192, 0, 2, 9]),
        Some(Ipv4Addr::new(192, 0, 2, 9).into()),
        "on-link"
    );
}
