//! espritd on the outside ports that own a whole interface (af_packet,
//! af_xdp, DPDK's net_af_packet), end to end in network namespaces: a
//! strongSwan road warrior (charon with kernel-libipsec) connects through
//! the port, IKE on 500 and 4500 arriving through the workers, then ping
//! and a content-checked TCP transfer cross the tunnel. The gateway's
//! interface has no kernel address, so only espritd's L2 can have answered
//! the client's ARP: the client's neighbour table must hold its MAC.
//!
//! Root and the strongSwan packages (`.ci/run` installs them); the af_xdp
//! and DPDK cases run with `--features af_xdp` / `--features dpdk`.

mod common;

use common::daemon::Espritd;
use common::netns::{privileged_or_skip, sh, NetNs};
use common::strongswan::{self, Charon};

const PSK: &str = "bypass-port-test-psk-0123456789abcdef";

/// A gateway namespace whose veth has no IPv4 address (espritd's port owns
/// it), a strongSwan namespace at 192.0.2.2, and a scratch folder.
struct Lab {
    gw: NetNs,
    sw: NetNs,
    dir: std::path::PathBuf,
}

impl Lab {
    fn new(tag: &str) -> Option<Lab> {
        if !privileged_or_skip(&format!("bypass port {tag}")) {
            return None;
        }
        assert!(
            strongswan::available(),
            "strongSwan (charon + kernel-libipsec) is not installed"
        );
        let id = format!("{}{tag}", std::process::id());
        let gw = NetNs::new(&format!("esprit-bg-{id}"));
        let sw = NetNs::new(&format!("esprit-bc-{id}"));
        sh(&[
            "ip", "link", "add", "veth-gw", "netns", &gw.name, "type", "veth", "peer", "name",
            "veth-sw", "netns", &sw.name,
        ]);
        // No kernel address on veth-gw, and no IPv6 chatter either: what
        // answers 192.0.2.1 is espritd.
        gw.exec(&["sysctl", "-qw", "net.ipv6.conf.veth-gw.disable_ipv6=1"]);
        gw.exec(&["ip", "link", "set", "veth-gw", "up"]);
        sw.exec(&["ip", "addr", "add", "192.0.2.2/24", "dev", "veth-sw"]);
        sw.exec(&["ip", "link", "set", "veth-sw", "up"]);
        let dir = std::env::temp_dir().join(format!("esprit-bypass-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        Some(Lab { gw, sw, dir })
    }

    fn gateway_mac(&self) -> String {
        let out = self.gw.exec(&["cat", "/sys/class/net/veth-gw/address"]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// espritd's config: `port_section` picks the port and its interface.
fn gateway_config(port_section: &str) -> String {
    format!(
        r#"
[gateway]
outside = ["192.0.2.1:4500"]

{port_section}

[dataplane.inside]
name = "esprit0"
addresses = ["10.1.0.1/24"]
# Larger than the tunnel carries (1438 over a 1500 outside): the kernel
# hands over packets espritd must answer with fragmentation-needed.
mtu = 1500

[ike]
local_id = "gw.lab.test"

[[peer]]
name = "roadwarriors"
role = "responder"
remote_id = "any"
psk = "{PSK}"
local_ts = ["10.1.0.0/24"]
pool = "10.3.0.0/24"
proposals = ["aes128gcm16-prfsha256-x25519"]
esp_proposals = ["aes128gcm16"]
liveness = "ike"
"#
    )
}

fn ping_ok(ns: &NetNs, args: &[&str], count: usize, espritd: &Espritd) {
    let c = count.to_string();
    let mut full = vec!["ping", "-c", &c, "-i", "0.2", "-W", "2"];
    full.extend_from_slice(args);
    let ping = ns.try_exec(&full);
    let text = String::from_utf8_lossy(&ping.stdout);
    assert!(
        ping.status.success() && text.contains(&format!("{count} received")),
        "ping {args:?} failed:\n{text}\n--- espritd:\n{}",
        espritd.log_text()
    );
}

/// The whole scenario over the port `port_section` configures.
fn roadwarrior_through(tag: &str, port_section: &str) {
    let Some(lab) = Lab::new(tag) else { return };
    let cfg = lab.dir.join("espritd.toml");
    std::fs::write(&cfg, gateway_config(port_section)).unwrap();
    let espritd = Espritd::start(&lab.gw, &cfg, "esprit0");
    let charon = Charon::start(
        &lab.sw,
        &lab.dir.join("charon"),
        &strongswan::roadwarrior_swanctl("aes128gcm16-prfsha256-x25519", "aes128gcm16", PSK),
    );

    // IKE_SA_INIT on 500, IKE_AUTH on 4500: both through the workers.
    let up = charon.swanctl(&["--initiate", "--child", "net", "--timeout", "15"]);
    assert!(
        up.status.success(),
        "strongSwan could not connect:\n{}\n--- espritd:\n{}\n--- charon:\n{}",
        String::from_utf8_lossy(&up.stdout),
        espritd.log_text(),
        charon.log()
    );
    let sas = charon.list_sas();
    assert!(
        sas.contains("INSTALLED") && sas.contains("10.3.0."),
        "{sas}"
    );

    // The port's own address answers ping (its L2, not the kernel's).
    ping_ok(&lab.sw, &["192.0.2.1"], 2, &espritd);
    ping_ok(&lab.sw, &["10.1.0.1"], 5, &espritd);
    common::netns::tcp_transfer(&lab.gw, &lab.sw, "10.1.0.1:5001", 1 << 20);

    let neigh = lab
        .sw
        .exec(&["ip", "neigh", "show", "192.0.2.1", "dev", "veth-sw"]);
    let neigh = String::from_utf8_lossy(&neigh.stdout).to_lowercase();
    let mac = lab.gateway_mac();
    let kernel = lab
        .gw
        .exec(&["ip", "-4", "-o", "addr", "show", "dev", "veth-gw"]);
    assert!(
        kernel.stdout.is_empty(),
        "the kernel must hold no address on veth-gw (else it answers ARP)"
    );
    assert!(
        neigh.contains(&format!("lladdr {mac}")),
        "the client resolved 192.0.2.1 to espritd's {mac}: {neigh:?}"
    );
    let vip = sas
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find(|w| w.starts_with("10.3.0."))
        .unwrap_or_else(|| panic!("no virtual IP in {sas}"))
        .to_string();
    // Without DF, 1488 bytes are split by espritd before sealing and the
    // client reassembles them (before any PMTU is learned for it).
    ping_ok(&lab.gw, &["-M", "dont", "-s", "1460", &vip], 2, &espritd);
    // PMTU: 1500 bytes with DF do not fit once sealed; espritd says 1438.
    let big = lab.gw.try_exec(&[
        "ping", "-M", "do", "-s", "1472", "-c", "2", "-i", "0.3", "-W", "1", &vip,
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&big.stdout),
        String::from_utf8_lossy(&big.stderr)
    );
    assert!(
        text.contains("mtu = 1438") || text.contains("mtu=1438"),
        "ping -M do -s 1472 {vip} should learn mtu 1438:\n{text}"
    );

    // The server's SYN-ACK (MSS 1460 for its 1500-byte esprit0) entered
    // the tunnel clamped; the big pings got ICMP.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_espritctl"))
        .arg("--socket")
        .arg(Espritd::socket(&cfg))
        .args(["--json", "stats"])
        .output()
        .unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let sum = |key: &str| -> u64 {
        stats["data"]["workers"]
            .as_array()
            .map(|ws| ws.iter().filter_map(|w| w[key].as_u64()).sum())
            .unwrap_or(0)
    };
    assert!(sum("mss_clamped") >= 1, "{stats}");
    assert!(sum("icmp_too_big_sent") >= 1, "{stats}");
    assert!(sum("fragmented") >= 2, "{stats}");

    // Neither the control thread nor a worker is confined to one core
    // (DPDK's EAL pins its caller to the main lcore; the daemon must not
    // pass that on). DPDK's own service threads may be pinned.
    let ours = cpus_allowed(std::path::Path::new("/proc/self/status"));
    let pid = espritd.pid().to_string();
    let mut n = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if t.file_name() == pid.as_str() || comm.starts_with("esprit-worker") {
            assert_eq!(cpus_allowed(&t.path().join("status")), ours, "{comm}");
            n += 1;
        }
    }
    assert!(n >= 2, "espritd has its workers");

    let log = espritd.log_text();
    assert!(log.contains("outside port owns its interface"), "{log}");
    assert!(log.contains("CHILD SA installed"), "{log}");
}

/// `Cpus_allowed_list` of a /proc status file.
fn cpus_allowed(status: &std::path::Path) -> String {
    std::fs::read_to_string(status)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

#[test]
fn strongswan_connects_through_an_af_packet_port() {
    roadwarrior_through(
        "p",
        r#"[dataplane]
workers = 2
port = "af_packet"

[dataplane.outside]
interface = "veth-gw"
address = "192.0.2.1/24""#,
    );
}

#[cfg(feature = "af_xdp")]
#[test]
fn strongswan_connects_through_an_af_xdp_port() {
    roadwarrior_through(
        "x",
        r#"[dataplane]
workers = 1
port = "af_xdp"

[dataplane.outside]
interface = "veth-gw"
address = "192.0.2.1/24""#,
    );
}

#[cfg(feature = "dpdk")]
#[test]
fn strongswan_connects_through_a_dpdk_net_af_packet_port() {
    let prefix = format!("--file-prefix=esprit-bypass-{}", std::process::id());
    roadwarrior_through(
        "d",
        &format!(
            r#"[dataplane]
workers = 1
port = "dpdk"

[dataplane.dpdk]
eal_args = ["--no-huge", "--no-pci", "--no-shconf", "-m", "256", "-l", "0", "--no-telemetry", "--log-level=lib.eal:error", "{prefix}"]
vdevs = ["net_af_packet0,iface=veth-gw"]

[dataplane.outside]
interface = "net_af_packet0"
address = "192.0.2.1/24""#
        ),
    );
}
