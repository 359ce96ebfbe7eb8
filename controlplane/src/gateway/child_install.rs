//! Negotiated CHILD SAs into the data plane's tables, make before break:
//! a rekey's new inbound SA goes in next to the old one, the tunnel's
//! outbound SA switches at once, and the old inbound SA leaves only when the
//! IKE exchange deletes it (RFC 7296 1.3.3, 2.8).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use dataplane::packet::Encap;
use dataplane::sa::{
    owner_of_spi, HardLimits, InboundSpec, IpPrefix, OutboundSa, OutboundSpec, SaTables, TunnelId,
};

use crate::ike::sa::ChildSa;
use crate::ike::wire::TrafficSelector;

/// The smallest set of prefixes covering the address range of `ts`.
pub fn prefixes(ts: &TrafficSelector) -> Vec<IpPrefix> {
    fn cover(mut lo: u128, hi: u128, bits: u32, v4: bool) -> Vec<IpPrefix> {
        let mut out = Vec::new();
        while lo <= hi {
            // Largest aligned block starting at lo that does not pass hi.
            let mut size = if lo == 0 {
                bits
            } else {
                lo.trailing_zeros().min(bits)
            };
            while size > 0 && (size >= 128 || lo + ((1u128 << size) - 1) > hi) {
                size -= 1;
            }
            let addr = if v4 {
                IpAddr::from((lo as u32).to_be_bytes())
            } else {
                IpAddr::from(lo.to_be_bytes())
            };
            if let Some(p) = IpPrefix::new(addr, (bits - size) as u8) {
                out.push(p);
            }
            let step = if size >= 128 {
                u128::MAX
            } else {
                1u128 << size
            };
            match lo.checked_add(step) {
                Some(n) => lo = n,
                None => break,
            }
        }
        out
    }
    match (ts.start_addr, ts.end_addr) {
        (IpAddr::V4(a), IpAddr::V4(b)) if a <= b => {
            cover(u32::from(a) as u128, u32::from(b) as u128, 32, true)
        }
        (IpAddr::V6(a), IpAddr::V6(b)) if a <= b => {
            if u128::from(a) == 0 && u128::from(b) == u128::MAX {
                return IpPrefix::new(IpAddr::V6(a), 0).into_iter().collect();
            }
            cover(u128::from(a), u128::from(b), 128, false)
        }
        _ => Vec::new(),
    }
}

/// A live tunnel's routes and inbound SAs. Boxed slices, not vectors: a
/// gateway books one per client and they change only at rekeys.
#[derive(Default)]
struct Booked {
    routes: Box<[IpPrefix]>,
    inbound: Box<[u32]>,
}

/// Which data-plane tunnel each negotiated CHILD SA lineage uses.
pub struct TunnelBook {
    next: TunnelId,
    free: Vec<TunnelId>,
    /// Current and rekeyed-away inbound SPIs -> tunnel.
    by_inbound: HashMap<u32, TunnelId>,
    /// Each live tunnel's routes and inbound SPIs (the pairs of
    /// `by_inbound` the other way round, so a removal never scans every
    /// tunnel's).
    tunnels: HashMap<TunnelId, Booked>,
    /// Use ESP-in-UDP even without a NAT (no raw ESP port configured).
    udp_only: bool,
}

impl TunnelBook {
    /// Tunnel ids from `first` up (below are the manual tunnels).
    pub fn new(first: TunnelId, udp_only: bool) -> TunnelBook {
        TunnelBook {
            next: first,
            free: Vec::new(),
            by_inbound: HashMap::new(),
            tunnels: HashMap::new(),
            udp_only,
        }
    }

    pub fn tunnels(&self) -> usize {
        self.tunnels.len()
    }

    /// Installs a new or rekeyed CHILD SA pair; returns its tunnel.
    pub fn install(
        &mut self,
        t: &mut SaTables,
        c: &ChildSa,
        workers: usize,
    ) -> Result<TunnelId, String> {
        let (tunnel, outbound) = self.install_with(t, c, workers, false)?;
        t.install_outbound(outbound);
        Ok(tunnel)
    }

    /// Installs the inbound SA (and a new tunnel's routes) and returns the
    /// outbound SA without installing it: its epoch must prove its path
    /// first (docs/ping.md). A new tunnel is marked holding meanwhile.
    pub fn install_held(
        &mut self,
        t: &mut SaTables,
        c: &ChildSa,
        workers: usize,
    ) -> Result<(TunnelId, Arc<OutboundSa>), String> {
        self.install_with(t, c, workers, true)
    }

    /// Data of `tunnel` goes on `sa` from now on.
    pub fn switch_outbound(&self, t: &mut SaTables, sa: Arc<OutboundSa>) {
        let tunnel = sa.tunnel;
        t.install_outbound(sa);
        t.set_holding(tunnel, false);
    }

    /// Whether the tunnel still exists.
    pub fn is_live(&self, tunnel: TunnelId) -> bool {
        self.tunnels.contains_key(&tunnel)
    }

    /// The tunnel an inbound SPI belongs to.
    pub fn tunnel_of(&self, inbound_spi: u32) -> Option<TunnelId> {
        self.by_inbound.get(&inbound_spi).copied()
    }

    fn install_with(
        &mut self,
        t: &mut SaTables,
        c: &ChildSa,
        workers: usize,
        hold: bool,
    ) -> Result<(TunnelId, Arc<OutboundSa>), String> {
        let rekeyed = c
            .replaces
            .and_then(|old| self.by_inbound.get(&old).copied());
        let tunnel = match rekeyed {
            Some(t) => t,
            None => self.free.pop().unwrap_or_else(|| {
                self.next += 1;
                self.next - 1
            }),
        };
        let remote: Vec<IpPrefix> = c.remote_ts.iter().flat_map(prefixes).collect();
        let owner = owner_of_spi(c.inbound_spi, workers);
        let inbound = t
            .build_inbound(InboundSpec {
                spi: c.inbound_spi,
                tunnel,
                owner,
                key: c.inbound_key.key(),
                salt: c.inbound_key.salt(),
                esn: c.esn,
                replay_window: 1024,
                allowed_sources: remote.clone(),
                limits: HardLimits::default(),
            })
            .map_err(|e| e.to_string())?;
        let mut remote_addr = c.peer;
        let encap = if c.udp_encap {
            Encap::EspInUdp
        } else if self.udp_only {
            // No NAT, but no raw ESP socket either: ESP-in-UDP to the
            // peer's NAT-T port (RFC 3948 2.1), never to its IKE port.
            remote_addr.set_port(4500);
            Encap::EspInUdp
        } else {
            Encap::RawEsp
        };
        let outbound = OutboundSa::new(OutboundSpec {
            spi: c.outbound_spi,
            tunnel,
            owner,
            key: c.outbound_key.key(),
            salt: c.outbound_key.salt(),
            esn: c.esn,
            remote: remote_addr,
            encap,
            limits: HardLimits::default(),
        })
        .map_err(|e| e.to_string())?;
        // New inbound first: the peer may already send on the new SA. The
        // caller decides when the outbound SA takes the data.
        t.install_inbound(inbound).map_err(|e| e.to_string())?;
        self.by_inbound.insert(c.inbound_spi, tunnel);
        let booked = self.tunnels.entry(tunnel).or_default();
        booked.inbound = [&booked.inbound[..], &[c.inbound_spi]].concat().into();
        if rekeyed.is_none() {
            for p in &remote {
                t.routes.insert(*p, tunnel);
            }
            booked.routes = remote.into();
            if hold {
                t.set_holding(tunnel, true);
            }
        }
        Ok((tunnel, outbound))
    }

    /// Removes a deleted CHILD SA. If it was its tunnel's current pair, the
    /// tunnel ends (routes go); if a rekey replaced it, only the old inbound
    /// SA goes.
    pub fn remove(
        &mut self,
        t: &mut SaTables,
        inbound_spi: u32,
        outbound_spi: u32,
    ) -> Option<TunnelId> {
        let tunnel = self.by_inbound.remove(&inbound_spi)?;
        t.remove_inbound(inbound_spi);
        let last = self.tunnels.get_mut(&tunnel).is_none_or(|b| {
            b.inbound = b
                .inbound
                .iter()
                .copied()
                .filter(|s| *s != inbound_spi)
                .collect();
            b.inbound.is_empty()
        });
        let current = t.outbound_sa(tunnel).map(|sa| sa.spi);
        // The tunnel ends with its current pair, or with its last inbound
        // SA when no outbound SA was ever confirmed.
        if current == Some(outbound_spi) || (current.is_none() && last) {
            t.remove_outbound(tunnel);
            t.set_holding(tunnel, false);
            let booked = self.tunnels.remove(&tunnel).unwrap_or_default();
            for p in booked.routes {
                t.routes.remove(p, tunnel);
            }
            for spi in booked.inbound {
                self.by_inbound.remove(&spi);
            }
            self.free.push(tunnel);
        }
        Some(tunnel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(a: &str, b: &str) -> TrafficSelector {
        TrafficSelector::range(a.parse().unwrap(), b.parse().unwrap())
    }

    fn strs(v: Vec<IpPrefix>) -> Vec<String> {
        v.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn ranges_become_covering_prefixes() {
        assert_eq!(
            strs(prefixes(&ts("10.1.0.0", "10.1.0.255"))),
            ["10.1.0.0/24"]
        );
        assert_eq!(strs(prefixes(&ts("10.3.0.7", "10.3.0.7"))), ["10.3.0.7/32"]);
        assert_eq!(
            strs(prefixes(&ts("0.0.0.0", "255.255.255.255"))),
            ["0.0.0.0/0"]
        );
        assert_eq!(
            strs(prefixes(&ts("10.0.0.1", "10.0.0.6"))),
            ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]
        );
        assert_eq!(
            strs(prefixes(&ts(
                "::",
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
            ))),
            ["::/0"]
        );
        assert_eq!(strs(prefixes(&ts("fd00::", "fd00::ffff"))), ["fd00::/112"]);
        assert!(prefixes(&ts("10.0.0.9", "10.0.0.1")).is_empty());
        assert!(prefixes(&ts("10.0.0.1", "::1")).is_empty());
    }
}
