//! What one side of an IKE SA accepts and offers.

use std::net::IpAddr;
use std::time::Duration;

use crate::ike::crypto::{DhGroup, Prf, Secret};
use crate::ike::wire::{Identification, TrafficSelector};

/// Retransmission of unanswered requests (RFC 7296 §2.1): send `n` (from
/// 0) waits `initial * base^n`, at most `max_timeout`, for its answer;
/// after `max_tries` sends the IKE SA is dead.
#[derive(Clone, Copy, Debug)]
pub struct Retransmit {
    pub initial: Duration,
    pub base: f64,
    pub max_timeout: Duration,
    pub max_tries: u32,
    /// Up to this fraction (0..1) of each wait is taken off at random, so
    /// that peers which started together (a gateway's restart, a load
    /// generator's clients) do not resend together: strongSwan's
    /// `retransmit_jitter`, as a fraction instead of a percentage.
    pub jitter: f64,
}

impl Default for Retransmit {
    /// Doubling from 500 ms, five sends, no jitter.
    fn default() -> Self {
        Retransmit {
            initial: Duration::from_millis(500),
            base: 2.0,
            max_timeout: Duration::from_secs(512),
            max_tries: 5,
            jitter: 0.0,
        }
    }
}

impl Retransmit {
    /// How long send `n` (from 0) waits for its answer.
    pub fn timeout(&self, n: u32) -> Duration {
        let grown = self.initial.as_secs_f64() * self.base.max(1.0).powi(n.min(64) as i32);
        Duration::try_from_secs_f64(grown)
            .unwrap_or(self.max_timeout)
            .min(self.max_timeout)
            .max(self.initial.min(self.max_timeout))
    }

    /// The wait of send `n` with its jitter taken off; `draw` is a uniform
    /// random 32-bit number.
    pub fn jittered_timeout(&self, n: u32, draw: u32) -> Duration {
        let wait = self.timeout(n);
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let off = jitter * f64::from(draw) / (f64::from(u32::MAX) + 1.0);
        wait.mul_f64(1.0 - off)
    }
}

/// The local policy of an IKE SA (the initiator's to `connect`, the
/// responder's given to the endpoint).
#[derive(Clone, Debug)]
pub struct Policy {
    pub local_id: Identification,
    /// The identity the peer must prove; `None` accepts any holder of the PSK.
    pub remote_id: Option<Identification>,
    pub psk: Secret,
    /// IKE suites offered/accepted, preferred first (AES-GCM-16 key bits).
    pub ike_encr_bits: Vec<u16>,
    pub ike_prfs: Vec<Prf>,
    pub ike_groups: Vec<DhGroup>,
    /// ESP AES-GCM-16 key bits for CHILD SAs.
    pub esp_encr_bits: Vec<u16>,
    /// DH groups for PFS in CREATE_CHILD_SA (empty: no PFS).
    pub esp_groups: Vec<DhGroup>,
    /// Selectors for the CHILD SA, from this side's point of view.
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    /// Initiator: ask for an inner IPv4 address with a CP request.
    pub request_virtual_ip: bool,
    /// Initiator: ask for an inner IPv6 address too (or alone).
    pub request_virtual_ip6: bool,
    /// Responder: DNS servers returned in a CP reply (those of the
    /// families the client got an address of).
    pub dns: Vec<IpAddr>,
    /// Responder: the address pool (by name, see `IkeEndpoint::set_pool`)
    /// this template's clients lease from; `None` is the pool given to
    /// `accept`.
    pub pool: Option<PoolName>,
    pub retransmit: Retransmit,
}

/// The name of an address pool: the `[[peer]]` template that declares it.
pub type PoolName = std::sync::Arc<str>;

/// Responder: the policy for a peer by the identity it claims in IKE_AUTH
/// (its PSK, selectors...); `None` refuses it with AUTHENTICATION_FAILED.
pub type PeerPolicy = Box<dyn Fn(&Identification) -> Option<std::sync::Arc<Policy>> + Send>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_takes_off_at_most_its_fraction() {
        let r = Retransmit {
            initial: Duration::from_secs(2),
            jitter: 0.25,
            ..Retransmit::default()
        };
        assert_eq!(r.jittered_timeout(1, 0), Duration::from_secs(4));
        let least = r.jittered_timeout(1, u32::MAX);
        assert!(least >= Duration::from_secs(3) && least < Duration::from_millis(3001));
        let half = r.jittered_timeout(1, 1 << 31);
        assert_eq!(half, Duration::from_millis(3500));
    }

    #[test]
    fn a_jitter_out_of_range_is_clamped_and_nan_is_none() {
        let r = |jitter| Retransmit {
            jitter,
            ..Retransmit::default()
        };
        let full = Duration::from_millis(500);
        assert_eq!(r(f64::NAN).jittered_timeout(0, u32::MAX), full);
        assert_eq!(r(-1.0).jittered_timeout(0, u32::MAX), full);
        assert!(r(7.0).jittered_timeout(0, u32::MAX) < Duration::from_millis(1));
    }
}
