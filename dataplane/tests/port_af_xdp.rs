//! The AF_XDP port end to end on a veth pair (generic XDP, copy mode): the
//! port owns 192.0.2.1 on veth-x in one namespace, the kernel owns
//! 192.0.2.2 on veth-y in another. ARP, ESP-in-UDP both ways, ping.
#![cfg(feature = "af_xdp")]

mod l2_planes;
mod port_netns;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use dataplane::packet::Encap;
use dataplane::port::af_xdp::{AfXdpConfig, AfXdpPort};
use dataplane::port::counter_reads::COUNTER_READS_EVERY;
use dataplane::port::l2::{L2Config, MacAddr, SharedNeighbours};
use dataplane::port::Port;
use dataplane::{Packet, PacketPool};
use port_netns::{in_new_netns, ip, spawn_flood, spawn_peer};

fn esp(to: SocketAddr, data: &[u8]) -> Packet {
    let mut p = Packet::from_slice(data).unwrap();
    p.meta.remote = to;
    p.meta.encap = Encap::EspInUdp;
    p
}

#[test]
fn arp_esp_both_ways_and_ping_over_xdp() {
    in_new_netns(|| {
        ip(&[
            "link", "add", "veth-x", "type", "veth", "peer", "name", "veth-y",
        ]);
        let peer = spawn_peer("veth-y", "192.0.2.2/24", move || {
            let s = UdpSocket::bind("192.0.2.2:4500").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            s.send_to(b"\x00\x00\x00\x11to-xdp", "192.0.2.1:4500")
                .unwrap();
            let mut buf = [0u8; 64];
            let (n, from) = s.recv_from(&mut buf).unwrap();
            let ping = Command::new("ping")
                .args(["-c", "2", "-i", "0.2", "-W", "2", "192.0.2.1"])
                .output()
                .unwrap();
            (buf[..n].to_vec(), from, ping.status.success())
        });
        let _ = std::fs::write("/proc/sys/net/ipv6/conf/veth-x/disable_ipv6", "1");
        ip(&["link", "set", "veth-x", "up"]);
        let cfg = AfXdpConfig::new(
            "veth-x",
            L2Config::new(MacAddr::ZERO, [192, 0, 2, 1].into(), 24),
        );
        let mut port = AfXdpPort::open_group(&cfg, 1, SharedNeighbours::new())
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
                let mut out = vec![esp(p.meta.remote, b"\x00\x00\x00\x12from-xdp")];
                assert_eq!(port.tx_burst(&mut out, &mut pool).unwrap(), 1);
                got.push(p);
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let (reply, from, ping_ok) = peer.join();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].data(), b"\x00\x00\x00\x11to-xdp");
        assert_eq!(got[0].meta.remote, "192.0.2.2:4500".parse().unwrap());
        assert_eq!(reply, b"\x00\x00\x00\x12from-xdp");
        assert_eq!(from, "192.0.2.1:4500".parse().unwrap());
        assert!(ping_ok, "ping answered by the AF_XDP port");
        let s = port.l2_stats();
        assert!(
            s.arp_requests_answered >= 1 && s.icmp_echo_answered >= 2,
            "{s:?}"
        );
    });
}

#[test]
fn two_data_planes_carry_a_tunnel_over_xdp_sockets() {
    in_new_netns(|| {
        ip(&[
            "link", "add", "veth-g", "type", "veth", "peer", "name", "veth-c",
        ]);
        for i in ["veth-g", "veth-c"] {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{i}/disable_ipv6"), "1");
            ip(&["link", "set", i, "up"]);
        }
        let open = |ifname: &str, ip: [u8; 4]| {
            let cfg = AfXdpConfig::new(ifname, L2Config::new(MacAddr::ZERO, ip.into(), 24));
            AfXdpPort::open_group(&cfg, 1, SharedNeighbours::new())
                .unwrap()
                .remove(0)
        };
        let gw = open("veth-g", [192, 0, 2, 1]);
        let cl = open("veth-c", [192, 0, 2, 2]);
        l2_planes::traffic_both_ways(gw, cl, 200);
    });
}

/// A flood the port does not read in time overflows its fill ring: the
/// kernel drops the rest before the rx ring, and the port reports those
/// drops through `Port::rx_dropped` for the worker to count.
#[test]
fn frames_the_kernel_drops_before_the_ring_are_counted() {
    const SENT: u64 = 500;
    in_new_netns(|| {
        let peer = spawn_flood("veth-x", "veth-y", SENT);
        let mut cfg = AfXdpConfig::new(
            "veth-x",
            L2Config::new(MacAddr::ZERO, [192, 0, 2, 1].into(), 24),
        );
        cfg.frames = 64; // 32 on the fill ring
        let mut port = AfXdpPort::open_group(&cfg, 1, SharedNeighbours::new())
            .unwrap()
            .remove(0);
        peer.go();
        peer.join();
        std::thread::sleep(Duration::from_millis(100));
        let mut pool = PacketPool::with_capacity(256);
        let mut rx = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            port.rx_burst(&mut pool, &mut rx, 64).unwrap();
            std::thread::sleep(COUNTER_READS_EVERY / 4);
            if port.stats().rx_frames + port.rx_dropped() >= SENT {
                break;
            }
        }
        let s = port.stats();
        assert!(s.rx_frames <= 32 + 1, "{s:?}");
        assert!(s.rx_frames + port.rx_dropped() >= SENT, "{s:?}");
        assert_eq!(port.rx_dropped(), s.rx_kernel_dropped + s.rx_oversize);
    });
}
