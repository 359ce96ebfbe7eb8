//! What the operator asks of the driver through the control socket:
//! status, connect, terminate, rekey, and a reloaded config's peers.

use std::sync::Arc;
use std::time::Instant;

use config::schema::peer::Role;

use super::timers::Lifetimes;
use super::{set_pools, IkeDriver, Initiator};
use crate::gateway::epochs;
use crate::gateway::policy::{policy, responder_lookup};
use crate::ike::sa::IkeSaId;

impl IkeDriver {
    /// IKE SAs as JSON rows for the control socket (no key material).
    pub fn status(&self) -> Vec<serde_json::Value> {
        let mut rows: Vec<serde_json::Value> = self
            .endpoint
            .ike_sas()
            .map(|st| {
                let peer_name = self
                    .peers_of
                    .get(&st.id)
                    .or(self.responder.as_ref())
                    .map(|n| n.to_string());
                let epochs: Vec<serde_json::Value> = self
                    .epochs
                    .tunnels_of(st.id)
                    .into_iter()
                    .filter_map(|t| Some((t, self.epochs.get(t)?)))
                    .map(|(t, e)| {
                        let s = e.machine.stats();
                        serde_json::json!({
                            "tunnel": t,
                            "state": format!("{:?}", e.machine.state()).to_lowercase(),
                            "epoch": s.epoch,
                            "last_rtt_ms": s.last_rtt.map(|d| d.as_secs_f64() * 1000.0),
                            "pings": s.pings_sent,
                            "retries": s.retries,
                            "rekeys": s.rekeys,
                            "restarts": s.restarts,
                            "rejected": s.rejected,
                        })
                    })
                    .collect();
                serde_json::json!({
                    "epochs": epochs,
                    "ike_sa": format!("{:016x}", st.id.0),
                    "peer": peer_name,
                    "state": format!("{:?}", st.state).to_lowercase(),
                    "initiator": st.initiator,
                    "remote": st.peer.to_string(),
                    "local": st.local.to_string(),
                    "peer_id": st.peer_id.as_ref().map(|i| String::from_utf8_lossy(&i.data).into_owned()),
                    "nat_detected": st.nat_detected,
                    "virtual_ip": st.virtual_ip.map(|a| a.to_string()),
                    "virtual_ip6": st.virtual_ip6.map(|a| a.to_string()),
                    "children": st.children.iter().map(|(i, o)| {
                        serde_json::json!({"inbound_spi": format!("{i:#010x}"), "outbound_spi": format!("{o:#010x}")})
                    }).collect::<Vec<_>>(),
                })
            })
            .collect();
        rows.sort_by(|a, b| a["ike_sa"].as_str().cmp(&b["ike_sa"].as_str()));
        rows
    }

    /// Number of IKE SAs (any state).
    pub fn ike_sa_count(&self) -> usize {
        self.endpoint.ike_sa_count()
    }

    /// Whether `name` is one of our initiator peers.
    pub fn has_initiator(&self, name: &str) -> bool {
        self.initiators.iter().any(|i| i.name == name)
    }

    /// Initiator peer `name`, or the error the control socket answers.
    fn initiator(&mut self, name: &str) -> Result<&mut Initiator, String> {
        self.initiators
            .iter_mut()
            .find(|i| i.name == name)
            .ok_or_else(|| format!("no initiator peer named {name:?}"))
    }

    /// Connects initiator peer `name` now (if not connected).
    pub fn initiate(&mut self, name: &str, now: Instant) -> Result<(), String> {
        let i = self.initiator(name)?;
        if i.sa.is_some() {
            return Err(format!("peer {name:?} is already connected or connecting"));
        }
        i.retry_at = Some(now);
        Ok(())
    }

    /// The inner addresses responders leased to our initiator SAs.
    pub fn own_addresses(&self) -> &crate::gateway::OwnAddresses {
        &self.own_addresses
    }

    /// Deletes initiator peer `name`'s IKE SA and does not reconnect.
    pub fn terminate(&mut self, name: &str, now: Instant) -> Result<(), String> {
        let i = self.initiator(name)?;
        i.retry_at = None;
        let Some(id) = i.sa.take() else {
            return Err(format!("peer {name:?} is not connected"));
        };
        self.endpoint.delete_ike_sa(now, id);
        Ok(())
    }

    /// Rekeys every CHILD SA of peer `name` now.
    pub fn rekey(&mut self, name: &str, now: Instant) -> Result<usize, String> {
        let ids: Vec<IkeSaId> = self
            .peers_of
            .iter()
            .filter(|(_, n)| &***n == name)
            .map(|(id, _)| *id)
            .chain(
                self.responder
                    .as_deref()
                    .filter(|r| *r == name)
                    .into_iter()
                    .flat_map(|_| self.established.iter().copied()),
            )
            .collect();
        let children: Vec<(IkeSaId, u32)> = self
            .child_owner
            .iter()
            .filter(|(_, ike)| ids.contains(ike))
            .map(|(spi, ike)| (*ike, *spi))
            .collect();
        if children.is_empty() {
            return Err(format!("peer {name:?} has no CHILD SA to rekey"));
        }
        let mut started = 0;
        for (ike, spi) in children {
            if self.endpoint.rekey_child_sa(now, ike, spi) {
                started += 1;
            }
        }
        Ok(started)
    }

    /// Applies a reloaded config's peers: responders' templates at once
    /// (new IKE SAs use them), removed or changed initiators deleted, added
    /// or changed ones connected.
    pub fn reconfigure(
        &mut self,
        now: Instant,
        cfg: &config::Config,
        peers: &config::NamedChanges,
    ) {
        // The first responder template may come with a reload: from now on
        // the endpoint answers clients (each with its own template's pool).
        if self.responder.is_none() {
            if let Some(r) = cfg.peers.iter().find(|p| p.role == Role::Responder) {
                self.endpoint.accept(policy(r, &cfg.ike.retransmit), None);
                self.endpoint
                    .set_cookie_threshold(cfg.ike.cookie_threshold as usize);
                self.responder = Some(Arc::from(r.name.as_str()));
            }
        }
        self.endpoint
            .set_peer_policy(responder_lookup(&cfg.peers, &cfg.ike.retransmit));
        self.endpoint
            .set_child_sa_limit(cfg.ike.child_sa_limit as usize);
        self.endpoint
            .set_unique_replace(cfg.ike.unique == config::schema::ike::Unique::Replace);
        // Unchanged pools keep their leases; a changed range keeps the
        // addresses its clients still hold.
        set_pools(&mut self.endpoint, &cfg.peers, &peers.removed);
        // Clients whose identity no responder template admits any more go
        // (their peer was removed, or its remote_id narrowed).
        let admits = responder_lookup(&cfg.peers, &cfg.ike.retransmit);
        let refused: Vec<IkeSaId> = self
            .established
            .iter()
            .copied()
            .filter(|id| !self.peers_of.contains_key(id))
            .filter(|id| {
                self.endpoint
                    .ike_sa(*id)
                    .and_then(|st| st.peer_id)
                    .is_some_and(|pid| admits(&pid).is_none())
            })
            .collect();
        for id in refused {
            tracing::info!(
                ike_sa = format_args!("{:016x}", id.0),
                "no responder peer admits this client any more: deleting its IKE SA"
            );
            self.endpoint.delete_ike_sa(now, id);
        }
        for name in peers.removed.iter().chain(&peers.changed) {
            if let Some(pos) = self.initiators.iter().position(|i| &i.name == name) {
                let i = self.initiators.remove(pos);
                if let Some(id) = i.sa {
                    self.endpoint.delete_ike_sa(now, id);
                }
            }
        }
        for name in &peers.removed {
            self.epoch_settings.remove(name);
        }
        // New tunnels of a reloaded peer take its liveness settings; the
        // traffic check follows the shortest idle_ping_after.
        self.traffic_check =
            epochs::traffic_check_every(cfg.peers.iter().map(|p| p.liveness.idle_ping_after));
        for name in peers.added.iter().chain(&peers.changed) {
            let Some(p) = cfg.peers.iter().find(|p| &p.name == name) else {
                continue;
            };
            self.epoch_settings
                .insert(p.name.clone(), Arc::new(epochs::settings(&p.liveness)));
            self.lifetimes.insert(
                p.name.clone(),
                Lifetimes {
                    ike: p.ike_lifetime,
                    child: p.child_lifetime,
                    margin: cfg.ike.rekey_margin,
                    jitter: cfg.ike.rekey_jitter,
                },
            );
            if let (Role::Initiator, Some(mut remote)) = (p.role, p.remote) {
                if remote.port() == 0 {
                    remote.set_port(500);
                }
                self.initiators.push(Initiator {
                    name: p.name.clone(),
                    remote,
                    policy: policy(p, &cfg.ike.retransmit),
                    sa: None,
                    retry_at: Some(now),
                });
            }
        }
    }
}
