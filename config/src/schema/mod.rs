//! The TOML schema, one file per section.

pub mod control;
pub mod dataplane;
pub(crate) mod from_str;
pub mod gateway;
pub mod identity;
pub mod ike;
pub mod manual_tunnel;
pub mod outside_port;
pub mod peer;
pub mod proposal;

use serde::Deserialize;

use control::{ControlSocket, Metrics};
use dataplane::Dataplane;
use gateway::Gateway;
use ike::IkeDefaults;
use manual_tunnel::ManualTunnel;
use peer::{Peer, PeerToml};

/// A loaded and validated configuration. `Default` is the config of an empty file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub gateway: Gateway,
    pub dataplane: Dataplane,
    pub manual_tunnels: Vec<ManualTunnel>,
    pub ike: IkeDefaults,
    pub peers: Vec<Peer>,
    pub control: ControlSocket,
    pub metrics: Option<Metrics>,
}

/// The document as written, before validation and the `[ike]` defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigToml {
    #[serde(default)]
    pub gateway: Gateway,
    #[serde(default)]
    pub dataplane: Dataplane,
    #[serde(default, rename = "manual_tunnel")]
    pub manual_tunnels: Vec<ManualTunnel>,
    #[serde(default)]
    pub ike: IkeDefaults,
    #[serde(default, rename = "peer")]
    pub peers: Vec<PeerToml>,
    #[serde(default)]
    pub control: ControlSocket,
    pub metrics: Option<Metrics>,
}

impl Config {
    /// One line for `espritd --check-config`: what the file sets up.
    pub fn summary(&self) -> String {
        let responders = self
            .peers
            .iter()
            .filter(|p| p.role == peer::Role::Responder)
            .count();
        format!(
            "{} worker(s), {} outside address(es), {} manual tunnel(s), {} initiator peer(s), {} responder template(s), control socket {}",
            self.dataplane.workers,
            self.gateway.outside.len(),
            self.manual_tunnels.len(),
            self.peers.len() - responders,
            responders,
            self.control.path.display(),
        )
    }
}
