//! One IKE SA: its keys, message IDs, outstanding request and reply cache
//! (RFC 7296 §2.1-§2.3).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use super::io::Io;
use super::proposal::IkeSuite;
use super::{Event, IkeSaEnd, IkeSaId, Policy};
use crate::ike::crypto::{DhPrivate, Secret, SkCipher};
use crate::ike::wire::{ExchangeType, Flags, Header, Payload, NON_ESP_MARKER};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Initiator: IKE_SA_INIT sent.
    InitSent,
    /// Initiator: IKE_AUTH sent.
    AuthSent,
    /// Responder: IKE_SA_INIT answered, waiting for IKE_AUTH.
    HalfOpen,
    Established,
    /// Our DELETE of the IKE SA is outstanding.
    Deleting,
    /// To be removed by the endpoint.
    Dead,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RequestKind {
    Init,
    Auth,
    DeleteIke,
    DeleteChild(u32),
    /// CREATE_CHILD_SA; the offer's state is in `IkeSa::child_offer`.
    CreateChild,
    /// CREATE_CHILD_SA rekeying this IKE SA; state in `IkeSa::ike_offer`.
    RekeyIke,
    Liveness,
}

/// Our outstanding request (window size 1, §2.3).
pub(crate) struct Pending {
    pub message_id: u32,
    pub kind: RequestKind,
    pub datagram: Vec<u8>,
    pub tries: u32,
    pub deadline: Instant,
}

/// A CHILD SA pair as the IKE SA remembers it (for DELETE).
#[derive(Clone, Debug)]
pub(crate) struct ChildRef {
    pub inbound_spi: u32,
    pub outbound_spi: u32,
    pub local_ts: Vec<crate::ike::wire::TrafficSelector>,
    pub remote_ts: Vec<crate::ike::wire::TrafficSelector>,
    /// A rekey (either end's) replaced this pair; it only awaits deletion.
    pub replaced: bool,
}

/// The nonces, IKE_SA_INIT messages and SK_p keys: AUTH signs them
/// (§2.15) and the first CHILD SA's KEYMAT uses the nonces (§2.17); after
/// that nothing does, and a gateway holding 100,000 IKE SAs should not
/// keep them. Dropping the box zeroizes SK_pi and SK_pr.
#[derive(Default)]
pub(crate) struct Handshake {
    pub ni: Vec<u8>,
    pub nr: Vec<u8>,
    /// The IKE_SA_INIT messages as sent, signed by AUTH (§2.15).
    pub init_req: Vec<u8>,
    pub init_resp: Vec<u8>,
    /// Initiator: the responder's COOKIE, echoed in the retried request.
    pub cookie: Option<Vec<u8>>,
    pub sk_pi: Option<Secret>,
    pub sk_pr: Option<Secret>,
}

/// What an IKE SA past its handshake reads: nothing.
static NO_HANDSHAKE: Handshake = Handshake {
    ni: Vec::new(),
    nr: Vec::new(),
    init_req: Vec::new(),
    init_resp: Vec::new(),
    cookie: None,
    sk_pi: None,
    sk_pr: None,
};

pub(crate) struct IkeSa {
    pub initiator: bool,
    pub spi_i: u64,
    pub spi_r: u64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub nat_detected: bool,
    pub state: State,
    pub policy: Arc<Policy>,
    pub suite: Option<IkeSuite>,
    /// Boxed, as the other rarely set fields below: a gateway holds one
    /// IkeSa per client, and each inline byte counts 100,000 times.
    pub dh: Option<Box<DhPrivate>>,
    /// What only the handshake needs; dropped once the first CHILD SA is
    /// keyed. Read it through [`IkeSa::handshake`], write through `hs()`.
    pub hs: Option<Box<Handshake>>,
    /// SK_d, from which every later key of this IKE SA derives (§2.17,
    /// §2.18); the PRF is `suite`'s.
    pub sk_d: Option<Secret>,
    pub tx: Option<SkCipher>,
    pub rx: Option<SkCipher>,
    /// IV counter of our SK payloads: unique per key (RFC 5282 §3.1).
    pub iv: u64,
    pub next_request_id: u32,
    pub pending: Option<Pending>,
    pub queued: Vec<(ExchangeType, Vec<Payload>, RequestKind)>,
    pub next_peer_request_id: u32,
    /// Reply cache: our response to the peer's last request (§2.1).
    pub last_response: Option<(u32, Vec<u8>)>,
    pub children: Vec<ChildRef>,
    /// Inbound SPI offered in our IKE_AUTH request.
    pub offered_child_spi: Option<u32>,
    /// Our own inner address, from the peer's CP reply.
    pub virtual_ip: Option<Ipv4Addr>,
    /// Our own inner IPv6 address, from the peer's CP reply.
    pub virtual_ip6: Option<std::net::Ipv6Addr>,
    /// The peer's inner address, leased from our pool (roles can swap with
    /// an IKE rekey, so the two are kept apart).
    pub leased_ip: Option<Ipv4Addr>,
    /// Responder: the IPv6 address leased to the peer, if it asked.
    pub leased_ip6: Option<std::net::Ipv6Addr>,
    /// Initiator: DNS servers from the CP reply, of both families.
    pub dns: Vec<IpAddr>,
    /// Responder: the peer lookup knew nothing of the claimed identity.
    pub unknown_peer: bool,
    /// The peer's authenticated identity.
    pub peer_id: Option<crate::ike::wire::Identification>,
    /// Our outstanding CREATE_CHILD_SA offer.
    pub child_offer: Option<Box<super::child::ChildOffer>>,
    /// The peer rekeyed the pair we are rekeying too (§2.8.1).
    pub rekey_collision: Option<Box<super::collision::Collision>>,
    /// Our last completed CHILD rekey, for a peer's rekey that crossed it.
    pub last_rekey: Option<super::collision::CompletedRekey>,
    pub ike_offer: Option<Box<super::rekey_ike::IkeOffer>>,
    /// The SA that took over the CHILD SAs in a rekey, once there is one.
    pub successor: Option<IkeSaId>,
    /// Responder: this SA's entry in the endpoint's half-open index.
    pub half_open_key: Option<(SocketAddr, u64)>,
    /// Responder: forget a half-open SA after this.
    pub expires: Option<Instant>,
}

impl IkeSa {
    pub fn new(
        initiator: bool,
        local: SocketAddr,
        remote: SocketAddr,
        policy: Arc<Policy>,
    ) -> Self {
        IkeSa {
            initiator,
            spi_i: 0,
            spi_r: 0,
            local,
            remote,
            nat_detected: false,
            state: if initiator {
                State::InitSent
            } else {
                State::HalfOpen
            },
            policy,
            suite: None,
            dh: None,
            hs: None,
            sk_d: None,
            tx: None,
            rx: None,
            iv: 0,
            next_request_id: 0,
            pending: None,
            queued: Vec::new(),
            next_peer_request_id: 0,
            last_response: None,
            children: Vec::new(),
            offered_child_spi: None,
            virtual_ip: None,
            virtual_ip6: None,
            leased_ip: None,
            leased_ip6: None,
            peer_id: None,
            dns: Vec::new(),
            unknown_peer: false,
            child_offer: None,
            rekey_collision: None,
            last_rekey: None,
            ike_offer: None,
            successor: None,
            half_open_key: None,
            expires: None,
        }
    }

    /// The handshake's material, empty once it is forgotten.
    pub fn handshake(&self) -> &Handshake {
        self.hs.as_deref().unwrap_or(&NO_HANDSHAKE)
    }

    /// The handshake's material, to fill in during IKE_SA_INIT.
    pub fn hs(&mut self) -> &mut Handshake {
        self.hs.get_or_insert_with(Box::default)
    }

    pub fn id(&self) -> IkeSaId {
        IkeSaId(if self.initiator {
            self.spi_i
        } else {
            self.spi_r
        })
    }

    pub fn header(&self, exchange: ExchangeType, response: bool, message_id: u32) -> Header {
        let mut f = 0;
        if self.initiator {
            f |= Flags::INITIATOR;
        }
        if response {
            f |= Flags::RESPONSE;
        }
        Header::new(self.spi_i, self.spi_r, exchange, f, message_id)
    }

    /// Adds the non-ESP marker on port 4500 (RFC 3948 §2.2).
    pub fn datagram(&self, msg: &[u8]) -> Vec<u8> {
        if self.local.port() == 4500 {
            [&NON_ESP_MARKER[..], msg].concat()
        } else {
            msg.to_vec()
        }
    }

    /// Ends the SA: reports its CHILD SAs and itself, returns resources.
    pub fn end(&mut self, io: &mut Io, reason: IkeSaEnd) {
        if self.state == State::Dead {
            return;
        }
        let id = self.id();
        tracing::info!(spi = format_args!("{:016x}", id.0), peer = %self.remote, ?reason, "IKE SA ended");
        for c in self.children.drain(..) {
            io.spis.release(c.inbound_spi);
            io.events.push_back(Event::ChildSaDeleted {
                id,
                inbound_spi: c.inbound_spi,
                outbound_spi: c.outbound_spi,
            });
        }
        if let Some(s) = self.offered_child_spi.take() {
            io.spis.release(s);
        }
        if let Some(o) = self.child_offer.take() {
            io.spis.release(o.new_spi);
            // Our CREATE_CHILD_SA was still open when a rekeyed IKE SA went
            // (the peer's DELETE overtook its answer): the CHILD SAs live on
            // under the successor, so say the exchange failed there and the
            // caller can try again.
            if let Some(next) = self.successor {
                io.events.push_back(Event::ChildSaFailed {
                    id: next,
                    reason: crate::ike::wire::NotifyType::TEMPORARY_FAILURE,
                });
            }
        }
        if let (Some(a), Some(pool)) = (self.leased_ip.take(), io.pools.get_mut(&self.policy.pool))
        {
            pool.release(a);
        }
        if let (Some(a), Some(pool)) =
            (self.leased_ip6.take(), io.pools6.get_mut(&self.policy.pool))
        {
            pool.release(a);
        }
        let reason = if self.successor.is_some() && reason == IkeSaEnd::Deleted {
            IkeSaEnd::Rekeyed
        } else {
            reason
        };
        // A responder's SA that never authenticated is forgotten silently.
        if self.initiator || !matches!(self.state, State::HalfOpen) || reason != IkeSaEnd::Timeout {
            io.events.push_back(Event::IkeSaDeleted { id, reason });
        }
        self.state = State::Dead;
    }
}
