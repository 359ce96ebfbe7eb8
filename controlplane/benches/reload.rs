//! Reload at scale: a gateway with 100,000 manually keyed tunnels in its data
//! plane; a reload that changes one applies (diff + data-plane edit +
//! publication) in under 100 ms and leaves the others untouched.
//!
//! `cargo bench -p controlplane --bench reload` (as root: the daemon binds
//! the IKE port; its inside is a reflect port, so no TUN is needed).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use controlplane::daemon::Daemon;

/// espritd's allocator, so the figures are the daemon's (see espritd.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tunnels configured; `ESPRIT_BENCH_TUNNELS` overrides (quick checks).
fn tunnels() -> usize {
    std::env::var("ESPRIT_BENCH_TUNNELS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn key(i: usize, dir: u8) -> String {
    format!("{:08x}{:08x}{:08x}{:08x}", i, dir, i ^ 0x5a5a, 7)
}

/// A config with `n` manual tunnels; tunnel `changed` gets another key.
fn config_text(n: usize, changed: Option<usize>) -> String {
    let mut t = String::with_capacity(n * 420);
    t.push_str("[gateway]\noutside = [\"127.0.0.1:45000\"]\nike_port = 45001\n\n[dataplane]\nworkers = 1\n\n[dataplane.inside]\nkind = \"reflect\"\n\n[control]\npath = \"/tmp/esprit-bench-reload.sock\"\n");
    for i in 0..n {
        let a = 10 + (i >> 16) as u8;
        let (b, c) = ((i >> 8) as u8, i as u8);
        let rev = if Some(i) == changed { 9 } else { 1 };
        let _ = write!(
            t,
            "\n[[manual_tunnel]]\nname = \"t{i}\"\nremote = \"192.0.2.1:4500\"\nlocal_ts = [\"10.255.0.0/16\"]\nremote_ts = [\"{a}.{b}.{c}.0/24\"]\n[manual_tunnel.inbound]\nspi = {}\nalgorithm = \"aes128gcm16\"\nkey = \"{}\"\nsalt = \"01020304\"\n[manual_tunnel.outbound]\nspi = {}\nalgorithm = \"aes128gcm16\"\nkey = \"{}\"\nsalt = \"05060708\"\n",
            0x0100_0000 + i,
            key(i, rev),
            0x0200_0000 + i,
            key(i, 2)
        );
    }
    t
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("reload bench: run as root (the daemon binds its ports); skipped");
        return;
    }
    let n = tunnels();
    let t0 = Instant::now();
    let base_text = config_text(n, None);
    let base = config::parse(&base_text, "bench.toml").unwrap_or_else(|e| panic!("{e}"));
    let parse_base = t0.elapsed();
    let mut daemon = Daemon::start(&base).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "{n} manual tunnels: config of {} MiB parsed and validated in {:.2?}, daemon up in {:.2?}",
        base_text.len() >> 20,
        parse_base,
        t0.elapsed() - parse_base
    );

    let mut applies = Vec::new();
    let mut parses = Vec::new();
    for round in 0..5 {
        // Alternate between changing tunnel 4242 and changing it back.
        let text = config_text(n, (round % 2 == 0).then_some(4242));
        let t = Instant::now();
        let new = config::parse(&text, "bench.toml").unwrap_or_else(|e| panic!("{e}"));
        parses.push(t.elapsed());
        let t = Instant::now();
        let reply = daemon.apply_config(new);
        applies.push(t.elapsed());
        assert!(reply.ok, "{reply:?}");
        let mt = &reply.data["manual_tunnels"];
        assert_eq!(mt["changed"].as_array().map(Vec::len), Some(1), "{reply:?}");
        assert_eq!(mt["unchanged"].as_u64(), Some(n as u64 - 1), "{reply:?}");
    }
    let apply = median(applies);
    println!(
        "reload changing 1 of {n}: apply (diff + data-plane edit + publication) median {:.2?} (target < 100 ms: {}); reading and validating the file: median {:.2?}",
        apply,
        if apply < Duration::from_millis(100) { "met" } else { "NOT met" },
        median(parses)
    );
    daemon.shutdown();
}
