//! The run's figures: a table for people, JSON for scripts.

use std::io;
use std::path::Path;

use serde::Serialize;

use super::cpu::CpuTime;
use super::engine::{Errors, ThreadResult};
use super::receiver::Tally;
use super::traffic::{Stop, TrafficSpec};

/// Totals at one moment of the run.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Sample {
    /// Seconds since the traffic phase began.
    pub t: f64,
    pub sent: u64,
    pub received: u64,
    pub rx_bytes: u64,
    #[serde(flatten)]
    pub cpu: CpuSoFar,
}

/// CPU time since the traffic phase began, ns: pktgen's process, and the
/// gateway's when pktgen was given its process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CpuSoFar {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generator_cpu_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_cpu_ns: Option<u64>,
    /// The part of it spent by the gateway's workers (threads named
    /// `esprit-worker-*`); the rest is mostly its control thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_workers_cpu_ns: Option<u64>,
}

/// The stretch between two samples of the timeline: its ends (seconds
/// since the traffic began) and the packets per second sent and received.
#[derive(Clone, Copy, Debug)]
pub struct Interval {
    pub from: f64,
    pub to: f64,
    pub tx_pps: f64,
    pub rx_pps: f64,
}

/// The rates between consecutive samples of a cumulative timeline (those
/// a millisecond apart or more).
pub fn intervals(timeline: &[Sample]) -> impl Iterator<Item = Interval> + '_ {
    timeline.windows(2).filter_map(|w| {
        let (a, b) = (w.first()?, w.get(1)?);
        let dt = b.t - a.t;
        (dt > 1e-3).then(|| Interval {
            from: a.t,
            to: b.t,
            tx_pps: b.sent.saturating_sub(a.sent) as f64 / dt,
            rx_pps: b.received.saturating_sub(a.received) as f64 / dt,
        })
    })
}

impl Sample {
    /// The line printed each second: rates since `last`, and totals.
    pub fn progress_line(&self, last: &Sample) -> String {
        let dt = (self.t - last.t).max(1e-9);
        format!(
            "[{:6.1}s] tx {:8.3} Mpps  rx {:8.3} Mpps {:7.3} Gbit/s  sent {:>11} received {:>11} in flight or lost {:>8}",
            self.t,
            (self.sent - last.sent.min(self.sent)) as f64 / dt / 1e6,
            (self.received - last.received.min(self.received)) as f64 / dt / 1e6,
            (self.rx_bytes - last.rx_bytes.min(self.rx_bytes)) as f64 * 8.0 / dt / 1e9,
            self.sent,
            self.received,
            self.sent.saturating_sub(self.received),
        )
    }
}

/// Round trips, in microseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
    /// (microseconds, fraction at or below): the CDF, for plots.
    pub cdf: Vec<(f64, f64)>,
}

/// The IKE set-up phase.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Setup {
    pub tunnels: u64,
    pub failed: u64,
    pub seconds: f64,
    pub tunnels_per_sec: f64,
    /// Tunnels whose first ping was answered on their epoch.
    pub pinged: u64,
}

/// `ike` mode's end: every client's IKE SA deleted (INFORMATIONAL).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Teardown {
    /// IKE SAs whose DELETE the gateway answered.
    pub deleted: u64,
    /// IKE SAs still unanswered when pktgen stopped waiting: the gateway
    /// keeps them until its liveness checks find the clients gone.
    pub left: u64,
    pub seconds: f64,
}

/// How busy pktgen's own threads were in the traffic phase.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GeneratorCpu {
    /// CPU time over wall time, summed over the threads and divided by
    /// their number: near 1, the generator had no time left to send more
    /// and the figures may be its limit, not the gateway's.
    pub busy: f64,
    /// The threads' CPU time per packet received back (one seal, one open,
    /// a share of the system calls), in user and system (kernel) mode.
    pub user_ns_per_round_trip: f64,
    pub system_ns_per_round_trip: f64,
    /// Packet buffers pktgen allocated in the traffic phase (its threads'
    /// pools, and in `ike` mode the clients' IKE): a few bursts' worth is
    /// steady state; a figure that grows with the run is a leak.
    pub buffers_allocated: u64,
}

/// The gateway's CPU time in the traffic phase (all its threads, from
/// `/proc`), when pktgen was given its process (`--gateway-pid`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct GatewayCpu {
    /// CPU time over wall time: cores' worth the gateway kept busy.
    pub cores: f64,
    /// User and system time per packet received back (one open, one seal,
    /// the I/O, and a share of the control thread).
    pub ns_per_round_trip: f64,
}

impl GatewayCpu {
    /// `cpu`: the gateway's CPU time over `wall` of traffic.
    pub fn new(cpu: std::time::Duration, wall: std::time::Duration, received: u64) -> GatewayCpu {
        GatewayCpu {
            cores: cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9),
            ns_per_round_trip: cpu.as_nanos() as f64 / received.max(1) as f64,
        }
    }
}

/// Above this a report says the generator may have been the limit.
pub const BUSY_WARNING: f64 = 0.9;

/// Everything one run measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub mode: String,
    pub clients: usize,
    pub threads: usize,
    pub sockets: usize,
    /// "64", "1400" or "imix".
    pub size: String,
    /// The size mix's nominal mean. IPv6 packets are at least 72 bytes,
    /// so with `--size 64` they are longer; the Gbit/s count what was sent.
    pub mean_inner_bytes: f64,
    /// Offered rate, packets/s; `None` = flat out.
    pub rate_pps: Option<f64>,
    pub count: Option<u64>,
    /// Packets in flight per thread at most (closed loop), if limited.
    pub window: Option<usize>,
    /// Packets per client in a row (1: round robin).
    pub train: usize,
    /// Whether the clients took turns in a random order (`--shuffle`).
    pub shuffled: bool,
    /// The send phase, seconds.
    pub seconds: f64,
    pub sent: u64,
    /// Distinct packets back (late ones included).
    pub received: u64,
    /// sent - received.
    pub lost: u64,
    pub duplicated: u64,
    /// Came back more than 1024 packets behind its client's newest.
    pub late: u64,
    pub tx_mpps: f64,
    pub rx_mpps: f64,
    /// Inner bytes sent / received, Gbit/s.
    pub tx_gbps: f64,
    pub rx_gbps: f64,
    pub latency_us: Latency,
    pub errors: Errors,
    pub generator: GeneratorCpu,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayCpu>,
    pub timeline: Vec<Sample>,
    pub setup: Option<Setup>,
    pub teardown: Option<Teardown>,
    /// `ike` mode with a rekey storm.
    pub rekeys: Option<crate::pktgen::ike::Rekeys>,
    /// Each round of the storm against the quiet seconds before it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub storm_rounds: Vec<crate::pktgen::ike::RoundFigures>,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

impl Report {
    pub fn build(
        mode: &str,
        clients: usize,
        threads: usize,
        sockets: usize,
        spec: &TrafficSpec,
        results: &[ThreadResult],
        timeline: Vec<Sample>,
    ) -> Report {
        let mut tally = Tally::default();
        let mut errors = Errors::default();
        let (mut sent, mut tx_bytes, mut secs) = (0u64, 0u64, 0f64);
        let (mut cpu, mut wall) = (CpuTime::default(), 0f64);
        for r in results {
            cpu.user += r.cpu.user;
            cpu.system += r.cpu.system;
            wall += r.wall.as_secs_f64();
            tally.merge(&r.tally);
            errors.merge(&r.errors);
            sent += r.sent;
            tx_bytes += r.tx_bytes;
            secs = secs.max(r.send_time.as_secs_f64());
        }
        errors.foreign += tally.foreign;
        let secs = secs.max(1e-6);
        let received = tally.received + tally.late;
        let h = &tally.latency;
        let cdf = if h.is_empty() {
            Vec::new()
        } else {
            h.iter_quantiles(2)
                .map(|v| (us(v.value_iterated_to()), v.quantile_iterated_to()))
                .collect()
        };
        Report {
            mode: mode.into(),
            clients,
            threads,
            sockets,
            size: spec.size.name(),
            mean_inner_bytes: spec.size.mean(),
            rate_pps: spec.rate,
            count: match spec.stop {
                Stop::Count(n) => Some(n),
                Stop::After(_) => None,
            },
            window: spec.window,
            train: spec.train,
            shuffled: spec.shuffle,
            seconds: secs,
            sent,
            received,
            lost: sent.saturating_sub(received),
            duplicated: tally.duplicated,
            late: tally.late,
            tx_mpps: sent as f64 / secs / 1e6,
            rx_mpps: received as f64 / secs / 1e6,
            tx_gbps: tx_bytes as f64 * 8.0 / secs / 1e9,
            rx_gbps: tally.rx_bytes as f64 * 8.0 / secs / 1e9,
            latency_us: Latency {
                p50: us(h.value_at_quantile(0.5)),
                p99: us(h.value_at_quantile(0.99)),
                p999: us(h.value_at_quantile(0.999)),
                max: us(h.max()),
                mean: h.mean() / 1000.0,
                cdf,
            },
            errors,
            generator: GeneratorCpu {
                busy: cpu.total().as_secs_f64() / wall.max(1e-9),
                user_ns_per_round_trip: cpu.user.as_nanos() as f64 / received.max(1) as f64,
                system_ns_per_round_trip: cpu.system.as_nanos() as f64 / received.max(1) as f64,
                buffers_allocated: results.iter().map(|r| r.buffers).sum(),
            },
            gateway: None,
            timeline,
            setup: None,
            teardown: None,
            rekeys: None,
            storm_rounds: Vec::new(),
        }
    }

    /// The table printed at the end.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let mut rate = self
            .rate_pps
            .map_or("flat out".to_string(), |r| format!("{r:.0} pps"));
        if let Some(w) = self.window {
            rate += &format!(", at most {w} in flight per thread");
        }
        if self.train > 1 {
            rate += &format!(", {} packets per client in a row", self.train);
        }
        if let Some(s) = &self.setup {
            t += &format!(
                "set-up: {} tunnels in {:.2} s = {:.0} tunnels/s, {} failed, {} answered their first ping\n",
                s.tunnels, s.seconds, s.tunnels_per_sec, s.failed, s.pinged
            );
        }
        match self.rekeys {
            Some(r) if r.control => {
                t += &format!(
                    "rekey storm control: no client rekeyed; the rounds below are timed as a storm's and show the machine's own drift and noise ({:.2} s of IKE and epoch work in the generator)\n",
                    r.generator_work_ns as f64 / 1e9
                );
            }
            Some(r) => {
                t += &format!(
                    "rekey storm: {} rekeys started, {} completed (data moved after the pong), {} failed\n",
                    r.started, r.completed, r.failed
                );
                t += &format!(
                    "  the generator's own IKE and epoch work: {:.2} s of its traffic thread, {:.1} us a rekey\n",
                    r.generator_work_ns as f64 / 1e9,
                    r.generator_work_ns as f64 / 1e3 / r.started.max(1) as f64
                );
            }
            None => {}
        }
        for r in &self.storm_rounds {
            t += &match r.quiet_after_mpps {
                Some(after) => format!(
                    "  round {}: {:.3} M round trips/s in the quiet before it, {:.3} during it, {:.3} in the quiet after: {:.2}x ({:.2}x of the quiet before alone)\n",
                    r.round, r.quiet_mpps, r.during_mpps, after, r.ratio, r.ratio_to_before
                ),
                None => format!(
                    "  round {}: {:.3} M round trips/s in the quiet before it, {:.3} during it ({:.2}x; the run ended before a quiet second after it)\n",
                    r.round, r.quiet_mpps, r.during_mpps, r.ratio
                ),
            };
            let cpu = [
                ("generator", r.generator_us),
                ("gateway", r.gateway_us),
                ("its workers", r.gateway_workers_us),
            ]
            .into_iter()
            .filter_map(|(who, v)| v.map(|(q, d)| format!("{who} {q:.2} -> {d:.2}")))
            .collect::<Vec<_>>();
            if !cpu.is_empty() {
                t += &format!(
                    "    CPU us per round trip, quiet -> during: {}\n",
                    cpu.join(", ")
                );
            }
        }
        if let Some(d) = &self.teardown {
            t += &format!(
                "teardown: {} IKE SAs deleted in {:.2} s, {} not confirmed (the gateway keeps those until its liveness check)\n",
                d.deleted, d.seconds, d.left
            );
        }
        t += &format!(
            "{} mode, {} clients, {} threads, {} sockets, size {}, {rate}, {:.2} s\n",
            self.mode, self.clients, self.threads, self.sockets, self.size, self.seconds
        );
        t += &format!(
            "{:>11} {:>11} {:>8} {:>6} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9}\n",
            "sent",
            "received",
            "lost",
            "dup",
            "tx Mpps",
            "rx Mpps",
            "tx Gb/s",
            "rx Gb/s",
            "p50 us",
            "p99 us",
            "p99.9 us",
            "max us"
        );
        let l = &self.latency_us;
        t += &format!(
            "{:>11} {:>11} {:>8} {:>6} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>9.1} {:>9.1} {:>9.1} {:>9.1}\n",
            self.sent, self.received, self.lost, self.duplicated, self.tx_mpps, self.rx_mpps,
            self.tx_gbps, self.rx_gbps, l.p50, l.p99, l.p999, l.max
        );
        let g = &self.generator;
        t += &format!(
            "generator: on the CPU {:.0}% of the run, {:.2} us user + {:.2} us system per round trip, {} packet buffers{}\n",
            g.busy * 100.0,
            g.user_ns_per_round_trip / 1000.0,
            g.system_ns_per_round_trip / 1000.0,
            g.buffers_allocated,
            if g.busy > BUSY_WARNING {
                "; busy: the figures may be pktgen's limit (try --threads)"
            } else {
                ""
            }
        );
        if let Some(gw) = &self.gateway {
            let both = gw.ns_per_round_trip + g.user_ns_per_round_trip + g.system_ns_per_round_trip;
            t += &format!(
                "gateway: {:.2} us CPU per round trip ({:.2} cores busy); with the generator's, {:.2} us\n",
                gw.ns_per_round_trip / 1000.0,
                gw.cores,
                both / 1000.0
            );
        }
        let e = &self.errors;
        if *e != Errors::default() || self.late > 0 {
            t += &format!(
                "errors: tx dropped {}, seal failed {}, unknown SPI {}, not ESP {}, auth failed {}, replayed {}, other open failures {}, foreign {}, ICMP {}, late {}\n",
                e.tx_dropped, e.seal_failed, e.unknown_spi, e.not_esp, e.auth_failed,
                e.replayed, e.open_failed, e.foreign, e.icmp, self.late
            );
        }
        t
    }

    pub fn write_json(&self, path: &Path) -> io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(io::Error::other)?;
        std::fs::write(path, text + "\n")
    }
}
