//! Traffic selector narrowing (RFC 7296 §2.9): the responder answers with
//! the intersection of what was asked and what its policy allows.

use std::net::IpAddr;

use crate::ike::wire::TrafficSelector;

fn key(a: IpAddr) -> (u8, u128) {
    match a {
        IpAddr::V4(v) => (4, u128::from(u32::from(v))),
        IpAddr::V6(v) => (6, u128::from(v)),
    }
}

fn intersect(a: &TrafficSelector, b: &TrafficSelector) -> Option<TrafficSelector> {
    let (fa, a0) = key(a.start_addr);
    let (fb, b0) = key(b.start_addr);
    let (_, a1) = key(a.end_addr);
    let (_, b1) = key(b.end_addr);
    if fa != fb {
        return None;
    }
    let ip_protocol = match (a.ip_protocol, b.ip_protocol) {
        (0, p) | (p, 0) => p,
        (p, q) if p == q => p,
        _ => return None,
    };
    let (s, e) = (a0.max(b0), a1.min(b1));
    let (sp, ep) = (a.start_port.max(b.start_port), a.end_port.min(b.end_port));
    if s > e || sp > ep {
        return None;
    }
    let addr = |v: u128| match a.start_addr {
        IpAddr::V4(_) => IpAddr::from(std::net::Ipv4Addr::from(v as u32)),
        IpAddr::V6(_) => IpAddr::from(std::net::Ipv6Addr::from(v)),
    };
    Some(TrafficSelector {
        ip_protocol,
        start_port: sp,
        end_port: ep,
        start_addr: addr(s),
        end_addr: addr(e),
    })
}

/// Every non-empty intersection of a requested selector with an allowed one.
pub fn narrow(requested: &[TrafficSelector], allowed: &[TrafficSelector]) -> Vec<TrafficSelector> {
    let mut out = Vec::new();
    for r in requested {
        for a in allowed {
            if let Some(x) = intersect(r, a) {
                if !out.contains(&x) {
                    out.push(x);
                }
            }
        }
    }
    out
}

/// True if every selector in `sub` lies within some selector of `sup`.
pub fn within(sub: &[TrafficSelector], sup: &[TrafficSelector]) -> bool {
    sub.iter()
        .all(|s| sup.iter().any(|p| intersect(s, p).as_ref() == Some(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(a: &str, b: &str) -> TrafficSelector {
        TrafficSelector::range(a.parse().unwrap(), b.parse().unwrap())
    }

    #[test]
    fn narrows_to_the_overlap() {
        let got = narrow(
            &[ts("0.0.0.0", "255.255.255.255")],
            &[ts("10.1.0.0", "10.1.255.255")],
        );
        assert_eq!(got, [ts("10.1.0.0", "10.1.255.255")]);
        assert!(narrow(
            &[ts("10.2.0.0", "10.2.0.255")],
            &[ts("10.1.0.0", "10.1.255.255")]
        )
        .is_empty());
        assert!(narrow(&[ts("::", "::1")], &[ts("10.1.0.0", "10.1.255.255")]).is_empty());
        assert!(within(&got, &[ts("0.0.0.0", "255.255.255.255")]));
        assert!(!within(&[ts("0.0.0.0", "255.255.255.255")], &got));
    }
}
