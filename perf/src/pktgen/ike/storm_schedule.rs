//! When a rekey storm's rounds run, and what the traffic did in each.
//!
//! A storm of `over` seconds starts a quarter of `over` into the traffic;
//! each further round follows after another quiet quarter. Each round is
//! measured against the quiet seconds on both sides of it (the quiet
//! before it, and the next round's lead-in or the run's tail after it), so
//! a round's figure says what the rekeys cost, not how the machine's speed
//! drifted over the run: a drift that is steady over the three windows
//! cancels in the mean of the two quiets.

use std::time::Duration;

use serde::Serialize;

use crate::pktgen::report::{intervals, Sample};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Each round's length: every client rekeys once in it.
    pub over: Duration,
    pub rounds: u32,
}

/// One round's throughput, from the per-second timeline.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RoundFigures {
    pub round: u32,
    /// Median M round trips/s over the whole seconds of the quiet quarter
    /// before the round.
    pub quiet_mpps: f64,
    /// The same over the quiet quarter after it; `None` when the run ended
    /// before a whole second of it.
    pub quiet_after_mpps: Option<f64>,
    /// The same over the seconds of the round.
    pub during_mpps: f64,
    /// during / the mean of the quiet before and after (the quiet before
    /// alone when there is no after): the round's figure.
    pub ratio: f64,
    /// during / the quiet before alone.
    pub ratio_to_before: f64,
    /// CPU µs per round trip, (quiet, during): pktgen's process, and the
    /// gateway's when pktgen was given its process. They tell which end
    /// the rekeys cost.
    pub generator_us: Option<(f64, f64)>,
    pub gateway_us: Option<(f64, f64)>,
    /// The gateway's workers' part of `gateway_us`.
    pub gateway_workers_us: Option<(f64, f64)>,
}

impl Schedule {
    /// The quiet lead-in before each round.
    pub fn quiet(&self) -> Duration {
        self.over / 4
    }

    /// From one round's start to the next's.
    fn period(&self) -> Duration {
        self.over + self.quiet()
    }

    /// When round `k` starts, from the start of the traffic.
    pub fn round_start(&self, k: u32) -> Duration {
        self.quiet() + self.period() * k
    }

    /// When the `n`th rekey of the storm (counting over all rounds) is due,
    /// from the start of the traffic, and which client (index into the
    /// storm's order of `clients`) it is for. `None` past the last round.
    pub fn due(&self, n: usize, clients: usize) -> Option<(Duration, usize)> {
        let clients = clients.max(1);
        let round = u32::try_from(n / clients).ok()?;
        if round >= self.rounds {
            return None;
        }
        let index = n % clients;
        let spacing = self.over / u32::try_from(clients).unwrap_or(u32::MAX);
        let at = self.round_start(round) + spacing * u32::try_from(index).ok()?;
        Some((at, index))
    }

    /// Each round's figures from the timeline (samples about a second
    /// apart); rounds the run did not reach, or without a whole second in
    /// both windows, are left out.
    pub fn figures(&self, timeline: &[Sample]) -> Vec<RoundFigures> {
        (0..self.rounds)
            .filter_map(|k| {
                let start = self.round_start(k).as_secs_f64();
                let quiet_from = start - self.quiet().as_secs_f64();
                let quiet = median_rate(timeline, quiet_from, start)?;
                let end = start + self.over.as_secs_f64();
                let during = median_rate(timeline, start, end)?;
                let after = median_rate(timeline, end, end + self.quiet().as_secs_f64());
                let baseline = after.map_or(quiet, |a| (quiet + a) / 2.0);
                let cpu = |pick: fn(&Sample) -> Option<u64>| {
                    Some((
                        cpu_per_round_trip(timeline, quiet_from, start, pick)?,
                        cpu_per_round_trip(timeline, start, end, pick)?,
                    ))
                };
                Some(RoundFigures {
                    round: k + 1,
                    quiet_mpps: quiet,
                    quiet_after_mpps: after,
                    during_mpps: during,
                    ratio: during / baseline,
                    ratio_to_before: during / quiet,
                    generator_us: cpu(|s| s.cpu.generator_cpu_ns),
                    gateway_us: cpu(|s| s.cpu.gateway_cpu_ns),
                    gateway_workers_us: cpu(|s| s.cpu.gateway_workers_cpu_ns),
                })
            })
            .collect()
    }
}

/// CPU µs per packet received between the first sample at or after `from`
/// and the last at or before `to`, of the CPU time `pick` reads.
fn cpu_per_round_trip(
    timeline: &[Sample],
    from: f64,
    to: f64,
    pick: fn(&Sample) -> Option<u64>,
) -> Option<f64> {
    let a = timeline.iter().find(|s| s.t >= from)?;
    let b = timeline.iter().rev().find(|s| s.t <= to)?;
    let packets = b.received.checked_sub(a.received).filter(|&n| n > 0)?;
    let ns = pick(b)?.checked_sub(pick(a)?)?;
    Some(ns as f64 / 1000.0 / packets as f64)
}

/// How late a second's sample may be taken (the sampler sleeps in 10 ms
/// steps) and still count as on the second.
const SAMPLE_LAG: f64 = 0.05;

/// The median of the per-interval receive rates (M/s) of the intervals
/// that lie within `from..=to` seconds (give or take a sample's lag).
/// Intervals under half a second are left out: the last sample closes the
/// drain, whose rate is not the traffic's.
fn median_rate(timeline: &[Sample], from: f64, to: f64) -> Option<f64> {
    let mut rates: Vec<f64> = intervals(timeline)
        .filter(|i| i.from + SAMPLE_LAG >= from && i.to <= to + SAMPLE_LAG)
        .filter(|i| i.to - i.from >= 0.5)
        .map(|i| i.rx_pps / 1e6)
        .collect();
    if rates.is_empty() {
        return None;
    }
    rates.sort_by(f64::total_cmp);
    let mid = rates.len() / 2;
    Some(if rates.len() % 2 == 1 {
        rates[mid]
    } else {
        (rates[mid - 1] + rates[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pktgen::report::CpuSoFar;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn rounds_follow_each_other_after_a_quiet_quarter() {
        let s = Schedule {
            over: secs(40.0),
            rounds: 2,
        };
        assert_eq!(s.round_start(0), secs(10.0));
        assert_eq!(s.round_start(1), secs(60.0));
        assert_eq!(s.due(0, 4), Some((secs(10.0), 0)));
        assert_eq!(s.due(3, 4), Some((secs(40.0), 3)));
        assert_eq!(s.due(4, 4), Some((secs(60.0), 0)), "round 2, first client");
        assert_eq!(s.due(7, 4), Some((secs(90.0), 3)));
        assert_eq!(s.due(8, 4), None, "two rounds only");
    }

    /// A cumulative timeline sampled each second for `secs` seconds at
    /// `rate(t)` M/s, the gateway spending `gw_us(t)` µs a round trip.
    fn timeline(secs: u32, rate: impl Fn(f64) -> f64, gw_us: impl Fn(f64) -> f64) -> Vec<Sample> {
        let mut timeline = vec![Sample {
            cpu: CpuSoFar {
                gateway_cpu_ns: Some(0),
                ..CpuSoFar::default()
            },
            ..Sample::default()
        }];
        for i in 1..=secs {
            let t = f64::from(i);
            let last = timeline[timeline.len() - 1];
            let packets = (rate(t) * 1e6) as u64;
            timeline.push(Sample {
                t,
                received: last.received + packets,
                cpu: CpuSoFar {
                    gateway_cpu_ns: last
                        .cpu
                        .gateway_cpu_ns
                        .map(|c| c + (packets as f64 * gw_us(t) * 1000.0) as u64),
                    ..CpuSoFar::default()
                },
                ..Sample::default()
            });
        }
        timeline
    }

    #[test]
    fn each_round_is_measured_against_the_quiet_seconds_on_both_sides() {
        // 1.0 M/s, 0.8 in round 1 (10..50 s), 0.9 in the quiet 50..60 s,
        // 0.85 in round 2 (60..100 s); the gateway spends 1 µs a round
        // trip, 2 during round 1.
        let rate = |t: f64| match t {
            t if t <= 10.0 => 1.0,
            t if t <= 50.0 => 0.8,
            t if t <= 60.0 => 0.9,
            _ => 0.85,
        };
        let gw_us = |t: f64| if t > 10.0 && t <= 50.0 { 2.0 } else { 1.0 };
        let timeline = timeline(100, rate, gw_us);
        let s = Schedule {
            over: secs(40.0),
            rounds: 2,
        };
        let f = s.figures(&timeline);
        assert_eq!(f.len(), 2);
        assert_eq!(
            (f[0].round, f[0].quiet_mpps, f[0].during_mpps),
            (1, 1.0, 0.8)
        );
        assert_eq!(f[0].quiet_after_mpps, Some(0.9), "round 2's lead-in");
        assert!((f[0].ratio - 0.8 / 0.95).abs() < 1e-9, "{:?}", f[0]);
        assert!((f[0].ratio_to_before - 0.8).abs() < 1e-9);
        assert_eq!((f[1].quiet_mpps, f[1].during_mpps), (0.9, 0.85));
        // The run ended with round 2: the quiet before it is all there is.
        assert_eq!(f[1].quiet_after_mpps, None);
        assert!((f[1].ratio - 0.85 / 0.9).abs() < 1e-9);
        assert_eq!(f[0].gateway_us, Some((1.0, 2.0)));
        assert_eq!(f[1].gateway_us, Some((1.0, 1.0)));
        assert_eq!(f[0].generator_us, None, "not sampled here");
        let short = s.figures(&timeline[..40]);
        assert_eq!(short.len(), 1, "round 2 never came: {short:?}");
    }

    #[test]
    fn a_steady_drift_cancels_between_the_two_quiets() {
        // The machine slows from 2.0 to 1.5 M/s over a run where the rekeys
        // cost nothing: against the quiet before alone the round reads
        // 0.87x, against both sides 1.0x.
        let rate = |t: f64| 2.0 - 0.5 * t / 60.0;
        let timeline = timeline(60, rate, |_| 1.0);
        let s = Schedule {
            over: secs(40.0),
            rounds: 1,
        };
        let f = s.figures(&timeline);
        assert_eq!(f.len(), 1);
        assert!((f[0].ratio - 1.0).abs() < 0.01, "{:?}", f[0]);
        assert!(f[0].ratio_to_before < 0.9, "{:?}", f[0]);
    }

    #[test]
    fn the_drain_at_the_end_is_not_a_quiet_second() {
        // 1.0 M/s throughout, the run ending a second after the round
        // (10..50 s), then a last sample 50 ms later with only the
        // stragglers: the quiet after the round is that whole second alone.
        let mut t = timeline(51, |_| 1.0, |_| 1.0);
        let last = t[t.len() - 1];
        t.push(Sample {
            t: 51.05,
            received: last.received + 1_000,
            ..last
        });
        let s = Schedule {
            over: secs(40.0),
            rounds: 1,
        };
        let f = s.figures(&t);
        assert_eq!(f[0].quiet_after_mpps, Some(1.0), "{:?}", f[0]);
        assert!((f[0].ratio - 1.0).abs() < 1e-9);
    }
}
