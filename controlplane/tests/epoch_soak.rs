//! Zero loss across epochs (issue 4, item 5): numbered UDP datagrams at
//! 20,000 per second from one espritd's inside to the other's while the
//! CHILD SAs are rekeyed every 2 s; the receiver counts losses and
//! duplicates. Outside the default suite (it runs a minute):
//!
//! `cargo test -p controlplane --test epoch_soak -- --ignored --nocapture`
//! (`ESPRIT_SOAK_SECS` changes the duration, `ESPRIT_SOAK_PPS` the rate).

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::daemon::Espritd;
use common::netns::{privileged_or_skip, veth, NetNs};

const PSK: &str = "epoch-soak-psk-0123456789abcdef";

fn config(outside: &str, inside: &str, role: &str, extra: &str) -> String {
    let (local_ts, remote_ts, remote_id, local_id) = if role == "initiator" {
        (
            "10.8.0.0/24",
            "10.1.0.0/24",
            "server.lab.test",
            "client.lab.test",
        )
    } else {
        (
            "10.1.0.0/24",
            "10.8.0.0/24",
            "client.lab.test",
            "server.lab.test",
        )
    };
    format!(
        r#"
[gateway]
outside = ["{outside}:4500"]

[dataplane.inside]
name = "esprit0"
addresses = ["{inside}"]

[ike]
local_id = "{local_id}"
proposals = ["aes128gcm16-prfsha256-x25519"]
esp_proposals = ["aes128gcm16"]
child_lifetime = "3s"
rekey_margin = "1s"
rekey_jitter = "0s"

[[peer]]
name = "other"
role = "{role}"
remote_id = "{remote_id}"
psk = "{PSK}"
local_ts = ["{local_ts}"]
remote_ts = ["{remote_ts}"]
grace_period = "1s"
{extra}
"#
    )
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "a minute long: run with --ignored"]
fn no_datagram_is_lost_or_duplicated_across_epoch_switches() {
    if !privileged_or_skip("epoch soak") {
        return;
    }
    let secs = env_or("ESPRIT_SOAK_SECS", 60);
    let pps = env_or("ESPRIT_SOAK_PPS", 20_000);
    let id = std::process::id();
    let c = NetNs::new(&format!("esprit-kc-{id}"));
    let s = NetNs::new(&format!("esprit-ks-{id}"));
    veth(&c, "veth-c", "192.0.2.1/24", &s, "veth-s", "192.0.2.2/24");
    let dir = std::env::temp_dir().join(format!("esprit-soak-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let (cc, sc) = (dir.join("client.toml"), dir.join("server.toml"));
    std::fs::write(&sc, config("192.0.2.2", "10.1.0.1/24", "responder", "")).unwrap();
    std::fs::write(
        &cc,
        config(
            "192.0.2.1",
            "10.8.0.1/24",
            "initiator",
            "remote = \"192.0.2.2\"",
        ),
    )
    .unwrap();
    let server = Espritd::start(&s, &sc, "esprit0");
    let client = Espritd::start(&c, &cc, "esprit0");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c
        .try_exec(&["ping", "-c", "1", "-W", "1", "-I", "10.8.0.1", "10.1.0.1"])
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "no tunnel:\n{}",
            client.log_text()
        );
    }

    // A deeper TUN queue than the kernel's 500: when the shared machine
    // starves a worker for tens of ms, the kernel drops at the TUN (counted
    // as "TX dropped" on esprit0), which says nothing about epochs.
    for ns in [&c, &s] {
        ns.exec(&["ip", "link", "set", "dev", "esprit0", "txqueuelen", "10000"]);
    }
    let total = secs * pps;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let rx = s.run(move || {
        let sock = std::net::UdpSocket::bind("10.1.0.1:9000").unwrap();
        // A deep receive buffer: the test counts the tunnel's losses, not ours.
        let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
        dataplane::testkit::set_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 64 << 20)
            .unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        ready_tx.send(()).unwrap();
        let mut seen = HashSet::with_capacity(total as usize);
        let mut dups = 0u64;
        let mut buf = [0u8; 64];
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            if n >= 8 && !seen.insert(u64::from_be_bytes(buf[..8].try_into().unwrap())) {
                dups += 1;
            }
        }
        // Runs of missing numbers, to tell one lost burst from scattered drops.
        let mut missing: Vec<(u64, u64)> = Vec::new();
        for i in (0..total).filter(|i| !seen.contains(i)) {
            match missing.last_mut() {
                Some((_, end)) if *end + 1 == i => *end = i,
                _ => missing.push((i, i)),
            }
        }
        (seen.len() as u64, dups, missing)
    });
    ready_rx.recv().unwrap();
    let tx = c.run(move || {
        let sock = std::net::UdpSocket::bind("10.8.0.1:0").unwrap();
        let start = Instant::now();
        let gap = Duration::from_nanos(1_000_000_000 / pps);
        for i in 0..total {
            if let Some(w) = (start + gap * i as u32).checked_duration_since(Instant::now()) {
                std::thread::sleep(w);
            }
            let _ = sock.send_to(&i.to_be_bytes(), "10.1.0.1:9000");
        }
        start.elapsed()
    });
    let sent_in = tx.join().unwrap();
    let (received, dups, missing) = rx.join().unwrap();
    if !missing.is_empty() {
        let shown: Vec<String> = missing
            .iter()
            .take(20)
            .map(|(a, b)| format!("{a}..={b} (t={:.3}s)", *a as f64 / pps as f64))
            .collect();
        println!("missing runs ({}): {}", missing.len(), shown.join(", "));
    }
    // Datagrams the kernel dropped at the client's TUN queue never reached
    // esprit: its worker was not scheduled for that long (an overloaded
    // machine), which is not an epoch switch's doing. Reported apart.
    let tun_dropped = tun_tx_dropped(&c);
    let switches = client.log_text().matches("epoch confirmed").count();
    for (name, cfg) in [("client", &cc), ("server", &sc)] {
        println!("{name} drops: {}", Espritd::stats(cfg)["data"]["drops"]);
    }
    println!(
        "epoch soak: {total} datagrams in {sent_in:.1?} ({pps}/s), {received} received, {} lost ({tun_dropped} of them dropped by the kernel at the client's TUN queue before esprit saw them), {dups} duplicated, {switches} epoch switches at the client",
        total - received
    );
    assert!(
        switches as u64 >= secs / 2,
        "the CHILD SAs were rekeyed every ~2 s:\n{}",
        client.log_text()
    );
    assert_eq!(dups, 0);
    assert_eq!(
        received + tun_dropped,
        total,
        "datagrams lost across epoch switches\n{}",
        server.log_text()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// TX drops of the namespace's TUN device (kernel queue full).
fn tun_tx_dropped(ns: &NetNs) -> u64 {
    let out = ns.try_exec(&["ip", "-s", "-j", "link", "show", "esprit0"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v[0]["stats64"]["tx"]["dropped"].as_u64().unwrap_or(0)
}
