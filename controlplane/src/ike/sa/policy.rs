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
}

impl Default for Retransmit {
    /// Doubling from 500 ms, five sends.
    fn default() -> Self {
        Retransmit {
            initial: Duration::from_millis(500),
            base: 2.0,
            max_timeout: Duration::from_secs(512),
            max_tries: 5,
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
