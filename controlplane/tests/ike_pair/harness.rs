//! What the tests share: a client and a server endpoint joined by an
//! in-memory network that can lose, reorder and NAT datagrams, their
//! policies, and the crate's imports.

pub(crate) use std::collections::VecDeque;
pub(crate) use std::net::{IpAddr, Ipv4Addr, SocketAddr};
pub(crate) use std::sync::{Arc, Mutex};
pub(crate) use std::time::{Duration, Instant};

pub(crate) use controlplane::ike::crypto::{DhGroup, Prf, Secret};
pub(crate) use controlplane::ike::sa::*;
pub(crate) use controlplane::ike::wire::{
    strip_non_esp_marker, ExchangeType, Identification, Message, NotifyType, TrafficSelector,
};
pub(crate) use rand::SeedableRng;

#[derive(Default)]
pub(crate) struct SpiLog {
    pub(crate) next: u32,
    pub(crate) allocated: Vec<u32>,
    pub(crate) released: Vec<u32>,
}

/// An SPI allocator the test can inspect.
#[derive(Clone, Default)]
pub(crate) struct Spis(Arc<Mutex<SpiLog>>);

impl Spis {
    pub(crate) fn starting_at(next: u32) -> Self {
        Spis(Arc::new(Mutex::new(SpiLog {
            next,
            ..Default::default()
        })))
    }
    pub(crate) fn live(&self) -> Vec<u32> {
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

pub(crate) fn ts(a: &str, b: &str) -> TrafficSelector {
    TrafficSelector::range(a.parse().unwrap(), b.parse().unwrap())
}

pub(crate) fn client_policy() -> Policy {
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

pub(crate) fn server_policy() -> Policy {
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

pub(crate) const CLIENT: &str = "198.51.100.7:500";
pub(crate) const SERVER: &str = "203.0.113.1:500";
pub(crate) const NAT_PUBLIC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);

pub(crate) struct Node {
    pub(crate) ep: IkeEndpoint,
    pub(crate) spis: Spis,
    pub(crate) events: Vec<Event>,
}

impl Node {
    pub(crate) fn new(seed: u64, first_spi: u32) -> Node {
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

    pub(crate) fn children(&self) -> Vec<&ChildSa> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::ChildSaEstablished(c) => Some(&**c),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn ike_ended(&self) -> Vec<IkeSaEnd> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::IkeSaDeleted { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }

    /// The IKE SAs this node saw end, in order.
    pub(crate) fn ike_ended_ids(&self) -> Vec<IkeSaId> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::IkeSaDeleted { id, .. } => Some(*id),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn established(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::IkeSaEstablished { .. }))
            .count()
    }
}

/// One datagram seen on the wire, after NAT on the client side.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) at: Duration,
    pub(crate) to_server: bool,
    pub(crate) t: Transmit,
}

pub(crate) struct Pair {
    pub(crate) start: Instant,
    pub(crate) now: Instant,
    pub(crate) client: Node,
    pub(crate) server: Node,
    /// Client sits behind a NAT that maps its private source to NAT_PUBLIC.
    pub(crate) nat: bool,
    /// Decides per datagram (seen index, datagram) whether it is lost.
    pub(crate) drop: Box<dyn FnMut(&Seen) -> bool>,
    pub(crate) wire: Vec<Seen>,
    pub(crate) queue: VecDeque<(bool, Transmit)>,
}

impl Pair {
    pub(crate) fn new() -> Pair {
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

    pub(crate) fn connect(&mut self, p: Policy) -> IkeSaId {
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
    pub(crate) fn nat_out(&self, a: SocketAddr) -> SocketAddr {
        if self.nat {
            SocketAddr::new(IpAddr::V4(NAT_PUBLIC), a.port() + 1000)
        } else {
            a
        }
    }

    pub(crate) fn nat_in(&self, a: SocketAddr) -> SocketAddr {
        if self.nat && a.ip() == IpAddr::V4(NAT_PUBLIC) {
            SocketAddr::new("10.0.0.2".parse().unwrap(), a.port() - 1000)
        } else {
            a
        }
    }

    pub(crate) fn collect(&mut self) {
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
    pub(crate) fn step(&mut self) -> bool {
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
    pub(crate) fn deliver_nth(&mut self, to_server: bool, n: usize) {
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

    pub(crate) fn deliver(&mut self, to_server: bool, mut t: Transmit) {
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
    pub(crate) fn drive_for(&mut self, limit: Duration) {
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

    pub(crate) fn drive(&mut self) {
        self.drive_for(Duration::from_secs(5));
    }

    pub(crate) fn exchanges(&self, to_server: bool, ex: ExchangeType) -> Vec<Duration> {
        self.wire
            .iter()
            .filter(|s| s.to_server == to_server)
            .filter(|s| is_exchange(s, ex))
            .map(|s| s.at)
            .collect()
    }
}

pub(crate) fn is_exchange(s: &Seen, ex: ExchangeType) -> bool {
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

pub(crate) fn rekey(pfs: Vec<DhGroup>) -> Pair {
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

pub(crate) fn rekeyed(n: &Node) -> Vec<(IkeSaId, IkeSaId)> {
    n.events
        .iter()
        .filter_map(|e| match e {
            Event::IkeSaRekeyed { old, new } => Some((*old, *new)),
            _ => None,
        })
        .collect()
}

pub(crate) fn server_id(p: &Pair) -> IkeSaId {
    p.server
        .events
        .iter()
        .find_map(|e| match e {
            Event::IkeSaEstablished { id, .. } => Some(*id),
            _ => None,
        })
        .unwrap()
}

/// CHILD SAs a node saw deleted.
pub(crate) fn child_deletions(n: &Node) -> usize {
    n.events
        .iter()
        .filter(|e| matches!(e, Event::ChildSaDeleted { .. }))
        .count()
}
