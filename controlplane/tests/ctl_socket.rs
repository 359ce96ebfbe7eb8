//! The control socket and espritctl against real daemons in network
//! namespaces: every request, reload under traffic (nothing lost, nothing
//! rekeyed), SIGHUP, bad files, permissions, and hostile clients.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::daemon::Espritd;
use common::netns::{privileged_or_skip, veth, NetNs};
use serde_json::Value;

const KEY_AB: &str = "00112233445566778899aabbccddeeff";
const KEY_BA: &str = "ffeeddccbbaa99887766554433221100";

/// A manual tunnel; `keys` are (inbound, outbound), and each key carries
/// its own salt so that the peer's mirrored tunnel matches.
fn manual(
    name: &str,
    remote: &str,
    local_ts: &str,
    remote_ts: &str,
    spis: (u32, u32),
    keys: (&str, &str),
) -> String {
    let salt = |k: &str| if k == KEY_AB { "01020304" } else { "05060708" };
    format!(
        r#"
[[manual_tunnel]]
name = "{name}"
remote = "{remote}:4500"
local_ts = ["{local_ts}"]
remote_ts = ["{remote_ts}"]
[manual_tunnel.inbound]
spi = {}
algorithm = "aes128gcm16"
key = "{}"
salt = "{}"
[manual_tunnel.outbound]
spi = {}
algorithm = "aes128gcm16"
key = "{}"
salt = "{}"
"#,
        spis.0,
        keys.0,
        salt(keys.0),
        spis.1,
        keys.1,
        salt(keys.1)
    )
}

fn head(outside: &str, inside: &str) -> String {
    format!("[gateway]\noutside = [\"{outside}:4500\"]\n\n[dataplane]\nworkers = 2\n\n[dataplane.inside]\nname = \"esprit0\"\naddresses = [\"{inside}\"]\n")
}

struct Pair {
    a: NetNs,
    b: NetNs,
    dir: PathBuf,
    da: Espritd,
    db: Espritd,
    cfg_b: PathBuf,
    b_text: String,
}

impl Pair {
    fn new(tag: &str) -> Option<Pair> {
        Pair::with(tag, "")
    }

    /// `b_extra` is appended to B's config.
    fn with(tag: &str, b_extra: &str) -> Option<Pair> {
        if !privileged_or_skip("ctl_socket") {
            return None;
        }
        let id = format!("{}{tag}", std::process::id());
        let a = NetNs::new(&format!("esprit-ca-{id}"));
        let b = NetNs::new(&format!("esprit-cb-{id}"));
        veth(&a, "veth-a", "192.0.2.1/24", &b, "veth-b", "192.0.2.2/24");
        let dir = std::env::temp_dir().join(format!("esprit-ctl-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let a_text = head("192.0.2.1", "10.2.0.1/24")
            + &manual(
                "to-b",
                "192.0.2.2",
                "10.2.0.0/24",
                "10.1.0.0/24",
                (0x1001, 0x2002),
                (KEY_BA, KEY_AB),
            );
        let b_text = head("192.0.2.2", "10.1.0.1/24")
            + &manual(
                "to-a",
                "192.0.2.1",
                "10.1.0.0/24",
                "10.2.0.0/24",
                (0x2002, 0x1001),
                (KEY_AB, KEY_BA),
            )
            + b_extra;
        let (cfg_a, cfg_b) = (dir.join("a.toml"), dir.join("b.toml"));
        std::fs::write(&cfg_a, &a_text).unwrap();
        std::fs::write(&cfg_b, &b_text).unwrap();
        let da = Espritd::start(&a, &cfg_a, "esprit0");
        let db = Espritd::start(&b, &cfg_b, "esprit0");
        let b_text = std::fs::read_to_string(&cfg_b).unwrap();
        Some(Pair {
            a,
            b,
            dir,
            da,
            db,
            cfg_b,
            b_text,
        })
    }

    fn sock_b(&self) -> PathBuf {
        Espritd::socket(&self.cfg_b)
    }

    fn ctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_espritctl"))
            .arg("--socket")
            .arg(self.sock_b())
            .args(args)
            .output()
            .unwrap()
    }

    fn ctl_json(&self, args: &[&str]) -> Value {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = self.ctl(&full);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// The first packets wait for ARP on a loaded machine: allow a few tries.
    fn wait_ping(&self) -> bool {
        (0..5).any(|_| self.ping())
    }

    fn ping(&self) -> bool {
        self.a
            .try_exec(&["ping", "-c", "1", "-W", "1", "-I", "10.2.0.1", "10.1.0.1"])
            .status
            .success()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn espritctl_shows_and_steers_a_running_daemon() {
    let Some(p) = Pair::new("s") else { return };
    assert!(p.wait_ping());

    let st = p.ctl_json(&["status"]);
    assert_eq!(st["ok"], true, "{st}");
    assert_eq!(st["data"]["manual_tunnels"], 1);
    assert_eq!(st["data"]["workers"], 2);
    assert!(st["data"]["decrypted"].as_u64().unwrap() >= 1);

    let human = p.ctl(&["tunnels"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(human.status.success());
    assert!(
        text.starts_with("NAME") && text.contains("to-a") && text.contains("0x00002002"),
        "{text}"
    );

    let sas = p.ctl_json(&["sas"]);
    let rows = sas["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().any(|r| r["direction"] == "in"
        && r["spi"] == "0x00002002"
        && r["packets"].as_u64().unwrap() >= 1));

    let stats = p.ctl_json(&["stats"]);
    assert_eq!(stats["data"]["workers"].as_array().unwrap().len(), 2);
    assert!(stats["data"]["drops"]["replay"].is_u64());
    // The human tables show every worker counter and the IKE ones too.
    let human = p.ctl(&["stats"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(human.status.success());
    for column in [
        "DECRYPTED",
        "HANDED_OFF",
        "TUN_RX_SUPER_PACKETS",
        "ICMP_TOO_BIG_SENT",
        "replay",
        "ike_sas_established",
    ] {
        assert!(text.contains(column), "{column} in {text}");
    }

    // terminate takes the tunnel out of the data plane, initiate puts it back.
    assert!(p.ctl(&["terminate", "to-a"]).status.success());
    assert!(!p.ping(), "traffic crossed a terminated tunnel");
    let filtered = p.ctl_json(&["tunnels", "--state", "down"]);
    assert_eq!(filtered["data"].as_array().unwrap().len(), 1);
    assert!(p.ctl(&["initiate", "to-a"]).status.success());
    assert!(p.wait_ping());

    // Refusals: exit 1 with the reason.
    let r = p.ctl(&["rekey", "to-a"]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("manual tunnel"));
    assert_eq!(p.ctl(&["terminate", "nope"]).status.code(), Some(1));
    assert_eq!(p.ctl(&["log-level", "debug"]).status.code(), Some(0));
    assert_eq!(p.ctl(&["log-level", "=[bad"]).status.code(), Some(1));

    // Not running: exit 2; not permitted: exit 3.
    let gone = Command::new(env!("CARGO_BIN_EXE_espritctl"))
        .args(["--socket", "/nonexistent/ctl.sock", "status"])
        .output()
        .unwrap();
    assert_eq!(gone.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("not running"));
    let nobody = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_espritctl"),
            "--socket",
        ])
        .arg(p.sock_b())
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(
        nobody.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&nobody.stderr)
    );
}

/// UDP datagrams from A to B's inside at a steady rate; returns how many
/// of `n` arrived, while `during` runs halfway through.
fn stream_across(p: &Pair, n: u32, during: impl FnOnce()) -> u32 {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let rx = p.b.run(move || {
        let s = std::net::UdpSocket::bind("10.1.0.1:7000").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        ready_tx.send(()).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        let mut buf = [0u8; 64];
        while let Ok((len, _)) = s.recv_from(&mut buf) {
            if len == 4 {
                seen.insert(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
            }
        }
        seen.len() as u32
    });
    ready_rx.recv().unwrap();
    let tx = p.a.run(move || {
        let s = std::net::UdpSocket::bind("10.2.0.1:0").unwrap();
        let start = Instant::now();
        for i in 0..n {
            // 2,000 datagrams per second.
            let due = start + Duration::from_micros(500) * i;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            s.send_to(&i.to_be_bytes(), "10.1.0.1:7000").unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(1000));
    during();
    tx.join().unwrap();
    rx.join().unwrap()
}

#[test]
fn an_unrelated_reload_under_traffic_loses_nothing_and_rekeys_nothing() {
    let Some(p) = Pair::new("r") else { return };
    assert!(p.wait_ping());
    let before = p.ctl_json(&["sas"]);
    // Every drop reason but no_route: the kernel sends the TUN its own IPv6
    // chatter (router and multicast listener messages) that no tunnel routes.
    let drops_now = || -> u64 {
        let st = p.ctl_json(&["stats"]);
        let drops = st["data"]["drops"].as_object().unwrap().clone();
        drops
            .iter()
            .filter(|(k, _)| *k != "no_route")
            .filter_map(|(_, v)| v.as_u64())
            .sum()
    };
    let drops_before = drops_now();
    let received = stream_across(&p, 6000, || {
        let extra = manual(
            "to-c",
            "192.0.2.9",
            "10.1.0.0/24",
            "10.9.0.0/24",
            (0x3003, 0x4004),
            (KEY_AB, KEY_BA),
        );
        std::fs::write(&p.cfg_b, format!("{}{extra}", p.b_text)).unwrap();
        let r = p.ctl_json(&["reload"]);
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["data"]["manual_tunnels"]["added"][0], "to-c");
        assert_eq!(r["data"]["manual_tunnels"]["unchanged"], 1);
    });
    assert_eq!(
        received,
        6000,
        "datagrams lost across the reload\n--- B's stats:\n{}\n--- B's log:\n{}\n--- A's log:\n{}",
        p.ctl_json(&["stats"]),
        p.db.log_text(),
        p.da.log_text()
    );
    let after = p.ctl_json(&["sas"]);
    let spis = |v: &Value| {
        let mut s: Vec<String> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["spi"].as_str().unwrap().to_string())
            .collect();
        s.sort();
        s
    };
    let old = spis(&before);
    let new = spis(&after);
    assert!(
        old.iter().all(|s| new.contains(s)),
        "the unchanged tunnel's SAs were replaced: {old:?} -> {new:?}"
    );
    assert_eq!(new.len(), 4, "the added tunnel is in: {new:?}");
    let inbound = after["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["spi"] == "0x00002002")
        .unwrap()
        .clone();
    assert!(
        inbound["packets"].as_u64().unwrap() >= 6000,
        "its counters continued: {inbound}"
    );
    assert_eq!(
        drops_now(),
        drops_before,
        "no drop counter moved across the reload"
    );

    // A bad file changes nothing and says where it is wrong.
    std::fs::write(&p.cfg_b, format!("{}\n[dataplane]\nburts = 3\n", p.b_text)).unwrap();
    let bad = p.ctl(&["reload"]);
    assert_eq!(bad.status.code(), Some(1));
    let why = String::from_utf8_lossy(&bad.stderr);
    assert!(
        why.contains("nothing changed") && why.contains("b.toml:"),
        "{why}"
    );
    assert_eq!(spis(&p.ctl_json(&["sas"])), new);

    // SIGHUP reloads too: back to the original file, to-c goes.
    std::fs::write(&p.cfg_b, &p.b_text).unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(p.db.pid() as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while p.ctl_json(&["sas"])["data"].as_array().unwrap().len() != 2 {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload:\n{}",
            p.db.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(p.wait_ping());
}

fn send_raw(sock: &Path, bytes: &[u8]) -> String {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let mut reply = String::new();
    let _ = BufReader::new(&mut s).read_line(&mut reply);
    reply
}

#[test]
fn hostile_clients_get_errors_and_the_daemon_keeps_serving() {
    let Some(p) = Pair::new("h") else { return };
    let sock = p.sock_b();
    assert!(send_raw(&sock, b"hello\n").contains("\"ok\":false"));
    assert!(send_raw(&sock, b"{\"cmd\":\"rm -rf\"}\n").contains("bad request"));
    assert!(send_raw(&sock, &[0xff, 0xfe, 0x00, b'\n']).contains("\"ok\":false"));
    assert!(send_raw(&sock, b"{\"cmd\":\"status\",\"extra\":true}\n").contains("\"ok\":false"));
    // A line longer than the limit: an error, then the connection closes.
    let mut big = vec![b'x'; 70 * 1024];
    big.push(b'\n');
    assert!(send_raw(&sock, &big).contains("longer than"));
    // Many clients at once, some silent, one half a request: the daemon
    // answers a well-behaved client all the same.
    let mut held: Vec<UnixStream> = (0..40)
        .filter_map(|_| UnixStream::connect(&sock).ok())
        .collect();
    for s in held.iter_mut().take(5) {
        let _ = s.write_all(b"{\"cmd\":");
    }
    let mut refused = 0;
    for s in held.iter_mut() {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 256];
        if let Ok(n) = s.read(&mut buf) {
            if String::from_utf8_lossy(&buf[..n]).contains("too many") {
                refused += 1;
            }
        }
    }
    assert!(
        refused >= 8,
        "clients beyond the limit are refused, saw {refused}"
    );
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    let st = p.ctl_json(&["status"]);
    assert_eq!(st["ok"], true);
    assert!(p.wait_ping(), "the data plane kept working");
}

#[test]
fn prometheus_metrics_are_scraped() {
    let Some(p) = Pair::with("m", "\n[metrics]\nlisten = \"127.0.0.1:9180\"\n") else {
        return;
    };
    assert!(p.wait_ping());
    assert!(
        p.db.log_text().contains("metrics at"),
        "{}",
        p.db.log_text()
    );
    let page = || {
        p.b.run(|| {
            let mut s = std::net::TcpStream::connect("127.0.0.1:9180").expect("metrics listener");
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: esprit\r\n\r\n")
                .unwrap();
            let mut r = String::new();
            s.read_to_string(&mut r).unwrap();
            r
        })
        .join()
        .unwrap()
    };
    let decrypted = |text: &str| -> u64 {
        text.lines()
            .filter(|l| {
                l.starts_with("esprit_worker_packets_total") && l.contains("kind=\"decrypted\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    // The page is rendered about once a second: the first one may be from
    // before the ping got through.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut text = page();
    while decrypted(&text) == 0 || !text.contains("esprit_tunnel_tx_bytes{tunnel=\"to-a\"}") {
        assert!(Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(300));
        text = page();
    }
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains("# TYPE esprit_drops_total counter"));
    assert!(text.contains("esprit_drops_total{worker=\"0\",reason=\"replay\"} 0"));
    assert!(text.contains("esprit_tunnels{kind=\"manual\",state=\"up\"} 1"));
    // Manual tunnels have no epochs.
    assert!(text.contains("esprit_epoch_switches_total 0"), "{text}");
    assert!(
        text.contains("esprit_tunnel_tx_bytes{tunnel=\"to-a\"}"),
        "{text}"
    );
    assert!(decrypted(&text) >= 1, "{text}");
}
