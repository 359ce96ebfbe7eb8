//! Receiving on an IKE SA: responses matched to the outstanding request,
//! requests checked against the expected message ID (RFC 7296 §2.2) and
//! dispatched by exchange type.

use std::net::SocketAddr;
use std::time::Instant;

use super::ike_sa::{IkeSa, RequestKind, State};
use super::io::Io;
use super::IkeSaEnd;
use crate::ike::crypto::CryptoError;
use crate::ike::wire::{ExchangeType, Message, Notify, NotifyType, ParseError, Payload};

impl IkeSa {
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
            ExchangeType::CREATE_CHILD_SA
                if self.state == State::Established && self.successor.is_none() =>
            {
                self.on_create_child_request(io, now, mid, &inner)
            }
            // Every request gets an answer, or the peer retransmits until it
            // gives up on the IKE SA (§2.1). Not now (§2.7: e.g. while the
            // SA is being deleted or replaced), or not at all.
            ExchangeType::CREATE_CHILD_SA => {
                let n = Notify::new(NotifyType::TEMPORARY_FAILURE, Vec::new());
                self.respond(io, h.exchange, mid, &[Payload::Notify(n)]);
            }
            _ => {
                let n = Notify::new(NotifyType::INVALID_SYNTAX, Vec::new());
                self.respond(io, h.exchange, mid, &[Payload::Notify(n)]);
            }
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
