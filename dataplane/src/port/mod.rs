//! Packet I/O behind one batch trait. A worker owns one outside port (ESP
//! towards the peers) and one inside port (cleartext towards the protected
//! network); each is a queue of some device that belongs to that worker only.
//!
//! - [`mem`]: in-memory rings, for tests and pure data-plane benchmarks;
//! - `udp`: ESP-in-UDP and raw ESP sockets (outside);
//! - `tun`: a multi-queue TUN device (inside).

pub mod af_packet;
#[cfg(feature = "af_xdp")]
pub mod af_xdp;
#[cfg(any(feature = "af_xdp", feature = "dpdk"))]
pub mod counter_reads;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod dual;
pub mod l2;
pub mod mem;
mod mmsg;
pub mod raw_esp;
pub mod reflect;
pub mod steering;
pub(crate) mod sys;
pub mod tun;
pub mod udp;

pub use sys::wait_readable;

use std::io;
use std::os::fd::RawFd;

use crate::packet::{Packet, PacketPool};

/// Batch packet I/O for one worker.
pub trait Port: Send {
    /// Receives up to `max` packets into buffers taken from `pool`, appending
    /// them to `out`. Never blocks; returns how many were received.
    fn rx_burst(
        &mut self,
        pool: &mut PacketPool,
        out: &mut Vec<Packet>,
        max: usize,
    ) -> io::Result<usize>;

    /// Transmits every packet in `pkts` (draining it) and returns the buffers
    /// to `pool`. Returns how many were handed to the device; the rest were
    /// dropped and the caller counts them.
    fn tx_burst(&mut self, pkts: &mut Vec<Packet>, pool: &mut PacketPool) -> io::Result<usize>;

    /// A file descriptor that polls readable when `rx_burst` would return
    /// packets, so an idle worker can sleep instead of spinning. `None` for
    /// ports without one (the worker then naps briefly).
    fn readable_fd(&self) -> Option<RawFd> {
        None
    }

    /// Adds every descriptor to wait on for this port's packets to `fds`;
    /// `false` if some of its packets come with none (the worker then naps
    /// instead of sleeping). A port made of several (`DualPort`) gives each.
    fn readable_fds(&self, fds: &mut Vec<RawFd>) -> bool {
        match self.readable_fd() {
            Some(fd) => {
                fds.push(fd);
                true
            }
            None => false,
        }
    }

    /// Packets the port dropped on receive so far (too large, malformed
    /// offload headers), for the worker to count with its drops.
    fn rx_dropped(&self) -> u64 {
        0
    }

    /// Super-packets so far, for the worker's counters: (read and cut into
    /// segments, merged and written). Only a TUN queue with offloads has any.
    fn super_packets(&self) -> (u64, u64) {
        (0, 0)
    }

    /// Buffers the port lends, for the worker's pool to take first (DPDK:
    /// mbufs, so packets cross without a copy).
    fn buffer_source(&self) -> Option<Box<dyn crate::packet::BufferSource>> {
        None
    }
}
