//! Checks of `[[manual_tunnel]]`: addresses, SPIs, key material, SPI slots.

use std::collections::HashMap;

use super::prefix::check_networks;
use crate::error::Problem;
use crate::keypath::KeyPath;
use crate::schema::manual_tunnel::{Encap, ManualSa, ManualTunnel};

/// The data plane finds an inbound SA by the low 24 bits of its SPI (the rest is a generation).
pub const SPI_SLOT_MASK: u32 = 0x00FF_FFFF;

/// Largest anti-replay window the data plane keeps (RFC 6479 style bitmap).
pub const MAX_REPLAY_WINDOW: u32 = 4096;

pub(super) fn check(tunnels: &[ManualTunnel], problems: &mut Vec<Problem>) {
    let base = KeyPath::root().key("manual_tunnel");
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut slots: HashMap<u32, (usize, u32)> = HashMap::new();
    for (t, tunnel) in tunnels.iter().enumerate() {
        let path = base.index(t);
        if tunnel.name.is_empty() {
            problems.push(
                Problem::new(path.key("name"), "empty name").hint("give the tunnel a unique name"),
            );
        } else if let Some(&first) = names.get(tunnel.name.as_str()) {
            problems.push(
                Problem::new(
                    path.key("name"),
                    format!(
                        "name `{}` is already used by manual_tunnel[{first}]",
                        tunnel.name
                    ),
                )
                .hint("tunnel names must be unique; reload matches tunnels by name"),
            );
        } else {
            names.insert(&tunnel.name, t);
        }
        check_remote(tunnel, &path, problems);
        for key in ["local_ts", "remote_ts"] {
            let nets = if key == "local_ts" {
                &tunnel.local_ts
            } else {
                &tunnel.remote_ts
            };
            if nets.is_empty() {
                problems.push(
                    Problem::new(path.key(key), "at least one prefix is needed")
                        .hint("write a network like [\"10.1.0.0/24\"]; 0.0.0.0/0 for everything"),
                );
            }
            check_networks(nets, &path.key(key), problems);
        }
        check_sa(&tunnel.inbound, &path.key("inbound"), problems);
        check_sa(&tunnel.outbound, &path.key("outbound"), problems);
        if tunnel.inbound.key == tunnel.outbound.key && tunnel.inbound.salt == tunnel.outbound.salt
        {
            problems.push(
                Problem::new(path.key("outbound").key("key"), "outbound uses the same key and salt as inbound")
                    .hint("both directions would encrypt with the same nonces, which breaks AES-GCM (RFC 4106 §3); use a key per direction"),
            );
        }
        let spi = tunnel.inbound.spi;
        if let Some((first, first_spi)) = slots.get(&(spi & SPI_SLOT_MASK)).copied() {
            let spi_path = path.key("inbound").key("spi");
            let problem = if first_spi == spi {
                Problem::new(
                    spi_path,
                    format!("inbound SPI {spi:#x} is already used by manual_tunnel[{first}]"),
                )
                .hint("inbound SPIs identify the SA and must be unique")
            } else {
                Problem::new(
                    spi_path,
                    format!("inbound SPI {spi:#x} has the same slot (low 24 bits) as {first_spi:#x} of manual_tunnel[{first}]"),
                )
                .hint("the data plane indexes inbound SAs by spi & 0xFFFFFF; change the low 24 bits of one of them")
            };
            problems.push(problem);
        } else {
            slots.insert(spi & SPI_SLOT_MASK, (t, spi));
        }
    }
}

fn check_remote(tunnel: &ManualTunnel, path: &KeyPath, problems: &mut Vec<Problem>) {
    let remote = tunnel.remote;
    if remote.ip().is_unspecified() || remote.ip().is_multicast() {
        problems.push(
            Problem::new(
                path.key("remote"),
                format!("{} is not a peer address", remote.ip()),
            )
            .hint("write the peer's unicast outer address"),
        );
    }
    match tunnel.encap {
        Encap::Udp if remote.port() == 0 => problems.push(
            Problem::new(
                path.key("remote"),
                "encap = \"udp\" needs the peer's UDP port",
            )
            .hint(format!(
                "write \"{}\" (NAT-T port, RFC 3948), or set encap = \"esp\"",
                std::net::SocketAddr::new(remote.ip(), 4500)
            )),
        ),
        Encap::Esp if remote.port() != 0 => problems.push(
            Problem::new(
                path.key("remote"),
                "encap = \"esp\" (IP protocol 50) has no port",
            )
            .hint(format!("write \"{}\", or set encap = \"udp\"", remote.ip())),
        ),
        _ => {}
    }
}

fn check_sa(sa: &ManualSa, path: &KeyPath, problems: &mut Vec<Problem>) {
    if sa.spi < 256 {
        problems.push(
            Problem::new(path.key("spi"), format!("SPI {} is reserved", sa.spi))
                .hint("SPIs 0..=255 are reserved (RFC 4303 §2.1); use 256 or more"),
        );
    }
    let want = sa.algorithm.key_len();
    if sa.key.len() != want {
        problems.push(
            Problem::new(
                path.key("key"),
                format!(
                    "key is {} bytes, {} needs {want}",
                    sa.key.len(),
                    sa.algorithm.name()
                ),
            )
            .hint(format!(
                "write {} hex digits; the 4-byte salt goes in `salt`",
                want * 2
            )),
        );
    }
    if sa.salt.len() != 4 {
        problems.push(
            Problem::new(
                path.key("salt"),
                format!("salt is {} bytes, it must be 4", sa.salt.len()),
            )
            .hint("write 8 hex digits (RFC 4106 §8.1)"),
        );
    }
    if sa.replay_window > MAX_REPLAY_WINDOW {
        problems.push(
            Problem::new(
                path.key("replay_window"),
                format!(
                    "replay_window {} is over {MAX_REPLAY_WINDOW}",
                    sa.replay_window
                ),
            )
            .hint("1024 covers reordering at multi-gigabit rates; 0 disables the check"),
        );
    }
}
