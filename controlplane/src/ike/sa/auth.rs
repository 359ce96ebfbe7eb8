//! IKE_AUTH with a PSK (RFC 7296 §1.2, §2.15) and the first CHILD SA,
//! with CP address assignment (§2.19) and TS narrowing (§2.9).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use super::event::ChildSa;
use super::ike_sa::{ChildRef, IkeSa, RequestKind, State};
use super::io::Io;
use super::narrow::within;
use super::proposal::{choose_esp, esp_offer};
use super::{Event, IkeSaEnd};
use crate::ike::crypto::{psk_auth, signed_octets, verify_psk_auth, ChildKeys};
use crate::ike::wire::{
    AuthMethod, Authentication, CfgAttrType, CfgAttribute, CfgType, Configuration, ExchangeType,
    Identification, Notify, NotifyType, Payload, SecurityAssociation, TrafficSelector,
    TrafficSelectors,
};

/// The payloads of an IKE_AUTH message that matter here.
#[derive(Default)]
struct AuthPayloads<'a> {
    idi: Option<&'a Identification>,
    idr: Option<&'a Identification>,
    auth: Option<&'a Authentication>,
    sa: Option<&'a SecurityAssociation>,
    tsi: Option<&'a TrafficSelectors>,
    tsr: Option<&'a TrafficSelectors>,
    cp: Option<&'a Configuration>,
    error: Option<NotifyType>,
    initial_contact: bool,
}

fn pick(inner: &[Payload]) -> AuthPayloads<'_> {
    let mut a = AuthPayloads::default();
    for p in inner {
        match p {
            Payload::IdI(x) => a.idi = Some(x),
            Payload::IdR(x) => a.idr = Some(x),
            Payload::Auth(x) => a.auth = Some(x),
            Payload::Sa(x) => a.sa = Some(x),
            Payload::TsI(x) => a.tsi = Some(x),
            Payload::TsR(x) => a.tsr = Some(x),
            Payload::Cp(x) => a.cp = Some(x),
            Payload::Notify(n) if n.notify_type == NotifyType::INITIAL_CONTACT => {
                a.initial_contact = true
            }
            Payload::Notify(n) if n.notify_type.is_error() && a.error.is_none() => {
                a.error = Some(n.notify_type)
            }
            _ => {}
        }
    }
    a
}

fn error(t: NotifyType) -> Payload {
    Payload::Notify(Notify::new(t, Vec::new()))
}

fn any_v4() -> TrafficSelector {
    TrafficSelector::range(
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V4(Ipv4Addr::BROADCAST),
    )
}

fn any_v6() -> TrafficSelector {
    TrafficSelector::range(
        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        IpAddr::V6(Ipv6Addr::from(u128::MAX)),
    )
}

/// The DNS servers of a CP reply, IPv4 and IPv6 in the order given.
/// A value of the wrong length is skipped, as is an IPv6 one with a prefix.
fn dns_servers(reply: &Configuration) -> Vec<IpAddr> {
    reply
        .attributes
        .iter()
        .filter_map(|a| match a.attr_type {
            CfgAttrType::INTERNAL_IP4_DNS => a.as_ip4().map(IpAddr::V4),
            CfgAttrType::INTERNAL_IP6_DNS => match a.as_ip6()? {
                (v6, None) => Some(IpAddr::V6(v6)),
                (_, Some(_)) => None,
            },
            _ => None,
        })
        .collect()
}

/// One-address selectors for an IPv4 and an IPv6 address, if present.
fn host_selectors(v4: Option<Ipv4Addr>, v6: Option<Ipv6Addr>) -> Vec<TrafficSelector> {
    v4.map(IpAddr::V4)
        .into_iter()
        .chain(v6.map(IpAddr::V6))
        .map(|a| TrafficSelector::range(a, a))
        .collect()
}

impl IkeSa {
    fn psk_auth_for(&self, initiator_side: bool, id: &Identification) -> Option<Authentication> {
        let suite = self.suite?;
        let hs = self.handshake();
        let (msg, nonce, sk_p) = if initiator_side {
            (&hs.init_req, &hs.nr, hs.sk_pi.as_ref()?)
        } else {
            (&hs.init_resp, &hs.ni, hs.sk_pr.as_ref()?)
        };
        let octets = signed_octets(suite.prf, msg, nonce, sk_p, &id.body());
        Some(Authentication {
            method: AuthMethod::SHARED_KEY_MIC,
            data: psk_auth(suite.prf, &self.policy.psk, &octets)
                .as_bytes()
                .to_vec(),
        })
    }

    fn verify_peer(
        &self,
        peer_is_initiator: bool,
        id: &Identification,
        auth: &Authentication,
    ) -> bool {
        let hs = self.handshake();
        let Some(suite) = self.suite else {
            return false;
        };
        if auth.method != AuthMethod::SHARED_KEY_MIC {
            return false;
        }
        if let Some(want) = &self.policy.remote_id {
            if want != id {
                return false;
            }
        }
        let (msg, nonce, sk_p) = match (peer_is_initiator, &hs.sk_pi, &hs.sk_pr) {
            (true, Some(sk_pi), _) => (&hs.init_req, &hs.nr, sk_pi),
            (false, _, Some(sk_pr)) => (&hs.init_resp, &hs.ni, sk_pr),
            _ => return false,
        };
        let octets = signed_octets(suite.prf, msg, nonce, sk_p, &id.body());
        verify_psk_auth(suite.prf, &self.policy.psk, &octets, &auth.data)
    }

    /// Initiator: IDi, INITIAL_CONTACT, [IDr], AUTH, [CP], SA, TSi, TSr.
    pub(crate) fn send_auth(&mut self, io: &mut Io, now: Instant) {
        let Some(auth) = self.psk_auth_for(true, &self.policy.local_id) else {
            return;
        };
        let mut p = vec![Payload::IdI(self.policy.local_id.clone())];
        if io.send_initial_contact {
            p.push(Payload::Notify(Notify::new(
                NotifyType::INITIAL_CONTACT,
                Vec::new(),
            )));
        }
        if let Some(r) = &self.policy.remote_id {
            p.push(Payload::IdR(r.clone()));
        }
        p.push(Payload::Auth(auth));
        let tsi = if self.asks_virtual_ip() {
            let mut attributes = Vec::new();
            if self.policy.request_virtual_ip {
                attributes.push(CfgAttribute::request(CfgAttrType::INTERNAL_IP4_ADDRESS));
                attributes.push(CfgAttribute::request(CfgAttrType::INTERNAL_IP4_DNS));
            }
            if self.policy.request_virtual_ip6 {
                attributes.push(CfgAttribute::request(CfgAttrType::INTERNAL_IP6_ADDRESS));
                attributes.push(CfgAttribute::request(CfgAttrType::INTERNAL_IP6_DNS));
            }
            p.push(Payload::Cp(Configuration {
                cfg_type: CfgType::REQUEST,
                attributes,
            }));
            self.any_of_asked_families()
        } else {
            self.policy.local_ts.clone()
        };
        if let Some(spi) = io.spis.allocate() {
            self.offered_child_spi = Some(spi);
            p.push(Payload::Sa(esp_offer(&self.policy, spi)));
            p.push(Payload::TsI(TrafficSelectors(tsi)));
            p.push(Payload::TsR(TrafficSelectors(
                self.policy.remote_ts.clone(),
            )));
        }
        self.request(io, now, ExchangeType::IKE_AUTH, p, RequestKind::Auth);
    }

    /// Responder.
    pub(crate) fn on_auth_request(&mut self, io: &mut Io, mid: u32, inner: &[Payload]) {
        let a = pick(inner);
        // Per-peer policy (PSK, selectors) by the claimed identity; the
        // IKE_SA_INIT suite was chosen under the default policy.
        if let (Some(lookup), Some(id)) = (io.peer_policy.as_ref(), a.idi) {
            match lookup(id) {
                Some(p) => self.policy = p,
                None => self.unknown_peer = true,
            }
        }
        let ok = match (a.idi, a.auth) {
            (Some(id), Some(auth)) if !self.unknown_peer => self.verify_peer(true, id, auth),
            _ => false,
        };
        if !ok {
            // §2.21.2: answer AUTHENTICATION_FAILED, then drop the SA.
            self.respond(
                io,
                ExchangeType::IKE_AUTH,
                mid,
                &[error(NotifyType::AUTHENTICATION_FAILED)],
            );
            self.end(io, IkeSaEnd::LocalError("AUTHENTICATION_FAILED"));
            return;
        }
        let Some(auth) = self.psk_auth_for(false, &self.policy.local_id) else {
            return;
        };
        let mut out = vec![
            Payload::IdR(self.policy.local_id.clone()),
            Payload::Auth(auth),
        ];
        self.state = State::Established;
        self.expires = None;
        self.peer_id = a.idi.cloned();
        let id = self.id();
        io.authenticated.push(id);
        if a.initial_contact {
            io.initial_contact.push(id);
        } else if io.unique_replace {
            io.replacing.push(id);
        }
        io.events.push_back(Event::IkeSaEstablished {
            id,
            peer: self.remote,
        });
        if let (Some(sa), Some(tsi), Some(tsr)) = (a.sa, a.tsi, a.tsr) {
            match self.responder_child(io, sa, tsi, tsr, a.cp) {
                Ok(mut p) => out.append(&mut p),
                Err(t) => {
                    out.push(error(t));
                    io.events.push_back(Event::ChildSaFailed { id, reason: t });
                }
            }
        }
        self.forget_handshake();
        self.respond(io, ExchangeType::IKE_AUTH, mid, &out);
    }

    fn responder_child(
        &mut self,
        io: &mut Io,
        sa: &SecurityAssociation,
        tsi: &TrafficSelectors,
        tsr: &TrafficSelectors,
        cp: Option<&Configuration>,
    ) -> Result<Vec<Payload>, NotifyType> {
        let mut out = Vec::new();
        let asks =
            |t| cp.is_some_and(|c| c.cfg_type == CfgType::REQUEST && c.get(t).next().is_some());
        let (wants_v4, wants_v6) = (
            asks(CfgAttrType::INTERNAL_IP4_ADDRESS),
            asks(CfgAttrType::INTERNAL_IP6_ADDRESS),
        );
        if wants_v4 {
            self.leased_ip = io.pools.get_mut(&self.policy.pool).and_then(|p| p.lease());
        }
        if wants_v6 {
            self.leased_ip6 = io.pools6.get_mut(&self.policy.pool).and_then(|p| p.lease());
        }
        let mut allowed_i = self.policy.remote_ts.clone();
        if wants_v4 || wants_v6 {
            // §3.15.4: the client may get fewer families than it asked for,
            // but not none.
            let leased = self.leased_hosts();
            if leased.is_empty() {
                return Err(NotifyType::INTERNAL_ADDRESS_FAILURE);
            }
            allowed_i = leased;
            out.push(Payload::Cp(Configuration {
                cfg_type: CfgType::REPLY,
                attributes: self.cp_reply(),
            }));
        }
        let (ni, nr) = (self.handshake().ni.clone(), self.handshake().nr.clone());
        let local = self.policy.local_ts.clone();
        // §1.2: a KE can't come with IKE_AUTH; DH transforms are ignored there.
        let mut child =
            self.accept_child(io, sa, tsi, tsr, &allowed_i, &local, None, &ni, &nr, None)?;
        out.append(&mut child);
        Ok(out)
    }

    /// Initiator: whether we ask the responder for inner addresses.
    fn asks_virtual_ip(&self) -> bool {
        self.policy.request_virtual_ip || self.policy.request_virtual_ip6
    }

    /// Initiator: TSi while asking for addresses, every address of each
    /// family asked for (the responder narrows it to ours).
    fn any_of_asked_families(&self) -> Vec<TrafficSelector> {
        let v4 = self.policy.request_virtual_ip.then(any_v4);
        let v6 = self.policy.request_virtual_ip6.then(any_v6);
        v4.into_iter().chain(v6).collect()
    }

    /// Our own inner addresses from the peer's CP reply, as one-address
    /// selectors.
    pub(crate) fn virtual_hosts(&self) -> Vec<TrafficSelector> {
        host_selectors(self.virtual_ip, self.virtual_ip6)
    }

    /// The addresses leased to the peer, each as a one-address selector.
    pub(crate) fn leased_hosts(&self) -> Vec<TrafficSelector> {
        host_selectors(self.leased_ip, self.leased_ip6)
    }

    /// The CP reply's attributes: the leased addresses and the DNS
    /// servers of their families.
    fn cp_reply(&self) -> Vec<CfgAttribute> {
        let mut attrs = Vec::new();
        if let Some(a) = self.leased_ip {
            attrs.push(CfgAttribute::ip4(CfgAttrType::INTERNAL_IP4_ADDRESS, a));
        }
        if let Some(a) = self.leased_ip6 {
            // One address for this client: a /128 (§3.15.1 carries the length).
            attrs.push(CfgAttribute::ip6_prefix(
                CfgAttrType::INTERNAL_IP6_ADDRESS,
                a,
                128,
            ));
        }
        for &d in &self.policy.dns {
            match d {
                IpAddr::V4(d) if self.leased_ip.is_some() => {
                    attrs.push(CfgAttribute::ip4(CfgAttrType::INTERNAL_IP4_DNS, d));
                }
                IpAddr::V6(d) if self.leased_ip6.is_some() => {
                    attrs.push(CfgAttribute::ip6(CfgAttrType::INTERNAL_IP6_DNS, d));
                }
                _ => {}
            }
        }
        attrs
    }

    fn child_keys(&self, key_len: usize) -> Option<ChildKeys> {
        let (suite, sk_d, hs) = (self.suite?, self.sk_d.as_ref()?, self.handshake());
        ChildKeys::derive(suite.prf, sk_d, None, &hs.ni, &hs.nr, key_len).ok()
    }

    /// Initiator.
    pub(crate) fn on_auth_response(&mut self, io: &mut Io, inner: &[Payload]) {
        let a = pick(inner);
        let ok = match (a.idr, a.auth) {
            (Some(id), Some(auth)) => self.verify_peer(false, id, auth),
            _ => false,
        };
        if !ok {
            let reason = match a.error {
                Some(t) if a.auth.is_none() => IkeSaEnd::PeerError(t),
                _ => IkeSaEnd::LocalError("responder AUTH invalid"),
            };
            return self.end(io, reason);
        }
        self.state = State::Established;
        let id = self.id();
        io.events.push_back(Event::IkeSaEstablished {
            id,
            peer: self.remote,
        });
        let Some(our_spi) = self.offered_child_spi.take() else {
            self.forget_handshake();
            return;
        };
        match self.initiator_child(a.sa, a.tsi, a.tsr, a.cp, our_spi) {
            Ok(c) => {
                self.children.push(ChildRef {
                    inbound_spi: c.inbound_spi,
                    outbound_spi: c.outbound_spi,
                    local_ts: c.local_ts.clone(),
                    remote_ts: c.remote_ts.clone(),
                    replaced: false,
                });
                io.events.push_back(Event::ChildSaEstablished(Box::new(c)));
            }
            Err(t) => {
                io.spis.release(our_spi);
                io.events.push_back(Event::ChildSaFailed {
                    id,
                    reason: a.error.unwrap_or(t),
                });
            }
        }
        self.forget_handshake();
    }

    /// Authenticated, first CHILD SA keyed: the IKE_SA_INIT messages,
    /// nonces and SK_p keys have served (AUTH, SKEYSEED, the first KEYMAT).
    /// A gateway holding 100,000 IKE SAs keeps about 1 KiB less for each.
    fn forget_handshake(&mut self) {
        self.hs = None;
    }

    fn initiator_child(
        &mut self,
        sa: Option<&SecurityAssociation>,
        tsi: Option<&TrafficSelectors>,
        tsr: Option<&TrafficSelectors>,
        cp: Option<&Configuration>,
        our_spi: u32,
    ) -> Result<ChildSa, NotifyType> {
        let (Some(sa), Some(tsi), Some(tsr)) = (sa, tsi, tsr) else {
            return Err(NotifyType::NO_PROPOSAL_CHOSEN);
        };
        if sa.proposals.len() != 1 {
            return Err(NotifyType::NO_PROPOSAL_CHOSEN);
        }
        let (suite, peer_spi, _) =
            choose_esp(&self.policy, sa, our_spi, None).ok_or(NotifyType::NO_PROPOSAL_CHOSEN)?;
        if self.asks_virtual_ip() {
            let reply = cp.filter(|c| c.cfg_type == CfgType::REPLY);
            if self.policy.request_virtual_ip {
                self.virtual_ip = reply.and_then(|c| {
                    c.get(CfgAttrType::INTERNAL_IP4_ADDRESS)
                        .find_map(CfgAttribute::as_ip4)
                });
            }
            if self.policy.request_virtual_ip6 {
                self.virtual_ip6 = reply.and_then(|c| {
                    c.get(CfgAttrType::INTERNAL_IP6_ADDRESS)
                        .find_map(|a| a.as_ip6().map(|(a, _)| a))
                });
            }
            // §3.15.4: fewer families than asked for will do, none will not.
            if self.virtual_ip.is_none() && self.virtual_ip6.is_none() {
                return Err(NotifyType::FAILED_CP_REQUIRED);
            }
            self.dns = reply.map(dns_servers).unwrap_or_default();
        }
        let asked_i = if self.asks_virtual_ip() {
            self.any_of_asked_families()
        } else {
            self.policy.local_ts.clone()
        };
        // The responder may only narrow what we asked for (§2.9).
        if tsi.0.is_empty()
            || tsr.0.is_empty()
            || !within(&tsi.0, &asked_i)
            || !within(&tsr.0, &self.policy.remote_ts)
        {
            return Err(NotifyType::TS_UNACCEPTABLE);
        }
        let keys = self
            .child_keys(usize::from(suite.encr_bits / 8))
            .ok_or(NotifyType::NO_PROPOSAL_CHOSEN)?;
        Ok(ChildSa {
            ike_sa: self.id(),
            inbound_spi: our_spi,
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
            replaces: None,
            initiated: true,
        })
    }
}
