//! `[dataplane.outside]` and `[dataplane.dpdk]`: the interface a
//! kernel-bypass port (`af_packet`, `af_xdp`, `dpdk`) owns, and how DPDK
//! is started. Such a port answers ARP/ND and ICMP echo itself, so the
//! addressing the kernel would know lives here.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;
use serde::Deserialize;

/// The outside interface of a port that owns it whole.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutsidePort {
    /// `af_packet`/`af_xdp`: the kernel interface (`eth1`); `dpdk`: the
    /// ethdev name (`0000:03:00.0`, or a virtual device like `net_tap0`).
    pub interface: String,
    /// The gateway's IPv4 address on it with the on-link prefix
    /// (`192.0.2.1/24`); the same address as `gateway.outside`.
    pub address: Option<IpNet>,
    /// Next hop for peers outside the prefix.
    pub gateway: Option<IpAddr>,
    /// An IPv6 address with its prefix, answered by neighbour discovery.
    pub address6: Option<IpNet>,
    /// IPv6 next hop (often link-local).
    pub gateway6: Option<Ipv6Addr>,
    /// Largest IP packet the link carries, default 1500.
    pub mtu: u16,
    /// Static routes, most specific first-class; on-link peers win.
    pub routes: Vec<OutsideRoute>,
    /// `af_xdp` only: `skb` (generic, any driver; default) or `native`.
    pub xdp_mode: XdpMode,
}

impl Default for OutsidePort {
    fn default() -> Self {
        Self {
            interface: String::new(),
            address: None,
            gateway: None,
            address6: None,
            gateway6: None,
            mtu: 1500,
            routes: Vec::new(),
            xdp_mode: XdpMode::Skb,
        }
    }
}

/// `[[dataplane.outside.routes]]`: peers in `to` are reached via `via`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutsideRoute {
    pub to: IpNet,
    /// An on-link neighbour of the same family.
    pub via: IpAddr,
    /// `via`'s MAC (`02:00:5e:10:00:01`): a static neighbour, never asked.
    pub mac: Option<String>,
}

impl OutsideRoute {
    /// The six bytes of `mac`, if it is one.
    pub fn mac_bytes(&self) -> Option<[u8; 6]> {
        self.mac.as_deref().and_then(parse_mac)
    }
}

/// `aa:bb:cc:dd:ee:ff` (or with `-`) as bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for b in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// How the XDP program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XdpMode {
    /// Generic XDP: any driver, frames copied.
    #[default]
    Skb,
    /// In the driver (XDP_FLAGS_DRV_MODE).
    Native,
}

/// `[dataplane.dpdk]`: the EAL and its mbufs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dpdk {
    /// EAL arguments (`["-l", "0-3", "-a", "0000:03:00.0"]`); without
    /// hugepages or NICs: `["--no-huge", "--no-pci", "--no-shconf", "-m", "256"]`.
    pub eal_args: Vec<String>,
    /// Virtual devices to create (`net_tap0,iface=dtap0`), each a `--vdev`.
    pub vdevs: Vec<String>,
    /// Mbufs in the pool, default 8191 (2^n - 1 suits the ring under it).
    pub mbufs: u32,
    /// Per-core mbuf cache, default 256.
    pub mbuf_cache: u32,
}

impl Default for Dpdk {
    fn default() -> Self {
        Self {
            eal_args: Vec::new(),
            vdevs: Vec::new(),
            mbufs: 8191,
            mbuf_cache: 256,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_mac;

    #[test]
    fn macs_parse_with_colons_or_dashes_only_whole() {
        assert_eq!(
            parse_mac("02:00:5e:10:00:0A"),
            Some([2, 0, 0x5e, 0x10, 0, 0x0a])
        );
        assert_eq!(
            parse_mac("02-00-5e-10-00-01"),
            Some([2, 0, 0x5e, 0x10, 0, 1])
        );
        for bad in [
            "",
            "02:00:5e:10:00",
            "02:00:5e:10:00:01:02",
            "2:00:5e:10:00:01",
            "zz:00:5e:10:00:01",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }
}
