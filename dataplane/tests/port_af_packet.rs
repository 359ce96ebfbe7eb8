//! The AF_PACKET port end to end on a veth pair: the port owns 192.0.2.1
//! on veth-a in one namespace (the interface itself has no address), the
//! kernel owns 192.0.2.2 on veth-b in another. ARP, ESP-in-UDP both ways,
//! IKE on 500, ping to the port, and SPI steering across a fanout group.

mod l2_planes;
mod port_netns;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dataplane::packet::Encap;
use dataplane::port::af_packet::{AfPacketConfig, AfPacketPort};
use dataplane::port::l2::{L2Config, MacAddr, SharedNeighbours};
use dataplane::port::steering::steer_worker;
use dataplane::port::Port;
use dataplane::{Packet, PacketPool};
use port_netns::{in_new_netns, ip, spawn_peer, Peer};

const PORT_IP: [u8; 4] = [192, 0, 2, 1];
const PEER: &str = "192.0.2.2";

/// Creates veth-a (here) and veth-b in a new namespace owned by a thread
/// that runs `peer` there once veth-b is up with 192.0.2.2/24. The peer
/// starts at `go()` (after the port is open).
fn with_peer<T: Send + 'static>(peer: impl FnOnce() -> T + Send + 'static) -> Peer<T> {
    ip(&[
        "link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b",
    ]);
    let p = spawn_peer("veth-b", "192.0.2.2/24", move || {
        ip(&["link", "set", "lo", "up"]);
        peer()
    });
    // No IPv6 chatter (router solicitations, MLD) on the port's link.
    let _ = std::fs::write("/proc/sys/net/ipv6/conf/veth-a/disable_ipv6", "1");
    ip(&["link", "set", "veth-a", "up"]);
    p
}

/// Waits (at most 3 s) until the kernel reports `ifname` running.
fn wait_oper_up(ifname: &str) {
    // Not /sys/class/net: sysfs shows the namespace it was mounted in.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let out = Command::new("ip")
            .args(["-o", "link", "show", ifname])
            .output();
        if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("state UP")) {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("{ifname} did not come up");
}

fn l2() -> L2Config {
    L2Config::new(MacAddr::ZERO, PORT_IP.into(), 24)
}

fn esp(to: SocketAddr, data: &[u8]) -> Packet {
    let mut p = Packet::from_slice(data).unwrap();
    p.meta.remote = to;
    p.meta.encap = Encap::EspInUdp;
    p
}

/// What the kernel side saw.
#[derive(Debug)]
struct PeerReport {
    reply: Vec<u8>,
    ping_ok: bool,
}

#[test]
fn arp_esp_both_ways_ike_and_ping_against_the_kernel() {
    in_new_netns(|| {
        let peer = with_peer(|| {
            let s = UdpSocket::bind((PEER, 4500)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            // The first datagram makes the kernel ARP for 192.0.2.1.
            s.send_to(b"\x00\x00\x10\x01esp-from-peer", "192.0.2.1:4500")
                .unwrap();
            let mut buf = [0u8; 256];
            let (n, from) = s.recv_from(&mut buf).unwrap();
            assert_eq!(from, "192.0.2.1:4500".parse().unwrap());
            let reply = buf[..n].to_vec();
            let ike = UdpSocket::bind((PEER, 500)).unwrap();
            ike.send_to(b"IKE_SA_INIT request", "192.0.2.1:500")
                .unwrap();
            let ping = Command::new("ping")
                .args(["-c", "3", "-i", "0.2", "-W", "2", "192.0.2.1"])
                .output()
                .unwrap();
            PeerReport {
                reply,
                ping_ok: ping.status.success(),
            }
        });
        let cfg = AfPacketConfig::new("veth-a", l2());
        let mut ports = AfPacketPort::open_group(&cfg, 1, SharedNeighbours::new()).unwrap();
        peer.go();
        let port = &mut ports[0];
        let mut pool = PacketPool::with_capacity(256);
        let mut got: Vec<Packet> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        while !peer.is_finished() && Instant::now() < deadline {
            let mut rx = Vec::new();
            port.rx_burst(&mut pool, &mut rx, 32).unwrap();
            for p in rx {
                if p.data().starts_with(b"\x00\x00\x10\x01") {
                    let mut out = vec![esp(p.meta.remote, b"\x00\x00\x20\x02esp-from-port")];
                    assert_eq!(port.tx_burst(&mut out, &mut pool).unwrap(), 1);
                }
                got.push(p);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let report = peer.join();
        assert_eq!(report.reply, b"\x00\x00\x20\x02esp-from-port");
        assert!(report.ping_ok, "ping to the port's address answered");

        assert_eq!(got.len(), 2, "the ESP datagram and the IKE one: {got:?}");
        assert_eq!(got[0].data(), b"\x00\x00\x10\x01esp-from-peer");
        assert_eq!(got[0].meta.remote, "192.0.2.2:4500".parse().unwrap());
        assert_eq!(got[0].meta.local_port, 4500);
        assert_eq!(got[1].data(), b"\x00\x00\x00\x00IKE_SA_INIT request");
        assert_eq!(got[1].meta.local_port, 500);
        let s = port.l2_stats();
        assert!(s.arp_requests_answered >= 1, "{s:?}");
        assert!(s.icmp_echo_answered >= 3, "{s:?}");
        assert_eq!(s.tx_unresolved, 0);
    });
}

#[test]
fn port_resolves_the_peer_itself_and_fanout_steers_by_spi() {
    in_new_netns(|| {
        let (spis_tx, spis_rx) = mpsc::channel::<Vec<u8>>();
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let peer = with_peer(move || {
            let s = UdpSocket::bind((PEER, 4500)).unwrap();
            ready_tx.send(()).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            // Wait for the port to speak first: it must ARP for us.
            let mut buf = [0u8; 64];
            let (n, _) = s.recv_from(&mut buf).unwrap();
            spis_tx.send(buf[..n].to_vec()).unwrap();
            for spi in 1u32..=16 {
                let mut d = spi.to_be_bytes().to_vec();
                d.extend_from_slice(b"payload");
                s.send_to(&d, "192.0.2.1:4500").unwrap();
            }
        });
        let cfg = AfPacketConfig::new("veth-a", l2());
        let mut ports = AfPacketPort::open_group(&cfg, 2, SharedNeighbours::new()).unwrap();
        peer.go();
        let mut pool = PacketPool::with_capacity(256);
        let peer_addr: SocketAddr = "192.0.2.2:4500".parse().unwrap();
        // The peer's address is up and our link is running (the kernel
        // activates its queue asynchronously): one ARP request must do.
        ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        wait_oper_up("veth-a");
        // Worker 1 sends first: its packet waits for ARP, whose reply may
        // reach worker 0's socket; the shared table lets worker 1 go on.
        let mut out = vec![esp(peer_addr, b"\x00\x00\x00\x05hello")];
        assert_eq!(ports[1].tx_burst(&mut out, &mut pool).unwrap(), 1);
        let mut per_worker: Vec<Vec<u32>> = vec![Vec::new(), Vec::new()];
        let deadline = Instant::now() + Duration::from_secs(10);
        while per_worker.iter().map(Vec::len).sum::<usize>() < 16 && Instant::now() < deadline {
            for (w, port) in ports.iter_mut().enumerate() {
                let mut rx = Vec::new();
                port.rx_burst(&mut pool, &mut rx, 32).unwrap();
                for p in rx {
                    let d = p.data();
                    per_worker[w].push(u32::from_be_bytes([d[0], d[1], d[2], d[3]]));
                }
                // Releases held packets when the neighbour is known.
                port.tx_burst(&mut Vec::new(), &mut pool).unwrap();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        peer.join();
        assert_eq!(spis_rx.recv().unwrap(), b"\x00\x00\x00\x05hello");
        assert_eq!(ports[1].l2_stats().tx_held, 1);
        assert_eq!(ports[1].l2_stats().arp_requests_sent, 1);
        for (w, spis) in per_worker.iter().enumerate() {
            assert_eq!(spis.len(), 8, "worker {w}: {spis:?}");
            assert!(
                spis.iter().all(|&s| steer_worker(s, 2) == w),
                "worker {w}: {spis:?}"
            );
        }
    });
}

#[test]
fn two_data_planes_carry_a_tunnel_over_a_veth_pair() {
    in_new_netns(|| {
        ip(&[
            "link", "add", "veth-g", "type", "veth", "peer", "name", "veth-c",
        ]);
        for i in ["veth-g", "veth-c"] {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{i}/disable_ipv6"), "1");
            ip(&["link", "set", i, "up"]);
        }
        wait_oper_up("veth-g");
        let open = |ifname: &str, ip: [u8; 4]| {
            let cfg = AfPacketConfig::new(ifname, L2Config::new(MacAddr::ZERO, ip.into(), 24));
            AfPacketPort::open_group(&cfg, 1, SharedNeighbours::new())
                .unwrap()
                .remove(0)
        };
        let gw = open("veth-g", [192, 0, 2, 1]);
        let cl = open("veth-c", [192, 0, 2, 2]);
        l2_planes::traffic_both_ways(gw, cl, 200);
    });
}

#[test]
fn ipv6_neighbour_discovery_esp_and_ping6_against_the_kernel() {
    in_new_netns(|| {
        let peer = with_peer(|| {
            // nodad: usable at once, no duplicate address detection wait.
            ip(&["addr", "add", "2001:db8::2/64", "dev", "veth-b", "nodad"]);
            let s = UdpSocket::bind("[2001:db8::2]:4500").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            s.send_to(b"\x00\x00\x60\x06esp-over-v6", "[2001:db8::1]:4500")
                .unwrap();
            let mut buf = [0u8; 64];
            let (n, from) = s.recv_from(&mut buf).unwrap();
            let ping = Command::new("ping")
                .args(["-6", "-c", "2", "-i", "0.2", "-W", "2", "2001:db8::1"])
                .output()
                .unwrap();
            (buf[..n].to_vec(), from, ping.status.success())
        });
        let mut cfg = l2();
        cfg.ipv6 = Some("2001:db8::1".parse().unwrap());
        let cfg = AfPacketConfig::new("veth-a", cfg);
        let mut port = AfPacketPort::open_group(&cfg, 1, SharedNeighbours::new())
            .unwrap()
            .remove(0);
        peer.go();
        let mut pool = PacketPool::with_capacity(256);
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        while !peer.is_finished() && Instant::now() < deadline {
            let mut rx = Vec::new();
            port.rx_burst(&mut pool, &mut rx, 32).unwrap();
            for p in rx {
                let mut out = vec![esp(p.meta.remote, b"\x00\x00\x60\x07v6-reply")];
                assert_eq!(port.tx_burst(&mut out, &mut pool).unwrap(), 1);
                got.push(p);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let (reply, from, ping_ok) = peer.join();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].data(), b"\x00\x00\x60\x06esp-over-v6");
        assert_eq!(got[0].meta.remote, "[2001:db8::2]:4500".parse().unwrap());
        assert_eq!(
            reply, b"\x00\x00\x60\x07v6-reply",
            "the kernel accepted our UDP checksum"
        );
        assert_eq!(from, "[2001:db8::1]:4500".parse().unwrap());
        assert!(ping_ok, "ping -6 answered by the port");
        let s = port.l2_stats();
        assert!(
            s.nd_solicitations_answered >= 1 && s.icmp_echo_answered >= 2,
            "{s:?}"
        );
    });
}

#[test]
fn fanout_steers_ipv6_esp_by_spi_too() {
    in_new_netns(|| {
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let peer = with_peer(move || {
            ip(&["addr", "add", "2001:db8::2/64", "dev", "veth-b", "nodad"]);
            let s = UdpSocket::bind("[2001:db8::2]:4500").unwrap();
            ready_tx.send(()).unwrap();
            for spi in 1u32..=16 {
                let mut d = spi.to_be_bytes().to_vec();
                d.extend_from_slice(b"v6");
                s.send_to(&d, "[2001:db8::1]:4500").unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let mut cfg = l2();
        cfg.ipv6 = Some("2001:db8::1".parse().unwrap());
        let cfg = AfPacketConfig::new("veth-a", cfg);
        let mut ports = AfPacketPort::open_group(&cfg, 2, SharedNeighbours::new()).unwrap();
        peer.go();
        ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let mut pool = PacketPool::with_capacity(256);
        let mut per_worker: Vec<Vec<u32>> = vec![Vec::new(), Vec::new()];
        let deadline = Instant::now() + Duration::from_secs(10);
        while per_worker.iter().map(Vec::len).sum::<usize>() < 16 && Instant::now() < deadline {
            for (w, port) in ports.iter_mut().enumerate() {
                let mut rx = Vec::new();
                port.rx_burst(&mut pool, &mut rx, 32).unwrap();
                for p in rx {
                    let d = p.data();
                    per_worker[w].push(u32::from_be_bytes([d[0], d[1], d[2], d[3]]));
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        peer.join();
        for (w, spis) in per_worker.iter().enumerate() {
            assert_eq!(spis.len(), 8, "worker {w}: {spis:?}");
            assert!(
                spis.iter().all(|&s| steer_worker(s, 2) == w),
                "worker {w}: {spis:?}"
            );
        }
        // The kernel's solicitation for us reached worker 0 and was answered.
        assert!(ports[0].l2_stats().nd_solicitations_answered >= 1);
    });
}
