//! TCP and UDP segmentation and coalescing for the TUN port's offloads,
//! sans-IO.
//!
//! With `IFF_VNET_HDR` and `TUNSETOFFLOAD` the kernel hands the inside port
//! TCP super-packets of up to 64 KiB (TSO) and takes them back (GRO), so a
//! bulk transfer costs the kernel and the TUN system calls once per 64 KiB
//! instead of once per 1.4 KiB segment. ESP still works on real segments:
//! [`segment`] cuts a super-packet into them on the way in, and
//! [`coalesce`] merges a burst's decrypted segments of one flow on the way
//! out. This is what Linux's own GSO/GRO do in `tcp_gso_segment` and
//! `tcp_gro_receive`, and what wireguard-go does over TUN. [`udp`] does
//! the same for UDP super-packets (USO: a sender's `UDP_SEGMENT` batch of
//! equal datagrams, as QUIC stacks send them).

pub mod coalesce;
pub mod segment;
pub mod udp;

use crate::wire::virtio_net::{self, VirtioNetHdr};
use crate::wire::{checksum, tcp_offset, Fragments, PROTO_TCP};

pub use coalesce::{merge, merge_next, merge_next_tcp, mergeable_run};
pub use segment::Segmenter;
pub use udp::UdpLayout;

/// Whether the IP header's length field says `pkt.len()`.
fn ip_length_matches(pkt: &[u8], v6: bool) -> bool {
    // IPv4's total length is at 2, IPv6's payload length at 4.
    let at = if v6 { 4 } else { 2 };
    let Some(b) = pkt.get(at..at + 2) else {
        return false;
    };
    let field = usize::from(u16::from_be_bytes([b[0], b[1]]));
    if v6 {
        field + 40 == pkt.len()
    } else {
        field == pkt.len()
    }
}

/// Writes `len` (the whole packet's) into the IP header's length field,
/// and refills the IPv4 header checksum of `ip_len` bytes.
fn set_ip_length(pkt: &mut [u8], v6: bool, ip_len: usize, len: usize) {
    if v6 {
        pkt[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
    } else {
        pkt[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        pkt[10..12].fill(0);
        let c = checksum::checksum(&pkt[..ip_len]);
        pkt[10..12].copy_from_slice(&c.to_be_bytes());
    }
}

/// The pseudo-header's sum for `l4_bytes` of protocol `proto`.
fn pseudo_sum(pkt: &[u8], v6: bool, proto: u8, l4_bytes: usize) -> u32 {
    let addrs = if v6 { &pkt[8..40] } else { &pkt[12..20] };
    checksum::sum(addrs) + u32::from(proto) + (l4_bytes >> 16) as u32 + (l4_bytes & 0xffff) as u32
}

/// Writes `hdr`, then `run`'s first packet whole and the payloads of the
/// others (after `hdr.hdr_len` bytes of headers) into `out`, which is
/// empty: a merged packet, whose lengths and checksum are still the
/// first's. Returns the packet, after the virtio header.
fn write_run<'a, P: AsRef<[u8]>>(
    hdr: VirtioNetHdr,
    run: &[P],
    out: &'a mut Vec<u8>,
) -> &'a mut [u8] {
    let hl = usize::from(hdr.hdr_len);
    out.extend_from_slice(&hdr.to_bytes());
    out.extend_from_slice(run[0].as_ref());
    for p in &run[1..] {
        out.extend_from_slice(&p.as_ref()[hl..]);
    }
    &mut out[virtio_net::LEN..]
}

/// Whether the IP headers of `a` and `b` (`ip_len` bytes) agree in all
/// but the length, the IPv4 ID and the IPv4 header checksum: what packets
/// merged into one must share.
fn same_ip_fields(v6: bool, ip_len: usize, a: &[u8], b: &[u8]) -> bool {
    let same = |r: std::ops::Range<usize>| a[r.clone()] == b[r];
    if v6 {
        // Version, class, flow label; next header, hop limit, addresses.
        same(0..4) && same(6..40)
    } else {
        // Version, IHL, TOS; flags and offset, TTL, protocol; addresses, options.
        same(0..2) && same(6..10) && same(12..ip_len)
    }
}

/// The next segment's IPv4 ID: the kernel's GSO counts it up per segment.
fn bump_ip_id(first: &[u8], out: &mut [u8], index: u16) {
    let id = u16::from_be_bytes([first[4], first[5]]).wrapping_add(index);
    out[4..6].copy_from_slice(&id.to_be_bytes());
}

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_CWR: u8 = 0x80;
/// Offset of the checksum in the TCP header.
const TCP_CHECKSUM: usize = 16;

/// Where the IP and TCP headers of a TCP packet end: IPv4 (options
/// allowed, not a fragment) or IPv6 without extension headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpLayout {
    pub v6: bool,
    pub ip_len: usize,
    pub tcp_len: usize,
}

impl TcpLayout {
    /// `None` for anything but such a TCP packet, or bad lengths.
    pub fn parse(pkt: &[u8]) -> Option<TcpLayout> {
        let ip_len = tcp_offset(pkt, Fragments::None)?;
        let v6 = pkt.first()? >> 4 == 6;
        let doff = usize::from(*pkt.get(ip_len + 12)? >> 4) * 4;
        if doff < 20 || ip_len + doff > pkt.len() {
            return None;
        }
        Some(TcpLayout {
            v6,
            ip_len,
            tcp_len: doff,
        })
    }

    /// IP and TCP headers together.
    pub fn header_len(&self) -> usize {
        self.ip_len + self.tcp_len
    }

    /// Whether the IP header's length field says `pkt.len()`.
    pub fn length_field_matches(&self, pkt: &[u8]) -> bool {
        ip_length_matches(pkt, self.v6)
    }

    /// Writes `len` (the whole packet's) into the IP header's length field,
    /// and refills the IPv4 header checksum.
    pub fn set_length(&self, pkt: &mut [u8], len: usize) {
        set_ip_length(pkt, self.v6, self.ip_len, len)
    }

    /// The TCP pseudo-header's sum for a TCP segment of `tcp_bytes`.
    pub fn pseudo_sum(&self, pkt: &[u8], tcp_bytes: usize) -> u32 {
        pseudo_sum(pkt, self.v6, PROTO_TCP, tcp_bytes)
    }

    /// Whether the TCP checksum of `pkt` (lengths already checked) is right.
    pub fn tcp_checksum_ok(&self, pkt: &[u8]) -> bool {
        let tcp = &pkt[self.ip_len..];
        checksum::finish(self.pseudo_sum(pkt, tcp.len()) + checksum::sum(tcp)) == 0
    }

    /// Computes and writes the TCP checksum of `pkt`.
    pub fn fill_tcp_checksum(&self, pkt: &mut [u8]) {
        let at = self.ip_len + TCP_CHECKSUM;
        pkt[at..at + 2].fill(0);
        let tcp_bytes = pkt.len() - self.ip_len;
        let c =
            checksum::finish(self.pseudo_sum(pkt, tcp_bytes) + checksum::sum(&pkt[self.ip_len..]));
        pkt[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }

    pub fn tcp_flags(&self, pkt: &[u8]) -> u8 {
        pkt[self.ip_len + 13]
    }

    pub fn tcp_seq(&self, pkt: &[u8]) -> u32 {
        let t = self.ip_len;
        u32::from_be_bytes([pkt[t + 4], pkt[t + 5], pkt[t + 6], pkt[t + 7]])
    }
}

/// Fills in a partial checksum (`VIRTIO_NET_HDR_F_NEEDS_CSUM`): the kernel
/// left the pseudo-header's sum at `start + offset` and the rest to the
/// "device". `false` if the offsets do not fit the packet.
pub fn complete_checksum(pkt: &mut [u8], start: usize, offset: usize) -> bool {
    let at = start.saturating_add(offset);
    if start > pkt.len() || at.saturating_add(2) > pkt.len() {
        return false;
    }
    let mut c = checksum::checksum(&pkt[start..]);
    // UDP sends a computed 0 as 0xffff (0 means "no checksum"); for TCP
    // the two are the same number in one's complement.
    if c == 0 {
        c = 0xffff;
    }
    pkt[at..at + 2].copy_from_slice(&c.to_be_bytes());
    true
}
