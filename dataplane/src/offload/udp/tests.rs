use super::*;
use crate::offload::{complete_checksum, Segmenter};
use crate::testkit::udp_packet;
use crate::wire::WireError;

/// `count` payloads of `size` bytes (the last `last` bytes), each its own.
fn payloads(count: usize, size: usize, last: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let n = if i + 1 == count { last } else { size };
            (0..n).map(|j| (i * 31 + j * 7) as u8).collect()
        })
        .collect()
}

fn cut(pkt: &[u8], size: u16) -> Vec<Vec<u8>> {
    let mut s = Segmenter::udp(pkt, size).unwrap();
    let mut buf = vec![0u8; 2048];
    std::iter::from_fn(|| s.next_into(pkt, &mut buf).map(|n| buf[..n].to_vec())).collect()
}

fn payload_of(pkt: &[u8]) -> &[u8] {
    &pkt[UdpLayout::parse(pkt).unwrap().header_len()..]
}

#[test]
fn cuts_a_super_packet_into_datagrams_with_their_own_lengths_and_sums() {
    for v6 in [false, true] {
        let parts = payloads(5, 64, 20);
        let big = udp_packet(v6, 0x4000, (4433, 5301), &parts.concat());
        let segs = cut(&big, 64);
        assert_eq!(segs.len(), 5);
        for (i, s) in segs.iter().enumerate() {
            let l = UdpLayout::parse(s).expect("lengths agree");
            assert!(l.checksum_ok(s), "datagram {i} checksum");
            assert_eq!(payload_of(s), &parts[i][..]);
            assert_eq!(
                s[l.ip_len..l.ip_len + 4],
                big[l.ip_len..l.ip_len + 4],
                "ports"
            );
            if !v6 {
                assert_eq!(checksum::checksum(&s[..20]), 0, "IP checksum");
                assert_eq!(u16::from_be_bytes([s[4], s[5]]), 0x4000 + i as u16);
            }
        }
    }
}

#[test]
fn datagrams_merge_back_into_the_packet_they_were_cut_from() {
    for v6 in [false, true] {
        let parts = payloads(7, 100, 37);
        let whole = udp_packet(v6, 9, (1, 2), &parts.concat());
        let segs = cut(&whole, 100);
        assert_eq!(mergeable_run(&segs), 7);
        let mut out = Vec::new();
        assert!(merge(&segs, &mut out));
        let hdr = VirtioNetHdr::parse(&out).unwrap();
        assert_eq!(hdr.gso_type, virtio_net::GSO_UDP_L4);
        assert_eq!(hdr.gso_size, 100);
        let hl = if v6 { 48 } else { 28 };
        assert_eq!(usize::from(hdr.hdr_len), hl);
        // As the kernel would: complete the partial checksum.
        let mut got = out[virtio_net::LEN..].to_vec();
        assert!(complete_checksum(
            &mut got,
            hdr.csum_start.into(),
            hdr.csum_offset.into()
        ));
        let l = UdpLayout::parse(&got).expect("merged lengths agree");
        assert!(l.checksum_ok(&got));
        assert_eq!(got, whole, "the same bytes, checksum and all");
    }
}

#[test]
fn runs_stop_where_datagrams_differ() {
    let segs = cut(&udp_packet(false, 1, (7, 8), &[5u8; 640]), 64);
    assert_eq!(mergeable_run(&segs), 10);
    assert_eq!(mergeable_run(&segs[..1]), 1);
    assert_eq!(mergeable_run::<Vec<u8>>(&[]), 0);
    // A shorter datagram ends a run; a longer one is not taken.
    let short = udp_packet(false, 1, (7, 8), &[5u8; 10]);
    let long = udp_packet(false, 1, (7, 8), &[5u8; 65]);
    assert_eq!(mergeable_run(&[&segs[0], &segs[1], &short, &segs[2]]), 3);
    assert_eq!(mergeable_run(&[&segs[0], &long]), 1);
    // Another port, another address, another TTL, a bad checksum, on
    // the second or on the first.
    for at in [20, 22, 15, 8, 30] {
        for which in [0, 1] {
            let mut s = segs.clone();
            s[which][at] ^= 1;
            assert_eq!(mergeable_run(&s), 1, "byte {at} of datagram {which}");
        }
    }
    // IPv4's "no checksum" merges.
    let mut plain = segs.clone();
    for p in &mut plain {
        p[26..28].fill(0);
    }
    assert_eq!(mergeable_run(&plain), 10);
    // Not UDP, or empty datagrams: a run of one.
    let tcp = crate::testkit::tcp_packet(&crate::testkit::TcpSpec::v4(), &[1; 64]);
    assert_eq!(mergeable_run(&[&tcp, &tcp]), 1);
    let empty = udp_packet(false, 1, (7, 8), &[]);
    assert_eq!(mergeable_run(&[&empty, &empty]), 1);
    let mut out = vec![1];
    assert!(!merge(&[&empty, &empty], &mut out));
    assert!(out.is_empty());
}

#[test]
fn a_run_is_at_most_max_segments() {
    let segs = cut(&udp_packet(true, 0, (1, 2), &[9u8; 64 * 100]), 64);
    assert_eq!(segs.len(), 100);
    assert_eq!(mergeable_run(&segs), MAX_SEGMENTS);
    assert_eq!(mergeable_run(&segs[MAX_SEGMENTS..]), 100 - MAX_SEGMENTS);
}

#[test]
fn refuses_what_it_cannot_cut() {
    let big = udp_packet(false, 0, (1, 2), &[1; 100]);
    assert_eq!(Segmenter::udp(&big, 0).err(), Some(WireError::Malformed));
    assert_eq!(
        Segmenter::udp(&big[..big.len() - 1], 10).err(),
        Some(WireError::Unsupported),
        "IP length disagrees"
    );
    let tcp = crate::testkit::tcp_packet(&crate::testkit::TcpSpec::v4(), &[1; 100]);
    assert_eq!(Segmenter::udp(&tcp, 10).err(), Some(WireError::Unsupported));
    let headers_only = udp_packet(false, 0, (1, 2), &[]);
    assert!(Segmenter::udp(&headers_only, 10).is_err());
    let mut s = Segmenter::udp(&big, 60).unwrap();
    assert_eq!(s.next_into(&big, &mut [0u8; 50]), None, "out too small");
    assert_eq!(
        s.next_into(&big[..90], &mut [0u8; 200]),
        None,
        "other bytes"
    );
}
