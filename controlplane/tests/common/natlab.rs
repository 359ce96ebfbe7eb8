//! Two espritd joined through a Linux NAT (nftables masquerade), as in
//! `shared/interop/strongswan-lab.sh nat`:
//!
//! ```text
//! client 198.51.100.2 --- 198.51.100.1 [nat: masquerade] 203.0.113.1 --- 203.0.113.2 server
//! ```
//! The client (an IKE initiator) protects 10.8.0.0/24 (its TUN holds
//! 10.8.0.1), the server (responder) 10.1.0.0/24 (10.1.0.1). The server has
//! no route back to 198.51.100.0/24: everything must cross the NAT.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::daemon::Espritd;
use super::netns::{sh, NetNs};

pub const PSK: &str = "nat-lab-psk-0123456789abcdef";

/// Short timers so recovery fits a test: ping every second when idle,
/// 500 ms for a pong, two re-pings, one rekey attempt, IKE requests given
/// up after 3 resends (waits of 0.5, 0.9, 1, 1 s).
pub const FAST_IKE: &str =
    "[ike.retransmit]\ntimeout = \"500ms\"\ntries = 3\nmax_timeout = \"1s\"\n";
pub const FAST_PEER: &str = "ping_timeout = \"500ms\"\nping_retries = 2\nidle_ping_after = \"1s\"\nrekey_attempts = 1\ngrace_period = \"1s\"\n";

/// Both daemons' logs, for assertion messages.
pub fn both_logs(client: &Espritd, server: &Espritd) -> String {
    format!(
        "--- client:\n{}\n--- server:\n{}",
        client.log_text(),
        server.log_text()
    )
}

/// Waits until a ping crosses; returns how long that took.
pub fn until_pings(lab: &NatLab, limit: Duration, logs: &dyn Fn() -> String) -> Duration {
    try_until_pings(lab, limit)
        .unwrap_or_else(|| panic!("no recovery within {limit:?}\n{}", logs()))
}

/// How long until a ping crosses, or `None` if none does within `limit`.
pub fn try_until_pings(lab: &NatLab, limit: Duration) -> Option<Duration> {
    // A ping every 200 ms at most: recovery is measured to that resolution.
    let start = Instant::now();
    while !lab.ping_once("0.2") {
        if start.elapsed() >= limit {
            return None;
        }
    }
    Some(start.elapsed())
}

pub struct NatLab {
    pub client: NetNs,
    pub nat: NetNs,
    pub server: NetNs,
    pub dir: PathBuf,
}

impl NatLab {
    pub fn new(tag: &str) -> NatLab {
        let id = format!("{}{tag}", std::process::id());
        let client = NetNs::new(&format!("esprit-nc-{id}"));
        let nat = NetNs::new(&format!("esprit-nn-{id}"));
        let server = NetNs::new(&format!("esprit-ns-{id}"));
        sh(&[
            "ip",
            "link",
            "add",
            "lv0",
            "netns",
            &client.name,
            "type",
            "veth",
            "peer",
            "name",
            "nl0",
            "netns",
            &nat.name,
        ]);
        sh(&[
            "ip",
            "link",
            "add",
            "rv0",
            "netns",
            &server.name,
            "type",
            "veth",
            "peer",
            "name",
            "nr0",
            "netns",
            &nat.name,
        ]);
        client.exec(&["ip", "addr", "add", "198.51.100.2/24", "dev", "lv0"]);
        client.exec(&["ip", "link", "set", "lv0", "up"]);
        client.exec(&["ip", "route", "add", "default", "via", "198.51.100.1"]);
        nat.exec(&["ip", "addr", "add", "198.51.100.1/24", "dev", "nl0"]);
        nat.exec(&["ip", "addr", "add", "203.0.113.1/24", "dev", "nr0"]);
        nat.exec(&["ip", "link", "set", "nl0", "up"]);
        nat.exec(&["ip", "link", "set", "nr0", "up"]);
        nat.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        server.exec(&["ip", "addr", "add", "203.0.113.2/24", "dev", "rv0"]);
        server.exec(&["ip", "link", "set", "rv0", "up"]);
        let lab = NatLab {
            client,
            nat,
            server,
            dir: std::env::temp_dir().join(format!("esprit-natlab-{id}")),
        };
        std::fs::create_dir_all(&lab.dir).unwrap();
        lab.masquerade("");
        lab
    }

    /// (Re)writes the NAT: masquerade, with `ports` like ":40000-40999"
    /// to pin the external port range.
    pub fn masquerade(&self, ports: &str) {
        let _ = self
            .nat
            .try_exec(&["nft", "delete", "table", "ip", "esprit_nat"]);
        self.nat.exec(&["nft", "add", "table", "ip", "esprit_nat"]);
        self.nat.exec(&[
            "nft",
            "add",
            "chain",
            "ip",
            "esprit_nat",
            "post",
            "{ type nat hook postrouting priority srcnat; policy accept; }",
        ]);
        let mut rule = vec![
            "nft",
            "add",
            "rule",
            "ip",
            "esprit_nat",
            "post",
            "oifname",
            "nr0",
            "ip",
            "saddr",
            "198.51.100.0/24",
        ];
        if ports.is_empty() {
            rule.push("masquerade");
        } else {
            // nftables needs the protocol to map ports.
            rule.extend_from_slice(&["meta", "l4proto", "udp", "masquerade", "to", ports]);
        }
        self.nat.exec(&rule);
    }

    /// Forgets every NAT mapping (a NAT reboot, as far as flows go).
    pub fn flush_conntrack(&self) {
        let _ = self.nat.try_exec(&["conntrack", "-F"]);
    }

    /// Drops everything crossing the NAT until `restore_path`.
    pub fn black_hole(&self) {
        self.nat.exec(&["nft", "add", "table", "ip", "esprit_bh"]);
        self.nat.exec(&[
            "nft",
            "add",
            "chain",
            "ip",
            "esprit_bh",
            "drop_all",
            "{ type filter hook forward priority 0; policy drop; }",
        ]);
    }

    pub fn restore_path(&self) {
        let _ = self
            .nat
            .try_exec(&["nft", "delete", "table", "ip", "esprit_bh"]);
    }

    pub fn server_config(&self, extra_peer: &str) -> String {
        format!(
            r#"
[gateway]
outside = ["203.0.113.2:4500"]

[dataplane.inside]
name = "esprit0"
addresses = ["10.1.0.1/24"]

[ike]
local_id = "server.lab.test"
proposals = ["aes128gcm16-prfsha256-x25519"]
esp_proposals = ["aes128gcm16"]

[[peer]]
name = "client"
role = "responder"
remote_id = "client.lab.test"
psk = "{PSK}"
local_ts = ["10.1.0.0/24"]
remote_ts = ["10.8.0.0/24"]
{extra_peer}
"#
        )
    }

    pub fn client_config(&self, extra_ike: &str, extra_peer: &str) -> String {
        format!(
            r#"
[gateway]
outside = ["198.51.100.2:4500"]

[dataplane.inside]
name = "esprit0"
addresses = ["10.8.0.1/24"]

[ike]
local_id = "client.lab.test"
proposals = ["aes128gcm16-prfsha256-x25519"]
esp_proposals = ["aes128gcm16"]
{extra_ike}

[[peer]]
name = "server"
role = "initiator"
remote = "203.0.113.2"
remote_id = "server.lab.test"
psk = "{PSK}"
local_ts = ["10.8.0.0/24"]
remote_ts = ["10.1.0.0/24"]
{extra_peer}
"#
        )
    }

    pub fn start_server(&self, config: &str) -> Espritd {
        let p = self.dir.join("server.toml");
        std::fs::write(&p, config).unwrap();
        Espritd::start(&self.server, &p, "esprit0")
    }

    pub fn start_client(&self, config: &str) -> Espritd {
        let p = self.dir.join("client.toml");
        std::fs::write(&p, config).unwrap();
        Espritd::start(&self.client, &p, "esprit0")
    }

    /// Whether one ping from the client's inside reaches the server's.
    pub fn ping_once(&self, wait_s: &str) -> bool {
        self.client
            .try_exec(&[
                "ping", "-c", "1", "-W", wait_s, "-I", "10.8.0.1", "10.1.0.1",
            ])
            .status
            .success()
    }
}

impl Drop for NatLab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
