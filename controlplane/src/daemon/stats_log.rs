//! Periodic stats in the log (until the control socket shows them).

use std::time::{Duration, Instant};

use dataplane::sa::SaTables;
use dataplane::worker::StatsSnapshot;
use dataplane::DropReason;

pub struct StatsLog {
    every: Duration,
    last: Instant,
    prev: StatsSnapshot,
}

impl StatsLog {
    pub fn new(every: Duration) -> StatsLog {
        StatsLog {
            every,
            last: Instant::now(),
            prev: StatsSnapshot::default(),
        }
    }

    /// Logs rates since the last line if `every` has passed.
    pub fn maybe_log(&mut self, now: &StatsSnapshot, tables: &SaTables) {
        let dt = self.last.elapsed();
        if dt < self.every {
            return;
        }
        let secs = dt.as_secs_f64().max(1e-9);
        let rate = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / secs;
        let drops: Vec<String> = DropReason::ALL
            .iter()
            .filter(|r| now.drops(**r) > 0)
            .map(|r| format!("{}={}", r.name(), now.drops(*r)))
            .collect();
        tracing::info!(
            decrypt_pps = rate(now.decrypted, self.prev.decrypted) as u64,
            encrypt_pps = rate(now.encrypted, self.prev.encrypted) as u64,
            decrypted = now.decrypted,
            encrypted = now.encrypted,
            to_control = now.to_control,
            inbound_sas = tables.inbound.len(),
            // Publications so far: each one a new snapshot the workers load.
            sa_table_version = tables.version,
            drops = %if drops.is_empty() { "none".to_string() } else { drops.join(",") },
            "stats"
        );
        self.prev = *now;
        self.last = Instant::now();
    }
}
