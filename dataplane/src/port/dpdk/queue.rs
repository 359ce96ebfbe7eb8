//! Ethdev devices and the per-worker queue port.

use std::cell::Cell;
use std::ffi::CString;
use std::io;
use std::sync::Arc;
use std::time::Instant;

use super::eal::{Eal, MbufPool};
use super::DpdkError;
use crate::packet::{Packet, PacketPool, BUF_CAPACITY, HEADROOM};
use crate::port::l2::{L2Config, L2Outside, L2Stats, MacAddr, RxVerdict, SharedNeighbours};
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
}

/// An mbuf pointer array, which the raw pointers would keep from being Send.
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
    frames: Vec<Packet>,
    /// Received frames before L2, kept to avoid an allocation per burst.
    rx_scratch: Vec<Packet>,
    stats: DpdkStats,
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
            frames: Vec::with_capacity(BURST),
            rx_scratch: Vec::with_capacity(BURST),
            stats: DpdkStats::default(),
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

    /// Receives up to `max` frames into `out` as they are (no L2).
    fn rx_frames(&mut self, pool: &mut PacketPool, out: &mut Vec<Packet>, max: usize) -> usize {
        let want = max.min(BURST);
        let m = &mut self.mbufs.0;
        m.clear();
        m.resize(want, std::ptr::null_mut());
        // SAFETY: `m` has room for `want` pointers; the queue is ours.
        let n = unsafe {
            dpdk_sys::esprit_rx_burst(self.dev.port_id, self.queue, m.as_mut_ptr(), want as u16)
        };
        let n = usize::from(n).min(want);
        let cap = BUF_CAPACITY - HEADROOM;
        for &mb in &m[..n] {
            self.stats.rx_frames += 1;
            // SAFETY: `mb` is a valid mbuf the driver just gave us; its first
            // segment holds data_len bytes at data().
            let (segs, len, data) = unsafe {
                (
                    dpdk_sys::esprit_pktmbuf_nb_segs(mb),
                    usize::from(dpdk_sys::esprit_pktmbuf_data_len(mb)),
                    dpdk_sys::esprit_pktmbuf_data(mb),
                )
            };
            if segs != 1 || len > cap || data.is_null() {
                self.stats.rx_oversize += 1;
                continue;
            }
            // SAFETY: see above; the slice dies before the mbuf is freed.
            let bytes = unsafe { std::slice::from_raw_parts(data, len) };
            let mut p = pool.get();
            if let Some(dst) = p.rx_space().get_mut(..len) {
                dst.copy_from_slice(bytes);
                p.set_received_len(len);
                out.push(p);
            } else {
                pool.put(p);
            }
        }
        if n > 0 {
            // SAFETY: the n mbufs are ours and no longer referenced.
            unsafe { dpdk_sys::rte_pktmbuf_free_bulk(m.as_mut_ptr(), n as u32) };
        }
        m.clear();
        n
    }

    /// Sends `frames` as they are; returns how many the device took and
    /// recycles all of them into `pool`.
    fn tx_frames(&mut self, frames: &mut Vec<Packet>, pool: &mut PacketPool) -> usize {
        let mut sent_total = 0;
        for chunk in frames.chunks(BURST) {
            let want = chunk.len();
            let m = &mut self.mbufs.0;
            m.clear();
            m.resize(want, std::ptr::null_mut());
            // SAFETY: `m` has room for `want` pointers; the pool is live.
            let rc = unsafe {
                dpdk_sys::esprit_pktmbuf_alloc_bulk(
                    self.dev.pool.as_ptr(),
                    m.as_mut_ptr(),
                    want as u32,
                )
            };
            if rc != 0 {
                self.stats.tx_dropped += want as u64;
                m.clear();
                continue;
            }
            let mut ready = 0;
            for (i, p) in chunk.iter().enumerate() {
                let mb = m[i];
                let Ok(len) = u16::try_from(p.len()) else {
                    continue;
                };
                // SAFETY: `mb` is a fresh one-segment mbuf; append returns
                // `len` writable bytes or null.
                let dst = unsafe { dpdk_sys::esprit_pktmbuf_append(mb, len) };
                if dst.is_null() {
                    continue;
                }
                // SAFETY: `dst` has `len` bytes, disjoint from the packet.
                unsafe { std::ptr::copy_nonoverlapping(p.data().as_ptr(), dst, p.len()) };
                m.swap(ready, i);
                ready += 1;
            }
            // SAFETY: the first `ready` mbufs are filled; the queue is ours.
            let sent = unsafe {
                dpdk_sys::esprit_tx_burst(
                    self.dev.port_id,
                    self.queue,
                    m.as_mut_ptr(),
                    ready as u16,
                )
            };
            let sent = usize::from(sent).min(ready);
            if sent < want {
                // SAFETY: mbufs past `sent` were not taken by the driver.
                unsafe {
                    dpdk_sys::rte_pktmbuf_free_bulk(m.as_mut_ptr().add(sent), (want - sent) as u32)
                };
            }
            m.clear();
            self.stats.tx_dropped += (want - sent) as u64;
            sent_total += sent;
        }
        self.stats.tx_frames += sent_total as u64;
        pool.put_all(frames);
        sent_total
    }
}

impl Port for DpdkPort {
    fn rx_burst(
        &mut self,
        pool: &mut PacketPool,
        out: &mut Vec<Packet>,
        max: usize,
    ) -> io::Result<usize> {
        register_thread();
        if self.l2.is_none() {
            let before = out.len();
            self.rx_frames(pool, out, max);
            return Ok(out.len() - before);
        }
        let now = Instant::now();
        let mut got = std::mem::take(&mut self.rx_scratch);
        self.rx_frames(pool, &mut got, max);
        let mut frames = std::mem::take(&mut self.frames);
        let mut n = 0;
        if let Some(l2) = self.l2.as_mut() {
            for mut p in got.drain(..) {
                match l2.rx(&mut p, now) {
                    RxVerdict::Deliver => {
                        out.push(p);
                        n += 1;
                    }
                    RxVerdict::Reply => frames.push(p),
                    RxVerdict::Consumed | RxVerdict::Drop => pool.put(p),
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
        let refused =
            |s: L2Stats| s.tx_no_route + s.tx_too_big + s.tx_unsupported + s.tx_unresolved;
        let before = refused(l2.stats());
        let mut frames = std::mem::take(&mut self.frames);
        for p in pkts.drain(..) {
            l2.tx(p, now, &mut frames, pool);
        }
        l2.poll(now, &mut frames, pool);
        let dropped_l2 = (refused(l2.stats()) - before) as usize;
        let queued = frames.len();
        let sent = self.tx_frames(&mut frames, pool);
        self.frames = frames;
        Ok(total.saturating_sub(dropped_l2 + (queued - sent)))
    }
}
