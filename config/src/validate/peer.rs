//! Checks of `[ike]` and `[[peer]]`.

use std::collections::HashMap;
use std::time::Duration;

use super::check_in_range;
use super::prefix::check_networks;
use crate::duration::format;
use crate::error::Problem;
use crate::keypath::KeyPath;
use crate::schema::ike::IkeDefaults;
use crate::schema::peer::{LivenessMode, PeerToml, Role};
use crate::schema::ConfigToml;

pub(super) fn check_ike(ike: &IkeDefaults, path: &KeyPath, problems: &mut Vec<Problem>) {
    if ike.proposals.is_empty() {
        problems.push(
            Problem::new(path.key("proposals"), "no IKE proposal")
                .hint("remove the key to use the defaults"),
        );
    }
    if ike.esp_proposals.is_empty() {
        problems.push(
            Problem::new(path.key("esp_proposals"), "no ESP proposal")
                .hint("remove the key to use the defaults"),
        );
    }
    for key in ["ike_lifetime", "child_lifetime"] {
        let lifetime = if key == "ike_lifetime" {
            ike.ike_lifetime
        } else {
            ike.child_lifetime
        };
        check_lifetime(lifetime, ike, &path.key(key), problems);
    }
    let retransmit = path.key("retransmit");
    let r = &ike.retransmit;
    if r.timeout.is_zero() {
        problems.push(
            Problem::new(retransmit.key("timeout"), "timeout must be more than 0s")
                .hint("2s suits most paths"),
        );
    }
    check_in_range(
        &retransmit,
        "base",
        r.base,
        1.0..=4.0,
        "1.8 doubles the wait nearly each time, as strongSwan does",
        problems,
    );
    check_in_range(
        &retransmit,
        "jitter",
        r.jitter,
        0.0..=0.5,
        "0.2 keeps clients that started together from resending together",
        problems,
    );
    if r.max_timeout < r.timeout {
        problems.push(
            Problem::new(
                retransmit.key("max_timeout"),
                format!(
                    "max_timeout {} is shorter than timeout {}",
                    format(r.max_timeout),
                    format(r.timeout)
                ),
            )
            .hint("raise max_timeout or lower timeout"),
        );
    }
    if ike.child_sa_limit == 0 {
        problems.push(
            Problem::new(
                path.key("child_sa_limit"),
                "child_sa_limit 0 would refuse every CHILD SA after the first",
            )
            .hint("16 leaves room for several selectors and their rekeys"),
        );
    }
}

/// A lifetime must leave room for the rekey to start before it ends.
fn check_lifetime(
    lifetime: Duration,
    ike: &IkeDefaults,
    path: &KeyPath,
    problems: &mut Vec<Problem>,
) {
    let lead = ike.rekey_margin + ike.rekey_jitter;
    if lifetime <= lead {
        problems.push(
            Problem::new(
                path.clone(),
                format!(
                    "lifetime {} is not longer than rekey_margin + rekey_jitter ({})",
                    format(lifetime),
                    format(lead)
                ),
            )
            .hint("lengthen the lifetime or shorten [ike] rekey_margin / rekey_jitter"),
        );
    }
}

pub(super) fn check_peers(config: &ConfigToml, problems: &mut Vec<Problem>) {
    let base = KeyPath::root().key("peer");
    let mut names: HashMap<&str, String> = config
        .manual_tunnels
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), format!("manual_tunnel[{i}]")))
        .collect();
    for (p, peer) in config.peers.iter().enumerate() {
        let path = base.index(p);
        if peer.name.is_empty() {
            problems.push(
                Problem::new(path.key("name"), "empty name").hint("give the peer a unique name"),
            );
        } else if let Some(first) = names.get(peer.name.as_str()) {
            problems.push(
                Problem::new(
                    path.key("name"),
                    format!("name `{}` is already used by {first}", peer.name),
                )
                .hint("peer and tunnel names must be unique; reload matches them by name"),
            );
        } else {
            names.insert(&peer.name, format!("peer[{p}]"));
        }
        check_peer(peer, &config.ike, &path, problems);
    }
}

fn check_peer(peer: &PeerToml, ike: &IkeDefaults, path: &KeyPath, problems: &mut Vec<Problem>) {
    if peer.local_id.is_none() && ike.local_id.is_none() {
        problems.push(
            Problem::new(path.key("local_id"), "no local_id for this peer")
                .hint("set local_id here or in [ike], like \"vpn.example.org\""),
        );
    }
    match (&peer.psk, &peer.psk_file) {
        (Some(_), Some(_)) => problems.push(
            Problem::new(path.key("psk_file"), "both psk and psk_file are set")
                .hint("keep one of them"),
        ),
        (None, None) => problems.push(
            Problem::new(path.clone(), "no psk or psk_file")
                .hint("add psk_file = \"/etc/esprit/NAME.psk\" (mode 0600), or psk = \"...\""),
        ),
        (Some(psk), None) if psk.is_empty() => problems.push(
            Problem::new(path.key("psk"), "empty psk")
                .hint("set a long random key, or use psk_file"),
        ),
        _ => {}
    }
    match peer.role {
        Role::Initiator => check_initiator(peer, path, problems),
        Role::Responder => check_responder(peer, path, problems),
    }
    check_networks(&peer.local_ts, &path.key("local_ts"), problems);
    check_networks(&peer.remote_ts, &path.key("remote_ts"), problems);
    check_networks(&peer.pool, &path.key("pool"), problems);
    if peer.proposals.as_ref().is_some_and(Vec::is_empty) {
        problems.push(
            Problem::new(path.key("proposals"), "no IKE proposal")
                .hint("remove the key to use [ike] proposals"),
        );
    }
    if peer.esp_proposals.as_ref().is_some_and(Vec::is_empty) {
        problems.push(
            Problem::new(path.key("esp_proposals"), "no ESP proposal")
                .hint("remove the key to use [ike] esp_proposals"),
        );
    }
    if let Some(lifetime) = peer.ike_lifetime {
        check_lifetime(lifetime, ike, &path.key("ike_lifetime"), problems);
    }
    if let Some(lifetime) = peer.child_lifetime {
        check_lifetime(lifetime, ike, &path.key("child_lifetime"), problems);
    }
    check_liveness(peer, ike, path, problems);
}

fn check_initiator(peer: &PeerToml, path: &KeyPath, problems: &mut Vec<Problem>) {
    match peer.remote {
        None => problems.push(
            Problem::new(path.key("remote"), "an initiator needs the remote address")
                .hint("add remote = \"192.0.2.1\" (port 500 unless given)"),
        ),
        Some(remote) if remote.ip().is_unspecified() || remote.port() == 0 => problems.push(
            Problem::new(
                path.key("remote"),
                format!("{remote} is not an address to connect to"),
            )
            .hint("write the peer's address, like \"192.0.2.1\" or \"192.0.2.1:4500\""),
        ),
        Some(_) => {}
    }
    if !peer.pool.is_empty() {
        problems.push(
            Problem::new(path.key("pool"), "only a responder hands out addresses")
                .hint("set virtual_ip = true to ask the responder for one"),
        );
    }
    if !peer.dns.is_empty() {
        problems.push(
            Problem::new(path.key("dns"), "only a responder hands out DNS servers")
                .hint("remove dns; the responder sends its own"),
        );
    }
    if peer.local_ts.is_empty() && !peer.virtual_ip && !peer.virtual_ip6 {
        problems.push(
            Problem::new(path.key("local_ts"), "at least one prefix is needed").hint(
                "list the networks on our side, or set virtual_ip = true (virtual_ip6 for IPv6)",
            ),
        );
    }
    if peer.remote_ts.is_empty() {
        problems.push(
            Problem::new(path.key("remote_ts"), "at least one prefix is needed")
                .hint("list the networks behind the peer, like [\"10.0.0.0/8\"]"),
        );
    }
}

fn check_responder(peer: &PeerToml, path: &KeyPath, problems: &mut Vec<Problem>) {
    if peer.remote.is_some() {
        problems.push(
            Problem::new(
                path.key("remote"),
                "a responder template accepts any source address",
            )
            .hint("remove remote; restrict clients with remote_id"),
        );
    }
    for (asks, key) in [
        (peer.virtual_ip, "virtual_ip"),
        (peer.virtual_ip6, "virtual_ip6"),
    ] {
        if asks {
            problems.push(
                Problem::new(path.key(key), format!("{key} is for initiators"))
                    .hint("a responder hands out addresses from pool"),
            );
        }
    }
    if peer.ignore_peer_rekey {
        problems.push(
            Problem::new(
                path.key("ignore_peer_rekey"),
                "only an initiator may ignore the peer's rekey",
            )
            .hint("the client side keeps control of its epochs; remove this key"),
        );
    }
    if peer.local_ts.is_empty() {
        problems.push(
            Problem::new(path.key("local_ts"), "at least one prefix is needed")
                .hint("list the protected networks, like [\"10.1.0.0/16\"]"),
        );
    }
    if peer.remote_ts.is_empty() && peer.pool.is_empty() {
        problems.push(
            Problem::new(path.key("pool"), "a responder needs a pool or remote_ts")
                .hint("add pool = \"10.3.0.0/16\" to give clients inner addresses"),
        );
    }
    if !peer.dns.is_empty() && peer.pool.is_empty() {
        problems.push(
            Problem::new(path.key("dns"), "dns is handed out with a pool address")
                .hint("add a pool"),
        );
    }
    for (i, pool) in peer.pool.iter().enumerate() {
        let max_len = if pool.addr().is_ipv4() { 30 } else { 126 };
        if pool.prefix_len() > max_len {
            problems.push(
                Problem::new(
                    path.key("pool").index(i),
                    format!("pool {pool} is too small"),
                )
                .hint(format!("use a prefix of length {max_len} or less")),
            );
        }
        if !peer.remote_ts.is_empty() && !peer.remote_ts.iter().any(|ts| ts.contains(pool)) {
            problems.push(
                Problem::new(
                    path.key("pool").index(i),
                    format!("pool {pool} is outside remote_ts"),
                )
                .hint(
                    "clients could not send from their own address; widen remote_ts or remove it",
                ),
            );
        }
    }
}

fn check_liveness(peer: &PeerToml, ike: &IkeDefaults, path: &KeyPath, problems: &mut Vec<Problem>) {
    if peer.liveness == LivenessMode::Off {
        return;
    }
    for (key, value) in [
        ("ping_timeout", peer.ping_timeout),
        ("idle_ping_after", peer.idle_ping_after),
    ] {
        if value.is_zero() {
            problems.push(
                Problem::new(path.key(key), format!("{key} must be more than 0s"))
                    .hint("set liveness = \"off\" to disable liveness checks"),
            );
        }
    }
    if peer.rekey_attempts == 0 {
        problems.push(
            Problem::new(
                path.key("rekey_attempts"),
                "rekey_attempts must be at least 1",
            )
            .hint("after this many failed rekeys a new IKE session starts"),
        );
    }
    let child_lifetime = peer.child_lifetime.unwrap_or(ike.child_lifetime);
    if peer.grace_period >= child_lifetime {
        problems.push(
            Problem::new(
                path.key("grace_period"),
                format!(
                    "grace_period {} is not shorter than the child lifetime {}",
                    format(peer.grace_period),
                    format(child_lifetime)
                ),
            )
            .hint("a few seconds covers packets in flight; \"10s\" is the default"),
        );
    }
}
