//! What an idle worker sleeps on: the fd of every port that can receive
//! while it sleeps, so a packet wakes it at once, and a short nap only
//! when one of those has no fd.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use super::*;
use crate::port::reflect::ReflectPort;
use crate::port::udp::{UdpConfig, UdpPort};
use crate::sa::SaPublisher;

#[test]
fn the_ports_that_can_receive_while_the_worker_sleeps_are_watched() {
    let fds = |ports: &[(Option<i32>, bool)]| {
        wake_fds(ports).map(|f| f.iter().map(|p| p.fd).collect::<Vec<_>>())
    };
    assert_eq!(fds(&[(Some(3), true), (Some(4), true)]), Some(vec![3, 4]));
    // A reflecting inside has no fd, and needs none.
    assert_eq!(fds(&[(Some(3), true), (None, false)]), Some(vec![3]));
    // An in-memory port has none either, and is fed by another thread.
    assert_eq!(fds(&[(Some(3), true), (None, true)]), None);
    assert_eq!(fds(&[(None, false), (None, false)]), None);
}

/// A worker with a UDP outside and a reflecting inside (the lab's gateway)
/// sleeps on the socket: it polls about once a millisecond while idle,
/// not every 100 µs, and a datagram still wakes it at once.
#[test]
fn a_reflecting_gateway_sleeps_on_its_socket_and_wakes_for_a_datagram() {
    let outside = UdpPort::bind_with("127.0.0.1:0".parse().unwrap(), UdpConfig::default()).unwrap();
    let addr = outside.local_addr();
    let publisher = SaPublisher::new();
    let worker = Worker::new(
        WorkerConfig::default(),
        outside,
        ReflectPort::new(64),
        publisher.reader(),
        handoff_mesh(1, 64).pop().unwrap(),
        ControlLink::new(16),
    );
    let stats = worker.stats();
    let stop = Arc::new(AtomicBool::new(false));
    let handle = worker.spawn(stop.clone()).unwrap();

    std::thread::sleep(Duration::from_millis(300));
    let idle = stats.idle_polls.get();
    // 64 spins, then one poll a millisecond: about 360. Napping 100 µs
    // at a time made it 1,900 or more.
    assert!(idle < 1_000, "{idle} idle polls in 300 ms");

    // Not ESP (an SPI of zero): received, and dropped as malformed.
    let sent_at = Instant::now();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.send_to(&[0u8; 16], addr).unwrap();
    while stats.outside_rx.get() == 0 && sent_at.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_micros(200));
    }
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
    assert_eq!(stats.outside_rx.get(), 1, "the datagram woke the worker");
}
