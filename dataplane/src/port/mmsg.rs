//! Batched datagram I/O with `recvmmsg`/`sendmmsg`, shared by the UDP and
//! raw ESP ports. The header, iovec, address and control arrays are
//! allocated once; a burst only rewrites their pointers.

use std::fmt::Display;
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::ptr;

use super::sys::{errno, from_raw, last_error, to_raw, would_block};
use crate::packet::{Packet, PacketPool};

/// Most segments the kernel takes in one UDP GSO send (`UDP_MAX_SEGMENTS`
/// was 64 before Linux 6.9 raised it to 128).
pub(crate) const GSO_MAX_SEGMENTS: usize = 64;
/// Most payload bytes in one GSO super-datagram: under the 64 KiB IP limit
/// with room for IPv6 and UDP headers.
pub(crate) const GSO_MAX_BYTES: usize = 60_000;
/// Room for a GRO super-datagram beyond the packet buffer (64 KiB total).
pub(crate) const GRO_SPILL: usize = 65_536;

/// Room for one `UDP_GRO`/`UDP_SEGMENT` control message (an int or u16
/// after the cmsghdr), aligned for `cmsghdr`.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct CmsgBuf([u8; 64]);

/// What the kernel said about one received datagram.
pub(crate) struct Received<'a> {
    /// Bytes in the datagram (or GRO super-datagram).
    pub len: usize,
    /// It did not fit the buffers (`MSG_TRUNC`): the tail is lost.
    pub truncated: bool,
    pub source: Option<SocketAddr>,
    /// `UDP_GRO` segment size: `len` bytes are several datagrams of this size
    /// (the last may be shorter).
    pub gro_segment: Option<usize>,
    /// The bytes beyond the packet buffer (only with a GRO spill area).
    pub spill: &'a [u8],
}

/// Preallocated `recvmmsg` state for up to `batch` datagrams.
///
/// A slot's header stays armed until a datagram lands in it: the kernel
/// writes nothing into the slots it did not fill, so only the slots a
/// burst consumed are armed again (with fresh buffers) before the next
/// call. Re-arming every slot on every call was most of the receive cost
/// of a port polled often and found empty (7.5% of pktgen's samples).
pub(crate) struct RxBatch {
    /// Slot `i` receives into `staged[i]`; slots `0..staged.len()` are
    /// armed (their headers point at their buffers).
    staged: Vec<Packet>,
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<[libc::iovec; 2]>,
    names: Vec<libc::sockaddr_storage>,
    ctrl: Vec<CmsgBuf>,
    /// `spill_each` bytes per slot after the packet buffer (GRO only).
    spill: Vec<u8>,
    spill_each: usize,
}

// SAFETY: the raw pointers inside `hdrs` and `iovs` point only into buffers
// this struct owns (and the heap buffers of `staged`; a slot is pointed at
// its new buffer as soon as its old one leaves); nothing else aliases them.
unsafe impl Send for RxBatch {}

impl RxBatch {
    /// Room for `batch` datagrams, each with `spill_each` bytes beyond the
    /// packet buffer (0 without GRO).
    pub(crate) fn new(batch: usize, spill_each: usize) -> RxBatch {
        let batch = batch.max(1);
        let iov = libc::iovec {
            iov_base: ptr::null_mut(),
            iov_len: 0,
        };
        RxBatch {
            staged: Vec::with_capacity(batch),
            // SAFETY: an all-zero mmsghdr (null pointers, zero lengths) is valid.
            hdrs: vec![unsafe { mem::zeroed() }; batch],
            iovs: vec![[iov, iov]; batch],
            // SAFETY: an all-zero sockaddr_storage is valid.
            names: vec![unsafe { mem::zeroed() }; batch],
            ctrl: vec![CmsgBuf([0; 64]); batch],
            spill: vec![0; batch * spill_each],
            spill_each,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Returns the armed buffers to `pool` (when the port goes away).
    pub(crate) fn release(&mut self, pool: &mut PacketPool) {
        pool.put_all(&mut self.staged);
    }

    /// Points slot `i`'s header at its buffer, name, control and spill
    /// space, with their full lengths.
    fn arm(&mut self, i: usize) {
        let space = self.staged[i].rx_space();
        let iov = &mut self.iovs[i];
        iov[0] = libc::iovec {
            iov_base: space.as_mut_ptr().cast(),
            iov_len: space.len(),
        };
        let mut iovlen = 1;
        let spill_each = self.spill_each;
        if spill_each > 0 {
            let spill = &mut self.spill[i * spill_each..(i + 1) * spill_each];
            iov[1] = libc::iovec {
                iov_base: spill.as_mut_ptr().cast(),
                iov_len: spill.len(),
            };
            iovlen = 2;
        }
        let hdr = &mut self.hdrs[i];
        hdr.msg_len = 0;
        hdr.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
        hdr.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        hdr.msg_hdr.msg_iov = iov.as_mut_ptr();
        hdr.msg_hdr.msg_iovlen = iovlen;
        hdr.msg_hdr.msg_control = self.ctrl[i].0.as_mut_ptr().cast();
        hdr.msg_hdr.msg_controllen = self.ctrl[i].0.len() as _;
        hdr.msg_hdr.msg_flags = 0;
    }

    /// Receives up to `n` datagrams (at most the batch size) with one
    /// `recvmmsg` and hands each to `f` in arrival order. Returns how many
    /// datagrams arrived; 0 when none were waiting.
    pub(crate) fn recv<F>(
        &mut self,
        fd: RawFd,
        what: &dyn Display,
        pool: &mut PacketPool,
        n: usize,
        mut f: F,
    ) -> io::Result<usize>
    where
        F: FnMut(&mut PacketPool, Packet, Received<'_>),
    {
        let n = n.min(self.hdrs.len());
        if n == 0 {
            return Ok(0);
        }
        while self.staged.len() < n {
            self.staged.push(pool.get());
            self.arm(self.staged.len() - 1);
        }
        let got = loop {
            // SAFETY: the first `n` headers are armed: they point at live
            // buffers owned by `self` (names, iovecs, control, spill) and by
            // the staged packets' heap buffers, with their true lengths.
            let rc = unsafe {
                libc::recvmmsg(
                    fd,
                    self.hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    ptr::null_mut(),
                )
            };
            if rc >= 0 {
                break rc as usize;
            }
            match errno() {
                libc::EINTR => continue,
                e if would_block(e) => return Ok(0),
                _ => return Err(last_error(format_args!("recvmmsg on {what}"))),
            }
        };
        let got = got.min(n);
        let spill_each = self.spill_each;
        for i in 0..got {
            // The datagram's buffer leaves the slot; a fresh one takes its place.
            let mut pkt = mem::replace(&mut self.staged[i], pool.get());
            let (hdr, name) = (&self.hdrs[i], &self.names[i]);
            let len = hdr.msg_len as usize;
            let cap = pkt.rx_space().len();
            pkt.set_received_len(len);
            let spill_len = len.saturating_sub(cap).min(spill_each);
            let spill_start = i * spill_each;
            let spill = self
                .spill
                .get(spill_start..spill_start + spill_len)
                .unwrap_or(&[]);
            let received = Received {
                len,
                truncated: hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
                source: from_raw(name, hdr.msg_hdr.msg_namelen),
                gro_segment: gro_segment(&hdr.msg_hdr),
                spill,
            };
            f(pool, pkt, received);
            self.arm(i);
        }
        Ok(got)
    }
}

/// The `UDP_GRO` segment size in a received message's control data.
fn gro_segment(hdr: &libc::msghdr) -> Option<usize> {
    // SAFETY: `hdr` is a message the kernel just filled: msg_control and
    // msg_controllen describe our control buffer, and the CMSG_* macros stay
    // within them. The int payload is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                let size = libc::CMSG_DATA(c).cast::<i32>().read_unaligned();
                return usize::try_from(size).ok().filter(|&s| s > 0);
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    None
}

/// Preallocated `sendmmsg` state: up to `batch` packets per syscall.
pub(crate) struct TxBatch {
    hdrs: Vec<libc::mmsghdr>,
    /// One per packet of the current round; a GSO message spans several.
    iovs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    ctrl: Vec<CmsgBuf>,
    /// Packets carried by each message of the current round.
    counts: Vec<usize>,
}

// SAFETY: as for `RxBatch`: the pointers in `hdrs`/`iovs` are rewritten
// before each syscall and point into `self` or the packets being sent.
unsafe impl Send for TxBatch {}

/// How a port wants its packets sent.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TxMode {
    /// The socket is AF_INET6: IPv4 peers are written IPv4-mapped.
    pub v6_socket: bool,
    /// Join same-destination, same-size runs with `UDP_SEGMENT`.
    pub gso: bool,
}

impl TxBatch {
    pub(crate) fn new(batch: usize) -> TxBatch {
        let batch = batch.max(1);
        TxBatch {
            // SAFETY: all-zero mmsghdr and sockaddr_storage are valid.
            hdrs: vec![unsafe { mem::zeroed() }; batch],
            iovs: vec![
                libc::iovec {
                    iov_base: ptr::null_mut(),
                    iov_len: 0
                };
                batch
            ],
            // SAFETY: as above.
            names: vec![unsafe { mem::zeroed() }; batch],
            ctrl: vec![CmsgBuf([0; 64]); batch],
            counts: vec![0; batch],
        }
    }

    /// A port's `tx_burst`: [`TxBatch::send`], then every buffer of `pkts`
    /// back to `pool` (draining it) and what the kernel did not take added
    /// to `dropped`.
    pub(crate) fn send_burst(
        &mut self,
        fd: RawFd,
        what: &dyn Display,
        pkts: &mut Vec<Packet>,
        mode: &mut TxMode,
        pool: &mut PacketPool,
        dropped: &mut u64,
    ) -> io::Result<usize> {
        let total = pkts.len();
        let result = self.send(fd, what, pkts, mode);
        pool.put_all(pkts);
        let sent = result?;
        *dropped += (total - sent) as u64;
        Ok(sent)
    }

    /// Sends every packet of `pkts` to its `meta.remote`. Returns how many
    /// the kernel took; the others were dropped (socket buffer full, or the
    /// kernel refused that one packet). Fails only if the socket itself is
    /// unusable. With `mode.gso`, a GSO send the kernel refuses is retried
    /// without GSO, and `EIO` (device without UDP checksum offload) turns
    /// GSO off in `mode` for good.
    pub(crate) fn send(
        &mut self,
        fd: RawFd,
        what: &dyn Display,
        pkts: &[Packet],
        mode: &mut TxMode,
    ) -> io::Result<usize> {
        let mut next = 0; // first packet neither sent nor dropped
        let mut sent = 0;
        let mut gso_now = mode.gso;
        'rounds: while next < pkts.len() {
            let msgs = self.build(pkts, next, mode.v6_socket, gso_now);
            let mut m = 0;
            while m < msgs {
                // SAFETY: headers `m..msgs` were just built pointing at live
                // addresses and control data in `self` and at the packets'
                // data, which `pkts` keeps borrowed for this call.
                let rc = unsafe {
                    libc::sendmmsg(
                        fd,
                        self.hdrs.as_mut_ptr().add(m),
                        (msgs - m) as libc::c_uint,
                        libc::MSG_DONTWAIT,
                    )
                };
                if rc > 0 {
                    for c in self.counts.iter().skip(m).take(rc as usize) {
                        next += c;
                        sent += c;
                    }
                    m += rc as usize;
                    continue;
                }
                let e = errno();
                let carried = self.counts.get(m).copied().unwrap_or(1);
                match e {
                    libc::EINTR => continue,
                    e if would_block(e) || e == libc::ENOBUFS => break 'rounds,
                    libc::EBADF | libc::ENOTSOCK | libc::EFAULT => {
                        return Err(last_error(format_args!("sendmmsg on {what}")))
                    }
                    _ if carried > 1 => {
                        // The kernel refused the super-datagram (path MTU
                        // below the segment size, no checksum offload...):
                        // send the rest of this burst one by one.
                        if e == libc::EIO {
                            mode.gso = false;
                        }
                        gso_now = false;
                        continue 'rounds;
                    }
                    _ => {
                        // This one packet is refused (no route, bad address
                        // family, too big): drop it and go on.
                        next += carried;
                        m += 1;
                    }
                }
            }
        }
        Ok(sent)
    }

    /// Points the headers at `pkts[first..]`, as many as one round holds;
    /// returns the number of messages.
    fn build(&mut self, pkts: &[Packet], first: usize, v6_socket: bool, gso: bool) -> usize {
        let rest = pkts.get(first..).unwrap_or(&[]);
        let rest = &rest[..rest.len().min(self.iovs.len())];
        for (iov, p) in self.iovs.iter_mut().zip(rest) {
            let data = p.data();
            *iov = libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            };
        }
        let mut m = 0;
        let mut j = 0;
        while j < rest.len() && m < self.hdrs.len() {
            let head = &rest[j];
            let seg = head.len();
            let mut k = j + 1;
            if gso && seg > 0 {
                let mut total = seg;
                while let Some(q) = rest.get(k) {
                    let len = q.len();
                    if k - j >= GSO_MAX_SEGMENTS
                        || q.meta.remote != head.meta.remote
                        || len == 0
                        || len > seg
                        || total + len > GSO_MAX_BYTES
                    {
                        break;
                    }
                    total += len;
                    k += 1;
                    if len < seg {
                        break; // only the last segment may be shorter
                    }
                }
            }
            let (storage, namelen) = to_raw(&head.meta.remote, v6_socket);
            self.names[m] = storage;
            let hdr = &mut self.hdrs[m].msg_hdr;
            hdr.msg_name = (&mut self.names[m] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = namelen;
            hdr.msg_iov = self.iovs[j..].as_mut_ptr();
            hdr.msg_iovlen = (k - j) as _;
            hdr.msg_flags = 0;
            if k - j > 1 {
                let ctrl = &mut self.ctrl[m];
                hdr.msg_control = ctrl.0.as_mut_ptr().cast();
                // SAFETY: CMSG_SPACE of a u16 is 24 bytes, within the buffer.
                hdr.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as _;
                // SAFETY: the header points at our aligned control buffer,
                // which holds one cmsghdr plus a u16.
                unsafe {
                    let c = libc::CMSG_FIRSTHDR(hdr);
                    if !c.is_null() {
                        (*c).cmsg_level = libc::SOL_UDP;
                        (*c).cmsg_type = libc::UDP_SEGMENT;
                        (*c).cmsg_len = libc::CMSG_LEN(2) as _;
                        libc::CMSG_DATA(c).cast::<u16>().write_unaligned(seg as u16);
                    }
                }
            } else {
                hdr.msg_control = ptr::null_mut();
                hdr.msg_controllen = 0;
            }
            self.counts[m] = k - j;
            m += 1;
            j = k;
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    /// Receives what is waiting, at most `n`: each datagram's bytes and source.
    fn take(
        rx: &mut RxBatch,
        sock: &UdpSocket,
        pool: &mut PacketPool,
        n: usize,
    ) -> Vec<(Vec<u8>, Option<SocketAddr>)> {
        let mut out = Vec::new();
        let got = rx
            .recv(sock.as_raw_fd(), &"test socket", pool, n, |pool, pkt, r| {
                out.push((pkt.data().to_vec(), r.source));
                pool.put(pkt);
            })
            .unwrap();
        assert_eq!(got, out.len());
        out
    }

    #[test]
    fn slots_left_armed_by_a_short_burst_receive_into_their_own_buffers() {
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        sink.set_nonblocking(true).unwrap();
        let (a, b) = (
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        );
        let mut pool = PacketPool::with_capacity(16);
        let mut rx = RxBatch::new(4, 0);
        assert!(
            take(&mut rx, &sink, &mut pool, 4).is_empty(),
            "nothing waiting"
        );
        // One datagram: slot 0 is consumed, slots 1-3 stay armed.
        a.send_to(b"first", sink.local_addr().unwrap()).unwrap();
        assert_eq!(
            take(&mut rx, &sink, &mut pool, 4),
            [(b"first".to_vec(), Some(a.local_addr().unwrap()))]
        );
        // Five of different lengths from two sources: a burst of 4, then 1.
        let sent: Vec<(Vec<u8>, &UdpSocket)> = (0..5)
            .map(|i| {
                (
                    vec![b'a' + i as u8; 10 + 7 * i],
                    if i % 2 == 0 { &b } else { &a },
                )
            })
            .collect();
        for (bytes, from) in &sent {
            from.send_to(bytes, sink.local_addr().unwrap()).unwrap();
        }
        let mut got = take(&mut rx, &sink, &mut pool, 4);
        assert_eq!(got.len(), 4);
        got.extend(take(&mut rx, &sink, &mut pool, 4));
        let want: Vec<_> = sent
            .iter()
            .map(|(bytes, from)| (bytes.clone(), Some(from.local_addr().unwrap())))
            .collect();
        assert_eq!(got, want);
        // Asking for fewer than are armed leaves the rest armed.
        a.send_to(b"x", sink.local_addr().unwrap()).unwrap();
        a.send_to(b"yy", sink.local_addr().unwrap()).unwrap();
        assert_eq!(take(&mut rx, &sink, &mut pool, 1).len(), 1);
        assert_eq!(take(&mut rx, &sink, &mut pool, 4)[0].0, b"yy");
        rx.release(&mut pool);
    }
}
