//! Checks of `[gateway]`, `[dataplane]` and `[control]`.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;

use super::check_in_range;
use crate::error::Problem;
use crate::keypath::KeyPath;
use crate::schema::control::ControlSocket;
use crate::schema::dataplane::Dataplane;
use crate::schema::gateway::Gateway;

pub(super) fn check_gateway(gateway: &Gateway, path: &KeyPath, problems: &mut Vec<Problem>) {
    let outside = path.key("outside");
    if gateway.outside.is_empty() {
        problems.push(
            Problem::new(outside.clone(), "at least one outside address is needed")
                .hint("write outside = [\"0.0.0.0:4500\"]"),
        );
    }
    let mut seen = HashSet::new();
    for (i, addr) in gateway.outside.iter().enumerate() {
        if addr.port() == 0 {
            problems.push(
                Problem::new(outside.index(i), format!("{addr} has no port"))
                    .hint("the NAT-T port is 4500 (RFC 3948)"),
            );
        }
        let wildcard_clash = gateway.outside.iter().take(i).find(|other| {
            other.port() == addr.port()
                && other.is_ipv4() == addr.is_ipv4()
                && other.ip() != addr.ip()
                && (other.ip().is_unspecified() || addr.ip().is_unspecified())
        });
        if !seen.insert(addr) {
            problems.push(
                Problem::new(outside.index(i), format!("{addr} is listed twice"))
                    .hint("remove one of them"),
            );
        } else if let Some(other) = wildcard_clash {
            problems.push(
                Problem::new(outside.index(i), format!("{addr} and {other} take the same port"))
                    .hint("a wildcard address already covers every address of its family; keep one of them"),
            );
        }
        if addr.port() == gateway.ike_port {
            problems.push(
                Problem::new(outside.index(i), format!("port {} is also the ike_port", addr.port()))
                    .hint("IKE on the NAT-T port is already served there (non-ESP marker, RFC 3948 §2.2); use ike_port = 500"),
            );
        }
    }
    if gateway.ike_port == 0 {
        problems.push(
            Problem::new(path.key("ike_port"), "port 0 is not a listen port").hint("IKE uses 500"),
        );
    }
}

pub(super) fn check_dataplane(dataplane: &Dataplane, path: &KeyPath, problems: &mut Vec<Problem>) {
    if dataplane.workers == 0 {
        problems.push(
            Problem::new(path.key("workers"), "at least one worker is needed")
                .hint("workers = 1 runs one polling worker"),
        );
    }
    if let Some(cores) = &dataplane.cores {
        if cores.len() != dataplane.workers {
            problems.push(
                Problem::new(
                    path.key("cores"),
                    format!(
                        "{} cores listed for {} workers",
                        cores.len(),
                        dataplane.workers
                    ),
                )
                .hint("list one core per worker, or remove cores to leave the workers unpinned"),
            );
        }
        let mut seen = HashSet::new();
        for (i, core) in cores.iter().enumerate() {
            if !seen.insert(core) {
                problems.push(
                    Problem::new(
                        path.key("cores").index(i),
                        format!("core {core} is listed twice"),
                    )
                    .hint("two polling workers on one core halve each other"),
                );
            }
        }
    }
    check_in_range(
        path,
        "burst",
        dataplane.burst,
        1..=256,
        "32 is a good start",
        problems,
    );
    let ring = dataplane.ring_size;
    if !ring.is_power_of_two() || ring < dataplane.burst || ring > 65536 {
        problems.push(
            Problem::new(
                path.key("ring_size"),
                format!("ring_size {ring} is not a power of two in burst..=65536"),
            )
            .hint(format!(
                "try {}",
                ring.clamp(dataplane.burst.max(1), 65536)
                    .next_power_of_two()
            )),
        );
    }
    check_in_range(
        path,
        "outer_mtu",
        dataplane.outer_mtu,
        576..=9216,
        "1500 on Ethernet paths",
        problems,
    );
    let inside = path.key("inside");
    let name = &dataplane.inside.name;
    if name.is_empty() || name.len() > 15 || name.contains(|c: char| c == '/' || c.is_whitespace())
    {
        problems.push(
            Problem::new(
                inside.key("name"),
                format!("`{name}` is not an interface name"),
            )
            .hint("1 to 15 characters, no '/' or spaces"),
        );
    }
    let needs_ipv6 = dataplane
        .inside
        .addresses
        .iter()
        .any(|a| a.addr().is_ipv6());
    let min_mtu = if needs_ipv6 { 1280 } else { 576 };
    check_in_range(
        &inside,
        "mtu",
        dataplane.inside.mtu,
        min_mtu..=9000,
        "1400 leaves room for ESP-in-UDP on a 1500-byte path",
        problems,
    );
    check_route_pools(dataplane, path, problems);
}

/// Route pools are networks, small enough for the data plane's index
/// (2^24 addresses), apart from each other.
fn check_route_pools(dataplane: &Dataplane, path: &KeyPath, problems: &mut Vec<Problem>) {
    let path = path.key("route_pools");
    let pools = &dataplane.route_pools;
    super::prefix::check_networks(pools, &path, problems);
    for (i, net) in pools.iter().enumerate() {
        let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
        if host_bits > 24 {
            let shortest = net.max_prefix_len() - 24;
            problems.push(
                Problem::new(
                    path.index(i),
                    format!("{net} holds more than 2^24 addresses"),
                )
                .hint(format!("use prefixes of /{shortest} or longer")),
            );
        }
        if let Some(other) = pools[..i].iter().find(|o| super::prefix::overlaps(o, net)) {
            problems.push(
                Problem::new(path.index(i), format!("{net} overlaps {other}"))
                    .hint("list each range once"),
            );
        }
    }
}

pub(super) fn check_control(control: &ControlSocket, path: &KeyPath, problems: &mut Vec<Problem>) {
    let socket = control.path.as_os_str().as_bytes();
    if !control.path.is_absolute() || socket.len() > 107 {
        problems.push(
            Problem::new(
                path.key("path"),
                format!(
                    "`{}` is not an absolute path of at most 107 bytes",
                    control.path.display()
                ),
            )
            .hint("Unix socket paths are limited by sun_path; the default is /run/esprit/ctl.sock"),
        );
    }
    if control.mode > 0o777 {
        problems.push(
            Problem::new(
                path.key("mode"),
                format!("mode {:o} (octal) is not a permission mode", control.mode),
            )
            .hint("write an octal mode with its prefix, like 0o600 or 0o660"),
        );
    } else if control.mode & 0o007 != 0 {
        problems.push(
            Problem::new(
                path.key("mode"),
                format!(
                    "mode 0o{:03o} lets every local user control the gateway",
                    control.mode
                ),
            )
            .hint("use 0o600, or 0o660 with a group"),
        );
    }
    if control.group.as_deref() == Some("") {
        problems.push(
            Problem::new(path.key("group"), "empty group name")
                .hint("remove group to leave the socket to root, or name an existing group"),
        );
    }
}
