//! The IKE state machines end to end in simulated time: an initiator and a
//! responder over an in-memory network (quinn-proto's `Pair` style), with
//! loss, a NAT, and misconfigurations.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use controlplane::ike::crypto::{DhGroup, Prf, Secret};
use controlplane::ike::sa::*;
use controlplane::ike::wire::{
    strip_non_esp_marker, ExchangeType, Identification, Message, NotifyType, TrafficSelector,
};
use rand::SeedableRng;

#[derive(Default)]
struct SpiLog {
    next: u32,
    allocated: Vec<u32>,
    released: Vec<u32>,
}

/// An SPI allocator the test can inspect.
#[derive(Clone, Default)]
struct Spis(Arc<Mutex<SpiLog>>);

impl Spis {
    fn starting_at(next: u32) -> Self {
        Spis(Arc::new(Mutex::new(SpiLog {
            next,
            ..Default::default()
        })))
    }
    fn live(&self) -> Vec<u32> {
        let g = self.0.lock().unwrap();
        g.allocated
            .iter()
            .filter(|s| !g.released.contains(s))
            .copied()
            .collect()
    }
}

impl SpiAllocator for Spis {
    fn allocate(&mut self) -> Option<u32> {
        let mut g = self.0.lock().unwrap();
        let s = g.next;
        g.next += 1;
        g.allocated.push(s);
        Some(s)
    }
    fn release(&mut self, spi: u32) {
        self.0.lock().unwrap().released.push(spi);
    }
}

fn ts(a: &str, b: &str) -> TrafficSelector {
    TrafficSelector::range(a.parse().unwrap(), b.parse().unwrap())
}

fn client_policy() -> Policy {
    Policy {
        local_id: Identification::fqdn("client.test"),
        remote_id: Some(Identification::fqdn("gw.test")),
        psk: Secret::from_slice(b"correct horse battery staple"),
        ike_encr_bits: vec![128],
        ike_prfs: vec![Prf::HmacSha256],
        ike_groups: vec![DhGroup::Curve25519],
        esp_encr_bits: vec![128],
        esp_groups: vec![],
        local_ts: vec![],
        remote_ts: vec![ts("10.1.0.0", "10.1.255.255")],
        request_virtual_ip: true,
        request_virtual_ip6: false,
        dns: vec![],
        pool: None,
        retransmit: Retransmit::default(),
    }
}

fn server_policy() -> Policy {
    Policy {
        local_id: Identification::fqdn("gw.test"),
        remote_id: None,
        psk: Secret::from_slice(b"correct horse battery staple"),
        ike_encr_bits: vec![256, 128],
        ike_prfs: vec![Prf::HmacSha512, Prf::HmacSha256],
        ike_groups: vec![DhGroup::Curve25519, DhGroup::Ecp256],
        esp_encr_bits: vec![256, 128],
        esp_groups: vec![DhGroup::Curve25519, DhGroup::Ecp256],
        local_ts: vec![ts("10.0.0.0", "10.255.255.255")],
        remote_ts: vec![ts("0.0.0.0", "255.255.255.255")],
        request_virtual_ip: false,
        request_virtual_ip6: false,
        dns: vec![Ipv4Addr::new(10, 1, 0, 53).into()],
        pool: None,
        retransmit: Retransmit::default(),
    }
}

const CLIENT: &str = "198.51.100.7:500";
const SERVER: &str = "203.0.113.1:500";
const NAT_PUBLIC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);

struct Node {
    ep: IkeEndpoint,
    spis: Spis,
    events: Vec<Event>,
}

impl Node {
    fn new(seed: u64, first_spi: u32) -> Node {
        let spis = Spis::starting_at(first_spi);
        let ep = IkeEndpoint::new(
            Box::new(rand::rngs::StdRng::seed_from_u64(seed)),
            Box::new(spis.clone()),
        );
        Node {
            ep,
            spis,
            events: Vec::new(),
        }
    }

    fn children(&self) -> Vec<&ChildSa> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::ChildSaEstablished(c) => Some(&**c),
                _ => None,
            })
            .collect()
    }

    fn ike_ended(&self) -> Vec<IkeSaEnd> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::IkeSaDeleted { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }

    fn established(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::IkeSaEstablished { .. }))
            .count()
    }
}

/// One datagram seen on the wire, after NAT on the client side.
#[derive(Clone, Debug)]
struct Seen {
    at: Duration,
    to_server: bool,
    t: Transmit,
}

struct Pair {
    start: Instant,
    now: Instant,
    client: Node,
    server: Node,
    /// Client sits behind a NAT that maps its private source to NAT_PUBLIC.
    nat: bool,
    /// Decides per datagram (seen index, datagram) whether it is lost.
    drop: Box<dyn FnMut(&Seen) -> bool>,
    wire: Vec<Seen>,
    queue: VecDeque<(bool, Transmit)>,
}

impl Pair {
    fn new() -> Pair {
        let mut server = Node::new(2, 0x5000_0000);
        server.ep.accept(
            server_policy(),
            Some(AddressPool::new(Ipv4Addr::new(10, 9, 0, 1), 4)),
        );
        let now = Instant::now();
        Pair {
            start: now,
            now,
            client: Node::new(1, 0xc000_0000),
            server,
            nat: false,
            drop: Box::new(|_| false),
            wire: Vec::new(),
            queue: VecDeque::new(),
        }
    }

    fn connect(&mut self, p: Policy) -> IkeSaId {
        let local: SocketAddr = if self.nat {
            "10.0.0.2:500".parse().unwrap()
        } else {
            CLIENT.parse().unwrap()
        };
        self.client
            .ep
            .connect(self.now, local, SERVER.parse().unwrap(), p)
            .unwrap()
    }

    /// NAT: the client's private (ip, port) appears as NAT_PUBLIC with port + 1000.
    fn nat_out(&self, a: SocketAddr) -> SocketAddr {
        if self.nat {
            SocketAddr::new(IpAddr::V4(NAT_PUBLIC), a.port() + 1000)
        } else {
            a
        }
    }

    fn nat_in(&self, a: SocketAddr) -> SocketAddr {
        if self.nat && a.ip() == IpAddr::V4(NAT_PUBLIC) {
            SocketAddr::new("10.0.0.2".parse().unwrap(), a.port() - 1000)
        } else {
            a
        }
    }

    fn collect(&mut self) {
        while let Some(t) = self.client.ep.poll_transmit() {
            self.queue.push_back((true, t));
        }
        while let Some(t) = self.server.ep.poll_transmit() {
            self.queue.push_back((false, t));
        }
        while let Some(e) = self.client.ep.poll_event() {
            self.client.events.push(e);
        }
        while let Some(e) = self.server.ep.poll_event() {
            self.server.events.push(e);
        }
    }

    /// Delivers everything queued; true if anything moved.
    fn step(&mut self) -> bool {
        self.collect();
        let mut moved = false;
        while let Some((to_server, t)) = self.queue.pop_front() {
            moved = true;
            self.deliver(to_server, t);
        }
        moved
    }

    /// Delivers the `n`th queued datagram going to the server (or to the
    /// client): lets a test choose the order of crossing messages.
    fn deliver_nth(&mut self, to_server: bool, n: usize) {
        self.collect();
        let (i, _) = self
            .queue
            .iter()
            .enumerate()
            .filter(|(_, (s, _))| *s == to_server)
            .nth(n)
            .expect("a datagram in that direction");
        let (s, t) = self.queue.remove(i).unwrap();
        self.deliver(s, t);
    }

    fn deliver(&mut self, to_server: bool, mut t: Transmit) {
        if to_server {
            t.local = self.nat_out(t.local);
        }
        let seen = Seen {
            at: self.now - self.start,
            to_server,
            t: t.clone(),
        };
        self.wire.push(seen.clone());
        if (self.drop)(&seen) {
            return;
        }
        if to_server {
            self.server
                .ep
                .handle_datagram(self.now, t.remote, t.local, &t.payload);
        } else {
            let dst = self.nat_in(t.remote);
            self.client
                .ep
                .handle_datagram(self.now, dst, t.local, &t.payload);
        }
        self.collect();
    }

    /// Runs until quiet or `limit` of simulated time has passed.
    fn drive_for(&mut self, limit: Duration) {
        let end = self.now + limit;
        loop {
            if self.step() {
                continue;
            }
            let next = [self.client.ep.next_timeout(), self.server.ep.next_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.client.ep.handle_timeout(self.now);
                    self.server.ep.handle_timeout(self.now);
                }
                _ => break,
            }
        }
    }

    fn drive(&mut self) {
        self.drive_for(Duration::from_secs(5));
    }

    fn exchanges(&self, to_server: bool, ex: ExchangeType) -> Vec<Duration> {
        self.wire
            .iter()
            .filter(|s| s.to_server == to_server)
            .filter(|s| is_exchange(s, ex))
            .map(|s| s.at)
            .collect()
    }
}

fn is_exchange(s: &Seen, ex: ExchangeType) -> bool {
    let server_port = if s.to_server {
        s.t.remote.port()
    } else {
        s.t.local.port()
    };
    let b = if server_port == 500 {
        Some(&s.t.payload[..])
    } else {
        strip_non_esp_marker(&s.t.payload)
    };
    b.and_then(|b| Message::parse(b).ok())
        .is_some_and(|m| m.header.exchange == ex)
}

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

#[test]
fn retransmission_backs_off_then_gives_up() {
    let mut p = Pair::new();
    p.drop = Box::new(|_| true);
    p.connect(client_policy());
    p.drive_for(Duration::from_secs(60));
    let ms = Duration::from_millis;
    assert_eq!(
        p.exchanges(true, ExchangeType::IKE_SA_INIT),
        [ms(0), ms(500), ms(1500), ms(3500), ms(7500)]
    );
    assert_eq!(p.client.ike_ended(), [IkeSaEnd::Timeout]);
    assert_eq!(p.client.ep.ike_sa_count(), 0);
    assert_eq!(p.client.ep.next_timeout(), None);
}

#[test]
fn wrong_psk_fails_cleanly_on_both_sides() {
    let mut p = Pair::new();
    let mut c = client_policy();
    c.psk = Secret::from_slice(b"wrong");
    p.connect(c);
    p.drive();
    assert_eq!(
        p.server.ike_ended(),
        [IkeSaEnd::LocalError("AUTHENTICATION_FAILED")]
    );
    assert_eq!(
        p.client.ike_ended(),
        [IkeSaEnd::PeerError(NotifyType::AUTHENTICATION_FAILED)]
    );
    assert_eq!(p.client.established() + p.server.established(), 0);
    assert!(p.client.children().is_empty() && p.server.children().is_empty());
    assert_eq!(
        (p.client.ep.ike_sa_count(), p.server.ep.ike_sa_count()),
        (0, 0)
    );
    assert!(p.client.spis.live().is_empty(), "offered SPI released");
    assert_eq!(p.server.ep.half_open_count(), 0);
}

#[test]
fn wrong_responder_identity_is_refused_by_the_initiator() {
    let mut p = Pair::new();
    let mut c = client_policy();
    c.remote_id = Some(Identification::fqdn("other.test"));
    p.connect(c);
    p.drive();
    assert_eq!(
        p.client.ike_ended(),
        [IkeSaEnd::LocalError("responder AUTH invalid")]
    );
    assert_eq!(p.client.established(), 0);
}

#[test]
fn group_mismatch_recovers_with_invalid_ke_payload() {
    let mut p = Pair::new();
    let mut s = server_policy();
    s.ike_groups = vec![DhGroup::Ecp256];
    p.server
        .ep
        .accept(s, Some(AddressPool::new(Ipv4Addr::new(10, 9, 0, 1), 4)));
    let mut c = client_policy();
    c.ike_groups = vec![DhGroup::Curve25519, DhGroup::Ecp256];
    p.connect(c);
    p.drive();
    assert_eq!(p.exchanges(true, ExchangeType::IKE_SA_INIT).len(), 2);
    let first_reply = p.wire.iter().find(|s| !s.to_server).unwrap();
    let m = Message::parse(&first_reply.t.payload).unwrap();
    assert_eq!(
        m.notify(NotifyType::INVALID_KE_PAYLOAD).unwrap().data,
        [0, 19]
    );
    assert_eq!(p.client.children().len(), 1);
    assert_eq!(p.server.children().len(), 1);
}

#[test]
fn no_common_proposal_fails_the_initiator() {
    let mut p = Pair::new();
    let mut c = client_policy();
    c.ike_prfs = vec![Prf::HmacSha384];
    p.connect(c);
    p.drive();
    assert_eq!(
        p.client.ike_ended(),
        [IkeSaEnd::PeerError(NotifyType::NO_PROPOSAL_CHOSEN)]
    );
    assert_eq!(p.server.ep.ike_sa_count(), 0, "responder kept no state");
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
fn initiator_deletes_the_ike_sa_and_both_sides_drop_everything() {
    let mut p = Pair::new();
    let id = p.connect(client_policy());
    p.drive();
    assert!(p.client.ep.delete_ike_sa(p.now, id));
    p.drive();
    assert_eq!(p.client.ike_ended(), [IkeSaEnd::Deleted]);
    assert_eq!(p.server.ike_ended(), [IkeSaEnd::Deleted]);
    for n in [&p.client, &p.server] {
        let deleted = n
            .events
            .iter()
            .filter(|e| matches!(e, Event::ChildSaDeleted { .. }))
            .count();
        assert_eq!(deleted, 1);
        assert!(n.spis.live().is_empty());
        assert_eq!(n.ep.ike_sa_count(), 0);
    }
    // The lease went back: the next client gets the same address.
    p.connect(client_policy());
    p.drive();
    assert_eq!(
        p.client.children()[1].virtual_ip,
        Some(Ipv4Addr::new(10, 9, 0, 1))
    );
}

#[test]
fn child_sa_delete_names_each_sides_inbound_spi() {
    let mut p = Pair::new();
    let id = p.connect(client_policy());
    p.drive();
    let spi = p.client.children()[0].inbound_spi;
    assert!(p.client.ep.delete_child_sa(p.now, id, spi));
    p.drive();
    let del = |n: &Node| {
        n.events
            .iter()
            .find_map(|e| match e {
                Event::ChildSaDeleted {
                    inbound_spi,
                    outbound_spi,
                    ..
                } => Some((*inbound_spi, *outbound_spi)),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(del(&p.client), (0xc000_0000, 0x5000_0000));
    assert_eq!(del(&p.server), (0x5000_0000, 0xc000_0000));
    assert!(p.client.ike_ended().is_empty() && p.server.ike_ended().is_empty());
    assert!(p.server.spis.live().is_empty());
}

#[test]
fn liveness_check_is_answered_and_silence_kills_the_sa() {
    let mut p = Pair::new();
    let id = p.connect(client_policy());
    p.drive();
    assert!(p.client.ep.check_liveness(p.now, id));
    p.drive();
    assert!(p.client.ike_ended().is_empty());
    assert_eq!(p.exchanges(false, ExchangeType::INFORMATIONAL).len(), 1);
    p.drop = Box::new(|_| true);
    assert!(p.client.ep.check_liveness(p.now, id));
    p.drive_for(Duration::from_secs(60));
    assert_eq!(p.client.ike_ended(), [IkeSaEnd::Timeout]);
    let deleted = p
        .client
        .events
        .iter()
        .filter(|e| matches!(e, Event::ChildSaDeleted { .. }))
        .count();
    assert_eq!(deleted, 1);
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
fn unacceptable_selectors_keep_the_ike_sa_but_fail_the_child() {
    let mut p = Pair::new();
    let mut c = client_policy();
    c.remote_ts = vec![ts("172.16.0.0", "172.16.255.255")];
    p.connect(c);
    p.drive();
    assert_eq!((p.client.established(), p.server.established()), (1, 1));
    for n in [&p.client, &p.server] {
        assert!(n.events.iter().any(|e| matches!(
            e,
            Event::ChildSaFailed {
                reason: NotifyType::TS_UNACCEPTABLE,
                ..
            }
        )));
        assert!(n.children().is_empty());
    }
    assert!(p.client.spis.live().is_empty());
    assert!(p.server.spis.live().is_empty());
}

#[test]
fn forged_or_garbage_datagrams_change_nothing() {
    let mut p = Pair::new();
    p.connect(client_policy());
    p.drive();
    let before = (p.client.events.len(), p.server.events.len());
    // Replay the IKE_AUTH request with a flipped ciphertext byte: ICV fails, dropped.
    let auth = p
        .wire
        .iter()
        .find(|s| s.to_server && is_exchange(s, ExchangeType::IKE_AUTH))
        .unwrap()
        .clone();
    let mut b = auth.t.payload.clone();
    let n = b.len();
    b[n - 20] ^= 1;
    p.server
        .ep
        .handle_datagram(p.now, auth.t.remote, auth.t.local, &b);
    p.server
        .ep
        .handle_datagram(p.now, auth.t.remote, auth.t.local, &[1, 2, 3]);
    p.drive();
    assert_eq!((p.client.events.len(), p.server.events.len()), before);
    assert_eq!(p.server.ep.stats().malformed, 1);
}

fn rekey(pfs: Vec<DhGroup>) -> Pair {
    let mut p = Pair::new();
    let mut c = client_policy();
    c.esp_groups = pfs;
    let id = p.connect(c);
    p.drive();
    let old = p.client.children()[0].clone();
    assert!(p.client.ep.rekey_child_sa(p.now, id, old.inbound_spi));
    p.drive();
    let (c, s) = (p.client.children(), p.server.children());
    assert_eq!((c.len(), s.len()), (2, 2));
    let (cn, sn) = (c[1], s[1]);
    assert_eq!(cn.replaces, Some(old.inbound_spi));
    assert_eq!(sn.replaces, Some(old.outbound_spi));
    assert_eq!((cn.inbound_spi, sn.inbound_spi), (0xc000_0001, 0x5000_0001));
    assert_eq!(
        (cn.outbound_spi, sn.outbound_spi),
        (sn.inbound_spi, cn.inbound_spi)
    );
    assert_eq!(cn.outbound_key.0.as_bytes(), sn.inbound_key.0.as_bytes());
    assert_eq!(cn.inbound_key.0.as_bytes(), sn.outbound_key.0.as_bytes());
    assert_ne!(cn.outbound_key.0.as_bytes(), old.outbound_key.0.as_bytes());
    assert_eq!(cn.local_ts, old.local_ts);
    assert_eq!(cn.remote_ts, old.remote_ts);
    // The initiator of the rekey deleted the old pair on both sides.
    for (n, old_in) in [(&p.client, old.inbound_spi), (&p.server, old.outbound_spi)] {
        let deleted: Vec<u32> = n
            .events
            .iter()
            .filter_map(|e| match e {
                Event::ChildSaDeleted { inbound_spi, .. } => Some(*inbound_spi),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, [old_in]);
        assert_eq!(n.spis.live().len(), 1);
    }
    assert_eq!(p.exchanges(true, ExchangeType::CREATE_CHILD_SA).len(), 1);
    p
}

#[test]
fn a_deferred_rekey_keeps_the_old_pair_until_the_caller_deletes_it() {
    let mut p = Pair::new();
    p.client.ep.set_defer_rekeyed_delete(true);
    let id = p.connect(client_policy());
    p.drive();
    let old = p.client.children()[0].clone();
    assert!(p.client.ep.rekey_child_sa(p.now, id, old.inbound_spi));
    p.drive();
    assert_eq!(p.client.children().len(), 2, "the new pair is up");
    assert_eq!(
        (child_deletions(&p.client), child_deletions(&p.server)),
        (0, 0),
        "old pair kept on both sides"
    );
    assert_eq!(p.client.spis.live().len(), 2);
    // The epoch switch and its grace period are over: now it goes.
    assert!(p.client.ep.delete_child_sa(p.now, id, old.inbound_spi));
    p.drive();
    assert_eq!(
        (child_deletions(&p.client), child_deletions(&p.server)),
        (1, 1)
    );
    assert_eq!(p.client.spis.live().len(), 1);
}

#[test]
fn a_client_that_ignores_peer_rekeys_refuses_them_and_keeps_its_pair() {
    let mut p = Pair::new();
    let id = p.connect(client_policy());
    p.drive();
    p.client.ep.refuse_peer_child_rekeys(id, true);
    let server_sa = server_id(&p);
    let old = p.server.children()[0].clone();
    assert!(p
        .server
        .ep
        .rekey_child_sa(p.now, server_sa, old.inbound_spi));
    p.drive();
    assert_eq!(p.client.children().len(), 1, "no new pair");
    let failed = p.server.events.iter().any(|e| {
        matches!(e, Event::ChildSaFailed { reason, .. } if *reason == NotifyType::NO_ADDITIONAL_SAS)
    });
    assert!(failed, "the server was told NO_ADDITIONAL_SAS");
    assert!(!p
        .server
        .events
        .iter()
        .any(|e| matches!(e, Event::ChildSaDeleted { .. })));
    // The client's own rekeys still work.
    let mine = p.client.children()[0].inbound_spi;
    assert!(p.client.ep.rekey_child_sa(p.now, id, mine));
    p.drive();
    assert_eq!(p.client.children().len(), 2);
}

#[test]
fn child_sa_rekey_without_pfs_replaces_the_pair() {
    rekey(vec![]);
}

#[test]
fn child_sa_rekey_with_pfs_replaces_the_pair() {
    let sizes = |p: &Pair, to_server: bool| {
        p.wire
            .iter()
            .find(|s| s.to_server == to_server && is_exchange(s, ExchangeType::CREATE_CHILD_SA))
            .unwrap()
            .t
            .payload
            .len()
    };
    let plain = rekey(vec![]);
    let pfs = rekey(vec![DhGroup::Ecp256]);
    // An ECP-256 KE payload (4 + 4 + 64) and a DH transform (8) each way.
    assert_eq!(sizes(&pfs, true) - sizes(&plain, true), 80);
    assert_eq!(sizes(&pfs, false) - sizes(&plain, false), 80);
}

#[test]
fn rekey_of_an_unknown_child_is_refused_locally() {
    let mut p = Pair::new();
    let id = p.connect(client_policy());
    p.drive();
    assert!(!p.client.ep.rekey_child_sa(p.now, id, 0xdead_beef));
    assert!(!p.client.ep.rekey_child_sa(p.now, IkeSaId(1), 0xc000_0000));
}

fn rekeyed(n: &Node) -> Vec<(IkeSaId, IkeSaId)> {
    n.events
        .iter()
        .filter_map(|e| match e {
            Event::IkeSaRekeyed { old, new } => Some((*old, *new)),
            _ => None,
        })
        .collect()
}

fn server_id(p: &Pair) -> IkeSaId {
    p.server
        .events
        .iter()
        .find_map(|e| match e {
            Event::IkeSaEstablished { id, .. } => Some(*id),
            _ => None,
        })
        .unwrap()
}

#[test]
fn ike_sa_rekey_moves_the_child_sas_to_the_new_sa() {
    for server_starts in [false, true] {
        let mut p = Pair::new();
        let cid = p.connect(client_policy());
        p.drive();
        let sid = server_id(&p);
        if server_starts {
            assert!(p.server.ep.rekey_ike_sa(p.now, sid));
        } else {
            assert!(p.client.ep.rekey_ike_sa(p.now, cid));
        }
        p.drive();
        let (c, s) = (rekeyed(&p.client), rekeyed(&p.server));
        assert_eq!((c.len(), s.len()), (1, 1), "server_starts={server_starts}");
        assert_eq!((c[0].0, s[0].0), (cid, sid));
        assert_ne!(c[0].1, cid);
        for n in [&p.client, &p.server] {
            assert_eq!(n.ike_ended(), [IkeSaEnd::Rekeyed]);
            assert!(!n
                .events
                .iter()
                .any(|e| matches!(e, Event::ChildSaDeleted { .. })));
            assert_eq!(n.ep.ike_sa_count(), 1);
        }
        // The new SA works: it carries a CHILD rekey and then a full delete.
        let (new_c, child) = (c[0].1, p.client.children()[0].inbound_spi);
        assert!(p.client.ep.rekey_child_sa(p.now, new_c, child));
        p.drive();
        assert_eq!(p.server.children().len(), 2);
        assert!(p.client.ep.delete_ike_sa(p.now, new_c));
        p.drive();
        for n in [&p.client, &p.server] {
            assert_eq!(n.ike_ended(), [IkeSaEnd::Rekeyed, IkeSaEnd::Deleted]);
            assert!(n.spis.live().is_empty());
            assert_eq!(n.ep.ike_sa_count(), 0);
        }
        // The lease went back to the pool whichever end rekeyed.
        p.connect(client_policy());
        p.drive();
        let last = p.client.children().last().unwrap().virtual_ip;
        assert_eq!(
            last,
            Some(Ipv4Addr::new(10, 9, 0, 1)),
            "server_starts={server_starts}"
        );
    }
}

/// RFC 7296 2.18: the CHILD SAs of a rekeyed IKE SA move to its successor,
/// and so must one that an exchange in flight completes on the old SA
/// afterwards, or it ends with the old SA while the peer keeps it.
#[test]
fn a_child_rekey_crossing_the_peers_ike_rekey_ends_under_the_new_ike_sa() {
    let mut p = crossing_rekeys(true);
    let new_cid = rekeyed(&p.client)[0].1;
    let old_child = p.client.children()[0].inbound_spi;
    let (fresh, owner, replaces) = p
        .client
        .children()
        .last()
        .map(|c| (c.inbound_spi, c.ike_sa, c.replaces))
        .unwrap();
    assert_eq!(replaces, Some(old_child));
    assert_eq!(owner, new_cid, "the new pair belongs to the successor");
    assert_eq!(p.client.ike_ended(), [IkeSaEnd::Rekeyed]);
    let deleted = |n: &Node, spi: u32| {
        n.events
            .iter()
            .any(|e| matches!(e, Event::ChildSaDeleted { inbound_spi, .. } if *inbound_spi == spi))
    };
    assert!(
        !deleted(&p.client, fresh),
        "the new pair outlived the old IKE SA"
    );
    // The old pair is retired through the successor, on both ends.
    assert!(p.client.ep.delete_child_sa(p.now, new_cid, old_child));
    p.drive();
    assert!(deleted(&p.client, old_child));
    assert!(deleted(&p.server, p.server.children()[0].inbound_spi));
    // What is left: one IKE SA each with the new pair, which still rekeys.
    for n in [&p.client, &p.server] {
        assert_eq!(n.ep.ike_sa_count(), 1);
    }
    assert!(p.client.ep.rekey_child_sa(p.now, new_cid, fresh));
    p.drive();
    assert_eq!(p.client.children().len(), 3);
}

/// Our own CHILD rekey and IKE rekey asked for together cannot cross: one
/// request at a time (window 1, §2.3), so the IKE rekey waits and takes
/// the new pair along to the successor.
#[test]
fn our_own_child_and_ike_rekeys_asked_together_run_in_turn() {
    let mut p = Pair::new();
    let cid = p.connect(client_policy());
    p.drive();
    p.client.ep.set_defer_rekeyed_delete(true);
    let old_child = p.client.children()[0].inbound_spi;
    assert!(p.client.ep.rekey_child_sa(p.now, cid, old_child));
    assert!(p.client.ep.rekey_ike_sa(p.now, cid));
    p.collect();
    assert_eq!(
        p.queue.iter().filter(|(to_server, _)| *to_server).count(),
        1,
        "one request in flight"
    );
    p.drive();
    let new_cid = rekeyed(&p.client)[0].1;
    let (fresh, owner) = p
        .client
        .children()
        .last()
        .map(|c| (c.inbound_spi, c.ike_sa))
        .unwrap();
    assert_ne!(fresh, old_child, "the CHILD rekey completed");
    // First, on the old IKE SA; then the IKE rekey moved it with the rest.
    assert_eq!(owner, cid);
    assert_eq!(rekeyed(&p.client)[0].0, cid);
    assert_eq!(
        (child_deletions(&p.client), child_deletions(&p.server)),
        (0, 0)
    );
    assert!(p.client.ep.delete_child_sa(p.now, new_cid, old_child));
    p.drive();
    assert_eq!(
        (child_deletions(&p.client), child_deletions(&p.server)),
        (1, 1)
    );
    for n in [&p.client, &p.server] {
        assert_eq!(n.ep.ike_sa_count(), 1);
    }
}

/// CHILD SAs a node saw deleted.
fn child_deletions(n: &Node) -> usize {
    n.events
        .iter()
        .filter(|e| matches!(e, Event::ChildSaDeleted { .. }))
        .count()
}

/// A pair with one CHILD SA whose client rekeys it while the server rekeys
/// the IKE SA, the server's IKE request reaching the client before the
/// answer to its CHILD rekey; driven to the end. `defer`: the client keeps
/// the old pair for its caller to delete.
fn crossing_rekeys(defer: bool) -> Pair {
    let mut p = Pair::new();
    let cid = p.connect(client_policy());
    p.drive();
    let sid = server_id(&p);
    p.client.ep.set_defer_rekeyed_delete(defer);
    let old_child = p.client.children()[0].inbound_spi;
    assert!(p.client.ep.rekey_child_sa(p.now, cid, old_child));
    p.deliver_nth(true, 0);
    assert!(p.server.ep.rekey_ike_sa(p.now, sid));
    p.deliver_nth(false, 1);
    p.deliver_nth(false, 0);
    p.drive();
    p
}

#[test]
fn without_deferral_the_crossing_rekeys_old_pair_is_deleted_through_the_successor() {
    let p = crossing_rekeys(false);
    // The old pair, on both ends; the new one stays.
    assert_eq!(
        (child_deletions(&p.client), child_deletions(&p.server)),
        (1, 1)
    );
    let fresh = p.client.children()[1].inbound_spi;
    assert!(!p
        .client
        .events
        .iter()
        .any(|e| matches!(e, Event::ChildSaDeleted { inbound_spi, .. } if *inbound_spi == fresh)));
    for n in [&p.client, &p.server] {
        assert_eq!(n.ep.ike_sa_count(), 1);
    }
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

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Corrupting any datagram of a handshake never panics, and whatever
        /// gets established still agrees on keys.
        #[test]
        fn corrupted_handshake_datagrams_never_panic(
            victim in 0usize..6,
            flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
            nat in any::<bool>(),
        ) {
            let mut p = Pair::new();
            p.nat = nat;
            let mut n = 0usize;
            let mut hit = false;
            // Deliver a mutated copy right before the original datagram.
            p.connect(client_policy());
            p.collect();
            while let Some((to_server, t)) = p.queue.pop_front() {
                let mut t = t;
                if to_server { t.local = p.nat_out(t.local); }
                if n == victim && !hit {
                    hit = true;
                    let mut b = t.payload.clone();
                    for (i, x) in &flips {
                        let i = i.index(b.len());
                        b[i] ^= x;
                    }
                    if to_server {
                        p.server.ep.handle_datagram(p.now, t.remote, t.local, &b);
                    } else {
                        let dst = p.nat_in(t.remote);
                        p.client.ep.handle_datagram(p.now, dst, t.local, &b);
                    }
                    p.collect();
                }
                n += 1;
                if to_server {
                    p.server.ep.handle_datagram(p.now, t.remote, t.local, &t.payload);
                } else {
                    let dst = p.nat_in(t.remote);
                    p.client.ep.handle_datagram(p.now, dst, t.local, &t.payload);
                }
                p.collect();
            }
            p.drive_for(Duration::from_secs(60));
            let (c, s) = (p.client.children(), p.server.children());
            if let (Some(c), Some(s)) = (c.first(), s.first()) {
                prop_assert_eq!(c.outbound_key.0.as_bytes(), s.inbound_key.0.as_bytes());
                prop_assert_eq!(c.outbound_spi, s.inbound_spi);
            }
        }

        #[test]
        fn random_datagrams_never_panic(
            b in prop::collection::vec(any::<u8>(), 0..400),
            port in prop::sample::select(vec![500u16, 4500]),
        ) {
            let mut p = Pair::new();
            p.connect(client_policy());
            p.drive();
            let from = SocketAddr::new(CLIENT.parse::<SocketAddr>().unwrap().ip(), port);
            let to = SocketAddr::new(SERVER.parse::<SocketAddr>().unwrap().ip(), port);
            p.server.ep.handle_datagram(p.now, to, from, &b);
            p.client.ep.handle_datagram(p.now, from, to, &b);
            p.drive();
            prop_assert_eq!(p.server.ep.ike_sa_count(), 1);
        }
    }
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
fn cp_reply_carries_dns_and_an_empty_pool_fails_the_child_only() {
    let mut p = Pair::new();
    p.server.ep.accept(
        server_policy(),
        Some(AddressPool::new(Ipv4Addr::new(10, 9, 0, 1), 1)),
    );
    p.connect(client_policy());
    p.drive();
    let v4_dns: IpAddr = Ipv4Addr::new(10, 1, 0, 53).into();
    assert_eq!(p.client.children()[0].dns, [v4_dns]);
    // A second client finds the pool empty: IKE SA up, CHILD SA refused.
    let mut other = client_policy();
    other.local_id = Identification::fqdn("other.test");
    p.client = Node::new(5, 0xf000_0000);
    p.connect(other);
    p.drive();
    assert_eq!(p.client.established(), 1);
    assert!(p.client.children().is_empty());
    assert!(p.client.events.iter().any(|e| matches!(
        e,
        Event::ChildSaFailed {
            reason: NotifyType::INTERNAL_ADDRESS_FAILURE,
            ..
        }
    )));
    assert!(p.client.spis.live().is_empty());
}

#[test]
fn the_endpoint_can_move_to_the_control_plane_thread() {
    fn send<T: Send>() {}
    send::<IkeEndpoint>();
    send::<Event>();
}

#[test]
fn simultaneous_child_rekeys_leave_exactly_one_pair() {
    for seed in 0..4u64 {
        let mut p = Pair::new();
        p.client = Node::new(10 + seed, 0xc000_0000);
        // Both ends with PFS, so each accepts the other's offer.
        let mut c = client_policy();
        c.esp_groups = vec![DhGroup::Curve25519];
        let cid = p.connect(c);
        p.drive();
        let sid = server_id(&p);
        let (ci, si) = (
            p.client.children()[0].inbound_spi,
            p.server.children()[0].inbound_spi,
        );
        assert!(p.client.ep.rekey_child_sa(p.now, cid, ci));
        assert!(p.server.ep.rekey_child_sa(p.now, sid, si));
        p.drive();
        assert_one_live_pair(&p);
        assert!(p.client.ike_ended().is_empty() && p.server.ike_ended().is_empty());
        // Both rekeys completed: two CREATE_CHILD_SA requests were answered
        // with new pairs, then one redundant pair and the old one deleted.
        assert_eq!(p.client.children().len() + p.server.children().len(), 6);
    }
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
fn child_rekey_retries_with_the_pfs_group_the_responder_wants() {
    let mut p = Pair::new();
    let mut s = server_policy();
    s.esp_groups = vec![DhGroup::Curve25519];
    p.server
        .ep
        .accept(s, Some(AddressPool::new(Ipv4Addr::new(10, 9, 0, 1), 4)));
    let mut c = client_policy();
    c.esp_groups = vec![DhGroup::Ecp256, DhGroup::Curve25519];
    let id = p.connect(c);
    p.drive();
    let old = p.client.children()[0].inbound_spi;
    assert!(p.client.ep.rekey_child_sa(p.now, id, old));
    p.drive();
    assert_eq!(p.exchanges(true, ExchangeType::CREATE_CHILD_SA).len(), 2);
    let (c, s) = (p.client.children(), p.server.children());
    assert_eq!((c.len(), s.len()), (2, 2));
    assert_eq!(c[1].replaces, Some(old));
    assert_eq!(
        c[1].outbound_key.0.as_bytes(),
        s[1].inbound_key.0.as_bytes()
    );
    assert!(!p
        .client
        .events
        .iter()
        .any(|e| matches!(e, Event::ChildSaFailed { .. })));
    assert_eq!(p.client.spis.live().len(), 1);
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

/// Exactly one pair is live on each end, and it is the same pair (SPIs
/// and keys).
fn assert_one_live_pair(p: &Pair) {
    let (cl, sl) = (p.client.spis.live(), p.server.spis.live());
    assert_eq!(
        (cl.len(), sl.len()),
        (1, 1),
        "{:?} / {:?}",
        p.client.events,
        p.server.events
    );
    let c = p
        .client
        .children()
        .into_iter()
        .find(|c| c.inbound_spi == cl[0])
        .unwrap()
        .clone();
    assert_eq!(c.outbound_spi, sl[0]);
    let s = p
        .server
        .children()
        .into_iter()
        .find(|s| s.inbound_spi == sl[0])
        .unwrap()
        .clone();
    assert_eq!(c.outbound_key.0.as_bytes(), s.inbound_key.0.as_bytes());
}

/// Both ends keep the old pair for a grace period, as espritd does.
fn deferred_pair(seed: u64) -> (Pair, IkeSaId, IkeSaId) {
    let mut p = Pair::new();
    p.client = Node::new(20 + seed, 0xc000_0000);
    p.client.ep.set_defer_rekeyed_delete(true);
    p.server.ep.set_defer_rekeyed_delete(true);
    let mut c = client_policy();
    c.esp_groups = vec![DhGroup::Curve25519];
    let cid = p.connect(c);
    p.drive();
    let sid = server_id(&p);
    (p, cid, sid)
}

/// After the grace period both ends delete the pairs they replaced; then
/// exactly one pair is left, the same on both ends.
fn assert_one_pair_after_grace(p: &mut Pair, cid: IkeSaId, sid: IkeSaId, old: (u32, u32)) {
    p.client.ep.delete_child_sa(p.now, cid, old.0);
    p.server.ep.delete_child_sa(p.now, sid, old.1);
    p.drive();
    assert_one_live_pair(p);
}

#[test]
fn a_pair_the_peer_already_rekeyed_is_not_rekeyed_again() {
    let (mut p, cid, sid) = deferred_pair(0);
    let old = (
        p.client.children()[0].inbound_spi,
        p.server.children()[0].inbound_spi,
    );
    assert!(p.client.ep.rekey_child_sa(p.now, cid, old.0));
    p.drive();
    // The server's own lifetime timer for the old pair fires late: the pair
    // is already replaced, so no second (redundant) rekey starts.
    assert!(!p.server.ep.rekey_child_sa(p.now, sid, old.1));
    assert!(!p.client.ep.rekey_child_sa(p.now, cid, old.0));
    assert_one_pair_after_grace(&mut p, cid, sid, old);
    assert_eq!(p.exchanges(true, ExchangeType::CREATE_CHILD_SA).len(), 1);
    assert_eq!(p.exchanges(false, ExchangeType::CREATE_CHILD_SA).len(), 1);
}

#[test]
fn a_peer_rekey_that_crosses_a_completed_one_leaves_one_pair() {
    for seed in 0..6u64 {
        let (mut p, cid, sid) = deferred_pair(seed);
        let old = (
            p.client.children()[0].inbound_spi,
            p.server.children()[0].inbound_spi,
        );
        assert!(p.client.ep.rekey_child_sa(p.now, cid, old.0));
        assert!(p.server.ep.rekey_child_sa(p.now, sid, old.1));
        // The client's request reaches the server (which notes the
        // collision), and the server's answer overtakes the server's own
        // request: the client sees the collision only after its rekey is done.
        p.deliver_nth(true, 0);
        p.deliver_nth(false, 1); // the answer, behind the server's request
        p.deliver_nth(false, 0); // the server's request
        p.drive();
        let deletes = p.exchanges(true, ExchangeType::INFORMATIONAL).len()
            + p.exchanges(false, ExchangeType::INFORMATIONAL).len();
        assert!(deletes >= 1, "seed {seed}: the redundant pair was deleted");
        assert_one_pair_after_grace(&mut p, cid, sid, old);
    }
}

#[test]
fn each_template_leases_from_its_own_pool_and_a_new_range_keeps_held_addresses() {
    let template = |pool: &str| {
        let mut s = server_policy();
        s.pool = Some(pool.into());
        Arc::new(s)
    };
    let (staff, guests) = (template("staff"), template("guests"));
    let lookup: PeerPolicy = Box::new(move |id: &Identification| {
        if id.data.ends_with(b".staff") {
            Some(staff.clone())
        } else {
            Some(guests.clone())
        }
    });
    let mut p = Pair::new();
    p.server.ep.set_peer_policy(lookup);
    let staff_pool = || AddressPool::new(Ipv4Addr::new(10, 20, 0, 1), 4);
    p.server.ep.set_pool("staff".into(), staff_pool());
    p.server.ep.set_pool(
        "guests".into(),
        AddressPool::new(Ipv4Addr::new(10, 30, 0, 1), 4),
    );
    let client_as = |name: &str| {
        let mut c = client_policy();
        c.local_id = Identification::fqdn(name);
        c
    };
    let vip = |p: &Pair| p.client.children().last().and_then(|c| c.virtual_ip);

    p.connect(client_as("alice.staff"));
    p.drive();
    assert_eq!(vip(&p), Some(Ipv4Addr::new(10, 20, 0, 1)));
    p.client = Node::new(7, 0xa000_0000);
    p.connect(client_as("bob.guest"));
    p.drive();
    assert_eq!(
        vip(&p),
        Some(Ipv4Addr::new(10, 30, 0, 1)),
        "the guests' pool"
    );
    assert_eq!(p.server.ep.pool_leases(Some("staff")), 1);
    assert_eq!(p.server.ep.pool_leases(Some("guests")), 1);

    // The same range again (a reload that left the pool alone) keeps it.
    p.server.ep.set_pool("staff".into(), staff_pool());
    assert_eq!(p.server.ep.pool_leases(Some("staff")), 1);
    // A wider range is a new pool, but alice keeps 10.20.0.1: the next
    // staff client gets 10.20.0.2, not a second 10.20.0.1.
    p.server.ep.set_pool(
        "staff".into(),
        AddressPool::new(Ipv4Addr::new(10, 20, 0, 1), 16),
    );
    assert_eq!(p.server.ep.pool_leases(Some("staff")), 1);
    p.client = Node::new(8, 0xb000_0000);
    p.connect(client_as("carol.staff"));
    p.drive();
    assert_eq!(vip(&p), Some(Ipv4Addr::new(10, 20, 0, 2)));
}

/// A client that asks for both families gets one address of each from
/// its template's pools, with TSi narrowed to the two; one that asks for
/// IPv6 alone from a template without an IPv6 pool gets no CHILD SA. The
/// leases go back with the IKE SA.
#[test]
fn a_dual_stack_client_gets_an_address_of_each_family() {
    let mut s = server_policy();
    s.pool = Some("dual".into());
    let dns: Vec<IpAddr> = vec![
        "fd00:40::53".parse().unwrap(),
        "10.40.0.53".parse().unwrap(),
    ];
    s.dns = dns.clone();
    let dual = Arc::new(s);
    let lookup: PeerPolicy = Box::new(move |_: &Identification| Some(dual.clone()));
    let mut p = Pair::new();
    p.server.ep.set_peer_policy(lookup);
    p.server.ep.set_pool(
        "dual".into(),
        AddressPool::new(Ipv4Addr::new(10, 40, 0, 1), 4),
    );
    let first6: std::net::Ipv6Addr = "fd00:40::1".parse().unwrap();
    p.server
        .ep
        .set_pool6("dual".into(), AddressPool::new(first6, 4));

    let mut both = client_policy();
    both.request_virtual_ip6 = true;
    let id = p.connect(both);
    p.drive();
    let c = p.client.children()[0].clone();
    assert_eq!(c.virtual_ip, Some(Ipv4Addr::new(10, 40, 0, 1)));
    assert_eq!(c.virtual_ip6, Some(first6));
    assert_eq!(
        c.local_ts,
        [ts("10.40.0.1", "10.40.0.1"), ts("fd00:40::1", "fd00:40::1")]
    );
    assert_eq!(p.server.children()[0].remote_ts, c.local_ts);
    assert_eq!(c.dns, dns, "INTERNAL_IP6_DNS and _IP4_DNS, in order");
    let st: Vec<IkeSaStatus> = p.client.ep.ike_sas().collect();
    assert_eq!(st[0].virtual_ip6, Some(first6));
    let st: Vec<IkeSaStatus> = p.server.ep.ike_sas().collect();
    assert_eq!(
        st[0].virtual_ip6,
        Some(first6),
        "the server's view of the lease"
    );
    assert_eq!(p.server.ep.pool6_leases(Some("dual")), 1);

    assert!(p.client.ep.delete_ike_sa(p.now, id));
    p.drive();
    assert_eq!(p.server.ep.pool6_leases(Some("dual")), 0);
    assert_eq!(p.server.ep.pool_leases(Some("dual")), 0);

    // IPv6 alone, and the template loses its IPv6 pool: no address, no CHILD SA.
    p.server.ep.remove_pool6("dual");
    p.client = Node::new(9, 0xb000_0000);
    let mut v6_only = client_policy();
    v6_only.request_virtual_ip = false;
    v6_only.request_virtual_ip6 = true;
    p.connect(v6_only);
    p.drive();
    assert!(p.client.children().is_empty());
    assert!(
        p.client
            .events
            .iter()
            .any(|e| matches!(e, Event::ChildSaFailed { reason, .. } if *reason == NotifyType::INTERNAL_ADDRESS_FAILURE)),
        "{:?}",
        p.client.events
    );
}

/// The peer's DELETE of the old IKE SA overtakes its answer to our CHILD
/// rekey (reordered datagrams): the late answer finds no IKE SA. The rekey
/// must not vanish silently: it is reported failed on the successor, which
/// still carries the old pair and can rekey it again.
#[test]
fn a_child_rekey_whose_answer_the_ike_delete_overtakes_is_reported_failed() {
    let mut p = Pair::new();
    let cid = p.connect(client_policy());
    p.drive();
    let sid = server_id(&p);
    p.client.ep.set_defer_rekeyed_delete(true);
    let old_child = p.client.children()[0].inbound_spi;
    assert!(p.client.ep.rekey_child_sa(p.now, cid, old_child));
    p.deliver_nth(true, 0); // the server answers the CHILD rekey (held)
    assert!(p.server.ep.rekey_ike_sa(p.now, sid));
    p.deliver_nth(false, 1); // the client answers the IKE rekey
    p.deliver_nth(true, 0); // the server deletes the old IKE SA
    p.deliver_nth(false, 1); // its DELETE reaches the client first
    p.deliver_nth(false, 0); // then the CHILD answer, too late
    p.drive();
    let new_cid = rekeyed(&p.client)[0].1;
    let failed: Vec<IkeSaId> = p
        .client
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ChildSaFailed { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(
        failed,
        [new_cid],
        "the lost rekey is reported on the successor"
    );
    assert_eq!(p.client.children().len(), 1, "no new pair on the client");
    // The old pair still works under the successor: rekeying it again
    // succeeds.
    assert!(p.client.ep.rekey_child_sa(p.now, new_cid, old_child));
    p.drive();
    assert_eq!(p.client.children().len(), 2);
}
