//! A gateway for pktgen tests: espritd's daemon, in process, on 127.0.0.1,
//! with a reflecting inside (no TUN, no root).

#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;

use controlplane::daemon::Daemon;
use perf::pktgen::gen_config::GenConfig;

/// `n` consecutive free UDP ports on 127.0.0.1 (probed, then released).
pub fn free_ports(n: usize) -> u16 {
    for _ in 0..200 {
        let base = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
            .unwrap();
        if usize::from(base) + n >= 65535 {
            continue;
        }
        let held: Vec<_> = (0..n as u16)
            .map_while(|i| UdpSocket::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if held.len() == n {
            return base;
        }
    }
    panic!("no {n} consecutive free UDP ports");
}

/// A gateway config written by gen-config, the daemon running it, and
/// the file (pktgen's client list).
pub struct Gateway {
    pub daemon: Daemon,
    pub config: PathBuf,
    pub outside: SocketAddr,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.daemon.shutdown();
        let _ = std::fs::remove_file(&self.config);
    }
}

pub fn gateway(tag: &str, clients: usize, sockets: usize, workers: usize) -> Gateway {
    gateway_with(tag, clients, sockets, workers, false)
}

/// As [`gateway`], the clients' inner addresses IPv6 when `inner_ipv6`.
pub fn gateway_with(
    tag: &str,
    clients: usize,
    sockets: usize,
    workers: usize,
    inner_ipv6: bool,
) -> Gateway {
    // One probe for all ports: two probes could return overlapping ranges
    // (the first one's ports are released before the second).
    let gw = free_ports(2 + sockets);
    let outside: SocketAddr = ([127, 0, 0, 1], gw).into();
    let g = GenConfig {
        clients,
        gateway: outside,
        ike_port: gw + 1,
        workers,
        client_port: gw + 2,
        sockets,
        inner_ipv6,
        ..GenConfig::default()
    };
    let path = std::env::temp_dir().join(format!("pktgen-{tag}-{}.toml", std::process::id()));
    std::fs::write(&path, g.render().unwrap()).unwrap();
    let cfg = config::load(&path).unwrap();
    let daemon = Daemon::start(&cfg).unwrap();
    Gateway {
        daemon,
        config: path,
        outside,
    }
}
