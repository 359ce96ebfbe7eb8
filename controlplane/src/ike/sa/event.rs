//! What the IKE machines hand back to the I/O driver.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::ike::crypto::EspKey;
use crate::ike::wire::TrafficSelector;

/// Identifies an IKE SA by the SPI this endpoint chose for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IkeSaId(pub u64);

/// A datagram to send. On port 4500 it already starts with the non-ESP marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub payload: Vec<u8>,
}

/// A CHILD SA pair ready for the data plane.
#[derive(Clone, Debug)]
pub struct ChildSa {
    pub ike_sa: IkeSaId,
    /// Chosen by this side (through the caller's allocator).
    pub inbound_spi: u32,
    pub outbound_spi: u32,
    pub inbound_key: EspKey,
    pub outbound_key: EspKey,
    pub esn: bool,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// ESP in UDP on port 4500 (RFC 3948), because a NAT was detected.
    pub udp_encap: bool,
    /// Inner address assigned by CP (the initiator's own, or the one the
    /// responder leased to the peer).
    pub virtual_ip: Option<Ipv4Addr>,
    /// The same for IPv6.
    pub virtual_ip6: Option<std::net::Ipv6Addr>,
    /// Initiator: DNS servers from the CP reply (INTERNAL_IP4_DNS and
    /// INTERNAL_IP6_DNS, in the order given).
    pub dns: Vec<IpAddr>,
    /// A rekey: the inbound SPI of the pair this one replaces (RFC 7296
    /// §2.8). Install the new pair first; the old one is deleted by the
    /// rekey's initiator with INFORMATIONAL DELETE.
    pub replaces: Option<u32>,
    /// This side started the exchange that made the pair (IKE_AUTH or
    /// CREATE_CHILD_SA): of a rekey, it deletes the old pair (§2.8).
    pub initiated: bool,
}

/// Why an IKE SA ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IkeSaEnd {
    /// Deleted by either side with INFORMATIONAL DELETE.
    Deleted,
    /// Replaced by a rekeyed IKE SA (which took over its CHILD SAs).
    Rekeyed,
    /// The same peer identity came back with INITIAL_CONTACT (RFC 7296
    /// §2.4): this SA is stale; removed without a DELETE.
    Replaced,
    /// No answer after the last retransmission.
    Timeout,
    /// The peer refused: NO_PROPOSAL_CHOSEN, AUTHENTICATION_FAILED, ...
    PeerError(crate::ike::wire::NotifyType),
    /// We refused the peer (bad AUTH, no acceptable proposal, ...).
    LocalError(&'static str),
}

#[derive(Clone, Debug)]
pub enum Event {
    IkeSaEstablished {
        id: IkeSaId,
        peer: SocketAddr,
    },
    ChildSaEstablished(Box<ChildSa>),
    /// The CHILD SA could not be created (the IKE SA remains).
    ChildSaFailed {
        id: IkeSaId,
        reason: crate::ike::wire::NotifyType,
    },
    ChildSaDeleted {
        id: IkeSaId,
        inbound_spi: u32,
        outbound_spi: u32,
    },
    IkeSaDeleted {
        id: IkeSaId,
        reason: IkeSaEnd,
    },
    /// The IKE SA was rekeyed (RFC 7296 §2.18): its CHILD SAs now belong to
    /// `new`; `old` follows with `IkeSaDeleted { reason: Rekeyed }`.
    IkeSaRekeyed {
        old: IkeSaId,
        new: IkeSaId,
    },
}
