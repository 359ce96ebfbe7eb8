//! No byte slice can make the wire views panic, and every `Repr` round-trips.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dataplane::wire::{esp, ip_src_dst, ipv4, ipv6, natt, udp};
use proptest::prelude::*;

fn poke_ipv4(b: &[u8]) {
    if let Ok(p) = ipv4::Packet::new_checked(b) {
        let _ = (
            p.version(),
            p.header_len(),
            p.total_len(),
            p.ident(),
            p.dont_frag(),
        );
        let _ = (
            p.more_frags(),
            p.frag_offset(),
            p.hop_limit(),
            p.next_header(),
            p.checksum(),
        );
        let _ = (
            p.src_addr(),
            p.dst_addr(),
            p.verify_checksum(),
            p.options(),
            p.payload(),
        );
        let _ = ipv4::Repr::parse(&p);
    }
}

fn poke_ipv6(b: &[u8]) {
    if let Ok(p) = ipv6::Packet::new_checked(b) {
        let _ = (
            p.version(),
            p.traffic_class(),
            p.flow_label(),
            p.payload_len(),
        );
        let _ = (
            p.next_header(),
            p.hop_limit(),
            p.src_addr(),
            p.dst_addr(),
            p.payload(),
        );
        let _ = ipv6::Repr::parse(&p);
    }
}

fn poke_udp(b: &[u8]) {
    if let Ok(p) = udp::Packet::new_checked(b) {
        let _ = (
            p.src_port(),
            p.dst_port(),
            p.len(),
            p.checksum(),
            p.payload(),
        );
        let any4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let any6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let _ = (p.verify_checksum(any4, any4), p.verify_checksum(any6, any6));
        let _ = udp::Repr::parse(&p);
    }
}

fn poke_esp(b: &[u8]) {
    if let Ok(p) = esp::Packet::new_checked(b) {
        let _ = (
            p.spi(),
            p.sequence_number(),
            p.payload(),
            esp::Repr::parse(&p),
        );
    }
    let _ = esp::parse_trailer(b);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        poke_ipv4(&b);
        poke_ipv6(&b);
        poke_udp(&b);
        poke_esp(&b);
        let _ = natt::classify(&b);
        let _ = ip_src_dst(&b);
    }

    #[test]
    fn plausible_headers_never_panic(
        first in prop_oneof![Just(0x45u8), Just(0x4fu8), Just(0x60u8), any::<u8>()],
        rest in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        // Arbitrary bytes rarely start with a valid version; force it.
        let mut b = vec![first];
        b.extend_from_slice(&rest);
        poke_ipv4(&b);
        poke_ipv6(&b);
        let _ = ip_src_dst(&b);
    }

    #[test]
    fn ipv4_repr_round_trips(
        src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), nh in any::<u8>(),
        len in 0usize..1480, ttl in any::<u8>(), tos in any::<u8>(), id in any::<u16>(), df in any::<bool>(),
    ) {
        let r = ipv4::Repr {
            src_addr: src.into(), dst_addr: dst.into(), next_header: nh, payload_len: len,
            hop_limit: ttl, dscp_ecn: tos, ident: id, dont_frag: df,
        };
        let mut buf = vec![0u8; r.buffer_len()];
        r.emit(&mut ipv4::Packet::new_unchecked(&mut buf[..])).unwrap();
        let p = ipv4::Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(ipv4::Repr::parse(&p).unwrap(), r);
    }

    #[test]
    fn ipv6_repr_round_trips(
        src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), nh in any::<u8>(),
        len in 0usize..1480, hl in any::<u8>(), tc in any::<u8>(), flow in 0u32..(1 << 20),
    ) {
        let r = ipv6::Repr {
            src_addr: src.into(), dst_addr: dst.into(), next_header: nh, payload_len: len,
            hop_limit: hl, traffic_class: tc, flow_label: flow,
        };
        let mut buf = vec![0u8; r.buffer_len()];
        r.emit(&mut ipv6::Packet::new_unchecked(&mut buf[..])).unwrap();
        let p = ipv6::Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(ipv6::Repr::parse(&p).unwrap(), r);
    }

    #[test]
    fn udp_repr_round_trips_with_checksum(
        sp in any::<u16>(), dp in any::<u16>(), payload in proptest::collection::vec(any::<u8>(), 0..300),
        v6 in any::<bool>(),
    ) {
        let (s, d): (IpAddr, IpAddr) = if v6 {
            ("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap())
        } else {
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap())
        };
        let r = udp::Repr { src_port: sp, dst_port: dp, payload_len: payload.len() };
        let mut buf = vec![0u8; r.buffer_len()];
        buf[8..].copy_from_slice(&payload);
        r.emit(&mut udp::Packet::new_unchecked(&mut buf[..]), Some((s, d))).unwrap();
        let p = udp::Packet::new_checked(&buf[..]).unwrap();
        prop_assert!(p.verify_checksum(s, d));
        prop_assert_eq!(udp::Repr::parse(&p).unwrap(), r);
        prop_assert_eq!(p.payload(), &payload[..]);
    }

    #[test]
    fn esp_repr_round_trips(spi in any::<u32>(), seq in any::<u32>()) {
        let r = esp::Repr { spi, sequence_number: seq };
        let mut buf = [0u8; 8];
        r.emit(&mut esp::Packet::new_unchecked(&mut buf[..])).unwrap();
        prop_assert_eq!(esp::Repr::parse(&esp::Packet::new_checked(&buf[..]).unwrap()).unwrap(), r);
    }
}
