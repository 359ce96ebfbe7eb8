//! L2 for the outside ports that own a whole interface (AF_PACKET, AF_XDP,
//! DPDK): Ethernet framing, ARP and IPv6 neighbour discovery into one
//! neighbour table, ICMP/ICMPv6 echo, and the outer IPv4/IPv6/UDP headers
//! the kernel builds for the socket ports.
//!
//! All of it is sans-IO; [`outside::L2Outside`] is what a port drives.
//! Not here: IPv6 extension headers and outer fragments (dropped and
//! counted), PMTU ICMP and MSS clamping (they concern inner packets: the
//! worker does them, [`crate::pmtu`]).

pub mod arp;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod ndp;
pub mod neighbour;
pub mod outside;

pub use ethernet::MacAddr;
pub use neighbour::SharedNeighbours;
pub use outside::{L2Config, L2Outside, L2Stats, Route, RxVerdict};
