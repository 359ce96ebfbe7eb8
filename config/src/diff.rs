//! What a reload changes: peers and manual tunnels by name, and sections that need a restart.

use crate::schema::Config;

/// Names added, removed, changed and unchanged between two configs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
}

impl NamedChanges {
    fn between<T: PartialEq>(old: &[T], new: &[T], name: impl Fn(&T) -> &str) -> Self {
        let mut changes = Self::default();
        for item in new {
            match old.iter().find(|o| name(o) == name(item)) {
                None => changes.added.push(name(item).to_owned()),
                Some(o) if o == item => changes.unchanged.push(name(item).to_owned()),
                Some(_) => changes.changed.push(name(item).to_owned()),
            }
        }
        for item in old {
            if !new.iter().any(|n| name(n) == name(item)) {
                changes.removed.push(name(item).to_owned());
            }
        }
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
    /// Sections that changed but are only read at start: `gateway`, `dataplane`, `control`, `metrics`.
    pub restart_required: Vec<&'static str>,
}

impl ConfigDiff {
    /// True when the new config changes nothing.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
            && self.manual_tunnels.is_empty()
            && !self.ike_changed
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
        if self.dataplane != new.dataplane {
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
            restart_required,
        }
    }
}
