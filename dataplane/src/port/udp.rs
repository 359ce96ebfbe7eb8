//! The outside port for ESP-in-UDP (RFC 3948): one non-blocking UDP socket
//! per worker, all bound to the same address with SO_REUSEPORT and steered
//! by SPI (see [`super::steering`]). Bursts use `recvmmsg`/`sendmmsg`; with
//! UDP GRO a coalesced super-datagram is split back into packets, and with
//! UDP GSO same-destination runs leave as one super-datagram.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::mmsg::{Received, RxBatch, TxBatch, TxMode, GRO_SPILL};
use super::steering::attach_spi_steering;
use super::sys::{bind, local_addr, set_int_option, socket, with_context};
use super::Port;
use crate::packet::{Encap, Packet, PacketPool, BUF_CAPACITY, HEADROOM};

/// How a UDP port is set up.
#[derive(Clone, Copy, Debug)]
pub struct UdpConfig {
    /// Datagrams per `recvmmsg`/`sendmmsg` call.
    pub batch: usize,
    /// Ask for UDP GRO (Linux 5.0+); ignored if the kernel refuses. Costs a
    /// 64 KiB spill area per batch slot for coalesced super-datagrams.
    pub gro: bool,
    /// Send same-destination, same-size runs with UDP GSO (Linux 4.18+).
    pub gso: bool,
    /// SO_RCVBUF / SO_SNDBUF in bytes; 0 keeps the system default.
    pub socket_buffer: usize,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            batch: 64,
            gro: true,
            gso: true,
            socket_buffer: 4 << 20,
        }
    }
}

/// Counters only the port can see.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpPortStats {
    /// Datagrams (or GRO segments) larger than a packet buffer, dropped.
    pub rx_oversize: u64,
    /// GRO super-datagrams split back into datagrams.
    pub rx_gro_split: u64,
    /// Datagrams whose source address could not be read, dropped.
    pub rx_no_source: u64,
    /// Packets `tx_burst` could not hand to the kernel.
    pub tx_dropped: u64,
}

/// One worker's ESP-in-UDP socket.
pub struct UdpPort {
    fd: OwnedFd,
    local: SocketAddr,
    gro: bool,
    tx_mode: TxMode,
    rx: RxBatch,
    tx: TxBatch,
    /// Packets already received (GRO segments past `max`) for the next burst.
    pending: VecDeque<Packet>,
    stats: UdpPortStats,
}

/// Names the socket in error messages.
struct Name(SocketAddr);

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UDP socket {}", self.0)
    }
}

impl UdpPort {
    /// A socket bound to `addr` with SO_REUSEPORT (so other workers may
    /// bind the same address) and the default configuration.
    pub fn bind(addr: SocketAddr) -> io::Result<UdpPort> {
        UdpPort::bind_with(addr, UdpConfig::default())
    }

    /// As [`UdpPort::bind`], with `cfg`.
    pub fn bind_with(addr: SocketAddr, cfg: UdpConfig) -> io::Result<UdpPort> {
        let v6 = addr.is_ipv6();
        let domain = if v6 { libc::AF_INET6 } else { libc::AF_INET };
        let what = Name(addr);
        let fd = socket(domain, libc::SOCK_DGRAM, libc::IPPROTO_UDP, &what)?;
        let raw = fd.as_raw_fd();
        set_int_option(
            raw,
            libc::SOL_SOCKET,
            libc::SO_REUSEPORT,
            1,
            format_args!("SO_REUSEPORT on {what}"),
        )?;
        if cfg.socket_buffer > 0 {
            let size = i32::try_from(cfg.socket_buffer).unwrap_or(i32::MAX);
            // Best effort: the kernel caps these at rmem_max/wmem_max.
            let _ = set_int_option(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, size, &what);
            let _ = set_int_option(raw, libc::SOL_SOCKET, libc::SO_SNDBUF, size, &what);
        }
        bind(raw, &addr).map_err(|e| with_context(e, &what))?;
        let local = local_addr(raw).map_err(|e| with_context(e, &what))?;
        // An old kernel refuses UDP_GRO: then datagrams simply come one by one.
        let gro = cfg.gro && set_int_option(raw, libc::SOL_UDP, libc::UDP_GRO, 1, &what).is_ok();
        let spill = if gro { GRO_SPILL } else { 0 };
        Ok(UdpPort {
            fd,
            local,
            gro,
            tx_mode: TxMode {
                v6_socket: v6,
                gso: cfg.gso,
            },
            rx: RxBatch::new(cfg.batch, spill),
            tx: TxBatch::new(cfg.batch),
            pending: VecDeque::with_capacity(cfg.batch),
            stats: UdpPortStats::default(),
        })
    }

    /// `n_workers` sockets on `addr`, bound in order (socket `i` is worker
    /// `i`) with SPI steering attached, so each SA's packets reach the
    /// worker [`super::steering::steer_worker`] names. With port 0 the first
    /// socket picks the port and the others join it.
    pub fn bind_group(
        addr: SocketAddr,
        n_workers: usize,
        cfg: UdpConfig,
    ) -> io::Result<Vec<UdpPort>> {
        let mut ports: Vec<UdpPort> = Vec::with_capacity(n_workers);
        let mut at = addr;
        for _ in 0..n_workers {
            let port = UdpPort::bind_with(at, cfg)?;
            at = port.local;
            ports.push(port);
        }
        if let Some(first) = ports.first() {
            attach_spi_steering(first.fd.as_raw_fd(), n_workers)
                .map_err(|e| with_context(e, Name(first.local)))?;
        }
        Ok(ports)
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether the kernel accepted UDP GRO for this socket.
    pub fn gro_enabled(&self) -> bool {
        self.gro
    }

    /// Whether sends still use UDP GSO (turned off if the device can't).
    pub fn gso_enabled(&self) -> bool {
        self.tx_mode.gso
    }

    pub fn stats(&self) -> UdpPortStats {
        self.stats
    }

    /// Returns the buffers the port keeps armed or pending to `pool`.
    pub fn release_buffers(&mut self, pool: &mut PacketPool) {
        self.rx.release(pool);
        pool.put_all(&mut self.pending.drain(..).collect());
    }

    /// Turns one received datagram (maybe a GRO super-datagram) into packets
    /// at the back of `pending`.
    fn accept(
        pending: &mut VecDeque<Packet>,
        stats: &mut UdpPortStats,
        local_port: u16,
        pool: &mut PacketPool,
        mut pkt: Packet,
        r: Received<'_>,
    ) {
        let cap = BUF_CAPACITY - HEADROOM;
        let Some(source) = r.source else {
            stats.rx_no_source += 1;
            pool.put(pkt);
            return;
        };
        pkt.meta.remote = source;
        pkt.meta.local_port = local_port;
        pkt.meta.encap = Encap::EspInUdp;
        let seg = match r.gro_segment {
            Some(seg) if seg < r.len => seg,
            _ => {
                // One plain datagram.
                if r.truncated || r.len > cap {
                    stats.rx_oversize += 1;
                    pool.put(pkt);
                } else {
                    pending.push_back(pkt);
                }
                return;
            }
        };
        // A GRO super-datagram: `len` bytes, of which the first `cap` are in
        // `pkt` and the rest in `spill`; every `seg` bytes is one datagram.
        let segments = r.len.div_ceil(seg);
        if seg > cap || r.truncated {
            stats.rx_oversize += segments as u64;
            pool.put(pkt);
            return;
        }
        stats.rx_gro_split += 1;
        for k in 1..segments {
            let from = k * seg;
            let to = (from + seg).min(r.len);
            let mut p = pool.get();
            p.meta = pkt.meta;
            let dst = p.rx_space();
            let copied = copy_span(pkt.data(), r.spill, from, to, dst);
            p.set_received_len(copied);
            pending.push_back(p);
        }
        pkt.truncate(seg);
        pending.insert(pending.len() + 1 - segments, pkt);
    }
}

/// Copies bytes `from..to` of the concatenation `first ++ spill` into `dst`;
/// returns how many were copied (fewer only if the span runs out).
fn copy_span(first: &[u8], spill: &[u8], from: usize, to: usize, dst: &mut [u8]) -> usize {
    let mut n = 0;
    for (part, base) in [(first, 0), (spill, first.len())] {
        let lo = from.max(base).saturating_sub(base);
        let hi = to.saturating_sub(base).min(part.len());
        if lo < hi {
            if let (Some(src), Some(out)) = (part.get(lo..hi), dst.get_mut(n..n + (hi - lo))) {
                out.copy_from_slice(src);
                n += hi - lo;
            }
        }
    }
    n
}

impl Port for UdpPort {
    fn rx_burst(
        &mut self,
        pool: &mut PacketPool,
        out: &mut Vec<Packet>,
        max: usize,
    ) -> io::Result<usize> {
        let mut n = 0;
        let mut drained = false;
        loop {
            while n < max {
                let Some(p) = self.pending.pop_front() else {
                    break;
                };
                out.push(p);
                n += 1;
            }
            if n >= max || drained {
                break;
            }
            let want = (max - n).min(self.rx.capacity());
            let local_port = self.local.port();
            let (pending, stats) = (&mut self.pending, &mut self.stats);
            let got = self.rx.recv(
                self.fd.as_raw_fd(),
                &Name(self.local),
                pool,
                want,
                |pool, pkt, r| UdpPort::accept(pending, stats, local_port, pool, pkt, r),
            )?;
            drained = got < want;
        }
        Ok(n)
    }

    fn tx_burst(&mut self, pkts: &mut Vec<Packet>, pool: &mut PacketPool) -> io::Result<usize> {
        self.tx.send_burst(
            self.fd.as_raw_fd(),
            &Name(self.local),
            pkts,
            &mut self.tx_mode,
            pool,
            &mut self.stats.tx_dropped,
        )
    }

    fn readable_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cross_the_spill_boundary() {
        let first = [1u8, 2, 3, 4];
        let spill = [5u8, 6, 7];
        let mut dst = [0u8; 8];
        assert_eq!(copy_span(&first, &spill, 2, 6, &mut dst), 4);
        assert_eq!(&dst[..4], &[3, 4, 5, 6]);
        assert_eq!(copy_span(&first, &spill, 5, 9, &mut dst), 2, "runs out");
        assert_eq!(&dst[..2], &[6, 7]);
        assert_eq!(
            copy_span(&first, &spill, 0, 3, &mut dst[..1]),
            0,
            "dst too small"
        );
    }
}
