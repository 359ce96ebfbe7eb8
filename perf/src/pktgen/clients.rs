//! The emulated clients: each one SA pair, an inner address and the local
//! socket address its ESP leaves from.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use dataplane::sa::{InboundSa, OutboundSa};

use super::PktgenError;

/// One emulated client.
pub struct Client {
    /// Dense index, carried in every stamp.
    pub id: u32,
    /// The source of its inner packets (the gateway checks it against the
    /// SA's selectors): IPv4, or IPv6 from a gen-config `--inner-ipv6` file.
    pub inner: IpAddr,
    /// Its outer address: the socket it sends from and the gateway sends to.
    pub local: SocketAddr,
    /// Where its ESP goes.
    pub gateway: SocketAddr,
    pub outbound: Arc<OutboundSa>,
    pub inbound: Arc<InboundSa>,
}

/// Client sides of the config's manual tunnels, in file order. `gateway`
/// overrides `gateway.outside[0]` as the address the clients send to.
pub fn from_config(
    cfg: &config::Config,
    gateway: Option<SocketAddr>,
) -> Result<Vec<Client>, PktgenError> {
    let gw = match gateway.or_else(|| cfg.gateway.outside.first().copied()) {
        Some(a) if !a.ip().is_unspecified() => a,
        _ => {
            return Err(PktgenError::Option(
                "the gateway listens on a wildcard address: say where to send with --gateway"
                    .into(),
            ))
        }
    };
    let mut out = Vec::with_capacity(cfg.manual_tunnels.len());
    for (i, t) in cfg.manual_tunnels.iter().enumerate() {
        let fail = |message: String| PktgenError::Client {
            name: t.name.clone(),
            message,
        };
        if t.encap != config::Encap::Udp {
            return Err(fail("pktgen sends ESP-in-UDP only".into()));
        }
        let Some(inner) = t.remote_ts.first().map(|n| n.network()) else {
            return Err(fail(
                "remote_ts is empty: the client needs an inner address".into(),
            ));
        };
        let id = u32::try_from(i).map_err(|_| fail("too many clients".into()))?;
        // The tunnel as the client sees it: the gateway's inbound is ours
        // to send on, and the other way round.
        let mirrored = t.mirrored(gw);
        let dp = controlplane::daemon::to_dataplane(&mirrored, id).map_err(fail)?;
        let (inbound, outbound) =
            dataplane::sa::manual::build(&dp, 1).map_err(|e| fail(e.to_string()))?;
        out.push(Client {
            id,
            inner,
            local: t.remote,
            gateway: gw,
            outbound,
            inbound,
        });
    }
    if out.is_empty() {
        return Err(PktgenError::Option(
            "the config has no [[manual_tunnel]]".into(),
        ));
    }
    Ok(out)
}

/// Clients grouped by the socket they use, in address order.
pub fn by_socket(clients: Vec<Client>) -> Vec<(SocketAddr, Vec<Client>)> {
    let mut m: BTreeMap<SocketAddr, Vec<Client>> = BTreeMap::new();
    for c in clients {
        m.entry(c.local).or_default().push(c);
    }
    m.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pktgen::gen_config::{inner_address, inner_address6, GenConfig, CLIENT_SPI_BASE};

    #[test]
    fn clients_mirror_the_gateway_config() {
        let text = GenConfig {
            clients: 6,
            sockets: 3,
            ..GenConfig::default()
        }
        .render()
        .unwrap();
        let cfg = config::parse(&text, "gen.toml").unwrap();
        let clients = from_config(&cfg, None).unwrap();
        assert_eq!(clients.len(), 6);
        let c = &clients[4];
        assert_eq!(c.inner, IpAddr::V4(inner_address(4)));
        assert_eq!(c.inbound.spi, CLIENT_SPI_BASE + 4);
        assert_eq!(c.outbound.spi, cfg.manual_tunnels[4].inbound.spi);
        assert_eq!(c.gateway, "127.0.0.1:4500".parse().unwrap());
        let groups = by_socket(clients);
        assert_eq!(groups.len(), 3);
        assert!(groups.iter().all(|(_, g)| g.len() == 2));
    }

    #[test]
    fn ipv6_clients_take_their_inner_addresses_from_the_file() {
        let g = GenConfig {
            clients: 3,
            inner_ipv6: true,
            ..GenConfig::default()
        };
        let cfg = config::parse(&g.render().unwrap(), "gen.toml").unwrap();
        let clients = from_config(&cfg, None).unwrap();
        assert_eq!(clients[2].inner, IpAddr::V6(inner_address6(2)));
        assert_eq!(clients[2].inner, g.inner(2));
    }

    #[test]
    fn a_wildcard_gateway_needs_an_address() {
        let text = GenConfig {
            clients: 1,
            gateway: "0.0.0.0:4500".parse().unwrap(),
            ..GenConfig::default()
        }
        .render()
        .unwrap();
        let cfg = config::parse(&text, "gen.toml").unwrap();
        assert!(from_config(&cfg, None).is_err());
        assert!(from_config(&cfg, Some("127.0.0.1:4500".parse().unwrap())).is_ok());
    }
}
