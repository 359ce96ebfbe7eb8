//! `[dataplane]`: workers, cores, batches, queues and the packet I/O on both sides.

use ipnet::IpNet;
use serde::Deserialize;

use super::outside_port::{Dpdk, OutsidePort};

/// How packets reach the outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortKind {
    /// UDP sockets (recvmmsg/sendmmsg) at the gateway's outside addresses.
    #[default]
    Udp,
    /// In-memory rings, for tests and pure data-plane benchmarks.
    Mem,
    /// Raw Ethernet through TPACKET_V3 rings (`[dataplane.outside]`).
    AfPacket,
    /// AF_XDP sockets (espritd built with feature `af_xdp`).
    AfXdp,
    /// DPDK ethdev queues (espritd built with feature `dpdk`; `[dataplane.dpdk]`).
    Dpdk,
}

impl PortKind {
    /// Whether the port owns a whole interface and does its own L2 (ARP,
    /// ICMP echo): it then needs `[dataplane.outside]`, and IKE on the
    /// IKE port arrives through the workers too.
    pub fn owns_interface(self) -> bool {
        matches!(self, PortKind::AfPacket | PortKind::AfXdp | PortKind::Dpdk)
    }
}

/// How clear packets reach the protected side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InsideKind {
    /// A multi-queue TUN device.
    #[default]
    Tun,
    /// In-memory rings.
    Mem,
    /// Sends every decrypted packet straight back to its source (addresses
    /// and ports swapped): a gateway under load test needs no protected
    /// network behind it.
    Reflect,
}

/// The data plane: polled workers, one per core.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dataplane {
    /// Number of workers, default 1.
    pub workers: usize,
    /// Cores to pin the workers to, one per worker; unpinned when absent.
    /// espritd's control thread then keeps to the other cores, if any.
    pub cores: Option<Vec<usize>>,
    /// Packets per rx/tx burst, 1..=256, default 32.
    pub burst: usize,
    /// Outside port kind, default `udp`.
    pub port: PortKind,
    /// Descriptors per queue, a power of two, default 1024.
    pub ring_size: usize,
    /// Empty polls before an idle worker sleeps on its ports (waking on the
    /// next packet), default 64. 0: never sleep, for cores set aside for
    /// esprit alone (lowest latency; the core shows 100% busy). Large
    /// values on a shared machine take CPU from everything else.
    pub idle_spins: u32,
    /// The inside interface.
    pub inside: Inside,
    /// The interface an `af_packet`, `af_xdp` or `dpdk` port owns.
    pub outside: Option<OutsidePort>,
    /// How DPDK is started (port `dpdk`).
    pub dpdk: Option<Dpdk>,
    /// Lower the MSS of TCP SYNs crossing a tunnel to what fits, default true.
    pub mss_clamp: bool,
    /// The outside path MTU for the `udp` port, default 1500 (ports that
    /// own their interface use `[dataplane.outside].mtu`). Inner packets
    /// with DF that do not fit once sealed get ICMP fragmentation-needed.
    pub outer_mtu: u16,
    /// Prefixes holding many manual tunnels' host routes (a `/32` or `/128`
    /// `remote_ts` each): their routes are found by array index instead of
    /// a hash probe, which matters once there are thousands of them.
    /// Responders' pools are indexed without being listed here. At most
    /// 2^24 addresses each; reloadable. Default empty.
    pub route_pools: Vec<IpNet>,
}

impl Dataplane {
    /// The largest outer packet, whatever the port kind.
    pub fn effective_outer_mtu(&self) -> u16 {
        match (&self.outside, self.port.owns_interface()) {
            (Some(o), true) => o.mtu,
            _ => self.outer_mtu,
        }
    }
}

impl Default for Dataplane {
    fn default() -> Self {
        Self {
            workers: 1,
            cores: None,
            burst: 32,
            port: PortKind::Udp,
            ring_size: 1024,
            idle_spins: 64,
            inside: Inside::default(),
            outside: None,
            dpdk: None,
            mss_clamp: true,
            outer_mtu: 1500,
            route_pools: Vec::new(),
        }
    }
}

/// `[dataplane.inside]`: the interface that carries clear traffic.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Inside {
    /// Default `tun`.
    pub kind: InsideKind,
    /// Interface name, default `esprit0` (at most 15 bytes, the kernel's IFNAMSIZ - 1).
    pub name: String,
    /// Interface MTU, default 1400.
    pub mtu: u16,
    /// Addresses to put on the interface, with their prefix length (`10.1.0.1/24`).
    pub addresses: Vec<IpNet>,
    /// TUN offloads (TCP and UDP segmentation and coalescing, checksums),
    /// default on: bulk TCP then crosses the TUN device 64 KiB at a time,
    /// and a `UDP_SEGMENT` sender's batch of datagrams at once. Off only to
    /// rule them out when troubleshooting.
    pub offload: bool,
    /// With `offload`, UDP's too (default on): a sender's `UDP_SEGMENT`
    /// batches are cut by the workers instead of the kernel, and a burst's
    /// decrypted datagrams of one flow go to the kernel as one packet,
    /// which a `UDP_GRO` socket reads whole and the kernel cuts up for any
    /// other. Off: datagrams are written one by one, as the kernel's own
    /// GRO delivers UDP to sockets that did not ask for `UDP_GRO`.
    pub offload_udp: bool,
}

impl Default for Inside {
    fn default() -> Self {
        Self {
            kind: InsideKind::Tun,
            name: "esprit0".to_owned(),
            mtu: 1400,
            addresses: Vec::new(),
            offload: true,
            offload_udp: true,
        }
    }
}
