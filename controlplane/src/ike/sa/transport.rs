//! Sending on an IKE SA: SK protection, the outstanding request with its
//! retransmissions (RFC 7296 §2.1, §2.4) and the reply cache.

use std::time::Instant;

use rand::RngCore;

use super::ike_sa::{IkeSa, Pending, RequestKind, State};
use super::io::Io;
use super::{IkeSaEnd, Transmit};
use crate::ike::crypto::DhGroup;
use crate::ike::wire::{ExchangeType, Header, Message, Notify, NotifyType, Payload};

/// `now + d`, saturating instead of panicking on absurd configured timeouts.
fn later(now: Instant, d: std::time::Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

impl IkeSa {
    pub(super) fn transmit(&self, io: &mut Io, datagram: Vec<u8>) {
        io.transmits.push_back(Transmit {
            local: self.local,
            remote: self.remote,
            payload: datagram,
        });
    }

    pub(super) fn seal(&mut self, header: &Header, payloads: &[Payload]) -> Vec<u8> {
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
            deadline: later(
                now,
                self.policy
                    .retransmit
                    .jittered_timeout(0, io.rng.next_u32()),
            ),
        });
    }

    /// Sends the next queued request once the outstanding one is answered.
    pub fn pump_queue(&mut self, io: &mut Io, now: Instant) {
        if self.pending.is_none() && !self.queued.is_empty() && self.state != State::Dead {
            let (ex, p, k) = self.queued.remove(0);
            self.request(io, now, ex, p, k);
        }
    }

    /// Answers request `mid` with the error notify `t` alone (RFC 7296
    /// 3.10.1).
    pub fn refuse(&mut self, io: &mut Io, ex: ExchangeType, mid: u32, t: NotifyType) {
        self.respond(io, ex, mid, &[Payload::Notify(Notify::new(t, Vec::new()))]);
    }

    /// Answers request `mid` with INVALID_KE_PAYLOAD naming the DH group
    /// to use instead (§1.3).
    pub fn ask_for_group(&mut self, io: &mut Io, ex: ExchangeType, mid: u32, group: DhGroup) {
        let data = group.id().to_be_bytes().to_vec();
        let n = Notify::new(NotifyType::INVALID_KE_PAYLOAD, data);
        self.respond(io, ex, mid, &[Payload::Notify(n)]);
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
        if self.expires.is_some_and(|e| now >= e) {
            if self.state == State::HalfOpen {
                self.state = State::Dead;
                return;
            }
            self.expires = None;
        }
        let r = self.policy.retransmit;
        let Some(p) = self.pending.as_mut() else {
            return;
        };
        if now < p.deadline {
            return;
        }
        if p.tries >= r.max_tries {
            self.pending = None;
            self.end(io, IkeSaEnd::Timeout);
            return;
        }
        p.deadline = later(now, r.jittered_timeout(p.tries, io.rng.next_u32()));
        p.tries += 1;
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
}
