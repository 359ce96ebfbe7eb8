//! Prefix checks shared by tunnels and peers.

use ipnet::IpNet;

use crate::error::Problem;
use crate::keypath::KeyPath;
use crate::schema::ConfigToml;

/// Whether two prefixes share any address.
pub(super) fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Traffic selectors and pools are networks: the host bits must be zero.
pub(super) fn check_networks(nets: &[IpNet], path: &KeyPath, problems: &mut Vec<Problem>) {
    for (i, net) in nets.iter().enumerate() {
        if net.trunc() != *net {
            problems.push(
                Problem::new(path.index(i), format!("{net} has host bits set"))
                    .hint(format!("did you mean {}?", net.trunc())),
            );
        }
    }
}

/// Inner destinations must route to exactly one tunnel: the `remote_ts` of manual tunnels and
/// initiators and the pools of responders must not overlap.
pub(super) fn check_remote_overlaps(config: &ConfigToml, problems: &mut Vec<Problem>) {
    let mut claims: Vec<(IpNet, KeyPath)> = Vec::new();
    for (t, tunnel) in config.manual_tunnels.iter().enumerate() {
        let path = KeyPath::root()
            .key("manual_tunnel")
            .index(t)
            .key("remote_ts");
        claims.extend(
            tunnel
                .remote_ts
                .iter()
                .enumerate()
                .map(|(i, n)| (*n, path.index(i))),
        );
    }
    for (p, peer) in config.peers.iter().enumerate() {
        let path = KeyPath::root().key("peer").index(p);
        claims.extend(
            peer.pool
                .iter()
                .enumerate()
                .map(|(i, n)| (*n, path.key("pool").index(i))),
        );
        if peer.role == crate::schema::peer::Role::Initiator {
            let ts = path.key("remote_ts");
            claims.extend(
                peer.remote_ts
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (*n, ts.index(i))),
            );
        }
    }
    report_overlaps(&claims, problems);
}

/// A route pool indexes manual tunnels' host routes; a responder's pool is
/// indexed on its own, and the data plane keeps indexes apart.
pub(super) fn check_route_pools_apart_from_leases(
    config: &ConfigToml,
    problems: &mut Vec<Problem>,
) {
    let path = KeyPath::root().key("dataplane").key("route_pools");
    for (i, net) in config.dataplane.route_pools.iter().enumerate() {
        let responders = config
            .peers
            .iter()
            .enumerate()
            .filter(|(_, p)| p.role == crate::schema::peer::Role::Responder);
        let clash = responders.flat_map(|(p, peer)| {
            peer.pool
                .iter()
                .enumerate()
                .map(move |(j, n)| (n, KeyPath::root().key("peer").index(p).key("pool").index(j)))
        });
        if let Some((other, other_path)) = clash.into_iter().find(|(n, _)| overlaps(n, net)) {
            problems.push(
                Problem::new(path.index(i), format!("{net} overlaps {other} of {other_path}"))
                    .hint("a responder's pool is indexed without being listed; remove the route pool or move it"),
            );
        }
    }
}

/// Finds overlapping prefixes of different owners in O(n log n): prefixes
/// either nest or are disjoint, so after sorting by (family, network,
/// length) a stack of the prefixes that contain the current one is enough.
/// Each clash is reported at whichever of the two comes later in the file.
fn report_overlaps(claims: &[(IpNet, KeyPath)], problems: &mut Vec<Problem>) {
    let owner = |p: &KeyPath| p.segments().get(..2).map(|s| s.to_vec());
    let key = |n: &IpNet| match n {
        IpNet::V4(v4) => (0u8, u32::from(v4.network()) as u128, n.prefix_len()),
        IpNet::V6(v6) => (1u8, u128::from(v6.network()), n.prefix_len()),
    };
    let mut order: Vec<usize> = (0..claims.len()).collect();
    order.sort_by_key(|&i| (key(&claims[i].0), i));
    let mut open: Vec<usize> = Vec::new();
    let mut clashes: Vec<(usize, usize)> = Vec::new();
    for &i in &order {
        let net = &claims[i].0;
        while open
            .last()
            .is_some_and(|&top| !overlaps(&claims[top].0, net))
        {
            open.pop();
        }
        if let Some(&top) = open
            .iter()
            .rev()
            .find(|&&o| owner(&claims[o].1) != owner(&claims[i].1))
        {
            clashes.push((top.max(i), top.min(i)));
        }
        open.push(i);
    }
    clashes.sort_unstable();
    clashes.dedup_by_key(|c| c.0);
    for (later, earlier) in clashes {
        let (net, path) = &claims[later];
        let (other, other_path) = &claims[earlier];
        problems.push(
            Problem::new(
                path.clone(),
                format!("{net} overlaps {other} of {other_path}"),
            )
            .hint("each inner network must belong to one tunnel; split or remove one of them"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn overlap_is_symmetric_and_family_aware() {
        assert!(overlaps(&net("10.0.0.0/8"), &net("10.2.0.0/24")));
        assert!(overlaps(&net("10.2.0.0/24"), &net("10.0.0.0/8")));
        assert!(!overlaps(&net("10.1.0.0/24"), &net("10.2.0.0/24")));
        assert!(!overlaps(&net("0.0.0.0/0"), &net("::/0")));
    }
}
