//! What each emulated IKE client offers: the mirror of the gateway's
//! responder `[[peer]]`, with an identity of its own and a request for an
//! inner address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use controlplane::ike::sa::{Policy, Retransmit};
use controlplane::ike::wire::{Identification, TrafficSelector};

use crate::pktgen::PktgenError;

/// Where the gateway listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// IKE_SA_INIT goes here (`gateway.ike_port`).
    pub ike: SocketAddr,
    /// ESP-in-UDP and IKE after NAT detection (`gateway.outside`).
    pub natt: SocketAddr,
}

impl Target {
    pub fn from_config(
        cfg: &config::Config,
        gateway: Option<SocketAddr>,
    ) -> Result<Target, PktgenError> {
        let natt = match gateway.or_else(|| cfg.gateway.outside.first().copied()) {
            Some(a) if !a.ip().is_unspecified() => a,
            _ => {
                return Err(PktgenError::Option(
                    "the gateway listens on a wildcard address: say where with --gateway".into(),
                ))
            }
        };
        Ok(Target {
            ike: SocketAddr::new(natt.ip(), cfg.gateway.ike_port),
            natt,
        })
    }

    /// Where the IKE endpoint believes the gateway's NAT-T port is (it
    /// moves to port 4500 of the IKE address, RFC 7296 2.23).
    pub fn endpoint_natt(&self) -> SocketAddr {
        SocketAddr::new(self.ike.ip(), 4500)
    }

    /// The real destination of a datagram the endpoint addressed to `to`.
    pub fn wire(&self, to: SocketAddr) -> SocketAddr {
        if to == self.endpoint_natt() {
            self.natt
        } else {
            to
        }
    }
}

/// The clients' policy template.
#[derive(Clone)]
pub struct ClientPolicy {
    template: Policy,
}

impl ClientPolicy {
    /// From the config's first responder peer.
    pub fn from_config(cfg: &config::Config) -> Result<ClientPolicy, PktgenError> {
        let peer = cfg
            .peers
            .iter()
            .find(|p| p.role == config::schema::peer::Role::Responder)
            .ok_or_else(|| {
                PktgenError::Option("the config has no role = \"responder\" [[peer]]".into())
            })?;
        let gw = controlplane::gateway::policy(peer, &cfg.ike.retransmit);
        let template = Policy {
            local_id: Identification::fqdn("c0.pktgen.esprit"),
            remote_id: Some(gw.local_id.clone()),
            psk: gw.psk.clone(),
            ike_encr_bits: gw.ike_encr_bits.clone(),
            ike_prfs: gw.ike_prfs.clone(),
            ike_groups: gw.ike_groups.clone(),
            esp_encr_bits: gw.esp_encr_bits.clone(),
            esp_groups: gw.esp_groups.clone(),
            local_ts: vec![TrafficSelector::range(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V4(Ipv4Addr::BROADCAST),
            )],
            remote_ts: gw.local_ts.clone(),
            request_virtual_ip: true,
            dns: Vec::new(),
            pool: None,
            retransmit: Retransmit {
                initial: Duration::from_secs(1),
                max_tries: 5,
            },
        };
        Ok(ClientPolicy { template })
    }

    /// Client `i`'s policy: its own identity.
    pub fn for_client(&self, i: usize) -> Policy {
        Policy {
            local_id: Identification::fqdn(&format!("c{i}.pktgen.esprit")),
            ..self.template.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pktgen::gen_config::GenConfig;

    #[test]
    fn clients_mirror_the_responder() {
        let text = GenConfig {
            ike: true,
            ike_port: 45001,
            gateway: "127.0.0.1:45000".parse().unwrap(),
            ..GenConfig::default()
        }
        .render()
        .unwrap();
        let cfg = config::parse(&text, "gen.toml").unwrap();
        let p = ClientPolicy::from_config(&cfg).unwrap().for_client(7);
        assert_eq!(p.local_id, Identification::fqdn("c7.pktgen.esprit"));
        assert_eq!(p.remote_id, Some(Identification::fqdn("gw.pktgen.esprit")));
        assert!(p.request_virtual_ip);
        assert_eq!(p.esp_encr_bits, vec![128]);
        let t = Target::from_config(&cfg, None).unwrap();
        assert_eq!(t.ike, "127.0.0.1:45001".parse().unwrap());
        assert_eq!(t.wire("127.0.0.1:4500".parse().unwrap()), t.natt);
        assert_eq!(t.wire(t.ike), t.ike);
    }
}
