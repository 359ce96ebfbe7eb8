//! IKE_SA_INIT and IKE_AUTH: the first CHILD SA, retransmission, NAT
//! detection, cookies, identities and INITIAL_CONTACT.

use crate::harness::*;

#[test]
fn handshake_establishes_matching_child_sas_with_a_leased_address() {
    let mut p = Pair::new();
    p.connect(client_policy());
    p.drive();
    assert_eq!(p.client.established(), 1);
    assert_eq!(p.server.established(), 1);
    let (c, s) = (p.client.children(), p.server.children());
    assert_eq!((c.len(), s.len()), (1, 1));
    let (c, s) = (c[0], s[0]);
    // SPIs come from each side's allocator.
    assert_eq!(c.inbound_spi, 0xc000_0000);
    assert_eq!(s.inbound_spi, 0x5000_0000);
    assert_eq!(
        (c.outbound_spi, s.outbound_spi),
        (s.inbound_spi, c.inbound_spi)
    );
    assert_eq!(c.outbound_key.0.as_bytes(), s.inbound_key.0.as_bytes());
    assert_eq!(c.inbound_key.0.as_bytes(), s.outbound_key.0.as_bytes());
    assert_ne!(c.inbound_key.0.as_bytes(), c.outbound_key.0.as_bytes());
    assert_eq!(c.outbound_key.0.len(), 20, "AES-128 key + salt");
    // CP: the first pool address, and TSi narrowed to it.
    let vip = Ipv4Addr::new(10, 9, 0, 1);
    assert_eq!((c.virtual_ip, s.virtual_ip), (Some(vip), Some(vip)));
    assert_eq!(c.local_ts, [ts("10.9.0.1", "10.9.0.1")]);
    assert_eq!(s.remote_ts, [ts("10.9.0.1", "10.9.0.1")]);
    assert_eq!(c.remote_ts, [ts("10.1.0.0", "10.1.255.255")]);
    assert_eq!(s.local_ts, c.remote_ts);
    assert!(!c.udp_encap && !s.udp_encap);
    assert_eq!(s.peer, CLIENT.parse().unwrap());
    // Two round trips, nothing retransmitted.
    assert_eq!(p.wire.len(), 4);
    assert_eq!(p.server.ep.half_open_count(), 0);
    // AUTH is done: neither end keeps nonces, init messages or SK_p.
    assert_eq!(p.client.ep.holding_handshake(), 0);
    assert_eq!(p.server.ep.holding_handshake(), 0);
    assert!(format!("{c:?}").contains("Secret(<20 bytes>)"));
    // The status view for the control socket.
    let st: Vec<IkeSaStatus> = p.server.ep.ike_sas().collect();
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].state, IkeSaState::Established);
    assert_eq!(st[0].peer_id, Some(Identification::fqdn("client.test")));
    assert_eq!(st[0].children, [(s.inbound_spi, s.outbound_spi)]);
    assert_eq!(st[0].virtual_ip, Some(vip));
    assert!(!st[0].initiator);
    let suite = st[0].suite.unwrap();
    assert_eq!(
        (suite.encr_bits, suite.prf, suite.group),
        (128, Prf::HmacSha256, DhGroup::Curve25519)
    );
}

#[test]
fn lost_packets_are_retransmitted_and_answered_from_the_reply_cache() {
    let mut p = Pair::new();
    let mut n_init = 0;
    let mut n_auth_resp = 0;
    p.drop = Box::new(move |s| {
        if s.to_server && is_exchange(s, ExchangeType::IKE_SA_INIT) {
            n_init += 1;
            return n_init == 1;
        }
        if !s.to_server && is_exchange(s, ExchangeType::IKE_AUTH) {
            n_auth_resp += 1;
            return n_auth_resp == 1;
        }
        false
    });
    p.connect(client_policy());
    p.drive();
    let ms = Duration::from_millis;
    assert_eq!(
        p.exchanges(true, ExchangeType::IKE_SA_INIT),
        [ms(0), ms(500)]
    );
    assert_eq!(
        p.exchanges(true, ExchangeType::IKE_AUTH),
        [ms(500), ms(1000)]
    );
    // The responder answered the retransmitted IKE_AUTH from its cache: one CHILD SA.
    assert_eq!(p.exchanges(false, ExchangeType::IKE_AUTH).len(), 2);
    assert_eq!(p.server.children().len(), 1);
    assert_eq!(p.client.children().len(), 1);
    assert_eq!(p.server.spis.live().len(), 1);
}

/// A client with `retransmit` whose every datagram is lost, a minute on.
fn unanswered(retransmit: Option<Retransmit>) -> Pair {
    let mut p = Pair::new();
    p.drop = Box::new(|_| true);
    let mut policy = client_policy();
    if let Some(r) = retransmit {
        policy.retransmit = r;
    }
    p.connect(policy);
    p.drive_for(Duration::from_secs(60));
    p
}

#[test]
fn retransmission_backs_off_then_gives_up() {
    let p = unanswered(None);
    let ms = Duration::from_millis;
    assert_eq!(
        p.exchanges(true, ExchangeType::IKE_SA_INIT),
        [ms(0), ms(500), ms(1500), ms(3500), ms(7500)]
    );
    assert_eq!(p.client.ike_ended(), [IkeSaEnd::Timeout]);
    assert_eq!(p.client.ep.ike_sa_count(), 0);
    assert_eq!(p.client.ep.next_timeout(), None);
}

/// `[ike.retransmit]`'s growth factor and cap: waits of 1, 3, 5 (not 9)
/// and 5 s between the sends, then 5 s for the last answer.
#[test]
fn retransmission_grows_by_the_base_up_to_the_cap() {
    let p = unanswered(Some(Retransmit {
        initial: Duration::from_secs(1),
        base: 3.0,
        max_timeout: Duration::from_secs(5),
        max_tries: 5,
        jitter: 0.0,
    }));
    let s = Duration::from_secs;
    assert_eq!(
        p.exchanges(true, ExchangeType::IKE_SA_INIT),
        [s(0), s(1), s(4), s(9), s(14)]
    );
    assert_eq!(p.client.ike_ended(), [IkeSaEnd::Timeout]);
    assert_eq!(p.now - p.start, s(19), "the last send waited the cap");
}

/// `jitter` takes up to its fraction off each wait, at random, so clients
/// that started together drift apart instead of resending together.
#[test]
fn jitter_takes_a_random_part_off_each_wait() {
    let r = Retransmit {
        initial: Duration::from_secs(1),
        base: 2.0,
        max_timeout: Duration::from_secs(60),
        max_tries: 5,
        jitter: 0.5,
    };
    let p = unanswered(Some(r));
    let sends = p.exchanges(true, ExchangeType::IKE_SA_INIT);
    assert_eq!(sends.len(), 5, "{sends:?}");
    let waits: Vec<Duration> = sends.windows(2).map(|w| w[1] - w[0]).collect();
    for (n, wait) in waits.iter().enumerate() {
        let full = r.timeout(n as u32);
        assert!(
            *wait <= full && *wait >= full / 2,
            "wait {n}: {wait:?}, not within half of {full:?} and all of it"
        );
    }
    let shortened = waits
        .iter()
        .enumerate()
        .filter(|(n, wait)| **wait < r.timeout(*n as u32))
        .count();
    assert!(
        shortened >= 3,
        "{waits:?}: jitter shortened only {shortened}"
    );
    assert_eq!(p.client.ike_ended(), [IkeSaEnd::Timeout]);
}

#[test]
fn nat_is_detected_and_ike_moves_to_port_4500() {
    let mut p = Pair::new();
    p.nat = true;
    p.connect(client_policy());
    p.drive();
    let auth: Vec<&Seen> = p
        .wire
        .iter()
        .filter(|s| is_exchange(s, ExchangeType::IKE_AUTH))
        .collect();
    assert_eq!(auth.len(), 2);
    for s in &auth {
        // Server side on 4500; the client's 4500 shows through the NAT as 5500.
        let (server_end, client_end) = if s.to_server {
            (s.t.remote, s.t.local)
        } else {
            (s.t.local, s.t.remote)
        };
        assert_eq!(
            (server_end.port(), client_end.port()),
            (4500, 5500),
            "{s:?}"
        );
        assert_eq!(&s.t.payload[..4], [0, 0, 0, 0], "non-ESP marker");
    }
    let (c, s) = (p.client.children()[0], p.server.children()[0]);
    assert!(c.udp_encap && s.udp_encap);
    assert_eq!(s.peer, SocketAddr::new(IpAddr::V4(NAT_PUBLIC), 5500));
    assert_eq!(c.peer, "203.0.113.1:4500".parse().unwrap());
    assert_eq!(c.local, "10.0.0.2:4500".parse().unwrap());
}

#[test]
fn cookies_are_demanded_under_load_and_the_initiator_complies() {
    let mut p = Pair::new();
    p.server.ep.set_cookie_threshold(0);
    p.connect(client_policy());
    p.drive();
    let first_reply = p.wire.iter().find(|s| !s.to_server).unwrap();
    let m = Message::parse(&first_reply.t.payload).unwrap();
    assert!(m.notify(NotifyType::COOKIE).is_some());
    assert_eq!(p.exchanges(true, ExchangeType::IKE_SA_INIT).len(), 2);
    assert_eq!(p.client.children().len(), 1);
}

#[test]
fn initial_contact_from_a_rebooted_client_replaces_its_stale_sa() {
    let mut p = Pair::new();
    p.connect(client_policy());
    p.drive();
    let old = server_id(&p);
    // The client reboots: new endpoint, new SPIs, same identity.
    p.client = Node::new(3, 0xd000_0000);
    p.connect(client_policy());
    p.drive();
    assert_eq!(p.client.children().len(), 1);
    assert_eq!(p.server.established(), 2);
    let ended: Vec<_> = p
        .server
        .events
        .iter()
        .filter_map(|e| match e {
            Event::IkeSaDeleted { id, reason } => Some((*id, reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(ended, [(old, IkeSaEnd::Replaced)]);
    assert_eq!(p.server.ep.ike_sa_count(), 1);
    assert_eq!(
        p.server.spis.live().len(),
        1,
        "stale CHILD SA's SPI released"
    );
    let deleted = p
        .server
        .events
        .iter()
        .filter(|e| matches!(e, Event::ChildSaDeleted { .. }))
        .count();
    assert_eq!(deleted, 1);
}

/// The client's session is up; then the client reboots and comes back
/// with the same identity but, as some clients do, without INITIAL_CONTACT.
/// Returns the server's id of the first session.
fn comes_back_without_initial_contact(p: &mut Pair) -> IkeSaId {
    p.connect(client_policy());
    p.drive();
    let old = server_id(p);
    p.client = Node::new(3, 0xd000_0000);
    p.client.ep.set_send_initial_contact(false);
    p.connect(client_policy());
    p.drive();
    assert_eq!(p.client.children().len(), 1, "the new session is up");
    assert_eq!(p.server.established(), 2);
    old
}

/// Requests the server sent to its SA `id` (our SPI is the responder's).
fn server_requests_to(p: &Pair, id: IkeSaId, ex: ExchangeType) -> usize {
    p.wire
        .iter()
        .filter(|s| !s.to_server && is_exchange(s, ex))
        .filter_map(|s| {
            Message::parse(strip_non_esp_marker(&s.t.payload).unwrap_or(&s.t.payload)).ok()
        })
        .filter(|m| m.header.spi_r == id.0 && !m.header.flags.response())
        .count()
}

#[test]
fn without_initial_contact_and_by_default_the_old_session_lives_beside_the_new() {
    let mut p = Pair::new();
    let old = comes_back_without_initial_contact(&mut p);
    assert!(p.server.ike_ended().is_empty());
    assert_eq!(p.server.ep.ike_sa_count(), 2);
    assert_eq!(server_requests_to(&p, old, ExchangeType::INFORMATIONAL), 0);
}

#[test]
fn unique_replace_deletes_the_older_session_of_the_identity() {
    let mut p = Pair::new();
    p.server.ep.set_unique_replace(true);
    let old = comes_back_without_initial_contact(&mut p);
    assert!(
        server_requests_to(&p, old, ExchangeType::INFORMATIONAL) >= 1,
        "the old session is sent a DELETE"
    );
    // Nothing answers for the old session (the client rebooted): the
    // server gives it up after its retransmissions.
    p.drive_for(Duration::from_secs(300));
    assert_eq!(p.server.ike_ended_ids(), [old]);
    assert_eq!(p.server.ep.ike_sa_count(), 1);
    assert_eq!(
        p.server.spis.live().len(),
        1,
        "the old CHILD SA's SPI released"
    );
    assert!(p.client.ike_ended().is_empty(), "the new session stays");
    assert_eq!(child_deletions(&p.client), 0);
}

#[test]
fn unique_replace_leaves_a_rekeyed_session_alone() {
    // A rekey makes a second IKE SA of the identity too; it is no new
    // session and must not delete the one it replaces by other means.
    let mut p = Pair::new();
    p.server.ep.set_unique_replace(true);
    p.connect(client_policy());
    p.drive();
    let old = server_id(&p);
    assert!(p.server.ep.rekey_ike_sa(p.now, old));
    p.drive();
    assert_eq!(p.server.ike_ended(), [IkeSaEnd::Rekeyed]);
    assert_eq!(p.server.ep.ike_sa_count(), 1);
    assert!(p.client.ike_ended().iter().all(|e| *e == IkeSaEnd::Rekeyed));
    assert_eq!(child_deletions(&p.client), 0);
}

#[test]
fn per_peer_policies_pick_the_psk_by_identity() {
    let alice = {
        let mut p = client_policy();
        p.local_id = Identification::fqdn("alice.test");
        p.psk = Secret::from_slice(b"alice's own secret");
        p
    };
    let server_for = |psk: &'static [u8], ts: TrafficSelector| {
        let mut s = server_policy();
        s.psk = Secret::from_slice(psk);
        s.local_ts = vec![ts];
        Arc::new(s)
    };
    let a = server_for(b"alice's own secret", ts("10.1.0.0", "10.1.0.255"));
    let lookup: PeerPolicy = Box::new(move |id: &Identification| {
        (id == &Identification::fqdn("alice.test")).then(|| a.clone())
    });
    let mut p = Pair::new();
    p.server.ep.set_peer_policy(lookup);
    p.connect(alice.clone());
    p.drive();
    let c = p.client.children();
    assert_eq!(c.len(), 1);
    // Alice's selectors, not the default policy's.
    assert_eq!(c[0].remote_ts, [ts("10.1.0.0", "10.1.0.255")]);
    // An identity the lookup does not know is refused.
    let mut bob = alice;
    bob.local_id = Identification::fqdn("bob.test");
    p.client = Node::new(4, 0xe000_0000);
    p.connect(bob);
    p.drive();
    assert_eq!(
        p.client.ike_ended(),
        [IkeSaEnd::PeerError(NotifyType::AUTHENTICATION_FAILED)]
    );
}

#[test]
fn the_endpoint_can_move_to_the_control_plane_thread() {
    fn send<T: Send>() {}
    send::<IkeEndpoint>();
    send::<Event>();
}

#[test]
fn initial_contact_finds_stale_sas_after_a_gateway_initiated_rekey() {
    let mut p = Pair::new();
    p.connect(client_policy());
    p.drive();
    let sid = server_id(&p);
    assert!(p.server.ep.rekey_ike_sa(p.now, sid));
    p.drive();
    // The client reboots; its identity's old (rekeyed) SA must go.
    p.client = Node::new(6, 0xd000_0000);
    p.connect(client_policy());
    p.drive();
    let ended: Vec<IkeSaEnd> = p.server.ike_ended();
    assert_eq!(ended, [IkeSaEnd::Rekeyed, IkeSaEnd::Replaced]);
    assert_eq!(p.server.ep.ike_sa_count(), 1);
    assert_eq!(p.server.spis.live().len(), 1);
}

#[test]
fn a_handshake_may_start_on_port_4500() {
    let mut p = Pair::new();
    let local: SocketAddr = "198.51.100.7:4500".parse().unwrap();
    p.client
        .ep
        .connect(
            p.now,
            local,
            "203.0.113.1:4500".parse().unwrap(),
            client_policy(),
        )
        .unwrap();
    p.drive();
    assert!(
        p.wire.iter().all(|s| s.t.payload[..4] == [0, 0, 0, 0]),
        "every IKE datagram marked"
    );
    assert_eq!(p.client.children().len(), 1);
    assert_eq!(p.server.children().len(), 1);
    // Error answers too: a client the responder can't agree with.
    let mut q = Pair::new();
    let mut c = client_policy();
    c.ike_prfs = vec![Prf::HmacSha384];
    q.client
        .ep
        .connect(q.now, local, "203.0.113.1:4500".parse().unwrap(), c)
        .unwrap();
    q.drive();
    assert_eq!(
        q.client.ike_ended(),
        [IkeSaEnd::PeerError(NotifyType::NO_PROPOSAL_CHOSEN)]
    );
}
