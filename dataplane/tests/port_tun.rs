//! The TUN port in a private network namespace: what the kernel routes to
//! the interface comes out of a queue, and what a queue writes the kernel
//! delivers.

mod port_netns;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use dataplane::packet::Encap;
use dataplane::port::tun::{TunDevice, TunPort};
use dataplane::port::Port;
use dataplane::{Packet, PacketPool};
use port_netns::{in_new_netns, ipv4_udp};

/// Polls every queue until an IPv4/UDP packet to `dport` shows up; returns
/// the queue index and the packet bytes.
fn wait_for_udp(
    queues: &mut [TunPort],
    pool: &mut PacketPool,
    dport: u16,
) -> Option<(usize, Vec<u8>)> {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        for (i, q) in queues.iter_mut().enumerate() {
            let mut got = Vec::new();
            q.rx_burst(pool, &mut got, 8).unwrap();
            for p in got {
                assert_eq!(p.meta.encap, Encap::Inner);
                let d = p.data();
                // IPv4, no options, UDP, destination port.
                if d.len() >= 28 && d[0] == 0x45 && d[9] == 17 && d[22..24] == dport.to_be_bytes() {
                    return Some((i, d.to_vec()));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

#[test]
fn kernel_and_tun_queues_exchange_ipv4_packets() {
    in_new_netns(|| {
        let mut pool = PacketPool::with_capacity(32);
        let (dev, mut queues) = TunDevice::open("esptun%d", 2).unwrap();
        assert_eq!(dev.name(), "esptun0");
        assert_eq!(queues.len(), 2);
        assert!(queues
            .iter()
            .all(|q| q.name() == "esptun0" && q.readable_fd().is_some()));
        dev.set_mtu(1400).unwrap();
        dev.add_address("10.0.0.1".parse().unwrap(), 24).unwrap();
        dev.set_up().unwrap();

        // Kernel -> TUN: a datagram routed to 10.0.0.2 leaves through a queue.
        let sock = UdpSocket::bind("10.0.0.1:0").unwrap();
        sock.send_to(b"to the tunnel", "10.0.0.2:9999").unwrap();
        let (queue, d) =
            wait_for_udp(&mut queues, &mut pool, 9999).expect("the datagram reached a queue");
        assert!(queue < 2);
        assert_eq!(&d[12..16], &[10, 0, 0, 1], "source");
        assert_eq!(&d[16..20], &[10, 0, 0, 2], "destination");
        assert_eq!(&d[28..], b"to the tunnel");

        // TUN -> kernel, through each queue: a socket in the namespace gets it.
        let listener = UdpSocket::bind("10.0.0.1:7777").unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        for (i, q) in queues.iter_mut().enumerate() {
            let payload = format!("from queue {i}");
            let bytes = ipv4_udp([10, 0, 0, 2], 5555, [10, 0, 0, 1], 7777, payload.as_bytes());
            let mut out = vec![Packet::from_slice(&bytes).unwrap()];
            assert_eq!(q.tx_burst(&mut out, &mut pool).unwrap(), 1);
            let mut buf = [0u8; 256];
            let (n, from) = listener.recv_from(&mut buf).unwrap();
            assert_eq!(from, SocketAddr::from((Ipv4Addr::new(10, 0, 0, 2), 5555)));
            assert_eq!(&buf[..n], payload.as_bytes());
        }

        // Garbage is refused by the kernel and dropped alone.
        let mut out = vec![
            Packet::from_slice(&[0xff; 10]).unwrap(),
            Packet::from_slice(&ipv4_udp([10, 0, 0, 2], 5555, [10, 0, 0, 1], 7777, b"ok")).unwrap(),
        ];
        let sent = queues[0].tx_burst(&mut out, &mut pool).unwrap();
        assert!(out.is_empty());
        let mut buf = [0u8; 64];
        let (n, _) = listener.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ok");
        assert_eq!(sent, 1, "not an IP packet: refused");
        assert_eq!(queues[0].stats().tx_dropped, 1);
    });
}

#[test]
fn idle_queue_oversize_packets_and_bad_names() {
    in_new_netns(|| {
        let mut pool = PacketPool::with_capacity(4);
        let (_dev, mut queues) = TunDevice::open("esp-idle", 1).unwrap();
        let mut got = Vec::new();
        assert_eq!(queues[0].rx_burst(&mut pool, &mut got, 8).unwrap(), 0);
        assert_eq!(pool.available(), 4, "the probe buffer went back");

        // An MTU above the buffer size: the big packet is dropped and counted.
        let dev = TunDevice::open("esp-big", 1).unwrap();
        let (dev, mut big) = dev;
        dev.set_mtu(4000).unwrap();
        dev.add_address("10.0.1.1".parse().unwrap(), 24).unwrap();
        dev.set_up().unwrap();
        let sock = UdpSocket::bind("10.0.1.1:0").unwrap();
        sock.send_to(&[7u8; 3000], "10.0.1.2:9999").unwrap();
        sock.send_to(b"small", "10.0.1.2:9999").unwrap();
        let (_, d) = wait_for_udp(&mut big, &mut pool, 9999).expect("the small one arrives");
        assert_eq!(&d[28..], b"small");
        assert_eq!(big[0].stats().rx_oversize, 1);

        assert!(TunDevice::open("a/b", 1).is_err());
        assert!(TunDevice::open("esp-none", 0).is_err());
        assert!(TunDevice::open("much-too-long-name", 1).is_err());
        let err = TunDevice::open("", 1).err().unwrap();
        assert!(err.to_string().contains("bad TUN interface name"));
    });
}
