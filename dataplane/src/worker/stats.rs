//! Per-worker counters: written by their worker only, read by anyone.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::drop_reason::DropReason;

/// A counter with exactly one writing thread: a plain load and store, no
/// locked read-modify-write, and readers on other cores see it eventually.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Mirrors a total kept elsewhere (a port's own counter).
    #[inline]
    pub fn set(&self, n: u64) {
        self.0.store(n, Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// What one worker did. Padded to its own cache lines so two workers'
/// counters never share one.
#[repr(align(128))]
#[derive(Default)]
pub struct WorkerStats {
    pub outside_rx: Counter,
    pub outside_tx: Counter,
    pub inside_rx: Counter,
    pub inside_tx: Counter,
    /// ESP packets opened and forwarded inside.
    pub decrypted: Counter,
    /// Inner packets sealed and sent outside.
    pub encrypted: Counter,
    /// Packets passed to the control plane (IKE on 4500, control messages).
    pub to_control: Counter,
    /// Packets handed to the worker that owns their SA.
    pub handed_off: Counter,
    /// NAT-T keepalives received (RFC 3948 2.3), consumed.
    pub keepalives: Counter,
    /// Dummy packets (next header 59), consumed.
    pub dummies: Counter,
    /// Loop iterations that found nothing to do.
    pub idle_polls: Counter,
    /// TCP SYNs whose MSS was lowered to fit the tunnel.
    pub mss_clamped: Counter,
    /// ICMP "fragmentation needed" / "packet too big" sent inside.
    pub icmp_too_big_sent: Counter,
    /// ... and not sent, over the rate limit.
    pub icmp_too_big_limited: Counter,
    /// Inner IPv4 packets without DF split to fit their tunnel.
    pub fragmented: Counter,
    /// TUN offloads: TCP super-packets the kernel handed the worker (each
    /// cut into segments), and merged ones the worker wrote back.
    pub inside_rx_super: Counter,
    pub inside_tx_super: Counter,
    drops: [Counter; DropReason::COUNT],
}

impl WorkerStats {
    /// Counts `n` packets dropped for `reason`.
    #[inline]
    pub fn count_drop(&self, reason: DropReason, n: u64) {
        self.drops[reason.index()].add(n);
    }

    /// Sets the count of `reason` to a total kept elsewhere (the ports'
    /// own receive drops, for `RxDropped`, which nothing else counts).
    #[inline]
    pub fn mirror_drops(&self, reason: DropReason, total: u64) {
        self.drops[reason.index()].set(total);
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()].get()
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().map(Counter::get).sum()
    }

    /// A plain copy for reports.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            outside_rx: self.outside_rx.get(),
            outside_tx: self.outside_tx.get(),
            inside_rx: self.inside_rx.get(),
            inside_tx: self.inside_tx.get(),
            decrypted: self.decrypted.get(),
            encrypted: self.encrypted.get(),
            to_control: self.to_control.get(),
            handed_off: self.handed_off.get(),
            keepalives: self.keepalives.get(),
            mss_clamped: self.mss_clamped.get(),
            icmp_too_big_sent: self.icmp_too_big_sent.get(),
            icmp_too_big_limited: self.icmp_too_big_limited.get(),
            fragmented: self.fragmented.get(),
            inside_rx_super: self.inside_rx_super.get(),
            inside_tx_super: self.inside_tx_super.get(),
            drops: DropReason::ALL.map(|r| self.drops(r)),
        }
    }
}

/// Counters copied out of [`WorkerStats`]; can be summed across workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub outside_rx: u64,
    pub outside_tx: u64,
    pub inside_rx: u64,
    pub inside_tx: u64,
    pub decrypted: u64,
    pub encrypted: u64,
    pub to_control: u64,
    pub handed_off: u64,
    pub keepalives: u64,
    pub mss_clamped: u64,
    pub icmp_too_big_sent: u64,
    pub icmp_too_big_limited: u64,
    pub fragmented: u64,
    pub inside_rx_super: u64,
    pub inside_tx_super: u64,
    pub drops: [u64; DropReason::COUNT],
}

impl StatsSnapshot {
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Field-wise sum, for totals over workers.
    pub fn add(&mut self, o: &StatsSnapshot) {
        self.outside_rx += o.outside_rx;
        self.outside_tx += o.outside_tx;
        self.inside_rx += o.inside_rx;
        self.inside_tx += o.inside_tx;
        self.decrypted += o.decrypted;
        self.encrypted += o.encrypted;
        self.to_control += o.to_control;
        self.handed_off += o.handed_off;
        self.keepalives += o.keepalives;
        self.mss_clamped += o.mss_clamped;
        self.icmp_too_big_sent += o.icmp_too_big_sent;
        self.icmp_too_big_limited += o.icmp_too_big_limited;
        self.fragmented += o.fragmented;
        self.inside_rx_super += o.inside_rx_super;
        self.inside_tx_super += o.inside_tx_super;
        for (a, b) in self.drops.iter_mut().zip(o.drops.iter()) {
            *a += b;
        }
    }
}
