//! strongSwan's charon (userspace ESP through kernel-libipsec) in a test
//! namespace, set up as `shared/interop/strongswan-lab.sh` does: a private
//! /run (the pid file is fixed), its own strongswan.conf and vici socket,
//! and an explicit plugin list with kernel-libipsec before kernel-netlink.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::netns::NetNs;

pub const CHARON: &str = "/usr/lib/ipsec/charon";

/// Whether charon and its userspace ESP plugin are installed.
pub fn available() -> bool {
    Path::new(CHARON).exists()
        && Path::new("/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so").exists()
}

/// A running charon, stopped on drop.
pub struct Charon {
    pub dir: PathBuf,
    child: Child,
}

impl Charon {
    /// Writes the configs into `dir` and starts charon inside `ns`.
    pub fn start(ns: &NetNs, dir: &Path, swanctl_conf: &str) -> Charon {
        Charon::start_tuned(
            ns,
            dir,
            swanctl_conf,
            "retransmit_tries = 3\n  retransmit_timeout = 1.0",
        )
    }

    /// As [`Charon::start`], with `charon_settings` (lines of the `charon`
    /// section of strongswan.conf, e.g. retransmission timers).
    pub fn start_tuned(
        ns: &NetNs,
        dir: &Path,
        swanctl_conf: &str,
        charon_settings: &str,
    ) -> Charon {
        let _ = std::fs::remove_dir_all(dir);
        for sub in [
            "run", "x509", "x509ca", "x509ocsp", "x509aa", "x509ac", "x509crl", "pubkey",
            "private", "rsa", "ecdsa", "bliss", "pkcs8", "pkcs12",
        ] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let d = dir.display();
        std::fs::write(
            dir.join("strongswan.conf"),
            format!(
                r#"charon {{
  load = random nonce openssl aes gcm sha2 hmac kdf curve25519 socket-default kernel-libipsec kernel-netlink vici updown
  install_routes = yes
  {charon_settings}
  filelog {{
    test {{
      path = {d}/charon.log
      time_format = %T
      time_add_ms = yes
      append = no
      flush_line = yes
      default = 1
      ike = 2
      chd = 2
    }}
  }}
  plugins {{
    vici {{
      socket = unix://{d}/charon.vici
    }}
  }}
}}
swanctl {{
  socket = unix://{d}/charon.vici
}}
"#
            ),
        )
        .unwrap();
        std::fs::write(dir.join("swanctl.conf"), swanctl_conf).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "env"])
            .arg(format!("STRONGSWAN_CONF={d}/strongswan.conf"))
            .args(["sh", "-c"])
            .arg(format!("mount --bind {d}/run /run && exec {CHARON}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start charon");
        let c = Charon {
            dir: dir.to_path_buf(),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(dir.join("charon.vici").exists() && c.swanctl(&["--stats"]).status.success()) {
            assert!(
                Instant::now() < deadline,
                "charon did not come up: {}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let load = c.swanctl(&["--load-all", "--file", &format!("{d}/swanctl.conf")]);
        assert!(
            load.status.success(),
            "swanctl --load-all: {}",
            String::from_utf8_lossy(&load.stdout)
        );
        c
    }

    /// Runs swanctl against this charon (the vici socket is a file, so no
    /// need to enter the namespace).
    pub fn swanctl(&self, args: &[&str]) -> Output {
        Command::new("swanctl")
            .env("STRONGSWAN_CONF", self.dir.join("strongswan.conf"))
            .args(args)
            .output()
            .expect("run swanctl")
    }

    pub fn list_sas(&self) -> String {
        String::from_utf8_lossy(&self.swanctl(&["--list-sas"]).stdout).into_owned()
    }

    /// charon's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("charon.log")).unwrap_or_default()
    }
}

impl Drop for Charon {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child (the ip netns exec / sh / charon chain
        // execs into charon, so this is charon's pid).
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
