//! Per-SA traffic counters and lifetime limits.
//!
//! Counters are written only by the SA's owning worker (plain `Relaxed`
//! load + store, no locked add) and read by the control plane.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Packets and bytes through one SA.
#[derive(Default)]
pub struct SaCounters {
    packets: AtomicU64,
    bytes: AtomicU64,
}

impl SaCounters {
    /// Adds one packet of `len` bytes. Owner worker only.
    #[inline]
    pub fn add(&self, len: usize) {
        self.packets.store(self.packets.load(Relaxed) + 1, Relaxed);
        self.bytes
            .store(self.bytes.load(Relaxed) + len as u64, Relaxed);
    }

    pub fn packets(&self) -> u64 {
        self.packets.load(Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Relaxed)
    }
}

/// Hard limits after which the SA refuses traffic (RFC 4301 4.4.2.1);
/// 0 means no limit. Time limits are the control plane's job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardLimits {
    pub packets: u64,
    pub bytes: u64,
}

impl HardLimits {
    /// Whether the counters have reached a limit.
    #[inline]
    pub fn reached(&self, c: &SaCounters) -> bool {
        (self.packets != 0 && c.packets() >= self.packets)
            || (self.bytes != 0 && c.bytes() >= self.bytes)
    }
}
