//! The IKE endpoint: routes datagrams to IKE SAs by SPI and drives their
//! timers. No sockets, no clock: the caller feeds it and drains it.

mod late_children;
mod pools;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rand::RngCore;

use super::ike_sa::{IkeSa, State};
use super::init_responder::{on_init_request, InitOutcome};
use super::io::Io;
use super::{AddressPool, Event, IkeSaId, IkeSaStatus, PeerPolicy, Policy, SpiAllocator, Transmit};
use crate::ike::wire::{
    strip_non_esp_marker, ExchangeType, Identification, Message, Notify, NotifyType, ParseError,
    Payload,
};

/// Half-open IKE SAs (each cost a DH computation) before cookies are
/// demanded (RFC 7296 §2.6).
pub const DEFAULT_COOKIE_THRESHOLD: usize = 1024;

/// CHILD SAs a peer may have on one IKE SA unless `set_child_sa_limit`
/// says otherwise.
pub const DEFAULT_CHILD_SA_LIMIT: usize = 16;

/// Responder settings of an endpoint.
struct Responder {
    policy: Arc<Policy>,
    /// Above this many half-open SAs, demand cookies (§2.6).
    cookie_threshold: usize,
    cookie_secret: [u8; 32],
}

/// Counters of what the endpoint dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointStats {
    pub malformed: u64,
    pub unknown_spi: u64,
}

pub struct IkeEndpoint {
    /// Boxed: an IkeSa is about 1 KiB, and a map grown to 2^k buckets
    /// would hold that much in every empty bucket.
    sas: HashMap<u64, Box<IkeSa>>,
    /// Every SA's next deadline, ordered, so timeouts cost O(log n) with
    /// a million SAs; `armed` says which entry belongs to which SA.
    timers: BTreeSet<(Instant, u64)>,
    armed: HashMap<u64, Instant>,
    /// Accepted SAs by authenticated peer identity, for INITIAL_CONTACT.
    by_peer: HashMap<Identification, Vec<u64>>,
    /// IKE_SA_INIT retransmissions find their SA by (peer, SPIi).
    half_open: HashMap<(SocketAddr, u64), u64>,
    responder: Option<Responder>,
    io: Io,
    stats: EndpointStats,
}

impl IkeEndpoint {
    pub fn new(rng: Box<dyn RngCore + Send>, spis: Box<dyn SpiAllocator + Send>) -> Self {
        IkeEndpoint {
            sas: HashMap::new(),
            timers: BTreeSet::new(),
            armed: HashMap::new(),
            by_peer: HashMap::new(),
            half_open: HashMap::new(),
            responder: None,
            io: Io {
                rng,
                spis,
                pools: HashMap::new(),
                pools6: HashMap::new(),
                peer_policy: None,
                transmits: Default::default(),
                events: Default::default(),
                born: Vec::new(),
                initial_contact: Vec::new(),
                defer_rekeyed_delete: false,
                refuse_child_rekeys: Default::default(),
                child_sa_limit: DEFAULT_CHILD_SA_LIMIT,
                authenticated: Vec::new(),
                unique_replace: false,
                replacing: Vec::new(),
                send_initial_contact: true,
            },
            stats: EndpointStats::default(),
        }
    }

    /// Accept IKE SAs from peers under `policy`, leasing inner addresses
    /// from `pool` (kept as the pool `policy.pool` names).
    pub fn accept(&mut self, policy: Policy, pool: Option<AddressPool>) {
        let mut cookie_secret = [0u8; 32];
        self.io.rng.fill_bytes(&mut cookie_secret);
        if let Some(pool) = pool {
            self.io.pools.insert(policy.pool.clone(), pool);
        }
        self.responder = Some(Responder {
            policy: Arc::new(policy),
            cookie_threshold: DEFAULT_COOKIE_THRESHOLD,
            cookie_secret,
        });
    }

    /// Chooses the responder's policy per peer identity (per-client PSKs);
    /// without it every peer gets the policy given to `accept`.
    pub fn set_peer_policy(&mut self, lookup: PeerPolicy) {
        self.io.peer_policy = Some(lookup);
    }

    /// Leave the old pair of a CHILD SA rekey we started for the caller to
    /// delete with `delete_child_sa` (after its epoch switch and grace).
    pub fn set_defer_rekeyed_delete(&mut self, defer: bool) {
        self.io.defer_rekeyed_delete = defer;
    }

    /// Refuse (or accept again) the peer's CHILD SA rekeys on IKE SA `id`,
    /// with NO_ADDITIONAL_SAS (RFC 7296 3.10.1): the SA stays up.
    pub fn refuse_peer_child_rekeys(&mut self, id: IkeSaId, refuse: bool) {
        if refuse {
            self.io.refuse_child_rekeys.insert(id.0);
        } else {
            self.io.refuse_child_rekeys.remove(&id.0);
        }
    }

    /// Refuse a peer's new CHILD SAs on an IKE SA that has `n` already, and
    /// its rekeys at `2n` (a rekey holds the old pair until it is deleted),
    /// with NO_ADDITIONAL_SAS (RFC 7296 3.10.1): an authenticated peer
    /// cannot pile up SAs, their memory and SPI slots.
    pub fn set_child_sa_limit(&mut self, n: usize) {
        self.io.child_sa_limit = n.max(1);
    }

    /// `[ike] unique = "replace"`: when a peer authenticates to us without
    /// INITIAL_CONTACT, the older IKE SAs of its identity are deleted with
    /// INFORMATIONAL DELETE (with INITIAL_CONTACT they always end, without
    /// a DELETE: the peer has forgotten them).
    pub fn set_unique_replace(&mut self, on: bool) {
        self.io.unique_replace = on;
    }

    /// Whether our IKE_AUTH requests carry INITIAL_CONTACT (default yes).
    /// Off only to play a client that leaves it out, as some do.
    #[doc(hidden)]
    pub fn set_send_initial_contact(&mut self, on: bool) {
        self.io.send_initial_contact = on;
    }

    /// Demand cookies once `n` IKE SAs are half-open.
    pub fn set_cookie_threshold(&mut self, n: usize) {
        if let Some(r) = self.responder.as_mut() {
            r.cookie_threshold = n;
        }
    }

    /// Starts an IKE SA (and its first CHILD SA) to `remote`.
    pub fn connect(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        policy: Policy,
    ) -> Option<IkeSaId> {
        let sa = IkeSa::start(&mut self.io, now, local, remote, Arc::new(policy))?;
        let id = sa.id();
        self.sas.insert(id.0, Box::new(sa));
        self.rearm(id.0);
        Some(id)
    }

    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        datagram: &[u8],
    ) {
        let bytes = if local.port() == 4500 {
            match strip_non_esp_marker(datagram) {
                Some(b) => b,
                None => return, // ESP or keepalive: not ours
            }
        } else {
            datagram
        };
        let msg = match Message::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(%remote, error = %e, "dropping malformed IKE message");
                return self.malformed(local, remote, bytes, e);
            }
        };
        let h = &msg.header;
        if h.exchange == ExchangeType::IKE_SA_INIT && !h.flags.response() && h.spi_r == 0 {
            return self.init_request(now, local, remote, bytes, msg);
        }
        // The I flag says the sender is the original initiator, so our SPI is the other one.
        let ours = if h.flags.initiator() {
            h.spi_r
        } else {
            h.spi_i
        };
        let Some(sa) = self.sas.get_mut(&ours) else {
            tracing::debug!(%remote, spi = format_args!("{ours:016x}"), "IKE message for unknown SA");
            self.stats.unknown_spi += 1;
            return;
        };
        let events_before = self.io.events.len();
        sa.handle(&mut self.io, now, local, remote, bytes, msg);
        self.adopt_born();
        self.hand_over_late_children(now, ours, events_before);
        self.reap(now, ours);
    }

    fn malformed(&mut self, local: SocketAddr, remote: SocketAddr, bytes: &[u8], e: ParseError) {
        self.stats.malformed += 1;
        // §2.5: a request with an unknown critical payload is answered with
        // UNSUPPORTED_CRITICAL_PAYLOAD (unencrypted here only for IKE_SA_INIT).
        let ParseError::UnsupportedCriticalPayload(t) = e else {
            return;
        };
        let Ok(h) = crate::ike::wire::Header::parse(bytes) else {
            return;
        };
        if h.exchange != ExchangeType::IKE_SA_INIT || h.flags.response() {
            return;
        }
        let mut m = Message {
            header: crate::ike::wire::Header::new(
                h.spi_i,
                0,
                h.exchange,
                crate::ike::wire::Flags::RESPONSE,
                h.message_id,
            ),
            payloads: vec![Payload::Notify(Notify::new(
                NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD,
                vec![t.0],
            ))],
        };
        self.io.transmits.push_back(Transmit {
            local,
            remote,
            payload: super::init_responder::marked(local, m.emit()),
        });
    }

    fn init_request(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        raw: &[u8],
        msg: Message,
    ) {
        let Some(r) = &self.responder else { return };
        if let Some(spi) = self.half_open.get(&(remote, msg.header.spi_i)) {
            // A retransmission: resend the cached response (§2.1).
            if let Some((_, d)) = self.sas.get(spi).and_then(|s| s.last_response.as_ref()) {
                self.io.transmits.push_back(Transmit {
                    local,
                    remote,
                    payload: d.clone(),
                });
            }
            return;
        }
        let under_load = self.half_open.len() >= r.cookie_threshold;
        let secret = under_load.then_some(&r.cookie_secret[..]);
        let policy = r.policy.clone();
        if let InitOutcome::Created(sa) =
            on_init_request(&mut self.io, now, local, remote, raw, &msg, &policy, secret)
        {
            let mut sa = *sa;
            let (key, spi) = ((remote, sa.spi_i), sa.spi_r);
            sa.half_open_key = Some(key);
            self.half_open.insert(key, spi);
            self.sas.insert(spi, Box::new(sa));
            self.rearm(spi);
        }
    }

    /// After touching SA `spi`: adopts SAs born from a rekey, applies
    /// INITIAL_CONTACT and `unique`, forgets the half-open index once
    /// established, drops the SA if it ended, and re-arms its timer.
    fn reap(&mut self, now: Instant, spi: u64) {
        self.adopt_born();
        for id in std::mem::take(&mut self.io.authenticated) {
            if let Some(who) = self.sas.get(&id.0).and_then(|s| s.peer_id.clone()) {
                self.by_peer.entry(who).or_default().push(id.0);
            }
        }
        for fresh in std::mem::take(&mut self.io.initial_contact) {
            self.initial_contact(fresh);
        }
        for fresh in std::mem::take(&mut self.io.replacing) {
            for old in self.same_identity_as(fresh) {
                if let Some(sa) = self.sas.get_mut(&old) {
                    tracing::info!(
                        spi = format_args!("{old:016x}"),
                        "IKE SA replaced by a new one of the same identity (unique = replace)"
                    );
                    sa.delete_ike(&mut self.io, now);
                }
                self.settle(old);
            }
        }
        self.settle(spi);
    }

    /// Forgets SA `spi`'s half-open index once it is established, drops
    /// it if it ended, and re-arms its timer.
    fn settle(&mut self, spi: u64) {
        if let Some(sa) = self.sas.get_mut(&spi) {
            if sa.state != State::HalfOpen {
                if let Some(k) = sa.half_open_key.take() {
                    self.half_open.remove(&k);
                }
            }
            if sa.state == State::Dead {
                if let Some(sa) = self.sas.remove(&spi) {
                    self.unindex(&sa, spi);
                }
            }
        }
        self.rearm(spi);
    }

    /// Takes in the SAs a rekey made.
    fn adopt_born(&mut self) {
        for sa in std::mem::take(&mut self.io.born) {
            let id = sa.id().0;
            self.sas.insert(id, Box::new(sa));
            self.rearm(id);
        }
    }

    fn rearm(&mut self, spi: u64) {
        if let Some(t) = self.armed.remove(&spi) {
            self.timers.remove(&(t, spi));
        }
        if let Some(t) = self.sas.get(&spi).and_then(|sa| sa.next_timeout()) {
            self.armed.insert(spi, t);
            self.timers.insert((t, spi));
        }
    }

    /// The other SAs (our SPIs) whose peer proved the identity `fresh`'s did.
    fn same_identity_as(&self, fresh: IkeSaId) -> Vec<u64> {
        let Some(who) = self.sas.get(&fresh.0).and_then(|s| s.peer_id.as_ref()) else {
            return Vec::new();
        };
        self.by_peer
            .get(who)
            .map(|v| v.iter().copied().filter(|s| *s != fresh.0).collect())
            .unwrap_or_default()
    }

    /// Ends, without a DELETE, the other responder SAs of the same identity.
    fn initial_contact(&mut self, fresh: IkeSaId) {
        for spi in self.same_identity_as(fresh) {
            if let Some(mut sa) = self.sas.remove(&spi) {
                sa.end(&mut self.io, super::IkeSaEnd::Replaced);
                if let Some(k) = sa.half_open_key.take() {
                    self.half_open.remove(&k);
                }
                self.unindex(&sa, spi);
            }
            self.rearm(spi);
        }
    }

    fn unindex(&mut self, sa: &IkeSa, spi: u64) {
        let Some(who) = &sa.peer_id else { return };
        if let Some(v) = self.by_peer.get_mut(who) {
            v.retain(|s| *s != spi);
            if v.is_empty() {
                self.by_peer.remove(who);
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(t, spi)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            self.armed.remove(&spi);
            if let Some(sa) = self.sas.get_mut(&spi) {
                sa.on_timeout(&mut self.io, now);
            }
            self.reap(now, spi);
        }
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.io.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.io.events.pop_front()
    }

    /// Deletes an IKE SA and its CHILD SAs (INFORMATIONAL DELETE).
    pub fn delete_ike_sa(&mut self, now: Instant, id: IkeSaId) -> bool {
        let Some(sa) = self.sas.get_mut(&id.0) else {
            return false;
        };
        sa.delete_ike(&mut self.io, now);
        self.reap(now, id.0);
        true
    }

    /// Deletes one CHILD SA, named by our inbound SPI.
    pub fn delete_child_sa(&mut self, now: Instant, id: IkeSaId, inbound_spi: u32) -> bool {
        let Some(sa) = self.sas.get_mut(&id.0) else {
            return false;
        };
        let ok = sa.delete_child(&mut self.io, now, inbound_spi);
        self.rearm(id.0);
        ok
    }

    /// The peer of `id` now sends from `remote` (an authenticated ESP packet
    /// came from there, e.g. after its NAT mapping moved): IKE messages go
    /// there too. Only with NAT traversal, where IKE and ESP share the
    /// mapping of port 4500.
    pub fn peer_moved(&mut self, id: IkeSaId, remote: SocketAddr) {
        if let Some(sa) = self.sas.get_mut(&id.0) {
            if sa.nat_detected {
                sa.remote = remote;
            }
        }
    }

    /// Rekeys the CHILD SA with our `inbound_spi` (CREATE_CHILD_SA, §2.8):
    /// `ChildSaEstablished { replaces: Some(inbound_spi), .. }` then the old
    /// pair's `ChildSaDeleted`.
    pub fn rekey_child_sa(&mut self, now: Instant, id: IkeSaId, inbound_spi: u32) -> bool {
        let Some(sa) = self.sas.get_mut(&id.0) else {
            return false;
        };
        let ok = sa.rekey_child(&mut self.io, now, inbound_spi);
        self.rearm(id.0);
        ok
    }

    /// Asks for one more CHILD SA on IKE SA `id`, with the selectors of the
    /// pair whose inbound SPI is `like` (CREATE_CHILD_SA without REKEY_SA,
    /// §1.3.1): `ChildSaEstablished { replaces: None, .. }`, or
    /// `ChildSaFailed` if the peer refuses.
    pub fn add_child_sa(&mut self, now: Instant, id: IkeSaId, like: u32) -> bool {
        let Some(sa) = self.sas.get_mut(&id.0) else {
            return false;
        };
        let ok = sa.add_child(&mut self.io, now, like);
        self.rearm(id.0);
        ok
    }

    /// Rekeys the IKE SA (CREATE_CHILD_SA, §2.18): `IkeSaRekeyed`, then the
    /// old SA's `IkeSaDeleted { reason: Rekeyed }`.
    pub fn rekey_ike_sa(&mut self, now: Instant, id: IkeSaId) -> bool {
        let Some(sa) = self.sas.get_mut(&id.0) else {
            return false;
        };
        let ok = sa.rekey_ike(&mut self.io, now);
        self.rearm(id.0);
        ok
    }

    /// Sends an empty INFORMATIONAL request; no answer kills the SA (§1.4).
    pub fn check_liveness(&mut self, now: Instant, id: IkeSaId) -> bool {
        let Some(sa) = self.sas.get_mut(&id.0) else {
            return false;
        };
        let ok = sa.liveness(&mut self.io, now);
        self.rearm(id.0);
        ok
    }

    /// Every live IKE SA, for status displays.
    pub fn ike_sas(&self) -> impl Iterator<Item = IkeSaStatus> + '_ {
        self.sas.values().filter_map(|sa| sa.status())
    }

    pub fn ike_sa(&self, id: IkeSaId) -> Option<IkeSaStatus> {
        self.sas.get(&id.0).and_then(|sa| sa.status())
    }

    /// How many IKE SAs still hold handshake material (nonces, the
    /// IKE_SA_INIT messages, SK_p): only those not yet authenticated should.
    pub fn holding_handshake(&self) -> usize {
        self.sas.values().filter(|sa| sa.hs.is_some()).count()
    }

    pub fn ike_sa_count(&self) -> usize {
        self.sas.len()
    }

    pub fn half_open_count(&self) -> usize {
        self.half_open.len()
    }

    pub fn stats(&self) -> EndpointStats {
        self.stats
    }
}
