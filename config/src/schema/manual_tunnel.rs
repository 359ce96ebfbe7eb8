//! `[[manual_tunnel]]`: ESP tunnels keyed by hand, without IKE.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::error::with_hint;
use crate::schema::from_str::parse_str;
use crate::schema::proposal::Algorithm;
use crate::secret::{self, Secret};

/// Outer encapsulation of ESP (RFC 3948 UDP, or raw IP protocol 50).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encap {
    #[default]
    Udp,
    Esp,
}

/// A tunnel with static SAs: one SA each way.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualTunnel {
    /// Unique name, used by the control socket and reload.
    pub name: String,
    /// The peer's outer address; the port is required with `encap = "udp"` and must be 0 or
    /// omitted with `encap = "esp"`.
    #[serde(deserialize_with = "deserialize_remote")]
    pub remote: SocketAddr,
    /// Default `udp`.
    #[serde(default)]
    pub encap: Encap,
    /// Protected networks on our side.
    pub local_ts: Vec<IpNet>,
    /// Networks behind the peer: routed into the tunnel, and the inner sources allowed out of it.
    pub remote_ts: Vec<IpNet>,
    /// The SA the peer uses towards us.
    pub inbound: ManualSa,
    /// The SA we use towards the peer (`replay_window` is not allowed there).
    #[serde(deserialize_with = "deserialize_outbound")]
    pub outbound: ManualSa,
}

impl ManualTunnel {
    /// The same tunnel seen from the peer (for load generators and two-gateway tests): SAs and
    /// selectors swapped, `remote` set to our address as the peer reaches it.
    pub fn mirrored(&self, remote: SocketAddr) -> ManualTunnel {
        let mut inbound = self.outbound.clone();
        inbound.replay_window = self.inbound.replay_window;
        let mut outbound = self.inbound.clone();
        outbound.replay_window = 0;
        ManualTunnel {
            name: self.name.clone(),
            remote,
            encap: self.encap,
            local_ts: self.remote_ts.clone(),
            remote_ts: self.local_ts.clone(),
            inbound,
            outbound,
        }
    }
}

/// One ESP SA with its keying material.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualSa {
    /// 256..=u32::MAX (RFC 4303 §2.1 reserves 1..=255); an integer (TOML `0x1001` ok) or a string.
    #[serde(deserialize_with = "deserialize_spi")]
    pub spi: u32,
    pub algorithm: Algorithm,
    /// Hex, `algorithm.key_len()` bytes.
    #[serde(deserialize_with = "secret::deserialize_hex")]
    pub key: Secret,
    /// Hex, 4 bytes: the nonce salt of RFC 4106 §4.
    #[serde(deserialize_with = "secret::deserialize_hex")]
    pub salt: Secret,
    /// 64-bit extended sequence numbers (RFC 4303 §2.2.1), default true.
    #[serde(default = "yes")]
    pub esn: bool,
    /// Anti-replay window in packets, default 1024, 0 disables, at most 4096; 0 on outbound SAs.
    #[serde(default = "default_replay_window")]
    pub replay_window: u32,
}

impl ManualSa {
    /// The 4-byte salt; `None` only for a config that was not validated.
    pub fn salt_bytes(&self) -> Option<[u8; 4]> {
        self.salt.as_bytes().try_into().ok()
    }
}

/// The outbound SA as written: like [`ManualSa`] without a replay window.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutboundSa {
    #[serde(deserialize_with = "deserialize_spi")]
    spi: u32,
    algorithm: Algorithm,
    #[serde(deserialize_with = "secret::deserialize_hex")]
    key: Secret,
    #[serde(deserialize_with = "secret::deserialize_hex")]
    salt: Secret,
    #[serde(default = "yes")]
    esn: bool,
}

fn deserialize_outbound<'de, D: Deserializer<'de>>(d: D) -> Result<ManualSa, D::Error> {
    let sa = OutboundSa::deserialize(d)?;
    Ok(ManualSa {
        spi: sa.spi,
        algorithm: sa.algorithm,
        key: sa.key,
        salt: sa.salt,
        esn: sa.esn,
        replay_window: 0,
    })
}

fn yes() -> bool {
    true
}

fn default_replay_window() -> u32 {
    1024
}

struct SpiVisitor;

impl Visitor<'_> for SpiVisitor {
    type Value = u32;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an SPI: an integer or a \"0x...\" string")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
        u32::try_from(v).map_err(|_| {
            E::custom(with_hint(
                format!("SPI {v} does not fit in 32 bits"),
                SPI_HINT,
            ))
        })
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u32, E> {
        let parsed = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
            Some(hex) => u32::from_str_radix(hex, 16),
            None => v.parse(),
        };
        parsed.map_err(|_| E::custom(with_hint(format!("`{v}` is not an SPI"), SPI_HINT)))
    }
}

const SPI_HINT: &str = "write an integer 256..=4294967295, like 0x1001 or \"0x00001001\"";

fn deserialize_spi<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    d.deserialize_any(SpiVisitor)
}

/// `"192.0.2.2:4500"`, `"[2001:db8::2]:4500"` or a bare address (port 0, for raw ESP).
fn deserialize_remote<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    parse_str(d, "an address", |text| {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(addr);
        }
        text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 0)).map_err(|_| {
            with_hint(
                format!("`{text}` is not an address"),
                "write \"192.0.2.2:4500\", \"[2001:db8::2]:4500\", or an address alone with encap = \"esp\"",
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_swaps_directions_and_selectors() {
        let text = "[[manual_tunnel]]\nname = \"a\"\nremote = \"192.0.2.2:4500\"\nlocal_ts = [\"10.1.0.0/24\"]\nremote_ts = [\"10.2.0.0/24\"]\n\
            inbound = { spi = 0x1001, algorithm = \"aes128gcm16\", key = \"000102030405060708090a0b0c0d0e0f\", salt = \"10111213\", replay_window = 64 }\n\
            outbound = { spi = 0x2001, algorithm = \"aes128gcm16\", key = \"202122232425262728292a2b2c2d2e2f\", salt = \"30313233\" }\n";
        let config = crate::parse(text, "m.toml").unwrap_or_else(|e| panic!("{e}"));
        let ours = &config.manual_tunnels[0];
        let theirs = ours.mirrored(SocketAddr::from(([192, 0, 2, 1], 4500)));
        assert_eq!((theirs.inbound.spi, theirs.outbound.spi), (0x2001, 0x1001));
        assert_eq!(theirs.inbound.key, ours.outbound.key);
        assert_eq!(
            (theirs.inbound.replay_window, theirs.outbound.replay_window),
            (64, 0)
        );
        assert_eq!(theirs.local_ts, ours.remote_ts);
        assert_eq!(theirs.remote.to_string(), "192.0.2.1:4500");
        assert_eq!(theirs.mirrored(ours.remote), *ours);
    }
}
