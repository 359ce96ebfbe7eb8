//! Corrupted handshakes (proptest): never a panic, never disagreeing keys.

use crate::harness::*;
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
