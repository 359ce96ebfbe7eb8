//! Manually keyed tunnels (like `ip xfrm state` or ipsec-secgw's SA file):
//! both SAs and the routes of one tunnel, installed without IKE.

use std::net::SocketAddr;
use std::sync::Arc;

use zeroize::Zeroizing;

use super::table::{ForeignCell, InboundHandle, SaTables};
use super::{
    owner_of_spi, HardLimits, InboundSa, InboundSpec, IpPrefix, OutboundSa, OutboundSpec, TunnelId,
};
use crate::crypto::CryptoError;
use crate::packet::Encap;

/// Why a manual tunnel could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum ManualError {
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Table(#[from] ForeignCell),
}

/// Keys of one direction.
pub struct ManualSaKeys {
    pub spi: u32,
    /// 16 or 32 bytes.
    pub key: Zeroizing<Vec<u8>>,
    pub salt: [u8; 4],
    pub esn: bool,
}

/// One manually keyed tunnel.
pub struct ManualTunnel {
    pub tunnel: TunnelId,
    /// The peer's outer address.
    pub remote: SocketAddr,
    pub encap: Encap,
    /// Networks behind the peer: routed into the tunnel, and the only inner
    /// sources accepted from it.
    pub remote_ts: Vec<IpPrefix>,
    /// The SA the peer sends on (its SPI is ours to pick).
    pub inbound: ManualSaKeys,
    pub outbound: ManualSaKeys,
    pub replay_window: u32,
}

/// The SAs of a manual tunnel, built once: a tunnel taken down and brought
/// back up reuses them, so its sequence numbers and replay window go on
/// (new SA objects would restart at 1, and the peer would see replays).
pub struct ManualSas {
    pub inbound: InboundHandle,
    pub outbound: Arc<OutboundSa>,
}

fn inbound_spec(t: &ManualTunnel, owner: super::WorkerId) -> InboundSpec<'_> {
    InboundSpec {
        spi: t.inbound.spi,
        tunnel: t.tunnel,
        owner,
        key: &t.inbound.key,
        salt: t.inbound.salt,
        esn: t.inbound.esn,
        replay_window: t.replay_window,
        allowed_sources: t.remote_ts.clone(),
        limits: HardLimits::default(),
    }
}

fn outbound(t: &ManualTunnel, owner: super::WorkerId) -> Result<Arc<OutboundSa>, CryptoError> {
    OutboundSa::new(OutboundSpec {
        spi: t.outbound.spi,
        tunnel: t.tunnel,
        owner,
        key: &t.outbound.key,
        salt: t.outbound.salt,
        esn: t.outbound.esn,
        remote: t.remote,
        encap: t.encap,
        limits: HardLimits::default(),
    })
}

/// Builds `t`'s SAs on the heap, apart from any table: the peer's end
/// (pktgen's clients). The tunnel belongs to the worker its inbound SPI
/// steers to.
pub fn build(
    t: &ManualTunnel,
    workers: usize,
) -> Result<(Arc<InboundSa>, Arc<OutboundSa>), CryptoError> {
    let owner = owner_of_spi(t.inbound.spi, workers);
    Ok((InboundSa::new(inbound_spec(t, owner))?, outbound(t, owner)?))
}

/// Puts built SAs and `t`'s routes into `tables`.
pub fn install_built(
    tables: &mut SaTables,
    t: &ManualTunnel,
    sas: &ManualSas,
) -> Result<(), ForeignCell> {
    tables.install_inbound(sas.inbound.clone())?;
    tables.install_outbound(sas.outbound.clone());
    for p in &t.remote_ts {
        tables.routes.insert(*p, t.tunnel);
    }
    Ok(())
}

/// Builds `t`'s SAs for a data plane of `workers` workers, the inbound one
/// in `tables`' cell for its SPI when that is free, and installs them.
pub fn install(
    tables: &mut SaTables,
    t: &ManualTunnel,
    workers: usize,
) -> Result<ManualSas, ManualError> {
    let owner = owner_of_spi(t.inbound.spi, workers);
    let sas = ManualSas {
        inbound: tables.build_inbound(inbound_spec(t, owner))?,
        outbound: outbound(t, owner)?,
    };
    install_built(tables, t, &sas)?;
    Ok(sas)
}

/// Removes what [`install`] put in for `t`.
pub fn remove(tables: &mut SaTables, t: &ManualTunnel) {
    tables.remove_inbound(t.inbound.spi);
    tables.remove_outbound(t.tunnel);
    for p in &t.remote_ts {
        tables.routes.remove(*p, t.tunnel);
    }
}

impl ManualTunnel {
    /// The same tunnel seen from the peer: SAs swapped, remote set to
    /// `peer_remote`, the peer's remote selectors being `our_ts`. Handy for
    /// tests, the demo and pktgen, which run both ends.
    pub fn mirrored(&self, peer_remote: SocketAddr, our_ts: Vec<IpPrefix>) -> ManualTunnel {
        let copy = |k: &ManualSaKeys| ManualSaKeys {
            spi: k.spi,
            key: k.key.clone(),
            salt: k.salt,
            esn: k.esn,
        };
        ManualTunnel {
            tunnel: self.tunnel,
            remote: peer_remote,
            encap: self.encap,
            remote_ts: our_ts,
            inbound: copy(&self.outbound),
            outbound: copy(&self.inbound),
            replay_window: self.replay_window,
        }
    }
}
