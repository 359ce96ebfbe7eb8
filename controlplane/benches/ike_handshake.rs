//! Cost of IKE on the control-plane thread: whole IKE_SA_INIT + IKE_AUTH
//! handshakes (both ends, in memory) per DH group, and SK payload
//! protection. Tells how many tunnels per second one core can bring up.

use std::net::SocketAddr;
use std::time::Instant;

use controlplane::ike::crypto::{DhGroup, Secret, SkCipher};
use controlplane::ike::sa::*;
use controlplane::ike::wire::{ExchangeType, Header, Nonce, Payload};
use criterion::{criterion_group, criterion_main, Criterion};
mod common;

/// espritd's allocator, so the figures are the daemon's (see espritd.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use common::endpoint;

/// One handshake to completion; returns the number of CHILD SAs (2).
fn handshake(group: DhGroup, seed: u64) -> usize {
    let (c_addr, s_addr): (SocketAddr, SocketAddr) = (
        "198.51.100.7:500".parse().unwrap(),
        "203.0.113.1:500".parse().unwrap(),
    );
    let mut server = endpoint(seed, 0x1000);
    server.accept(common::policy("gw", group, false), None);
    let mut client = endpoint(seed + 1, 0x1000);
    let now = Instant::now();
    client.connect(now, c_addr, s_addr, common::policy("c", group, false));
    let mut children = 0;
    for _ in 0..8 {
        while let Some(t) = client.poll_transmit() {
            server.handle_datagram(now, t.remote, t.local, &t.payload);
        }
        while let Some(t) = server.poll_transmit() {
            client.handle_datagram(now, t.remote, t.local, &t.payload);
        }
        for ep in [&mut client, &mut server] {
            while let Some(e) = ep.poll_event() {
                children += usize::from(matches!(e, Event::ChildSaEstablished(_)));
            }
        }
    }
    children
}

fn bench(c: &mut Criterion) {
    assert_eq!(handshake(DhGroup::Curve25519, 1), 2);
    let mut seed = 0;
    c.bench_function("handshake x25519 (both ends)", |b| {
        b.iter(|| {
            seed += 2;
            handshake(DhGroup::Curve25519, seed)
        })
    });
    c.bench_function("handshake ecp256 (both ends)", |b| {
        b.iter(|| {
            seed += 2;
            handshake(DhGroup::Ecp256, seed)
        })
    });
    let sk = SkCipher::new(&Secret::from_slice(&[7u8; 20])).unwrap();
    let h = Header::new(1, 2, ExchangeType::INFORMATIONAL, 0x08, 5);
    let inner = [Payload::Nonce(Nonce(vec![9; 200]))];
    let sealed = sk.seal(&h, &inner, 1);
    let msg = controlplane::ike::wire::Message::parse(&sealed).unwrap();
    c.bench_function("SK seal 200 B", |b| b.iter(|| sk.seal(&h, &inner, 1)));
    c.bench_function("SK open 200 B", |b| {
        b.iter(|| sk.open(&sealed, &msg).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
