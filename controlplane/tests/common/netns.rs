//! Network namespaces for end-to-end tests: created by the test, removed
//! when the guard drops (also on panic). Root only.

#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::time::Duration;

/// Whether this process may create namespaces; when not, a test prints why
/// it skips, unless CI demands privileged tests.
pub fn privileged_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        if std::env::var_os("ESPRIT_REQUIRE_PRIVILEGED_TESTS").is_some() {
            panic!("{test}: needs root (network namespaces), and CI requires it");
        }
        eprintln!("{test}: skipped, needs root for network namespaces");
    }
    root
}

/// Runs a command, panicking with its output if it fails.
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A network namespace named `name`, deleted on drop.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    /// Creates it (removing a leftover of the same name first) with `lo` up.
    pub fn new(name: &str) -> NetNs {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        sh(&["ip", "netns", "add", name]);
        let ns = NetNs {
            name: name.to_string(),
        };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside, panicking if it fails.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Runs a command inside and returns its output whatever the status.
    pub fn try_exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// A command to spawn inside (for daemons).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `f` on a new thread that has entered this namespace, so the
    /// sockets it opens live there.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: setns on a valid namespace fd moves only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A veth pair between two namespaces with an address on each end.
pub fn veth(a: &NetNs, a_if: &str, a_addr: &str, b: &NetNs, b_if: &str, b_addr: &str) {
    sh(&[
        "ip", "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ]);
    a.exec(&["ip", "addr", "add", a_addr, "dev", a_if]);
    b.exec(&["ip", "addr", "add", b_addr, "dev", b_if]);
    a.exec(&["ip", "link", "set", a_if, "up"]);
    b.exec(&["ip", "link", "set", b_if, "up"]);
}

/// Sends `len` patterned bytes from `client` to `server_addr` (served in
/// `server`), and checks they arrive intact.
pub fn tcp_transfer(server: &NetNs, client: &NetNs, server_addr: &str, len: usize) {
    let data: Vec<u8> = (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let expected = data.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let bind = server_addr.to_string();
    let srv = server.run(move || {
        let l = TcpListener::bind(&bind).expect("bind");
        ready_tx.send(()).unwrap();
        let (mut s, _) = l.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).expect("read");
        got
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("server ready");
    let to: SocketAddr = server_addr.parse().unwrap();
    let cl = client.run(move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5))
            .expect("connect through the tunnel");
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(&data).expect("send");
    });
    cl.join().expect("client");
    let got = srv.join().expect("server");
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "TCP content differs");
}
