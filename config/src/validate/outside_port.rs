//! Checks of `[dataplane.outside]` and `[dataplane.dpdk]` against the port
//! kind and `[gateway]`: a port that owns an interface must know its own
//! address (it answers ARP for it) and how to reach its peers.

use ipnet::IpNet;

use super::check_in_range;
use crate::error::Problem;
use crate::keypath::KeyPath;
use crate::schema::dataplane::{Dataplane, PortKind};
use crate::schema::gateway::Gateway;
use crate::schema::outside_port::OutsidePort;

pub(super) fn check(
    gateway: &Gateway,
    dataplane: &Dataplane,
    root: &KeyPath,
    problems: &mut Vec<Problem>,
) {
    let dp = root.key("dataplane");
    let kind = dataplane.port;
    if !kind.owns_interface() {
        if dataplane.outside.is_some() {
            problems.push(
                Problem::new(
                    dp.key("outside"),
                    format!("port = {} does not own an interface", name(kind)),
                )
                .hint(
                    "[dataplane.outside] is read by port = \"af_packet\", \"af_xdp\" or \"dpdk\"",
                ),
            );
        }
    } else {
        match &dataplane.outside {
            None => problems.push(
                Problem::new(dp.key("port"), format!("port = {} needs [dataplane.outside]", name(kind)))
                    .hint("give it interface = \"eth1\" and address = \"192.0.2.1/24\" (the port answers ARP for it)"),
            ),
            Some(o) => check_outside(gateway, kind, o, root, problems),
        }
    }
    if dataplane.dpdk.is_some() && kind != PortKind::Dpdk {
        problems.push(
            Problem::new(
                dp.key("dpdk"),
                format!("port = {} does not use DPDK", name(kind)),
            )
            .hint("set port = \"dpdk\", or remove [dataplane.dpdk]"),
        );
    }
    if let Some(d) = &dataplane.dpdk {
        let path = dp.key("dpdk");
        if d.mbufs < 1024 {
            problems.push(
                Problem::new(
                    path.key("mbufs"),
                    format!("{} mbufs cannot fill the rx rings", d.mbufs),
                )
                .hint("8191 is a good start; deploy/sizing.md has the sum"),
            );
        } else if d.mbuf_cache > 512 || d.mbuf_cache > d.mbufs / 2 {
            problems.push(
                Problem::new(
                    path.key("mbuf_cache"),
                    format!("cache of {} mbufs is too large", d.mbuf_cache),
                )
                .hint("DPDK allows at most 512 and mbufs / 1.5; 256 is usual"),
            );
        }
        for (i, a) in d.eal_args.iter().chain(&d.vdevs).enumerate() {
            if a.contains('\0') {
                let key = if i < d.eal_args.len() {
                    path.key("eal_args").index(i)
                } else {
                    path.key("vdevs").index(i - d.eal_args.len())
                };
                problems.push(Problem::new(key, "contains a NUL byte"));
            }
        }
    }
}

fn name(kind: PortKind) -> &'static str {
    match kind {
        PortKind::Udp => "\"udp\"",
        PortKind::Mem => "\"mem\"",
        PortKind::AfPacket => "\"af_packet\"",
        PortKind::AfXdp => "\"af_xdp\"",
        PortKind::Dpdk => "\"dpdk\"",
    }
}

fn check_outside(
    gateway: &Gateway,
    kind: PortKind,
    o: &OutsidePort,
    root: &KeyPath,
    problems: &mut Vec<Problem>,
) {
    let path = root.key("dataplane").key("outside");
    let kernel_if = kind != PortKind::Dpdk;
    let bad_name = o.interface.is_empty()
        || o.interface
            .contains(|c: char| c.is_whitespace() || c == '\0')
        || (kernel_if && (o.interface.len() > 15 || o.interface.contains('/')));
    if bad_name {
        problems.push(
            Problem::new(
                path.key("interface"),
                format!("`{}` is not an interface name", o.interface),
            )
            .hint(if kernel_if {
                "the kernel interface the port owns, 1 to 15 characters: interface = \"eth1\""
            } else {
                "the ethdev name: a PCI address (\"0000:03:00.0\") or a vdev name (\"net_tap0\")"
            }),
        );
    }
    let v4 = match o.address {
        None => {
            problems.push(
                Problem::new(path.key("address"), "the port's IPv4 address is missing")
                    .hint("address = \"192.0.2.1/24\": the port answers ARP for it; keep it off the kernel's interface"),
            );
            None
        }
        Some(IpNet::V6(_)) => {
            problems.push(
                Problem::new(path.key("address"), "not an IPv4 address")
                    .hint("IPv6 goes in address6"),
            );
            None
        }
        Some(IpNet::V4(a)) => Some(a),
    };
    if let Some(a) = v4 {
        match gateway.outside.as_slice() {
            [one] if one.ip() == std::net::IpAddr::V4(a.addr()) => {}
            [one] => problems.push(
                Problem::new(
                    root.key("gateway").key("outside"),
                    format!("{one} is not the port's address {}", a.addr()),
                )
                .hint(format!("write outside = [\"{}:4500\"]", a.addr())),
            ),
            _ => problems.push(
                Problem::new(
                    root.key("gateway").key("outside"),
                    "a port that owns an interface has exactly one outside address",
                )
                .hint(format!("write outside = [\"{}:4500\"]", a.addr())),
            ),
        }
    }
    let v6 = match o.address6 {
        Some(IpNet::V4(_)) => {
            problems.push(
                Problem::new(path.key("address6"), "not an IPv6 address")
                    .hint("address6 = \"2001:db8::1/64\""),
            );
            None
        }
        Some(IpNet::V6(a)) => Some(a),
        None => None,
    };
    if let (Some(gw), Some(a)) = (o.gateway, v4) {
        if !IpNet::V4(a).contains(&gw) {
            problems.push(
                Problem::new(
                    path.key("gateway"),
                    format!("{gw} is not on-link in {}", a.trunc()),
                )
                .hint("the next hop must be inside the address's prefix"),
            );
        }
    }
    if o.gateway6.is_some() && v6.is_none() {
        problems.push(
            Problem::new(path.key("gateway6"), "an IPv6 next hop without address6")
                .hint("add address6 = \"2001:db8::1/64\""),
        );
    }
    let min_mtu = if v6.is_some() { 1280 } else { 576 };
    check_in_range(
        &path,
        "mtu",
        o.mtu,
        min_mtu..=9216,
        "1500 on Ethernet",
        problems,
    );
    for (i, r) in o.routes.iter().enumerate() {
        let rp = path.key("routes").index(i);
        let on_link = match r.via {
            std::net::IpAddr::V4(_) => v4.is_some_and(|a| IpNet::V4(a).contains(&r.via)),
            std::net::IpAddr::V6(via) => {
                via.segments()[0] & 0xffc0 == 0xfe80
                    || v6.is_some_and(|a| IpNet::V6(a).contains(&r.via))
            }
        };
        if r.to.addr().is_ipv4() != r.via.is_ipv4() {
            problems.push(
                Problem::new(
                    rp.key("via"),
                    format!("{} and {} are of different families", r.to, r.via),
                )
                .hint("an IPv4 route needs an IPv4 next hop"),
            );
        } else if !on_link {
            problems.push(
                Problem::new(rp.key("via"), format!("{} is not on-link", r.via))
                    .hint("the next hop must be inside address (or address6)'s prefix"),
            );
        }
        if r.mac.is_some() && r.mac_bytes().is_none() {
            problems.push(
                Problem::new(
                    rp.key("mac"),
                    format!("{:?} is not a MAC address", r.mac.as_deref().unwrap_or("")),
                )
                .hint("six hex pairs: mac = \"02:00:5e:10:00:01\""),
            );
        }
    }
}
