//! The TUN queue with `IFF_VNET_HDR` offloads: every read and write carries
//! a virtio-net header, reads may be TCP or UDP super-packets (cut here
//! into segments, [`crate::offload::segment`], [`crate::offload::udp`]) or
//! packets with a partial checksum (completed here), and writes merge a
//! burst's segments or datagrams of one flow into super-packets
//! ([`crate::offload::coalesce`]).

use std::io;
use std::os::fd::RawFd;

use super::{const_iovec, iovec, write_iov, Name, TunPortStats};
use crate::offload::{self, Segmenter};
use crate::packet::{Encap, Packet, PacketPool};
use crate::port::sys::{errno, last_error, would_block};
use crate::wire::virtio_net::{self, VirtioNetHdr};

/// A super-packet is at most 64 KiB of IP; one spare byte tells a cut one.
const BIG: usize = 65_535 + 40 + 1;

/// The per-queue state of the offloads: a super-packet being cut, and the
/// buffer merged packets are written from.
pub(super) struct Offload {
    /// The super-packet, IP header first, `big_len` bytes of it.
    big: Vec<u8>,
    big_len: usize,
    cutting: Option<Segmenter>,
    merged: Vec<u8>,
    /// Whether UDP datagrams are merged too, not TCP segments only.
    merge_udp: bool,
}

impl Offload {
    pub(super) fn new(merge_udp: bool) -> Offload {
        Offload {
            big: vec![0; BIG],
            big_len: 0,
            cutting: None,
            merged: Vec::with_capacity(virtio_net::LEN + BIG),
            merge_udp,
        }
    }

    /// [`crate::port::Port::rx_burst`] for an offloading queue.
    pub(super) fn rx_burst(
        &mut self,
        fd: RawFd,
        name: Name<'_>,
        stats: &mut TunPortStats,
        pool: &mut PacketPool,
        out: &mut Vec<Packet>,
        max: usize,
    ) -> io::Result<usize> {
        let mut n = 0;
        // Bounded by reads, not packets, as in the plain port.
        let mut reads = 0;
        while n < max {
            if self.cutting.is_some() {
                n += self.cut(stats, pool, out, max - n);
                continue;
            }
            if reads == max {
                break;
            }
            reads += 1;
            let mut pkt = pool.get();
            let mut hdr = [0u8; virtio_net::LEN];
            let space = pkt.rx_space();
            let room = space.len();
            // Header, then the packet buffer, then the big buffer for what
            // does not fit: a super-packet is made whole in `big` after.
            let iov = [iovec(&mut hdr), iovec(space), iovec(&mut self.big[room..])];
            // SAFETY: each iovec describes a live, writable buffer of its length.
            let rc = unsafe { libc::readv(fd, iov.as_ptr(), iov.len() as libc::c_int) };
            if rc < 0 {
                pool.put(pkt);
                match errno() {
                    libc::EINTR => continue,
                    e if would_block(e) => break,
                    _ => return Err(last_error(format_args!("read from {name}"))),
                }
            }
            let len = (rc as usize).saturating_sub(virtio_net::LEN);
            let Some(h) = VirtioNetHdr::parse(&hdr).filter(|_| len > 0) else {
                stats.rx_bad_offload += 1;
                pool.put(pkt);
                continue;
            };
            if len >= BIG {
                stats.rx_oversize += 1;
                pool.put(pkt);
                continue;
            }
            if h.gso_kind() != virtio_net::GSO_NONE {
                let fitted = len.min(room);
                self.big[..fitted].copy_from_slice(&pkt.rx_space()[..fitted]);
                pool.put(pkt);
                self.start_cut(h, len, stats);
                continue;
            }
            if len > room {
                stats.rx_oversize += 1;
                pool.put(pkt);
                continue;
            }
            pkt.set_received_len(len);
            if h.flags & virtio_net::F_NEEDS_CSUM != 0
                && !offload::complete_checksum(
                    pkt.data_mut(),
                    h.csum_start.into(),
                    h.csum_offset.into(),
                )
            {
                stats.rx_bad_offload += 1;
                pool.put(pkt);
                continue;
            }
            pkt.meta.encap = Encap::Inner;
            out.push(pkt);
            n += 1;
        }
        Ok(n)
    }

    fn start_cut(&mut self, h: VirtioNetHdr, len: usize, stats: &mut TunPortStats) {
        match Segmenter::for_gso(&self.big[..len], h.gso_kind(), h.gso_size) {
            Ok(s) => {
                stats.rx_super_packets += 1;
                self.big_len = len;
                self.cutting = Some(s);
            }
            Err(_) => stats.rx_bad_offload += 1,
        }
    }

    /// Up to `max` segments of the super-packet being cut.
    fn cut(
        &mut self,
        stats: &mut TunPortStats,
        pool: &mut PacketPool,
        out: &mut Vec<Packet>,
        max: usize,
    ) -> usize {
        let Some(seg) = self.cutting.as_mut() else {
            return 0;
        };
        let big = &self.big[..self.big_len];
        let mut n = 0;
        while n < max {
            if seg.next_len().is_none() {
                break;
            }
            let mut pkt = pool.get();
            let Some(len) = seg.next_into(big, pkt.rx_space()) else {
                // An MSS too large for a packet buffer: the rest is lost.
                stats.rx_oversize += 1;
                pool.put(pkt);
                self.cutting = None;
                return n;
            };
            pkt.set_received_len(len);
            pkt.meta.encap = Encap::Inner;
            out.push(pkt);
            n += 1;
        }
        if seg.next_len().is_none() {
            self.cutting = None;
        }
        n
    }

    /// [`crate::port::Port::tx_burst`] for an offloading queue: runs of
    /// segments that merge go out as one write.
    pub(super) fn tx_burst(
        &mut self,
        fd: RawFd,
        name: Name<'_>,
        stats: &mut TunPortStats,
        pkts: &[Packet],
    ) -> (usize, Option<io::Error>) {
        let plain = VirtioNetHdr::default().to_bytes();
        let mut sent = 0;
        let mut i = 0;
        while i < pkts.len() {
            let run = if self.merge_udp {
                offload::merge_next(&pkts[i..], &mut self.merged)
            } else {
                offload::merge_next_tcp(&pkts[i..], &mut self.merged)
            };
            let ok = if run > 1 {
                stats.tx_super_packets += 1;
                write_iov(fd, name, &[const_iovec(&self.merged)])
            } else {
                write_iov(
                    fd,
                    name,
                    &[const_iovec(&plain), const_iovec(pkts[i].data())],
                )
            };
            match ok {
                Ok(true) => sent += run,
                Ok(false) => {}
                Err(e) => return (sent, Some(e)),
            }
            i += run;
        }
        (sent, None)
    }
}
