//! One traffic phase: binds the clients' sockets, spreads them over the
//! threads, prints progress every second and gathers the report.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::port::udp::{UdpConfig, UdpPort};

use super::clients::Client;
use super::cpu::CpuTime;
use super::engine::{self, Lane, Progress, ThreadResult};
use super::report::{CpuSoFar, GatewayCpu, Report, Sample};
use super::traffic::TrafficSpec;
use super::PktgenError;

/// How to run the traffic phase.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    pub threads: usize,
    pub traffic: TrafficSpec,
    /// Print a progress line to stderr every second.
    pub progress: bool,
    /// The gateway's process, to report its CPU time per round trip.
    pub gateway_pid: Option<u32>,
}

/// The clients' sockets: UDP GSO and GRO on. With GRO off the kernel cut
/// each of the gateway's GSO sends into datagrams on its way into
/// pktgen's socket, at the cost of both ends: turning it on took a 1k
/// round robin from 0.93 to 2.08 M round trips/s, the gateway's CPU per
/// round trip from 0.95 to 0.47 us and pktgen's system time from 0.72 to
/// 0.18 us (one run each, `PIN=1`).
pub fn client_socket_config() -> UdpConfig {
    UdpConfig {
        gro: true,
        socket_buffer: 8 << 20,
        ..UdpConfig::default()
    }
}

/// Binds one socket per group of clients.
pub fn bind_lanes(groups: Vec<(SocketAddr, Vec<Client>)>) -> Result<Vec<Lane>, PktgenError> {
    let cfg = client_socket_config();
    groups
        .into_iter()
        .map(|(addr, clients)| {
            let port = UdpPort::bind_with(addr, cfg)
                .map_err(PktgenError::io(format!("bind client socket {addr}")))?;
            Ok(Lane { port, clients })
        })
        .collect()
}

/// Runs the traffic phase over `lanes` and reports. `mode` names the run in
/// the report. The lanes come back for what follows (IKE deletes).
pub fn run(
    lanes: Vec<Lane>,
    opt: &SessionOptions,
    mode: &str,
) -> Result<(Report, Vec<Lane>), PktgenError> {
    run_with(lanes, opt, mode, None)
}

/// As [`run`], with IKE serviced during the traffic (one thread then: the
/// hook owns all clients' IKE state).
pub fn run_with(
    lanes: Vec<Lane>,
    opt: &SessionOptions,
    mode: &str,
    mut hook: Option<&mut (dyn engine::Hook + 'static)>,
) -> Result<(Report, Vec<Lane>), PktgenError> {
    let clients: usize = lanes.iter().map(|l| l.clients.len()).sum();
    let sockets = lanes.len();
    let threads = if hook.is_some() {
        1
    } else {
        opt.threads.clamp(1, sockets.max(1))
    };
    let mut per_thread: Vec<Vec<Lane>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, lane) in lanes.into_iter().enumerate() {
        if let Some(t) = per_thread.get_mut(i % threads) {
            t.push(lane);
        }
    }
    let progress: Vec<Arc<Progress>> = (0..threads).map(|_| Arc::default()).collect();
    let abort = AtomicBool::new(false);
    let cpu = CpuSampler::new(opt.gateway_pid);
    let epoch = Instant::now();
    let mut timeline = vec![Sample {
        cpu: cpu.at_start(),
        ..Sample::default()
    }];
    let mut results: Vec<ThreadResult> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for (i, lanes) in per_thread.into_iter().enumerate() {
            let share = engine::share(&opt.traffic, threads, i);
            let (prog, abort, spec) = (progress[i].clone(), &abort, opt.traffic);
            let hook = if i == 0 { hook.take() } else { None };
            let h = std::thread::Builder::new()
                .name(format!("pktgen-{i}"))
                .spawn_scoped(s, move || {
                    engine::run(lanes, spec, share, epoch, &prog, abort, hook)
                });
            match h {
                Ok(h) => handles.push(h),
                Err(_) => abort.store(true, std::sync::atomic::Ordering::Relaxed),
            }
        }
        let mut next = epoch + Duration::from_secs(1);
        while !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(10));
            let now = Instant::now();
            if now >= next {
                next += Duration::from_secs(1);
                let (sent, received, rx_bytes) = engine::totals(&progress);
                let sample = Sample {
                    t: now.duration_since(epoch).as_secs_f64(),
                    sent,
                    received,
                    rx_bytes,
                    cpu: cpu.since_start(),
                };
                if opt.progress {
                    let last = timeline.last().copied().unwrap_or_default();
                    eprintln!("{}", sample.progress_line(&last));
                }
                timeline.push(sample);
            }
        }
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    if results.len() != threads {
        return Err(PktgenError::Option(
            "a traffic thread failed to start or panicked".into(),
        ));
    }
    let (sent, received, rx_bytes) = engine::totals(&progress);
    let cpu_so_far = cpu.since_start();
    timeline.push(Sample {
        t: epoch.elapsed().as_secs_f64(),
        sent,
        received,
        rx_bytes,
        cpu: cpu_so_far,
    });
    let mut report = Report::build(
        mode,
        clients,
        threads,
        sockets,
        &opt.traffic,
        &results,
        timeline,
    );
    report.gateway = cpu_so_far
        .gateway_cpu_ns
        .map(|ns| GatewayCpu::new(Duration::from_nanos(ns), epoch.elapsed(), report.received));
    let lanes = results
        .iter_mut()
        .flat_map(|r| std::mem::take(&mut r.lanes))
        .collect();
    Ok((report, lanes))
}

/// Reads pktgen's and the gateway's CPU time for the timeline.
struct CpuSampler {
    /// The gateway's PID, its CPU time and its workers' at the start.
    gateway: Option<(u32, CpuTime, CpuTime)>,
    generator: Option<CpuTime>,
}

/// What espritd names its data-plane threads.
const WORKER_THREADS: &str = "esprit-worker";

impl CpuSampler {
    fn new(gateway_pid: Option<u32>) -> CpuSampler {
        CpuSampler {
            gateway: gateway_pid.and_then(|p| {
                Some((
                    p,
                    CpuTime::of_process(p)?,
                    CpuTime::of_threads_named(p, WORKER_THREADS)?,
                ))
            }),
            generator: CpuTime::of_process(std::process::id()),
        }
    }

    /// Zero for each count this sampler can read.
    fn at_start(&self) -> CpuSoFar {
        CpuSoFar {
            generator_cpu_ns: self.generator.map(|_| 0),
            gateway_cpu_ns: self.gateway.map(|_| 0),
            gateway_workers_cpu_ns: self.gateway.map(|_| 0),
        }
    }

    /// CPU time since `new`: pktgen's, the gateway's, and its workers'.
    fn since_start(&self) -> CpuSoFar {
        let ns = |t: CpuTime| u64::try_from(t.total().as_nanos()).ok();
        let generator = self
            .generator
            .zip(CpuTime::of_process(std::process::id()))
            .and_then(|(a, b)| ns(b.since(a)));
        let gateway = self
            .gateway
            .and_then(|(p, a, _)| CpuTime::of_process(p).map(|b| b.since(a)))
            .and_then(ns);
        let workers = self
            .gateway
            .and_then(|(p, _, a)| CpuTime::of_threads_named(p, WORKER_THREADS).map(|b| b.since(a)))
            .and_then(ns);
        CpuSoFar {
            generator_cpu_ns: generator,
            gateway_cpu_ns: gateway,
            gateway_workers_cpu_ns: workers,
        }
    }
}
