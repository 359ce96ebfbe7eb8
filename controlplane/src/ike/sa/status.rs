//! A read-only view of the IKE SAs, for `espritctl` (no key material).

use std::net::{Ipv4Addr, SocketAddr};

use super::ike_sa::{IkeSa, State};
use super::{IkeSaId, IkeSuite};
use crate::ike::wire::Identification;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IkeSaState {
    Connecting,
    Established,
    Deleting,
}

#[derive(Clone, Debug)]
pub struct IkeSaStatus {
    pub id: IkeSaId,
    pub spi_i: u64,
    pub spi_r: u64,
    /// This end initiated the SA (or its last rekey).
    pub initiator: bool,
    pub state: IkeSaState,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub peer_id: Option<Identification>,
    pub suite: Option<IkeSuite>,
    pub nat_detected: bool,
    pub virtual_ip: Option<Ipv4Addr>,
    /// The IPv6 inner address: ours from the peer, or the peer's from our pool.
    pub virtual_ip6: Option<std::net::Ipv6Addr>,
    /// (inbound, outbound) SPIs of its CHILD SAs.
    pub children: Vec<(u32, u32)>,
}

impl IkeSa {
    pub(crate) fn status(&self) -> Option<IkeSaStatus> {
        let state = match self.state {
            State::InitSent | State::AuthSent | State::HalfOpen => IkeSaState::Connecting,
            State::Established => IkeSaState::Established,
            State::Deleting => IkeSaState::Deleting,
            State::Dead => return None,
        };
        Some(IkeSaStatus {
            id: self.id(),
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            initiator: self.initiator,
            state,
            local: self.local,
            peer: self.remote,
            peer_id: self.peer_id.clone(),
            suite: self.suite,
            nat_detected: self.nat_detected,
            virtual_ip: self.virtual_ip.or(self.leased_ip),
            virtual_ip6: self.virtual_ip6.or(self.leased_ip6),
            children: self
                .children
                .iter()
                .map(|c| (c.inbound_spi, c.outbound_spi))
                .collect(),
        })
    }
}
