//! The cost of the I/O layer: one gateway worker's throughput per core,
//! sealing (inside -> outside tx) and opening (outside rx -> inside), over
//! the `mem` port (no I/O), `af_packet` on a veth pair in a private network
//! namespace (needs root), and DPDK `net_ring` devices joined back to back
//! (`--features dpdk`). Only the gateway worker's busy polls are timed;
//! the client worker on the other end feeds or drains it.
//!
//! Each line also says how far the worker is from the practical limit on
//! this core: ring's bare AES-128-GCM seal rate on a buffer of the same
//! size (BoringSSL's assembly), measured in the same run; and `openssl
//! speed -evp aes-128-gcm` is run for reference.
//!
//! `cargo bench -p dataplane --bench ports [--features dpdk]`; with
//! `ESPRIT_PORTS=dpdk,mem` only the ports whose names start with one of
//! those (to measure or profile one port alone).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dataplane::packet::{BufferSource, Encap, Packet};
use dataplane::port::af_packet::{AfPacketConfig, AfPacketPort};
use dataplane::port::l2::{L2Config, MacAddr, SharedNeighbours};
use dataplane::port::mem::{link, MemPort};
use dataplane::port::udp::UdpPort;
use dataplane::port::Port;
use dataplane::sa::manual::{install, ManualTunnel};
use dataplane::sa::SaPublisher;
use dataplane::testkit::write_ipv4_udp;
use dataplane::worker::{ControlLink, Handoff, Worker, WorkerConfig};

const BURST: usize = 32;
const MEASURED: usize = 1000;
const WARM_UP: usize = 50;
/// Each figure is the median of this many rounds: a round is a few
/// milliseconds, which one preemption on a shared machine can spoil.
const ROUNDS: usize = 5;
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 5);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 9);
const GW_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const CL_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

struct Lab<O: Port> {
    gw: Worker<O, MemPort>,
    cl: Worker<O, MemPort>,
    gw_inside: MemPort,
    cl_inside: MemPort,
    _publishers: (SaPublisher, SaPublisher),
    /// Where the gateway's inside buffers come from: the outside port's,
    /// when it lends them (DPDK), as an inside port reading into the
    /// worker's pool would; else our heap.
    gw_buffers: Option<Box<dyn BufferSource>>,
}

use dataplane::testkit::manual_keys as keys;

fn lab<O: Port>(gw_out: O, cl_out: O) -> Lab<O> {
    let gw_t = ManualTunnel {
        tunnel: 1,
        remote: "192.0.2.2:4500".parse().expect("addr"),
        encap: Encap::EspInUdp,
        remote_ts: vec!["10.2.0.0/16".parse().expect("prefix")],
        inbound: keys(0x0100_0001, 1),
        outbound: keys(0x0100_0002, 2),
        replay_window: 1024,
    };
    let cl_t = gw_t.mirrored(
        "192.0.2.1:4500".parse().expect("addr"),
        vec!["10.1.0.0/16".parse().expect("prefix")],
    );
    let side = |t: &ManualTunnel, out: O| {
        let mut p = SaPublisher::new();
        install(p.edit(), t, 1).expect("install");
        p.publish();
        let (ins, far) = link(8192);
        // Received packets leave through the inside mem port and are not
        // recycled: preallocate every buffer a run needs, so the timed loop
        // never allocates (as a real inside port that recycles would not).
        let cfg = WorkerConfig {
            burst: BURST,
            pool_size: (MEASURED + WARM_UP + 8) * BURST,
            ..WorkerConfig::default()
        };
        let w = Worker::new(
            cfg,
            out,
            ins,
            p.reader(),
            Handoff::single(),
            ControlLink::new(64),
        );
        (w, far, p)
    };
    let gw_buffers = gw_out.buffer_source();
    let (gw, gw_inside, gp) = side(&gw_t, gw_out);
    let (cl, cl_inside, cp) = side(&cl_t, cl_out);
    Lab {
        gw,
        cl,
        gw_inside,
        cl_inside,
        _publishers: (gp, cp),
        gw_buffers,
    }
}

fn inner(
    size: usize,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    from: Option<&mut Box<dyn BufferSource>>,
) -> Packet {
    let mut p = from.and_then(|s| s.take()).unwrap_or_default();
    let payload = [0x5au8; 2048];
    let n = write_ipv4_udp(
        p.rx_space(),
        src,
        dst,
        (1000, 2000),
        &payload[..size.saturating_sub(28)],
    )
    .unwrap_or(0);
    p.set_received_len(n);
    p.meta.encap = Encap::Inner;
    p
}

/// Mpps of the gateway worker's busy time over `bursts` bursts.
fn run<O: Port>(lab: &mut Lab<O>, size: usize, decrypt: bool, bursts: usize) -> f64 {
    let (mut busy, mut done) = (Duration::ZERO, 0usize);
    let want = bursts * BURST;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut fed = 0;
    while done < want && Instant::now() < deadline {
        // Keep about two bursts in flight towards the gateway.
        if fed < want && fed < done + 2 * BURST {
            for _ in 0..BURST {
                if decrypt {
                    let _ = lab.cl_inside.send(inner(size, CLIENT, SERVER, None));
                } else {
                    let _ =
                        lab.gw_inside
                            .send(inner(size, SERVER, CLIENT, lab.gw_buffers.as_mut()));
                }
            }
            fed += BURST;
            if decrypt {
                lab.cl.poll_once();
            }
        }
        let t = Instant::now();
        let n = lab.gw.poll_once();
        if n > 0 {
            busy += t.elapsed();
            done += n;
        }
        if !decrypt {
            lab.cl.poll_once();
        }
        while lab.gw_inside.recv().is_some() {}
        while lab.cl_inside.recv().is_some() {}
    }
    done as f64 / busy.as_secs_f64().max(1e-9) / 1e6
}

/// Whether `ESPRIT_PORTS` (unset: all) asks for the port `name`.
fn wanted(name: &str) -> bool {
    std::env::var("ESPRIT_PORTS").map_or(true, |list| {
        list.split(',')
            .map(str::trim)
            .any(|w| !w.is_empty() && name.starts_with(w))
    })
}

fn report<O: Port>(name: &str, mut make: impl FnMut() -> Option<(O, O)>) {
    if !wanted(name) {
        return;
    }
    for size in [64usize, 1400] {
        for decrypt in [false, true] {
            let mut rounds = Vec::with_capacity(ROUNDS);
            for _ in 0..ROUNDS {
                let Some((a, b)) = make() else {
                    println!("{name:<22} skipped (not available here)");
                    return;
                };
                // A fresh lab each round: its pools hold what one run needs.
                let mut lab = lab(a, b);
                // Warm up: ARP, caches, pools.
                run(&mut lab, size, decrypt, WARM_UP);
                rounds.push(run(&mut lab, size, decrypt, MEASURED));
            }
            rounds.sort_by(f64::total_cmp);
            let mpps = rounds[ROUNDS / 2];
            let dir = if decrypt { "open" } else { "seal" };
            let limit = crypto_limits()
                .get(&size)
                .map_or(f64::NAN, |l| l.ring_mseals);
            println!(
                "{name:<22} {dir} {size:>4} B: {mpps:6.2} Mpps/core ({:5.2} Gbit/s), {:4.2}x ring's bare seal rate (rounds {:.2}-{:.2})",
                mpps * size as f64 * 8.0 / 1e3,
                mpps / limit,
                rounds[0],
                rounds[ROUNDS - 1],
            );
        }
    }
}

fn af_packet_pair() -> Option<(AfPacketPort, AfPacketPort)> {
    let run = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let _ = run(&["link", "del", "bench-a"]);
    if !run(&[
        "link", "add", "bench-a", "type", "veth", "peer", "name", "bench-b",
    ]) {
        return None;
    }
    for i in ["bench-a", "bench-b"] {
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{i}/disable_ipv6"), "1");
        run(&["link", "set", i, "up"]);
    }
    let open = |ifname: &str, ip: Ipv4Addr| {
        let cfg = AfPacketConfig::new(ifname, L2Config::new(MacAddr::ZERO, ip, 24));
        AfPacketPort::open_group(&cfg, 1, SharedNeighbours::new())
            .ok()?
            .pop()
    };
    Some((open("bench-a", GW_IP)?, open("bench-b", CL_IP)?))
}

/// The crypto alone on this core, for one buffer size.
struct CryptoLimit {
    /// ring's AES-128-GCM seals per second, in millions (median of 5).
    ring_mseals: f64,
    /// `openssl speed -evp aes-128-gcm` at this size, in millions of
    /// blocks per second, if the tool is there.
    openssl_mblocks: Option<f64>,
}

fn crypto_limits() -> &'static HashMap<usize, CryptoLimit> {
    static LIMITS: OnceLock<HashMap<usize, CryptoLimit>> = OnceLock::new();
    LIMITS.get_or_init(|| {
        [64usize, 1400]
            .into_iter()
            .map(|size| {
                let mut runs: Vec<f64> = (0..5).map(|_| ring_mseals(size)).collect();
                runs.sort_by(f64::total_cmp);
                let limit = CryptoLimit {
                    ring_mseals: runs[2],
                    openssl_mblocks: openssl_speed(size),
                };
                (size, limit)
            })
            .collect()
    })
}

/// ring's bare seal rate on one `size`-byte buffer, in millions per second.
fn ring_mseals(size: usize) -> f64 {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &[3; 16]).expect("key"));
    let mut buf = vec![0u8; size];
    let (mut n, start) = (0u64, Instant::now());
    while start.elapsed() < Duration::from_millis(200) {
        for _ in 0..1000 {
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&n.to_be_bytes());
            let tag = key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(n.to_be_bytes()),
                    &mut buf,
                )
                .expect("seal");
            std::hint::black_box(&tag);
            n += 1;
        }
    }
    n as f64 / start.elapsed().as_secs_f64() / 1e6
}

/// `openssl speed -evp aes-128-gcm -bytes SIZE`: millions of SIZE-byte
/// blocks per second, parsed from the table's last line ("...k" is 1000s
/// of bytes per second).
fn openssl_speed(size: usize) -> Option<f64> {
    let out = std::process::Command::new("openssl")
        .args(["speed", "-seconds", "1", "-bytes", &size.to_string()])
        .args(["-evp", "aes-128-gcm"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with("AES-128-GCM") || l.starts_with("aes-128-gcm"))?;
    let kbytes: f64 = line
        .split_whitespace()
        .last()?
        .trim_end_matches('k')
        .parse()
        .ok()?;
    Some(kbytes * 1000.0 / size as f64 / 1e6)
}

/// Two UDP ports at the tunnel's outer addresses, on this namespace's lo.
fn udp_pair() -> Option<(UdpPort, UdpPort)> {
    for a in ["192.0.2.1/32", "192.0.2.2/32"] {
        // Already there after the first call: the error is expected.
        let _ = std::process::Command::new("ip")
            .args(["addr", "add", a, "dev", "lo"])
            .output();
    }
    let _ = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .output();
    let gw = UdpPort::bind(std::net::SocketAddr::from((GW_IP, 4500))).ok()?;
    let cl = UdpPort::bind(std::net::SocketAddr::from((CL_IP, 4500))).ok()?;
    Some((gw, cl))
}

fn main() {
    println!("== the crypto alone on this core (AES-128-GCM, one buffer) ==");
    for size in [64usize, 1400] {
        let l = &crypto_limits()[&size];
        let openssl = l.openssl_mblocks.map_or_else(
            || "openssl speed: not available".to_string(),
            |m| {
                format!(
                    "openssl speed -evp: {m:6.2} M/s ({:.2}x ring)",
                    m / l.ring_mseals
                )
            },
        );
        println!(
            "{size:>4} B: ring seal {:6.2} M/s ({:5.2} Gbit/s); {openssl}",
            l.ring_mseals,
            l.ring_mseals * size as f64 * 8.0 / 1e3
        );
    }
    println!("\n== worker throughput per core by outside port (burst {BURST}) ==");
    report("mem", || Some(link(8192)));
    // A private network namespace for the veth pair (needs root).
    let in_ns = std::thread::spawn(|| {
        // SAFETY: plain syscall; CLONE_NEWNET moves only this thread.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            println!("af_packet (veth)       skipped (unshare needs root)");
            return;
        }
        report("udp (loopback)", udp_pair);
        report("af_packet (veth)", af_packet_pair);
        #[cfg(feature = "af_xdp")]
        report("af_xdp (veth, generic)", xdp::af_xdp_pair);
    });
    let _ = in_ns.join();
    #[cfg(feature = "dpdk")]
    if wanted("dpdk") {
        dpdk_ring::report_ring();
    }
    #[cfg(not(feature = "af_xdp"))]
    println!("af_xdp (veth, generic) skipped (build with --features af_xdp)");
    #[cfg(not(feature = "dpdk"))]
    println!("dpdk (net_ring)        skipped (build with --features dpdk)");
}

#[cfg(feature = "dpdk")]
mod dpdk_ring {
    use super::*;
    use dataplane::port::dpdk::{DpdkDevice, DpdkPort, Eal, MbufPool};
    use std::sync::Arc;

    pub fn report_ring() {
        let eal = match Eal::init(&[
            "esprit-bench",
            "--no-huge",
            "--no-pci",
            "--no-shconf",
            "--no-telemetry",
            "-m",
            "512",
            "-l",
            "0",
            "--log-level=lib.eal:error",
        ]) {
            Ok(e) => e,
            Err(e) => {
                println!("dpdk (net_ring)        skipped ({e})");
                return;
            }
        };
        let pool = match MbufPool::create(eal, "bench", 16383, 256, -1) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                println!("dpdk (net_ring)        skipped ({e})");
                return;
            }
        };
        let mut n = 0;
        report("dpdk (net_ring)", || {
            n += 1;
            let (a, b) =
                DpdkDevice::ring_pair(eal, (&format!("bga{n}"), &format!("bgb{n}")), pool.clone())
                    .ok()?;
            let l2 = |ip| {
                Some((
                    L2Config::new(MacAddr([2, 0, 0, 0, 0, ip]), [192, 0, 2, ip].into(), 24),
                    SharedNeighbours::new(),
                ))
            };
            Some((
                DpdkPort::new(a, 0, l2(1)).ok()?,
                DpdkPort::new(b, 0, l2(2)).ok()?,
            ))
        });
    }
}

#[cfg(feature = "af_xdp")]
mod xdp {
    use super::*;
    use dataplane::port::af_xdp::{AfXdpConfig, AfXdpPort};

    pub fn af_xdp_pair() -> Option<(AfXdpPort, AfXdpPort)> {
        let run = |args: &[&str]| {
            std::process::Command::new("ip")
                .args(args)
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        let _ = run(&["link", "del", "xbench-a"]);
        if !run(&[
            "link", "add", "xbench-a", "type", "veth", "peer", "name", "xbench-b",
        ]) {
            return None;
        }
        for i in ["xbench-a", "xbench-b"] {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{i}/disable_ipv6"), "1");
            run(&["link", "set", i, "up"]);
        }
        let open = |ifname: &str, ip: Ipv4Addr| {
            let cfg = AfXdpConfig::new(ifname, L2Config::new(MacAddr::ZERO, ip, 24));
            AfXdpPort::open_group(&cfg, 1, SharedNeighbours::new())
                .ok()?
                .pop()
        };
        Some((open("xbench-a", GW_IP)?, open("xbench-b", CL_IP)?))
    }
}
