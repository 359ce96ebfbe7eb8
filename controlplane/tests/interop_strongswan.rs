//! Interop with strongSwan (charon, userspace ESP through kernel-libipsec)
//! in network namespaces. Root and the strongSwan packages (`.ci/run`
//! installs them).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::daemon::Espritd;
use common::netns::{privileged_or_skip, veth, NetNs};
use common::strongswan::{self, Charon};

const PSK: &str = "interop-test-psk-0123456789abcdef";

fn gateway_config(proposal: &str, esp: &str) -> String {
    gateway_config_with(proposal, esp, "", "")
}

/// The responder gateway; the extras go into its `[ike]` and `[[peer]]`.
fn gateway_config_with(proposal: &str, esp: &str, ike_extra: &str, peer_extra: &str) -> String {
    format!(
        r#"
[gateway]
outside = ["192.0.2.1:4500"]

[dataplane]
workers = 2

[dataplane.inside]
name = "esprit0"
addresses = ["10.1.0.1/24"]

[ike]
local_id = "gw.lab.test"
{ike_extra}

[[peer]]
name = "roadwarriors"
role = "responder"
remote_id = "any"
psk = "{PSK}"
local_ts = ["10.1.0.0/24"]
pool = "10.3.0.0/24"
proposals = ["{proposal}"]
esp_proposals = ["{esp}"]
liveness = "ike"
{peer_extra}
"#
    )
}

/// A gateway namespace and a strongSwan namespace joined by a veth, and a
/// scratch folder; all removed on drop.
struct Lab {
    gw: NetNs,
    sw: NetNs,
    dir: std::path::PathBuf,
}

impl Lab {
    fn new(tag: &str) -> Option<Lab> {
        if !privileged_or_skip("strongswan interop") {
            return None;
        }
        assert!(
            strongswan::available(),
            "strongSwan (charon + kernel-libipsec) is not installed"
        );
        let id = format!("{}{tag}", std::process::id());
        let gw = NetNs::new(&format!("esprit-sg-{id}"));
        let sw = NetNs::new(&format!("esprit-sc-{id}"));
        veth(
            &gw,
            "veth-gw",
            "192.0.2.1/24",
            &sw,
            "veth-sw",
            "192.0.2.2/24",
        );
        let dir = std::env::temp_dir().join(format!("esprit-swan-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        Some(Lab { gw, sw, dir })
    }

    fn espritd(&self, config: &str) -> Espritd {
        let cfg = self.dir.join("espritd.toml");
        std::fs::write(&cfg, config).unwrap();
        Espritd::start(&self.gw, &cfg, "esprit0")
    }

    fn charon(&self, swanctl: &str) -> Charon {
        Charon::start(&self.sw, &self.dir.join("charon"), swanctl)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn initiate(charon: &Charon, espritd: &Espritd) {
    let up = charon.swanctl(&["--initiate", "--child", "net", "--timeout", "15"]);
    assert!(
        up.status.success(),
        "strongSwan could not connect:\n{}\n--- espritd:\n{}\n--- charon:\n{}",
        String::from_utf8_lossy(&up.stdout),
        espritd.log_text(),
        charon.log()
    );
}

fn ping_ok(ns: &NetNs, args: &[&str], count: usize, espritd: &Espritd) {
    let c = count.to_string();
    let mut full = vec!["ping", "-c", &c, "-i", "0.2", "-W", "2"];
    full.extend_from_slice(args);
    let ping = ns.try_exec(&full);
    let text = String::from_utf8_lossy(&ping.stdout);
    assert!(
        ping.status.success() && text.contains(&format!("{count} received")),
        "ping through the tunnel failed:\n{text}\n--- espritd:\n{}",
        espritd.log_text()
    );
}

fn roadwarrior(tag: &str, proposal: &str, esp: &str) {
    let Some(lab) = Lab::new(tag) else { return };
    let espritd = lab.espritd(&gateway_config(proposal, esp));
    let charon = lab.charon(&strongswan::roadwarrior_swanctl(proposal, esp, PSK));

    let t0 = Instant::now();
    initiate(&charon, &espritd);
    eprintln!("IKE_SA + CHILD_SA with strongSwan in {:?}", t0.elapsed());
    let sas = charon.list_sas();
    assert!(sas.contains("ESTABLISHED"), "{sas}");
    assert!(sas.contains("INSTALLED"), "{sas}");
    assert!(
        sas.contains("10.3.0."),
        "virtual IP from espritd's pool: {sas}"
    );

    ping_ok(&lab.sw, &["10.1.0.1"], 5, &espritd);
    common::netns::tcp_transfer(&lab.gw, &lab.sw, "10.1.0.1:5001", 2 << 20);
    let log = espritd.log_text();
    if std::env::var_os("ESPRIT_TEST_VERBOSE").is_some() {
        eprintln!(
            "--- strongSwan SAs:\n{}\n--- espritd:\n{log}",
            charon.list_sas()
        );
    }
    assert!(log.contains("CHILD SA installed"), "{log}");
    assert!(
        !log.contains(&PSK[..10]),
        "the PSK must never reach the log"
    );
}

#[test]
fn strongswan_roadwarrior_gets_a_pool_address_aes128_x25519() {
    roadwarrior("a", "aes128gcm16-prfsha256-x25519", "aes128gcm16");
}

#[test]
fn strongswan_roadwarrior_gets_a_pool_address_aes256_ecp256() {
    roadwarrior("b", "aes256gcm16-prfsha384-ecp256", "aes256gcm16");
}

/// A dual-stack road warrior: strongSwan asks for an IPv4 and an IPv6
/// address (`vips = 0.0.0.0, ::`) and gets one of each from the
/// template's pool, and both families cross the tunnel.
#[test]
fn strongswan_roadwarrior_gets_an_ipv4_and_an_ipv6_pool_address() {
    let Some(lab) = Lab::new("v6") else { return };
    let proposal = "aes128gcm16-prfsha256-x25519";
    let config = gateway_config(proposal, "aes128gcm16")
        .replace(
            r#"addresses = ["10.1.0.1/24"]"#,
            r#"addresses = ["10.1.0.1/24", "fd00:1::1/64"]"#,
        )
        .replace(
            r#"local_ts = ["10.1.0.0/24"]"#,
            r#"local_ts = ["10.1.0.0/24", "fd00:1::/64"]"#,
        )
        .replace(
            r#"pool = "10.3.0.0/24""#,
            r#"pool = ["10.3.0.0/24", "fd00:3::/112"]"#,
        );
    let espritd = lab.espritd(&config);
    let swanctl = strongswan::roadwarrior_swanctl(proposal, "aes128gcm16", PSK)
        .replace("vips = 0.0.0.0", "vips = 0.0.0.0, ::")
        .replace(
            "remote_ts = 10.1.0.0/24",
            "remote_ts = 10.1.0.0/24, fd00:1::/64",
        );
    let charon = lab.charon(&swanctl);
    initiate(&charon, &espritd);
    let sas = charon.list_sas();
    assert!(
        sas.contains("10.3.0.1"),
        "IPv4 address from the pool: {sas}"
    );
    assert!(
        sas.contains("fd00:3::1"),
        "IPv6 address from the pool: {sas}"
    );

    ping_ok(&lab.sw, &["10.1.0.1"], 3, &espritd);
    ping_ok(&lab.sw, &["-6", "fd00:1::1"], 3, &espritd);
    common::netns::tcp_transfer(&lab.gw, &lab.sw, "[fd00:1::1]:5001", 2 << 20);
    if std::env::var_os("ESPRIT_TEST_VERBOSE").is_some() {
        eprintln!("--- strongSwan SAs:\n{sas}");
    }
}

/// strongSwan as the responder `hq.lab.test` behind 10.2.0.1, with
/// `child` inside its CHILD SA's block and `extra` beside `connections`
/// (address pools).
fn hq_responder(lab: &Lab, conn: &str, child: &str, extra: &str) -> Charon {
    lab.sw
        .exec(&["ip", "addr", "add", "10.2.0.1/32", "dev", "lo"]);
    lab.charon(&format!(
        r#"connections {{
  hq {{
    version = 2
    local_addrs = 192.0.2.2
    proposals = aes128gcm16-prfsha256-x25519
    {conn}
    local {{
      auth = psk
      id = hq.lab.test
    }}
    remote {{
      auth = psk
      id = gw.lab.test
    }}
    children {{
      net {{
        {child}
        esp_proposals = aes128gcm16
      }}
    }}
  }}
}}
{extra}
secrets {{
  ike-hq {{
    id-1 = hq.lab.test
    id-2 = gw.lab.test
    secret = "{PSK}"
  }}
}}
"#
    ))
}

/// espritd initiating to [`hq_responder`]; `inside` and `peer` are the
/// lines of its `[dataplane.inside]` and `[[peer]]` that differ.
fn hq_initiator(lab: &Lab, inside: &str, peer: &str) -> Espritd {
    lab.espritd(&format!(
        r#"
[gateway]
outside = ["192.0.2.1:4500"]

[dataplane.inside]
name = "esprit0"
{inside}

[ike]
local_id = "gw.lab.test"
proposals = ["aes128gcm16-prfsha256-x25519"]
esp_proposals = ["aes128gcm16"]
nat_keepalive = "1s"

[[peer]]
name = "hq"
role = "initiator"
remote = "192.0.2.2"
remote_id = "hq.lab.test"
psk = "{PSK}"
liveness = "ike"
{peer}
"#
    ))
}

/// Waits until strongSwan has the CHILD SA espritd started.
fn wait_installed(charon: &Charon, espritd: &Espritd) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !charon.list_sas().contains("INSTALLED") {
        assert!(
            Instant::now() < deadline,
            "espritd did not bring the tunnel up:\n{}\n--- charon:\n{}",
            espritd.log_text(),
            charon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn espritd_initiates_to_a_strongswan_responder() {
    let Some(lab) = Lab::new("i") else { return };
    let charon = hq_responder(
        &lab,
        "",
        "local_ts = 10.2.0.0/24\n        remote_ts = 10.1.0.0/24",
        "",
    );
    let espritd = hq_initiator(
        &lab,
        r#"addresses = ["10.1.0.1/24"]"#,
        "local_ts = [\"10.1.0.0/24\"]\nremote_ts = [\"10.2.0.0/24\"]",
    );
    wait_installed(&charon, &espritd);
    ping_ok(&lab.gw, &["-I", "10.1.0.1", "10.2.0.1"], 5, &espritd);
    ping_ok(&lab.sw, &["-I", "10.2.0.1", "10.1.0.1"], 3, &espritd);
    common::netns::tcp_transfer(&lab.sw, &lab.gw, "10.2.0.1:5002", 2 << 20);

    // strongSwan's userspace ESP always claims a NAT, so espritd, the
    // initiator, keeps the mapping open: 1-byte 0xFF datagrams to 4500.
    let cap = lab.sw.try_exec(&[
        "tshark",
        "-q",
        "-i",
        "veth-sw",
        "-a",
        "duration:3.5",
        "-f",
        "udp dst port 4500 and udp[4:2] = 9 and udp[8] = 0xff",
        "-T",
        "fields",
        "-e",
        "frame.number",
    ]);
    let keepalives = String::from_utf8_lossy(&cap.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
    assert!(
        keepalives >= 2,
        "NAT keepalives seen in 3.5 s: {keepalives}\n{}",
        String::from_utf8_lossy(&cap.stderr)
    );
}

/// espritd as a client asks a strongSwan responder for an inner address of
/// each family (`virtual_ip`, `virtual_ip6`), is given the first of each of
/// strongSwan's pools, reports them, puts them on its inside interface, and
/// both families cross the tunnel from those addresses; when the IKE SA
/// ends, the addresses come off again.
#[test]
fn espritd_asks_a_strongswan_responder_for_an_address_of_each_family() {
    let Some(lab) = Lab::new("i6") else { return };
    lab.sw
        .exec(&["ip", "-6", "addr", "add", "fd00:2::1/128", "dev", "lo"]);
    let charon = hq_responder(
        &lab,
        "pools = v4, v6",
        "local_ts = 10.2.0.0/24, fd00:2::/64",
        "pools {\n  v4 {\n    addrs = 10.50.0.0/28\n  }\n  v6 {\n    addrs = fd00:50::/124\n  }\n}",
    );
    let espritd = hq_initiator(
        &lab,
        "",
        "virtual_ip = true\nvirtual_ip6 = true\nremote_ts = [\"10.2.0.0/24\", \"fd00:2::/64\"]",
    );
    wait_installed(&charon, &espritd);
    let out = espritctl(&lab, &["--json", "tunnels", "--peer", "hq"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let row = &rows["data"][0];
    assert_eq!(row["virtual_ip"], "10.50.0.1", "{rows}");
    assert_eq!(row["virtual_ip6"], "fd00:50::1", "{rows}");
    let table = espritctl(&lab, &["tunnels"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("VIRTUAL_IP6") && table.contains("fd00:50::1"),
        "{table}"
    );
    let sas = charon.list_sas();
    assert!(
        sas.contains("10.50.0.1/32") && sas.contains("fd00:50::1/128"),
        "strongSwan narrowed its remote selectors to the two leases: {sas}"
    );
    // espritd puts the leased addresses on its inside interface itself.
    let on_tun = |a: &str| {
        let out = lab
            .gw
            .try_exec(&["ip", "-o", "addr", "show", "dev", "esprit0"]);
        String::from_utf8_lossy(&out.stdout).contains(a)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(on_tun("10.50.0.1/32") && on_tun("fd00:50::1/128")) {
        assert!(
            Instant::now() < deadline,
            "leases not on esprit0:\n{}",
            espritd.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    ping_ok(&lab.gw, &["-I", "10.50.0.1", "10.2.0.1"], 3, &espritd);
    ping_ok(
        &lab.gw,
        &["-6", "-I", "fd00:50::1", "fd00:2::1"],
        3,
        &espritd,
    );
    // status says which addresses espritd holds there, and nothing waits
    // for a retry.
    let out = espritctl(&lab, &["--json", "status"]);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        st["data"]["inner_addresses"],
        serde_json::json!(["10.50.0.1", "fd00:50::1"]),
        "{st}"
    );
    assert_eq!(st["data"]["inner_addresses_retry_pending"], false, "{st}");

    // The leases end with the IKE SA, and come off the interface.
    let out = espritctl(&lab, &["terminate", "hq"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while on_tun("10.50.0.1") || on_tun("fd00:50::1") {
        assert!(
            Instant::now() < deadline,
            "leases left on esprit0:\n{}",
            espritd.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The CHILD SAs espritd has in its data plane now, as (inbound, outbound)
/// SPIs, from its log.
fn espritd_child_sas(log: &str) -> std::collections::BTreeSet<(u32, u32)> {
    let field = |line: &str, key: &str| -> Option<u32> {
        let at = line.find(key)? + key.len();
        let hex = line[at..].trim_start_matches("0x");
        let end = hex
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(hex.len());
        u32::from_str_radix(&hex[..end], 16).ok()
    };
    let mut sas = std::collections::BTreeSet::new();
    for line in log.lines() {
        if line.contains("CHILD SA installed") {
            if let (Some(i), Some(o)) = (field(line, "inbound_spi="), field(line, "outbound_spi="))
            {
                sas.insert((i, o));
            }
        } else if line.contains("CHILD SA removed") {
            if let Some(i) = field(line, "inbound_spi=") {
                sas.retain(|(x, _)| *x != i);
            }
        }
    }
    sas
}

/// strongSwan's installed CHILD SAs seen from espritd's side: its `out`
/// SPI is our inbound one. Rekeyed SAs that strongSwan keeps for a few
/// seconds in state DELETED (its `delete_rekeyed_delay`) are left out.
fn charon_child_sas(list: &str) -> std::collections::BTreeSet<(u32, u32)> {
    let spi = |s: &str| {
        s.split(|c: char| c == ',' || c.is_whitespace())
            .find(|w| !w.is_empty())
            .and_then(|w| u32::from_str_radix(w, 16).ok())
    };
    let mut sas = std::collections::BTreeSet::new();
    let mut installed = false;
    let mut inbound = None;
    for line in list.lines() {
        let t = line.trim_start();
        if t.contains("reqid") {
            installed = t.contains("INSTALLED");
        } else if let Some(rest) = t.strip_prefix("in ") {
            inbound = spi(rest);
        } else if let Some(rest) = t.strip_prefix("out ") {
            if let (true, Some(i), Some(o)) = (installed, inbound.take(), spi(rest)) {
                sas.insert((o, i));
            }
        }
    }
    sas
}

fn agree(charon: &Charon, espritd: &Espritd, step: &str) {
    // Both sides settle within a moment (the old pair's DELETE crosses).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ours = espritd_child_sas(&espritd.log_text());
        let theirs = charon_child_sas(&charon.list_sas());
        if ours == theirs {
            eprintln!("{step}: both sides have {ours:08x?}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{step}: SA lists disagree: espritd {ours:08x?}, strongSwan {theirs:08x?}\n{}",
            charon.list_sas()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn rekeys_from_both_sides_under_traffic_then_delete() {
    let Some(lab) = Lab::new("r") else { return };
    // espritd rekeys the CHILD SA about every 3 s and the IKE SA every 5 s.
    let espritd = lab.espritd(&gateway_config_with(
        "aes128gcm16-prfsha256-x25519",
        "aes128gcm16",
        "child_lifetime = \"4s\"\nike_lifetime = \"6s\"\nrekey_margin = \"1s\"\nrekey_jitter = \"0s\"",
        "grace_period = \"1s\"",
    ));
    let charon = lab.charon(&strongswan::roadwarrior_swanctl(
        "aes128gcm16-prfsha256-x25519",
        "aes128gcm16",
        PSK,
    ));
    initiate(&charon, &espritd);
    agree(&charon, &espritd, "established");

    // 10 s of pings at 20/s while both sides rekey.
    let mut pinger = lab.sw.command("ping");
    pinger.args(["-c", "200", "-i", "0.05", "-W", "1", "10.1.0.1"]);
    let ping_thread = std::thread::spawn(move || pinger.output());
    std::thread::sleep(Duration::from_secs(2));
    let r = charon.swanctl(&["--rekey", "--child", "net"]);
    assert!(
        r.status.success(),
        "strongSwan CHILD rekey: {}",
        String::from_utf8_lossy(&r.stdout)
    );
    agree(&charon, &espritd, "CHILD SA rekeyed by strongSwan");
    std::thread::sleep(Duration::from_secs(2));
    let r = charon.swanctl(&["--rekey", "--ike", "gw"]);
    assert!(
        r.status.success(),
        "strongSwan IKE rekey: {}",
        String::from_utf8_lossy(&r.stdout)
    );
    agree(&charon, &espritd, "IKE SA rekeyed by strongSwan");
    let out = ping_thread.join().unwrap().expect("ping");
    let text = String::from_utf8_lossy(&out.stdout);
    agree(&charon, &espritd, "after traffic");

    let log = espritd.log_text();
    let ours = |what: &str| {
        log.lines()
            .filter(|l| l.contains(what) && l.contains("started=true"))
            .count()
    };
    assert!(
        ours("CHILD SA rekey (lifetime)") >= 2,
        "espritd rekeyed CHILD SAs itself:\n{log}"
    );
    assert!(
        ours("IKE SA rekey (lifetime)") >= 1,
        "espritd rekeyed the IKE SA itself:\n{log}"
    );
    // Rekeys are routine and logged at debug; the tunnel's first pair at info.
    let installs: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CHILD SA installed"))
        .collect();
    let expected_level = |l: &str| match l.contains("rekey=true") {
        true => " DEBUG ",
        false => " INFO ",
    };
    assert!(
        installs.iter().all(|l| l.contains(expected_level(l))),
        "{installs:#?}"
    );
    assert!(installs.iter().any(|l| l.contains("rekey=true")));
    let received: usize = text
        .split(", ")
        .find_map(|p| p.strip_suffix(" received").and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    eprintln!("pings across the rekeys: {received}/200");
    assert!(received >= 198, "traffic lost across rekeys:\n{text}");

    // strongSwan closes: espritd removes everything on its DELETE.
    let r = charon.swanctl(&["--terminate", "--ike", "gw"]);
    assert!(r.status.success());
    agree(&charon, &espritd, "deleted by strongSwan");
    assert!(espritd_child_sas(&espritd.log_text()).is_empty());

    // espritd closes: strongSwan hears the DELETE.
    initiate(&charon, &espritd);
    agree(&charon, &espritd, "re-established");
    drop(espritd);
    let deadline = Instant::now() + Duration::from_secs(5);
    while charon.list_sas().contains("ESTABLISHED") {
        assert!(
            Instant::now() < deadline,
            "strongSwan kept the SA after espritd left: {}",
            charon.list_sas()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// IKE_SA_INIT requests from `n` spoofed sources 198.51.100.x (a raw
/// socket writes the IP header), each a fresh handshake from our own
/// initiator code.
fn flood_ike_sa_init(ns: &NetNs, n: usize) {
    use controlplane::ike::sa::{IkeEndpoint, SequentialSpis};
    use dataplane::wire::{ipv4, udp};
    use rand::SeedableRng;
    ns.run(move || {
        // SAFETY: plain socket(2); the fd is owned by `raw` below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        let mut ep = IkeEndpoint::new(
            Box::new(rand::rngs::StdRng::seed_from_u64(1)),
            Box::new(SequentialSpis::starting_at(0x2000)),
        );
        let gw: SocketAddr = "192.0.2.1:500".parse().unwrap();
        for i in 0..n {
            let src = std::net::Ipv4Addr::new(198, 51, 100, 1 + (i % 250) as u8);
            let local = SocketAddr::new(src.into(), 500 + (i / 250) as u16);
            let policy = flood_policy();
            ep.connect(Instant::now(), local, gw, policy).unwrap();
            let t = ep.poll_transmit().unwrap();
            let udp_repr = udp::Repr {
                src_port: local.port(),
                dst_port: 500,
                payload_len: t.payload.len(),
            };
            let ip_repr = ipv4::Repr {
                src_addr: src,
                dst_addr: std::net::Ipv4Addr::new(192, 0, 2, 1),
                next_header: 17,
                payload_len: udp_repr.buffer_len(),
                hop_limit: 64,
                dscp_ecn: 0,
                ident: i as u16,
                dont_frag: false,
            };
            let mut pkt = vec![0u8; ip_repr.buffer_len()];
            ip_repr
                .emit(&mut ipv4::Packet::new_unchecked(&mut pkt[..]))
                .unwrap();
            pkt[28..].copy_from_slice(&t.payload);
            udp_repr
                .emit(&mut udp::Packet::new_unchecked(&mut pkt[20..]), None)
                .unwrap();
            let to = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes([192, 0, 2, 1]),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: valid buffer and sockaddr for the duration of the call.
            let rc = unsafe {
                libc::sendto(
                    fd,
                    pkt.as_ptr().cast(),
                    pkt.len(),
                    0,
                    (&to as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            assert!(rc > 0, "raw send: {}", std::io::Error::last_os_error());
        }
        // SAFETY: closing the fd we opened.
        unsafe { libc::close(fd) };
    })
    .join()
    .expect("flood");
}

fn flood_policy() -> controlplane::ike::sa::Policy {
    use controlplane::ike::crypto::{DhGroup, Prf, Secret};
    use controlplane::ike::sa::{Policy, Retransmit};
    use controlplane::ike::wire::Identification;
    Policy {
        local_id: Identification::fqdn("flood.lab.test"),
        remote_id: None,
        psk: Secret::new(b"not the psk".to_vec()),
        ike_encr_bits: vec![128],
        ike_prfs: vec![Prf::HmacSha256],
        ike_groups: vec![DhGroup::Curve25519],
        esp_encr_bits: vec![128],
        esp_groups: vec![],
        local_ts: vec![],
        remote_ts: vec![],
        request_virtual_ip: false,
        request_virtual_ip6: false,
        dns: vec![],
        pool: None,
        retransmit: Retransmit::default(),
    }
}

#[test]
fn a_spoofed_ike_sa_init_flood_turns_cookies_on_and_tunnels_keep_working() {
    let Some(lab) = Lab::new("f") else { return };
    let espritd = lab.espritd(&gateway_config_with(
        "aes128gcm16-prfsha256-x25519",
        "aes128gcm16",
        "cookie_threshold = 50",
        "",
    ));
    let charon = lab.charon(&strongswan::roadwarrior_swanctl(
        "aes128gcm16-prfsha256-x25519",
        "aes128gcm16",
        PSK,
    ));
    initiate(&charon, &espritd);
    let mut pinger = lab.sw.command("ping");
    pinger.args(["-c", "40", "-i", "0.05", "-W", "1", "10.1.0.1"]);
    let ping_thread = std::thread::spawn(move || pinger.output());

    flood_ike_sa_init(&lab.sw, 2000);

    // A real client now gets a COOKIE instead of a DH computation.
    let probe = lab.sw.run(|| {
        use controlplane::ike::sa::{IkeEndpoint, SequentialSpis};
        use controlplane::ike::wire::{Message, NotifyType, Payload};
        use rand::SeedableRng;
        let sock = std::net::UdpSocket::bind("192.0.2.2:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut ep = IkeEndpoint::new(
            Box::new(rand::rngs::StdRng::seed_from_u64(2)),
            Box::new(SequentialSpis::starting_at(0x3000)),
        );
        let local = sock.local_addr().unwrap();
        ep.connect(
            Instant::now(),
            local,
            "192.0.2.1:500".parse().unwrap(),
            flood_policy(),
        );
        let t = ep.poll_transmit().unwrap();
        sock.send_to(&t.payload, t.remote).unwrap();
        let mut buf = [0u8; 4096];
        let (n, _) = sock.recv_from(&mut buf).expect("an answer under load");
        let reply = Message::parse(&buf[..n]).expect("a valid IKE message");
        reply
            .payloads
            .iter()
            .any(|p| matches!(p, Payload::Notify(n) if n.notify_type == NotifyType::COOKIE))
    });
    assert!(
        probe.join().unwrap(),
        "espritd did not demand a cookie under the flood"
    );

    let out = ping_thread.join().unwrap().expect("ping");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("40 received"),
        "the established tunnel suffered:\n{text}"
    );
    // strongSwan answers cookies: a new handshake still gets through.
    let r = charon.swanctl(&["--terminate", "--ike", "gw"]);
    assert!(r.status.success());
    initiate(&charon, &espritd);
    ping_ok(&lab.sw, &["10.1.0.1"], 3, &espritd);
}

#[test]
fn an_identity_outside_every_template_is_refused() {
    let Some(lab) = Lab::new("p") else { return };
    // The template only admits *@staff.lab.test; strongSwan says client.lab.test.
    let cfg = gateway_config("aes128gcm16-prfsha256-x25519", "aes128gcm16")
        .replace("remote_id = \"any\"", "remote_id = \"*@staff.lab.test\"");
    let espritd = lab.espritd(&cfg);
    let charon = lab.charon(&strongswan::roadwarrior_swanctl(
        "aes128gcm16-prfsha256-x25519",
        "aes128gcm16",
        PSK,
    ));
    let up = charon.swanctl(&["--initiate", "--child", "net", "--timeout", "10"]);
    assert!(
        !up.status.success(),
        "an unknown identity got in:\n{}",
        charon.list_sas()
    );
    assert!(
        charon.log().contains("AUTHENTICATION_FAILED"),
        "strongSwan should be told AUTHENTICATION_FAILED:\n{}",
        charon.log()
    );
    assert!(!espritd.log_text().contains("CHILD SA installed"));
}

/// espritctl against the daemon under test.
fn espritctl(lab: &Lab, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_espritctl"))
        .arg("--socket")
        .arg(Espritd::socket(&lab.dir.join("espritd.toml")))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn reloading_removes_and_adds_an_ike_peer() {
    let Some(lab) = Lab::new("l") else { return };
    lab.sw
        .exec(&["ip", "addr", "add", "10.2.0.1/32", "dev", "lo"]);
    let charon = lab.charon(&format!(
        r#"connections {{
  hq {{
    version = 2
    local_addrs = 192.0.2.2
    proposals = aes128gcm16-prfsha256-x25519
    local {{
      auth = psk
      id = hq.lab.test
    }}
    remote {{
      auth = psk
      id = gw.lab.test
    }}
    children {{
      net {{
        local_ts = 10.2.0.0/24
        remote_ts = 10.1.0.0/24
        esp_proposals = aes128gcm16
      }}
    }}
  }}
}}
secrets {{
  ike-hq {{
    id-1 = hq.lab.test
    id-2 = gw.lab.test
    secret = "{PSK}"
  }}
}}
"#
    ));
    let head = "[gateway]\noutside = [\"192.0.2.1:4500\"]\n\n[dataplane.inside]\nname = \"esprit0\"\naddresses = [\"10.1.0.1/24\"]\n\n[ike]\nlocal_id = \"gw.lab.test\"\nproposals = [\"aes128gcm16-prfsha256-x25519\"]\nesp_proposals = [\"aes128gcm16\"]\n";
    let peer = format!(
        "\n[[peer]]\nname = \"hq\"\nrole = \"initiator\"\nremote = \"192.0.2.2\"\nremote_id = \"hq.lab.test\"\npsk = \"{PSK}\"\nlocal_ts = [\"10.1.0.0/24\"]\nremote_ts = [\"10.2.0.0/24\"]\nliveness = \"ike\"\n"
    );
    let espritd = lab.espritd(&format!("{head}{peer}"));
    let cfg = lab.dir.join("espritd.toml");
    let with_peer = std::fs::read_to_string(&cfg).unwrap();
    let wait_for = |want: bool, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while charon.list_sas().contains("INSTALLED") != want {
            assert!(Instant::now() < deadline, "{what}\n{}", espritd.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for(true, "espritd did not connect");
    ping_ok(&lab.gw, &["-I", "10.1.0.1", "10.2.0.1"], 2, &espritd);

    // The peer leaves the file: reload deletes its IKE SA at strongSwan too.
    std::fs::write(&cfg, with_peer.replace(&peer, "")).unwrap();
    let r = espritctl(&lab, &["--json", "reload"]);
    let reply: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(reply["data"]["peers"]["removed"][0], "hq", "{reply}");
    wait_for(false, "strongSwan kept the SA of a removed peer");

    // And comes back.
    std::fs::write(&cfg, &with_peer).unwrap();
    let r = espritctl(&lab, &["--json", "reload"]);
    let reply: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(reply["data"]["peers"]["added"][0], "hq", "{reply}");
    wait_for(true, "an added peer did not connect");
    ping_ok(&lab.gw, &["-I", "10.1.0.1", "10.2.0.1"], 2, &espritd);
    let tunnels = espritctl(&lab, &["tunnels"]);
    assert!(String::from_utf8_lossy(&tunnels.stdout).contains("hq"));
}
