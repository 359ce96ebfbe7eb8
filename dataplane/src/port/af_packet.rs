//! The AF_PACKET outside port: raw Ethernet on a real interface without
//! DPDK. Receive through a TPACKET_V3 ring (one mmap'd ring per worker),
//! transmit with `sendmmsg`; the sockets of one interface form a
//! PACKET_FANOUT group steered by SPI (the `fanout` module). L2 (ARP, ICMP echo,
//! IPv4/UDP framing) is [`super::l2::L2Outside`].
//!
//! The kernel keeps its own stack on the interface: give the port's
//! address to the port only (not to the interface), or the kernel answers
//! ARP and sends port-unreachable for 4500 as well.

mod fanout;
mod ring;

use std::ffi::CString;
use std::fmt;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Instant;

use super::l2::{L2Config, L2Outside, L2Stats, MacAddr, SharedNeighbours};
use super::sys::{last_error, set_int_option, socket, with_context};
use super::Port;
use crate::packet::{Packet, PacketPool, BUF_CAPACITY, HEADROOM};
use fanout::{fanout_program, PACKET_FANOUT, PACKET_FANOUT_CBPF, PACKET_FANOUT_DATA};
use ring::{RxRing, TpacketReq3, PACKET_RX_RING, PACKET_VERSION, TPACKET_V3};

pub use fanout::fanout_program as spi_fanout_program;

/// `PACKET_IGNORE_OUTGOING` (Linux 4.20): do not see our own transmissions.
const PACKET_IGNORE_OUTGOING: i32 = 23;
/// Frames per `sendmmsg` call.
const TX_BATCH: usize = 64;

/// How an AF_PACKET port group is set up.
#[derive(Clone, Debug)]
pub struct AfPacketConfig {
    /// The interface, e.g. "eth1".
    pub ifname: String,
    /// Addressing; a zero MAC means "the interface's own".
    pub l2: L2Config,
    /// Ring block size in bytes (a multiple of the page size).
    pub block_size: u32,
    /// Blocks per ring.
    pub block_nr: u32,
    /// Milliseconds after which the kernel hands over a block that is not
    /// full (latency at low rates).
    pub block_timeout_ms: u32,
    /// Fanout group id; `None` picks one from the pid and interface index.
    pub fanout_id: Option<u16>,
}

impl AfPacketConfig {
    pub fn new(ifname: &str, l2: L2Config) -> AfPacketConfig {
        AfPacketConfig {
            ifname: ifname.to_string(),
            l2,
            block_size: 1 << 18,
            block_nr: 16,
            block_timeout_ms: 1,
            fanout_id: None,
        }
    }
}

/// Counters only the port sees (the L2 ones are in [`L2Stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AfPacketStats {
    pub rx_frames: u64,
    /// Frames larger than a packet buffer or truncated by the ring.
    pub rx_oversize: u64,
    pub tx_frames: u64,
    /// Frames the kernel refused (queue full, link down).
    pub tx_dropped: u64,
}

/// One worker's packet socket on the outside interface.
pub struct AfPacketPort {
    fd: OwnedFd,
    ring: RxRing,
    l2: L2Outside,
    ifname: String,
    frames: Vec<Packet>,
    stats: AfPacketStats,
}

struct Name<'a>(&'a str);

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AF_PACKET socket on {}", self.0)
    }
}

impl AfPacketPort {
    /// One socket per worker on `cfg.ifname`, socket `i` for worker `i`,
    /// sharing `neighbours`. With several workers they join one fanout
    /// group that steers ESP by SPI. Needs CAP_NET_RAW.
    pub fn open_group(
        cfg: &AfPacketConfig,
        n_workers: usize,
        neighbours: SharedNeighbours,
    ) -> io::Result<Vec<AfPacketPort>> {
        let what = Name(&cfg.ifname);
        let ifindex = if_index(&cfg.ifname).map_err(|e| with_context(e, &what))?;
        let mut l2 = cfg.l2.clone();
        if l2.mac == MacAddr::ZERO {
            l2.mac = if_mac(&cfg.ifname).map_err(|e| with_context(e, &what))?;
        }
        let id = cfg
            .fanout_id
            .unwrap_or((std::process::id() ^ ifindex.rotate_left(8)) as u16);
        let mut ports = Vec::with_capacity(n_workers);
        for _ in 0..n_workers.max(1) {
            let port = AfPacketPort::open_one(cfg, ifindex, l2.clone(), neighbours.clone())?;
            if n_workers > 1 {
                let arg = i32::from(id) | ((PACKET_FANOUT_CBPF as i32) << 16);
                set_int_option(
                    port.fd.as_raw_fd(),
                    libc::SOL_PACKET,
                    PACKET_FANOUT,
                    arg,
                    format_args!("PACKET_FANOUT group {id} on {what}"),
                )?;
            }
            ports.push(port);
        }
        if n_workers > 1 {
            if let Some(first) = ports.first() {
                let prog = fanout_program(l2.nat_t_port, n_workers);
                attach_fanout_program(first.fd.as_raw_fd(), prog)
                    .map_err(|e| with_context(e, format_args!("PACKET_FANOUT_DATA on {what}")))?;
            }
        }
        Ok(ports)
    }

    fn open_one(
        cfg: &AfPacketConfig,
        ifindex: u32,
        l2: L2Config,
        neighbours: SharedNeighbours,
    ) -> io::Result<AfPacketPort> {
        let what = Name(&cfg.ifname);
        let proto_be = (libc::ETH_P_ALL as u16).to_be();
        // Protocol 0 until the ring exists: nothing is queued before it.
        let fd = socket(libc::AF_PACKET, libc::SOCK_RAW, 0, &what)?;
        let raw = fd.as_raw_fd();
        set_int_option(raw, libc::SOL_PACKET, PACKET_VERSION, TPACKET_V3, &what)?;
        let req = TpacketReq3 {
            block_size: cfg.block_size,
            block_nr: cfg.block_nr,
            frame_size: 2048,
            frame_nr: cfg.block_size / 2048 * cfg.block_nr,
            retire_blk_tov: cfg.block_timeout_ms,
            ..TpacketReq3::default()
        };
        // SAFETY: `req` is a live tpacket_req3 and its exact size is passed.
        let rc = unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_PACKET,
                PACKET_RX_RING,
                (&req as *const TpacketReq3).cast(),
                mem::size_of::<TpacketReq3>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(last_error(format_args!("PACKET_RX_RING on {what}")));
        }
        let ring = RxRing::map(raw, &req)
            .map_err(|e| with_context(e, format_args!("mmap ring of {what}")))?;
        // Best effort: older kernels show our own frames, which L2 drops as
        // not for us anyway.
        let _ = set_int_option(raw, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, 1, &what);
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto_be;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll and its size is passed.
        let rc = unsafe {
            libc::bind(
                raw,
                (&sll as *const libc::sockaddr_ll).cast(),
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(last_error(format_args!("bind {what}")));
        }
        Ok(AfPacketPort {
            fd,
            ring,
            l2: L2Outside::new(l2, neighbours),
            ifname: cfg.ifname.clone(),
            frames: Vec::with_capacity(TX_BATCH),
            stats: AfPacketStats::default(),
        })
    }

    pub fn stats(&self) -> AfPacketStats {
        self.stats
    }

    pub fn l2_stats(&self) -> L2Stats {
        self.l2.stats()
    }

    pub fn l2(&self) -> &L2Outside {
        &self.l2
    }

    /// Sends and recycles `self.frames`; returns how many the kernel took.
    fn send_frames(&mut self, pool: &mut PacketPool) -> usize {
        let mut sent = 0;
        for chunk in self.frames.chunks(TX_BATCH) {
            let n = send_chunk(self.fd.as_raw_fd(), chunk);
            sent += n;
            if n < chunk.len() {
                self.stats.tx_dropped += (self.frames.len() - sent) as u64;
                break;
            }
        }
        self.stats.tx_frames += sent as u64;
        pool.put_all(&mut self.frames);
        sent
    }
}

/// One `sendmmsg` over `frames` (at most [`TX_BATCH`]); returns how many
/// went out. The socket is bound, so no addresses are needed.
fn send_chunk(fd: RawFd, frames: &[Packet]) -> usize {
    // SAFETY: iovec and mmsghdr are plain data; zero is a valid value.
    let mut iov: [libc::iovec; TX_BATCH] = unsafe { mem::zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; TX_BATCH] = unsafe { mem::zeroed() };
    let n = frames.len().min(TX_BATCH);
    for (i, p) in frames.iter().take(n).enumerate() {
        iov[i].iov_base = p.data().as_ptr() as *mut libc::c_void;
        iov[i].iov_len = p.len();
        msgs[i].msg_hdr.msg_iov = &mut iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    let mut done = 0;
    while done < n {
        // SAFETY: msgs[done..n] point at iovecs over live packet data that
        // outlive the call; the kernel only reads them.
        let rc = unsafe {
            libc::sendmmsg(
                fd,
                msgs.as_mut_ptr().add(done),
                (n - done) as u32,
                libc::MSG_DONTWAIT,
            )
        };
        if rc <= 0 {
            // EAGAIN/ENOBUFS (queue full) or a dead link: the rest is dropped.
            break;
        }
        done += rc as usize;
    }
    done
}

impl Port for AfPacketPort {
    fn rx_burst(
        &mut self,
        pool: &mut PacketPool,
        out: &mut Vec<Packet>,
        max: usize,
    ) -> io::Result<usize> {
        let now = Instant::now();
        let cap = BUF_CAPACITY - HEADROOM;
        let mut n = 0;
        let (l2, frames, stats) = (&mut self.l2, &mut self.frames, &mut self.stats);
        self.ring.for_each_frame(max, |f| {
            stats.rx_frames += 1;
            if f.data.len() > cap || f.wire_len > f.data.len() {
                stats.rx_oversize += 1;
                return;
            }
            let mut p = pool.get();
            let room = p.rx_space();
            let Some(dst) = room.get_mut(..f.data.len()) else {
                stats.rx_oversize += 1;
                pool.put(p);
                return;
            };
            dst.copy_from_slice(f.data);
            p.set_received_len(f.data.len());
            if l2.rx_into(p, now, out, frames, pool) {
                n += 1;
            }
        });
        self.l2.poll(now, &mut self.frames, pool);
        if !self.frames.is_empty() {
            self.send_frames(pool);
        }
        Ok(n)
    }

    /// Counts as handed over what L2 framed or holds for ARP; what L2
    /// refused or the kernel did not take is the rest.
    fn tx_burst(&mut self, pkts: &mut Vec<Packet>, pool: &mut PacketPool) -> io::Result<usize> {
        let now = Instant::now();
        let total = pkts.len();
        let dropped_l2 = self.l2.tx_burst(pkts, now, &mut self.frames, pool);
        let queued = self.frames.len();
        let sent = self.send_frames(pool);
        let lost = queued - sent;
        Ok(total.saturating_sub(dropped_l2 + lost))
    }

    fn readable_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn rx_dropped(&self) -> u64 {
        self.stats.rx_oversize
    }
}

impl fmt::Debug for AfPacketPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AfPacketPort")
            .field("ifname", &self.ifname)
            .field("stats", &self.stats)
            .finish()
    }
}

fn attach_fanout_program(fd: RawFd, mut prog: Vec<libc::sock_filter>) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `prog`, which outlives the call; the kernel
    // copies the program.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            PACKET_FANOUT_DATA,
            (&fprog as *const libc::sock_fprog).cast(),
            mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The interface index of `ifname`.
pub fn if_index(ifname: &str) -> io::Result<u32> {
    let c = CString::new(ifname).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated string for the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(i)
}

/// The MAC address of `ifname` (SIOCGIFHWADDR).
pub fn if_mac(ifname: &str) -> io::Result<MacAddr> {
    let name = ifname.as_bytes();
    // SAFETY: ifreq is plain data; zero is a valid value.
    let mut req: libc::ifreq = unsafe { mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    let fd = socket(libc::AF_INET, libc::SOCK_DGRAM, 0, "SIOCGIFHWADDR")?;
    // SAFETY: `req` is a valid ifreq the ioctl fills in.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (m, d) in mac.iter_mut().zip(data.iter()) {
        *m = *d as u8;
    }
    Ok(MacAddr(mac))
}
