//! The inside port: a multi-queue TUN device (`IFF_MULTI_QUEUE`), one queue
//! fd per worker, carrying bare IP packets (`IFF_NO_PI`).
//!
//! A TUN fd hands out one packet per `read()`; `readv` only scatters one
//! packet over several buffers, it does not batch packets, so a burst is a
//! loop of reads. Opened with offloads ([`TunDevice::open_offloaded`],
//! `IFF_VNET_HDR` and `TUNSETOFFLOAD`), a read or write may carry a TCP
//! super-packet of up to 64 KiB instead, or a UDP one (a batch of equal
//! datagrams): the `offload` queue cuts and merges them, so a bulk TCP
//! transfer costs a system call (and a pass of the kernel's stack) per
//! 64 KiB, not per segment, and a `UDP_SEGMENT` sender's batch one per
//! batch.

mod offload;

use std::ffi::CStr;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::Command;

use super::sys::{errno, last_error, would_block};
use super::Port;
use crate::packet::{Encap, Packet, PacketPool, BUF_CAPACITY, HEADROOM};

/// `struct ifreq` as TUNSETIFF reads it: a name and the flags, padded to
/// the kernel's 40 bytes.
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// A TUN interface; its queues are the [`TunPort`]s [`TunDevice::open`]
/// returned. The interface goes away when every queue is closed.
#[derive(Clone, Debug)]
pub struct TunDevice {
    name: String,
}

/// Counters only the port can see.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunPortStats {
    /// Packets larger than a packet buffer (MTU set too high), dropped.
    pub rx_oversize: u64,
    /// Packets the kernel refused on write, dropped.
    pub tx_dropped: u64,
    /// TCP super-packets read (offloads on), each cut into segments.
    pub rx_super_packets: u64,
    /// Reads whose virtio-net header or super-packet made no sense, dropped.
    pub rx_bad_offload: u64,
    /// Merged packets written (offloads on), each standing for 2 or more.
    pub tx_super_packets: u64,
}

/// One queue of a TUN device, owned by one worker.
pub struct TunPort {
    fd: OwnedFd,
    name: String,
    queue: usize,
    stats: TunPortStats,
    /// Present when the device was opened with offloads.
    offload: Option<Box<offload::Offload>>,
}

/// Names the queue in error messages.
#[derive(Clone, Copy)]
struct Name<'a>(&'a str, usize);

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TUN {} queue {}", self.0, self.1)
    }
}

impl TunDevice {
    /// Creates (or attaches to) the TUN interface `name` with `queues`
    /// queues. `name` may hold a `%d` for the kernel to number; the real
    /// name is in the returned device. Needs CAP_NET_ADMIN.
    pub fn open(name: &str, queues: usize) -> io::Result<(TunDevice, Vec<TunPort>)> {
        Self::open_with(name, queues, Offloads::None)
    }

    /// [`open`](Self::open) with offloads: the kernel may hand the queues
    /// TCP and UDP super-packets and packets with partial checksums, and
    /// takes merged ones back. Fails if the kernel refuses the offloads
    /// (a kernel without UDP's gets TCP's alone).
    pub fn open_offloaded(name: &str, queues: usize) -> io::Result<(TunDevice, Vec<TunPort>)> {
        Self::open_with(name, queues, Offloads::TcpAndUdp)
    }

    /// [`open_offloaded`](Self::open_offloaded) for TCP only: UDP
    /// datagrams cross one by one both ways.
    pub fn open_offloaded_tcp(name: &str, queues: usize) -> io::Result<(TunDevice, Vec<TunPort>)> {
        Self::open_with(name, queues, Offloads::Tcp)
    }

    fn open_with(
        name: &str,
        queues: usize,
        offloads: Offloads,
    ) -> io::Result<(TunDevice, Vec<TunPort>)> {
        if queues == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TUN {name}: no queues asked for"),
            ));
        }
        if name.is_empty()
            || name.len() >= libc::IFNAMSIZ
            || name
                .bytes()
                .any(|b| b == b'/' || b == 0 || b.is_ascii_whitespace())
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad TUN interface name {name:?}"),
            ));
        }
        let mut resolved = name.to_string();
        let mut ports = Vec::with_capacity(queues);
        for queue in 0..queues {
            let fd = open_queue(&resolved, queue, offloads)?;
            // The kernel filled in the name, which matters for "%d" names.
            resolved = fd.1;
            ports.push(TunPort {
                fd: fd.0,
                name: resolved.clone(),
                queue,
                stats: TunPortStats::default(),
                offload: (offloads != Offloads::None)
                    .then(|| Box::new(offload::Offload::new(offloads == Offloads::TcpAndUdp))),
            });
        }
        Ok((TunDevice { name: resolved }, ports))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Brings the interface up.
    pub fn set_up(&self) -> io::Result<()> {
        ip(&["link", "set", "dev", &self.name, "up"])
    }

    /// Sets the MTU. Inner packets must fit a packet buffer with room for
    /// ESP around them, so keep it well under the buffer size.
    pub fn set_mtu(&self, mtu: u32) -> io::Result<()> {
        ip(&["link", "set", "dev", &self.name, "mtu", &mtu.to_string()])
    }

    /// Adds `addr` alone (a /32 or /128) to the interface, usable at once
    /// (no duplicate address detection: nobody else is on a TUN link).
    pub fn add_host_address(&self, addr: IpAddr) -> io::Result<()> {
        match addr {
            IpAddr::V4(_) => self.add_address(addr, 32),
            IpAddr::V6(_) => ip(&[
                "addr",
                "add",
                &format!("{addr}/128"),
                "dev",
                &self.name,
                "nodad",
            ]),
        }
    }

    /// Removes a host address [`TunDevice::add_host_address`] added.
    pub fn remove_host_address(&self, addr: IpAddr) -> io::Result<()> {
        let len = if addr.is_ipv4() { 32 } else { 128 };
        ip(&["addr", "del", &format!("{addr}/{len}"), "dev", &self.name])
    }

    /// Adds `addr/prefix` to the interface (and so a connected route).
    pub fn add_address(&self, addr: IpAddr, prefix: u8) -> io::Result<()> {
        ip(&[
            "addr",
            "add",
            &format!("{addr}/{prefix}"),
            "dev",
            &self.name,
        ])
    }
}

/// What the offloading queues take: checksums left to do, TCP super-packets
/// over IPv4 and IPv6, with ECN, and UDP super-packets (USO, Linux 6.2+;
/// without it the kernel cuts a sender's `UDP_SEGMENT` batches itself).
const OFFLOADS: libc::c_uint =
    libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;
const UDP_OFFLOADS: libc::c_uint = libc::TUN_F_USO4 | libc::TUN_F_USO6;

/// Which offloads a TUN device is opened with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Offloads {
    None,
    Tcp,
    TcpAndUdp,
}

/// Opens one queue of TUN `name`; returns it and the name the kernel used.
fn open_queue(name: &str, queue: usize, offloads: Offloads) -> io::Result<(OwnedFd, String)> {
    let what = Name(name, queue);
    let path = c"/dev/net/tun";
    // SAFETY: `path` is a NUL-terminated string; plain open(2).
    let raw = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(last_error(format_args!("open /dev/net/tun for {what}")));
    }
    // SAFETY: `raw` was just returned by open() and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TUN
            | libc::IFF_NO_PI
            | libc::IFF_MULTI_QUEUE
            | if offloads == Offloads::None {
                0
            } else {
                libc::IFF_VNET_HDR
            }) as libc::c_short,
        _pad: [0; 22],
    };
    // The name was checked shorter than IFNAMSIZ, so a NUL stays at the end.
    for (d, s) in req.name.iter_mut().zip(name.bytes()) {
        *d = s;
    }
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `req`
    // matches in layout and size.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReqFlags) };
    if rc < 0 {
        return Err(last_error(format_args!("TUNSETIFF for {what}")));
    }
    if offloads != Offloads::None {
        let set = |flags: libc::c_uint| {
            // SAFETY: TUNSETOFFLOAD takes its flags by value.
            unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, flags as libc::c_ulong) }
        };
        // A kernel without USO refuses its flags: then TCP's alone.
        let with_udp = offloads == Offloads::TcpAndUdp && set(OFFLOADS | UDP_OFFLOADS) == 0;
        if !with_udp && set(OFFLOADS) < 0 {
            return Err(last_error(format_args!("TUNSETOFFLOAD for {what}")));
        }
    }
    let resolved = CStr::from_bytes_until_nul(&req.name)
        .ok()
        .and_then(|c| c.to_str().ok())
        .unwrap_or(name)
        .to_string();
    Ok((fd, resolved))
}

/// Runs `ip args...`; an error carries its stderr.
fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("running ip {}: {e}", args.join(" "))))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // The two answers a caller acts on: an address added twice, or
        // removed when it is not there (EEXIST, EADDRNOTAVAIL).
        let kind = if stderr.contains("File exists") {
            io::ErrorKind::AlreadyExists
        } else if stderr.contains("Cannot assign requested address") {
            io::ErrorKind::AddrNotAvailable
        } else {
            io::ErrorKind::Other
        };
        return Err(io::Error::new(
            kind,
            format!("ip {} failed: {}", args.join(" "), stderr.trim()),
        ));
    }
    Ok(())
}

impl TunPort {
    /// The interface this queue belongs to.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This queue's index on the device.
    pub fn queue(&self) -> usize {
        self.queue
    }

    pub fn stats(&self) -> TunPortStats {
        self.stats
    }

    /// Whether the queue was opened with offloads.
    pub fn offloaded(&self) -> bool {
        self.offload.is_some()
    }
}

impl Port for TunPort {
    fn rx_burst(
        &mut self,
        pool: &mut PacketPool,
        out: &mut Vec<Packet>,
        max: usize,
    ) -> io::Result<usize> {
        if let Some(o) = self.offload.as_mut() {
            let name = Name(&self.name, self.queue);
            return o.rx_burst(self.fd.as_raw_fd(), name, &mut self.stats, pool, out, max);
        }
        let cap = BUF_CAPACITY - HEADROOM;
        let mut n = 0;
        let mut pkt = pool.get();
        // Bounded by reads, not packets, so a flood of oversize packets
        // cannot keep the worker here.
        for _ in 0..max {
            let space = pkt.rx_space();
            // TUN's read returns min(packet, buffer) and drops the rest, so
            // one spare byte after the buffer tells a cut packet from a full one.
            let mut spare = [0u8; 1];
            let iov = [iovec(space), iovec(&mut spare)];
            // SAFETY: both iovecs describe live, writable buffers of their lengths.
            let rc =
                unsafe { libc::readv(self.fd.as_raw_fd(), iov.as_ptr(), iov.len() as libc::c_int) };
            if rc < 0 {
                match errno() {
                    libc::EINTR => continue,
                    e if would_block(e) => break,
                    _ => {
                        pool.put(pkt);
                        return Err(last_error(format_args!(
                            "read from {}",
                            Name(&self.name, self.queue)
                        )));
                    }
                }
            }
            let len = rc as usize;
            if len > cap {
                self.stats.rx_oversize += 1;
                continue;
            }
            pkt.set_received_len(len);
            pkt.meta.encap = Encap::Inner;
            out.push(pkt);
            n += 1;
            pkt = pool.get();
        }
        pool.put(pkt);
        Ok(n)
    }

    fn tx_burst(&mut self, pkts: &mut Vec<Packet>, pool: &mut PacketPool) -> io::Result<usize> {
        let (fd, name) = (self.fd.as_raw_fd(), Name(&self.name, self.queue));
        let (sent, failed) = match self.offload.as_mut() {
            Some(o) => o.tx_burst(fd, name, &mut self.stats, pkts),
            None => write_each(fd, name, pkts),
        };
        self.stats.tx_dropped += (pkts.len() - sent) as u64;
        pool.put_all(pkts);
        failed.map_or(Ok(sent), Err)
    }

    fn readable_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn rx_dropped(&self) -> u64 {
        self.stats.rx_oversize + self.stats.rx_bad_offload
    }

    fn super_packets(&self) -> (u64, u64) {
        (self.stats.rx_super_packets, self.stats.tx_super_packets)
    }
}

/// Writes each packet with one `write`, until the fd itself breaks:
/// returns how many the kernel took, and the error that stopped it.
fn write_each(fd: RawFd, name: Name<'_>, pkts: &[Packet]) -> (usize, Option<io::Error>) {
    let mut sent = 0;
    for p in pkts {
        match write_iov(fd, name, &[const_iovec(p.data())]) {
            Ok(true) => sent += 1,
            Ok(false) => {}
            Err(e) => return (sent, Some(e)),
        }
    }
    (sent, None)
}

fn iovec(b: &mut [u8]) -> libc::iovec {
    libc::iovec {
        iov_base: b.as_mut_ptr().cast(),
        iov_len: b.len(),
    }
}

/// An iovec that `writev` only reads from.
fn const_iovec(b: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: b.as_ptr() as *mut libc::c_void,
        iov_len: b.len(),
    }
}

/// One `writev` of one packet: `Ok(true)` if the kernel took it,
/// `Ok(false)` if it refused this one (not an IP packet, interface down,
/// no memory: this one is lost), `Err` if the fd itself is broken.
fn write_iov(fd: RawFd, name: Name<'_>, iov: &[libc::iovec]) -> io::Result<bool> {
    loop {
        // SAFETY: each iovec describes a live buffer of its length; writev
        // only reads them.
        let rc = unsafe { libc::writev(fd, iov.as_ptr(), iov.len() as libc::c_int) };
        if rc >= 0 {
            return Ok(true);
        }
        match errno() {
            libc::EINTR => continue,
            libc::EBADF | libc::EFAULT => {
                return Err(last_error(format_args!("write to {name}")));
            }
            _ => return Ok(false),
        }
    }
}
