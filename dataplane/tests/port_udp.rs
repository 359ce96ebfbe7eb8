//! The UDP port on loopback: bursts, GSO/GRO, dual stack, per-packet drops
//! and SPI steering across a SO_REUSEPORT group.

mod port_netns;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use dataplane::packet::Encap;
use dataplane::port::steering::steer_worker;
use dataplane::port::udp::{UdpConfig, UdpPort};
use dataplane::port::Port;
use dataplane::{Packet, PacketPool};

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn cfg(gro: bool, gso: bool) -> UdpConfig {
    UdpConfig {
        gro,
        gso,
        ..UdpConfig::default()
    }
}

fn packet(to: SocketAddr, data: &[u8]) -> Packet {
    let mut p = Packet::from_slice(data).unwrap();
    p.meta.remote = to;
    p
}

/// Receives until `want` packets came or two seconds passed, `max` per burst.
fn recv_n(port: &mut UdpPort, pool: &mut PacketPool, want: usize, max: usize) -> Vec<Packet> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        let before = got.len();
        let n = port.rx_burst(pool, &mut got, max).unwrap();
        assert_eq!(got.len() - before, n);
        assert!(n <= max, "a burst never exceeds max");
        if n == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    got
}

#[test]
fn a_burst_arrives_with_source_port_and_encap() {
    let mut pool = PacketPool::with_capacity(64);
    let mut a = UdpPort::bind_with(loopback(), cfg(false, false)).unwrap();
    let mut b = UdpPort::bind_with(loopback(), cfg(false, false)).unwrap();
    let to = b.local_addr();
    let mut out: Vec<Packet> = (0..10u8).map(|i| packet(to, &[i; 100])).collect();
    assert_eq!(a.tx_burst(&mut out, &mut pool).unwrap(), 10);
    assert!(out.is_empty());
    assert_eq!(
        pool.available(),
        64 + 10,
        "sent buffers go back to the pool"
    );

    let got = recv_n(&mut b, &mut pool, 10, 4);
    assert_eq!(got.len(), 10);
    for (i, p) in got.iter().enumerate() {
        assert_eq!(p.data(), &[i as u8; 100][..]);
        assert_eq!(p.meta.remote, a.local_addr());
        assert_eq!(p.meta.local_port, to.port());
        assert_eq!(p.meta.encap, Encap::EspInUdp);
    }
    assert!(b.readable_fd().is_some());
    let mut none = Vec::new();
    assert_eq!(b.rx_burst(&mut pool, &mut none, 8).unwrap(), 0, "drained");
}

/// A same-size run goes out as one GSO super-datagram over loopback, where
/// the kernel hands it whole to a GRO socket and the port splits it.
#[test]
fn gso_run_is_split_back_by_gro_in_order() {
    let mut pool = PacketPool::with_capacity(64);
    let mut a = UdpPort::bind_with(loopback(), cfg(false, true)).unwrap();
    let mut b = UdpPort::bind_with(loopback(), cfg(true, false)).unwrap();
    assert!(b.gro_enabled(), "this kernel has UDP_GRO");
    let to = b.local_addr();
    let mut out: Vec<Packet> = (0..10u8).map(|i| packet(to, &[i; 1000])).collect();
    out.push(packet(to, &[0xee; 300])); // a shorter last segment
    out.push(packet(to, &[0xdd; 1000])); // starts a new run
    assert_eq!(a.tx_burst(&mut out, &mut pool).unwrap(), 12);
    assert!(a.gso_enabled());

    // max 3 per burst: the split segments wait in the port between bursts.
    let got = recv_n(&mut b, &mut pool, 12, 3);
    assert_eq!(got.len(), 12);
    for (i, p) in got.iter().take(10).enumerate() {
        assert_eq!(p.data(), &[i as u8; 1000][..], "segment {i}");
        assert_eq!(p.meta.remote, a.local_addr());
    }
    assert_eq!(got[10].data(), &[0xee; 300][..]);
    assert_eq!(got[11].data(), &[0xdd; 1000][..]);
    assert!(
        b.stats().rx_gro_split >= 1,
        "came as a super-datagram: {:?}",
        b.stats()
    );
}

#[test]
fn gso_run_reaches_a_socket_without_gro_as_datagrams() {
    let mut pool = PacketPool::with_capacity(64);
    let mut a = UdpPort::bind_with(loopback(), cfg(false, true)).unwrap();
    let plain = UdpSocket::bind(loopback()).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let to = plain.local_addr().unwrap();
    let mut out: Vec<Packet> = (0..5u8).map(|i| packet(to, &[i; 700])).collect();
    assert_eq!(a.tx_burst(&mut out, &mut pool).unwrap(), 5);
    let mut buf = [0u8; 4096];
    for i in 0..5u8 {
        let (n, from) = plain.recv_from(&mut buf).unwrap();
        assert_eq!(from, a.local_addr());
        assert_eq!(&buf[..n], &[i; 700][..]);
    }
}

#[test]
fn oversize_datagrams_are_dropped_and_counted() {
    let mut pool = PacketPool::with_capacity(8);
    for gro in [false, true] {
        let mut b = UdpPort::bind_with(loopback(), cfg(gro, false)).unwrap();
        let client = UdpSocket::bind(loopback()).unwrap();
        client.send_to(&[1u8; 3000], b.local_addr()).unwrap();
        client.send_to(&[2u8; 50], b.local_addr()).unwrap();
        let got = recv_n(&mut b, &mut pool, 1, 8);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].data(), &[2u8; 50][..]);
        assert_eq!(b.stats().rx_oversize, 1, "gro {gro}");
    }
}

#[test]
fn dual_stack_socket_speaks_ipv4_peers_as_ipv4() {
    let mut pool = PacketPool::with_capacity(8);
    let mut v6 = UdpPort::bind("[::]:0".parse().unwrap()).unwrap();
    let mut v4 = UdpPort::bind(loopback()).unwrap();
    let to: SocketAddr = format!("127.0.0.1:{}", v6.local_addr().port())
        .parse()
        .unwrap();
    let mut out = vec![packet(to, b"hello")];
    assert_eq!(v4.tx_burst(&mut out, &mut pool).unwrap(), 1);
    let got = recv_n(&mut v6, &mut pool, 1, 8);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].meta.remote,
        v4.local_addr(),
        "mapped source comes back as IPv4"
    );

    let mut reply = vec![packet(v4.local_addr(), b"back")];
    assert_eq!(v6.tx_burst(&mut reply, &mut pool).unwrap(), 1);
    let got = recv_n(&mut v4, &mut pool, 1, 8);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data(), b"back");

    let mut l6 = UdpPort::bind("[::1]:0".parse().unwrap()).unwrap();
    let mut out = vec![packet(l6.local_addr(), b"six")];
    assert_eq!(v6.tx_burst(&mut out, &mut pool).unwrap(), 1);
    let got = recv_n(&mut l6, &mut pool, 1, 8);
    assert_eq!(got[0].data(), b"six");
    assert!(got[0].meta.remote.is_ipv6());
}

#[test]
fn a_refused_packet_drops_alone() {
    let mut pool = PacketPool::with_capacity(8);
    for gso in [false, true] {
        let mut a = UdpPort::bind_with(loopback(), cfg(false, gso)).unwrap();
        let mut b = UdpPort::bind_with(loopback(), cfg(false, false)).unwrap();
        let to = b.local_addr();
        let bad: SocketAddr = "[::1]:9".parse().unwrap(); // IPv6 from an IPv4 socket
        let mut out = vec![
            packet(to, b"one"),
            packet(bad, b"xxx"),
            packet(to, b"two"),
            packet(to, b"two"),
        ];
        assert_eq!(a.tx_burst(&mut out, &mut pool).unwrap(), 3, "gso {gso}");
        assert_eq!(a.stats().tx_dropped, 1);
        let got = recv_n(&mut b, &mut pool, 3, 8);
        let data: Vec<&[u8]> = got.iter().map(|p| p.data()).collect();
        assert_eq!(data, [&b"one"[..], b"two", b"two"]);
    }
}

/// Sends datagrams with many SPIs to a steered group of `n` sockets and
/// checks each lands where `steer_worker` says.
fn steering_matches_prediction(n: usize) {
    let mut pool = PacketPool::with_capacity(64);
    let mut group = UdpPort::bind_group(loopback(), n, cfg(false, false)).unwrap();
    let to = group[0].local_addr();
    assert!(group.iter().all(|p| p.local_addr() == to));
    let client = UdpSocket::bind(loopback()).unwrap();

    let mut spis: Vec<u32> = vec![
        0,
        1,
        2,
        3,
        4,
        5,
        0x0100_0001,
        0xff00_0002,
        0x1234_5678,
        0xffff_ffff,
    ];
    spis.extend((0..30u32).map(|i| i.wrapping_mul(0x9e37_79b9)));
    let mut expected: Vec<Vec<Vec<u8>>> = vec![Vec::new(); n];
    for (id, spi) in spis.iter().enumerate() {
        let mut d = spi.to_be_bytes().to_vec();
        d.extend_from_slice(&(id as u32).to_be_bytes());
        client.send_to(&d, to).unwrap();
        expected[steer_worker(*spi, n)].push(d);
    }
    // NAT keepalive (RFC 3948 §2.3) and a 3-byte runt: shorter than an SPI.
    for short in [&[0xffu8][..], &[7, 7, 7][..]] {
        client.send_to(short, to).unwrap();
        expected[0].push(short.to_vec());
    }
    for (i, port) in group.iter_mut().enumerate() {
        let got = recv_n(port, &mut pool, expected[i].len(), 64);
        let got: Vec<Vec<u8>> = got.iter().map(|p| p.data().to_vec()).collect();
        assert_eq!(got, expected[i], "socket {i} of {n}");
        let mut extra = Vec::new();
        assert_eq!(
            port.rx_burst(&mut pool, &mut extra, 64).unwrap(),
            0,
            "socket {i} got strays"
        );
    }
}

#[test]
fn spi_steering_keeps_each_sa_on_its_worker_2() {
    steering_matches_prediction(2);
}

#[test]
fn spi_steering_keeps_each_sa_on_its_worker_3() {
    steering_matches_prediction(3);
}

#[test]
fn sockets_of_a_group_share_the_address() {
    let group = UdpPort::bind_group(loopback(), 4, UdpConfig::default()).unwrap();
    let fds: Vec<i32> = group.iter().map(|p| p.readable_fd().unwrap()).collect();
    assert_eq!(fds.len(), 4);
    let mut distinct = fds.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "one socket per worker");
    assert_eq!(group[3].local_addr(), group[0].local_addr());
}

/// A socket whose send buffer is full: `tx_burst` takes what fits, counts
/// the rest as dropped and still returns every buffer to the pool. The full
/// buffer comes from a veth whose qdisc (tbf at 8 kbit/s) holds packets.
#[test]
fn a_full_send_buffer_drops_the_rest_of_the_burst() {
    port_netns::in_new_netns(|| {
        use port_netns::ip;
        ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
        ip(&["link", "set", "v0", "up"]);
        ip(&["link", "set", "v1", "up"]);
        ip(&["addr", "add", "10.9.0.1/24", "dev", "v0"]);
        ip(&[
            "neigh",
            "add",
            "10.9.0.2",
            "lladdr",
            "02:00:00:00:00:02",
            "dev",
            "v0",
        ]);
        let tc = std::process::Command::new("tc")
            .args([
                "qdisc", "add", "dev", "v0", "root", "tbf", "rate", "8kbit", "burst", "1600",
                "limit", "1000000",
            ])
            .status()
            .expect("run tc");
        assert!(tc.success());
        for gso in [false, true] {
            let mut pool = PacketPool::with_capacity(0);
            let udp_cfg = UdpConfig {
                socket_buffer: 0,
                ..cfg(false, gso)
            };
            let mut port = UdpPort::bind_with("10.9.0.1:0".parse().unwrap(), udp_cfg).unwrap();
            let fd = port.readable_fd().unwrap();
            dataplane::testkit::set_int_option(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, 4096)
                .unwrap();
            let to: SocketAddr = "10.9.0.2:4500".parse().unwrap();
            let mut out: Vec<Packet> = (0..64).map(|_| packet(to, &[0x55; 1000])).collect();
            let sent = port.tx_burst(&mut out, &mut pool).unwrap();
            assert!(sent > 0 && sent < 64, "gso {gso}: sent {sent}");
            assert_eq!(port.stats().tx_dropped, 64 - sent as u64);
            assert!(out.is_empty());
            assert_eq!(pool.available(), 64, "every buffer is recycled");
        }
    });
}

#[test]
fn errors_name_the_socket() {
    // 192.0.2.99 is not a local address: bind fails, and says where.
    let err = UdpPort::bind("192.0.2.99:4500".parse().unwrap())
        .err()
        .expect("not local");
    assert!(err.to_string().contains("192.0.2.99:4500"), "{err}");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrNotAvailable);
}

/// Packets a device has sent, from `ip -s link`.
fn tx_packets(dev: &str) -> u64 {
    let out = std::process::Command::new("ip")
        .args(["-s", "link", "show", "dev", dev])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("TX:"));
    lines.next();
    let counts = lines.next().unwrap_or_default();
    counts
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A GSO segment larger than the device MTU makes the kernel refuse the
/// super-datagram (EINVAL); the port then sends the run one by one, which
/// the kernel fragments, and keeps GSO for later bursts.
#[test]
fn a_refused_gso_run_is_resent_one_by_one() {
    port_netns::in_new_netns(|| {
        use port_netns::ip;
        ip(&[
            "link", "add", "v0", "mtu", "1280", "type", "veth", "peer", "name", "v1",
        ]);
        ip(&["link", "set", "v0", "up"]);
        ip(&["link", "set", "v1", "up"]);
        ip(&["addr", "add", "10.9.0.1/24", "dev", "v0"]);
        ip(&[
            "neigh",
            "add",
            "10.9.0.2",
            "lladdr",
            "02:00:00:00:00:02",
            "dev",
            "v0",
        ]);
        let mut pool = PacketPool::with_capacity(0);
        let mut port = UdpPort::bind_with("10.9.0.1:0".parse().unwrap(), cfg(false, true)).unwrap();
        let to: SocketAddr = "10.9.0.2:4500".parse().unwrap();
        let before = tx_packets("v0");
        let mut out: Vec<Packet> = (0..10).map(|_| packet(to, &[0x55; 1400])).collect();
        assert_eq!(port.tx_burst(&mut out, &mut pool).unwrap(), 10);
        assert!(
            port.gso_enabled(),
            "EINVAL is about this run, not the device"
        );
        let sent = tx_packets("v0") - before;
        assert!(
            sent >= 20,
            "ten datagrams in two fragments each left: {sent}"
        );
    });
}
