//! INFORMATIONAL exchanges (RFC 7296 §1.4): DELETE and liveness checks.

use std::time::Instant;

use super::ike_sa::{IkeSa, RequestKind, State};
use super::io::Io;
use super::{Event, IkeSaEnd};
use crate::ike::wire::{Delete, ExchangeType, Payload, ProtocolId};

impl IkeSa {
    pub(crate) fn delete_ike(&mut self, io: &mut Io, now: Instant) {
        if self.state != State::Established {
            return self.end(io, IkeSaEnd::Deleted);
        }
        self.state = State::Deleting;
        // The delete goes first; nothing queued behind it matters any more.
        self.queued.clear();
        self.request(
            io,
            now,
            ExchangeType::INFORMATIONAL,
            vec![Payload::Delete(Delete::ike())],
            RequestKind::DeleteIke,
        );
    }

    pub(crate) fn delete_child(&mut self, io: &mut Io, now: Instant, inbound_spi: u32) -> bool {
        if self.state != State::Established
            || !self.children.iter().any(|c| c.inbound_spi == inbound_spi)
        {
            return false;
        }
        let d = Delete::esp(&[inbound_spi]);
        self.request(
            io,
            now,
            ExchangeType::INFORMATIONAL,
            vec![Payload::Delete(d)],
            RequestKind::DeleteChild(inbound_spi),
        );
        true
    }

    pub(crate) fn liveness(&mut self, io: &mut Io, now: Instant) -> bool {
        if self.state != State::Established {
            return false;
        }
        self.request(
            io,
            now,
            ExchangeType::INFORMATIONAL,
            Vec::new(),
            RequestKind::Liveness,
        );
        true
    }

    pub(crate) fn on_delete_child_response(&mut self, io: &mut Io, inbound_spi: u32) {
        self.remove_child(io, |c| c.inbound_spi == inbound_spi);
    }

    fn remove_child(
        &mut self,
        io: &mut Io,
        f: impl Fn(&super::ike_sa::ChildRef) -> bool,
    ) -> Vec<u32> {
        let id = self.id();
        let mut removed = Vec::new();
        self.children.retain(|c| {
            if f(c) {
                io.spis.release(c.inbound_spi);
                io.events.push_back(Event::ChildSaDeleted {
                    id,
                    inbound_spi: c.inbound_spi,
                    outbound_spi: c.outbound_spi,
                });
                removed.push(c.inbound_spi);
                false
            } else {
                true
            }
        });
        removed
    }

    pub(crate) fn on_informational_request(&mut self, io: &mut Io, mid: u32, inner: &[Payload]) {
        let mut reply = Vec::new();
        let mut delete_ike = false;
        for p in inner {
            let Payload::Delete(d) = p else { continue };
            match d.protocol {
                ProtocolId::IKE => delete_ike = true,
                ProtocolId::ESP => {
                    // §1.4.1: the peer names its inbound SPIs (our outbound);
                    // we answer with our inbound SPIs of the same pairs.
                    let theirs: Vec<u32> = d.spis_u32().collect();
                    let ours = self.remove_child(io, |c| theirs.contains(&c.outbound_spi));
                    if !ours.is_empty() {
                        reply.push(Payload::Delete(Delete::esp(&ours)));
                    }
                }
                _ => {}
            }
        }
        if delete_ike {
            self.respond(io, ExchangeType::INFORMATIONAL, mid, &[]);
            self.end(io, IkeSaEnd::Deleted);
            return;
        }
        self.respond(io, ExchangeType::INFORMATIONAL, mid, &reply);
    }
}
