//! IKE_SA_INIT as responder (RFC 7296 §1.2): choose a suite or refuse
//! with NO_PROPOSAL_CHOSEN / INVALID_KE_PAYLOAD / COOKIE (§2.6), keeping no
//! state for refusals.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::ike_sa::IkeSa;
use super::init::{ke_of, nat_between, natd, nonce_of, sa_of};
use super::io::Io;
use super::proposal::{choose_ike, ike_chosen};
use super::Policy;
use crate::ike::crypto::DhPrivate;
use crate::ike::wire::{
    ExchangeType, Header, KeyExchange, Message, Nonce, Notify, NotifyType, Payload,
    SecurityAssociation,
};

/// What the responder does with an IKE_SA_INIT request.
pub(crate) enum InitOutcome {
    /// A new half-open SA (its response already queued).
    Created(Box<IkeSa>),
    /// Refused with an unencrypted notify; no state kept.
    Refused,
    /// Dropped (malformed).
    Dropped,
}

/// Unencrypted error response to IKE_SA_INIT with a zero responder SPI.
fn refuse(io: &mut Io, local: SocketAddr, remote: SocketAddr, req: &Header, n: Notify) {
    let mut m = Message {
        header: Header::new(
            req.spi_i,
            0,
            ExchangeType::IKE_SA_INIT,
            crate::ike::wire::Flags::RESPONSE,
            0,
        ),
        payloads: vec![Payload::Notify(n)],
    };
    io.transmits.push_back(super::Transmit {
        local,
        remote,
        payload: marked(local, m.emit()),
    });
}

/// Adds the non-ESP marker on port 4500.
pub(crate) fn marked(local: SocketAddr, msg: Vec<u8>) -> Vec<u8> {
    if local.port() == 4500 {
        [&crate::ike::wire::NON_ESP_MARKER[..], &msg].concat()
    } else {
        msg
    }
}

/// Cookie = prf(secret, Ni | IPi | SPIi) (§2.6), so no state is kept.
pub(crate) fn cookie(secret: &[u8], ni: &[u8], remote: SocketAddr, spi_i: u64) -> Vec<u8> {
    let ip = match remote.ip() {
        std::net::IpAddr::V4(a) => a.octets().to_vec(),
        std::net::IpAddr::V6(a) => a.octets().to_vec(),
    };
    let v = crate::ike::crypto::Prf::HmacSha256.prf(secret, &[ni, &ip, &spi_i.to_be_bytes()]);
    v.as_bytes().get(..16).unwrap_or_default().to_vec()
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn on_init_request(
    io: &mut Io,
    now: Instant,
    local: SocketAddr,
    remote: SocketAddr,
    raw: &[u8],
    m: &Message,
    policy: &Arc<Policy>,
    cookie_secret: Option<&[u8]>,
) -> InitOutcome {
    let (Some(sa), Some(ke), Some(ni)) = (sa_of(m), ke_of(m), nonce_of(m)) else {
        refuse(
            io,
            local,
            remote,
            &m.header,
            Notify::new(NotifyType::INVALID_SYNTAX, Vec::new()),
        );
        return InitOutcome::Refused;
    };
    if let Some(secret) = cookie_secret {
        let want = cookie(secret, &ni.0, remote, m.header.spi_i);
        // §2.6: the COOKIE notify must come first.
        let got = match m.payloads.first() {
            Some(Payload::Notify(n)) if n.notify_type == NotifyType::COOKIE => Some(&n.data),
            _ => None,
        };
        if got != Some(&want) {
            refuse(
                io,
                local,
                remote,
                &m.header,
                Notify::new(NotifyType::COOKIE, want),
            );
            return InitOutcome::Refused;
        }
    }
    let Some((suite, _)) = choose_ike(policy, sa, ke.group) else {
        refuse(
            io,
            local,
            remote,
            &m.header,
            Notify::new(NotifyType::NO_PROPOSAL_CHOSEN, Vec::new()),
        );
        return InitOutcome::Refused;
    };
    if suite.group.id() != ke.group {
        let data = suite.group.id().to_be_bytes().to_vec();
        refuse(
            io,
            local,
            remote,
            &m.header,
            Notify::new(NotifyType::INVALID_KE_PAYLOAD, data),
        );
        return InitOutcome::Refused;
    }
    let number = sa
        .proposals
        .iter()
        .find(|p| {
            choose_ike(
                policy,
                &SecurityAssociation {
                    proposals: vec![(*p).clone()],
                },
                ke.group,
            )
            .is_some()
        })
        .map_or(1, |p| p.number);
    let dh = DhPrivate::generate(suite.group, io.rng.as_mut());
    let Ok(g_ir) = dh.shared_secret(&ke.data) else {
        refuse(
            io,
            local,
            remote,
            &m.header,
            Notify::new(NotifyType::INVALID_SYNTAX, Vec::new()),
        );
        return InitOutcome::Refused;
    };
    let mut s = IkeSa::new(false, local, remote, policy.clone());
    s.spi_i = m.header.spi_i;
    s.spi_r = io.random_spi();
    let hs = s.hs();
    hs.ni = ni.0.clone();
    hs.nr = io.nonce();
    hs.init_req = raw.to_vec();
    s.nat_detected = nat_between(m, local, remote);
    if !s.derive_keys(suite, &g_ir) {
        return InitOutcome::Dropped;
    }
    let mut payloads = vec![
        Payload::Sa(SecurityAssociation {
            proposals: vec![ike_chosen(number, suite)],
        }),
        Payload::Ke(KeyExchange {
            group: suite.group.id(),
            data: dh.public(),
        }),
        Payload::Nonce(Nonce(s.handshake().nr.clone())),
    ];
    payloads.extend(natd(s.spi_i, s.spi_r, local, remote));
    let mut resp = Message {
        header: s.header(ExchangeType::IKE_SA_INIT, true, 0),
        payloads,
    };
    s.hs().init_resp = resp.emit();
    s.next_peer_request_id = 1;
    s.next_request_id = 0;
    // Cached with the marker when IKE_SA_INIT came to 4500 (§2.23 allows it).
    let d = s.datagram(&s.handshake().init_resp);
    io.transmits.push_back(super::Transmit {
        local,
        remote,
        payload: d.clone(),
    });
    s.last_response = Some((0, d));
    s.expires = Some(now + std::time::Duration::from_secs(30));
    InitOutcome::Created(Box::new(s))
}
