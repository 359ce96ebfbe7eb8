//! The per-packet path must not allocate, under a counting global
//! allocator: seal and open of every backend at every size class (short
//! path, bulk + tail, long AAD), and the whole worker loop.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use std::net::Ipv4Addr;

use dataplane::crypto::AesGcm;
use dataplane::packet::{Encap, Packet};
use dataplane::port::mem::{link, MemPort};
use dataplane::sa::manual::{install, ManualTunnel};
use dataplane::sa::spi::make_spi;
use dataplane::sa::SaPublisher;
use dataplane::testkit::{manual_keys as keys, write_ipv4_udp};
use dataplane::worker::{handoff_mesh, ControlLink, Worker, WorkerConfig};

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

#[test]
fn seal_and_open_do_not_allocate() {
    let mut buf = vec![0u8; 4096];
    let aad = [0x11u8; 40];
    let nonce = [7u8; 12];
    for key_len in [16, 32] {
        let key = vec![0x42u8; key_len];
        let backends = AesGcm::all_backends(&key).expect("valid key");
        for g in &backends {
            for len in [0usize, 1, 15, 16, 64, 96, 97, 127, 128, 129, 1400, 4096] {
                for aad_len in [0usize, 8, 12, 16, 17, 40] {
                    let data = &mut buf[..len];
                    let aad = &aad[..aad_len];
                    let before = allocs();
                    let tag = g.seal_in_place(&nonce, aad, data);
                    let opened = g.open_in_place(&nonce, aad, data, &tag);
                    let after = allocs();
                    assert_eq!(opened, Ok(()), "{} len {len}", g.backend());
                    assert_eq!(after - before, 0, "{} len {len} aad {aad_len}", g.backend());
                }
            }
        }
    }
}

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 8, 0, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);

type Side = (Worker<MemPort, MemPort>, MemPort, SaPublisher);

fn side(t: &ManualTunnel, out: MemPort) -> Side {
    let mut p = SaPublisher::new();
    install(p.edit(), t, 1).unwrap();
    p.publish();
    let (inside, far) = link(1024);
    let w = Worker::new(
        WorkerConfig::default(),
        out,
        inside,
        p.reader(),
        handoff_mesh(1, 64).pop().unwrap(),
        ControlLink::new(64),
    );
    (w, far, p)
}

fn send(far: &MemPort, spare: &mut Vec<Packet>, src: Ipv4Addr, dst: Ipv4Addr, size: usize) {
    let mut p = spare.pop().unwrap_or_default();
    p.reset();
    let n = write_ipv4_udp(
        p.rx_space(),
        src,
        dst,
        (1000, 2000),
        &[0x5a; 1400][..size - 28],
    )
    .unwrap();
    p.set_received_len(n);
    p.meta.encap = Encap::Inner;
    far.send(p).unwrap();
}

#[test]
fn the_worker_loop_does_not_allocate_per_packet() {
    let gw_t = ManualTunnel {
        tunnel: 1,
        remote: "192.0.2.2:4500".parse().unwrap(),
        encap: Encap::EspInUdp,
        remote_ts: vec!["10.8.0.0/16".parse().unwrap()],
        inbound: keys(make_spi(0, 1).unwrap(), 1),
        outbound: keys(make_spi(0, 1).unwrap(), 2),
        replay_window: 1024,
    };
    let cl_t = gw_t.mirrored(
        "192.0.2.1:4500".parse().unwrap(),
        vec!["10.1.0.0/16".parse().unwrap()],
    );
    let (a, b) = link(1024);
    let (mut gw, gw_inside, _gp) = side(&gw_t, a);
    let (mut cl, cl_inside, _cp) = side(&cl_t, b);
    let mut spare: Vec<Packet> = (0..256).map(|_| Packet::new()).collect();

    let mut round = |spare: &mut Vec<Packet>, size: usize| {
        for _ in 0..32 {
            send(&cl_inside, spare, CLIENT, SERVER, size);
            send(&gw_inside, spare, SERVER, CLIENT, size);
        }
        for _ in 0..4 {
            cl.poll_once();
            gw.poll_once();
        }
        let mut back = 0;
        for far in [&gw_inside, &cl_inside] {
            while let Some(p) = far.recv() {
                back += 1;
                spare.push(p);
            }
        }
        back
    };
    // Warm-up: pools, queues and stats fill up to their working size.
    for size in [64, 1400, 64] {
        for _ in 0..20 {
            assert_eq!(round(&mut spare, size), 64);
        }
    }
    let before = allocs();
    let mut moved = 0;
    for size in [64, 576, 1400] {
        for _ in 0..50 {
            moved += round(&mut spare, size);
        }
    }
    let after = allocs();
    assert_eq!(moved, 3 * 50 * 64, "every packet crossed the tunnel");
    assert_eq!(
        after - before,
        0,
        "allocations while moving {moved} packets"
    );
}
