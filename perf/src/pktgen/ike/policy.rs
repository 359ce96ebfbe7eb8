//! What each emulated IKE client offers: the mirror of the gateway's
//! responder `[[peer]]`, with an identity of its own and a request for an
//! inner address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use controlplane::ike::sa::{Policy, Retransmit};
use controlplane::ike::wire::TrafficSelector;

use crate::pktgen::PktgenError;
use config::schema::identity::Identity;

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

/// The clients' identities when not told otherwise: `{i}` is the index.
pub const DEFAULT_CLIENT_ID: &str = "c{i}.pktgen.esprit";

/// Client `i`'s identity, as text, from a `--client-id` template.
fn client_id(template: &str, i: usize) -> String {
    template.replace("{i}", &i.to_string())
}

/// Which responder `[[peer]]` the clients connect to, as whom.
#[derive(Clone, Debug)]
pub struct ClientSpec<'a> {
    /// The peer's name; `None`: the config's first responder.
    pub peer: Option<&'a str>,
    /// The clients' identity, with `{i}` for the client's index.
    pub id_template: &'a str,
    /// How many clients (the last index is checked too).
    pub clients: usize,
}

/// The clients' policy template.
#[derive(Clone)]
pub struct ClientPolicy {
    template: Policy,
    id_template: String,
}

impl ClientPolicy {
    /// From the responder peer `spec` names (or the first), with clients
    /// whose identities that peer's `remote_id` accepts.
    pub fn from_config(
        cfg: &config::Config,
        spec: &ClientSpec,
    ) -> Result<ClientPolicy, PktgenError> {
        use config::schema::peer::Role;
        let responders = || cfg.peers.iter().filter(|p| p.role == Role::Responder);
        let peer = match spec.peer {
            None => responders().next().ok_or_else(|| {
                PktgenError::Option("the config has no role = \"responder\" [[peer]]".into())
            })?,
            Some(name) => responders().find(|p| p.name == name).ok_or_else(|| {
                let names: Vec<&str> = responders().map(|p| p.name.as_str()).collect();
                PktgenError::Option(format!(
                    "--peer {name}: no responder [[peer]] of that name (responders: {})",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ))
            })?,
        };
        if !spec.id_template.contains("{i}") {
            return Err(PktgenError::Option(format!(
                "--client-id {}: needs {{i}} (each client its own identity)",
                spec.id_template
            )));
        }
        // The first and the last client's identities must parse and be
        // accepted; the ones between are of the same form.
        let accepted = |i: usize| {
            let text = client_id(spec.id_template, i);
            let id: Identity = text.parse().map_err(|e| {
                PktgenError::Option(format!("--client-id: client {i} would be {text:?}: {e}"))
            })?;
            if !peer.remote_id.matches(&id) {
                return Err(PktgenError::Option(format!(
                    "--client-id: {text} does not match peer {}'s remote_id {}; give a --client-id it accepts",
                    peer.name, peer.remote_id
                )));
            }
            Ok(id)
        };
        let first = accepted(0)?;
        accepted(spec.clients.saturating_sub(1))?;
        let gw = controlplane::gateway::policy(peer, &cfg.ike.retransmit);
        // Each client leases one inner address: IPv6 if the responder's
        // pool has only IPv6 (gen-config --inner-ipv6), else IPv4.
        let v6 = !peer.pool.is_empty() && peer.pool.iter().all(|n| n.addr().is_ipv6());
        let template = Policy {
            // Client 0's; `for_client` gives each its own.
            local_id: controlplane::gateway::identification(&first),
            remote_id: Some(gw.local_id.clone()),
            psk: gw.psk.clone(),
            ike_encr_bits: gw.ike_encr_bits.clone(),
            ike_prfs: gw.ike_prfs.clone(),
            ike_groups: gw.ike_groups.clone(),
            esp_encr_bits: gw.esp_encr_bits.clone(),
            esp_groups: gw.esp_groups.clone(),
            local_ts: vec![if v6 {
                TrafficSelector::range(
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                    IpAddr::V6(Ipv6Addr::from(u128::MAX)),
                )
            } else {
                TrafficSelector::range(
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    IpAddr::V4(Ipv4Addr::BROADCAST),
                )
            }],
            remote_ts: gw.local_ts.clone(),
            request_virtual_ip: !v6,
            request_virtual_ip6: v6,
            dns: Vec::new(),
            pool: None,
            // Thousands of clients start within a second: jitter keeps a
            // batch the gateway dropped from coming back as one batch.
            retransmit: Retransmit {
                initial: Duration::from_secs(1),
                jitter: 0.2,
                ..Retransmit::default()
            },
        };
        Ok(ClientPolicy {
            template,
            id_template: spec.id_template.to_string(),
        })
    }

    /// Client `i`'s policy: its own identity.
    pub fn for_client(&self, i: usize) -> Policy {
        let text = client_id(&self.id_template, i);
        // Checked for the first and last client in `from_config`.
        let id = text.parse().unwrap_or(Identity::Fqdn(text));
        Policy {
            local_id: controlplane::gateway::identification(&id),
            ..self.template.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pktgen::gen_config::GenConfig;
    use controlplane::ike::wire::Identification;

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
        let spec = ClientSpec {
            peer: None,
            id_template: DEFAULT_CLIENT_ID,
            clients: 100,
        };
        let p = ClientPolicy::from_config(&cfg, &spec)
            .unwrap()
            .for_client(7);
        assert_eq!(p.local_id, Identification::fqdn("c7.pktgen.esprit"));
        assert_eq!(p.remote_id, Some(Identification::fqdn("gw.pktgen.esprit")));
        assert!(p.request_virtual_ip && !p.request_virtual_ip6);
        assert_eq!(p.esp_encr_bits, vec![128]);
        // An IPv6 pool: the clients ask for an IPv6 address instead.
        let text6 = GenConfig {
            ike: true,
            inner_ipv6: true,
            ..GenConfig::default()
        }
        .render()
        .unwrap();
        let cfg6 = config::parse(&text6, "gen6.toml").unwrap();
        let p6 = ClientPolicy::from_config(&cfg6, &spec)
            .unwrap()
            .for_client(7);
        assert!(p6.request_virtual_ip6 && !p6.request_virtual_ip);
        assert!(p6.local_ts.iter().all(|t| t.start_addr.is_ipv6()));
        let t = Target::from_config(&cfg, None).unwrap();
        assert_eq!(t.ike, "127.0.0.1:45001".parse().unwrap());
        assert_eq!(t.wire("127.0.0.1:4500".parse().unwrap()), t.natt);
        assert_eq!(t.wire(t.ike), t.ike);
    }

    /// Two responders: the named one is used, and clients must be
    /// identities its remote_id accepts.
    #[test]
    fn a_named_peer_and_client_identities_it_accepts() {
        let text = r#"
[gateway]
outside = ["127.0.0.1:45000"]
ike_port = 45001
[ike]
local_id = "gw.example.org"
[[peer]]
name = "first"
role = "responder"
remote_id = "any"
psk = "first-psk-0123456789abcdef"
local_ts = ["10.1.0.0/16"]
pool = "10.2.0.0/16"
[[peer]]
name = "staff"
role = "responder"
remote_id = "*@staff.example.org"
psk = "staff-psk-0123456789abcdef"
local_ts = ["10.5.0.0/16"]
pool = "10.6.0.0/16"
"#;
        let cfg = config::parse(text, "two.toml").unwrap();
        let spec = |peer, id_template| ClientSpec {
            peer,
            id_template,
            clients: 1000,
        };
        let p = ClientPolicy::from_config(&cfg, &spec(Some("staff"), "u{i}@staff.example.org"))
            .unwrap()
            .for_client(42);
        assert_eq!(
            p.local_id,
            controlplane::gateway::identification(&"u42@staff.example.org".parse().unwrap())
        );
        let staff = controlplane::gateway::policy(&cfg.peers[1], &cfg.ike.retransmit);
        assert_eq!(p.psk.as_bytes(), staff.psk.as_bytes());
        assert_eq!(p.remote_ts, staff.local_ts);

        let err = |peer, id| {
            ClientPolicy::from_config(&cfg, &spec(peer, id))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(
            err(Some("staff"), DEFAULT_CLIENT_ID).contains("does not match peer staff's remote_id")
        );
        assert!(err(Some("nobody"), DEFAULT_CLIENT_ID).contains("responders: first, staff"));
        assert!(err(None, "same.example.org").contains("needs {i}"));
        assert!(ClientPolicy::from_config(&cfg, &spec(None, DEFAULT_CLIENT_ID)).is_ok());
    }
}
