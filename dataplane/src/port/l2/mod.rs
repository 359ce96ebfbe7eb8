//! L2 for the outside ports that own a whole interface (AF_PACKET, AF_XDP,
//! DPDK): Ethernet framing, ARP and the neighbour table, ICMP echo, and the
//! outer IPv4/UDP headers the kernel builds for the socket ports.
//!
//! All of it is sans-IO; [`outside::L2Outside`] is what a port drives.
//! IPv4 only for now: IPv6 frames are counted as unsupported (no neighbour
//! discovery yet), and neither PMTU ICMP nor MSS clamping is done here.

pub mod arp;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod neighbour;
pub mod outside;

pub use ethernet::MacAddr;
pub use neighbour::SharedNeighbours;
pub use outside::{L2Config, L2Outside, L2Stats, RxVerdict};
