//! `[ike]`: defaults for every peer, and the IKE daemon's own settings.

use std::time::Duration;

use serde::Deserialize;

use crate::duration;
use crate::schema::identity::Identity;
use crate::schema::proposal::{Algorithm, DhGroup, EspProposal, IkeProposal, Prf};

/// IKE defaults; each `[[peer]]` may override the proposals, lifetimes and local_id.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IkeDefaults {
    /// Our identity, unless a peer sets its own.
    pub local_id: Option<Identity>,
    /// IKE SA proposals, most preferred first.
    pub proposals: Vec<IkeProposal>,
    /// CHILD SA (ESP) proposals, most preferred first.
    pub esp_proposals: Vec<EspProposal>,
    /// IKE SA lifetime: rekeyed `rekey_margin` (minus up to `rekey_jitter`) before it ends.
    #[serde(deserialize_with = "duration::deserialize")]
    pub ike_lifetime: Duration,
    /// CHILD SA (epoch) lifetime, rekeyed the same way.
    #[serde(deserialize_with = "duration::deserialize")]
    pub child_lifetime: Duration,
    /// How long before the end of a lifetime the rekey starts, default 5m.
    #[serde(deserialize_with = "duration::deserialize")]
    pub rekey_margin: Duration,
    /// Random extra advance of the rekey, so that tunnels set up together do not rekey
    /// together, default 1m.
    #[serde(deserialize_with = "duration::deserialize")]
    pub rekey_jitter: Duration,
    /// Retransmission of requests (RFC 7296 §2.1).
    pub retransmit: Retransmit,
    /// Half-open IKE SAs above which IKE_SA_INIT requires a cookie (RFC 7296 §2.6), default 1000.
    pub cookie_threshold: u32,
    /// CHILD SAs one peer may have on an IKE SA, default 16: past it, new
    /// ones are refused (NO_ADDITIONAL_SAS, RFC 7296 3.10.1), and rekeys
    /// (which hold the old pair until it is deleted) past twice it.
    pub child_sa_limit: u32,
    /// NAT keepalive interval on ESP-in-UDP tunnels we started (RFC 3948 §2.3), default 20s;
    /// "0s" sends none.
    #[serde(deserialize_with = "duration::deserialize")]
    pub nat_keepalive: Duration,
    /// What a peer identity that authenticates anew does to its older IKE
    /// SAs when it sent no INITIAL_CONTACT (which always ends them), default "no".
    pub unique: Unique,
}

/// `[ike] unique`, as strongSwan's `unique` of the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unique {
    /// Several IKE SAs of one identity live side by side (devices sharing
    /// credentials); a client that comes back without INITIAL_CONTACT
    /// leaves its old IKE SA to time out.
    #[default]
    No,
    /// The older IKE SAs of the identity are deleted (INFORMATIONAL
    /// DELETE), their CHILD SAs and leased addresses with them: one
    /// session per identity.
    Replace,
}

impl Default for IkeDefaults {
    fn default() -> Self {
        use Algorithm::{Aes128Gcm16, Aes256Gcm16};
        let ike = |encryption, prf, dh| IkeProposal {
            encryption,
            prf,
            dh,
        };
        Self {
            local_id: None,
            proposals: vec![
                ike(Aes256Gcm16, Prf::HmacSha384, DhGroup::X25519),
                ike(Aes128Gcm16, Prf::HmacSha256, DhGroup::X25519),
                ike(Aes128Gcm16, Prf::HmacSha256, DhGroup::Ecp256),
            ],
            esp_proposals: vec![
                EspProposal {
                    encryption: Aes256Gcm16,
                    dh: None,
                },
                EspProposal {
                    encryption: Aes128Gcm16,
                    dh: None,
                },
            ],
            ike_lifetime: Duration::from_secs(4 * 3600),
            child_lifetime: Duration::from_secs(3600),
            rekey_margin: Duration::from_secs(300),
            rekey_jitter: Duration::from_secs(60),
            retransmit: Retransmit::default(),
            cookie_threshold: 1000,
            child_sa_limit: 16,
            nat_keepalive: Duration::from_secs(20),
            unique: Unique::No,
        }
    }
}

/// `[ike.retransmit]`: request `n` (from 0) is resent after `timeout * base^n`, at most
/// `max_timeout`, `tries` times; then the IKE SA is given up.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retransmit {
    /// First timeout, default 2s.
    #[serde(deserialize_with = "duration::deserialize")]
    pub timeout: Duration,
    /// Growth factor, 1.0..=4.0, default 1.8.
    pub base: f64,
    /// Retransmissions before giving up, default 5.
    pub tries: u32,
    /// Cap on one timeout, default 30s.
    #[serde(deserialize_with = "duration::deserialize")]
    pub max_timeout: Duration,
    /// Up to this fraction of each timeout is taken off at random,
    /// 0.0..=0.5, default 0.0 (as strongSwan's `retransmit_jitter`).
    pub jitter: f64,
}

impl Default for Retransmit {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
            base: 1.8,
            tries: 5,
            max_timeout: Duration::from_secs(30),
            jitter: 0.0,
        }
    }
}
