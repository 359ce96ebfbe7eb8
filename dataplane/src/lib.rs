//! esprit's data plane: everything a polled worker touches per packet.
//!
//! Layers, bottom up: `wire` (checked views over bytes), `crypto` (AES-GCM),
//! `esp` (RFC 4303 tunnel mode seal/open), `sa` (SA tables published RCU
//! style), `port` (batch packet I/O), `worker` (the polled loop).

pub mod crypto;
pub mod drop_reason;
pub mod esp;
pub mod offload;
pub mod packet;
pub mod pmtu;
pub mod port;
pub mod prefetch;
pub mod sa;
pub mod testkit;
pub mod wire;
pub mod worker;

pub use drop_reason::DropReason;
pub use packet::{Packet, PacketPool};
