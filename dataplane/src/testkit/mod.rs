//! Inner packets for tests, the demo and the load generator.

pub mod udp_gso;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;

use crate::wire::{ipv4, ipv6, udp};

/// Sets the int socket option `level`/`name` on `fd` (buffer sizes, for
/// tests and floods that must not drop in their own sockets).
pub fn set_int_option(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    let what = format_args!("socket option {level}/{name}");
    crate::port::sys::set_int_option(fd, level, name, value, what)
}

/// Writes an IPv4/UDP packet (UDP checksum 0, allowed on IPv4) with
/// `payload` into `out`, returning its length, or `None` if it does not fit.
pub fn write_ipv4_udp(
    out: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ports: (u16, u16),
    payload: &[u8],
) -> Option<usize> {
    let udp_repr = udp_repr(ports, payload);
    let ip_repr = ipv4::Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: 17,
        payload_len: udp_repr.buffer_len(),
        hop_limit: 64,
        dscp_ecn: 0,
        ident: 0,
        dont_frag: true,
    };
    let total = ip_repr.buffer_len();
    let buf = out.get_mut(..total)?;
    ip_repr
        .emit(&mut ipv4::Packet::new_unchecked(&mut buf[..]))
        .ok()?;
    emit_udp(&mut buf[ipv4::HEADER_LEN..], &udp_repr, payload, None)?;
    Some(total)
}

fn udp_repr(ports: (u16, u16), payload: &[u8]) -> udp::Repr {
    udp::Repr {
        src_port: ports.0,
        dst_port: ports.1,
        payload_len: payload.len(),
    }
}

/// The UDP header and `payload` into `l4`; the checksum over `addrs`.
fn emit_udp(
    l4: &mut [u8],
    repr: &udp::Repr,
    payload: &[u8],
    addrs: Option<(IpAddr, IpAddr)>,
) -> Option<()> {
    l4.get_mut(udp::HEADER_LEN..)?.copy_from_slice(payload);
    repr.emit(&mut udp::Packet::new_unchecked(l4), addrs).ok()
}

/// Writes an IPv6/UDP packet with `payload` into `out` (with its UDP
/// checksum, which IPv6 requires), returning its length, or `None` if it
/// does not fit.
pub fn write_ipv6_udp(
    out: &mut [u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    ports: (u16, u16),
    payload: &[u8],
) -> Option<usize> {
    let udp_repr = udp_repr(ports, payload);
    let ip_repr = ipv6::Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: 17,
        payload_len: udp_repr.buffer_len(),
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
    };
    let total = ip_repr.buffer_len();
    let buf = out.get_mut(..total)?;
    ip_repr
        .emit(&mut ipv6::Packet::new_unchecked(&mut buf[..]))
        .ok()?;
    let addrs = Some((src.into(), dst.into()));
    emit_udp(&mut buf[ipv6::HEADER_LEN..], &udp_repr, payload, addrs)?;
    Some(total)
}

/// [`write_ipv4_udp`] or [`write_ipv6_udp`] by the addresses' family;
/// `None` when they are of different families or the packet does not fit.
pub fn write_ip_udp(
    out: &mut [u8],
    src: IpAddr,
    dst: IpAddr,
    ports: (u16, u16),
    payload: &[u8],
) -> Option<usize> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => write_ipv4_udp(out, s, d, ports, payload),
        (IpAddr::V6(s), IpAddr::V6(d)) => write_ipv6_udp(out, s, d, ports, payload),
        _ => None,
    }
}

/// The UDP payload of an IPv4/UDP packet ([`ipv4_udp_payload`]) or of a
/// whole IPv6/UDP datagram without extension headers, by its version
/// nibble.
pub fn ip_udp_payload(pkt: &[u8]) -> Option<&[u8]> {
    if pkt.first()? >> 4 != 6 {
        return ipv4_udp_payload(pkt);
    }
    let l = crate::offload::UdpLayout::parse(pkt)?;
    pkt.get(l.header_len()..)
}

/// An IPv4/UDP packet as a vector.
pub fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, ports: (u16, u16), payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; ipv4::HEADER_LEN + udp::HEADER_LEN + payload.len()];
    let n = write_ipv4_udp(&mut v, src, dst, ports, payload).unwrap_or(0);
    v.truncate(n);
    v
}

/// The UDP payload of an IPv4/UDP packet.
pub fn ipv4_udp_payload(pkt: &[u8]) -> Option<&[u8]> {
    let ip = ipv4::Packet::new_checked(pkt).ok()?;
    let (hl, total) = (ip.header_len() as usize, ip.total_len() as usize);
    let l4 = pkt.get(hl..total)?;
    let n = udp::Packet::new_checked(l4).ok()?.len() as usize;
    l4.get(udp::HEADER_LEN..n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_valid_ipv6_packet_and_reads_it_back() {
        let (a, b): (Ipv6Addr, Ipv6Addr) = ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
        let mut buf = [0u8; 128];
        let n = write_ip_udp(&mut buf, a.into(), b.into(), (1, 2), b"hi").unwrap();
        assert_eq!(n, 40 + 8 + 2);
        let p = &buf[..n];
        let u = udp::Packet::new_checked(&p[40..]).unwrap();
        assert!(u.checksum() != 0, "IPv6 needs the UDP checksum");
        assert!(u.verify_checksum(a.into(), b.into()));
        assert_eq!(ip_udp_payload(p), Some(&b"hi"[..]));
        let v4 = ipv4_udp(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, (1, 2), b"v4");
        assert_eq!(ip_udp_payload(&v4), Some(&b"v4"[..]), "either family");
        assert_eq!(
            write_ip_udp(&mut buf, a.into(), Ipv4Addr::LOCALHOST.into(), (1, 2), b"x"),
            None,
            "mixed families"
        );
        assert_eq!(
            write_ip_udp(&mut buf[..48], a.into(), b.into(), (1, 2), b"x"),
            None
        );
    }

    #[test]
    fn builds_a_valid_packet_and_reads_it_back() {
        let p = ipv4_udp(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            (1, 2),
            b"hi",
        );
        let ip = ipv4::Packet::new_checked(&p[..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ipv4_udp_payload(&p), Some(&b"hi"[..]));
        let mut small = [0u8; 20];
        assert_eq!(
            write_ipv4_udp(
                &mut small,
                Ipv4Addr::LOCALHOST,
                Ipv4Addr::LOCALHOST,
                (1, 2),
                b"x"
            ),
            None
        );
    }
}

/// The headers of a TCP packet for [`tcp_packet`].
#[derive(Clone, Debug)]
pub struct TcpSpec {
    pub v6: bool,
    pub ip_id: u16,
    pub ports: (u16, u16),
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// TCP options, a multiple of 4 bytes.
    pub options: Vec<u8>,
}

impl TcpSpec {
    /// IPv4 10.8.0.2:40000 -> 10.1.0.2:5201, ACK.
    pub fn v4() -> TcpSpec {
        TcpSpec {
            v6: false,
            ip_id: 0x1234,
            ports: (40000, 5201),
            seq: 1000,
            ack: 77,
            flags: 0x10,
            window: 512,
            options: Vec::new(),
        }
    }

    /// The same over IPv6, fd00::2 -> fd01::2.
    pub fn v6() -> TcpSpec {
        TcpSpec {
            v6: true,
            ..TcpSpec::v4()
        }
    }
}

/// A TCP packet with valid lengths and checksums (the IP length field says
/// the whole packet, even past 64 KiB, where it wraps: tests of bad input).
pub fn tcp_packet(spec: &TcpSpec, payload: &[u8]) -> Vec<u8> {
    use crate::wire::checksum::{finish, sum};
    let tcp_len = 20 + spec.options.len();
    let mut tcp = Vec::with_capacity(tcp_len + payload.len());
    tcp.extend_from_slice(&spec.ports.0.to_be_bytes());
    tcp.extend_from_slice(&spec.ports.1.to_be_bytes());
    tcp.extend_from_slice(&spec.seq.to_be_bytes());
    tcp.extend_from_slice(&spec.ack.to_be_bytes());
    tcp.push(((tcp_len / 4) as u8) << 4);
    tcp.push(spec.flags);
    tcp.extend_from_slice(&spec.window.to_be_bytes());
    tcp.extend_from_slice(&[0, 0, 0, 0]);
    tcp.extend_from_slice(&spec.options);
    tcp.extend_from_slice(payload);
    let tcp_bytes = tcp.len() as u32;
    let mut ip = Vec::new();
    let addrs: Vec<u8> = if spec.v6 {
        ip.extend_from_slice(&[0x60, 0, 0, 0]);
        ip.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        ip.extend_from_slice(&[6, 64]);
        let mut a = vec![0xfd, 0x00];
        a.resize(15, 0);
        a.push(2);
        a.extend_from_slice(&[0xfd, 0x01]);
        a.resize(31, 0);
        a.push(2);
        a
    } else {
        ip.extend_from_slice(&[0x45, 0]);
        ip.extend_from_slice(&((20 + tcp.len()) as u16).to_be_bytes());
        ip.extend_from_slice(&spec.ip_id.to_be_bytes());
        ip.extend_from_slice(&[0x40, 0, 64, 6, 0, 0]);
        vec![10, 8, 0, 2, 10, 1, 0, 2]
    };
    ip.extend_from_slice(&addrs);
    if !spec.v6 {
        let c = finish(sum(&ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let pseudo = sum(&addrs) + 6 + (tcp_bytes >> 16) + (tcp_bytes & 0xffff);
    let c = finish(pseudo + sum(&tcp));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&tcp);
    ip
}

/// A UDP datagram with valid lengths and checksum, between the addresses
/// of [`TcpSpec::v4`] or [`TcpSpec::v6`]; IPv4 ID `ip_id`. A payload past
/// 64 KiB wraps the length fields (tests of bad input).
pub fn udp_packet(v6: bool, ip_id: u16, ports: (u16, u16), payload: &[u8]) -> Vec<u8> {
    let spec = TcpSpec {
        ip_id,
        ports,
        ..if v6 { TcpSpec::v6() } else { TcpSpec::v4() }
    };
    // The TCP packet's IP header, with UDP's protocol and lengths.
    let mut pkt = tcp_packet(&spec, &[]);
    let ip_len = if v6 { 40 } else { 20 };
    pkt.truncate(ip_len);
    let udp_len = 8 + payload.len();
    if v6 {
        pkt[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        pkt[6] = 17;
    } else {
        pkt[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
        pkt[9] = 17;
        pkt[10..12].fill(0);
        let c = crate::wire::checksum::checksum(&pkt[..20]);
        pkt[10..12].copy_from_slice(&c.to_be_bytes());
    }
    pkt.extend_from_slice(&ports.0.to_be_bytes());
    pkt.extend_from_slice(&ports.1.to_be_bytes());
    pkt.extend_from_slice(&(udp_len as u16).to_be_bytes());
    pkt.extend_from_slice(&[0, 0]);
    pkt.extend_from_slice(payload);
    if let Some(l) = crate::offload::UdpLayout::parse(&pkt) {
        l.fill_checksum(&mut pkt);
    }
    pkt
}

/// AES-128-GCM keys for one direction of a manual tunnel in tests and
/// benchmarks: every key and salt byte `b`, ESN on.
pub fn manual_keys(spi: u32, b: u8) -> crate::sa::manual::ManualSaKeys {
    crate::sa::manual::ManualSaKeys {
        spi,
        key: zeroize::Zeroizing::new(vec![b; 16]),
        salt: [b; 4],
        esn: true,
    }
}

/// The spec of an inbound AES-128-GCM SA of `spi` for `tunnel`, for tests
/// of the tables (ESN on, a 64-packet window, no allowed inner source: it
/// opens nothing a worker would pass on).
pub fn inbound_spec(spi: u32, tunnel: crate::sa::TunnelId) -> crate::sa::InboundSpec<'static> {
    crate::sa::InboundSpec {
        spi,
        tunnel,
        owner: 0,
        key: &[7; 16],
        salt: [0; 4],
        esn: true,
        replay_window: 64,
        allowed_sources: Vec::new(),
        limits: crate::sa::HardLimits::default(),
    }
}

/// That SA ([`inbound_spec`]) on the heap, apart from any table.
pub fn inbound_sa(spi: u32, tunnel: crate::sa::TunnelId) -> std::sync::Arc<crate::sa::InboundSa> {
    crate::sa::InboundSa::new(inbound_spec(spi, tunnel)).unwrap_or_else(|e| panic!("{e}"))
}
