//! The outside port for raw ESP (IP protocol 50, RFC 4303) over IPv4: a raw
//! socket. The kernel hands it whole IPv4 packets, so rx strips the IP
//! header and the packet starts at the ESP header; on tx the kernel builds
//! the IP header from the destination in `meta.remote`.
//!
//! Every raw ESP socket sees every ESP packet of its namespace, so with
//! several workers each socket filters to its own SPIs
//! ([`super::steering::raw_esp_worker_program`]).

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::mmsg::{Received, RxBatch, TxBatch, TxMode};
use super::steering::attach_raw_esp_worker_filter;
use super::sys::{bind, socket, with_context};
use super::Port;
use crate::packet::{Encap, Packet, PacketPool};

/// Datagrams per `recvmmsg`/`sendmmsg` call.
const BATCH: usize = 64;

/// The fields of a received IPv4 header the port needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Outer {
    /// Header length in bytes (IHL * 4, RFC 791 §3.1).
    pub header_len: usize,
    /// Total length: header plus ESP.
    pub total_len: usize,
    pub source: Ipv4Addr,
}

/// Checks an IPv4 packet of protocol ESP as a raw socket returns it:
/// version 4, IHL at least 5, header and total length within the bytes.
pub fn parse_ipv4_outer(ip: &[u8]) -> Option<Ipv4Outer> {
    let first = *ip.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(first & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    if header_len < 20 || total_len < header_len || total_len > ip.len() || *ip.get(9)? != 50 {
        return None;
    }
    let src: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
    Some(Ipv4Outer {
        header_len,
        total_len,
        source: Ipv4Addr::from(src),
    })
}

/// Counters only the port can see.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawEspStats {
    /// Packets with a bad IPv4 header, dropped.
    pub rx_malformed: u64,
    /// Packets larger than a packet buffer, dropped.
    pub rx_oversize: u64,
    /// Packets `tx_burst` could not hand to the kernel.
    pub tx_dropped: u64,
}

/// One worker's raw ESP socket.
pub struct RawEspPort {
    fd: OwnedFd,
    local: Ipv4Addr,
    rx: RxBatch,
    tx: TxBatch,
    tx_mode: TxMode,
    stats: RawEspStats,
}

struct Name(Ipv4Addr);

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raw ESP socket {}", self.0)
    }
}

impl RawEspPort {
    /// A raw ESP socket receiving ESP to `local` (0.0.0.0: to any local
    /// address) and sending from it. Needs CAP_NET_RAW.
    pub fn open(local: Ipv4Addr) -> io::Result<RawEspPort> {
        let what = Name(local);
        let fd = socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ESP, &what)?;
        if !local.is_unspecified() {
            bind(fd.as_raw_fd(), &SocketAddr::V4(SocketAddrV4::new(local, 0)))
                .map_err(|e| with_context(e, &what))?;
        }
        Ok(RawEspPort {
            fd,
            local,
            rx: RxBatch::new(BATCH, 0),
            tx: TxBatch::new(BATCH),
            tx_mode: TxMode {
                v6_socket: false,
                gso: false,
            },
            stats: RawEspStats::default(),
        })
    }

    /// As [`RawEspPort::open`], keeping only the SPIs of worker `worker` of
    /// `n_workers` (see [`super::steering::steer_worker`]).
    pub fn open_worker(local: Ipv4Addr, worker: usize, n_workers: usize) -> io::Result<RawEspPort> {
        let port = RawEspPort::open(local)?;
        attach_raw_esp_worker_filter(port.fd.as_raw_fd(), worker, n_workers)
            .map_err(|e| with_context(e, Name(local)))?;
        Ok(port)
    }

    pub fn local_addr(&self) -> Ipv4Addr {
        self.local
    }

    pub fn stats(&self) -> RawEspStats {
        self.stats
    }

    /// Returns the buffers the port keeps armed to `pool`.
    pub fn release_buffers(&mut self, pool: &mut PacketPool) {
        self.rx.release(pool);
    }

    fn accept(
        stats: &mut RawEspStats,
        out: &mut Vec<Packet>,
        pool: &mut PacketPool,
        mut pkt: Packet,
        r: Received<'_>,
    ) {
        if r.truncated || r.len > pkt.len() {
            stats.rx_oversize += 1;
            pool.put(pkt);
            return;
        }
        let Some(outer) = parse_ipv4_outer(pkt.data()) else {
            stats.rx_malformed += 1;
            pool.put(pkt);
            return;
        };
        pkt.truncate(outer.total_len);
        pkt.pull_front(outer.header_len);
        pkt.meta.remote = SocketAddr::V4(SocketAddrV4::new(outer.source, 0));
        pkt.meta.local_port = 0;
        pkt.meta.encap = Encap::RawEsp;
        out.push(pkt);
    }
}

impl Port for RawEspPort {
    fn rx_burst(
        &mut self,
        pool: &mut PacketPool,
        out: &mut Vec<Packet>,
        max: usize,
    ) -> io::Result<usize> {
        let before = out.len();
        let mut asked = 0;
        while asked < max {
            let want = (max - asked).min(self.rx.capacity());
            let stats = &mut self.stats;
            let got = self.rx.recv(
                self.fd.as_raw_fd(),
                &Name(self.local),
                pool,
                want,
                |pool, pkt, r| RawEspPort::accept(stats, out, pool, pkt, r),
            )?;
            asked += want;
            if got < want {
                break;
            }
        }
        Ok(out.len() - before)
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

    fn header(ihl: u8, total: u16, proto: u8) -> Vec<u8> {
        let mut h = vec![
            0x40 | ihl,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            64,
            proto,
            0,
            0,
            192,
            0,
            2,
            1,
            192,
            0,
            2,
            2,
        ];
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h.resize(usize::from(ihl) * 4, 1); // NOP options
        h
    }

    #[test]
    fn accepts_headers_with_options() {
        let mut p = header(6, 32, 50);
        p.extend_from_slice(&[0xaa; 8]);
        assert_eq!(
            parse_ipv4_outer(&p),
            Some(Ipv4Outer {
                header_len: 24,
                total_len: 32,
                source: Ipv4Addr::new(192, 0, 2, 1)
            })
        );
    }

    #[test]
    fn refuses_inconsistent_headers() {
        let body = [0u8; 8];
        let with = |mut h: Vec<u8>| {
            h.extend_from_slice(&body);
            h
        };
        assert_eq!(parse_ipv4_outer(&[]), None);
        assert_eq!(parse_ipv4_outer(&[0x45, 0]), None, "short");
        assert_eq!(
            parse_ipv4_outer(&with(header(4, 28, 50))),
            None,
            "IHL below 5"
        );
        assert_eq!(
            parse_ipv4_outer(&with(header(5, 19, 50))),
            None,
            "total below header"
        );
        assert_eq!(
            parse_ipv4_outer(&with(header(5, 29, 50))),
            None,
            "total beyond bytes"
        );
        assert_eq!(parse_ipv4_outer(&with(header(5, 28, 17))), None, "not ESP");
        let mut v6 = with(header(5, 28, 50));
        v6[0] = 0x65;
        assert_eq!(parse_ipv4_outer(&v6), None, "not IPv4");
        assert_eq!(
            parse_ipv4_outer(&header(15, 60, 50)[..40]),
            None,
            "options cut"
        );
    }
}
