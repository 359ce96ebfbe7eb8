//! TCP segmentation and coalescing for the TUN port's offloads, sans-IO.
//!
//! With `IFF_VNET_HDR` and `TUNSETOFFLOAD` the kernel hands the inside port
//! TCP super-packets of up to 64 KiB (TSO) and takes them back (GRO), so a
//! bulk transfer costs the kernel and the TUN system calls once per 64 KiB
//! instead of once per 1.4 KiB segment. ESP still works on real segments:
//! [`segment`] cuts a super-packet into them on the way in, and
//! [`coalesce`] merges a burst's decrypted segments of one flow on the way
//! out. This is what Linux's own GSO/GRO do in `tcp_gso_segment` and
//! `tcp_gro_receive`, and what wireguard-go does over TUN.

pub mod coalesce;
pub mod segment;

use crate::wire::{checksum, tcp_offset, Fragments, PROTO_TCP};

pub use coalesce::{merge, merge_next, mergeable_run};
pub use segment::Segmenter;

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
        // IPv4's total length is at 2, IPv6's payload length at 4.
        let at = if self.v6 { 4 } else { 2 };
        let field = usize::from(u16::from_be_bytes([pkt[at], pkt[at + 1]]));
        if self.v6 {
            field + 40 == pkt.len()
        } else {
            field == pkt.len()
        }
    }

    /// Writes `len` (the whole packet's) into the IP header's length field,
    /// and refills the IPv4 header checksum.
    pub fn set_length(&self, pkt: &mut [u8], len: usize) {
        if self.v6 {
            pkt[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        } else {
            pkt[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            pkt[10..12].fill(0);
            let c = checksum::checksum(&pkt[..self.ip_len]);
            pkt[10..12].copy_from_slice(&c.to_be_bytes());
        }
    }

    /// The TCP pseudo-header's sum for a TCP segment of `tcp_bytes`.
    pub fn pseudo_sum(&self, pkt: &[u8], tcp_bytes: usize) -> u32 {
        let addrs = if self.v6 { &pkt[8..40] } else { &pkt[12..20] };
        checksum::sum(addrs)
            + u32::from(PROTO_TCP)
            + (tcp_bytes >> 16) as u32
            + (tcp_bytes & 0xffff) as u32
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
