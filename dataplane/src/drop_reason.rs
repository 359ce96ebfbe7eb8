//! Why the fast path dropped a packet. A small `Copy` enum that indexes a
//! per-worker counter array, so counting a drop is one add.

/// Every reason a worker can drop a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// A header was too short, inconsistent or of an unknown kind.
    Malformed = 0,
    /// No inbound SA has this SPI (or the slot's generation differs).
    UnknownSpi,
    /// The sequence number is left of the window or was seen already.
    Replay,
    /// The ICV did not verify.
    AuthFailed,
    /// The decrypted inner source is outside the SA's traffic selectors.
    PolicyMismatch,
    /// No tunnel routes the inner destination.
    NoRoute,
    /// The SA passed its hard lifetime.
    Expired,
    /// The outbound sequence number space is used up (RFC 4303 3.3.3).
    SeqExhausted,
    /// The packet does not fit the buffer after encapsulation.
    TooBig,
    /// The hand-off queue to the owning worker (or the control plane) was full.
    QueueFull,
    /// The port could not transmit the packet.
    TxFailed,
    /// Held while its tunnel's first epoch was being probed, and the hold
    /// queue was full or the tunnel never came up.
    HoldDropped,
    /// The port dropped it as it came in: larger than a packet buffer, or
    /// a read it could not make sense of (a bad TUN offload header).
    RxDropped,
}

impl DropReason {
    /// Number of reasons: the length of a counter array.
    pub const COUNT: usize = 13;

    /// All reasons in counter-index order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Malformed,
        DropReason::UnknownSpi,
        DropReason::Replay,
        DropReason::AuthFailed,
        DropReason::PolicyMismatch,
        DropReason::NoRoute,
        DropReason::Expired,
        DropReason::SeqExhausted,
        DropReason::TooBig,
        DropReason::QueueFull,
        DropReason::TxFailed,
        DropReason::HoldDropped,
        DropReason::RxDropped,
    ];

    /// Index into a `[u64; DropReason::COUNT]` counter array.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }

    /// Stable snake_case name, used in logs, JSON and metrics.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownSpi => "unknown_spi",
            DropReason::Replay => "replay",
            DropReason::AuthFailed => "auth_failed",
            DropReason::PolicyMismatch => "policy_mismatch",
            DropReason::NoRoute => "no_route",
            DropReason::Expired => "expired",
            DropReason::SeqExhausted => "seq_exhausted",
            DropReason::TooBig => "too_big",
            DropReason::QueueFull => "queue_full",
            DropReason::TxFailed => "tx_failed",
            DropReason::HoldDropped => "hold_dropped",
            DropReason::RxDropped => "rx_dropped",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{}", r.name());
        }
    }
}
