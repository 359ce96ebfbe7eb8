//! IKE_SA_INIT (RFC 7296 §1.2): negotiation, KE, nonces, NAT detection
//! (§2.23), INVALID_KE_PAYLOAD (§1.3 end), cookies (§2.6).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::ike_sa::{IkeSa, RequestKind, State};
use super::io::Io;
use super::proposal::{accept_ike, ike_offer, IkeSuite};
use super::{IkeSaEnd, Policy};
use crate::ike::crypto::{nat_detection_hash, skeyseed, DhGroup, DhPrivate, IkeSaKeys, SkCipher};
use crate::ike::wire::{
    ExchangeType, KeyExchange, Message, Nonce, Notify, NotifyType, Payload, SecurityAssociation,
};

fn find<'a, T>(m: &'a Message, f: impl Fn(&'a Payload) -> Option<&'a T>) -> Option<&'a T> {
    m.payloads.iter().find_map(f)
}

pub(crate) fn sa_of(m: &Message) -> Option<&SecurityAssociation> {
    find(m, |p| {
        if let Payload::Sa(x) = p {
            Some(x)
        } else {
            None
        }
    })
}

pub(crate) fn ke_of(m: &Message) -> Option<&KeyExchange> {
    find(m, |p| {
        if let Payload::Ke(x) = p {
            Some(x)
        } else {
            None
        }
    })
}

pub(crate) fn nonce_of(m: &Message) -> Option<&Nonce> {
    find(m, |p| {
        if let Payload::Nonce(x) = p {
            Some(x)
        } else {
            None
        }
    })
}

pub(crate) fn natd(spi_i: u64, spi_r: u64, local: SocketAddr, remote: SocketAddr) -> [Payload; 2] {
    [
        Payload::Notify(Notify::new(
            NotifyType::NAT_DETECTION_SOURCE_IP,
            nat_detection_hash(spi_i, spi_r, local).to_vec(),
        )),
        Payload::Notify(Notify::new(
            NotifyType::NAT_DETECTION_DESTINATION_IP,
            nat_detection_hash(spi_i, spi_r, remote).to_vec(),
        )),
    ]
}

/// True if the peer's NAT-D notifies disagree with the addresses we see (§2.23).
pub(crate) fn nat_between(m: &Message, local: SocketAddr, remote: SocketAddr) -> bool {
    let (si, sr) = (m.header.spi_i, m.header.spi_r);
    let dst_ok = m
        .notify(NotifyType::NAT_DETECTION_DESTINATION_IP)
        .is_none_or(|n| n.data == nat_detection_hash(si, sr, local));
    let srcs: Vec<_> = m
        .notifies()
        .filter(|n| n.notify_type == NotifyType::NAT_DETECTION_SOURCE_IP)
        .collect();
    let src_ok = srcs.is_empty()
        || srcs
            .iter()
            .any(|n| n.data == nat_detection_hash(si, sr, remote));
    !(dst_ok && src_ok)
}

fn port_4500(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip(), 4500)
}

impl IkeSa {
    /// Initiator: builds and sends the IKE_SA_INIT request.
    pub fn start(
        io: &mut Io,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        policy: Arc<Policy>,
    ) -> Option<IkeSa> {
        let group = *policy.ike_groups.first()?;
        let mut sa = IkeSa::new(true, local, remote, policy);
        sa.spi_i = io.random_spi();
        sa.hs().ni = io.nonce();
        sa.dh = Some(Box::new(DhPrivate::generate(group, io.rng.as_mut())));
        sa.send_init(io, now);
        Some(sa)
    }

    fn send_init(&mut self, io: &mut Io, now: Instant) {
        let Some(dh) = &self.dh else { return };
        let mut payloads = Vec::new();
        if let Some(c) = &self.handshake().cookie {
            payloads.push(Payload::Notify(Notify::new(NotifyType::COOKIE, c.clone())));
        }
        payloads.push(Payload::Sa(ike_offer(&self.policy)));
        payloads.push(Payload::Ke(KeyExchange {
            group: dh.group().id(),
            data: dh.public(),
        }));
        payloads.push(Payload::Nonce(Nonce(self.handshake().ni.clone())));
        payloads.extend(natd(self.spi_i, 0, self.local, self.remote));
        let mut m = Message {
            header: self.header(ExchangeType::IKE_SA_INIT, false, 0),
            payloads,
        };
        let bytes = m.emit();
        self.hs().init_req = bytes.clone();
        self.next_request_id = 1;
        self.send_request_bytes(io, now, 0, RequestKind::Init, bytes);
    }

    pub(crate) fn on_init_response(
        &mut self,
        io: &mut Io,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        raw: &[u8],
        m: &Message,
    ) {
        // Error notifies come with a zero responder SPI and no SA (§1.3, §2.6).
        if let Some(n) = m.notify(NotifyType::INVALID_KE_PAYLOAD) {
            let wanted = <[u8; 2]>::try_from(n.data.as_slice())
                .ok()
                .map(u16::from_be_bytes);
            match wanted.and_then(DhGroup::from_id) {
                Some(g)
                    if self.policy.ike_groups.contains(&g)
                        && self.dh.as_ref().map(|d| d.group()) != Some(g) =>
                {
                    self.dh = Some(Box::new(DhPrivate::generate(g, io.rng.as_mut())));
                    self.pending = None;
                    self.send_init(io, now);
                }
                _ => self.fail(io, IkeSaEnd::PeerError(NotifyType::INVALID_KE_PAYLOAD)),
            }
            return;
        }
        if let Some(n) = m.notify(NotifyType::COOKIE) {
            if self.handshake().cookie.is_none() && !n.data.is_empty() && n.data.len() <= 64 {
                self.hs().cookie = Some(n.data.clone());
                self.pending = None;
                self.send_init(io, now);
            }
            return;
        }
        if let Some(n) = m.notifies().find(|n| n.notify_type.is_error()) {
            return self.fail(io, IkeSaEnd::PeerError(n.notify_type));
        }
        let (Some(sa), Some(ke), Some(nr)) = (sa_of(m), ke_of(m), nonce_of(m)) else {
            return; // malformed: ignore, keep retransmitting
        };
        if m.header.spi_r == 0 {
            return;
        }
        let Some(suite) = accept_ike(&self.policy, sa) else {
            return self.fail(
                io,
                IkeSaEnd::LocalError("responder chose a proposal we did not offer"),
            );
        };
        let Some(dh) = &self.dh else { return };
        if ke.group != dh.group().id() || suite.group != dh.group() {
            return self.fail(io, IkeSaEnd::LocalError("responder KE group mismatch"));
        }
        let Ok(g_ir) = dh.shared_secret(&ke.data) else {
            return self.fail(io, IkeSaEnd::LocalError("invalid responder KE"));
        };
        self.spi_r = m.header.spi_r;
        self.hs().nr = nr.0.clone();
        self.hs().init_resp = raw.to_vec();
        if !self.derive_keys(suite, &g_ir) {
            return self.fail(io, IkeSaEnd::LocalError("key derivation failed"));
        }
        self.dh = None;
        self.pending = None;
        // §2.23: behind a NAT (either side) the initiator moves to 4500.
        if nat_between(m, local, remote) {
            self.nat_detected = true;
            self.local = port_4500(self.local);
            self.remote = port_4500(self.remote);
        }
        self.state = State::AuthSent;
        self.send_auth(io, now);
    }

    pub(crate) fn derive_keys(
        &mut self,
        suite: IkeSuite,
        g_ir: &crate::ike::crypto::Secret,
    ) -> bool {
        let hs = self.handshake();
        let seed = skeyseed(suite.prf, &hs.ni, &hs.nr, g_ir);
        let Ok(keys) = IkeSaKeys::derive(
            suite.prf,
            &seed,
            &hs.ni,
            &hs.nr,
            self.spi_i,
            self.spi_r,
            usize::from(suite.encr_bits / 8),
        ) else {
            return false;
        };
        let (tx, rx) = if self.initiator {
            (&keys.sk_ei, &keys.sk_er)
        } else {
            (&keys.sk_er, &keys.sk_ei)
        };
        let (Ok(tx), Ok(rx)) = (SkCipher::new(tx), SkCipher::new(rx)) else {
            return false;
        };
        self.tx = Some(tx);
        self.rx = Some(rx);
        self.sk_d = Some(keys.sk_d);
        let hs = self.hs();
        hs.sk_pi = Some(keys.sk_pi);
        hs.sk_pr = Some(keys.sk_pr);
        self.suite = Some(suite);
        true
    }

    fn fail(&mut self, io: &mut Io, reason: IkeSaEnd) {
        self.pending = None;
        self.end(io, reason);
    }
}
