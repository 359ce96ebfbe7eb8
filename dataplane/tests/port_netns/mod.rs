//! Runs a test body in a fresh network namespace of its own.
//!
//! A network namespace belongs to a thread (`unshare(CLONE_NEWNET)` moves
//! only the caller), so the body runs on a new thread that unshares first;
//! commands it spawns (`ip ...`) inherit that thread's namespace. Nothing is
//! named or mounted, so nothing is left behind: the namespace dies with the
//! thread and the fds opened in it, whether the body passes or panics.

#![allow(dead_code)]

use std::io;
use std::process::Command;

/// Runs `body` on a thread in a new network namespace with `lo` up, and
/// returns its result (a panic in `body` fails the calling test).
pub fn in_new_netns<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    let handle = std::thread::spawn(move || {
        // SAFETY: plain syscall; CLONE_NEWNET moves only this thread.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET) (needs root): {}",
            io::Error::last_os_error()
        );
        ip(&["link", "set", "lo", "up"]);
        body()
    });
    match handle.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// The far end of a veth, on a thread in a namespace of its own.
pub struct Peer<T> {
    handle: std::thread::JoinHandle<T>,
    go: std::sync::mpsc::Sender<()>,
}

/// Moves `veth` (made in the caller's namespace) into a new namespace on a
/// new thread, where, once [`Peer::go`] is called, it gets `addr` (like
/// "192.0.2.2/24"), comes up, and `body` runs. The caller sets up its own
/// end in between.
pub fn spawn_peer<T: Send + 'static>(
    veth: &'static str,
    addr: &'static str,
    body: impl FnOnce() -> T + Send + 'static,
) -> Peer<T> {
    use std::sync::mpsc;
    use std::time::Duration;
    let (tid_tx, tid_rx) = mpsc::channel();
    let (go, go_rx) = mpsc::channel::<()>();
    let handle = std::thread::spawn(move || {
        // SAFETY: plain syscalls; CLONE_NEWNET moves only this thread.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
        tid_tx.send(unsafe { libc::gettid() }).unwrap();
        go_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        ip(&["addr", "add", addr, "dev", veth]);
        ip(&["link", "set", veth, "up"]);
        body()
    });
    let tid: i32 = tid_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    ip(&["link", "set", veth, "netns", &tid.to_string()]);
    Peer { handle, go }
}

impl<T> Peer<T> {
    /// Lets the peer configure its end and run its body.
    pub fn go(&self) {
        self.go.send(()).unwrap();
    }

    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// The body's result; a panic in it fails the caller.
    pub fn join(self) -> T {
        match self.handle.join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// A veth pair `ours`-`theirs` whose far end, once [`Peer::go`] is called,
/// floods `count` UDP datagrams from 192.0.2.2:4500 to 192.0.2.1:4500 (the
/// caller's end) as fast as it can, without ARP: for tests of what a port
/// that is not read in time drops, and counts.
#[allow(dead_code)]
pub fn spawn_flood(ours: &'static str, theirs: &'static str, count: u64) -> Peer<()> {
    ip(&["link", "add", ours, "type", "veth", "peer", "name", theirs]);
    let mac = mac_of(ours);
    let peer = spawn_peer(theirs, "192.0.2.2/24", move || {
        ip(&["neigh", "add", "192.0.2.1", "lladdr", &mac, "dev", theirs]);
        let s = std::net::UdpSocket::bind("192.0.2.2:4500").unwrap();
        for i in 0..count {
            s.send_to(&i.to_be_bytes(), "192.0.2.1:4500").unwrap();
        }
    });
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{ours}/disable_ipv6"), "1");
    ip(&["link", "set", ours, "up"]);
    peer
}

/// The MAC address of `ifname` in the caller's namespace (from `ip`:
/// /sys still shows the namespace the process started in).
pub fn mac_of(ifname: &str) -> String {
    let out = Command::new("ip")
        .args(["-o", "link", "show", ifname])
        .output()
        .expect("run ip");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC in {text}"))
        .to_string()
}

/// Runs `ip args...` in the caller's namespace, panicking with its stderr.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Internet checksum (RFC 1071) of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A 20-byte IPv4 header (no options) with a valid checksum.
pub fn ipv4_header(src: [u8; 4], dst: [u8; 4], proto: u8, payload_len: usize) -> Vec<u8> {
    let total = (20 + payload_len) as u16;
    let mut h = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0];
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

/// An IPv4/UDP packet (UDP checksum 0: none, allowed for IPv4).
pub fn ipv4_udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut udp = Vec::new();
    udp.extend_from_slice(&sport.to_be_bytes());
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut p = ipv4_header(src, dst, 17, udp.len());
    p.extend_from_slice(&udp);
    p
}
