//! esprit-pktgen's manual mode against espritd's daemon: 100 clients, each
//! with its own SA pair from one gen-config file, through a gateway whose
//! inside reflects every packet.

mod common;

use std::process::Command;

use controlplane::ctl::proto::Request;
use std::time::Duration;

use perf::pktgen::cli::run_manual;
use perf::pktgen::session::SessionOptions;
use perf::pktgen::traffic::{SizeMix, Stop, TrafficSpec};

fn options(size: SizeMix, rate: Option<f64>, count: u64, threads: usize) -> SessionOptions {
    windowed(size, rate, count, threads, None)
}

fn windowed(
    size: SizeMix,
    rate: Option<f64>,
    count: u64,
    threads: usize,
    window: Option<usize>,
) -> SessionOptions {
    SessionOptions {
        threads,
        traffic: TrafficSpec {
            size,
            rate,
            stop: Stop::Count(count),
            drain: Duration::from_secs(2),
            burst: 32,
            window,
            train: 1,
            shuffle: false,
        },
        progress: false,
        gateway_pid: None,
    }
}

#[test]
fn a_hundred_manual_clients_get_every_packet_back() {
    let gw = common::gateway("hundred", 100, 4, 2);
    // The gateway runs in this process here, so its CPU time includes the
    // generator's threads.
    let opt = SessionOptions {
        gateway_pid: Some(std::process::id()),
        ..options(SizeMix::Fixed(64), Some(20_000.0), 20_000, 2)
    };
    let r = run_manual(&gw.config, None, &opt).unwrap();
    assert_eq!(r.sent, 20_000);
    assert_eq!(r.received, r.sent, "{}", r.table());
    assert_eq!((r.lost, r.duplicated, r.late), (0, 0, 0));
    assert_eq!(r.errors, Default::default(), "{}", r.table());
    assert_eq!((r.clients, r.sockets, r.threads), (100, 4, 2));
    // The gateway opened and sealed each packet once.
    let t = gw.daemon.totals();
    assert_eq!((t.decrypted, t.encrypted), (20_000, 20_000));
    // Paced at 20,000/s: about a second, not a burst.
    assert!(r.seconds > 0.7 && r.seconds < 3.0, "{}", r.seconds);
    let l = &r.latency_us;
    assert!(l.p50 > 0.0 && l.p50 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max);
    assert_eq!(r.rx_gbps, r.tx_gbps, "all 64-byte packets came back");
    let g = &r.generator;
    let gateway = r.gateway.as_ref().expect("the gateway's CPU time was read");
    let generator_ns = g.user_ns_per_round_trip + g.system_ns_per_round_trip;
    assert!(
        gateway.cores > 0.0 && gateway.ns_per_round_trip > 0.0,
        "{gateway:?}"
    );
    // /proc counts in 10 ms ticks: allow them.
    assert!(
        gateway.ns_per_round_trip + 2.0 * 10e6 / 20_000.0 >= generator_ns,
        "the process's time includes its generator threads: {gateway:?} {g:?}"
    );
    assert!(r.table().contains("us CPU per round trip"), "{}", r.table());
    // The timeline carries both processes' CPU time, for per-round figures.
    let first = r.timeline.first().unwrap();
    assert_eq!(
        (first.cpu.generator_cpu_ns, first.cpu.gateway_cpu_ns),
        (Some(0), Some(0))
    );
    let last = r.timeline.last().unwrap();
    assert!(
        last.cpu.generator_cpu_ns.is_some_and(|ns| ns > 0),
        "{last:?}"
    );
    assert!(
        last.cpu.gateway_cpu_ns >= last.cpu.generator_cpu_ns,
        "{last:?}"
    );
}

#[test]
fn ipv6_inner_clients_get_every_packet_back() {
    // A gateway per size: a second pktgen run would start its sequence
    // numbers again, which the first run's replay windows refuse.
    for (size, count) in [(SizeMix::Fixed(64), 6_000), (SizeMix::Fixed(1400), 3_000)] {
        let mut gw = common::gateway_with("ipv6", 60, 2, 1, true);
        assert_eq!(
            indexed_pools(&mut gw),
            serde_json::json!([{ "prefix": "fd00:0:0:128::/122", "hosts": 60 }]),
            "the clients' IPv6 routes are found by index"
        );
        let before = gw.daemon.totals();
        let r = run_manual(&gw.config, None, &options(size, Some(20_000.0), count, 1)).unwrap();
        assert_eq!(r.sent, count, "{}", r.table());
        assert_eq!(r.received, r.sent, "{}", r.table());
        assert_eq!((r.lost, r.duplicated, r.late), (0, 0, 0));
        assert_eq!(r.errors, Default::default(), "{}", r.table());
        let t = gw.daemon.totals();
        assert_eq!(
            (
                t.decrypted - before.decrypted,
                t.encrypted - before.encrypted
            ),
            (count, count),
            "the gateway opened and sealed each IPv6 packet once"
        );
    }
}

#[test]
fn shuffled_clients_take_their_turns_out_of_set_up_order() {
    // 150 packets over 100 clients: one round, then the first 50 clients
    // of the send order again. The gateway's inbound SA counters show
    // which clients those were.
    let twice = |shuffle: bool| {
        let mut gw = common::gateway(if shuffle { "shuffled" } else { "ordered" }, 100, 1, 1);
        let mut opt = options(SizeMix::Fixed(64), Some(20_000.0), 150, 1);
        opt.traffic.shuffle = shuffle;
        let r = run_manual(&gw.config, None, &opt).unwrap();
        assert_eq!(r.shuffled, shuffle);
        assert_eq!((r.sent, r.received, r.lost), (150, 150, 0), "{}", r.table());
        let reply = gw.daemon.handle(Request::Sas {});
        assert!(reply.ok, "{reply:?}");
        let inbound: Vec<_> = reply
            .data
            .as_array()
            .expect("a list of SAs")
            .iter()
            .filter(|sa| sa["direction"] == "in")
            .map(|sa| {
                (
                    sa["tunnel"].as_u64().unwrap(),
                    sa["packets"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(inbound.len(), 100);
        let mut got_two: Vec<u64> = inbound.iter().filter(|x| x.1 == 2).map(|x| x.0).collect();
        got_two.sort_unstable();
        assert_eq!(got_two.len(), 50, "{inbound:?}");
        let mut tunnels: Vec<u64> = inbound.iter().map(|x| x.0).collect();
        tunnels.sort_unstable();
        got_two == tunnels[..50]
    };
    assert!(
        twice(false),
        "in set-up order the first 50 tunnels go twice"
    );
    assert!(!twice(true), "shuffled, another 50 do");
}

#[test]
fn imix_flat_out_accounts_for_every_packet() {
    let gw = common::gateway("imix", 10, 2, 1);
    let r = run_manual(&gw.config, None, &options(SizeMix::Imix, None, 30_000, 2)).unwrap();
    assert_eq!(r.sent + r.errors.tx_dropped, 30_000, "{}", r.table());
    assert_eq!(r.received + r.lost, r.sent);
    assert!(r.received > 0);
    assert_eq!(r.duplicated, 0);
    assert_eq!(
        r.errors.auth_failed + r.errors.unknown_spi + r.errors.foreign,
        0
    );
    assert!((r.mean_inner_bytes - 354.33).abs() < 0.01);
    assert!(r.timeline.len() >= 2);
}

/// The routes the gateway indexes, from its status.
fn indexed_pools(gw: &mut common::Gateway) -> serde_json::Value {
    let reply = gw.daemon.handle(Request::Status {});
    assert!(reply.ok, "{reply:?}");
    reply.data["indexed_pools"].clone()
}

/// The config with only the tunnels in `range` (pktgen's client list for
/// one round: a fresh pktgen starts its sequence numbers again, which the
/// gateway's replay windows would refuse on tunnels used before).
fn with_tunnels(text: &str, range: std::ops::Range<usize>) -> String {
    let mut parts = text.split("\n[[manual_tunnel]]");
    let head = parts.next().unwrap().to_string();
    parts
        .skip(range.start)
        .take(range.len())
        .fold(head, |t, tunnel| t + "\n[[manual_tunnel]]" + tunnel)
}

#[test]
fn the_clients_routes_are_indexed_and_a_reload_can_hash_them_without_loss() {
    let mut gw = common::gateway("pools", 999, 4, 1);
    let expected = serde_json::json!([{ "prefix": "10.128.0.0/22", "hosts": 999 }]);
    assert_eq!(indexed_pools(&mut gw), expected);
    let text = std::fs::read_to_string(&gw.config).unwrap();
    let traffic = options(SizeMix::Fixed(64), Some(20_000.0), 5_000, 1);
    let clients =
        std::env::temp_dir().join(format!("pktgen-pools-clients-{}.toml", std::process::id()));
    let round = |gw: &common::Gateway, k: usize| {
        std::fs::write(&clients, with_tunnels(&text, k * 333..(k + 1) * 333)).unwrap();
        let r = run_manual(&clients, None, &traffic).unwrap();
        assert_eq!(r.clients, 333);
        assert_eq!(
            (r.sent, r.received, r.lost),
            (5_000, 5_000, 0),
            "round {k}: {}",
            r.table()
        );
        assert_eq!(gw.daemon.totals().total_drops(), 0, "round {k}");
    };
    round(&gw, 0);
    // Without the key, the same routes move back into the hash maps.
    let unlisted = text.replace("route_pools = [\"10.128.0.0/22\"]", "");
    assert_ne!(unlisted, text);
    let reply = gw
        .daemon
        .apply_config(config::parse(&unlisted, "unlisted.toml").unwrap());
    assert!(reply.ok, "{reply:?}");
    assert_eq!(reply.data["route_pools_changed"], true, "{reply:?}");
    assert_eq!(reply.data["manual_tunnels"]["unchanged"], 999, "{reply:?}");
    assert_eq!(indexed_pools(&mut gw), serde_json::json!([]));
    round(&gw, 1);
    let reply = gw
        .daemon
        .apply_config(config::parse(&text, "listed.toml").unwrap());
    assert!(reply.ok, "{reply:?}");
    assert_eq!(indexed_pools(&mut gw), expected);
    round(&gw, 2);
    let _ = std::fs::remove_file(&clients);
}

#[test]
fn a_window_keeps_flat_out_traffic_lossless() {
    let gw = common::gateway("window", 20, 2, 1);
    let r = run_manual(
        &gw.config,
        None,
        &windowed(SizeMix::Fixed(1400), None, 40_000, 1, Some(64)),
    )
    .unwrap();
    assert_eq!(r.sent, 40_000, "{}", r.table());
    assert_eq!((r.received, r.lost), (40_000, 0), "{}", r.table());
    assert_eq!(r.window, Some(64));
    // Closed loop: nothing waits long in a queue.
    assert!(r.latency_us.p50 < 50_000.0, "{}", r.table());
}

#[test]
fn the_command_line_writes_a_consistent_json_and_a_plot() {
    let gw = common::gateway("cli", 100, 4, 1);
    let dir = std::env::temp_dir();
    let json = dir.join(format!("pktgen-cli-{}.json", std::process::id()));
    let svg = json.with_extension("svg");
    let out = Command::new(env!("CARGO_BIN_EXE_esprit-pktgen"))
        .args(["manual", "--quiet", "--rate", "10000", "--count", "5000"])
        .args(["--size", "1400", "--threads", "2", "--config"])
        .arg(&gw.config)
        .arg("--json")
        .arg(&json)
        .arg("--plot")
        .arg(&svg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("p99.9 us") && stdout.contains("manual mode, 100 clients"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
    let f = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"));
    assert_eq!((n("sent"), n("received"), n("lost")), (5000, 5000, 0));
    assert_eq!(n("clients"), 100);
    assert_eq!(v["size"], "1400");
    assert!((f("rx_mpps") - n("received") as f64 / f("seconds") / 1e6).abs() < 1e-9);
    assert!((f("rx_gbps") - 5000.0 * 1400.0 * 8.0 / f("seconds") / 1e9).abs() < 1e-9);
    for k in ["p50", "p99", "p999", "max", "mean"] {
        assert!(v["latency_us"][k].as_f64().unwrap() > 0.0, "latency {k}");
    }
    assert!(!v["latency_us"]["cdf"].as_array().unwrap().is_empty());
    assert!(!v["timeline"].as_array().unwrap().is_empty());
    // A paced run leaves the generator mostly idle, and says so.
    let g = &v["generator"];
    let busy = g["busy"].as_f64().unwrap();
    assert!(busy > 0.0 && busy < 0.9, "generator busy {busy}");
    assert!(g["user_ns_per_round_trip"].as_f64().unwrap() > 0.0, "{g}");
    assert!(stdout.contains("generator: on the CPU") && !stdout.contains("busy: the figures"));
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.contains("polyline"));
    let _ = std::fs::remove_file(&json);
    let _ = std::fs::remove_file(&svg);
}
