//! The raw ESP port in a private network namespace (raw sockets need root):
//! the IPv4 header is stripped, options and all, the peer is the IP source,
//! and per-worker filters split SPIs between sockets.

mod port_netns;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use dataplane::packet::Encap;
use dataplane::port::raw_esp::RawEspPort;
use dataplane::port::steering::steer_worker;
use dataplane::port::Port;
use dataplane::{Packet, PacketPool};
use port_netns::{in_new_netns, ip, ipv4_header};

const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

fn setup() {
    ip(&["addr", "add", "192.0.2.1/32", "dev", "lo"]);
    ip(&["addr", "add", "192.0.2.2/32", "dev", "lo"]);
}

fn esp(spi: u32, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut d = spi.to_be_bytes().to_vec();
    d.extend_from_slice(&seq.to_be_bytes());
    d.extend_from_slice(body);
    d
}

fn to(addr: Ipv4Addr, data: &[u8]) -> Packet {
    let mut p = Packet::from_slice(data).unwrap();
    p.meta.remote = SocketAddr::V4(SocketAddrV4::new(addr, 0));
    p
}

/// Receives until `want` packets came or two seconds passed; then checks
/// nothing more is waiting.
fn recv_n(port: &mut RawEspPort, pool: &mut PacketPool, want: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        if port.rx_burst(pool, &mut got, 16).unwrap() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    std::thread::sleep(Duration::from_millis(20));
    port.rx_burst(pool, &mut got, 64).unwrap();
    for p in &got {
        assert_eq!(p.meta.encap, Encap::RawEsp);
        assert_eq!(p.meta.local_port, 0);
    }
    got.iter().map(|p| p.data().to_vec()).collect()
}

#[test]
fn esp_round_trip_strips_the_ip_header() {
    in_new_netns(|| {
        setup();
        let mut pool = PacketPool::with_capacity(16);
        let mut a = RawEspPort::open(A).unwrap();
        let mut b = RawEspPort::open(B).unwrap();
        assert!(b.readable_fd().is_some());
        let sent: Vec<Vec<u8>> = (1..=3)
            .map(|seq| esp(0x1000, seq, &[seq as u8; 40]))
            .collect();
        let mut out: Vec<Packet> = sent.iter().map(|d| to(B, d)).collect();
        assert_eq!(a.tx_burst(&mut out, &mut pool).unwrap(), 3);

        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(2);
        while got.len() < 3 && Instant::now() < deadline {
            b.rx_burst(&mut pool, &mut got, 8).unwrap();
        }
        assert_eq!(got.len(), 3);
        for (p, d) in got.iter().zip(&sent) {
            assert_eq!(p.data(), &d[..], "starts at the ESP header");
            assert_eq!(p.meta.remote, SocketAddr::V4(SocketAddrV4::new(A, 0)));
        }

        // Back the other way; an IPv6 destination is refused and dropped alone.
        let mut out = vec![to(A, &esp(0x2000, 1, b"reply")), {
            let mut p = Packet::from_slice(&esp(0x2000, 2, b"v6")).unwrap();
            p.meta.remote = "[::1]:0".parse().unwrap();
            p
        }];
        assert_eq!(b.tx_burst(&mut out, &mut pool).unwrap(), 1);
        assert_eq!(b.stats().tx_dropped, 1);
        assert_eq!(recv_n(&mut a, &mut pool, 1), vec![esp(0x2000, 1, b"reply")]);
    });
}

/// Sends a hand-made IPv4 packet through an IP_HDRINCL socket.
fn send_hdrincl(packet: &[u8], dst: Ipv4Addr) {
    // SAFETY: plain syscalls on a socket this function owns and closes;
    // the buffers passed are live for the calls.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW);
        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(dst).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::sendto(
            fd,
            packet.as_ptr().cast(),
            packet.len(),
            0,
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        assert_eq!(rc, packet.len() as isize, "{err}");
    }
}

#[test]
fn ip_options_are_stripped_too() {
    in_new_netns(|| {
        setup();
        let mut pool = PacketPool::with_capacity(16);
        let mut b = RawEspPort::open(B).unwrap();
        let body = esp(0x3000, 9, b"behind options");
        // IHL 6: four NOP option bytes after the fixed header.
        let mut h = ipv4_header(A.octets(), B.octets(), 50, body.len() + 4);
        h[0] = 0x46;
        h.extend_from_slice(&[1, 1, 1, 1]);
        h[10..12].copy_from_slice(&[0, 0]);
        let c = port_netns::checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(&body);
        send_hdrincl(&h, B);
        assert_eq!(recv_n(&mut b, &mut pool, 1), vec![body]);
        assert_eq!(b.stats().rx_malformed, 0);
    });
}

#[test]
fn worker_filters_split_spis_between_sockets() {
    in_new_netns(|| {
        setup();
        let mut pool = PacketPool::with_capacity(64);
        let n = 2;
        let mut workers: Vec<RawEspPort> = (0..n)
            .map(|w| RawEspPort::open_worker(B, w, n).unwrap())
            .collect();
        let mut all = RawEspPort::open(B).unwrap();
        let mut a = RawEspPort::open(A).unwrap();

        let spis: Vec<u32> = (0..20u32)
            .map(|i| i.wrapping_mul(0x9e37_79b9) ^ i)
            .collect();
        let mut expected = vec![Vec::new(); n];
        let mut out = Vec::new();
        for (i, spi) in spis.iter().enumerate() {
            let d = esp(*spi, i as u32, b"x");
            expected[steer_worker(*spi, n)].push(d.clone());
            out.push(to(B, &d));
        }
        out.push(to(B, &[0xff, 0xff])); // too short for an SPI: no worker's
        assert_eq!(a.tx_burst(&mut out, &mut pool).unwrap(), 21);

        for (w, port) in workers.iter_mut().enumerate() {
            assert_eq!(
                recv_n(port, &mut pool, expected[w].len()),
                expected[w],
                "worker {w}"
            );
        }
        assert_eq!(
            recv_n(&mut all, &mut pool, 21).len(),
            21,
            "an unfiltered socket sees all"
        );
    });
}
