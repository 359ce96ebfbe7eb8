//! Data-plane benchmarks: SPI lookup at 1k/100k/1M SAs, the anti-replay
//! check, and the whole worker loop over the mem port (64 B and 1400 B).
//! After criterion's runs, a summary prints medians and the ratios the
//! targets are stated in (lookup at 1M vs 1k; worker Mpps per core).
//!
//! `cargo bench -p dataplane --bench dataplane`

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use dataplane::packet::{Encap, Packet};
use dataplane::port::mem::{link, MemPort};
use dataplane::sa::manual::{install, ManualTunnel};
use dataplane::sa::replay::ReplayWindow;
use dataplane::sa::spi::make_spi;
use dataplane::sa::{HardLimits, InboundSa, InboundSpec, SaPublisher, SaTables};
use dataplane::testkit::write_ipv4_udp;
use dataplane::worker::{handoff_mesh, ControlLink, Worker, WorkerConfig};

const BURST: usize = 32;

// ---------- SPI lookup ----------

fn tables_with(n: usize) -> (SaTables, Vec<u32>) {
    let mut t = SaTables::default();
    let mut spis = Vec::with_capacity(n);
    for slot in 0..n {
        let spi = make_spi(slot, 1).unwrap_or(0);
        let sa = t
            .build_inbound(InboundSpec {
                spi,
                tunnel: slot as u32,
                owner: 0,
                key: &[slot as u8; 16],
                salt: [0; 4],
                esn: true,
                replay_window: 1024,
                allowed_sources: Vec::new(),
                limits: HardLimits::default(),
            })
            .unwrap_or_else(|e| panic!("{e}"));
        t.install_inbound(sa).unwrap_or_else(|e| panic!("{e}"));
        spis.push(spi);
    }
    (t, random_order(&spis))
}

/// 2^20 picks from `items` in a random order, as traffic from many clients
/// visits its SAs.
fn random_order(items: &[u32]) -> Vec<u32> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..(1 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            items[(x % items.len() as u64) as usize]
        })
        .collect()
}

/// Resolves each SPI of a burst to its SA (the SA itself is the crypto's
/// to load).
#[inline]
fn resolve_burst(t: &SaTables, spis: &[u32]) -> u64 {
    let mut found = 0u64;
    for &spi in spis {
        if let Some(sa) = t.inbound_sa(spi) {
            found = found.wrapping_add(std::ptr::from_ref(sa).addr() as u64);
        }
    }
    found
}

/// Times `bursts` lookups of 32, pipelined as a worker's are: the slots of
/// the next burst are prefetched while this one is resolved (the worker has
/// a burst of crypto to overlap with; here it is the next burst's lookups).
fn time_lookups(t: &SaTables, order: &[u32], bursts: usize, start: &mut usize) -> Duration {
    time_pipelined(
        order,
        bursts,
        start,
        |spi| t.prefetch_inbound(spi),
        |spis| resolve_burst(t, spis),
    )
}

/// The hardware's share of a lookup: the same pipelined reads of one word
/// each from a plain array of `words.len()` words, no table around them.
fn time_bare_reads(words: &[u64], order: &[u32], bursts: usize, start: &mut usize) -> Duration {
    time_pipelined(
        order,
        bursts,
        start,
        |i| dataplane::prefetch::prefetch(&words[i as usize]),
        |burst| {
            burst
                .iter()
                .fold(0u64, |a, &i| a.wrapping_add(words[i as usize]))
        },
    )
}

/// Runs `bursts` bursts of `order`: `ahead` for each key of the next burst,
/// then `resolve` over this one.
fn time_pipelined(
    order: &[u32],
    bursts: usize,
    start: &mut usize,
    ahead: impl Fn(u32),
    resolve: impl Fn(&[u32]) -> u64,
) -> Duration {
    let begin = Instant::now();
    for _ in 0..bursts {
        if *start + 2 * BURST > order.len() {
            *start = 0;
        }
        for &key in &order[*start + BURST..*start + 2 * BURST] {
            ahead(key);
        }
        black_box(resolve(&order[*start..*start + BURST]));
        *start += BURST;
    }
    begin.elapsed()
}

/// One size's table, its lookup order, and the bare array beside it.
struct LookupCase {
    name: &'static str,
    tables: SaTables,
    order: Vec<u32>,
    words: Vec<u64>,
    bare_order: Vec<u32>,
    starts: (usize, usize),
}

impl LookupCase {
    fn new(n: usize, name: &'static str) -> LookupCase {
        let (tables, order) = tables_with(n);
        let indices: Vec<u32> = (0..n as u32).collect();
        LookupCase {
            name,
            tables,
            order,
            // The reference: one word per SA, as a table of pointers has.
            words: (0..n as u64).collect(),
            bare_order: random_order(&indices),
            starts: (0, 0),
        }
    }

    /// ns per lookup and per bare read, after a warm-up of each (the other
    /// sizes ran in between).
    fn round(&mut self) -> (f64, f64) {
        let per_lookup = |d: Duration| d.as_nanos() as f64 / (20_000 * BURST) as f64;
        let (s, b) = &mut self.starts;
        time_lookups(&self.tables, &self.order, 2_000, s);
        let lookup = per_lookup(time_lookups(&self.tables, &self.order, 20_000, s));
        time_bare_reads(&self.words, &self.bare_order, 2_000, b);
        let bare = per_lookup(time_bare_reads(&self.words, &self.bare_order, 20_000, b));
        (lookup, bare)
    }
}

/// The lookup at 1k, 100k and 1M SAs, 15 rounds, each round over all three
/// sizes so all see the same moments of a noisy machine; medians.
fn lookup_summary() {
    let mut cases = [
        LookupCase::new(1_000, "1k"),
        LookupCase::new(100_000, "100k"),
        LookupCase::new(1_000_000, "1M"),
    ];
    let mut runs = vec![(Vec::new(), Vec::new()); cases.len()];
    for _ in 0..15 {
        for (case, (lookups, bare)) in cases.iter_mut().zip(&mut runs) {
            let (l, b) = case.round();
            lookups.push(l);
            bare.push(b);
        }
    }
    let medians: Vec<(f64, f64)> = runs
        .into_iter()
        .map(|(l, b)| (median(l), median(b)))
        .collect();
    for (case, (m, b)) in cases.iter().zip(&medians) {
        let name = case.name;
        println!(
            "spi lookup, {name:>4} SAs: {m:6.2} ns/lookup; bare read of a {name}-word array: {b:6.2} ns"
        );
    }
    println!(
        "spi lookup ratio 1M/1k: {:.2}x (target <= 1.5x); the bare array's own 1M/1k: {:.2}x",
        medians[2].0 / medians[0].0,
        medians[2].1 / medians[0].1
    );
}

fn bench_lookup(c: &mut Criterion, sizes: &[(usize, &str)]) {
    let mut g = c.benchmark_group("spi_lookup");
    g.throughput(Throughput::Elements(BURST as u64));
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for &(n, name) in sizes {
        let (t, order) = tables_with(n);
        let mut start = 0;
        g.bench_function(BenchmarkId::new("burst32", name), |b| {
            b.iter_custom(|iters| time_lookups(&t, &order, iters as usize, &mut start))
        });
    }
    g.finish();
}

// ---------- anti-replay ----------

fn bench_replay(c: &mut Criterion) {
    let mut g = c.benchmark_group("replay");
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    let w = ReplayWindow::new(1024, true);
    let mut seq = 0u64;
    g.bench_function("check_accept_in_order", |b| {
        b.iter(|| {
            seq += 1;
            let s = w.check(seq as u32).unwrap_or(0);
            black_box(w.accept(s))
        })
    });
    let w = ReplayWindow::new(1024, true);
    let mut base = 0u64;
    g.bench_function("check_accept_reordered_by_up_to_512", |b| {
        b.iter(|| {
            base += 1;
            // Deliver pairs swapped at a distance: base+512, base.
            let s = ((base / 2) * 2) + if base.is_multiple_of(2) { 512 } else { 0 };
            if let Ok(full) = w.check(s as u32 + 1) {
                black_box(w.accept(full));
            }
        })
    });
    g.finish();
}

// ---------- worker loop over the mem port ----------

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 5);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 9);

struct Lab {
    gw: Worker<MemPort, MemPort>,
    cl: Worker<MemPort, MemPort>,
    gw_inside: MemPort,
    cl_inside: MemPort,
    _publishers: (SaPublisher, SaPublisher),
}

use dataplane::testkit::manual_keys as keys;

fn lab() -> Lab {
    lab_n(1)
}

/// Where tunnel `i`'s inner addresses start: room for 128k tunnels each.
const CLIENT_POOL: Ipv4Addr = Ipv4Addr::new(10, 128, 0, 0);
const SERVER_POOL: Ipv4Addr = Ipv4Addr::new(10, 64, 0, 0);

/// Tunnel `i`'s inner addresses: the client's and the protected host's.
fn hosts(i: usize) -> (Ipv4Addr, Ipv4Addr) {
    if i == usize::MAX {
        return (CLIENT, SERVER);
    }
    let i = i as u32;
    (
        Ipv4Addr::from(u32::from(CLIENT_POOL) + i),
        Ipv4Addr::from(u32::from(SERVER_POOL) + i),
    )
}

/// A gateway and a client data plane joined by `n` manual tunnels; with
/// one tunnel its selectors are the /16s of `CLIENT` and `SERVER`, with
/// more, tunnel `i` carries only `hosts(i)`.
fn lab_n(n: usize) -> Lab {
    let prefix = |a: Ipv4Addr, len: u8| {
        format!("{a}/{len}")
            .parse()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let tunnels: Vec<(ManualTunnel, ManualTunnel)> = (0..n)
        .map(|i| {
            let spi = make_spi(i, 1).unwrap_or_else(|| panic!("slot {i}"));
            let (client, server) = if n == 1 {
                (prefix(CLIENT, 16), prefix(SERVER, 16))
            } else {
                let (c, s) = hosts(i);
                (prefix(c, 32), prefix(s, 32))
            };
            let gw_t = ManualTunnel {
                tunnel: i as u32 + 1,
                remote: "192.0.2.2:4500".parse().unwrap_or_else(|e| panic!("{e}")),
                encap: Encap::EspInUdp,
                remote_ts: vec![client],
                inbound: keys(spi, (i % 251) as u8 + 1),
                outbound: keys(spi, (i % 241) as u8 + 2),
                replay_window: 1024,
            };
            let cl_t = gw_t.mirrored(
                "192.0.2.1:4500".parse().unwrap_or_else(|e| panic!("{e}")),
                vec![server],
            );
            (gw_t, cl_t)
        })
        .collect();
    let side = |gateway: bool, out: MemPort| {
        let mut p = SaPublisher::new();
        // The clients' addresses form pools, as a responder's leases do
        // in espritd: host routes indexed, not hashed.
        for pool in [CLIENT_POOL, SERVER_POOL] {
            p.edit()
                .routes
                .add_pool(prefix(pool, 15))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        for (g, c) in &tunnels {
            let t = if gateway { g } else { c };
            install(p.edit(), t, 1).unwrap_or_else(|e| panic!("{e}"));
        }
        p.publish();
        let (ins, far) = link(4096);
        let cfg = WorkerConfig {
            burst: BURST,
            ..WorkerConfig::default()
        };
        let handoff = handoff_mesh(1, 1).pop().unwrap_or_else(|| panic!("mesh"));
        let w = Worker::new(cfg, out, ins, p.reader(), handoff, ControlLink::new(64));
        (w, far, p)
    };
    let (a, b) = link(4096);
    let (gw, gw_inside, gp) = side(true, a);
    let (cl, cl_inside, cp) = side(false, b);
    Lab {
        gw,
        cl,
        gw_inside,
        cl_inside,
        _publishers: (gp, cp),
    }
}

/// Fills `p` with an inner packet of `size` bytes from `src` to `dst`.
fn fill(p: &mut Packet, size: usize, src: Ipv4Addr, dst: Ipv4Addr) {
    let payload = [0x5au8; 2048];
    let space = p.rx_space();
    let n = write_ipv4_udp(
        space,
        src,
        dst,
        (1000, 2000),
        &payload[..size.saturating_sub(28)],
    )
    .unwrap_or(0);
    p.set_received_len(n);
    p.meta.encap = Encap::Inner;
}

/// Times `bursts` bursts through the gateway worker only: `decrypt` feeds it
/// ESP the client sealed; otherwise inner packets for it to seal. Buffers
/// circulate, nothing is allocated.
fn time_worker(
    lab: &mut Lab,
    size: usize,
    decrypt: bool,
    bursts: usize,
    spare: &mut Vec<Packet>,
) -> Duration {
    time_worker_over(lab, size, decrypt, bursts, spare, &[], &mut 0)
}

/// As [`time_worker`], each packet on the next of `tunnels` tunnels in
/// turn (0: the one tunnel of [`lab`]), as traffic from many clients.
fn time_worker_over(
    lab: &mut Lab,
    size: usize,
    decrypt: bool,
    bursts: usize,
    spare: &mut Vec<Packet>,
    order: &[usize],
    next: &mut usize,
) -> Duration {
    let mut elapsed = Duration::ZERO;
    for _ in 0..bursts {
        while spare.len() < BURST {
            spare.push(Packet::new());
        }
        for mut p in spare.drain(..BURST) {
            let (client, server) = if order.is_empty() {
                hosts(usize::MAX)
            } else {
                *next = (*next + 1) % order.len();
                hosts(order[*next])
            };
            if decrypt {
                fill(&mut p, size, client, server);
                let _ = lab.cl_inside.send(p);
            } else {
                fill(&mut p, size, server, client);
                let _ = lab.gw_inside.send(p);
            }
        }
        if decrypt {
            lab.cl.poll_once();
        }
        let t = Instant::now();
        lab.gw.poll_once();
        elapsed += t.elapsed();
        if !decrypt {
            lab.cl.poll_once();
        }
        let far = if decrypt {
            &lab.gw_inside
        } else {
            &lab.cl_inside
        };
        spare.extend(std::iter::from_fn(|| far.recv()));
    }
    elapsed
}

fn bench_worker(c: &mut Criterion) {
    let mut g = c.benchmark_group("worker_loop_mem");
    g.throughput(Throughput::Elements(BURST as u64));
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    for size in [64usize, 1400] {
        for decrypt in [true, false] {
            let mut lab = lab();
            let mut spare = Vec::new();
            let name = if decrypt { "decrypt" } else { "encrypt" };
            g.bench_function(BenchmarkId::new(name, size), |b| {
                b.iter_custom(|iters| {
                    time_worker(&mut lab, size, decrypt, iters as usize, &mut spare)
                })
            });
        }
    }
    g.finish();
}

// ---------- ESP seal/open per packet, against ring's bare AEAD ----------

/// Nanoseconds per ESP seal and per ESP open of `size`-byte inner packets
/// (fresh sequence numbers, so the replay window accepts every packet),
/// and per ring AES-128-GCM seal of the same encrypted length.
fn esp_costs(size: usize, n: usize) -> (f64, f64, f64) {
    use dataplane::esp::{self, next_header};
    use dataplane::sa::{OutboundSa, OutboundSpec};
    let out = OutboundSa::new(OutboundSpec {
        spi: 0x0100_0001,
        tunnel: 1,
        owner: 0,
        key: &[3; 16],
        salt: [4; 4],
        esn: true,
        remote: "192.0.2.2:4500".parse().unwrap_or_else(|e| panic!("{e}")),
        encap: Encap::EspInUdp,
        limits: HardLimits::default(),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let inb = InboundSa::new(InboundSpec {
        spi: 0x0100_0001,
        tunnel: 1,
        owner: 0,
        key: &[3; 16],
        salt: [4; 4],
        esn: true,
        replay_window: 1024,
        allowed_sources: Vec::new(),
        limits: HardLimits::default(),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    // Rounds of one burst, refilled between rounds: the buffers stay in
    // cache, as ring's single buffer does.
    let mut pkts: Vec<Packet> = (0..BURST).map(|_| Packet::new()).collect();
    let (mut seal_t, mut open_t) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..n.div_ceil(pkts.len()) {
        for p in pkts.iter_mut() {
            fill(p, size, CLIENT, SERVER);
        }
        let t = Instant::now();
        for p in pkts.iter_mut() {
            let _ = black_box(esp::seal(&out, p, next_header::IPV4));
        }
        seal_t += t.elapsed();
        let t = Instant::now();
        for p in pkts.iter_mut() {
            let _ = black_box(esp::open(&inb, p));
        }
        open_t += t.elapsed();
    }
    let done = (n.div_ceil(pkts.len()) * pkts.len()) as f64;
    let seal = seal_t.as_nanos() as f64 / done;
    let open = open_t.as_nanos() as f64 / done;

    let key = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::AES_128_GCM, &[3; 16])
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let enc_len = size + (4 - (size + 2) % 4) % 4 + 2;
    let mut buf = vec![0x5au8; enc_len];
    let t = Instant::now();
    for i in 0..n as u64 {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&i.to_be_bytes());
        let aad = ring::aead::Aad::from(i.to_be_bytes());
        let tag = key.seal_in_place_separate_tag(
            ring::aead::Nonce::assume_unique_for_key(nonce),
            aad,
            &mut buf,
        );
        black_box(tag.ok());
    }
    let ring_ns = t.elapsed().as_nanos() as f64 / n as f64;
    (seal, open, ring_ns)
}

// ---------- summary with ratios ----------

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn summary() {
    println!("\n== summary (medians of 15 runs) ==");
    for size in [64usize, 512, 1400] {
        let runs: Vec<(f64, f64, f64)> = (0..15).map(|_| esp_costs(size, 20_000)).collect();
        let seal = median(runs.iter().map(|r| r.0).collect());
        let open = median(runs.iter().map(|r| r.1).collect());
        let ring_ns = median(runs.iter().map(|r| r.2).collect());
        println!(
            "ESP {size:>4} B: seal {seal:6.1} ns, open {open:6.1} ns; ring AEAD seal {ring_ns:6.1} ns; \
             ESP seal/ring {:.2}x, ESP open/ring {:.2}x (rate ratios)",
            ring_ns / seal,
            ring_ns / open
        );
    }
    lookup_summary();
    // The whole gateway worker with many tunnels, each packet on the next
    // tunnel in turn: every packet meets a different SA, route and key.
    // In set-up order each tunnel's state follows the last one's in memory
    // and the prefetchers stream it; shuffled (as clients that send when
    // they please), none does.
    for shuffled in [false, true] {
        for decrypt in [true, false] {
            let mut mpps = Vec::new();
            for n in [1_000usize, 100_000] {
                let mut order: Vec<usize> = (0..n).collect();
                if shuffled {
                    use rand::{seq::SliceRandom, SeedableRng};
                    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(0x5eed));
                }
                let mut lab = lab_n(n);
                let (mut spare, mut next) = (Vec::new(), 0);
                let bursts = 4000;
                // One pass over every tunnel first: caches as in a long run.
                time_worker_over(
                    &mut lab,
                    64,
                    decrypt,
                    n / BURST + 1,
                    &mut spare,
                    &order,
                    &mut next,
                );
                let runs: Vec<f64> = (0..7)
                    .map(|_| {
                        let d = time_worker_over(
                            &mut lab, 64, decrypt, bursts, &mut spare, &order, &mut next,
                        );
                        (bursts * BURST) as f64 / d.as_secs_f64() / 1e6
                    })
                    .collect();
                mpps.push(median(runs));
            }
            let name = if decrypt { "decrypt" } else { "encrypt" };
            let order = if shuffled { "shuffled" } else { "set-up order" };
            println!(
                "worker loop, {name} 64 B, packets round robin over 1k / 100k tunnels ({order}): {:.2} / {:.2} Mpps/core, 100k/1k {:.2}x",
                mpps[0],
                mpps[1],
                mpps[1] / mpps[0]
            );
        }
    }
    for size in [64usize, 1400] {
        for decrypt in [true, false] {
            let mut lab = lab();
            let mut spare = Vec::new();
            let bursts = 4000;
            let runs: Vec<f64> = (0..15)
                .map(|_| {
                    let d = time_worker(&mut lab, size, decrypt, bursts, &mut spare);
                    (bursts * BURST) as f64 / d.as_secs_f64() / 1e6
                })
                .collect();
            let mpps = median(runs);
            let name = if decrypt { "decrypt" } else { "encrypt" };
            println!(
                "worker loop (mem port), {name} {size:>4} B: {mpps:6.2} Mpps/core, {:6.2} Gbit/s{}",
                mpps * size as f64 * 8.0 / 1e3,
                if size == 64 {
                    " (target >= 8 Mpps)"
                } else {
                    ""
                }
            );
        }
    }
}

fn benches(c: &mut Criterion) {
    bench_lookup(c, &[(1_000, "1k"), (100_000, "100k"), (1_000_000, "1M")]);
    bench_replay(c);
    bench_worker(c);
}

criterion_group!(group, benches);

/// espritd keeps its heap on transparent huge pages (glibc's `hugetlb`
/// tunable, which `deploy/systemd/espritd.service` sets): the 1M table's
/// tags span 512 small pages (a table of a pointer per SA, 2048: its 1M
/// lookup took 4.6-4.7 ns here without huge pages instead of 3.8-3.9).
/// Re-run under the same setting.
fn ensure_huge_pages() {
    let tunable = "glibc.malloc.hugetlb=1";
    if std::env::var("GLIBC_TUNABLES").is_ok_and(|v| v.contains(tunable)) {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let status = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("GLIBC_TUNABLES", tunable)
        .status();
    match status {
        Ok(s) => std::process::exit(s.code().unwrap_or(1)),
        Err(e) => eprintln!("could not re-run with {tunable}: {e}; measuring without"),
    }
}

fn main() {
    ensure_huge_pages();
    group();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
