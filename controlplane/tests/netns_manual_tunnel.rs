//! Two espritd with manually keyed SAs, each with a TUN inside, joined by a
//! veth in network namespaces: ping and a TCP transfer whose content is
//! checked cross the tunnel. Root only (CI runs it as root).

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::daemon::Espritd;
use common::netns::{privileged_or_skip, veth, NetNs};

const KEY_AB: &str = "00112233445566778899aabbccddeeff";
const KEY_BA: &str = "ffeeddccbbaa99887766554433221100";

/// One gateway's view of the tunnel.
struct Side<'a> {
    outside: &'a str,
    inside_addr: &'a str,
    remote: &'a str,
    local_ts: &'a str,
    remote_ts: &'a str,
    inbound: (u32, &'a str),
    outbound: (u32, &'a str),
    /// Raw ESP (IP protocol 50) instead of ESP-in-UDP.
    raw_esp: bool,
}

fn config(side: &Side) -> String {
    let Side {
        outside,
        inside_addr,
        remote,
        local_ts,
        remote_ts,
        ..
    } = side;
    let (in_spi, in_key) = side.inbound;
    let (out_spi, out_key) = side.outbound;
    let (raw, encap, remote) = if side.raw_esp {
        ("true", "esp", remote.to_string())
    } else {
        ("false", "udp", format!("{remote}:4500"))
    };
    format!(
        r#"
[gateway]
outside = ["{outside}:4500"]
raw_esp = {raw}

[dataplane]
workers = 2
burst = 32

[dataplane.inside]
kind = "tun"
name = "esprit0"
mtu = 1400
addresses = ["{inside_addr}"]

[[manual_tunnel]]
name = "peer"
remote = "{remote}"
encap = "{encap}"
local_ts = ["{local_ts}"]
remote_ts = ["{remote_ts}"]
[manual_tunnel.inbound]
spi = {in_spi}
algorithm = "aes128gcm16"
key = "{in_key}"
salt = "01020304"
[manual_tunnel.outbound]
spi = {out_spi}
algorithm = "aes128gcm16"
key = "{out_key}"
salt = "01020304"
"#
    )
}

/// A daemon killed (SIGTERM, then SIGKILL) when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(ns: &NetNs, cfg_path: &std::path::Path) -> Daemon {
    common::daemon::give_own_control_socket(cfg_path);
    let child = ns
        .command(env!("CARGO_BIN_EXE_espritd"))
        .arg("--config")
        .arg(cfg_path)
        .arg("--stats-interval")
        .arg("1")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn espritd");
    let d = Daemon(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = ns.try_exec(&["ip", "-o", "link", "show", "esprit0"]);
        if out.status.success() && String::from_utf8_lossy(&out.stdout).contains(",UP") {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "espritd in {} did not bring esprit0 up",
            ns.name
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ping_and_tcp_cross_a_manual_esp_in_udp_tunnel_between_two_espritd() {
    if privileged_or_skip("ping_and_tcp_cross_a_manual_esp_in_udp_tunnel") {
        ping_and_tcp(false);
    }
}

#[test]
fn ping_and_tcp_cross_a_manual_raw_esp_tunnel_between_two_espritd() {
    if privileged_or_skip("ping_and_tcp_cross_a_manual_raw_esp_tunnel") {
        ping_and_tcp(true);
    }
}

fn ping_and_tcp(raw_esp: bool) {
    let tag = format!("{}{}", std::process::id(), if raw_esp { "r" } else { "u" });
    let a = NetNs::new(&format!("esprit-ma-{tag}"));
    let b = NetNs::new(&format!("esprit-mb-{tag}"));
    veth(&a, "veth-a", "192.0.2.1/24", &b, "veth-b", "192.0.2.2/24");

    let dir = std::env::temp_dir().join(format!("esprit-manual-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg_a = dir.join("a.toml");
    let cfg_b = dir.join("b.toml");
    let side_a = Side {
        outside: "192.0.2.1",
        inside_addr: "10.1.0.1/24",
        remote: "192.0.2.2",
        local_ts: "10.1.0.0/24",
        remote_ts: "10.2.0.0/24",
        inbound: (0x1001, KEY_BA),
        outbound: (0x2002, KEY_AB),
        raw_esp,
    };
    let side_b = Side {
        outside: "192.0.2.2",
        inside_addr: "10.2.0.1/24",
        remote: "192.0.2.1",
        local_ts: "10.2.0.0/24",
        remote_ts: "10.1.0.0/24",
        inbound: (0x2002, KEY_AB),
        outbound: (0x1001, KEY_BA),
        raw_esp,
    };
    std::fs::write(&cfg_a, config(&side_a)).unwrap();
    std::fs::write(&cfg_b, config(&side_b)).unwrap();

    let _da = start(&a, &cfg_a);
    let _db = start(&b, &cfg_b);

    // The first packet waits for ARP on a loaded machine: warm the path up.
    let _ = (0..5).any(|_| {
        a.try_exec(&["ping", "-c", "1", "-W", "1", "-I", "10.1.0.1", "10.2.0.1"])
            .status
            .success()
    });
    let ping = a.try_exec(&[
        "ping", "-c", "5", "-i", "0.2", "-W", "2", "-I", "10.1.0.1", "10.2.0.1",
    ]);
    let text = String::from_utf8_lossy(&ping.stdout);
    assert!(
        ping.status.success(),
        "ping through the tunnel failed:\n{text}"
    );
    assert!(text.contains("5 received"), "{text}");

    // 4 MiB of patterned data, A -> B, compared byte for byte at B.
    common::netns::tcp_transfer(&b, &a, "10.2.0.1:5001", 4 << 20);

    // A sender's UDP_SEGMENT batches: A's kernel hands its worker each
    // batch as one packet, which it cuts before ESP; every datagram
    // arrives whole and in order.
    let super_before = Espritd::worker_total(&cfg_a, "tun_rx_super_packets");
    let got =
        common::udp_flood::segmented_exchange(&a, "10.1.0.1:0", &b, "10.2.0.1:5302", 100, (50, 20));
    let want: Vec<Vec<u8>> = (0..50 * 20)
        .map(|i| common::udp_flood::numbered(i, 100))
        .collect();
    assert_eq!(got.len(), want.len(), "UDP datagrams through the tunnel");
    let mut sorted = got.clone();
    sorted.sort();
    let first_bad = got.iter().zip(&want).position(|(g, w)| g != w);
    assert!(
        sorted == want,
        "UDP datagrams differ, not only in order (first at {first_bad:?})"
    );
    let order: Vec<u32> = got
        .iter()
        .take(45)
        .map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]))
        .collect();
    assert!(got == want, "UDP datagrams out of order: {order:?}");
    assert_eq!(
        Espritd::worker_total(&cfg_a, "tun_rx_super_packets") - super_before,
        50,
        "one super-packet per UDP_SEGMENT send"
    );

    // The TUN offloads ran, and the workers' counters say so: A's kernel
    // handed its worker TCP super-packets, and B's worker merged segments
    // back into them for its kernel. B merges only segments of one flow
    // that come in one burst. Over UDP, GRO hands B dozens at a time (over
    // a hundred merges per run); raw ESP has no GRO, so B's worker reads
    // them nearly one by one and may merge none (0 to 5 per run here).
    assert!(Espritd::worker_total(&cfg_a, "tun_rx_super_packets") > 0);
    if !raw_esp {
        assert!(Espritd::worker_total(&cfg_b, "tun_tx_super_packets") > 0);
    }

    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reflecting_gateway_sends_each_packet_back_through_the_tunnel() {
    if !privileged_or_skip("a_reflecting_gateway_sends_each_packet_back") {
        return;
    }
    let tag = format!("{}f", std::process::id());
    let a = NetNs::new(&format!("esprit-ma-{tag}"));
    let b = NetNs::new(&format!("esprit-mb-{tag}"));
    veth(&a, "veth-a", "192.0.2.1/24", &b, "veth-b", "192.0.2.2/24");
    let dir = std::env::temp_dir().join(format!("esprit-manual-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    let client = Side {
        outside: "192.0.2.1",
        inside_addr: "10.2.0.1/24",
        remote: "192.0.2.2",
        local_ts: "10.2.0.0/24",
        remote_ts: "10.1.0.0/24",
        inbound: (0x1001, KEY_BA),
        outbound: (0x2002, KEY_AB),
        raw_esp: false,
    };
    let gateway = Side {
        outside: "192.0.2.2",
        inside_addr: "10.1.0.1/24",
        remote: "192.0.2.1",
        local_ts: "10.1.0.0/24",
        remote_ts: "10.2.0.0/24",
        inbound: (0x2002, KEY_AB),
        outbound: (0x1001, KEY_BA),
        raw_esp: false,
    };
    let (cfg_a, cfg_b) = (dir.join("a.toml"), dir.join("b.toml"));
    std::fs::write(&cfg_a, config(&client)).unwrap();
    let reflecting = config(&gateway).replace("kind = \"tun\"", "kind = \"reflect\"");
    std::fs::write(&cfg_b, reflecting).unwrap();
    let _da = start(&a, &cfg_a);
    common::daemon::give_own_control_socket(&cfg_b);
    let db = Daemon(
        b.command(env!("CARGO_BIN_EXE_espritd"))
            .arg("--config")
            .arg(&cfg_b)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let got = a.run(|| {
        let s = std::net::UdpSocket::bind("10.2.0.1:5000").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 64];
        // The reflecting espritd was only spawned, and the client's route
        // may not be in yet: a first datagram, again until it comes back,
        // tells when the tunnel is up (a fixed wait lost the first
        // datagram on a loaded machine).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let _ = s.send_to(&[0xff; 32], "10.1.0.99:7");
            if s.recv_from(&mut buf)
                .is_ok_and(|(len, _)| buf[..len] == [0xff; 32])
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the reflecting gateway never answered"
            );
        }
        let mut n = 0;
        for i in 0..20u8 {
            s.send_to(&[i; 32], "10.1.0.99:7").unwrap();
            // Its echo; a late echo of an earlier datagram is skipped.
            while let Ok((len, from)) = s.recv_from(&mut buf) {
                if buf[..len] == [i; 32] {
                    n += u32::from(from.to_string() == "10.1.0.99:7");
                    break;
                }
            }
        }
        n
    });
    assert_eq!(
        got.join().unwrap(),
        20,
        "every datagram came back from the address it was sent to"
    );
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}
