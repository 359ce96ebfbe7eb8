//! Opens the outside ports that own a whole interface (`af_packet`,
//! `af_xdp`, `dpdk`): one queue per worker, all sharing one neighbour
//! table, each with the L2 layer that answers ARP and ICMP echo for the
//! port's address. The kernel must not hold that address too, or it
//! answers ARP and sends port-unreachable for 500/4500 as well.

use std::net::IpAddr;

use config::schema::dataplane::PortKind;
use config::schema::outside_port::OutsidePort;
use dataplane::port::l2::{L2Config, MacAddr, Route, SharedNeighbours};
use dataplane::port::Port;

use super::{io_err, DaemonError};

/// The outside ports for `cfg.dataplane.port`, worker `i`'s at index `i`.
pub fn open_outside(
    cfg: &config::Config,
    workers: usize,
) -> Result<Vec<Box<dyn Port>>, DaemonError> {
    let o = cfg.dataplane.outside.as_ref().ok_or_else(|| {
        DaemonError::Unsupported("this port kind needs [dataplane.outside]".into())
    })?;
    let l2 = l2_config(cfg, o)?;
    let neighbours = SharedNeighbours::new();
    for r in &o.routes {
        if let Some(mac) = r.mac_bytes() {
            neighbours.insert_static(r.via, MacAddr(mac));
        }
    }
    tracing::info!(
        port = ?cfg.dataplane.port,
        interface = %o.interface,
        address = %l2.ipv4,
        workers,
        "outside port owns its interface"
    );
    if cfg.dataplane.port != PortKind::Dpdk && kernel_holds(&o.interface, IpAddr::V4(l2.ipv4)) {
        tracing::warn!(
            interface = %o.interface,
            address = %l2.ipv4,
            "the kernel holds the port's address too: it will answer ARP and refuse IKE/ESP \
             with port-unreachable beside espritd; remove it (ip addr del)"
        );
    }
    match cfg.dataplane.port {
        PortKind::AfPacket => {
            use dataplane::port::af_packet::{AfPacketConfig, AfPacketPort};
            let ports = AfPacketPort::open_group(
                &AfPacketConfig::new(&o.interface, l2),
                workers,
                neighbours,
            )
            .map_err(io_err(format!("AF_PACKET port on {}", o.interface)))?;
            Ok(ports
                .into_iter()
                .map(|p| Box::new(p) as Box<dyn Port>)
                .collect())
        }
        PortKind::AfXdp => open_af_xdp(o, l2, workers, neighbours),
        PortKind::Dpdk => open_dpdk(cfg, o, l2, workers, neighbours),
        PortKind::Udp | PortKind::Mem => Err(DaemonError::Unsupported(
            "this port kind does not own an interface".into(),
        )),
    }
}

/// Whether the kernel has `ip` on interface `ifname`.
fn kernel_holds(ifname: &str, ip: IpAddr) -> bool {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return false;
    }
    let mut found = false;
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: a NUL-terminated name owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        if name.to_bytes() != ifname.as_bytes() {
            continue;
        }
        // SAFETY: ifa_addr is non-null; its family says which sockaddr it is.
        let addr = unsafe { &*ifa.ifa_addr };
        if i32::from(addr.sa_family) == libc::AF_INET {
            // SAFETY: an AF_INET address is a sockaddr_in.
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            let a = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            found |= IpAddr::V4(a) == ip;
        }
    }
    // SAFETY: the list from getifaddrs, freed once.
    unsafe { libc::freeifaddrs(head) };
    found
}

/// The L2 addressing from `[dataplane.outside]` and `[gateway]`.
fn l2_config(cfg: &config::Config, o: &OutsidePort) -> Result<L2Config, DaemonError> {
    let Some(IpAddr::V4(ipv4)) = o.address.map(|a| a.addr()) else {
        return Err(DaemonError::Unsupported(
            "dataplane.outside.address: an IPv4 address is needed".into(),
        ));
    };
    let prefix = o.address.map_or(32, |a| a.prefix_len());
    // The interface's own MAC, filled in by the port.
    let mut l2 = L2Config::new(MacAddr::ZERO, ipv4, prefix);
    l2.gateway = match o.gateway {
        Some(IpAddr::V4(g)) => Some(g),
        _ => None,
    };
    l2.gateway6 = o.gateway6;
    if let Some(IpAddr::V6(a6)) = o.address6.map(|a| a.addr()) {
        l2.ipv6 = Some(a6);
        l2.prefix6_len = o.address6.map_or(64, |a| a.prefix_len());
    }
    l2.routes = o
        .routes
        .iter()
        .map(|r| Route {
            dest: r.to.addr(),
            prefix_len: r.to.prefix_len(),
            via: r.via,
        })
        .collect();
    l2.nat_t_port = cfg.gateway.outside.first().map_or(4500, |a| a.port());
    l2.ike_port = cfg.gateway.ike_port;
    l2.mtu = usize::from(o.mtu);
    Ok(l2)
}

#[cfg(feature = "af_xdp")]
fn open_af_xdp(
    o: &OutsidePort,
    l2: L2Config,
    workers: usize,
    neighbours: SharedNeighbours,
) -> Result<Vec<Box<dyn Port>>, DaemonError> {
    use dataplane::port::af_xdp::{AfXdpConfig, AfXdpPort, XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE};
    let mut c = AfXdpConfig::new(&o.interface, l2);
    c.xdp_flags = match o.xdp_mode {
        config::XdpMode::Skb => XDP_FLAGS_SKB_MODE,
        config::XdpMode::Native => XDP_FLAGS_DRV_MODE,
    };
    let ports = AfXdpPort::open_group(&c, workers as u32, neighbours)
        .map_err(io_err(format!("AF_XDP port on {}", o.interface)))?;
    Ok(ports
        .into_iter()
        .map(|p| Box::new(p) as Box<dyn Port>)
        .collect())
}

#[cfg(not(feature = "af_xdp"))]
fn open_af_xdp(
    _: &OutsidePort,
    _: L2Config,
    _: usize,
    _: SharedNeighbours,
) -> Result<Vec<Box<dyn Port>>, DaemonError> {
    Err(DaemonError::Unsupported(
        "dataplane.port = \"af_xdp\": this espritd was built without the af_xdp feature \
         (cargo build --features af_xdp)"
            .into(),
    ))
}

#[cfg(feature = "dpdk")]
fn open_dpdk(
    cfg: &config::Config,
    o: &OutsidePort,
    l2: L2Config,
    workers: usize,
    neighbours: SharedNeighbours,
) -> Result<Vec<Box<dyn Port>>, DaemonError> {
    use dataplane::port::dpdk::{DpdkDevice, DpdkPort, Eal, MbufPool};
    use std::sync::Arc;
    let d = cfg.dataplane.dpdk.clone().unwrap_or_default();
    let dpdk_err = |what: String| move |e| DaemonError::Unsupported(format!("{what}: {e}"));
    let vdevs: Vec<String> = d.vdevs.iter().map(|v| format!("--vdev={v}")).collect();
    let args: Vec<&str> = std::iter::once("espritd")
        .chain(d.eal_args.iter().map(String::as_str))
        .chain(vdevs.iter().map(String::as_str))
        .collect();
    // The EAL pins the calling thread to its main lcore; the workers (and
    // the control plane) spawned from it later would all inherit that one
    // core. Keep the affinity we had; workers pin themselves by `cores`.
    let eal =
        super::affinity::keep_affinity(|| Eal::init(&args)).map_err(dpdk_err("DPDK EAL".into()))?;
    let id = eal
        .port_by_name(&o.interface)
        .map_err(dpdk_err(format!("DPDK device {}", o.interface)))?;
    // The mbufs live on the NIC's NUMA node (any node for virtual devices).
    let socket = eal.port_socket(id);
    let pool = MbufPool::create(
        eal,
        &format!("espritd{socket}"),
        d.mbufs,
        d.mbuf_cache,
        socket,
    )
    .map_err(dpdk_err("DPDK mbuf pool".into()))?;
    let queues = u16::try_from(workers).unwrap_or(u16::MAX);
    let desc = u16::try_from(cfg.dataplane.ring_size).unwrap_or(4096);
    let dev = DpdkDevice::start(eal, id, queues, desc, Arc::new(pool))
        .map_err(dpdk_err(format!("DPDK device {}", o.interface)))?;
    (0..queues)
        .map(|q| {
            DpdkPort::new(dev.clone(), q, Some((l2.clone(), neighbours.clone())))
                .map(|p| Box::new(p) as Box<dyn Port>)
                .map_err(dpdk_err(format!("DPDK queue {q} of {}", o.interface)))
        })
        .collect()
}

#[cfg(not(feature = "dpdk"))]
fn open_dpdk(
    _: &config::Config,
    _: &OutsidePort,
    _: L2Config,
    _: usize,
    _: SharedNeighbours,
) -> Result<Vec<Box<dyn Port>>, DaemonError> {
    Err(DaemonError::Unsupported(
        "dataplane.port = \"dpdk\": this espritd was built without the dpdk feature \
         (cargo build --features dpdk)"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::kernel_holds;

    #[test]
    fn the_kernel_holds_loopback_on_lo_only() {
        assert!(kernel_holds("lo", [127, 0, 0, 1].into()));
        assert!(!kernel_holds("lo", [192, 0, 2, 1].into()));
        assert!(!kernel_holds("no-such-if", [127, 0, 0, 1].into()));
    }
}
