//! Security associations and the tables workers look them up in.

mod allowed_sources;
pub mod counters;
pub mod inbound;
mod inbound_slab;
mod inbound_table;
pub mod manual;
pub mod outbound;
pub mod prefix;
pub mod radix;
pub mod replay;
pub mod routes;
mod sa_key;
pub mod spi;
pub mod table;

pub use counters::{HardLimits, SaCounters};
pub use inbound::{InboundSa, InboundSpec};
pub use outbound::{OutboundSa, OutboundSpec};
pub use prefix::IpPrefix;
pub use routes::RouteTable;
pub use table::{InboundHandle, SaPublisher, SaReader, SaTables};

/// Index of a tunnel (one peer's set of SAs); dense, chosen by the control
/// plane, below 2^24.
pub type TunnelId = u32;
/// Index of a data-plane worker.
pub type WorkerId = u16;

/// The worker that owns the SA with this inbound SPI. The outside port's
/// steering (SO_REUSEPORT BPF, RSS) delivers by the same rule, so an SA's
/// packets reach its owner without a hand-off.
#[inline]
pub fn owner_of_spi(spi: u32, workers: usize) -> WorkerId {
    crate::port::steering::steer_worker(spi, workers) as WorkerId
}
