//! Checks after serde: ranges, lengths, uniqueness and consistency across sections.
//! Every problem is collected, not only the first.

mod dataplane;
mod manual;
mod outside_port;
mod peer;
mod prefix;

pub use manual::{MAX_REPLAY_WINDOW, SPI_SLOT_MASK};

use crate::error::Problem;
use crate::keypath::KeyPath;
use crate::schema::ConfigToml;

/// A problem at `parent.name` unless `value` lies in `range`, worded
/// "name value is not in lo..=hi" (the bounds as Rust writes them, so a
/// float range reads 0.0..=0.5).
fn check_in_range<T: PartialOrd + std::fmt::Display + std::fmt::Debug>(
    parent: &KeyPath,
    name: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
    hint: &str,
    problems: &mut Vec<Problem>,
) {
    if !range.contains(&value) {
        let (lo, hi) = range.into_inner();
        problems.push(
            Problem::new(
                parent.key(name),
                format!("{name} {value} is not in {lo:?}..={hi:?}"),
            )
            .hint(hint),
        );
    }
}

/// All semantic problems of a parsed document.
pub(crate) fn check(config: &ConfigToml) -> Vec<Problem> {
    let mut problems = Vec::new();
    let root = KeyPath::root();
    dataplane::check_gateway(&config.gateway, &root.key("gateway"), &mut problems);
    dataplane::check_dataplane(&config.dataplane, &root.key("dataplane"), &mut problems);
    outside_port::check(&config.gateway, &config.dataplane, &root, &mut problems);
    dataplane::check_control(&config.control, &root.key("control"), &mut problems);
    if let Some(metrics) = &config.metrics {
        if metrics.listen.port() == 0 {
            problems.push(
                Problem::new(
                    root.key("metrics").key("listen"),
                    "port 0 is not a listen port",
                )
                .hint("write an address with a port, like \"127.0.0.1:9180\""),
            );
        }
    }
    manual::check(&config.manual_tunnels, &mut problems);
    peer::check_ike(&config.ike, &root.key("ike"), &mut problems);
    peer::check_peers(config, &mut problems);
    prefix::check_remote_overlaps(config, &mut problems);
    prefix::check_route_pools_apart_from_leases(config, &mut problems);
    problems
}
