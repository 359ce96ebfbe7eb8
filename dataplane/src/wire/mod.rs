//! Zero-copy, length-checked views over packet bytes (smoltcp style).
//!
//! Each header has a `Packet<T: AsRef<[u8]>>` view whose `new_checked`
//! validates every length its accessors use, so no accessor can panic
//! afterwards, and a `Repr` (`parse`, `buffer_len`, `emit`) for the control
//! plane, tests and tools. The fast path uses the views directly.

pub mod checksum;
pub mod esp;
mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod natt;
pub mod udp;
pub mod virtio_net;

pub use ip::{ip_src_dst, l4_offset, tcp_offset, Fragments, PROTO_TCP, PROTO_UDP};

/// A header was truncated, inconsistent or not of a kind we handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated packet")]
    Truncated,
    #[error("malformed header")]
    Malformed,
    #[error("bad checksum")]
    Checksum,
    #[error("unsupported (fragment or options)")]
    Unsupported,
}
