//! The driver's own timers: lifetime rekeys of IKE and CHILD SAs (spread
//! by jitter so tunnels set up together rekey apart) and NAT keepalives.

use std::time::{Duration, Instant};

use super::IkeDriver;
use crate::ike::sa::{IkeSaId, Transmit};

/// A lifetime rekey that could not start (its IKE SA was busy with another
/// exchange) is tried again after this.
const REKEY_RETRY: Duration = Duration::from_millis(500);

/// Lifetimes of one peer's SAs: a rekey starts `margin` (minus up to
/// `jitter`, so tunnels set up together rekey apart) before they end.
#[derive(Clone, Copy, Debug)]
pub(super) struct Lifetimes {
    pub(super) ike: Duration,
    pub(super) child: Duration,
    pub(super) margin: Duration,
    pub(super) jitter: Duration,
}

impl Lifetimes {
    pub(super) fn rekey_after(&self, lifetime: Duration) -> Duration {
        let jitter_ms = self.jitter.as_millis() as u64;
        let spread = if jitter_ms == 0 {
            0
        } else {
            rand::random::<u64>() % jitter_ms
        };
        lifetime
            .saturating_sub(self.margin)
            .saturating_sub(Duration::from_millis(spread))
            .max(Duration::from_secs(1))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    RekeyChild {
        inbound_spi: u32,
    },
    RekeyIke {
        ike: IkeSaId,
    },
    /// A NAT keepalive to the peer of this IKE SA, then the next one.
    Keepalive {
        ike: IkeSaId,
    },
}

impl IkeDriver {
    /// Starts the rekeys that are due.
    pub(super) fn fire_timers(&mut self, now: Instant) {
        while let Some(&(at, t)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            match t {
                Timer::RekeyChild { inbound_spi } => {
                    let Some(ike) = self.child_owner.get(&inbound_spi).copied() else {
                        continue; // gone or already replaced
                    };
                    if self.replaced_children.contains(&inbound_spi) {
                        continue;
                    }
                    let started = self.endpoint.rekey_child_sa(now, ike, inbound_spi);
                    if !started && self.endpoint.ike_sa(ike).is_some() {
                        // Another exchange of this IKE SA is under way
                        // (one CREATE_CHILD_SA at a time): try again soon.
                        self.arm(now + REKEY_RETRY, Timer::RekeyChild { inbound_spi });
                    }
                    tracing::debug!(
                        inbound_spi = format_args!("{:#010x}", inbound_spi),
                        started,
                        "CHILD SA rekey (lifetime)"
                    );
                }
                Timer::Keepalive { ike } => {
                    let Some(peer) = self.keepalive_to.get(&ike).copied() else {
                        continue; // the IKE SA is gone
                    };
                    self.send(Transmit {
                        local: self.local_natt,
                        remote: peer,
                        payload: vec![0xff],
                    });
                    self.arm(now + self.nat_keepalive, Timer::Keepalive { ike });
                }
                Timer::RekeyIke { ike } => {
                    let started = self.endpoint.rekey_ike_sa(now, ike);
                    tracing::info!(
                        ike_sa = format_args!("{:016x}", ike.0),
                        started,
                        "IKE SA rekey (lifetime)"
                    );
                }
            }
        }
    }

    pub(super) fn lifetimes_of(&self, ike: IkeSaId) -> Option<Lifetimes> {
        let name = self.peers_of.get(&ike).or(self.responder.as_ref())?;
        self.lifetimes.get(&**name).copied()
    }

    pub(super) fn arm(&mut self, at: Instant, t: Timer) {
        self.timers.insert((at, t));
    }
}
