//! Manual tunnels from the config, as the data plane wants them.

use dataplane::packet::Encap;
use dataplane::sa::manual::{ManualSaKeys, ManualTunnel};
use dataplane::sa::{IpPrefix, TunnelId};
use zeroize::Zeroizing;

/// A config prefix as the data plane's.
pub(super) fn prefix(p: &ipnet::IpNet) -> Result<IpPrefix, String> {
    IpPrefix::new(p.network(), p.prefix_len()).ok_or_else(|| format!("bad prefix {p}"))
}

fn keys(sa: &config::schema::manual_tunnel::ManualSa) -> Result<ManualSaKeys, String> {
    Ok(ManualSaKeys {
        spi: sa.spi,
        key: Zeroizing::new(sa.key.as_bytes().to_vec()),
        salt: sa
            .salt_bytes()
            .ok_or_else(|| "salt must be 4 bytes".to_string())?,
        esn: sa.esn,
    })
}

/// Converts a validated config tunnel; `tunnel` is its data-plane id.
pub fn to_dataplane(
    t: &config::schema::manual_tunnel::ManualTunnel,
    tunnel: TunnelId,
) -> Result<ManualTunnel, String> {
    Ok(ManualTunnel {
        tunnel,
        remote: t.remote,
        encap: match t.encap {
            config::schema::manual_tunnel::Encap::Udp => Encap::EspInUdp,
            config::schema::manual_tunnel::Encap::Esp => Encap::RawEsp,
        },
        remote_ts: t.remote_ts.iter().map(prefix).collect::<Result<_, _>>()?,
        inbound: keys(&t.inbound)?,
        outbound: keys(&t.outbound)?,
        replay_window: t.inbound.replay_window,
    })
}
