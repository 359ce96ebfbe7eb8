//! The DPDK port on virtual devices, without hugepages or NICs: EAL with
//! `--no-huge --no-pci --no-shconf -m 256`, a net_ring device that talks
//! to itself, two devices joined back to back by rings (two data planes'
//! outside ports: ARP, ESP both ways), and net_af_packet on a veth against
//! the kernel in a network namespace (ARP, UDP 4500 both ways, ping, and
//! the drops of a flood it does not read).
#![cfg(feature = "dpdk")]

mod l2_planes;
mod port_netns;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use dataplane::packet::Encap;
use dataplane::port::counter_reads::COUNTER_READS_EVERY;
use dataplane::port::dpdk::{DpdkDevice, DpdkPort, Eal, MbufPool};
use dataplane::port::l2::{L2Config, MacAddr, SharedNeighbours};
use dataplane::port::Port;
use dataplane::{Packet, PacketPool};
use port_netns::{in_new_netns, ip, spawn_flood, spawn_peer};

fn eal() -> (&'static Eal, Arc<MbufPool>) {
    static POOL: OnceLock<Arc<MbufPool>> = OnceLock::new();
    let eal = Eal::init(&[
        "esprit-test",
        "--no-huge",
        "--no-pci",
        "--no-shconf",
        "-m",
        "256",
        "-l",
        "0",
        "--log-level=lib.eal:error",
        "--no-telemetry",
        "--vdev=net_ring0",
    ])
    .expect("EAL init");
    let pool = POOL
        .get_or_init(|| {
            Arc::new(MbufPool::create(eal, "esprit_test", 8191, 64, -1).expect("mbuf pool"))
        })
        .clone();
    (eal, pool)
}

/// Unique device names across tests of this binary.
fn name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}{}", N.fetch_add(1, Ordering::Relaxed))
}

fn esp(to: SocketAddr, data: &[u8]) -> Packet {
    let mut p = Packet::from_slice(data).unwrap();
    p.meta.remote = to;
    p.meta.encap = Encap::EspInUdp;
    p
}

fn poll_until(port: &mut DpdkPort, pool: &mut PacketPool, want: usize) -> Vec<Packet> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        port.rx_burst(pool, &mut got, 32).unwrap();
    }
    got
}

#[test]
fn a_ring_device_talking_to_itself_returns_every_frame_unchanged() {
    let (eal, mbufs) = eal();
    let id = eal.port_by_name("net_ring0").unwrap();
    let dev = DpdkDevice::start(eal, id, 1, 512, mbufs).unwrap();
    let mut port = DpdkPort::new(dev, 0, None).unwrap();
    let mut pool = PacketPool::with_capacity(256);
    for size in [60usize, 1400] {
        let mut out: Vec<Packet> = (0..100u8)
            .map(|i| Packet::from_slice(&vec![i; size]).unwrap())
            .collect();
        assert_eq!(port.tx_burst(&mut out, &mut pool).unwrap(), 100);
        let got = poll_until(&mut port, &mut pool, 100);
        assert_eq!(got.len(), 100);
        for (i, p) in got.iter().enumerate() {
            assert_eq!(p.data(), &vec![i as u8; size][..]);
        }
    }
    assert_eq!(port.stats().tx_frames, 200);
    assert_eq!(port.stats().rx_frames, 200);
}

#[test]
fn two_outside_ports_joined_by_rings_resolve_each_other_and_carry_esp() {
    let (eal, mbufs) = eal();
    let (a, b) = DpdkDevice::ring_pair(eal, (&name("ra"), &name("rb")), mbufs).unwrap();
    let a_cfg = L2Config::new(MacAddr([2, 0, 0, 0, 0, 0xa]), [192, 0, 2, 1].into(), 24);
    let b_cfg = L2Config::new(MacAddr([2, 0, 0, 0, 0, 0xb]), [192, 0, 2, 2].into(), 24);
    let mut pa = DpdkPort::new(a, 0, Some((a_cfg, SharedNeighbours::new()))).unwrap();
    let mut pb = DpdkPort::new(b, 0, Some((b_cfg, SharedNeighbours::new()))).unwrap();
    let mut pool = PacketPool::with_capacity(256);
    let to_b: SocketAddr = "192.0.2.2:4500".parse().unwrap();
    let mut out: Vec<Packet> = (0..10u32)
        .map(|i| esp(to_b, &[&(0x100 + i).to_be_bytes()[..], b"esp"].concat()))
        .collect();
    assert_eq!(
        pa.tx_burst(&mut out, &mut pool).unwrap(),
        10,
        "held for ARP"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut at_b = Vec::new();
    while at_b.len() < 10 && Instant::now() < deadline {
        pb.rx_burst(&mut pool, &mut at_b, 32).unwrap(); // answers the ARP
        let mut none = Vec::new();
        pa.rx_burst(&mut pool, &mut none, 32).unwrap(); // learns, releases
        assert!(none.is_empty());
    }
    assert_eq!(at_b.len(), 10);
    for (i, p) in at_b.iter().enumerate() {
        assert_eq!(&p.data()[..4], &(0x100 + i as u32).to_be_bytes());
        assert_eq!(p.meta.remote, "192.0.2.1:4500".parse().unwrap());
    }
    // And back, without ARP this time (B learned A from A's request).
    let mut back = vec![esp(at_b[0].meta.remote, b"\x00\x00\x02\x00reply")];
    assert_eq!(pb.tx_burst(&mut back, &mut pool).unwrap(), 1);
    let got = poll_until(&mut pa, &mut pool, 1);
    assert_eq!(got[0].data(), b"\x00\x00\x02\x00reply");
    assert_eq!(pb.l2_stats().unwrap().arp_requests_sent, 0);
    assert_eq!(pa.l2_stats().unwrap().tx_held, 10);
}

#[test]
fn net_af_packet_on_a_veth_answers_arp_and_ping_and_carries_udp() {
    let (eal, mbufs) = eal();
    let vdev = name("net_af_packet");
    in_new_netns(move || {
        ip(&[
            "link", "add", "veth-d", "type", "veth", "peer", "name", "veth-k",
        ]);
        let peer = spawn_peer("veth-k", "192.0.2.2/24", move || {
            let s = UdpSocket::bind("192.0.2.2:4500").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            s.send_to(b"\x00\x00\x00\x09to-dpdk", "192.0.2.1:4500")
                .unwrap();
            let mut buf = [0u8; 64];
            let (n, from) = s.recv_from(&mut buf).unwrap();
            let ping = Command::new("ping")
                .args(["-c", "2", "-i", "0.2", "-W", "2", "192.0.2.1"])
                .output()
                .unwrap();
            (buf[..n].to_vec(), from, ping.status.success())
        });
        let _ = std::fs::write("/proc/sys/net/ipv6/conf/veth-d/disable_ipv6", "1");
        ip(&["link", "set", "veth-d", "up"]);
        // The driver opens its socket in this thread's namespace.
        eal.probe(&format!("{vdev},iface=veth-d")).unwrap();
        let id = eal.port_by_name(&vdev).unwrap();
        let dev = DpdkDevice::start(eal, id, 1, 512, mbufs).unwrap();
        let cfg = L2Config::new(MacAddr::ZERO, [192, 0, 2, 1].into(), 24);
        let mut port = DpdkPort::per_queue(&dev, Some(cfg)).unwrap().remove(0);
        peer.go();
        let mut pool = PacketPool::with_capacity(256);
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        while !peer.is_finished() && Instant::now() < deadline {
            let mut rx = Vec::new();
            port.rx_burst(&mut pool, &mut rx, 32).unwrap();
            for p in rx {
                let mut out = vec![esp(p.meta.remote, b"\x00\x00\x00\x0afrom-dpdk")];
                port.tx_burst(&mut out, &mut pool).unwrap();
                got.push(p);
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let (reply, from, ping_ok) = peer.join();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].data(), b"\x00\x00\x00\x09to-dpdk");
        assert_eq!(reply, b"\x00\x00\x00\x0afrom-dpdk");
        assert_eq!(from, "192.0.2.1:4500".parse().unwrap());
        assert!(ping_ok, "ping answered by the DPDK port");
        let s = port.l2_stats().unwrap();
        assert!(
            s.arp_requests_answered >= 1 && s.icmp_echo_answered >= 2,
            "{s:?}"
        );
    });
}

/// A flood the port does not read in time overflows the device's receive
/// buffer: the device counts what it missed, and the port reports it
/// through `Port::rx_dropped` for the worker to count. net_pcap, because
/// it reports the kernel's drops (libpcap's `ps_drop`) as `imissed`;
/// DPDK 22.11's net_af_packet and net_af_xdp do not, though NICs do.
#[test]
fn frames_the_device_misses_are_counted_as_receive_drops() {
    const SENT: u64 = 40_000;
    let (eal, mbufs) = eal();
    let vdev = name("net_pcap");
    in_new_netns(move || {
        let peer = spawn_flood("veth-m", "veth-n", SENT);
        // phy_mac: the veth's own MAC, so the frames are the port's.
        eal.probe(&format!("{vdev},iface=veth-m,phy_mac=1"))
            .unwrap();
        let id = eal.port_by_name(&vdev).unwrap();
        let dev = DpdkDevice::start(eal, id, 1, 512, mbufs).unwrap();
        let cfg = L2Config::new(MacAddr::ZERO, [192, 0, 2, 1].into(), 24);
        let mut port = DpdkPort::per_queue(&dev, Some(cfg)).unwrap().remove(0);
        peer.go();
        peer.join();
        std::thread::sleep(Duration::from_millis(100));
        let mut pool = PacketPool::with_capacity(1024);
        let mut delivered = 0u64;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let mut rx = Vec::new();
            port.rx_burst(&mut pool, &mut rx, 32).unwrap();
            delivered += rx.len() as u64;
            pool.put_all(&mut rx);
            std::thread::sleep(COUNTER_READS_EVERY / 4);
            if port.stats().rx_frames + port.rx_dropped() >= SENT {
                break;
            }
        }
        let s = port.stats();
        assert!(s.rx_frames < SENT / 2, "most were missed: {s:?}");
        assert!(s.rx_frames + port.rx_dropped() >= SENT, "{s:?}");
        assert!(
            delivered > 0 && delivered <= s.rx_frames,
            "{delivered} {s:?}"
        );
        assert_eq!(port.rx_dropped(), s.rx_device_dropped + s.rx_oversize);
    });
}

#[test]
fn traffic_crosses_a_tunnel_between_two_dpdk_data_planes() {
    let (eal, mbufs) = eal();
    let (a, b) = DpdkDevice::ring_pair(eal, (&name("gw"), &name("cl")), mbufs).unwrap();
    let gw_l2 = L2Config::new(MacAddr([2, 0, 0, 0, 1, 1]), [192, 0, 2, 1].into(), 24);
    let cl_l2 = L2Config::new(MacAddr([2, 0, 0, 0, 2, 2]), [192, 0, 2, 2].into(), 24);
    let gw = DpdkPort::per_queue(&a, Some(gw_l2)).unwrap().remove(0);
    let cl = DpdkPort::per_queue(&b, Some(cl_l2)).unwrap().remove(0);
    l2_planes::traffic_both_ways(gw, cl, 200);
}

#[test]
fn frames_cross_in_the_devices_own_mbufs_without_a_copy() {
    let (eal, _) = eal();
    // A pool of its own (no per-lcore cache), to count what is out.
    let mbufs = Arc::new(MbufPool::create(eal, &name("zc"), 1023, 0, -1).unwrap());
    let (a, b) = DpdkDevice::ring_pair(eal, (&name("za"), &name("zb")), mbufs.clone()).unwrap();
    let mut pa = DpdkPort::new(a, 0, None).unwrap();
    let mut pb = DpdkPort::new(b, 0, None).unwrap();
    {
        // A worker's pool takes its buffers from the port it sends on.
        let mut pool = PacketPool::with_capacity(4);
        pool.set_source(pa.buffer_source().expect("DPDK lends its mbufs"));
        let mut out = Vec::new();
        for i in 0..50u8 {
            let mut p = pool.get();
            assert!(p.external().is_some(), "a buffer in an mbuf");
            let n = 60 + usize::from(i);
            p.rx_space()[..n].fill(i);
            p.set_received_len(n);
            out.push(p);
        }
        assert_eq!(pa.tx_burst(&mut out, &mut pool).unwrap(), 50);
        assert_eq!(pa.stats().tx_copied, 0, "sent from their own mbufs");
        let mut pool_b = PacketPool::with_capacity(4);
        let mut got = poll_until(&mut pb, &mut pool_b, 50);
        assert_eq!(got.len(), 50);
        for (i, p) in got.iter().enumerate() {
            assert!(p.external().is_some(), "received into an mbuf, not copied");
            assert_eq!(p.data(), &vec![i as u8; 60 + i][..]);
        }
        // What came in goes back out as it is: still no copy.
        assert_eq!(pb.tx_burst(&mut got, &mut pool_b).unwrap(), 50);
        assert_eq!(pb.stats().tx_copied, 0);
        let back = poll_until(&mut pa, &mut pool, 50);
        assert_eq!(back.len(), 50);
        assert_eq!(back[49].data(), &[49u8; 109][..]);
        // A buffer of our own heap is copied into an mbuf, and counted.
        let mut heap = vec![Packet::from_slice(&[7; 64]).unwrap()];
        assert_eq!(pa.tx_burst(&mut heap, &mut pool).unwrap(), 1);
        assert_eq!(pa.stats().tx_copied, 1);
        let _ = poll_until(&mut pb, &mut pool_b, 1);
    }
    // Every mbuf lent to a packet came back to the pool.
    assert_eq!(mbufs.in_use(), 0);
}
