//! One IKE SA: its keys, message IDs, outstanding request and reply cache
//! (RFC 7296 §2.1-§2.3).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use super::io::Io;
use super::proposal::IkeSuite;
use super::{Event, IkeSaEnd, IkeSaId, Policy, Transmit};
use crate::ike::crypto::{CryptoError, DhPrivate, IkeSaKeys, SkCipher};
use crate::ike::wire::{
    ExchangeType, Flags, Header, Message, Notify, NotifyType, ParseError, Payload, NON_ESP_MARKER,
};

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
}

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
    pub dh: Option<DhPrivate>,
    pub ni: Vec<u8>,
    pub nr: Vec<u8>,
    /// The IKE_SA_INIT messages as sent, signed by AUTH (§2.15).
    pub init_req: Vec<u8>,
    pub init_resp: Vec<u8>,
    pub cookie: Option<Vec<u8>>,
    pub keys: Option<IkeSaKeys>,
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
    pub virtual_ip: Option<Ipv4Addr>,
    /// Initiator: DNS servers from the CP reply.
    pub dns: Vec<Ipv4Addr>,
    /// Responder: the peer lookup knew nothing of the claimed identity.
    pub unknown_peer: bool,
    /// The peer's authenticated identity.
    pub peer_id: Option<crate::ike::wire::Identification>,
    /// Our outstanding CREATE_CHILD_SA offer.
    pub child_offer: Option<super::child::ChildOffer>,
    pub ike_offer: Option<super::rekey_ike::IkeOffer>,
    /// Set once a successor took over the CHILD SAs.
    pub rekeyed: bool,
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
            ni: Vec::new(),
            nr: Vec::new(),
            init_req: Vec::new(),
            init_resp: Vec::new(),
            cookie: None,
            keys: None,
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
            peer_id: None,
            dns: Vec::new(),
            unknown_peer: false,
            child_offer: None,
            ike_offer: None,
            rekeyed: false,
            expires: None,
        }
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

    fn transmit(&self, io: &mut Io, datagram: Vec<u8>) {
        io.transmits.push_back(Transmit {
            local: self.local,
            remote: self.remote,
            payload: datagram,
        });
    }

    fn seal(&mut self, header: &Header, payloads: &[Payload]) -> Vec<u8> {
        let iv = self.iv;
        self.iv += 1;
        match &self.tx {
            Some(c) => c.seal(header, payloads, iv),
            None => {
                let mut m = Message {
                    header: header.clone(),
                    payloads: payloads.to_vec(),
                };
                m.emit()
            }
        }
    }

    /// Sends (or queues behind the outstanding one) an encrypted request.
    pub fn request(
        &mut self,
        io: &mut Io,
        now: Instant,
        ex: ExchangeType,
        payloads: Vec<Payload>,
        kind: RequestKind,
    ) {
        if self.pending.is_some() {
            self.queued.push((ex, payloads, kind));
            return;
        }
        let mid = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1);
        let h = self.header(ex, false, mid);
        let msg = self.seal(&h, &payloads);
        self.send_request_bytes(io, now, mid, kind, msg);
    }

    pub fn send_request_bytes(
        &mut self,
        io: &mut Io,
        now: Instant,
        mid: u32,
        kind: RequestKind,
        msg: Vec<u8>,
    ) {
        let datagram = self.datagram(&msg);
        self.transmit(io, datagram.clone());
        self.pending = Some(Pending {
            message_id: mid,
            kind,
            datagram,
            tries: 1,
            deadline: now + self.policy.retransmit.initial,
        });
    }

    /// Sends the next queued request once the outstanding one is answered.
    pub fn pump_queue(&mut self, io: &mut Io, now: Instant) {
        if self.pending.is_none() && !self.queued.is_empty() && self.state != State::Dead {
            let (ex, p, k) = self.queued.remove(0);
            self.request(io, now, ex, p, k);
        }
    }

    /// Answers request `mid` and caches the answer for retransmissions.
    pub fn respond(&mut self, io: &mut Io, ex: ExchangeType, mid: u32, payloads: &[Payload]) {
        let h = self.header(ex, true, mid);
        let msg = self.seal(&h, payloads);
        let datagram = self.datagram(&msg);
        self.transmit(io, datagram.clone());
        self.last_response = Some((mid, datagram));
    }

    /// Retransmits with exponential back-off; kills the SA after the last try.
    pub fn on_timeout(&mut self, io: &mut Io, now: Instant) {
        if let Some(exp) = self.expires {
            if now >= exp && self.state == State::HalfOpen {
                self.state = State::Dead;
                return;
            }
        }
        let max = self.policy.retransmit.max_tries;
        let initial = self.policy.retransmit.initial;
        let Some(p) = self.pending.as_mut() else {
            return;
        };
        if now < p.deadline {
            return;
        }
        if p.tries >= max {
            self.pending = None;
            self.end(io, IkeSaEnd::Timeout);
            return;
        }
        p.tries += 1;
        // Doubling, capped at 2^10 times the first timeout.
        p.deadline = now + initial.saturating_mul(1 << (p.tries - 1).min(10));
        let d = p.datagram.clone();
        self.transmit(io, d);
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        let p = self.pending.as_ref().map(|p| p.deadline);
        match (p, self.expires) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Ends the SA: reports its CHILD SAs and itself, returns resources.
    pub fn end(&mut self, io: &mut Io, reason: IkeSaEnd) {
        if self.state == State::Dead {
            return;
        }
        let id = self.id();
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
        }
        if let (Some(a), Some(pool)) = (self.virtual_ip.take(), io.pool.as_mut()) {
            if !self.initiator {
                pool.release(a);
            }
        }
        let reason = if self.rekeyed && reason == IkeSaEnd::Deleted {
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

    /// Handles a message for this SA (already routed by SPI).
    pub fn handle(
        &mut self,
        io: &mut Io,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        raw: &[u8],
        msg: Message,
    ) {
        let h = &msg.header;
        if h.flags.response() {
            let Some(p) = &self.pending else { return };
            if p.message_id != h.message_id {
                return;
            }
            if h.exchange == ExchangeType::IKE_SA_INIT {
                if p.kind == RequestKind::Init {
                    self.on_init_response(io, now, local, remote, raw, &msg);
                }
                return;
            }
            let Some(inner) = self.open(raw, &msg) else {
                return;
            };
            let Some(p) = self.pending.take() else { return };
            self.follow_peer(local, remote);
            match p.kind {
                RequestKind::Auth => self.on_auth_response(io, &inner),
                RequestKind::DeleteIke => self.end(io, IkeSaEnd::Deleted),
                RequestKind::DeleteChild(spi) => self.on_delete_child_response(io, spi),
                RequestKind::CreateChild => self.on_create_child_response(io, now, &inner),
                RequestKind::RekeyIke => self.on_rekey_ike_response(io, now, &inner),
                RequestKind::Liveness | RequestKind::Init => {}
            }
            self.pump_queue(io, now);
            return;
        }
        // A request from the peer (§2.2: one ID past the last is new, the
        // last one is a retransmission, anything else is dropped).
        let mid = h.message_id;
        if let Some((last, d)) = &self.last_response {
            if *last == mid {
                let d = d.clone();
                self.transmit(io, d);
                return;
            }
        }
        if mid != self.next_peer_request_id || h.exchange == ExchangeType::IKE_SA_INIT {
            return;
        }
        let inner = match self.rx.as_ref().map(|c| c.open(raw, &msg)) {
            Some(Ok(inner)) => inner,
            // §2.5: authentic, but with a critical payload we don't know.
            Some(Err(CryptoError::Inner(ParseError::UnsupportedCriticalPayload(t)))) => {
                self.next_peer_request_id = self.next_peer_request_id.wrapping_add(1);
                self.follow_peer(local, remote);
                let n = Notify::new(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, vec![t.0]);
                self.respond(io, h.exchange, mid, &[Payload::Notify(n)]);
                return;
            }
            // §2.21.2: failed integrity (or garbage inside): drop silently.
            _ => return,
        };
        self.next_peer_request_id = self.next_peer_request_id.wrapping_add(1);
        self.follow_peer(local, remote);
        match h.exchange {
            ExchangeType::IKE_AUTH if self.state == State::HalfOpen => {
                self.on_auth_request(io, mid, &inner)
            }
            ExchangeType::INFORMATIONAL
                if self.state == State::Established || self.state == State::Deleting =>
            {
                self.on_informational_request(io, mid, &inner)
            }
            ExchangeType::CREATE_CHILD_SA if self.state == State::Established => {
                self.on_create_child_request(io, mid, &inner)
            }
            _ => {}
        }
    }

    fn open(&self, raw: &[u8], msg: &Message) -> Option<Vec<Payload>> {
        // §2.21.2: messages that fail the integrity check are dropped silently.
        self.rx.as_ref()?.open(raw, msg).ok()
    }

    /// Answers go where authenticated messages come from: behind a NAT the
    /// peer's port changes, and the switch to 4500 moves both ends (§2.11, §2.23).
    fn follow_peer(&mut self, local: SocketAddr, remote: SocketAddr) {
        self.local = local;
        self.remote = remote;
    }
}
