//! esprit against strongSwan's userspace ESP (kernel-libipsec), side by side
//! in one run (issue 7, item 4): the same two namespaces joined by a veth,
//! the same cipher (AES-128-GCM, X25519 IKE), the same traffic through each
//! tunnel: iperf3 TCP, iperf3 UDP at 64-byte and 1400-byte packets, and the
//! same datagrams from a sendmmsg flood (`common::udp_flood`), which costs
//! the shared cores less than iperf3, and from a flood that batches them
//! through the kernel as QUIC stacks do (UDP GSO and GRO). Each espritd runs one data-plane
//! worker (one core). A fourth column sends the same traffic over the bare
//! veth, no tunnel at all: the ceiling the tools and the kernel reach on
//! this machine, which no tunnel can pass.
//!
//! Outside the default suite, and in release mode (a debug espritd says
//! nothing about speed):
//! `cargo test --release -p controlplane --test throughput_vs_strongswan -- --ignored --nocapture`

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::daemon::Espritd;
use common::netns::{privileged_or_skip, veth, NetNs};
use common::strongswan::{self, SiteTuning};
use common::udp_flood::{self, Batching};

const PSK: &str = "throughput-psk-0123456789abcdef";
/// Seconds of traffic per measurement.
const SECONDS: &str = "5";

/// The figures of one implementation.
#[derive(Clone, Copy, Debug, Default)]
struct Figures {
    tcp_mbit: f64,
    udp64_pps: f64,
    udp1400_pps: f64,
    /// The same datagrams from the sendmmsg flood (common::udp_flood).
    flood64_pps: f64,
    flood1400_pps: f64,
    /// The same datagrams in `UDP_SEGMENT` batches to a `UDP_GRO` sink.
    gso64_pps: f64,
    gso1400_pps: f64,
    /// Datagrams the sink counted in the 64-byte GSO flood, and (esprit)
    /// ESP packets the receiving gateway decrypted meanwhile.
    gso64_received: u64,
    gso64_decrypted: Option<u64>,
}

fn espritd_config(outside: &str, inside: &str, role: &str, offload: bool) -> String {
    let (local_ts, remote_ts, local_id, remote_id, remote) = if role == "initiator" {
        (
            "10.8.0.0/24",
            "10.1.0.0/24",
            "client.lab.test",
            "server.lab.test",
            "remote = \"192.0.2.2\"",
        )
    } else {
        (
            "10.1.0.0/24",
            "10.8.0.0/24",
            "server.lab.test",
            "client.lab.test",
            "",
        )
    };
    format!(
        r#"
[gateway]
outside = ["{outside}:4500"]

[dataplane]
workers = 1

[dataplane.inside]
name = "esprit0"
addresses = ["{inside}"]
offload = {offload}

[ike]
local_id = "{local_id}"
proposals = ["aes128gcm16-prfsha256-x25519"]
esp_proposals = ["aes128gcm16"]

[[peer]]
name = "other"
role = "{role}"
remote_id = "{remote_id}"
psk = "{PSK}"
local_ts = ["{local_ts}"]
remote_ts = ["{remote_ts}"]
{remote}
"#
    )
}

/// Two namespaces, client 192.0.2.1 and server 192.0.2.2.
fn namespaces(tag: &str) -> (NetNs, NetNs) {
    let id = std::process::id();
    let c = NetNs::new(&format!("esprit-tc{tag}-{id}"));
    let s = NetNs::new(&format!("esprit-ts{tag}-{id}"));
    veth(&c, "veth-c", "192.0.2.1/24", &s, "veth-s", "192.0.2.2/24");
    (c, s)
}

fn wait_for_tunnel(c: &NetNs, logs: &dyn Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !c
        .try_exec(&["ping", "-c", "1", "-W", "1", "-I", "10.8.0.1", "10.1.0.1"])
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "no tunnel:\n{}", logs());
    }
}

/// Where iperf3 listens and sends from.
#[derive(Clone, Copy)]
struct Ends {
    server: &'static str,
    client: &'static str,
}

/// Through the tunnel: the inner addresses.
const INNER: Ends = Ends {
    server: "10.1.0.1",
    client: "10.8.0.1",
};
/// The bare veth: the outer addresses.
const OUTER: Ends = Ends {
    server: "192.0.2.2",
    client: "192.0.2.1",
};

/// Runs iperf3 between `ends` and returns its JSON report.
fn iperf3(c: &NetNs, s: &NetNs, ends: Ends, args: &[&str]) -> serde_json::Value {
    let mut server = s
        .command("iperf3")
        .args(["-s", "-1", "-B", ends.server])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("iperf3 server");
    std::thread::sleep(Duration::from_millis(300));
    let mut a = vec![
        "iperf3",
        "-c",
        ends.server,
        "-B",
        ends.client,
        "-t",
        SECONDS,
        "-J",
    ];
    a.extend_from_slice(args);
    let out = c.try_exec(&a);
    let _ = server.kill();
    let _ = server.wait();
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// The traffic through `ends`; `decrypted` reads the receiving gateway's
/// count of ESP packets decrypted, where there is one to ask.
fn measure(c: &NetNs, s: &NetNs, ends: Ends, decrypted: &dyn Fn() -> Option<u64>) -> Figures {
    let tcp = iperf3(c, s, ends, &[]);
    let tcp_mbit = tcp["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
        / 1e6;
    // UDP flat out; what arrives, per second. 1400-byte IP packets are
    // 1372 bytes of UDP payload (the tunnels' inner MTU is 1400).
    let udp = |len: &str| {
        let r = iperf3(c, s, ends, &["-u", "-b", "0", "-l", len]);
        let sum = &r["end"]["sum"];
        let sent = sum["packets"].as_f64().unwrap_or(0.0);
        let lost = sum["lost_packets"].as_f64().unwrap_or(0.0);
        let secs = sum["seconds"].as_f64().unwrap_or(1.0).max(0.001);
        (sent - lost).max(0.0) / secs
    };
    let secs: f64 = SECONDS.parse().unwrap();
    let flood = |len, batching| {
        udp_flood::flood(c, ends.client, s, ends.server, len, secs, batching).received_per_second()
    };
    let before = decrypted();
    let gso64 = udp_flood::flood(c, ends.client, s, ends.server, 64, secs, Batching::Gso);
    let gso64_decrypted = decrypted()
        .zip(before)
        .map(|(after, before)| after - before);
    Figures {
        gso64_pps: gso64.received_per_second(),
        gso64_received: gso64.received,
        gso64_decrypted,
        tcp_mbit,
        udp64_pps: udp("64"),
        udp1400_pps: udp("1372"),
        flood64_pps: flood(64, Batching::Mmsg),
        flood1400_pps: flood(1372, Batching::Mmsg),
        gso1400_pps: flood(1372, Batching::Gso),
    }
}

/// esprit's figures, with the TUN offloads on or off at both ends.
fn esprit_figures(dir: &Path, offload: bool) -> Figures {
    let (c, s) = namespaces(if offload { "e" } else { "p" });
    let (cc, sc) = (dir.join("client.toml"), dir.join("server.toml"));
    std::fs::write(
        &sc,
        espritd_config("192.0.2.2", "10.1.0.1/24", "responder", offload),
    )
    .unwrap();
    std::fs::write(
        &cc,
        espritd_config("192.0.2.1", "10.8.0.1/24", "initiator", offload),
    )
    .unwrap();
    let server = Espritd::start(&s, &sc, "esprit0");
    let client = Espritd::start(&c, &cc, "esprit0");
    wait_for_tunnel(&c, &|| {
        format!("{}\n{}", client.log_text(), server.log_text())
    });
    measure(&c, &s, INNER, &|| {
        Some(Espritd::worker_total(&sc, "decrypted"))
    })
}

/// The same traffic over the veth alone, no tunnel.
fn bare_veth_figures() -> Figures {
    let (c, s) = namespaces("v");
    measure(&c, &s, OUTER, &|| None)
}

fn strongswan_figures(dir: &Path) -> Figures {
    let (c, s) = namespaces("s");
    let (client, server) = strongswan::site_to_site(
        dir,
        (&c, "192.0.2.1"),
        (&s, "192.0.2.2"),
        PSK,
        &SiteTuning {
            connection: "",
            client_child: "",
            server_child: "",
            charon: strongswan::DEFAULT_TIMERS,
        },
    );
    wait_for_tunnel(&c, &|| strongswan::both_logs(&client, &server));
    measure(&c, &s, INNER, &|| None)
}

#[test]
#[ignore = "a minute of iperf3: run with --release --ignored"]
fn esprit_against_strongswan_libipsec_through_the_same_namespaces() {
    if !privileged_or_skip("throughput comparison") {
        return;
    }
    assert!(
        strongswan::available(),
        "strongSwan's charon with kernel-libipsec is needed"
    );
    if cfg!(debug_assertions) {
        println!("warning: a debug build; run with --release for figures that mean anything");
    }
    let dir = std::env::temp_dir().join(format!("esprit-tput-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ours = esprit_figures(&dir, true);
    let plain = esprit_figures(&dir, false);
    let theirs = strongswan_figures(&dir);
    let bare = bare_veth_figures();
    let _ = std::fs::remove_dir_all(&dir);
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::INFINITY };
    println!(
        "| traffic ({SECONDS} s each) | esprit (1 worker) | esprit, no TUN offloads | strongSwan libipsec | ratio | ratio without offloads | veth, no tunnel | its ratio to strongSwan |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let row = |f: fn(&Figures) -> f64| [f(&ours), f(&plain), f(&theirs), f(&bare)];
    let rows = [
        ("TCP, iperf3", "Mbit/s", row(|f| f.tcp_mbit)),
        ("UDP 64 B, iperf3", "pkt/s", row(|f| f.udp64_pps)),
        ("UDP 1400 B, iperf3", "pkt/s", row(|f| f.udp1400_pps)),
        ("UDP 64 B, sendmmsg flood", "pkt/s", row(|f| f.flood64_pps)),
        (
            "UDP 1400 B, sendmmsg flood",
            "pkt/s",
            row(|f| f.flood1400_pps),
        ),
        ("UDP 64 B, GSO flood", "pkt/s", row(|f| f.gso64_pps)),
        ("UDP 1400 B, GSO flood", "pkt/s", row(|f| f.gso1400_pps)),
    ];
    for (what, unit, [o, p, t, b]) in rows {
        println!(
            "| {what} | {o:.0} {unit} | {p:.0} {unit} | {t:.0} {unit} | {:.1}x | {:.1}x | {b:.0} {unit} | {:.1}x |",
            ratio(o, t),
            ratio(p, t),
            ratio(b, t)
        );
    }
    // Through esprit each datagram of the GSO flood still crossed the
    // tunnel in an ESP packet of its own: batches are cut before ESP.
    for f in [ours, plain] {
        let esp = f.gso64_decrypted.unwrap_or(0);
        println!(
            "esprit, GSO flood of 64 B: {} datagrams received, {esp} ESP packets decrypted",
            f.gso64_received
        );
        assert!(esp >= f.gso64_received, "{f:?}");
    }
    // Every path carried traffic: the comparison measured something.
    for f in [ours, plain, theirs, bare] {
        assert!(
            f.tcp_mbit > 0.0
                && f.udp64_pps > 0.0
                && f.udp1400_pps > 0.0
                && f.flood64_pps > 0.0
                && f.flood1400_pps > 0.0
                && f.gso64_pps > 0.0
                && f.gso1400_pps > 0.0,
            "{f:?}"
        );
    }
}
