//! USO in software, both ways: a UDP super-packet from the kernel cut into
//! datagrams, and a burst's datagrams of one flow merged into one for it.
//!
//! A UDP super-packet (`VIRTIO_NET_HDR_GSO_UDP_L4`) is one IP header, one
//! UDP header and the payloads of many datagrams of `gso_size` bytes each
//! (the last may be shorter), as a sender's `UDP_SEGMENT` batch left its
//! socket. Cutting gives each datagram its own lengths, IPv4 ID and
//! checksum, as `__udp_gso_segment` does. Merging is the reverse: equal
//! payloads but for a shorter last, the same addresses, ports and IP
//! fields, checksums checked first (the merged packet goes to the kernel
//! with its checksum still to do, which the local stack takes as good). A
//! socket with `UDP_GRO` then reads the merged packet in one call; any
//! other gets its datagrams one by one, cut by the kernel.

use super::{ip_length_matches, pseudo_sum, set_ip_length, write_run};
use crate::wire::virtio_net::{self, VirtioNetHdr};
use crate::wire::{checksum, l4_offset, Fragments, PROTO_UDP};

const UDP_HEADER: usize = 8;
/// Offsets of the length and the checksum in the UDP header.
const UDP_LENGTH: usize = 4;
const UDP_CHECKSUM: usize = 6;
/// The most datagrams merged into one packet. Linux refuses UDP
/// super-packets of more than `UDP_MAX_SEGMENTS` (128) from a TUN write;
/// a worker's burst is 64 at most anyway.
pub const MAX_SEGMENTS: usize = 64;
/// The largest merged packet: the IP length fields are 16 bits.
const MAX_IP_LEN: usize = 65_535;

/// Where the IP and UDP headers of a UDP packet end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpLayout {
    pub v6: bool,
    pub ip_len: usize,
}

impl UdpLayout {
    /// A whole UDP datagram over IPv4 (options allowed, not a fragment) or
    /// IPv6 without extension headers, whose IP and UDP length fields both
    /// say `pkt.len()`; `None` for anything else.
    pub fn parse(pkt: &[u8]) -> Option<UdpLayout> {
        let l = Self::of_super_packet(pkt)?;
        (l.udp_length(pkt) == pkt.len() - l.ip_len).then_some(l)
    }

    /// As [`parse`](Self::parse), but the UDP length is not checked: a
    /// super-packet's stands for many datagrams.
    pub(super) fn of_super_packet(pkt: &[u8]) -> Option<UdpLayout> {
        let ip_len = l4_offset(pkt, PROTO_UDP, Fragments::None)?;
        let v6 = pkt.first()? >> 4 == 6;
        (pkt.len() >= ip_len + UDP_HEADER && ip_length_matches(pkt, v6))
            .then_some(UdpLayout { v6, ip_len })
    }

    /// IP and UDP headers together.
    pub fn header_len(&self) -> usize {
        self.ip_len + UDP_HEADER
    }

    fn udp_length(&self, pkt: &[u8]) -> usize {
        let at = self.ip_len + UDP_LENGTH;
        usize::from(u16::from_be_bytes([pkt[at], pkt[at + 1]]))
    }

    pub(super) fn set_lengths(&self, pkt: &mut [u8], len: usize) {
        set_ip_length(pkt, self.v6, self.ip_len, len);
        let at = self.ip_len + UDP_LENGTH;
        pkt[at..at + 2].copy_from_slice(&((len - self.ip_len) as u16).to_be_bytes());
    }

    /// Whether the UDP checksum of `pkt` (lengths already checked) is
    /// right; IPv4's 0, "no checksum", counts as right.
    pub fn checksum_ok(&self, pkt: &[u8]) -> bool {
        let at = self.ip_len + UDP_CHECKSUM;
        if !self.v6 && pkt[at..at + 2] == [0, 0] {
            return true;
        }
        let udp = &pkt[self.ip_len..];
        checksum::finish(pseudo_sum(pkt, self.v6, PROTO_UDP, udp.len()) + checksum::sum(udp)) == 0
    }

    /// Computes and writes the UDP checksum of `pkt`.
    pub fn fill_checksum(&self, pkt: &mut [u8]) {
        let at = self.ip_len + UDP_CHECKSUM;
        pkt[at..at + 2].fill(0);
        let udp_bytes = pkt.len() - self.ip_len;
        let sum =
            pseudo_sum(pkt, self.v6, PROTO_UDP, udp_bytes) + checksum::sum(&pkt[self.ip_len..]);
        // A computed 0 goes as 0xffff: 0 means "no checksum".
        let c = match checksum::finish(sum) {
            0 => 0xffff,
            c => c,
        };
        pkt[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
}

/// Everything but lengths, IP ID and checksums is the same in `a` and `b`
/// (both of layout `l`).
fn same_flow(l: &UdpLayout, a: &[u8], b: &[u8]) -> bool {
    let t = l.ip_len;
    // And the ports.
    super::same_ip_fields(l.v6, t, a, b) && a[t..t + 4] == b[t..t + 4]
}

/// Whether `pkt` (of layout `l`) may be part of a merged packet: IPv4
/// header checksum and UDP checksum right.
fn sums_ok(l: &UdpLayout, pkt: &[u8]) -> bool {
    (l.v6 || checksum::checksum(&pkt[..l.ip_len]) == 0) && l.checksum_ok(pkt)
}

/// How many UDP datagrams from the start of `pkts` merge into one: 1 when
/// the first does not merge with the second (or is not UDP), 0 when
/// `pkts` is empty. The cheap comparisons come before the checksums.
pub fn mergeable_run<P: AsRef<[u8]>>(pkts: &[P]) -> usize {
    let Some(first) = pkts.first().map(AsRef::as_ref) else {
        return 0;
    };
    let Some(l) = UdpLayout::parse(first) else {
        return 1;
    };
    let size = first.len() - l.header_len();
    if size == 0 {
        return 1;
    }
    let max_ip = if l.v6 { MAX_IP_LEN + 40 } else { MAX_IP_LEN };
    let (mut n, mut len) = (1, first.len());
    for p in &pkts[1..] {
        let p = p.as_ref();
        let fits = n < MAX_SEGMENTS && UdpLayout::parse(p) == Some(l);
        let payload = p.len().saturating_sub(l.header_len());
        if !fits
            || payload == 0
            || payload > size
            || len + payload > max_ip
            || !same_flow(&l, first, p)
            || !sums_ok(&l, p)
            || (n == 1 && !sums_ok(&l, first))
        {
            break;
        }
        n += 1;
        len += payload;
        if payload < size {
            break;
        }
    }
    n
}

/// Writes into `out` (cleared first) the virtio header and the one packet
/// that stands for `run`, which [`mergeable_run`] said merges (two or
/// more). Returns `false`, writing nothing, if it does not.
pub fn merge<P: AsRef<[u8]>>(run: &[P], out: &mut Vec<u8>) -> bool {
    out.clear();
    run.len() >= 2 && mergeable_run(run) == run.len() && write_merged(run, out)
}

/// [`merge`] without the checks: `run` is one that [`mergeable_run`]
/// returned, and `out` is empty.
pub(super) fn write_merged<P: AsRef<[u8]>>(run: &[P], out: &mut Vec<u8>) -> bool {
    let first = run[0].as_ref();
    let Some(l) = UdpLayout::parse(first) else {
        return false;
    };
    let hl = l.header_len();
    let hdr = VirtioNetHdr {
        flags: virtio_net::F_NEEDS_CSUM,
        gso_type: virtio_net::GSO_UDP_L4,
        hdr_len: hl as u16,
        gso_size: (first.len() - hl) as u16,
        csum_start: l.ip_len as u16,
        csum_offset: UDP_CHECKSUM as u16,
    };
    let pkt = write_run(hdr, run, out);
    let len = pkt.len();
    l.set_lengths(pkt, len);
    // NEEDS_CSUM: the field holds the pseudo-header's sum folded to 16
    // bits, not complemented (`finish` complements, so undo that).
    let folded = !checksum::finish(pseudo_sum(pkt, l.v6, PROTO_UDP, len - l.ip_len));
    let at = l.ip_len + UDP_CHECKSUM;
    pkt[at..at + 2].copy_from_slice(&folded.to_be_bytes());
    true
}

#[cfg(test)]
mod tests;
