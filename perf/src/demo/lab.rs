//! Builds the two data planes and drives traffic through them.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::packet::{Encap, Packet};
use dataplane::port::mem::{link, MemPort};
use dataplane::port::udp::{UdpConfig, UdpPort};
use dataplane::sa::manual::{install, ManualTunnel};
use dataplane::sa::SaPublisher;
use dataplane::testkit::manual_keys as keys;
use dataplane::testkit::{ipv4_udp_payload, write_ipv4_udp};
use dataplane::worker::{handoff_mesh, ControlLink, StatsSnapshot, Worker, WorkerConfig};
use hdrhistogram::Histogram;

const CLIENT_INNER: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 2);
const SERVER_INNER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);

/// What to run.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Inner packet size in bytes (IPv4 header included), 48..=1400.
    pub size: usize,
    pub duration: Duration,
    /// Packets in flight at most (the generator waits for replies beyond it).
    pub window: usize,
}

/// What one run measured.
#[derive(Debug)]
pub struct DemoResult {
    pub size: usize,
    pub elapsed: Duration,
    pub sent: u64,
    pub received: u64,
    /// Round-trip latency in nanoseconds.
    pub latency: Histogram<u64>,
    pub gateway: StatsSnapshot,
    pub client: StatsSnapshot,
}

impl DemoResult {
    /// Round trips per second, in millions.
    pub fn mpps(&self) -> f64 {
        self.received as f64 / self.elapsed.as_secs_f64() / 1e6
    }

    /// Inner traffic through the gateway, both directions, in Gbit/s.
    pub fn gbps(&self) -> f64 {
        2.0 * self.received as f64 * self.size as f64 * 8.0 / self.elapsed.as_secs_f64() / 1e9
    }
}

type DemoWorker = Worker<UdpPort, MemPort>;

/// One end: a worker on a UDP socket and its inside cable's far end.
fn end(
    tunnel: &ManualTunnel,
    socket: UdpPort,
) -> Result<(DemoWorker, MemPort, SaPublisher), String> {
    let mut publisher = SaPublisher::new();
    install(publisher.edit(), tunnel, 1).map_err(|e| e.to_string())?;
    publisher.publish();
    let (inside, far) = link(8192);
    let cfg = WorkerConfig {
        burst: 32,
        ..WorkerConfig::default()
    };
    let handoff = handoff_mesh(1, 1).pop().ok_or("no hand-off queue")?;
    let w = Worker::new(
        cfg,
        socket,
        inside,
        publisher.reader(),
        handoff,
        ControlLink::new(64),
    );
    Ok((w, far, publisher))
}

fn bind(addr: SocketAddr) -> Result<UdpPort, String> {
    UdpPort::bind_group(addr, 1, UdpConfig::default())
        .map_err(|e| format!("bind {addr}: {e}"))?
        .pop()
        .ok_or_else(|| "no socket".to_string())
}

/// Runs the demo once.
pub fn run(opt: &DemoOptions) -> Result<DemoResult, String> {
    let size = opt.size.clamp(48, 1400);
    let gw_sock = bind("127.0.0.1:0".parse().map_err(|_| "addr")?)?;
    let cl_sock = bind("127.0.0.1:0".parse().map_err(|_| "addr")?)?;
    let gw_tunnel = ManualTunnel {
        tunnel: 1,
        remote: cl_sock.local_addr(),
        encap: Encap::EspInUdp,
        remote_ts: vec!["10.2.0.0/16".parse().map_err(|_| "prefix")?],
        inbound: keys(0x0100_0001, 0x11),
        outbound: keys(0x0100_0002, 0x22),
        replay_window: 1024,
    };
    let cl_tunnel = gw_tunnel.mirrored(
        gw_sock.local_addr(),
        vec!["10.1.0.0/16".parse().map_err(|_| "prefix")?],
    );
    let (mut gw, gw_far, gw_pub) = end(&gw_tunnel, gw_sock)?;
    let (mut cl, cl_far, cl_pub) = end(&cl_tunnel, cl_sock)?;
    let gw_stats = gw.stats();
    let cl_stats = cl.stats();

    let stop = Arc::new(AtomicBool::new(false));
    let gw_stop = stop.clone();
    let gateway = std::thread::Builder::new()
        .name("demo-gateway".into())
        .spawn(move || {
            let _ = core_affinity::set_for_current(core_affinity::CoreId { id: 1 });
            let mut reflected = Vec::with_capacity(64);
            while !gw_stop.load(Ordering::Relaxed) {
                gw.poll_once();
                // The protected network: swap addresses and send it back.
                reflected.extend(std::iter::from_fn(|| gw_far.recv()).take(64));
                for mut p in reflected.drain(..) {
                    let d = p.data_mut();
                    if d.len() >= 24 {
                        let (a, b) = d[12..20].split_at_mut(4);
                        a.swap_with_slice(b);
                        let (sp, dp) = d[20..24].split_at_mut(2);
                        sp.swap_with_slice(dp);
                    }
                    let _ = gw_far.send(p);
                }
            }
            drop(gw_pub);
        })
        .map_err(|e| e.to_string())?;

    let _ = core_affinity::set_for_current(core_affinity::CoreId { id: 0 });
    let mut latency =
        Histogram::<u64>::new_with_bounds(100, 10_000_000_000, 3).map_err(|e| e.to_string())?;
    let payload = [0x5au8; 1400];
    let start = Instant::now();
    let (mut sent, mut received) = (0u64, 0u64);
    let mut spare: Vec<Packet> = (0..opt.window.max(1)).map(|_| Packet::new()).collect();
    let deadline = start + opt.duration;
    // After the deadline, stop sending and let what is in flight come home.
    let drain_until = deadline + Duration::from_millis(200);
    loop {
        let now = Instant::now();
        if now >= drain_until || (now >= deadline && sent == received) {
            break;
        }
        let now_ns = start.elapsed().as_nanos() as u64;
        // Top the window up, one burst at a time.
        let burst = if now < deadline { 32 } else { 0 };
        for _ in 0..burst {
            let Some(mut p) = spare.pop() else { break };
            let mut data = payload;
            data[..8].copy_from_slice(&sent.to_be_bytes());
            data[8..16].copy_from_slice(&now_ns.to_be_bytes());
            let space = p.rx_space();
            let n = write_ipv4_udp(
                space,
                CLIENT_INNER,
                SERVER_INNER,
                (4000, 5000),
                &data[..size - 28],
            )
            .unwrap_or(0);
            p.set_received_len(n);
            p.meta.encap = Encap::Inner;
            match cl_far.send(p) {
                Ok(()) => sent += 1,
                Err(p) => {
                    spare.push(p);
                    break;
                }
            }
        }
        cl.poll_once();
        while let Some(p) = cl_far.recv() {
            let now = start.elapsed().as_nanos() as u64;
            if let Some(stamp) = ipv4_udp_payload(p.data()).and_then(|b| b.get(8..16)) {
                let t = u64::from_be_bytes(stamp.try_into().unwrap_or([0; 8]));
                let _ = latency.record(now.saturating_sub(t).max(100));
                received += 1;
            }
            spare.push(p);
        }
        // A lost packet never returns its buffer: top the window up so
        // loss cannot stall the run.
        if spare.is_empty() && sent - received < opt.window as u64 / 2 {
            spare.push(Packet::new());
        }
    }
    let elapsed = opt.duration.min(start.elapsed());
    stop.store(true, Ordering::Relaxed);
    gateway.join().map_err(|_| "gateway thread panicked")?;
    drop(cl_pub);
    Ok(DemoResult {
        size,
        elapsed,
        sent,
        received,
        latency,
        gateway: gw_stats.snapshot(),
        client: cl_stats.snapshot(),
    })
}
