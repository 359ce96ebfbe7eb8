//! What a reload changes: peers and manual tunnels by name, and sections that need a restart.

use crate::schema::dataplane::Dataplane;
use crate::schema::Config;

/// Names added, removed, changed and unchanged between two configs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// How many are the same (only counted: a concentrator has many).
    pub unchanged: usize,
}

impl NamedChanges {
    /// Matches items by name through hash maps: a reload of 100,000 peers
    /// must not compare every pair.
    fn between<T: PartialEq>(old: &[T], new: &[T], name: impl Fn(&T) -> &str) -> Self {
        use std::collections::HashMap;
        let mut old_by_name: HashMap<&str, &T> = old.iter().map(|o| (name(o), o)).collect();
        let mut changes = Self::default();
        for item in new {
            match old_by_name.remove(name(item)) {
                None => changes.added.push(name(item).to_owned()),
                Some(o) if o == item => changes.unchanged += 1,
                Some(_) => changes.changed.push(name(item).to_owned()),
            }
        }
        // What no new item claimed is gone; report it in file order.
        changes.removed = old
            .iter()
            .map(&name)
            .filter(|n| old_by_name.contains_key(n))
            .map(str::to_owned)
            .collect();
        changes
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// The difference between a running config and a new one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    /// Peers, with `[ike]` defaults already applied: a changed default changes the peers using it.
    pub peers: NamedChanges,
    pub manual_tunnels: NamedChanges,
    /// `[ike]` changed (retransmission and cookies apply to new exchanges).
    pub ike_changed: bool,
    /// `[dataplane] route_pools` changed (applied on reload).
    pub route_pools_changed: bool,
    /// Sections that changed but are only read at start: `gateway`, `dataplane`, `control`, `metrics`.
    pub restart_required: Vec<&'static str>,
}

impl ConfigDiff {
    /// True when the new config changes nothing.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
            && self.manual_tunnels.is_empty()
            && !self.ike_changed
            && !self.route_pools_changed
            && self.restart_required.is_empty()
    }
}

impl Config {
    /// What changes from `self` to `new`.
    pub fn diff(&self, new: &Config) -> ConfigDiff {
        let mut restart_required = Vec::new();
        if self.gateway != new.gateway {
            restart_required.push("gateway");
        }
        // Route pools are reloadable: they only change how routes are kept.
        let fixed = |d: &Dataplane| Dataplane {
            route_pools: Vec::new(),
            ..d.clone()
        };
        if fixed(&self.dataplane) != fixed(&new.dataplane) {
            restart_required.push("dataplane");
        }
        if self.control != new.control {
            restart_required.push("control");
        }
        if self.metrics != new.metrics {
            restart_required.push("metrics");
        }
        ConfigDiff {
            peers: NamedChanges::between(&self.peers, &new.peers, |p| &p.name),
            manual_tunnels: NamedChanges::between(&self.manual_tunnels, &new.manual_tunnels, |t| {
                &t.name
            }),
            ike_changed: self.ike != new.ike,
            route_pools_changed: self.dataplane.route_pools != new.dataplane.route_pools,
            restart_required,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[ike]
local_id = "gw"

[[peer]]
name = "rw"
role = "responder"
remote_id = "any"
psk = "first key"
local_ts = ["10.1.0.0/16"]
pool = "10.3.0.0/16"

[[peer]]
name = "hq"
role = "initiator"
remote_id = "hq"
psk = "hq key"
remote = "192.0.2.1"
local_ts = ["10.1.0.0/16"]
remote_ts = ["10.9.0.0/16"]

[[manual_tunnel]]
name = "a"
remote = "192.0.2.2:4500"
local_ts = ["10.1.0.0/24"]
remote_ts = ["10.2.0.0/24"]
inbound = { spi = 0x1001, algorithm = "aes128gcm16", key = "000102030405060708090a0b0c0d0e0f", salt = "10111213" }
outbound = { spi = 0x2001, algorithm = "aes128gcm16", key = "202122232425262728292a2b2c2d2e2f", salt = "30313233" }
"#;

    fn parse(text: &str) -> Config {
        crate::parse(text, "diff.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn same_config_is_empty() {
        let diff = parse(BASE).diff(&parse(BASE));
        assert!(diff.is_empty(), "{diff:?}");
        assert_eq!(diff.peers.unchanged, 2);
        assert_eq!(diff.manual_tunnels.unchanged, 1);
    }

    #[test]
    fn lists_added_removed_and_changed_by_name() {
        let new = BASE
            .replace("first key", "second key")
            .replace("name = \"hq\"", "name = \"hq2\"")
            .replace("0x1001", "0x1002")
            + "[[manual_tunnel]]\nname = \"b\"\nremote = \"192.0.2.3:4500\"\nlocal_ts = [\"10.1.0.0/24\"]\nremote_ts = [\"10.5.0.0/24\"]\n"
            + "inbound = { spi = 0x1003, algorithm = \"aes128gcm16\", key = \"404142434445464748494a4b4c4d4e4f\", salt = \"10111213\" }\n"
            + "outbound = { spi = 0x2003, algorithm = \"aes128gcm16\", key = \"505152535455565758595a5b5c5d5e5f\", salt = \"30313233\" }\n";
        let diff = parse(BASE).diff(&parse(&new));
        assert_eq!(diff.peers.changed, names(&["rw"]));
        assert_eq!(diff.peers.added, names(&["hq2"]));
        assert_eq!(diff.peers.removed, names(&["hq"]));
        assert_eq!(diff.manual_tunnels.changed, names(&["a"]));
        assert_eq!(diff.manual_tunnels.added, names(&["b"]));
        assert!(diff.manual_tunnels.removed.is_empty());
        assert!(diff.restart_required.is_empty());
        assert!(!diff.ike_changed);
    }

    #[test]
    fn an_ike_default_changes_the_peers_that_use_it() {
        let new = BASE.replace(
            "local_id = \"gw\"",
            "local_id = \"gw\"\nchild_lifetime = \"2h\"",
        );
        let diff = parse(BASE).diff(&parse(&new));
        assert!(diff.ike_changed);
        assert_eq!(diff.peers.changed, names(&["rw", "hq"]));
        assert_eq!(diff.manual_tunnels.unchanged, 1);
    }

    #[test]
    fn start_only_sections_need_a_restart() {
        let new = format!("[dataplane]\nworkers = 2\n[control]\nmode = 0o660\n{BASE}");
        let diff = parse(BASE).diff(&parse(&new));
        assert_eq!(diff.restart_required, vec!["dataplane", "control"]);
        assert!(diff.peers.is_empty() && diff.manual_tunnels.is_empty());
        assert!(!diff.is_empty());
    }

    #[test]
    fn route_pools_reload_without_a_restart() {
        let new = format!("[dataplane]\nroute_pools = [\"10.128.0.0/15\"]\n{BASE}");
        let diff = parse(BASE).diff(&parse(&new));
        assert!(
            diff.restart_required.is_empty(),
            "{:?}",
            diff.restart_required
        );
        assert!(diff.route_pools_changed && !diff.is_empty());
        let both = format!("[dataplane]\nworkers = 2\nroute_pools = [\"10.128.0.0/15\"]\n{BASE}");
        assert_eq!(
            parse(&new).diff(&parse(&both)).restart_required,
            vec!["dataplane"]
        );
    }
}
