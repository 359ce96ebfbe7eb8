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

/// IKE retransmission for the labs: 3 tries, 1 s apart at first.
pub const DEFAULT_TIMERS: &str = "retransmit_tries = 3\n  retransmit_timeout = 1.0";

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
        Charon::start_tuned(ns, dir, swanctl_conf, DEFAULT_TIMERS)
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

/// What differs between site-to-site labs: lines for the connection
/// section (e.g. DPD), for each end's child section, and for charon's own
/// section of strongswan.conf (timers).
pub struct SiteTuning<'a> {
    pub connection: &'a str,
    pub client_child: &'a str,
    pub server_child: &'a str,
    pub charon: &'a str,
}

/// Two charons joined site to site, as the espritd labs join two espritd:
/// the client (client.lab.test, 10.8.0.0/24, 10.8.0.1 on its loopback)
/// starts the tunnel to the server (server.lab.test, 10.1.0.0/24,
/// 10.1.0.1), AES-128-GCM and X25519, PSK `psk`. Returns (client, server).
pub fn site_to_site(
    dir: &Path,
    client: (&NetNs, &str),
    server: (&NetNs, &str),
    psk: &str,
    tuning: &SiteTuning<'_>,
) -> (Charon, Charon) {
    client
        .0
        .exec(&["ip", "addr", "add", "10.8.0.1/32", "dev", "lo"]);
    server
        .0
        .exec(&["ip", "addr", "add", "10.1.0.1/32", "dev", "lo"]);
    let conf = |local: &str, remote: &str, ts: (&str, &str), ids: (&str, &str), child: &str| {
        format!(
            r#"connections {{
  lab {{
    version = 2
    local_addrs = {local}
    remote_addrs = {remote}
    proposals = aes128gcm16-prfsha256-x25519
    {}
    local {{
      auth = psk
      id = {}
    }}
    remote {{
      auth = psk
      id = {}
    }}
    children {{
      net {{
        local_ts = {}
        remote_ts = {}
        esp_proposals = aes128gcm16
        {child}
      }}
    }}
  }}
}}
secrets {{
  ike-lab {{
    id-1 = client.lab.test
    id-2 = server.lab.test
    secret = "{psk}"
  }}
}}
"#,
            tuning.connection, ids.0, ids.1, ts.0, ts.1
        )
    };
    let s = Charon::start_tuned(
        server.0,
        &dir.join("charon-server"),
        &conf(
            server.1,
            "%any",
            ("10.1.0.0/24", "10.8.0.0/24"),
            ("server.lab.test", "client.lab.test"),
            &format!("start_action = none\n        {}", tuning.server_child),
        ),
        tuning.charon,
    );
    let c = Charon::start_tuned(
        client.0,
        &dir.join("charon-client"),
        &conf(
            client.1,
            server.1,
            ("10.8.0.0/24", "10.1.0.0/24"),
            ("client.lab.test", "server.lab.test"),
            &format!("start_action = start\n        {}", tuning.client_child),
        ),
        tuning.charon,
    );
    (c, s)
}

/// Both charons' logs, for assertion messages.
pub fn both_logs(client: &Charon, server: &Charon) -> String {
    format!(
        "--- client charon:\n{}\n--- server charon:\n{}",
        client.log(),
        server.log()
    )
}

/// A road warrior (client.lab.test at 192.0.2.2) asking gw.lab.test at
/// 192.0.2.1 for an inner address and 10.1.0.0/24.
pub fn roadwarrior_swanctl(proposal: &str, esp: &str, psk: &str) -> String {
    format!(
        r#"connections {{
  gw {{
    version = 2
    local_addrs = 192.0.2.2
    remote_addrs = 192.0.2.1
    proposals = {proposal}
    vips = 0.0.0.0
    local {{
      auth = psk
      id = client.lab.test
    }}
    remote {{
      auth = psk
      id = gw.lab.test
    }}
    children {{
      net {{
        remote_ts = 10.1.0.0/24
        esp_proposals = {esp}
      }}
    }}
  }}
}}
secrets {{
  ike-gw {{
    id-1 = client.lab.test
    id-2 = gw.lab.test
    secret = "{psk}"
  }}
}}
"#
    )
}
