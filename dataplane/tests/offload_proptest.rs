//! The TUN offloads' cutting and merging: no bytes make them panic, and
//! whatever a super-packet is cut into merges back into the same bytes.

use dataplane::offload::{
    complete_checksum, merge, merge_next, mergeable_run, udp, Segmenter, TcpLayout, UdpLayout,
};
use dataplane::testkit::{tcp_packet, udp_packet, TcpSpec};
use dataplane::wire::virtio_net::{self, VirtioNetHdr};
use proptest::prelude::*;

fn cut(pkt: &[u8], mss: u16) -> Vec<Vec<u8>> {
    cut_as(pkt, virtio_net::GSO_TCPV4, mss)
}

fn cut_as(pkt: &[u8], gso_kind: u8, size: u16) -> Vec<Vec<u8>> {
    let Ok(mut s) = Segmenter::for_gso(pkt, gso_kind, size) else {
        return Vec::new();
    };
    let mut buf = vec![0u8; 2048];
    std::iter::from_fn(|| s.next_into(pkt, &mut buf).map(|n| buf[..n].to_vec())).collect()
}

proptest! {
    #[test]
    fn arbitrary_bytes_do_not_panic(
        pkts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..6),
        mss in any::<u16>(),
        start in 0usize..300,
        offset in 0usize..300,
    ) {
        for p in &pkts {
            for kind in [virtio_net::GSO_TCPV4, virtio_net::GSO_UDP_L4, virtio_net::GSO_UDP] {
                let _ = cut_as(p, kind, mss);
            }
            let _ = Segmenter::new(p, mss);
            let _ = TcpLayout::parse(p);
            let _ = UdpLayout::parse(p);
            let mut q = p.clone();
            let _ = complete_checksum(&mut q, start, offset);
        }
        let n = mergeable_run(&pkts);
        prop_assert!(n <= pkts.len());
        prop_assert!(udp::mergeable_run(&pkts) <= pkts.len());
        let mut out = Vec::new();
        let _ = merge(&pkts, &mut out);
        let _ = udp::merge(&pkts, &mut out);
        prop_assert!(merge_next(&pkts, &mut out) <= pkts.len());
    }

    #[test]
    fn a_cut_udp_super_packet_merges_back(
        len in 1usize..4000,
        size in 64u16..1400,
        id in any::<u16>(),
        v6 in any::<bool>(),
    ) {
        let payload: Vec<u8> = (0..len).map(|i| (i * 29 % 251) as u8).collect();
        let big = udp_packet(v6, id, (4500, 53), &payload);
        let segs = cut_as(&big, virtio_net::GSO_UDP_L4, size);
        prop_assert_eq!(segs.len(), len.div_ceil(usize::from(size)));
        let mut joined = Vec::new();
        for s in &segs {
            let l = UdpLayout::parse(s).unwrap();
            prop_assert!(l.checksum_ok(s));
            joined.extend_from_slice(&s[l.header_len()..]);
        }
        prop_assert_eq!(&joined, &payload);
        if segs.len() == 1 {
            return Ok(());
        }
        let mut out = Vec::new();
        prop_assert_eq!(merge_next(&segs, &mut out), segs.len());
        let hdr = VirtioNetHdr::parse(&out).unwrap();
        prop_assert_eq!(hdr.gso_size, size);
        let mut got = out[virtio_net::LEN..].to_vec();
        prop_assert!(complete_checksum(&mut got, hdr.csum_start.into(), hdr.csum_offset.into()));
        prop_assert_eq!(got, big);
    }

    #[test]
    fn a_damaged_segment_is_never_merged_unnoticed(
        which in 0usize..4,
        at in 0usize..1100,
        bit in 0u8..8,
    ) {
        let big = tcp_packet(&TcpSpec::v4(), &[5u8; 4000]);
        let mut segs = cut(&big, 1000);
        let n = segs[which].len();
        segs[which][at % n] ^= 1 << bit;
        let run = mergeable_run(&segs);
        prop_assert!(run <= which.max(1), "merged past the damaged segment {which}: {run}");
        let mut out = Vec::new();
        if merge(&segs[..run], &mut out) {
            let hdr = VirtioNetHdr::parse(&out).unwrap();
            let mut got = out[virtio_net::LEN..].to_vec();
            prop_assert!(complete_checksum(&mut got, hdr.csum_start.into(), hdr.csum_offset.into()));
            prop_assert!(TcpLayout::parse(&got).unwrap().tcp_checksum_ok(&got));
        }
    }

    #[test]
    fn a_cut_super_packet_merges_back(
        len in 1usize..20_000,
        mss in 1u16..1900,
        seq in any::<u32>(),
        v6 in any::<bool>(),
        ts in any::<bool>(),
    ) {
        let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 253) as u8).collect();
        let spec = TcpSpec {
            v6,
            seq,
            options: if ts { vec![1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8] } else { Vec::new() },
            ..TcpSpec::v4()
        };
        let big = tcp_packet(&spec, &payload);
        let segs = cut(&big, mss);
        prop_assert_eq!(segs.len(), len.div_ceil(usize::from(mss)));
        for s in &segs {
            let l = TcpLayout::parse(s).unwrap();
            prop_assert!(l.length_field_matches(s) && l.tcp_checksum_ok(s));
        }
        if segs.len() == 1 {
            return Ok(());
        }
        prop_assert_eq!(mergeable_run(&segs), segs.len());
        let mut out = Vec::new();
        prop_assert!(merge(&segs, &mut out));
        let hdr = VirtioNetHdr::parse(&out).unwrap();
        prop_assert_eq!(hdr.gso_size, mss);
        let mut got = out[virtio_net::LEN..].to_vec();
        prop_assert!(complete_checksum(&mut got, hdr.csum_start.into(), hdr.csum_offset.into()));
        let l = TcpLayout::parse(&got).unwrap();
        prop_assert!(l.tcp_checksum_ok(&got));
        // Equal but for the checksum field: 0 and 0xffff are one sum.
        let at = l.ip_len + 16;
        let mut want = big.clone();
        want[at..at + 2].copy_from_slice(&got[at..at + 2]);
        prop_assert_eq!(got, want);
    }
}
