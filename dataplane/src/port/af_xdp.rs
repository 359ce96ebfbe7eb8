//! The AF_XDP outside port (cargo feature `af_xdp`), with raw syscalls
//! only: one XDP socket per worker bound to queue i of the interface, an
//! XDP program redirecting every frame of queue i to it ([`bpf`]), and a
//! UMEM of 2 KiB frames per socket, half for receive, half for transmit.
//! L2 is [`super::l2::L2Outside`], as for AF_PACKET.
//!
//! Frames are copied between the UMEM and [`Packet`]s (one copy each way);
//! the socket runs in copy mode (`XDP_COPY`) and the program in generic
//! (SKB) mode by default, which every driver supports; native mode and
//! zero-copy are options for NICs that have them. Traffic steering across
//! queues is the NIC's RSS (by 5-tuple, not SPI): the worker hands off
//! packets of SAs it does not own.

mod bpf;
mod ring;

use std::fmt;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Instant;

pub use bpf::{XdpAttachment, XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE};
use ring::{MmapOffsets, Ring, XdpDesc};

use super::af_packet::{if_index, if_mac};
use super::counter_reads::CounterReads;
use super::l2::{L2Config, L2Outside, L2Stats, MacAddr, SharedNeighbours};
use super::sys::{last_error, socket, with_context};
use super::Port;
use crate::packet::{Packet, PacketPool, BUF_CAPACITY, HEADROOM};

const AF_XDP: i32 = 44;
const SOL_XDP: i32 = 283;
const XDP_MMAP_OFFSETS: i32 = 1;
const XDP_RX_RING: i32 = 2;
const XDP_TX_RING: i32 = 3;
const XDP_UMEM_REG: i32 = 4;
const XDP_UMEM_FILL_RING: i32 = 5;
const XDP_UMEM_COMPLETION_RING: i32 = 6;
const XDP_STATISTICS: i32 = 7;
const XDP_COPY: u16 = 1 << 1;
const XDP_ZEROCOPY: u16 = 1 << 2;
const PGOFF_RX: i64 = 0;
const PGOFF_TX: i64 = 0x8000_0000;
const PGOFF_FILL: i64 = 0x1_0000_0000;
const PGOFF_COMPLETION: i64 = 0x1_8000_0000;
/// UMEM chunk size: one frame.
const FRAME: u64 = 2048;

/// How an AF_XDP port group is set up.
#[derive(Clone, Debug)]
pub struct AfXdpConfig {
    pub ifname: String,
    /// Addressing; a zero MAC means "the interface's own".
    pub l2: L2Config,
    /// UMEM frames per socket (half rx, half tx), a power of two.
    pub frames: u32,
    /// XDP_FLAGS_SKB_MODE (any driver) or XDP_FLAGS_DRV_MODE.
    pub xdp_flags: u32,
    /// Ask for zero-copy (driver support needed) instead of copy mode.
    pub zero_copy: bool,
}

impl AfXdpConfig {
    pub fn new(ifname: &str, l2: L2Config) -> AfXdpConfig {
        AfXdpConfig {
            ifname: ifname.to_string(),
            l2,
            frames: 4096,
            xdp_flags: XDP_FLAGS_SKB_MODE,
            zero_copy: false,
        }
    }
}

/// Counters only the port sees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AfXdpStats {
    pub rx_frames: u64,
    pub rx_oversize: u64,
    pub tx_frames: u64,
    /// No free UMEM frame or tx ring slot.
    pub tx_dropped: u64,
    /// Frames the kernel dropped before our rx ring: no frame on the fill
    /// ring, the rx ring full, or a bad descriptor (`XDP_STATISTICS`, read
    /// at most every [`COUNTER_READS_EVERY`](super::counter_reads::COUNTER_READS_EVERY)).
    pub rx_kernel_dropped: u64,
}

/// `struct xdp_statistics` (Linux 5.9 and later; older kernels fill the
/// first three).
#[repr(C)]
#[derive(Default)]
struct XdpStatistics {
    rx_dropped: u64,
    rx_invalid_descs: u64,
    tx_invalid_descs: u64,
    rx_ring_full: u64,
    rx_fill_ring_empty_descs: u64,
    tx_ring_empty_descs: u64,
}

/// The kernel's receive drops on socket `fd`, or `None` if it will not say.
fn kernel_rx_drops(fd: RawFd) -> Option<u64> {
    let mut s = XdpStatistics::default();
    let mut len = mem::size_of::<XdpStatistics>() as libc::socklen_t;
    // SAFETY: `s` is a writable XdpStatistics and `len` its size; the
    // kernel writes at most `len` bytes and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            SOL_XDP,
            XDP_STATISTICS,
            (&mut s as *mut XdpStatistics).cast(),
            &mut len,
        )
    };
    // rx_fill_ring_empty_descs counts events already in rx_dropped.
    (rc == 0).then(|| s.rx_dropped + s.rx_invalid_descs + s.rx_ring_full)
}

/// The UMEM: an anonymous, page-aligned area registered with the socket.
struct Umem {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: owned by one port (one worker); the kernel reads/writes frames
// only as the rings hand them over.
unsafe impl Send for Umem {}

impl Umem {
    fn new(len: usize) -> io::Result<Umem> {
        // SAFETY: a fresh private anonymous mapping.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(p.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Umem { base, len })
    }

    /// The bytes at `addr..addr+len`, if inside the UMEM.
    fn frame(&mut self, addr: u64, len: usize) -> Option<&mut [u8]> {
        let start = usize::try_from(addr).ok()?;
        if start.checked_add(len)? > self.len {
            return None;
        }
        // SAFETY: in bounds (checked); the frame is ours (taken from the rx
        // or completion ring, or never handed out) while we use it.
        Some(unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(start), len) })
    }
}

impl Drop for Umem {
    fn drop(&mut self) {
        // SAFETY: our own mapping; the socket (which pins it) is closed
        // first, since `fd` is declared before `umem` in the port.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// One worker's XDP socket on queue `queue` of the interface.
pub struct AfXdpPort {
    fd: OwnedFd,
    rx: Ring<XdpDesc>,
    tx: Ring<XdpDesc>,
    fill: Ring<u64>,
    completion: Ring<u64>,
    umem: Umem,
    tx_free: Vec<u64>,
    refill: Vec<u64>,
    descs: Vec<XdpDesc>,
    l2: L2Outside,
    frames: Vec<Packet>,
    stats: AfXdpStats,
    /// When the kernel's drop counts were last read.
    counter_reads: CounterReads,
    ifname: String,
    _xdp: Arc<XdpAttachment>,
}

struct Name<'a>(&'a str, u32);

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AF_XDP socket on {} queue {}", self.0, self.1)
    }
}

fn setsockopt<T>(fd: RawFd, name: i32, value: &T, what: impl fmt::Display) -> io::Result<()> {
    // SAFETY: `value` is a live T and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            SOL_XDP,
            name,
            (value as *const T).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(last_error(what));
    }
    Ok(())
}

/// `struct xdp_umem_reg`.
#[repr(C)]
struct UmemReg {
    addr: u64,
    len: u64,
    chunk_size: u32,
    headroom: u32,
    flags: u32,
    tx_metadata_len: u32,
}

/// `struct sockaddr_xdp`.
#[repr(C)]
struct SockaddrXdp {
    family: u16,
    flags: u16,
    ifindex: u32,
    queue_id: u32,
    shared_umem_fd: u32,
}

impl AfXdpPort {
    /// One socket per queue 0..n_queues of `cfg.ifname` (worker i on queue
    /// i), sharing `neighbours`, with the redirect program attached.
    /// Needs CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF (or CAP_SYS_ADMIN).
    pub fn open_group(
        cfg: &AfXdpConfig,
        n_queues: u32,
        neighbours: SharedNeighbours,
    ) -> io::Result<Vec<AfXdpPort>> {
        let what = Name(&cfg.ifname, 0);
        let ifindex = if_index(&cfg.ifname).map_err(|e| with_context(e, &what))?;
        let mut l2 = cfg.l2.clone();
        if l2.mac == MacAddr::ZERO {
            l2.mac = if_mac(&cfg.ifname).map_err(|e| with_context(e, &what))?;
        }
        let xdp = Arc::new(
            XdpAttachment::attach(ifindex, n_queues, cfg.xdp_flags).map_err(|e| {
                with_context(e, format_args!("attach XDP program to {}", cfg.ifname))
            })?,
        );
        (0..n_queues.max(1))
            .map(|q| {
                let port = AfXdpPort::open_one(
                    cfg,
                    ifindex,
                    q,
                    l2.clone(),
                    neighbours.clone(),
                    xdp.clone(),
                )?;
                xdp.insert(q, port.fd.as_raw_fd())
                    .map_err(|e| with_context(e, Name(&cfg.ifname, q)))?;
                Ok(port)
            })
            .collect()
    }

    fn open_one(
        cfg: &AfXdpConfig,
        ifindex: u32,
        queue: u32,
        l2: L2Config,
        neighbours: SharedNeighbours,
        xdp: Arc<XdpAttachment>,
    ) -> io::Result<AfXdpPort> {
        let what = Name(&cfg.ifname, queue);
        let frames = cfg.frames.max(64).next_power_of_two();
        let half = frames / 2;
        let fd = socket(AF_XDP, libc::SOCK_RAW, 0, &what)?;
        let raw = fd.as_raw_fd();
        let mut umem = Umem::new(frames as usize * FRAME as usize)?;
        let reg = UmemReg {
            addr: umem.base.as_ptr() as u64,
            len: umem.len as u64,
            chunk_size: FRAME as u32,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(
            raw,
            XDP_UMEM_REG,
            &reg,
            format_args!("XDP_UMEM_REG on {what}"),
        )?;
        let size = half as i32;
        for (opt, n) in [
            (XDP_UMEM_FILL_RING, "fill"),
            (XDP_UMEM_COMPLETION_RING, "completion"),
            (XDP_RX_RING, "rx"),
            (XDP_TX_RING, "tx"),
        ] {
            setsockopt(raw, opt, &size, format_args!("{n} ring size on {what}"))?;
        }
        let mut off = MmapOffsets::default();
        let mut len = mem::size_of::<MmapOffsets>() as libc::socklen_t;
        // SAFETY: `off` is a live MmapOffsets of `len` bytes for the kernel to fill.
        let rc = unsafe {
            libc::getsockopt(
                raw,
                SOL_XDP,
                XDP_MMAP_OFFSETS,
                (&mut off as *mut MmapOffsets).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            return Err(last_error(format_args!("XDP_MMAP_OFFSETS on {what}")));
        }
        let ctx = |e| with_context(e, format_args!("mmap rings of {what}"));
        let rx = Ring::map(raw, &off.rx, half, PGOFF_RX).map_err(ctx)?;
        let tx = Ring::map(raw, &off.tx, half, PGOFF_TX).map_err(ctx)?;
        let mut fill = Ring::<u64>::map(raw, &off.fr, half, PGOFF_FILL).map_err(ctx)?;
        let completion = Ring::map(raw, &off.cr, half, PGOFF_COMPLETION).map_err(ctx)?;
        // Frames 0..half receive, half..frames transmit.
        fill.produce((0..u64::from(half)).map(|i| i * FRAME));
        let tx_free = (u64::from(half)..u64::from(frames))
            .map(|i| i * FRAME)
            .collect();
        let sxdp = SockaddrXdp {
            family: AF_XDP as u16,
            flags: if cfg.zero_copy {
                XDP_ZEROCOPY
            } else {
                XDP_COPY
            },
            ifindex,
            queue_id: queue,
            shared_umem_fd: 0,
        };
        // SAFETY: `sxdp` is a valid sockaddr_xdp and its size is passed.
        let rc = unsafe {
            libc::bind(
                raw,
                (&sxdp as *const SockaddrXdp).cast(),
                mem::size_of::<SockaddrXdp>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(last_error(format_args!("bind {what}")));
        }
        // Touch the UMEM once so a bad registration shows here, not later.
        umem.frame(0, 1)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(AfXdpPort {
            fd,
            rx,
            tx,
            fill,
            completion,
            umem,
            tx_free,
            refill: Vec::with_capacity(half as usize),
            descs: Vec::with_capacity(64),
            l2: L2Outside::new(l2, neighbours),
            frames: Vec::with_capacity(64),
            stats: AfXdpStats::default(),
            counter_reads: CounterReads::default(),
            ifname: cfg.ifname.clone(),
            _xdp: xdp,
        })
    }

    pub fn stats(&self) -> AfXdpStats {
        self.stats
    }

    pub fn l2_stats(&self) -> L2Stats {
        self.l2.stats()
    }

    /// Copies `self.frames` into tx frames, queues and kicks them; returns
    /// how many were queued and recycles all into `pool`.
    fn send_frames(&mut self, pool: &mut PacketPool) -> usize {
        let tx_free = &mut self.tx_free;
        self.completion
            .consume(usize::MAX, |addr| tx_free.push(addr & !(FRAME - 1)));
        self.descs.clear();
        for p in &self.frames {
            let Some(addr) = self.tx_free.pop() else {
                break;
            };
            match self.umem.frame(addr, p.len()) {
                Some(dst) if p.len() as u64 <= FRAME => {
                    dst.copy_from_slice(p.data());
                    self.descs.push(XdpDesc {
                        addr,
                        len: p.len() as u32,
                        options: 0,
                    });
                }
                _ => self.tx_free.push(addr),
            }
        }
        let queued = self.tx.produce(self.descs.iter().copied()) as usize;
        for d in self.descs.get(queued..).unwrap_or(&[]) {
            self.tx_free.push(d.addr);
        }
        if queued > 0 {
            // Copy mode sends from the syscall; EAGAIN/EBUSY mean "later".
            // SAFETY: a zero-length send with no buffer or address.
            unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
        }
        self.stats.tx_frames += queued as u64;
        self.stats.tx_dropped += (self.frames.len() - queued) as u64;
        pool.put_all(&mut self.frames);
        queued
    }
}

impl Port for AfXdpPort {
    fn rx_burst(
        &mut self,
        pool: &mut PacketPool,
        out: &mut Vec<Packet>,
        max: usize,
    ) -> io::Result<usize> {
        let now = Instant::now();
        let cap = BUF_CAPACITY - HEADROOM;
        let mut n = 0;
        let (umem, l2, frames, stats, refill) = (
            &mut self.umem,
            &mut self.l2,
            &mut self.frames,
            &mut self.stats,
            &mut self.refill,
        );
        self.rx.consume(max, |d| {
            stats.rx_frames += 1;
            refill.push(d.addr & !(FRAME - 1));
            let len = d.len as usize;
            let Some(src) = umem.frame(d.addr, len).filter(|_| len <= cap) else {
                stats.rx_oversize += 1;
                return;
            };
            let mut p = pool.get();
            let Some(dst) = p.rx_space().get_mut(..len) else {
                pool.put(p);
                return;
            };
            dst.copy_from_slice(src);
            p.set_received_len(len);
            if l2.rx_into(p, now, out, frames, pool) {
                n += 1;
            }
        });
        if !self.refill.is_empty() {
            let back = self.fill.produce(self.refill.iter().copied()) as usize;
            self.refill.drain(..back);
        }
        self.l2.poll(now, &mut self.frames, pool);
        if !self.frames.is_empty() {
            self.send_frames(pool);
        }
        if self.counter_reads.due(now) {
            if let Some(d) = kernel_rx_drops(self.fd.as_raw_fd()) {
                self.stats.rx_kernel_dropped = d;
            }
        }
        Ok(n)
    }

    fn tx_burst(&mut self, pkts: &mut Vec<Packet>, pool: &mut PacketPool) -> io::Result<usize> {
        let now = Instant::now();
        let total = pkts.len();
        let dropped_l2 = self.l2.tx_burst(pkts, now, &mut self.frames, pool);
        let framed = self.frames.len();
        let sent = self.send_frames(pool);
        Ok(total.saturating_sub(dropped_l2 + (framed - sent)))
    }

    fn readable_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn rx_dropped(&self) -> u64 {
        self.stats.rx_oversize + self.stats.rx_kernel_dropped
    }
}

impl fmt::Debug for AfXdpPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AfXdpPort")
            .field("ifname", &self.ifname)
            .field("stats", &self.stats)
            .finish()
    }
}
