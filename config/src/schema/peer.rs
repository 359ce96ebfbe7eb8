//! `[[peer]]`: IKE peers we initiate to, and responder templates that clients match.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use crate::duration;
use crate::schema::from_str::parse_str;
use crate::schema::identity::{Identity, IdentityPattern};
use crate::schema::proposal::{EspProposal, IkeProposal};
use crate::secret::{self, Secret};

/// Which side starts the IKE exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// We connect to `remote` (a branch router or client).
    Initiator,
    /// A template: any client whose identity matches `remote_id` gets a tunnel.
    Responder,
}

/// How a tunnel proves it is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LivenessMode {
    /// esprit's ping/pong inside the ESP SA, with epochs (proves the ESP path through NAT).
    #[default]
    EspPing,
    /// Standard IKEv2 liveness (empty INFORMATIONAL, RFC 7296 §2.4), for peers without the ping.
    Ike,
    /// No liveness checks.
    Off,
}

/// The epoch and ping machine's settings for one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Liveness {
    pub mode: LivenessMode,
    /// Wait this long for a pong (or an IKE liveness reply) before retrying.
    pub ping_timeout: Duration,
    /// Re-pings before the tunnel is rekeyed.
    pub ping_retries: u32,
    /// Ping when nothing was received on the tunnel for this long.
    pub idle_ping_after: Duration,
    /// Failed rekeys before a new IKE session is started from scratch.
    pub rekey_attempts: u32,
    /// Initiators only: ignore the responder's CREATE_CHILD_SA rekey requests.
    pub ignore_peer_rekey: bool,
    /// How long the old inbound SA stays after the switch to a new epoch.
    pub grace_period: Duration,
}

/// A peer after the load: `[ike]` defaults applied, PSK read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub role: Role,
    pub local_id: Identity,
    pub remote_id: IdentityPattern,
    pub psk: Secret,
    /// Where the PSK was read from, when it came from a file.
    pub psk_file: Option<PathBuf>,
    /// Initiators: the peer's address.
    pub remote: Option<SocketAddr>,
    pub local_ts: Vec<IpNet>,
    /// Networks behind the peer; for a responder with a pool, the pool when not set.
    pub remote_ts: Vec<IpNet>,
    /// Responders: inner addresses handed out by configuration payload (RFC 7296 §3.15).
    pub pool: Vec<IpNet>,
    /// Responders: DNS servers handed out with the inner address.
    pub dns: Vec<IpAddr>,
    /// Initiators: ask the responder for an inner IPv4 address.
    pub virtual_ip: bool,
    /// Initiators: ask the responder for an inner IPv6 address as well
    /// (or alone, without `virtual_ip`).
    pub virtual_ip6: bool,
    pub proposals: Vec<IkeProposal>,
    pub esp_proposals: Vec<EspProposal>,
    pub ike_lifetime: Duration,
    pub child_lifetime: Duration,
    pub liveness: Liveness,
}

/// `[[peer]]` as written, before the `[ike]` defaults are applied.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PeerToml {
    pub name: String,
    pub role: Role,
    pub local_id: Option<Identity>,
    pub remote_id: IdentityPattern,
    #[serde(default, deserialize_with = "secret::deserialize_psk")]
    pub psk: Option<Secret>,
    pub psk_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "deserialize_remote")]
    pub remote: Option<SocketAddr>,
    #[serde(default)]
    pub local_ts: Vec<IpNet>,
    #[serde(default)]
    pub remote_ts: Vec<IpNet>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub pool: Vec<IpNet>,
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    #[serde(default)]
    pub virtual_ip: bool,
    #[serde(default)]
    pub virtual_ip6: bool,
    pub proposals: Option<Vec<IkeProposal>>,
    pub esp_proposals: Option<Vec<EspProposal>>,
    #[serde(default, deserialize_with = "duration::deserialize_option")]
    pub ike_lifetime: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_option")]
    pub child_lifetime: Option<Duration>,
    #[serde(default)]
    pub liveness: LivenessMode,
    #[serde(
        default = "default_ping_timeout",
        deserialize_with = "duration::deserialize"
    )]
    pub ping_timeout: Duration,
    #[serde(default = "default_ping_retries")]
    pub ping_retries: u32,
    #[serde(
        default = "default_idle_ping_after",
        deserialize_with = "duration::deserialize"
    )]
    pub idle_ping_after: Duration,
    #[serde(default = "default_rekey_attempts")]
    pub rekey_attempts: u32,
    #[serde(default)]
    pub ignore_peer_rekey: bool,
    #[serde(
        default = "default_grace_period",
        deserialize_with = "duration::deserialize"
    )]
    pub grace_period: Duration,
}

fn default_ping_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_ping_retries() -> u32 {
    3
}

fn default_idle_ping_after() -> Duration {
    Duration::from_secs(20)
}

fn default_rekey_attempts() -> u32 {
    3
}

fn default_grace_period() -> Duration {
    Duration::from_secs(10)
}

/// `"192.0.2.1:500"`, `"192.0.2.1"` (port 500), or a `[v6]:port`.
fn deserialize_remote<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    parse_str(d, "an address", |text| {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(Some(addr));
        }
        text.parse::<IpAddr>()
            .map(|ip| Some(SocketAddr::new(ip, 500)))
            .map_err(|_| {
                crate::error::with_hint(
                    format!("`{text}` is not an address"),
                    "write \"192.0.2.1\" (IKE port 500) or \"192.0.2.1:4500\"",
                )
            })
    })
}

/// A prefix or a list of prefixes; each element is read by its own deserializer, so an error
/// points at the element.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    struct OneOrMany;

    impl<'de> Visitor<'de> for OneOrMany {
        type Value = Vec<IpNet>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a prefix like \"10.3.0.0/16\" or a list of prefixes")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<IpNet>, E> {
            v.parse().map(|net| vec![net]).map_err(|_| {
                E::custom(crate::error::with_hint(
                    format!("`{v}` is not a prefix"),
                    "write \"10.3.0.0/16\" or [\"10.3.0.0/16\", \"fd00:3::/112\"]",
                ))
            })
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<IpNet>, A::Error> {
            let mut nets = Vec::new();
            while let Some(net) = seq.next_element()? {
                nets.push(net);
            }
            Ok(nets)
        }
    }

    d.deserialize_any(OneOrMany)
}
