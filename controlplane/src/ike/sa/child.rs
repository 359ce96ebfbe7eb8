//! CHILD SAs: the responder half shared by IKE_AUTH and CREATE_CHILD_SA,
//! and CHILD SA rekeying (RFC 7296 §1.3.1, §1.3.3, §2.8, optional PFS §2.17).

use std::time::Instant;

use super::event::ChildSa;
use super::ike_sa::{ChildRef, IkeSa, RequestKind, State};
use super::io::Io;
use super::narrow::{narrow, within};
use super::proposal::{choose_esp, esp_offer};
use super::Event;
use crate::ike::crypto::{ChildKeys, DhGroup, DhPrivate, Secret};
use crate::ike::wire::{
    ExchangeType, KeyExchange, Nonce, Notify, NotifyType, Payload, ProtocolId, SecurityAssociation,
    TrafficSelector, TrafficSelectors,
};

/// State of our outstanding CREATE_CHILD_SA request.
pub(crate) struct ChildOffer {
    pub new_spi: u32,
    pub ni: Vec<u8>,
    pub dh: Option<DhPrivate>,
    /// Our inbound SPI of the pair whose selectors the new one copies.
    pub like: u32,
    /// The new pair replaces `like` (REKEY_SA).
    pub rekey: bool,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
}

impl ChildOffer {
    /// Our inbound SPI of the pair being rekeyed.
    pub fn replaces(&self) -> Option<u32> {
        self.rekey.then_some(self.like)
    }
}

#[derive(Default)]
struct ChildPayloads<'a> {
    sa: Option<&'a SecurityAssociation>,
    nonce: Option<&'a Nonce>,
    ke: Option<&'a KeyExchange>,
    tsi: Option<&'a TrafficSelectors>,
    tsr: Option<&'a TrafficSelectors>,
    rekey: Option<&'a Notify>,
    error: Option<&'a Notify>,
}

fn pick(inner: &[Payload]) -> ChildPayloads<'_> {
    let mut c = ChildPayloads::default();
    for p in inner {
        match p {
            Payload::Sa(x) => c.sa = Some(x),
            Payload::Nonce(x) => c.nonce = Some(x),
            Payload::Ke(x) => c.ke = Some(x),
            Payload::TsI(x) => c.tsi = Some(x),
            Payload::TsR(x) => c.tsr = Some(x),
            Payload::Notify(n) if n.notify_type == NotifyType::REKEY_SA => c.rekey = Some(n),
            Payload::Notify(n) if n.notify_type.is_error() && c.error.is_none() => {
                c.error = Some(n)
            }
            _ => {}
        }
    }
    c
}

impl IkeSa {
    fn keymat(
        &self,
        g_ir: Option<&Secret>,
        ni: &[u8],
        nr: &[u8],
        key_len: usize,
    ) -> Option<ChildKeys> {
        let (suite, sk_d) = (self.suite?, self.sk_d.as_ref()?);
        ChildKeys::derive(suite.prf, sk_d, g_ir, ni, nr, key_len).ok()
    }

    /// Responder: choose, narrow, allocate, derive; returns [SA, KE?, TSi, TSr].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn accept_child(
        &mut self,
        io: &mut Io,
        sa: &SecurityAssociation,
        tsi: &TrafficSelectors,
        tsr: &TrafficSelectors,
        allowed_i: &[TrafficSelector],
        allowed_r: &[TrafficSelector],
        ke: Option<&KeyExchange>,
        ni: &[u8],
        nr: &[u8],
        replaces: Option<u32>,
    ) -> Result<Vec<Payload>, NotifyType> {
        let ts_i = narrow(&tsi.0, allowed_i);
        let ts_r = narrow(&tsr.0, allowed_r);
        if ts_i.is_empty() || ts_r.is_empty() {
            return Err(NotifyType::TS_UNACCEPTABLE);
        }
        let our_spi = io.spis.allocate().ok_or(NotifyType::NO_ADDITIONAL_SAS)?;
        let fail = |io: &mut Io, t| {
            io.spis.release(our_spi);
            Err(t)
        };
        let Some((suite, peer_spi, chosen)) =
            choose_esp(&self.policy, sa, our_spi, ke.map(|k| k.group))
        else {
            return fail(io, NotifyType::NO_PROPOSAL_CHOSEN);
        };
        let mut out = vec![Payload::Sa(SecurityAssociation {
            proposals: vec![chosen],
        })];
        let g_ir = match (suite.group, ke) {
            (Some(g), Some(ke)) => {
                let dh = DhPrivate::generate(g, io.rng.as_mut());
                let Ok(s) = dh.shared_secret(&ke.data) else {
                    return fail(io, NotifyType::INVALID_SYNTAX);
                };
                out.push(Payload::Ke(KeyExchange {
                    group: g.id(),
                    data: dh.public(),
                }));
                Some(s)
            }
            _ => None,
        };
        let Some(keys) = self.keymat(g_ir.as_ref(), ni, nr, usize::from(suite.encr_bits / 8))
        else {
            return fail(io, NotifyType::NO_PROPOSAL_CHOSEN);
        };
        out.push(Payload::TsI(TrafficSelectors(ts_i.clone())));
        out.push(Payload::TsR(TrafficSelectors(ts_r.clone())));
        self.children.push(ChildRef {
            inbound_spi: our_spi,
            outbound_spi: peer_spi,
            local_ts: ts_r.clone(),
            remote_ts: ts_i.clone(),
            replaced: false,
        });
        if let Some(old) = replaces {
            self.mark_replaced(old);
        }
        io.events
            .push_back(Event::ChildSaEstablished(Box::new(ChildSa {
                ike_sa: self.id(),
                inbound_spi: our_spi,
                outbound_spi: peer_spi,
                inbound_key: keys.encr_i,
                outbound_key: keys.encr_r,
                esn: suite.esn,
                local_ts: ts_r,
                remote_ts: ts_i,
                local: self.local,
                peer: self.remote,
                udp_encap: self.nat_detected,
                virtual_ip: self.virtual_ip.or(self.leased_ip),
                virtual_ip6: self.virtual_ip6.or(self.leased_ip6),
                dns: self.dns.clone(),
                replaces,
                initiated: false,
            })));
        Ok(out)
    }

    /// Initiator: CREATE_CHILD_SA rekeying the pair with our `inbound_spi`.
    pub(crate) fn rekey_child(&mut self, io: &mut Io, now: Instant, inbound_spi: u32) -> bool {
        let group = self.policy.esp_groups.first().copied();
        self.rekey_child_with(io, now, inbound_spi, group)
    }

    /// Initiator: CREATE_CHILD_SA for one more pair with the selectors of
    /// the pair with our inbound SPI `like`.
    pub(crate) fn add_child(&mut self, io: &mut Io, now: Instant, like: u32) -> bool {
        let group = self.policy.esp_groups.first().copied();
        self.create_child(io, now, like, false, group)
    }

    /// `group`: the PFS group of the KE payload, if any.
    fn rekey_child_with(
        &mut self,
        io: &mut Io,
        now: Instant,
        inbound_spi: u32,
        group: Option<DhGroup>,
    ) -> bool {
        if self.child_replaced(inbound_spi) {
            return false;
        }
        self.create_child(io, now, inbound_spi, true, group)
    }

    /// A CHILD SA with the selectors of our pair `like`, replacing it if
    /// `rekey`.
    fn create_child(
        &mut self,
        io: &mut Io,
        now: Instant,
        like: u32,
        rekey: bool,
        group: Option<DhGroup>,
    ) -> bool {
        if self.state != State::Established || self.child_offer.is_some() {
            return false;
        }
        let Some(old) = self
            .children
            .iter()
            .find(|c| c.inbound_spi == like)
            .cloned()
        else {
            return false;
        };
        let Some(new_spi) = io.spis.allocate() else {
            return false;
        };
        let ni = io.nonce();
        let dh = group.map(|g| DhPrivate::generate(g, io.rng.as_mut()));
        let mut p = Vec::new();
        if rekey {
            p.push(Payload::Notify(Notify {
                protocol: ProtocolId::ESP,
                spi: like.to_be_bytes().to_vec(),
                notify_type: NotifyType::REKEY_SA,
                data: Vec::new(),
            }));
        }
        p.push(Payload::Sa(esp_offer(&self.policy, new_spi)));
        p.push(Payload::Nonce(Nonce(ni.clone())));
        if let Some(d) = &dh {
            p.push(Payload::Ke(KeyExchange {
                group: d.group().id(),
                data: d.public(),
            }));
        }
        p.push(Payload::TsI(TrafficSelectors(old.local_ts.clone())));
        p.push(Payload::TsR(TrafficSelectors(old.remote_ts.clone())));
        self.child_offer = Some(Box::new(ChildOffer {
            new_spi,
            ni,
            dh,
            like,
            rekey,
            local_ts: old.local_ts,
            remote_ts: old.remote_ts,
        }));
        self.request(
            io,
            now,
            ExchangeType::CREATE_CHILD_SA,
            p,
            RequestKind::CreateChild,
        );
        true
    }

    /// Responder.
    pub(crate) fn on_create_child_request(
        &mut self,
        io: &mut Io,
        now: Instant,
        mid: u32,
        inner: &[Payload],
    ) {
        let c = pick(inner);
        let ex = ExchangeType::CREATE_CHILD_SA;
        if let (Some(sa), Some(ni), Some(ke), None) = (c.sa, c.nonce, c.ke, c.tsi) {
            if sa.proposals.iter().any(|p| p.protocol == ProtocolId::IKE) {
                return self.on_rekey_ike_request(io, mid, sa, ni, ke);
            }
        }
        let (Some(sa), Some(ni), Some(tsi), Some(tsr)) = (c.sa, c.nonce, c.tsi, c.tsr) else {
            return self.refuse(io, ex, mid, NotifyType::NO_ADDITIONAL_SAS);
        };
        let replaces = match c.rekey {
            Some(n) => {
                let spi = <[u8; 4]>::try_from(n.spi.as_slice())
                    .ok()
                    .map(u32::from_be_bytes);
                match self.children.iter().find(|x| Some(x.outbound_spi) == spi) {
                    Some(old) => Some(old.inbound_spi),
                    None => {
                        let n = Notify {
                            data: Vec::new(),
                            notify_type: NotifyType::CHILD_SA_NOT_FOUND,
                            ..n.clone()
                        };
                        return self.respond(io, ex, mid, &[Payload::Notify(n)]);
                    }
                }
            }
            None => None,
        };
        // A client keeping its own rekey rhythm refuses the peer's.
        if replaces.is_some() && io.refuse_child_rekeys.contains(&self.id().0) {
            return self.refuse(io, ex, mid, NotifyType::NO_ADDITIONAL_SAS);
        }
        // An authenticated peer still may not pile up pairs; a rekey adds
        // one until the old one goes, so rekeys stop at twice the limit.
        let limit = match replaces {
            Some(_) => io.child_sa_limit.saturating_mul(2),
            None => io.child_sa_limit,
        };
        if self.children.len() >= limit {
            // Not an event: the driver reads ChildSaFailed as our own
            // request failing.
            tracing::warn!(
                ike_sa = format_args!("{:016x}", self.id().0),
                children = self.children.len(),
                rekey = replaces.is_some(),
                "CHILD SA refused: the peer is at its limit"
            );
            return self.refuse(io, ex, mid, NotifyType::NO_ADDITIONAL_SAS);
        }
        // §2.8.2: a rekey of a pair we are deleting loses.
        if replaces.is_some_and(|old| self.deleting_child(old)) {
            return self.refuse(io, ex, mid, NotifyType::TEMPORARY_FAILURE);
        }
        // A KE for a group we'd accept but not the one sent: INVALID_KE_PAYLOAD (§1.3).
        if let (Some(ke), Some(g)) = (c.ke, self.policy.esp_groups.first()) {
            if DhGroup::from_id(ke.group).is_none_or(|x| !self.policy.esp_groups.contains(&x)) {
                return self.ask_for_group(io, ex, mid, *g);
            }
        }
        // The exchange's initiator is the peer: TSi is its side, TSr ours.
        let or = |hosts: Vec<TrafficSelector>, ts: &Vec<TrafficSelector>| {
            if hosts.is_empty() {
                ts.clone()
            } else {
                hosts
            }
        };
        let allowed_i = or(self.leased_hosts(), &self.policy.remote_ts);
        let allowed_r = or(self.virtual_hosts(), &self.policy.local_ts);
        let nr = io.nonce();
        let id = self.id();
        match self.accept_child(
            io, sa, tsi, tsr, &allowed_i, &allowed_r, c.ke, &ni.0, &nr, replaces,
        ) {
            Ok(mut out) => {
                self.note_collision(replaces, &ni.0, &nr);
                let redundant = self.late_collision(replaces, &ni.0, &nr);
                out.insert(1, Payload::Nonce(Nonce(nr)));
                self.respond(io, ex, mid, &out);
                if let Some(ours) = redundant {
                    self.delete_child(io, now, ours);
                }
            }
            Err(t) => {
                io.events.push_back(Event::ChildSaFailed { id, reason: t });
                self.refuse(io, ex, mid, t);
            }
        }
    }

    /// Initiator.
    pub(crate) fn on_create_child_response(
        &mut self,
        io: &mut Io,
        now: Instant,
        inner: &[Payload],
    ) {
        let Some(offer) = self.child_offer.take() else {
            return;
        };
        let id = self.id();
        match self.complete_child(&offer, inner) {
            Ok(child) => {
                let nr = pick(inner).nonce.map(|n| n.0.clone()).unwrap_or_default();
                let redundant = self.lost_collision(&offer, child.inbound_spi, &nr);
                self.children.push(ChildRef {
                    inbound_spi: child.inbound_spi,
                    outbound_spi: child.outbound_spi,
                    local_ts: child.local_ts.clone(),
                    remote_ts: child.remote_ts.clone(),
                    replaced: false,
                });
                if let Some(old) = offer.replaces() {
                    self.mark_replaced(old);
                }
                io.events
                    .push_back(Event::ChildSaEstablished(Box::new(child)));
                // §2.8: the rekey's initiator deletes the old pair (at once,
                // unless the caller keeps it for a grace period).
                if let Some(old) = offer.replaces().filter(|_| !io.defer_rekeyed_delete) {
                    self.delete_child(io, now, old);
                }
                if redundant {
                    self.delete_child(io, now, offer.new_spi);
                }
            }
            Err(t) => {
                io.spis.release(offer.new_spi);
                // §1.3: retry once with the group the responder asked for.
                let wanted = pick(inner)
                    .error
                    .filter(|n| n.notify_type == NotifyType::INVALID_KE_PAYLOAD)
                    .and_then(|n| <[u8; 2]>::try_from(n.data.as_slice()).ok())
                    .and_then(|g| DhGroup::from_id(u16::from_be_bytes(g)))
                    .filter(|g| self.policy.esp_groups.contains(g))
                    .filter(|g| offer.dh.as_ref().map(|d| d.group()) != Some(*g));
                if let Some(g) = wanted {
                    let retried = match offer.replaces() {
                        Some(old) => self.rekey_child_with(io, now, old, Some(g)),
                        None => self.create_child(io, now, offer.like, false, Some(g)),
                    };
                    if retried {
                        return;
                    }
                }
                io.events.push_back(Event::ChildSaFailed { id, reason: t });
            }
        }
    }

    fn complete_child(&self, offer: &ChildOffer, inner: &[Payload]) -> Result<ChildSa, NotifyType> {
        let c = pick(inner);
        if let Some(e) = c.error {
            return Err(e.notify_type);
        }
        let (Some(sa), Some(nr), Some(tsi), Some(tsr)) = (c.sa, c.nonce, c.tsi, c.tsr) else {
            return Err(NotifyType::INVALID_SYNTAX);
        };
        if sa.proposals.len() != 1 {
            return Err(NotifyType::NO_PROPOSAL_CHOSEN);
        }
        let ke_group = offer.dh.as_ref().map(|d| d.group().id());
        let (suite, peer_spi, _) = choose_esp(&self.policy, sa, offer.new_spi, ke_group)
            .ok_or(NotifyType::NO_PROPOSAL_CHOSEN)?;
        let g_ir = match (&offer.dh, c.ke, suite.group) {
            (Some(dh), Some(ke), Some(g)) if g == dh.group() && ke.group == g.id() => Some(
                dh.shared_secret(&ke.data)
                    .map_err(|_| NotifyType::INVALID_SYNTAX)?,
            ),
            (None, None, None) => None,
            _ => return Err(NotifyType::NO_PROPOSAL_CHOSEN),
        };
        if !within(&tsi.0, &offer.local_ts)
            || !within(&tsr.0, &offer.remote_ts)
            || tsi.0.is_empty()
            || tsr.0.is_empty()
        {
            return Err(NotifyType::TS_UNACCEPTABLE);
        }
        let keys = self
            .keymat(
                g_ir.as_ref(),
                &offer.ni,
                &nr.0,
                usize::from(suite.encr_bits / 8),
            )
            .ok_or(NotifyType::NO_PROPOSAL_CHOSEN)?;
        Ok(ChildSa {
            ike_sa: self.id(),
            inbound_spi: offer.new_spi,
            outbound_spi: peer_spi,
            inbound_key: keys.encr_r,
            outbound_key: keys.encr_i,
            esn: suite.esn,
            local_ts: tsi.0.clone(),
            remote_ts: tsr.0.clone(),
            local: self.local,
            peer: self.remote,
            udp_encap: self.nat_detected,
            virtual_ip: self.virtual_ip.or(self.leased_ip),
            virtual_ip6: self.virtual_ip6.or(self.leased_ip6),
            dns: self.dns.clone(),
            replaces: offer.replaces(),
            initiated: true,
        })
    }
}
