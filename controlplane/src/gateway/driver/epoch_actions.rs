//! esprit's epochs on negotiated tunnels (docs/ping.md): pings and pongs
//! the workers decrypted go to the tunnel's epoch machine, and what the
//! machines decide (send a ping, move the data, drop an old pair, rekey,
//! start a new IKE session) is carried out here.

use std::net::SocketAddr;
use std::time::Instant;

use dataplane::packet::{Encap, Packet};
use dataplane::sa::SaTables;
use dataplane::worker::SealRequest;

use super::IkeDriver;
use crate::tunnel::Action as EpochAction;

impl IkeDriver {
    /// A ping or pong the workers decrypted (authenticated, not a replay),
    /// which came from `from`.
    pub(super) fn on_control_message(
        &mut self,
        now: Instant,
        inbound_spi: u32,
        payload: &[u8],
        from: SocketAddr,
        tables: &SaTables,
    ) {
        let Some(tunnel) = self.book.tunnel_of(inbound_spi) else {
            return;
        };
        let Some(e) = self.epochs.get_mut(tunnel) else {
            return;
        };
        if !e.machine.handle_control(now, inbound_spi, payload) {
            return;
        }
        // An authentic ping from a new address: the client's NAT mapping
        // moved. Its epochs' SAs, and IKE, follow it (as RFC 7296 2.23 has
        // IKE follow an authenticated message), so the pong and the data
        // reach it without waiting for a rekey.
        let ike = e.ike;
        let outbound = tables
            .outbound_sa(tunnel)
            .into_iter()
            .chain(e.held.values())
            .filter(|sa| sa.encap == Encap::EspInUdp);
        let mut moved = false;
        for sa in outbound {
            moved |= sa.move_remote(from);
        }
        if moved {
            self.endpoint.peer_moved(ike, from);
            self.stats.peer_moves += 1;
            tracing::info!(tunnel, to = %from, "peer moved: its NAT mapping changed");
        }
    }

    /// Carries out what the epoch machines decided.
    pub(super) fn apply_epoch_actions(&mut self, now: Instant, tables: &mut SaTables) -> bool {
        let mut changed = false;
        for (tunnel, action) in self.epochs.due_actions(now) {
            let Some(e) = self.epochs.get_mut(tunnel) else {
                continue;
            };
            match action {
                EpochAction::SendControl {
                    outbound_spi,
                    payload,
                } => {
                    let sa = e.held.get(&outbound_spi).cloned().or_else(|| {
                        tables
                            .outbound_sa(tunnel)
                            .filter(|s| s.spi == outbound_spi)
                            .cloned()
                    });
                    let (Some(sa), Some(packet)) = (sa, Packet::from_slice(&payload)) else {
                        continue;
                    };
                    if let Some(link) = self.links.get(sa.owner as usize) {
                        let _ = link.seal.push(SealRequest { sa, packet });
                    }
                }
                EpochAction::SwitchOutbound {
                    epoch,
                    outbound_spi,
                } => {
                    if let Some(sa) = e.held.remove(&outbound_spi) {
                        self.book.switch_outbound(tables, sa);
                        changed = true;
                        self.stats.epoch_switches += 1;
                        // Debug, not info: a concentrator's rekeys come by
                        // the thousand a second (a line each was 8% of the
                        // control thread in the lab's storm); the count is
                        // in the stats and on the metrics page.
                        tracing::debug!(
                            tunnel,
                            epoch,
                            outbound_spi = format_args!("{outbound_spi:#010x}"),
                            "epoch confirmed: data moves"
                        );
                    }
                }
                EpochAction::RemoveInbound { spi } => {
                    // Grace is over: the old pair of a rekey we started goes.
                    let ike = e.ike;
                    if self.epochs.to_delete_after_grace.remove(&spi).is_some() {
                        self.endpoint.delete_child_sa(now, ike, spi);
                    }
                }
                EpochAction::DeleteUnused { spi } => {
                    // A pair given up before it carried data, which no rekey
                    // deletes: without this it would stay until its
                    // lifetime (when the peer never got our answer, as its
                    // IKE SA was deleted under it, it does not even know
                    // the pair). Already gone (a collision's loser): nothing
                    // is sent.
                    let ike = e.ike;
                    self.epochs.to_delete_after_grace.remove(&spi);
                    self.endpoint.delete_child_sa(now, ike, spi);
                }
                EpochAction::Rekey => {
                    let (ike, spi) = (e.ike, e.machine.latest_inbound());
                    let started = spi.is_some_and(|s| self.endpoint.rekey_child_sa(now, ike, s));
                    tracing::info!(tunnel, started, "rekey: the epoch's path does not answer");
                    if !started {
                        e.machine.handle_rekey_failed(now);
                    }
                }
                EpochAction::RestartIke => {
                    let ike = e.ike;
                    let peer = e.peer.clone();
                    tracing::warn!(tunnel, ?peer, "rekeys failed: starting a new IKE session");
                    if let Some(i) = self
                        .initiators
                        .iter_mut()
                        .find(|i| Some(i.name.as_str()) == peer.as_deref())
                    {
                        i.sa = None;
                        i.retry_at = Some(now);
                    }
                    self.endpoint.delete_ike_sa(now, ike);
                }
                EpochAction::CheckLiveness => {
                    let ike = e.ike;
                    self.endpoint.check_liveness(now, ike);
                }
            }
        }
        changed
    }
}
