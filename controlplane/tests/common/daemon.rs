//! espritd run by a test inside a namespace.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::netns::NetNs;

/// A daemon stopped (SIGTERM, then SIGKILL) when dropped; its log is kept.
pub struct Espritd {
    child: Child,
    pub log: std::path::PathBuf,
}

impl Espritd {
    /// Starts espritd with `config` in `ns` and waits for its TUN device.
    /// The control socket goes next to the config, so parallel tests never
    /// share `/run/esprit/ctl.sock`.
    pub fn start(ns: &NetNs, config: &Path, tun: &str) -> Espritd {
        give_own_control_socket(config);
        let log = config.with_extension("log");
        let file = std::fs::File::create(&log).unwrap();
        let child = ns
            .command(env!("CARGO_BIN_EXE_espritd"))
            .arg("--config")
            .arg(config)
            .arg("--stats-interval")
            .arg("1")
            // The gateway logs rekeys at debug; tests read them.
            .env("RUST_LOG", "info,controlplane::gateway=debug")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn espritd");
        let d = Espritd { child, log };
        // The TUN device comes up before the control socket is bound: wait
        // for both, so a test's first espritctl finds the socket.
        let sock = Espritd::socket(config);
        let names_sock =
            std::fs::read_to_string(config).is_ok_and(|t| t.contains(&*sock.to_string_lossy()));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = ns.try_exec(&["ip", "-o", "link", "show", tun]);
            let up = out.status.success() && String::from_utf8_lossy(&out.stdout).contains(",UP");
            if up && (!names_sock || sock.exists()) {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "espritd in {} did not bring {tun} up (and its control socket):\n{}",
                ns.name,
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills espritd without letting it say goodbye (a crash or a power
    /// cut: no IKE DELETE reaches the peer).
    pub fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Adds a `[control]` section with a socket beside `config` if it has none.
pub fn give_own_control_socket(config: &Path) {
    let text = std::fs::read_to_string(config).unwrap();
    if !text.contains("[control]") {
        let sock = config.with_extension("sock");
        std::fs::write(
            config,
            format!("{text}\n[control]\npath = \"{}\"\n", sock.display()),
        )
        .unwrap();
    }
}

impl Espritd {
    /// The control socket `give_own_control_socket` chose.
    pub fn socket(config: &Path) -> std::path::PathBuf {
        config.with_extension("sock")
    }

    /// `espritctl --json stats`, asked of the espritd started with
    /// `config` (null if it did not answer in JSON).
    pub fn stats(config: &Path) -> serde_json::Value {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_espritctl"))
            .arg("--socket")
            .arg(Self::socket(config))
            .args(["--json", "stats"])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    /// `key` summed over the workers of `espritctl --json stats`, asked of
    /// the espritd started with `config`.
    pub fn worker_total(config: &Path, key: &str) -> u64 {
        let v = Self::stats(config);
        let workers = v["data"]["workers"].as_array().cloned().unwrap_or_default();
        assert!(!workers.is_empty(), "no stats: {v}");
        workers.iter().map(|w| w[key].as_u64().unwrap_or(0)).sum()
    }
}

impl Drop for Espritd {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
