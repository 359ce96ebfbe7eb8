//! Ethdev devices and the per-worker queue port.

use std::cell::Cell;
use std::ffi::CString;
use std::io;
use std::sync::Arc;
use std::time::Instant;

use super::eal::{Eal, MbufPool};
use super::DpdkError;
use crate::packet::{BufferSource, ExternalBuffer, Lender, Packet, PacketPool, BUF_CAPACITY};
use crate::port::counter_reads::CounterReads;
use crate::port::l2::{L2Config, L2Outside, L2Stats, MacAddr, SharedNeighbours};
use crate::port::Port;

/// Packets per rx/tx burst call.
const BURST: usize = 64;

/// A started ethdev port with one rx and one tx queue per worker. Stopped
/// and closed when the last queue port using it is dropped.
#[derive(Debug)]
pub struct DpdkDevice {
    port_id: u16,
    queues: u16,
    pool: Arc<MbufPool>,
}

impl DpdkDevice {
    /// Configures and starts the ethdev `port_id` with `queues` rx/tx queue
    /// pairs of `nb_desc` descriptors, receiving into `pool`.
    pub fn start(
        _eal: &Eal,
        port_id: u16,
        queues: u16,
        nb_desc: u16,
        pool: Arc<MbufPool>,
    ) -> Result<Arc<DpdkDevice>, DpdkError> {
        // SAFETY: EAL is started; `pool` outlives the device (held below).
        let rc =
            unsafe { dpdk_sys::esprit_port_setup(port_id, queues.max(1), nb_desc, pool.as_ptr()) };
        if rc < 0 {
            return Err(DpdkError::call(format!("set up ethdev port {port_id}"), rc));
        }
        // Best effort: a virtual device may not have a filter to open.
        // SAFETY: plain call on a started port.
        unsafe { dpdk_sys::rte_eth_promiscuous_enable(port_id) };
        Ok(Arc::new(DpdkDevice {
            port_id,
            queues: queues.max(1),
            pool,
        }))
    }

    /// Two ethdevs joined back to back by rings (net_ring), one queue each:
    /// what one sends the other receives. For tests and benchmarks.
    pub fn ring_pair(
        eal: &Eal,
        names: (&str, &str),
        pool: Arc<MbufPool>,
    ) -> Result<(Arc<DpdkDevice>, Arc<DpdkDevice>), DpdkError> {
        let a = CString::new(names.0).map_err(|_| DpdkError::Nul(names.0.into()))?;
        let b = CString::new(names.1).map_err(|_| DpdkError::Nul(names.1.into()))?;
        let (mut pa, mut pb) = (0u16, 0u16);
        // SAFETY: valid C strings and live out-parameters.
        let rc =
            unsafe { dpdk_sys::esprit_ring_pair(a.as_ptr(), b.as_ptr(), 1024, &mut pa, &mut pb) };
        if rc < 0 {
            return Err(DpdkError::call("rte_eth_from_rings", rc));
        }
        let da = DpdkDevice::start(eal, pa, 1, 512, pool.clone())?;
        let db = DpdkDevice::start(eal, pb, 1, 512, pool)?;
        Ok((da, db))
    }

    pub fn port_id(&self) -> u16 {
        self.port_id
    }

    pub fn queues(&self) -> u16 {
        self.queues
    }

    /// The device's MAC address.
    pub fn mac(&self) -> MacAddr {
        let mut a = dpdk_sys::rte_ether_addr::default();
        // SAFETY: `a` is a live rte_ether_addr the call fills in.
        let rc = unsafe { dpdk_sys::rte_eth_macaddr_get(self.port_id, &mut a) };
        if rc < 0 {
            return MacAddr::ZERO;
        }
        MacAddr(a.addr_bytes)
    }
}

impl Drop for DpdkDevice {
    fn drop(&mut self) {
        // SAFETY: no queue port uses the device any more (they hold Arcs).
        unsafe {
            dpdk_sys::rte_eth_dev_stop(self.port_id);
            dpdk_sys::rte_eth_dev_close(self.port_id);
        }
    }
}

/// Counters only the port sees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DpdkStats {
    pub rx_frames: u64,
    /// Multi-segment or larger than a packet buffer.
    pub rx_oversize: u64,
    pub tx_frames: u64,
    /// No mbuf, or the tx queue was full.
    pub tx_dropped: u64,
    /// Frames sent from a buffer that was not an mbuf (copied into one):
    /// zero when the worker's pool takes its buffers from the port.
    pub tx_copied: u64,
    /// The device's own receive drops (its rx ring full, or received with
    /// errors), read every
    /// [`COUNTER_READS_EVERY`](crate::port::counter_reads::COUNTER_READS_EVERY)
    /// at most. The device counts them
    /// for all its queues, so only queue 0's port reports them: each
    /// worker reporting them would count them once per queue.
    pub rx_device_dropped: u64,
}

/// Gives an mbuf lent to a packet back to its pool.
///
/// # Safety
/// `handle` is an `rte_mbuf*` of a live pool, released once.
unsafe fn release_mbuf(handle: *mut std::ffi::c_void) {
    dpdk_sys::esprit_pktmbuf_free(handle.cast());
}

/// Wraps `mb`'s buffer as a packet, its data at `start..end`; `None` (and
/// the mbuf freed) if the buffer is smaller than a packet's.
///
/// # Safety
/// `mb` is a one-segment mbuf we own.
unsafe fn lend(mb: *mut dpdk_sys::rte_mbuf, start: usize, end: usize) -> Option<Packet> {
    let buf = dpdk_sys::esprit_pktmbuf_buf_addr(mb);
    let Some(buf) = std::ptr::NonNull::new(buf.cast::<[u8; BUF_CAPACITY]>())
        .filter(|_| usize::from(dpdk_sys::esprit_pktmbuf_buf_len(mb)) >= BUF_CAPACITY)
    else {
        dpdk_sys::esprit_pktmbuf_free(mb);
        return None;
    };
    let ext = ExternalBuffer {
        handle: mb.cast(),
        release: release_mbuf,
        lender: Lender::DpdkMbuf,
    };
    // SAFETY: the mbuf's buffer holds at least BUF_CAPACITY bytes (checked)
    // and is ours until the packet releases it.
    Some(Packet::from_external(buf, ext, start, end))
}

/// A worker pool's buffers from the device's mbuf pool.
struct MbufSource {
    pool: Arc<MbufPool>,
}

impl BufferSource for MbufSource {
    fn take(&mut self) -> Option<Packet> {
        register_thread();
        // SAFETY: the pool is live (held by the Arc).
        let mb = unsafe { dpdk_sys::esprit_pktmbuf_alloc(self.pool.as_ptr()) };
        if mb.is_null() {
            return None;
        }
        // SAFETY: a fresh one-segment mbuf; its data starts at data_off.
        unsafe {
            let off = usize::from(dpdk_sys::esprit_pktmbuf_data_off(mb));
            lend(mb, off, off)
        }
    }
}

/// An mbuf pointer array, which the raw pointers would keep from being Send.
#[derive(Default)]
struct Mbufs(Vec<*mut dpdk_sys::rte_mbuf>);

// SAFETY: the array holds mbufs only during one burst call on the owning
// worker; between calls it is empty.
unsafe impl Send for Mbufs {}

thread_local! {
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// Gives a worker thread an lcore id, so mempool per-lcore caches work.
fn register_thread() {
    REGISTERED.with(|r| {
        if !r.get() {
            // SAFETY: plain call; failing leaves the thread unregistered,
            // which DPDK supports (no mempool cache).
            unsafe { dpdk_sys::rte_thread_register() };
            r.set(true);
        }
    });
}

/// One worker's queue pair of a [`DpdkDevice`]. With an [`L2Outside`] it
/// is an outside port (ESP in, ESP out); without, it moves raw Ethernet
/// frames (tests, benchmarks).
pub struct DpdkPort {
    dev: Arc<DpdkDevice>,
    queue: u16,
    l2: Option<L2Outside>,
    mbufs: Mbufs,
    /// Fresh mbufs for a burst's frames that must be copied (scratch).
    fresh: Mbufs,
    frames: Vec<Packet>,
    /// Received frames before L2, kept to avoid an allocation per burst.
    rx_scratch: Vec<Packet>,
    stats: DpdkStats,
    /// When queue 0 last read the device's drops.
    counter_reads: CounterReads,
}

impl DpdkPort {
    /// Queue `queue` of `dev`, with L2 as an outside port if `l2` is given
    /// (a zero MAC there means the device's own).
    pub fn new(
        dev: Arc<DpdkDevice>,
        queue: u16,
        l2: Option<(L2Config, SharedNeighbours)>,
    ) -> Result<DpdkPort, DpdkError> {
        if queue >= dev.queues {
            return Err(DpdkError::Call {
                what: format!("queue {queue} of port {}", dev.port_id),
                errno: libc::EINVAL,
                message: format!("the device has {} queues", dev.queues),
            });
        }
        let l2 = l2.map(|(mut cfg, n)| {
            if cfg.mac == MacAddr::ZERO {
                cfg.mac = dev.mac();
            }
            L2Outside::new(cfg, n)
        });
        Ok(DpdkPort {
            dev,
            queue,
            l2,
            mbufs: Mbufs(Vec::with_capacity(BURST)),
            fresh: Mbufs(Vec::with_capacity(BURST)),
            frames: Vec::with_capacity(BURST),
            rx_scratch: Vec::with_capacity(BURST),
            stats: DpdkStats::default(),
            counter_reads: CounterReads::default(),
        })
    }

    /// One port per queue of `dev`, worker `i` on queue `i`, sharing one
    /// neighbour table.
    pub fn per_queue(
        dev: &Arc<DpdkDevice>,
        l2: Option<L2Config>,
    ) -> Result<Vec<DpdkPort>, DpdkError> {
        let shared = SharedNeighbours::new();
        (0..dev.queues)
            .map(|q| DpdkPort::new(dev.clone(), q, l2.clone().map(|c| (c, shared.clone()))))
            .collect()
    }

    pub fn stats(&self) -> DpdkStats {
        self.stats
    }

    pub fn l2_stats(&self) -> Option<L2Stats> {
        self.l2.as_ref().map(L2Outside::stats)
    }

    /// Queue 0 reads the device's receive drops, when they are due.
    fn read_device_drops(&mut self, now: Instant) {
        if self.queue != 0 || !self.counter_reads.due(now) {
            return;
        }
        let mut drops = 0u64;
        // SAFETY: a started port and a valid out-pointer.
        let rc = unsafe { dpdk_sys::esprit_rx_drops(self.dev.port_id, &mut drops) };
        if rc == 0 {
            self.stats.rx_device_dropped = drops;
        }
    }

    /// Receives up to `max` frames into `out` as they are (no L2).
    fn rx_frames(&mut self, out: &mut Vec<Packet>, max: usize) -> usize {
        let want = max.min(BURST);
        let m = &mut self.mbufs.0;
        m.clear();
        m.resize(want, std::ptr::null_mut());
        // SAFETY: `m` has room for `want` pointers; the queue is ours.
        let n = unsafe {
            dpdk_sys::esprit_rx_burst(self.dev.port_id, self.queue, m.as_mut_ptr(), want as u16)
        };
        let n = usize::from(n).min(want);
        for &mb in &m[..n] {
            self.stats.rx_frames += 1;
            // SAFETY: `mb` is a valid mbuf the driver just gave us.
            let (segs, len, off) = unsafe {
                (
                    dpdk_sys::esprit_pktmbuf_nb_segs(mb),
                    usize::from(dpdk_sys::esprit_pktmbuf_data_len(mb)),
                    usize::from(dpdk_sys::esprit_pktmbuf_data_off(mb)),
                )
            };
            if segs != 1 || off + len > BUF_CAPACITY {
                self.stats.rx_oversize += 1;
                // SAFETY: ours, and not referenced any more.
                unsafe { dpdk_sys::esprit_pktmbuf_free(mb) };
                continue;
            }
            // No copy: the packet is the mbuf's buffer until it is dropped
            // or sent.
            // SAFETY: a one-segment mbuf we own, handed over to the packet.
            if let Some(p) = unsafe { lend(mb, off, off + len) } {
                out.push(p);
            }
        }
        m.clear();
        n
    }

    /// Sends `frames` as they are; returns how many the device took. A
    /// frame in a lent mbuf goes as it is; any other is copied into a
    /// fresh mbuf and its buffer recycled into `pool`.
    fn tx_frames(&mut self, frames: &mut Vec<Packet>, pool: &mut PacketPool) -> usize {
        let mut sent_total = 0;
        let mut m = std::mem::take(&mut self.mbufs);
        let Mbufs(mut fresh) = std::mem::take(&mut self.fresh);
        while !frames.is_empty() {
            let take = frames.len().min(BURST);
            // Frames not already in an mbuf get one, allocated in bulk.
            let copies = frames[..take].iter().filter(|p| !in_mbuf(p)).count();
            fresh.clear();
            fresh.resize(copies, std::ptr::null_mut());
            // SAFETY: `fresh` has room for `copies` pointers; the pool is live.
            let ok = copies == 0
                || unsafe {
                    dpdk_sys::esprit_pktmbuf_alloc_bulk(
                        self.dev.pool.as_ptr(),
                        fresh.as_mut_ptr(),
                        copies as u32,
                    )
                } == 0;
            if !ok {
                fresh.clear();
            }
            m.0.clear();
            for p in frames.drain(..take) {
                match self.mbuf_for(p, pool, &mut fresh) {
                    Some(mb) => m.0.push(mb),
                    None => self.stats.tx_dropped += 1,
                }
            }
            if !fresh.is_empty() {
                // Left over by frames that were dropped.
                // SAFETY: ours, never handed out.
                unsafe { dpdk_sys::rte_pktmbuf_free_bulk(fresh.as_mut_ptr(), fresh.len() as u32) };
                fresh.clear();
            }
            let ready = m.0.len();
            // SAFETY: the `ready` mbufs are filled; the queue is ours.
            let sent = unsafe {
                dpdk_sys::esprit_tx_burst(
                    self.dev.port_id,
                    self.queue,
                    m.0.as_mut_ptr(),
                    ready as u16,
                )
            };
            let sent = usize::from(sent).min(ready);
            if sent < ready {
                // SAFETY: mbufs past `sent` were not taken by the driver.
                unsafe {
                    dpdk_sys::rte_pktmbuf_free_bulk(
                        m.0.as_mut_ptr().add(sent),
                        (ready - sent) as u32,
                    )
                };
            }
            self.stats.tx_dropped += (ready - sent) as u64;
            sent_total += sent;
        }
        m.0.clear();
        self.mbufs = m;
        self.fresh = Mbufs(fresh);
        self.stats.tx_frames += sent_total as u64;
        sent_total
    }

    /// The mbuf that carries `p`: its own if it lives in one (no copy),
    /// else one of `fresh` it is copied into. `None`: dropped.
    fn mbuf_for(
        &mut self,
        p: Packet,
        pool: &mut PacketPool,
        fresh: &mut Vec<*mut dpdk_sys::rte_mbuf>,
    ) -> Option<*mut dpdk_sys::rte_mbuf> {
        let Ok(len) = u16::try_from(p.len()) else {
            pool.put(p);
            return None;
        };
        if in_mbuf(&p) {
            let (e, start, _) = p.into_external().ok()?;
            let mb: *mut dpdk_sys::rte_mbuf = e.handle.cast();
            let start = u16::try_from(start).unwrap_or(u16::MAX);
            // SAFETY: the packet gave its mbuf back to us; it is one segment
            // whose buffer holds the frame at `start`.
            if unsafe { dpdk_sys::esprit_pktmbuf_set_data(mb, start, len) } == 0 {
                return Some(mb);
            }
            // SAFETY: ours, and not referenced any more.
            unsafe { dpdk_sys::esprit_pktmbuf_free(mb) };
            return None;
        }
        let Some(mb) = fresh.pop() else {
            pool.put(p);
            return None;
        };
        // SAFETY: `mb` is a fresh one-segment mbuf; append returns `len`
        // writable bytes or null.
        let dst = unsafe { dpdk_sys::esprit_pktmbuf_append(mb, len) };
        if dst.is_null() {
            // SAFETY: ours, and not referenced any more.
            unsafe { dpdk_sys::esprit_pktmbuf_free(mb) };
            pool.put(p);
            return None;
        }
        // SAFETY: `dst` has `len` bytes, disjoint from the packet's buffer.
        unsafe { std::ptr::copy_nonoverlapping(p.data().as_ptr(), dst, p.len()) };
        self.stats.tx_copied += 1;
        pool.put(p);
        Some(mb)
    }
}

/// Whether `p` lives in a DPDK mbuf (and can leave without a copy).
fn in_mbuf(p: &Packet) -> bool {
    p.external().is_some_and(|e| e.lender == Lender::DpdkMbuf)
}

impl Port for DpdkPort {
    fn buffer_source(&self) -> Option<Box<dyn BufferSource>> {
        Some(Box::new(MbufSource {
            pool: self.dev.pool.clone(),
        }))
    }

    fn rx_burst(
        &mut self,
        pool: &mut PacketPool,
        out: &mut Vec<Packet>,
        max: usize,
    ) -> io::Result<usize> {
        register_thread();
        let now = Instant::now();
        self.read_device_drops(now);
        if self.l2.is_none() {
            let before = out.len();
            self.rx_frames(out, max);
            return Ok(out.len() - before);
        }
        let mut got = std::mem::take(&mut self.rx_scratch);
        self.rx_frames(&mut got, max);
        let mut frames = std::mem::take(&mut self.frames);
        let mut n = 0;
        if let Some(l2) = self.l2.as_mut() {
            for p in got.drain(..) {
                if l2.rx_into(p, now, out, &mut frames, pool) {
                    n += 1;
                }
            }
            l2.poll(now, &mut frames, pool);
        }
        if !frames.is_empty() {
            self.tx_frames(&mut frames, pool);
        }
        self.frames = frames;
        self.rx_scratch = got;
        Ok(n)
    }

    fn tx_burst(&mut self, pkts: &mut Vec<Packet>, pool: &mut PacketPool) -> io::Result<usize> {
        register_thread();
        let Some(l2) = self.l2.as_mut() else {
            let mut frames = std::mem::take(pkts);
            let sent = self.tx_frames(&mut frames, pool);
            *pkts = frames;
            return Ok(sent);
        };
        let now = Instant::now();
        let total = pkts.len();
        let mut frames = std::mem::take(&mut self.frames);
        let dropped_l2 = l2.tx_burst(pkts, now, &mut frames, pool);
        let queued = frames.len();
        let sent = self.tx_frames(&mut frames, pool);
        self.frames = frames;
        Ok(total.saturating_sub(dropped_l2 + (queued - sent)))
    }

    fn rx_dropped(&self) -> u64 {
        self.stats.rx_oversize + self.stats.rx_device_dropped
    }
}
