//! `esprit-pktgen gen-config`: one espritd config holding N manually keyed
//! tunnels and a reflecting inside. pktgen reads the same file as its
//! client list (each tunnel mirrored), so the gateway and the clients can
//! never disagree on a key, an SPI or an address.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use rand::RngCore;

use super::PktgenError;

/// Gateway inbound SPIs are `GATEWAY_SPI_BASE + i`: generation 1, slot `i`
/// in the gateway's SPI layout (`generation << 24 | slot`), apart from
/// the SPIs it picks for IKE.
pub const GATEWAY_SPI_BASE: u32 = 0x0100_0000;
/// The clients' inbound SPIs (the gateway's outbound ones).
pub const CLIENT_SPI_BASE: u32 = 0x0200_0000;
/// Client `i` sends from `INNER_BASE + 1 + i` (inside 10.128.0.0/9).
pub const INNER_BASE: Ipv4Addr = Ipv4Addr::new(10, 128, 0, 0);
/// The gateway's protected network, where pktgen addresses its packets.
pub const PROTECTED: &str = "10.1.0.0/16";
/// With `--inner-ipv6`, client `i` sends from `INNER6_BASE + 1 + i`
/// (unique local addresses, RFC 4193)...
pub const INNER6_BASE: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0x128, 0, 0, 0, 0);
/// ...to the protected network's IPv6 prefix.
pub const PROTECTED6: &str = "fd00:0:0:1::/64";
/// Most clients one file can describe (slots of the SPI layout, and the
/// inner range).
pub const MAX_CLIENTS: usize = (1 << 23) - 2;

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenConfig {
    pub clients: usize,
    /// The gateway's outside address (`gateway.outside`).
    pub gateway: SocketAddr,
    pub ike_port: u16,
    pub workers: usize,
    /// Where the clients' sockets live; client `i` uses port
    /// `client_port + i % sockets`.
    pub client_ip: IpAddr,
    pub client_port: u16,
    pub sockets: usize,
    /// 16 (aes128gcm16) or 32 (aes256gcm16).
    pub key_len: usize,
    /// The control socket; `None` keeps espritd's default.
    pub control: Option<PathBuf>,
    /// An IKE responder with an address pool instead of manual tunnels.
    pub ike: bool,
    /// Manual clients with IPv6 inner addresses (from [`INNER6_BASE`]),
    /// sending to the protected network's IPv6 prefix.
    pub inner_ipv6: bool,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            clients: 100,
            gateway: SocketAddr::from(([127, 0, 0, 1], 4500)),
            ike_port: 500,
            workers: 1,
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            client_port: 20000,
            sockets: 4,
            key_len: 16,
            control: None,
            ike: false,
            inner_ipv6: false,
        }
    }
}

/// Client `i`'s inner address.
pub fn inner_address(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(INNER_BASE) + 1 + i as u32)
}

/// Client `i`'s inner address with `--inner-ipv6`.
pub fn inner_address6(i: usize) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(INNER6_BASE) + 1 + i as u128)
}

impl GenConfig {
    fn check(&self) -> Result<(), PktgenError> {
        if self.clients == 0 || self.clients > MAX_CLIENTS {
            return Err(PktgenError::Option(format!(
                "--clients must be 1..={MAX_CLIENTS}"
            )));
        }
        if self.sockets == 0 || usize::from(self.client_port) + self.sockets > 65536 {
            return Err(PktgenError::Option(
                "--sockets must be at least 1 and the ports must fit below 65536".into(),
            ));
        }
        if self.client_port == 0 {
            return Err(PktgenError::Option(
                "--client-port must be fixed: the gateway sends to it".into(),
            ));
        }
        if !matches!(self.key_len, 16 | 32) {
            return Err(PktgenError::Option("--key-bits must be 128 or 256".into()));
        }
        Ok(())
    }

    /// The config text (keys fresh from the OS RNG).
    pub fn render(&self) -> Result<String, PktgenError> {
        self.check()?;
        let algorithm = if self.key_len == 32 {
            "aes256gcm16"
        } else {
            "aes128gcm16"
        };
        let mut t = String::with_capacity(self.clients * 460 + 1024);
        let _ = write!(
            t,
            "# Written by esprit-pktgen gen-config: {n} manually keyed clients, a reflecting\n\
             # inside. Run espritd with it, and `esprit-pktgen manual --config` with the same file.\n\
             [gateway]\noutside = [\"{gw}\"]\nike_port = {ike}\n\n\
             # The lab's links carry 1600-byte packets: IMIX's 1500-byte inner packets\n\
             # fit once sealed, instead of being fragmented before sealing.\n\
             [dataplane]\nworkers = {w}\nouter_mtu = 1600\n{pools}\n[dataplane.inside]\nkind = \"reflect\"\n",
            n = self.clients,
            pools = self.route_pools(),
            gw = self.gateway,
            ike = self.ike_port,
            w = self.workers.max(1),
        );
        if let Some(p) = &self.control {
            let _ = write!(t, "\n[control]\npath = \"{}\"\n", p.display());
        }
        let mut rng = rand::rng();
        let mut key = vec![0u8; self.key_len];
        let mut salt = [0u8; 4];
        let mut hexed = |rng: &mut rand::rngs::ThreadRng| {
            rng.fill_bytes(&mut key);
            rng.fill_bytes(&mut salt);
            (hex::encode(&key), hex::encode(salt))
        };
        if self.ike {
            self.ike_section(&mut t, algorithm);
            return Ok(t);
        }
        let protected = if self.inner_ipv6 {
            PROTECTED6
        } else {
            PROTECTED
        };
        for i in 0..self.clients {
            let port = usize::from(self.client_port) + i % self.sockets;
            let remote = SocketAddr::new(self.client_ip, port as u16);
            let (ik, is) = hexed(&mut rng);
            let (ok, os) = hexed(&mut rng);
            let _ = write!(
                t,
                "\n[[manual_tunnel]]\nname = \"c{i}\"\nremote = \"{remote}\"\n\
                 local_ts = [\"{protected}\"]\nremote_ts = [\"{inner}\"]\n\
                 [manual_tunnel.inbound]\nspi = {ispi:#010x}\nalgorithm = \"{algorithm}\"\n\
                 key = \"{ik}\"\nsalt = \"{is}\"\n\
                 [manual_tunnel.outbound]\nspi = {ospi:#010x}\nalgorithm = \"{algorithm}\"\n\
                 key = \"{ok}\"\nsalt = \"{os}\"\n",
                // A host prefix: /32 or /128.
                inner = ipnet::IpNet::from(self.inner(i)),
                ispi = GATEWAY_SPI_BASE + i as u32,
                ospi = CLIENT_SPI_BASE + i as u32,
            );
        }
        Ok(t)
    }
}

impl GenConfig {
    /// Client `i`'s inner address in this config.
    pub fn inner(&self, i: usize) -> IpAddr {
        if self.inner_ipv6 {
            inner_address6(i).into()
        } else {
            inner_address(i).into()
        }
    }

    /// The clients' inner addresses as one route pool: the gateway then
    /// finds each client's /32 by index, as it does for a responder's
    /// leases (IKE mode, whose pool is indexed anyway, lists none).
    fn route_pools(&self) -> String {
        if self.ike {
            return String::new();
        }
        let prefix = if self.inner_ipv6 {
            client_prefix6(self.clients).to_string()
        } else {
            client_prefix(self.clients).to_string()
        };
        format!(
            "# The clients' inner addresses: their routes found by index, not hashed.\n\
             route_pools = [\"{prefix}\"]\n"
        )
    }

    /// `[ike]` and one responder `[[peer]]` for every client: any
    /// identity with the PSK, inner addresses from a pool in 10.128.0.0/9
    /// (fd00:0:0:128::/105 with IPv6 inside: as many addresses), esprit's
    /// ping on every epoch.
    fn ike_section(&self, t: &mut String, algorithm: &str) {
        let (protected, pool) = if self.inner_ipv6 {
            (PROTECTED6, format!("{INNER6_BASE}/105"))
        } else {
            (PROTECTED, format!("{INNER_BASE}/9"))
        };
        let mut psk = [0u8; 24];
        rand::rng().fill_bytes(&mut psk);
        let _ = write!(
            t,
            "\n[ike]\nlocal_id = \"{IKE_GATEWAY_ID}\"\n\
             proposals = [\"{algorithm}-prfsha256-x25519\"]\nesp_proposals = [\"{algorithm}\"]\n\
             cookie_threshold = {cookie}\n\n\
             [[peer]]\nname = \"pktgen\"\nrole = \"responder\"\nremote_id = \"any\"\n\
             psk = \"{psk}\"\nlocal_ts = [\"{protected}\"]\npool = \"{pool}\"\n\
             liveness = \"esp-ping\"\n",
            // pktgen keeps at most a few thousand handshakes in flight:
            // no cookies (RFC 7296 2.6) below that.
            cookie = (self.clients * 2).clamp(1000, 1_000_000),
            psk = hex::encode(psk),
        );
    }
}

/// The host bits that number `clients` inner addresses after the base
/// (the base itself is no client's).
fn host_bits(clients: usize) -> u8 {
    (u64::BITS - (clients as u64).leading_zeros()) as u8
}

/// The smallest prefix at `INNER_BASE` holding the first `clients`
/// inner addresses.
pub fn client_prefix(clients: usize) -> ipnet::Ipv4Net {
    ipnet::Ipv4Net::new(INNER_BASE, 32 - host_bits(clients).min(32)).expect("a length of 0..=32")
}

/// The smallest prefix at `INNER6_BASE` holding the first `clients`
/// IPv6 inner addresses.
pub fn client_prefix6(clients: usize) -> ipnet::Ipv6Net {
    ipnet::Ipv6Net::new(INNER6_BASE, 128 - host_bits(clients)).expect("a length of 0..=128")
}

/// The gateway's IKE identity in generated configs.
pub const IKE_GATEWAY_ID: &str = "gw.pktgen.esprit";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_file_is_a_valid_espritd_config() {
        let g = GenConfig {
            clients: 5,
            sockets: 2,
            control: Some("/tmp/x.sock".into()),
            ..GenConfig::default()
        };
        let text = g.render().unwrap();
        let cfg = config::parse(&text, "gen.toml").unwrap();
        assert_eq!(cfg.manual_tunnels.len(), 5);
        assert_eq!(cfg.dataplane.inside.kind, config::InsideKind::Reflect);
        let t = &cfg.manual_tunnels[3];
        assert_eq!(t.remote, "127.0.0.1:20001".parse().unwrap());
        assert_eq!(t.inbound.spi, GATEWAY_SPI_BASE + 3);
        assert_eq!(t.outbound.spi, CLIENT_SPI_BASE + 3);
        assert_eq!(t.remote_ts[0].to_string(), "10.128.0.4/32");
        assert_ne!(t.inbound.key, t.outbound.key, "each direction its own key");
        assert_eq!(
            cfg.dataplane.route_pools,
            vec!["10.128.0.0/29".parse().unwrap()]
        );
    }

    #[test]
    fn the_ike_file_has_a_responder_with_a_pool_and_no_manual_tunnels() {
        let g = GenConfig {
            clients: 1000,
            ike: true,
            ..GenConfig::default()
        };
        let cfg = config::parse(&g.render().unwrap(), "gen.toml").unwrap();
        assert!(cfg.manual_tunnels.is_empty());
        let p = &cfg.peers[0];
        assert_eq!(p.role, config::schema::peer::Role::Responder);
        assert_eq!(p.pool[0].to_string(), "10.128.0.0/9");
        assert_eq!(p.liveness.mode, config::schema::peer::LivenessMode::EspPing);
        assert!(p.psk.len() >= 24);
        let g6 = GenConfig {
            inner_ipv6: true,
            ..g
        };
        let cfg = config::parse(&g6.render().unwrap(), "gen6.toml").unwrap();
        let p = &cfg.peers[0];
        assert_eq!(p.pool[0].to_string(), "fd00:0:0:128::/105");
        assert_eq!(p.local_ts[0].to_string(), PROTECTED6);
    }

    #[test]
    fn ipv6_inner_addresses_are_routed_from_their_own_pool() {
        let g = GenConfig {
            clients: 5,
            inner_ipv6: true,
            ..GenConfig::default()
        };
        let cfg = config::parse(&g.render().unwrap(), "gen.toml").unwrap();
        let t = &cfg.manual_tunnels[3];
        assert_eq!(t.remote_ts[0].to_string(), "fd00:0:0:128::4/128");
        assert_eq!(t.local_ts[0].to_string(), PROTECTED6);
        assert_eq!(
            cfg.dataplane.route_pools,
            vec!["fd00:0:0:128::/125".parse().unwrap()]
        );
    }

    #[test]
    fn bad_options_are_refused() {
        for g in [
            GenConfig {
                clients: 0,
                ..GenConfig::default()
            },
            GenConfig {
                key_len: 24,
                ..GenConfig::default()
            },
            GenConfig {
                client_port: 65535,
                sockets: 4,
                ..GenConfig::default()
            },
        ] {
            assert!(g.render().is_err(), "{g:?}");
        }
    }

    #[test]
    fn the_client_prefix_is_the_smallest_holding_every_client() {
        for clients in [1, 2, 3, 7, 8, 100, 1000, 100_000, MAX_CLIENTS] {
            let p = client_prefix(clients);
            let last = inner_address(clients - 1);
            assert!(p.contains(&last), "{clients}: {p} lacks {last}");
            let half = ipnet::Ipv4Net::new(INNER_BASE, p.prefix_len() + 1).unwrap();
            assert!(
                !half.contains(&last),
                "{clients}: {p} is larger than needed"
            );
        }
        assert_eq!(client_prefix(100_000).to_string(), "10.128.0.0/15");
    }
}
