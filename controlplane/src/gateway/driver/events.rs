//! What IKE negotiated, carried into the data plane: CHILD SAs installed
//! (held for their epoch's ping under esprit's liveness) and removed, IKE
//! SAs coming, going and rekeyed, and the timers each of them arms.

use std::net::IpAddr;
use std::time::Instant;

use dataplane::sa::{SaTables, TunnelId};

use super::timers::Timer;
use super::{IkeDriver, RECONNECT_AFTER};
use crate::gateway::epochs;
use crate::ike::sa::{ChildSa, Event, IkeSaEnd, IkeSaId};
use crate::tunnel::{Mode, Role as EpochRole};

impl IkeDriver {
    pub(super) fn on_event(&mut self, now: Instant, e: Event, tables: &mut SaTables) -> bool {
        match e {
            Event::IkeSaEstablished { id, peer } => {
                self.stats.ike_sas_established += 1;
                self.established.insert(id);
                self.apply_ignore_peer_rekey(id);
                if let Some(l) = self.lifetimes_of(id) {
                    self.arm(now + l.rekey_after(l.ike), Timer::RekeyIke { ike: id });
                }
                tracing::info!(ike_sa = format_args!("{:016x}", id.0), %peer, "IKE SA established");
                false
            }
            Event::ChildSaEstablished(c) => match self.install_child(now, &c, tables) {
                Ok(tunnel) => {
                    self.stats.child_sas_installed += 1;
                    self.child_owner.insert(c.inbound_spi, c.ike_sa);
                    if let Some(old) = c.replaces {
                        self.replaced_children.insert(old);
                    }
                    let ours = self.peers_of.contains_key(&c.ike_sa);
                    if ours {
                        let leased: Vec<IpAddr> = (c.virtual_ip.map(IpAddr::V4).into_iter())
                            .chain(c.virtual_ip6.map(IpAddr::V6))
                            .collect();
                        // A CHILD SA without CP (a rekey) leaves the leases be.
                        if !leased.is_empty() {
                            self.own_addresses.set(c.ike_sa, leased);
                        }
                    }
                    // RFC 3948 2.3: whoever may sit behind a NAT keeps it open.
                    if ours && c.udp_encap && !self.nat_keepalive.is_zero() {
                        let first = self.keepalive_to.insert(c.ike_sa, c.peer).is_none();
                        if first {
                            self.arm(now + self.nat_keepalive, Timer::Keepalive { ike: c.ike_sa });
                        }
                    }
                    if let Some(l) = self.lifetimes_of(c.ike_sa) {
                        let spi = c.inbound_spi;
                        self.arm(
                            now + l.rekey_after(l.child),
                            Timer::RekeyChild { inbound_spi: spi },
                        );
                    }
                    routine_or_info!(
                        c.replaces.is_some(),
                        tunnel,
                        ike_sa = format_args!("{:016x}", c.ike_sa.0),
                        inbound_spi = format_args!("{:#010x}", c.inbound_spi),
                        outbound_spi = format_args!("{:#010x}", c.outbound_spi),
                        peer = %c.peer,
                        udp_encap = c.udp_encap,
                        virtual_ip = ?c.virtual_ip,
                        rekey = c.replaces.is_some(),
                        "CHILD SA installed"
                    );
                    true
                }
                Err(err) => {
                    tracing::warn!(error = %err, "CHILD SA not installed");
                    false
                }
            },
            Event::ChildSaDeleted {
                inbound_spi,
                outbound_spi,
                ..
            } => {
                self.child_owner.remove(&inbound_spi);
                self.replaced_children.remove(&inbound_spi);
                // A pending epoch on this pair (a rekey collision's loser)
                // is forgotten before the pair goes.
                if let Some(t) = self.book.tunnel_of(inbound_spi) {
                    if let Some(e) = self.epochs.get_mut(t) {
                        e.machine.handle_epoch_deleted(now, inbound_spi);
                        e.held.remove(&outbound_spi);
                    }
                }
                let removed = self.book.remove(tables, inbound_spi, outbound_spi);
                if let Some(tunnel) = removed {
                    self.stats.child_sas_removed += 1;
                    if !self.book.is_live(tunnel) {
                        self.epochs.forget(tunnel);
                    }
                    // A rekey's old pair (the tunnel lives on) is routine.
                    routine_or_info!(
                        self.book.is_live(tunnel),
                        tunnel,
                        inbound_spi = format_args!("{:#010x}", inbound_spi),
                        "CHILD SA removed"
                    );
                }
                removed.is_some()
            }
            Event::IkeSaDeleted { id, reason } => {
                self.established.remove(&id);
                self.own_addresses.remove(id);
                self.epochs.for_ike(id, |e| e.machine.handle_ike_down(now));
                self.keepalive_to.remove(&id);
                let name = self.peers_of.remove(&id);
                if !matches!(reason, IkeSaEnd::Deleted | IkeSaEnd::Rekeyed) {
                    self.stats.ike_sas_failed += 1;
                }
                tracing::info!(ike_sa = format_args!("{:016x}", id.0), ?reason, peer = ?name, "IKE SA ended");
                if let Some(i) = self.initiators.iter_mut().find(|i| i.sa == Some(id)) {
                    i.sa = None;
                    if reason != IkeSaEnd::Rekeyed {
                        i.retry_at = Some(now + RECONNECT_AFTER);
                    }
                }
                false
            }
            Event::IkeSaRekeyed { old, new } => {
                self.epochs.ike_rekeyed(old, new);
                self.own_addresses.rekeyed(old, new);

                self.established.remove(&old);
                self.established.insert(new);
                if let Some(peer) = self.keepalive_to.remove(&old) {
                    self.keepalive_to.insert(new, peer);
                    self.arm(now + self.nat_keepalive, Timer::Keepalive { ike: new });
                }
                // The new IKE SA took over the old one's CHILD SAs (2.8):
                // look at those, not at every tunnel's.
                let moved = self.endpoint.ike_sa(new).map(|s| s.children);
                for (inbound_spi, _) in moved.unwrap_or_default() {
                    if let Some(owner) = self.child_owner.get_mut(&inbound_spi) {
                        *owner = new;
                    }
                }
                if let Some(l) = self.lifetimes_of(old) {
                    self.arm(now + l.rekey_after(l.ike), Timer::RekeyIke { ike: new });
                }
                if let Some(name) = self.peers_of.remove(&old) {
                    self.peers_of.insert(new, name);
                }
                self.apply_ignore_peer_rekey(new);
                if let Some(i) = self.initiators.iter_mut().find(|i| i.sa == Some(old)) {
                    i.sa = Some(new);
                }
                false
            }
            Event::ChildSaFailed { id, reason } => {
                tracing::info!(
                    ike_sa = format_args!("{:016x}", id.0),
                    ?reason,
                    "CHILD SA failed"
                );
                self.epochs.for_ike(id, |e| {
                    if e.machine.state() == crate::tunnel::State::Rekeying {
                        e.machine.handle_rekey_failed(now);
                    }
                });
                false
            }
        }
    }

    /// Installs a negotiated CHILD SA. With esprit's ping its outbound SA
    /// waits for the epoch machine; without it data moves at once (and the
    /// old pair of a rekey we started is deleted right away).
    fn install_child(
        &mut self,
        now: Instant,
        c: &ChildSa,
        tables: &mut SaTables,
    ) -> Result<TunnelId, String> {
        let peer = self
            .peers_of
            .get(&c.ike_sa)
            .or(self.responder.as_ref())
            .cloned();
        let role = if self.peers_of.contains_key(&c.ike_sa) {
            EpochRole::Client
        } else {
            EpochRole::Server
        };
        let settings = peer
            .as_ref()
            .and_then(|p| self.epoch_settings.get(&**p))
            .cloned();
        // Of a rekey, the pair it replaces, if this side started it.
        let ours = c.replaces.filter(|_| c.initiated);
        let Some(settings) = settings.filter(|s| s.mode == Mode::EspPing) else {
            let tunnel = self.book.install(tables, c, self.workers)?;
            if let Some(old) = ours {
                self.endpoint.delete_child_sa(now, c.ike_sa, old);
            }
            return Ok(tunnel);
        };
        let (tunnel, outbound) = self.book.install_held(tables, c, self.workers)?;
        let e = self
            .epochs
            .machine(tunnel, role, settings, c.ike_sa, peer, now);
        e.held.insert(outbound.spi, outbound);
        let spis = epochs::spis(c.inbound_spi, c.outbound_spi);
        if c.replaces.is_some() && ours.is_none() {
            // The peer's rekey: it installs its side on our answer.
            e.machine.handle_peer_epoch_ready(now, spis);
        } else {
            e.machine.handle_epoch_ready(now, spis);
        }
        if let Some(old) = ours {
            self.epochs.to_delete_after_grace.insert(old, tunnel);
        }
        Ok(tunnel)
    }

    /// Clients set to `ignore_peer_rekey` refuse the server's CHILD rekeys.
    fn apply_ignore_peer_rekey(&mut self, id: IkeSaId) {
        let ignore = self
            .peers_of
            .get(&id)
            .and_then(|p| self.epoch_settings.get(&**p))
            .is_some_and(|s| s.ignore_peer_rekey);
        if ignore {
            self.endpoint.refuse_peer_child_rekeys(id, true);
        }
    }
}
