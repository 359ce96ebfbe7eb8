//! TSO and USO in software: cuts a TCP or UDP super-packet from the kernel
//! into segments of `gso_size` payload bytes, each a whole packet with its
//! own lengths, IPv4 ID and checksums, and for TCP its sequence number and
//! flags (what `tcp_gso_segment` and `__udp_gso_segment` do).

use super::{TcpLayout, UdpLayout, TCP_CWR, TCP_FIN, TCP_PSH};
use crate::wire::virtio_net;
use crate::wire::WireError;

#[derive(Clone, Copy, Debug)]
enum Layout {
    Tcp(TcpLayout),
    Udp(UdpLayout),
}

/// Walks one super-packet, a segment per call; it keeps offsets only, so
/// the caller hands it the same bytes each time.
#[derive(Clone, Debug)]
pub struct Segmenter {
    layout: Layout,
    /// IP and TCP or UDP headers, copied into every segment.
    header_len: usize,
    mss: usize,
    len: usize,
    /// Offset of the next segment's payload.
    next: usize,
    index: u16,
}

impl Segmenter {
    /// Checks `pkt` (a TCP super-packet, IP header first) and `gso_size`.
    pub fn new(pkt: &[u8], gso_size: u16) -> Result<Segmenter, WireError> {
        let layout = TcpLayout::parse(pkt).ok_or(WireError::Unsupported)?;
        if !layout.length_field_matches(pkt) {
            return Err(WireError::Malformed);
        }
        Self::start(Layout::Tcp(layout), layout.header_len(), pkt, gso_size)
    }

    /// Checks `pkt` (a UDP super-packet: one UDP header before the payloads
    /// of many datagrams) and `gso_size`.
    pub fn udp(pkt: &[u8], gso_size: u16) -> Result<Segmenter, WireError> {
        let layout = UdpLayout::of_super_packet(pkt).ok_or(WireError::Unsupported)?;
        Self::start(Layout::Udp(layout), layout.header_len(), pkt, gso_size)
    }

    /// The segmenter for a super-packet of the virtio header's `gso_kind`.
    pub fn for_gso(pkt: &[u8], gso_kind: u8, gso_size: u16) -> Result<Segmenter, WireError> {
        match gso_kind {
            virtio_net::GSO_TCPV4 | virtio_net::GSO_TCPV6 => Self::new(pkt, gso_size),
            virtio_net::GSO_UDP_L4 => Self::udp(pkt, gso_size),
            _ => Err(WireError::Unsupported),
        }
    }

    fn start(
        layout: Layout,
        header_len: usize,
        pkt: &[u8],
        gso_size: u16,
    ) -> Result<Segmenter, WireError> {
        if gso_size == 0 || pkt.len() <= header_len {
            return Err(WireError::Malformed);
        }
        Ok(Segmenter {
            layout,
            header_len,
            mss: usize::from(gso_size),
            len: pkt.len(),
            next: header_len,
            index: 0,
        })
    }

    /// How long the next segment will be; `None` when all were written.
    pub fn next_len(&self) -> Option<usize> {
        (self.next < self.len).then(|| self.header_len + self.mss.min(self.len - self.next))
    }

    /// Writes the next segment of `pkt` to the start of `out` and returns
    /// its length; `None` when all were written, or when `out` is too small
    /// for it (check [`next_len`](Self::next_len) first).
    pub fn next_into(&mut self, pkt: &[u8], out: &mut [u8]) -> Option<usize> {
        let seg_len = self.next_len()?;
        if pkt.len() != self.len || out.len() < seg_len {
            return None;
        }
        let hl = self.header_len;
        let end = self.next + (seg_len - hl);
        let out = &mut out[..seg_len];
        out[..hl].copy_from_slice(&pkt[..hl]);
        out[hl..].copy_from_slice(&pkt[self.next..end]);
        match self.layout {
            Layout::Tcp(l) => {
                self.fix_tcp(&l, pkt, out, end);
                if !l.v6 {
                    super::bump_ip_id(pkt, out, self.index);
                }
                l.set_length(out, seg_len);
                l.fill_tcp_checksum(out);
            }
            Layout::Udp(l) => {
                if !l.v6 {
                    super::bump_ip_id(pkt, out, self.index);
                }
                l.set_lengths(out, seg_len);
                l.fill_checksum(out);
            }
        }
        self.next = end;
        self.index = self.index.wrapping_add(1);
        Some(seg_len)
    }

    /// A TCP segment's sequence number, and FIN and PSH on the last only,
    /// CWR on the first only.
    fn fix_tcp(&self, l: &TcpLayout, pkt: &[u8], out: &mut [u8], end: usize) {
        let seq = l
            .tcp_seq(pkt)
            .wrapping_add((self.next - self.header_len) as u32);
        let t = l.ip_len;
        out[t + 4..t + 8].copy_from_slice(&seq.to_be_bytes());
        let mut flags = l.tcp_flags(pkt);
        if end < self.len {
            flags &= !(TCP_FIN | TCP_PSH);
        }
        if self.index > 0 {
            flags &= !TCP_CWR;
        }
        out[t + 13] = flags;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{tcp_packet, TcpSpec};

    fn cut(pkt: &[u8], mss: u16) -> Vec<Vec<u8>> {
        let mut s = Segmenter::new(pkt, mss).unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 2048];
        while let Some(n) = s.next_into(pkt, &mut buf) {
            out.push(buf[..n].to_vec());
        }
        out
    }

    #[test]
    fn cuts_an_ipv4_super_packet_into_valid_segments() {
        let payload: Vec<u8> = (0..4000u32).map(|i| (i * 7) as u8).collect();
        let spec = TcpSpec {
            seq: 0xffff_f000,
            flags: 0x18 | TCP_FIN | TCP_CWR,
            ..TcpSpec::v4()
        };
        let big = tcp_packet(&spec, &payload);
        let segs = cut(&big, 1448);
        assert_eq!(segs.len(), 3);
        let mut joined = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let l = TcpLayout::parse(s).unwrap();
            assert!(l.length_field_matches(s));
            assert!(l.tcp_checksum_ok(s), "segment {i} checksum");
            assert_eq!(crate::wire::checksum::checksum(&s[..20]), 0, "IP checksum");
            assert_eq!(l.tcp_seq(s), spec.seq.wrapping_add(1448 * i as u32));
            assert_eq!(u16::from_be_bytes([s[4], s[5]]), spec.ip_id + i as u16);
            let f = l.tcp_flags(s);
            assert_eq!(
                f & (TCP_FIN | TCP_PSH) != 0,
                i == 2,
                "FIN and PSH on the last only"
            );
            assert_eq!(f & TCP_CWR != 0, i == 0, "CWR on the first only");
            joined.extend_from_slice(&s[40..]);
        }
        assert_eq!(segs[0].len(), 40 + 1448);
        assert_eq!(segs[2].len(), 40 + 4000 - 2 * 1448);
        assert_eq!(joined, payload);
    }

    #[test]
    fn cuts_ipv6_and_keeps_tcp_options() {
        let payload = vec![0xabu8; 3000];
        let spec = TcpSpec {
            options: vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
            ..TcpSpec::v6()
        };
        let big = tcp_packet(&spec, &payload);
        let segs = cut(&big, 1000);
        assert_eq!(segs.len(), 3);
        for s in &segs {
            let l = TcpLayout::parse(s).unwrap();
            assert_eq!(l.tcp_len, 32);
            assert_eq!(s[60..72], spec.options[..]);
            assert!(l.length_field_matches(s) && l.tcp_checksum_ok(s));
        }
    }

    #[test]
    fn refuses_what_it_cannot_cut() {
        let big = tcp_packet(&TcpSpec::v4(), &[1; 100]);
        assert_eq!(Segmenter::new(&big, 0).err(), Some(WireError::Malformed));
        assert_eq!(
            Segmenter::new(&big[..big.len() - 1], 10).err(),
            Some(WireError::Malformed),
            "length field disagrees"
        );
        let mut udp = big.clone();
        udp[9] = 17;
        assert_eq!(Segmenter::new(&udp, 10).err(), Some(WireError::Unsupported));
        let headers_only = tcp_packet(&TcpSpec::v4(), &[]);
        assert!(Segmenter::new(&headers_only, 10).is_err());
        let mut s = Segmenter::new(&big, 60).unwrap();
        assert_eq!(s.next_into(&big, &mut [0u8; 50]), None, "out too small");
        assert_eq!(
            s.next_into(&big[..90], &mut [0u8; 200]),
            None,
            "other bytes"
        );
    }
}
