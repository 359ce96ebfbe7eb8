//! GRO in software: merges consecutive TCP segments of one flow into one
//! super-packet for the kernel (what `tcp_gro_receive` would do on a NIC's
//! receive path, which a TUN write does not pass through).
//!
//! Segments merge only when the kernel could not tell the difference: same
//! addresses, ports, ACK, window, options and IP fields; contiguous
//! sequence numbers; equal sizes but for a shorter last one; no flag but
//! ACK (PSH ends a run). Each checksum is checked first, because the merged
//! packet goes to the kernel with its checksum marked as still to be done
//! (`NEEDS_CSUM`), which the local stack takes as good.

use super::{TcpLayout, TCP_ACK, TCP_CHECKSUM, TCP_PSH};
use crate::wire::checksum;
use crate::wire::virtio_net::{self, VirtioNetHdr};

/// The largest merged packet: the IP length fields are 16 bits.
pub const MAX_MERGED: usize = 65535;

/// A run's first segment, against which the others are compared.
struct Head<'a> {
    pkt: &'a [u8],
    layout: TcpLayout,
    mss: usize,
}

impl<'a> Head<'a> {
    fn new(pkt: &'a [u8]) -> Option<Head<'a>> {
        let layout = candidate(pkt)?;
        Some(Head {
            pkt,
            layout,
            mss: pkt.len() - layout.header_len(),
        })
    }

    /// Whether `next` may follow, as the segment at `seq` of a run whose
    /// packet would then be `merged_len` long.
    fn takes(&self, next: &[u8], seq: u32, merged_len: usize) -> bool {
        let Some(l) = candidate(next) else {
            return false;
        };
        let payload = next.len() - l.header_len();
        l == self.layout
            && payload <= self.mss
            && merged_len + payload <= max_len(&l)
            && l.tcp_seq(next) == seq
            && same_flow_and_state(&l, self.pkt, next)
    }
}

/// A segment that could be part of a run: TCP with data, only ACK (and
/// maybe PSH) set, lengths and checksums right.
fn candidate(pkt: &[u8]) -> Option<TcpLayout> {
    let l = TcpLayout::parse(pkt)?;
    let ok = pkt.len() > l.header_len()
        && l.length_field_matches(pkt)
        && l.tcp_flags(pkt) & !TCP_PSH == TCP_ACK
        && (l.v6 || checksum::checksum(&pkt[..l.ip_len]) == 0)
        && l.tcp_checksum_ok(pkt);
    ok.then_some(l)
}

fn max_len(l: &TcpLayout) -> usize {
    if l.v6 {
        MAX_MERGED + 40
    } else {
        MAX_MERGED
    }
}

/// Everything but lengths, IP ID, checksums, sequence number and PSH is
/// the same in `a` and `b` (both of layout `l`).
fn same_flow_and_state(l: &TcpLayout, a: &[u8], b: &[u8]) -> bool {
    let same = |r: std::ops::Range<usize>| a[r.clone()] == b[r];
    let t = l.ip_len;
    super::same_ip_fields(l.v6, l.ip_len, a, b)
        // Ports; ACK number, data offset; window; urgent pointer and options.
        && same(t..t + 4)
        && same(t + 8..t + 13)
        && same(t + 14..t + 16)
        && same(t + 18..t + l.tcp_len)
}

/// How many packets from the start of `pkts` merge into one: 1 when the
/// first does not merge with the second (or there is only one).
pub fn mergeable_run<P: AsRef<[u8]>>(pkts: &[P]) -> usize {
    let Some(head) = pkts.first().and_then(|p| Head::new(p.as_ref())) else {
        return 1.min(pkts.len());
    };
    if head.layout.tcp_flags(head.pkt) & TCP_PSH != 0 {
        return 1;
    }
    let mut n = 1;
    let mut len = head.pkt.len();
    let mut seq = head.layout.tcp_seq(head.pkt).wrapping_add(head.mss as u32);
    for p in &pkts[1..] {
        let p = p.as_ref();
        if !head.takes(p, seq, len) {
            break;
        }
        let payload = p.len() - head.layout.header_len();
        n += 1;
        len += payload;
        seq = seq.wrapping_add(payload as u32);
        if payload < head.mss || head.layout.tcp_flags(p) & TCP_PSH != 0 {
            break;
        }
    }
    n
}

/// Writes into `out` (cleared first) the virtio header and the one packet
/// that stands for `run`, which [`mergeable_run`] said merges (two or more).
/// Returns `false`, writing nothing, if it does not.
pub fn merge<P: AsRef<[u8]>>(run: &[P], out: &mut Vec<u8>) -> bool {
    out.clear();
    run.len() >= 2 && mergeable_run(run) == run.len() && write_merged(run, out)
}

/// [`merge_next`] for TCP segments only.
pub fn merge_next_tcp<P: AsRef<[u8]>>(pkts: &[P], out: &mut Vec<u8>) -> usize {
    out.clear();
    let n = mergeable_run(pkts);
    if n >= 2 {
        write_merged(&pkts[..n], out);
    }
    n
}

/// The run at the start of `pkts`, TCP segments or UDP datagrams
/// ([`super::udp`]), merged into `out` when it is two or more packets
/// (`out` is left empty otherwise): its length, at least 1 unless `pkts`
/// is empty. One pass of checks, for the TUN port's writes.
pub fn merge_next<P: AsRef<[u8]>>(pkts: &[P], out: &mut Vec<u8>) -> usize {
    let n = merge_next_tcp(pkts, out);
    if n >= 2 {
        return n;
    }
    let n = super::udp::mergeable_run(pkts);
    if n >= 2 {
        super::udp::write_merged(&pkts[..n], out);
    }
    n
}

/// [`merge`] without the checks: `run` is one that [`mergeable_run`]
/// returned, and `out` is empty.
fn write_merged<P: AsRef<[u8]>>(run: &[P], out: &mut Vec<u8>) -> bool {
    let first = run[0].as_ref();
    let last = run[run.len() - 1].as_ref();
    let Some(l) = TcpLayout::parse(first) else {
        return false;
    };
    let hl = l.header_len();
    let hdr = VirtioNetHdr {
        flags: virtio_net::F_NEEDS_CSUM,
        gso_type: if l.v6 {
            virtio_net::GSO_TCPV6
        } else {
            virtio_net::GSO_TCPV4
        },
        hdr_len: hl as u16,
        gso_size: (first.len() - hl) as u16,
        csum_start: l.ip_len as u16,
        csum_offset: TCP_CHECKSUM as u16,
    };
    let pkt = super::write_run(hdr, run, out);
    let len = pkt.len();
    l.set_length(pkt, len);
    pkt[l.ip_len + 13] = l.tcp_flags(last);
    // NEEDS_CSUM: the field holds the pseudo-header's sum folded to 16
    // bits, not complemented (`finish` complements, so undo that).
    let folded = !checksum::finish(l.pseudo_sum(pkt, len - l.ip_len));
    let at = l.ip_len + TCP_CHECKSUM;
    pkt[at..at + 2].copy_from_slice(&folded.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::Segmenter;
    use crate::testkit::{tcp_packet, TcpSpec};

    fn segments(spec: &TcpSpec, payload: &[u8], mss: u16) -> Vec<Vec<u8>> {
        let big = tcp_packet(spec, payload);
        let mut s = Segmenter::new(&big, mss).unwrap();
        let mut buf = [0u8; 2048];
        std::iter::from_fn(|| s.next_into(&big, &mut buf).map(|n| buf[..n].to_vec())).collect()
    }

    /// The merged packet with its checksum completed, as the kernel would.
    fn completed(merged: &[u8]) -> Vec<u8> {
        let hdr = VirtioNetHdr::parse(merged).unwrap();
        let mut pkt = merged[virtio_net::LEN..].to_vec();
        assert!(crate::offload::complete_checksum(
            &mut pkt,
            hdr.csum_start.into(),
            hdr.csum_offset.into()
        ));
        pkt
    }

    #[test]
    fn segments_merge_back_into_the_packet_they_were_cut_from() {
        for spec in [TcpSpec::v4(), TcpSpec::v6()] {
            let payload: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
            let spec = TcpSpec {
                flags: TCP_ACK | TCP_PSH,
                options: vec![1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 3],
                ..spec
            };
            let segs = segments(&spec, &payload, 1200);
            assert_eq!(mergeable_run(&segs), 5);
            let mut out = Vec::new();
            assert!(merge(&segs, &mut out));
            let hdr = VirtioNetHdr::parse(&out).unwrap();
            assert_eq!(hdr.gso_size, 1200);
            assert_eq!(usize::from(hdr.hdr_len), if spec.v6 { 72 } else { 52 });
            let mut want = tcp_packet(&spec, &payload);
            if !spec.v6 {
                // The cut segments count the IP ID up; the merged one keeps the first's.
                assert_eq!(want[4..6], completed(&out)[4..6]);
            }
            let got = completed(&out);
            let l = TcpLayout::parse(&got).unwrap();
            assert!(l.tcp_checksum_ok(&got));
            // Same bytes but the TCP checksum (0 and 0xffff are the same sum).
            let at = l.ip_len + TCP_CHECKSUM;
            want[at..at + 2].copy_from_slice(&got[at..at + 2]);
            assert_eq!(got, want);
        }
    }

    #[test]
    fn runs_stop_where_the_kernel_would_not_merge() {
        let spec = TcpSpec::v4();
        let segs = segments(&spec, &[7u8; 4000], 1000);
        assert_eq!(mergeable_run(&segs), 4);
        assert_eq!(mergeable_run(&segs[..1]), 1);
        assert_eq!(mergeable_run::<Vec<u8>>(&[]), 0);

        // A gap in the sequence numbers.
        let gap = [segs[0].clone(), segs[2].clone()];
        assert_eq!(mergeable_run(&gap), 1);
        // A shorter segment ends a run.
        let short = segments(&spec, &[7u8; 1500], 1000);
        let mut more = short.clone();
        more.push(segs[2].clone());
        assert_eq!(mergeable_run(&more), 2);
        // Another flow, another ACK, a bad checksum, a SYN.
        for change in [
            |p: &mut Vec<u8>| p[20] ^= 1,
            |p: &mut Vec<u8>| p[31] ^= 1,
            |p: &mut Vec<u8>| p[60] ^= 1,
            |p: &mut Vec<u8>| p[33] |= 0x02,
        ] {
            let mut s = segs.clone();
            change(&mut s[1]);
            assert_eq!(mergeable_run(&s), 1);
        }
        // Pure ACKs are not merged.
        let acks = [tcp_packet(&spec, &[]), tcp_packet(&spec, &[])];
        assert_eq!(mergeable_run(&acks), 1);
        let mut out = vec![1, 2, 3];
        assert!(!merge(&acks, &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn merge_next_merges_the_first_run_and_says_how_long_it_is() {
        let spec = TcpSpec::v4();
        let mut pkts = segments(&spec, &[3u8; 2500], 1000);
        pkts.push(tcp_packet(&spec, &[]));
        let (mut next, mut whole) = (vec![9], Vec::new());
        assert_eq!(merge_next(&pkts, &mut next), 3);
        assert!(merge(&pkts[..3], &mut whole));
        assert_eq!(next, whole);
        assert_eq!(merge_next(&pkts[3..], &mut next), 1);
        assert!(next.is_empty(), "a run of one is written as it is");
        assert_eq!(merge_next::<Vec<u8>>(&[], &mut next), 0);
    }

    #[test]
    fn merge_next_merges_udp_datagrams_too() {
        let d = |b: u8| crate::testkit::udp_packet(false, 1, (3, 4), &[b; 64]);
        let pkts = [d(1), d(2), d(3), tcp_packet(&TcpSpec::v4(), &[])];
        let (mut next, mut whole) = (Vec::new(), Vec::new());
        assert_eq!(merge_next(&pkts, &mut next), 3);
        assert!(crate::offload::udp::merge(&pkts[..3], &mut whole));
        assert_eq!(next, whole);
        assert_eq!(merge_next(&pkts[3..], &mut next), 1);
        assert_eq!(merge_next_tcp(&pkts, &mut next), 1, "TCP only");
        assert!(next.is_empty());
    }

    #[test]
    fn a_run_stops_below_64_kib() {
        // 70,000 bytes in 1400-byte segments, cut from two packets.
        let spec = TcpSpec::v4();
        let mut segs = segments(&spec, &vec![1u8; 42_000], 1400);
        let rest = TcpSpec {
            seq: spec.seq + 42_000,
            ..spec
        };
        segs.extend(segments(&rest, &vec![1u8; 28_000], 1400));
        let n = mergeable_run(&segs);
        assert_eq!(n, (MAX_MERGED - 40) / 1400);
        let mut out = Vec::new();
        assert!(merge(&segs[..n], &mut out));
        assert!(out.len() - virtio_net::LEN <= MAX_MERGED);
    }
}
