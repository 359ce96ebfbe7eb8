//! Answers to control-socket requests, on the control-plane thread.

use std::time::Instant;

use serde_json::{json, Value};

use super::Daemon;
use crate::ctl::{Reply, Request};
use dataplane::DropReason;

fn hex(spi: u32) -> String {
    format!("{spi:#010x}")
}

fn drops_json(drops: &[u64; DropReason::COUNT]) -> Value {
    let mut m = serde_json::Map::new();
    for r in DropReason::ALL {
        m.insert(r.name().into(), json!(drops[r.index()]));
    }
    Value::Object(m)
}

impl Daemon {
    /// Answers one control request as the control socket would (for
    /// programs that embed the daemon).
    pub fn handle(&mut self, req: Request) -> Reply {
        let now = Instant::now();
        match req {
            Request::Status {} => Reply::ok(self.status()),
            Request::Tunnels { peer, state } => {
                Reply::ok(self.tunnels(peer.as_deref(), state.as_deref()))
            }
            Request::Sas {} => Reply::ok(self.sas()),
            Request::Stats {} => Reply::ok(self.stats_json()),
            Request::Reload {} => self.reload(),
            Request::Initiate { name } => self.initiate(&name, now),
            Request::Terminate { name } => self.terminate(&name, now),
            Request::Rekey { name } => {
                if self.manual.contains_key(&name) {
                    return Reply::error(format!(
                        "{name:?} is a manual tunnel: its keys only change by editing the config"
                    ));
                }
                match self.ike.rekey(&name, now) {
                    Ok(n) => Reply::ok(json!({ "rekeys_started": n })),
                    Err(e) => Reply::error(e),
                }
            }
            Request::LogLevel { filter } => match &self.options.set_log_filter {
                None => Reply::error("this daemon's log level cannot be changed at run time"),
                Some(set) => match set(&filter) {
                    Ok(()) => {
                        tracing::info!(%filter, "log filter changed");
                        Reply::ok(json!({ "filter": filter }))
                    }
                    Err(e) => Reply::error(format!("bad log filter {filter:?}: {e}")),
                },
            },
        }
    }

    fn status(&self) -> Value {
        let tables = self.publisher.published();
        let t = self.totals();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": self.started.elapsed().as_secs(),
            "workers": self.workers,
            "manual_tunnels": self.manual.len(),
            "ike_tunnels": self.ike.tunnels(),
            "ike_sas": self.ike.ike_sa_count(),
            "inbound_sas": tables.inbound.len(),
            "outbound_sas": tables.outbound.len(),
            "decrypted": t.decrypted,
            "encrypted": t.encrypted,
            "drops": t.total_drops(),
            "sa_table_version": tables.version,
            // Host routes in leased and listed pools, indexed by address
            // (others are hashed).
            "indexed_pools": tables.routes.pools()
                .map(|(prefix, hosts)| json!({ "prefix": prefix.to_string(), "hosts": hosts }))
                .collect::<Vec<_>>(),
            // Leased inner addresses espritd put on its inside TUN, and
            // whether adding or removing one failed and waits for a retry.
            "inner_addresses": self.inner_addresses.ours().iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>(),
            "inner_addresses_retry_pending": self.inner_addresses.retry_at().is_some(),
        })
    }

    fn tunnels(&self, peer: Option<&str>, state: Option<&str>) -> Value {
        let tables = self.publisher.published();
        let mut rows = Vec::new();
        for (name, e) in &self.manual {
            let st = if e.up { "up" } else { "down" };
            let counters = |spi_in: u32| {
                let i = tables.inbound_sa(spi_in);
                let o = tables.outbound_sa(e.tunnel.tunnel);
                (
                    i.map_or(0, |s| s.counters.packets()),
                    i.map_or(0, |s| s.counters.bytes()),
                    o.map_or(0, |s| s.counters.packets()),
                    o.map_or(0, |s| s.counters.bytes()),
                )
            };
            let (pi, bi, po, bo) = counters(e.tunnel.inbound.spi);
            rows.push(json!({
                "name": name, "kind": "manual", "state": st,
                "remote": e.tunnel.remote.to_string(),
                "inbound_spi": hex(e.tunnel.inbound.spi), "outbound_spi": hex(e.tunnel.outbound.spi),
                "packets_in": pi, "bytes_in": bi, "packets_out": po, "bytes_out": bo,
            }));
        }
        for sa in self.ike.status() {
            let st = sa["state"]
                .as_str()
                .map(|s| if s == "established" { "up" } else { s })
                .unwrap_or("?");
            let mut row = sa.clone();
            row["kind"] = json!("ike");
            row["name"] = sa["peer"].clone();
            row["state"] = json!(st);
            // esprit's epochs, when the peer speaks the ping.
            if let Some(e) = sa["epochs"].get(0) {
                row["epoch"] = e["epoch"].clone();
                row["epoch_state"] = e["state"].clone();
                row["rtt_ms"] = e["last_rtt_ms"].clone();
            }
            rows.push(row);
        }
        rows.retain(|r| {
            peer.is_none_or(|p| r["name"].as_str() == Some(p))
                && state.is_none_or(|s| r["state"].as_str() == Some(s))
        });
        Value::Array(rows)
    }

    fn sas(&self) -> Value {
        let tables = self.publisher.published();
        let mut rows = Vec::new();
        for (_, sa) in tables.inbound.iter() {
            rows.push(json!({
                "direction": "in", "spi": hex(sa.spi), "tunnel": sa.tunnel, "worker": sa.owner,
                "packets": sa.counters.packets(), "bytes": sa.counters.bytes(), "seq": sa.highest_seq(),
            }));
        }
        for (_, sa) in tables.outbound.iter() {
            rows.push(json!({
                "direction": "out", "spi": hex(sa.spi), "tunnel": sa.tunnel, "worker": sa.owner,
                "packets": sa.counters.packets(), "bytes": sa.counters.bytes(), "seq": sa.last_seq(),
                "remote": sa.remote().to_string(),
            }));
        }
        Value::Array(rows)
    }

    fn stats_json(&self) -> Value {
        let per_worker: Vec<Value> = self
            .stats
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let s = s.snapshot();
                json!({
                    "worker": i,
                    "outside_rx": s.outside_rx, "outside_tx": s.outside_tx,
                    "inside_rx": s.inside_rx, "inside_tx": s.inside_tx,
                    "decrypted": s.decrypted, "encrypted": s.encrypted,
                    "to_control": s.to_control, "handed_off": s.handed_off, "keepalives": s.keepalives,
                    "mss_clamped": s.mss_clamped, "icmp_too_big_sent": s.icmp_too_big_sent,
                    "icmp_too_big_limited": s.icmp_too_big_limited, "fragmented": s.fragmented,
                    "tun_rx_super_packets": s.inside_rx_super, "tun_tx_super_packets": s.inside_tx_super,
                    "drops": drops_json(&s.drops),
                })
            })
            .collect();
        let t = self.totals();
        let stats = &self.ike.stats;
        json!({
            "workers": per_worker,
            "drops": drops_json(&t.drops),
            "ike": {
                "ike_sas_established": stats.ike_sas_established,
                "ike_sas_failed": stats.ike_sas_failed,
                "child_sas_installed": stats.child_sas_installed,
                "child_sas_removed": stats.child_sas_removed,
                "peer_moves": stats.peer_moves,
                "epoch_switches": stats.epoch_switches,
            },
        })
    }

    fn initiate(&mut self, name: &str, now: Instant) -> Reply {
        if let Some(e) = self.manual.get_mut(name) {
            if e.up {
                return Reply::error(format!("manual tunnel {name:?} is already up"));
            }
            if let Err(err) =
                dataplane::sa::manual::install_built(self.publisher.edit(), &e.tunnel, &e.sas)
            {
                return Reply::error(format!("manual tunnel {name:?}: {err}"));
            }
            e.up = true;
            self.publisher.publish();
            tracing::info!(tunnel = %name, "manual tunnel up (control socket)");
            return Reply::ok(json!({ "name": name, "state": "up" }));
        }
        match self.ike.initiate(name, now) {
            Ok(()) => Reply::ok(json!({ "name": name, "state": "connecting" })),
            Err(e) => Reply::error(e),
        }
    }

    fn terminate(&mut self, name: &str, now: Instant) -> Reply {
        if let Some(e) = self.manual.get_mut(name) {
            if !e.up {
                return Reply::error(format!("manual tunnel {name:?} is already down"));
            }
            dataplane::sa::manual::remove(self.publisher.edit(), &e.tunnel);
            e.up = false;
            self.publisher.publish();
            tracing::info!(tunnel = %name, "manual tunnel down (control socket)");
            return Reply::ok(json!({ "name": name, "state": "down" }));
        }
        match self.ike.terminate(name, now) {
            Ok(()) => Reply::ok(json!({ "name": name, "state": "deleting" })),
            Err(e) => Reply::error(e),
        }
    }

    /// Reads and validates the whole file, then applies only the
    /// difference; a bad file, or one changing what needs a restart,
    /// changes nothing.
    pub fn reload(&mut self) -> Reply {
        let Some(path) = self.options.config_path.clone() else {
            return Reply::error("this daemon was not started from a config file");
        };
        match config::load(&path) {
            Ok(new) => self.apply_config(new),
            Err(e) => Reply::error(format!("nothing changed: {e}")),
        }
    }

    /// Applies a validated config as a difference to the running one:
    /// what did not change is not touched.
    pub fn apply_config(&mut self, new: config::Config) -> Reply {
        let diff = self.config.diff(&new);
        if !diff.restart_required.is_empty() {
            return Reply::error(format!(
                "nothing changed: [{}] can only change with a restart",
                diff.restart_required.join("], [")
            ));
        }
        let mt = &diff.manual_tunnels;
        for name in mt.removed.iter().chain(&mt.changed) {
            self.remove_manual(name);
        }
        for name in mt.added.iter().chain(&mt.changed) {
            let Some(t) = new.manual_tunnels.iter().find(|t| &t.name == name) else {
                continue;
            };
            if let Err(e) = self.add_manual(t) {
                // Validation passed, so this is a data-plane refusal: say so;
                // what was applied stays applied.
                self.publisher.publish();
                return Reply::error(format!("partly applied: {e}"));
            }
        }
        if let Err(e) = self.route_peers(&new.peers) {
            tracing::warn!(error = %e, "routes for reloaded peers");
        }
        self.index_pools(&new);
        self.ike.reconfigure(Instant::now(), &new, &diff.peers);
        self.publisher.publish();
        // Freeing a large old config (keys are wiped one by one) is left to
        // a thread of its own, off the control loop.
        let old = std::mem::replace(&mut self.config, new);
        let _ = std::thread::Builder::new()
            .name("esprit-free-config".into())
            .spawn(move || drop(old));
        let names = |c: &config::NamedChanges| json!({ "added": c.added, "removed": c.removed, "changed": c.changed, "unchanged": c.unchanged });
        let data = json!({
            "manual_tunnels": names(&diff.manual_tunnels),
            "peers": names(&diff.peers),
            "ike_changed": diff.ike_changed,
            "route_pools_changed": diff.route_pools_changed,
        });
        tracing::info!(result = %data, "config reloaded");
        Reply::ok(data)
    }
}
