//! Rekeying the IKE SA with CREATE_CHILD_SA (RFC 7296 §1.3.2, §2.18): a new
//! IKE SA with fresh SPIs, nonces and DH, keyed from the old SK_d, takes
//! over the CHILD SAs; the rekey's initiator then deletes the old one.

use std::time::Instant;

use super::ike_sa::{IkeSa, RequestKind, State};
use super::io::Io;
use super::proposal::{accept_ike, choose_ike, ike_chosen, ike_offer, IkeSuite};
use super::Event;
use crate::ike::crypto::{skeyseed_rekey, DhPrivate, IkeSaKeys, Secret, SkCipher};
use crate::ike::wire::{
    ExchangeType, KeyExchange, Nonce, NotifyType, Payload, SecurityAssociation,
};

/// State of our outstanding IKE SA rekey.
pub(crate) struct IkeOffer {
    pub new_spi: u64,
    pub ni: Vec<u8>,
    pub dh: DhPrivate,
}

impl IkeSa {
    /// The successor SA: keys from SKEYSEED = prf_old(SK_d old, g^ir | Ni | Nr),
    /// where the old SA's PRF computes SKEYSEED (§2.18) and the new one prf+.
    #[allow(clippy::too_many_arguments)]
    fn successor(
        &mut self,
        io: &mut Io,
        initiator: bool,
        spi_i: u64,
        spi_r: u64,
        suite: IkeSuite,
        g_ir: &Secret,
        ni: &[u8],
        nr: &[u8],
    ) -> Option<IkeSa> {
        let (old_suite, old_sk_d) = (self.suite?, self.sk_d.as_ref()?);
        let seed = skeyseed_rekey(old_suite.prf, old_sk_d, g_ir, ni, nr);
        let keys = IkeSaKeys::derive(
            suite.prf,
            &seed,
            ni,
            nr,
            spi_i,
            spi_r,
            usize::from(suite.encr_bits / 8),
        )
        .ok()?;
        let (tx, rx) = if initiator {
            (&keys.sk_ei, &keys.sk_er)
        } else {
            (&keys.sk_er, &keys.sk_ei)
        };
        let (tx, rx) = (SkCipher::new(tx).ok()?, SkCipher::new(rx).ok()?);
        let mut n = IkeSa::new(initiator, self.local, self.remote, self.policy.clone());
        n.spi_i = spi_i;
        n.spi_r = spi_r;
        n.nat_detected = self.nat_detected;
        n.state = State::Established;
        n.suite = Some(suite);
        // A rekeyed IKE SA signs no AUTH: SK_d is all it keeps (§2.18).
        n.sk_d = Some(keys.sk_d);
        n.tx = Some(tx);
        n.rx = Some(rx);
        n.children = std::mem::take(&mut self.children);
        n.virtual_ip = self.virtual_ip.take();
        n.leased_ip = self.leased_ip.take();
        n.leased_ip6 = self.leased_ip6.take();
        n.virtual_ip6 = self.virtual_ip6.take();
        n.peer_id = self.peer_id.clone();
        if n.peer_id.is_some() {
            io.authenticated.push(n.id());
        }
        n.dns = self.dns.clone();
        self.successor = Some(n.id());
        io.events.push_back(Event::IkeSaRekeyed {
            old: self.id(),
            new: n.id(),
        });
        Some(n)
    }

    pub(crate) fn rekey_ike(&mut self, io: &mut Io, now: Instant) -> bool {
        let Some(suite) = self.suite else {
            return false;
        };
        if self.state != State::Established || self.ike_offer.is_some() || self.successor.is_some()
        {
            return false;
        }
        let new_spi = io.random_spi();
        let ni = io.nonce();
        let dh = DhPrivate::generate(suite.group, io.rng.as_mut());
        let mut offer = ike_offer(&self.policy);
        for p in &mut offer.proposals {
            p.spi = new_spi.to_be_bytes().to_vec();
        }
        let payloads = vec![
            Payload::Sa(offer),
            Payload::Nonce(Nonce(ni.clone())),
            Payload::Ke(KeyExchange {
                group: dh.group().id(),
                data: dh.public(),
            }),
        ];
        self.ike_offer = Some(Box::new(IkeOffer { new_spi, ni, dh }));
        self.request(
            io,
            now,
            ExchangeType::CREATE_CHILD_SA,
            payloads,
            RequestKind::RekeyIke,
        );
        true
    }

    pub(crate) fn on_rekey_ike_request(
        &mut self,
        io: &mut Io,
        mid: u32,
        sa: &SecurityAssociation,
        ni: &Nonce,
        ke: &KeyExchange,
    ) {
        let ex = ExchangeType::CREATE_CHILD_SA;
        let Some((suite, chosen)) = choose_ike(&self.policy, sa, ke.group) else {
            return self.refuse(io, ex, mid, NotifyType::NO_PROPOSAL_CHOSEN);
        };
        if suite.group.id() != ke.group {
            return self.ask_for_group(io, ex, mid, suite.group);
        }
        let peer_spi = sa
            .proposals
            .iter()
            .find(|p| p.number == chosen.number)
            .and_then(|p| <[u8; 8]>::try_from(p.spi.as_slice()).ok())
            .map(u64::from_be_bytes);
        let Some(peer_spi) = peer_spi.filter(|s| *s != 0) else {
            return self.refuse(io, ex, mid, NotifyType::INVALID_SYNTAX);
        };
        let dh = DhPrivate::generate(suite.group, io.rng.as_mut());
        let Ok(g_ir) = dh.shared_secret(&ke.data) else {
            return self.refuse(io, ex, mid, NotifyType::INVALID_SYNTAX);
        };
        let new_spi = io.random_spi();
        let nr = io.nonce();
        let mut chosen = ike_chosen(chosen.number, suite);
        chosen.spi = new_spi.to_be_bytes().to_vec();
        let reply = [
            Payload::Sa(SecurityAssociation {
                proposals: vec![chosen],
            }),
            Payload::Nonce(Nonce(nr.clone())),
            Payload::Ke(KeyExchange {
                group: suite.group.id(),
                data: dh.public(),
            }),
        ];
        // The peer initiated the rekey, so it is the new SA's initiator.
        match self.successor(io, false, peer_spi, new_spi, suite, &g_ir, &ni.0, &nr) {
            Some(n) => {
                io.born.push(n);
                self.respond(io, ex, mid, &reply);
            }
            None => self.refuse(io, ex, mid, NotifyType::NO_PROPOSAL_CHOSEN),
        }
    }

    pub(crate) fn on_rekey_ike_response(&mut self, io: &mut Io, now: Instant, inner: &[Payload]) {
        let Some(offer) = self.ike_offer.take() else {
            return;
        };
        let mut sa = None;
        let mut nr = None;
        let mut ke = None;
        for p in inner {
            match p {
                Payload::Sa(x) => sa = Some(x),
                Payload::Nonce(x) => nr = Some(x),
                Payload::Ke(x) => ke = Some(x),
                // An error (NO_PROPOSAL_CHOSEN, TEMPORARY_FAILURE, ...): keep the old SA.
                Payload::Notify(n) if n.notify_type.is_error() => return,
                _ => {}
            }
        }
        let (Some(sa), Some(nr), Some(ke)) = (sa, nr, ke) else {
            return;
        };
        let Some(suite) = accept_ike(&self.policy, sa) else {
            return;
        };
        let peer_spi = sa
            .proposals
            .first()
            .and_then(|p| <[u8; 8]>::try_from(p.spi.as_slice()).ok())
            .map(u64::from_be_bytes)
            .filter(|s| *s != 0);
        let Some(peer_spi) = peer_spi else { return };
        if suite.group != offer.dh.group() || ke.group != suite.group.id() {
            return;
        }
        let Ok(g_ir) = offer.dh.shared_secret(&ke.data) else {
            return;
        };
        if let Some(n) = self.successor(
            io,
            true,
            offer.new_spi,
            peer_spi,
            suite,
            &g_ir,
            &offer.ni,
            &nr.0,
        ) {
            io.born.push(n);
            // §2.18: the rekey's initiator deletes the old IKE SA.
            self.delete_ike(io, now);
        }
    }
}
