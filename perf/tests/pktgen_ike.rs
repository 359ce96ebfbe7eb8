//! esprit-pktgen's IKE mode against espritd's daemon (its IKE responder
//! with a pool and a reflecting inside), in process on loopback: 200
//! clients each run IKEv2, get an inner address, ping on their first epoch
//! and then send numbered traffic that all comes back, while every client
//! rekeys once (a rekey storm): no packet is lost to an epoch switch. A
//! control run follows, its storm timed but without rekeys.
//!
//! One test in this file: the daemon runs its control loop until SIGTERM,
//! which the test raises at the end (signal-hook turns it into a flag).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::Duration;

use controlplane::daemon::Daemon;
use perf::pktgen::gen_config::GenConfig;
use perf::pktgen::ike::{run_ike, IkeOptions};
use perf::pktgen::session::SessionOptions;
use perf::pktgen::traffic::{SizeMix, Stop, TrafficSpec};

/// A loopback address whose port 4500 is free. The gateway's NAT-T port
/// must be 4500: its IKE endpoint strips the non-ESP marker (RFC 3948)
/// only there.
fn natt_address() -> SocketAddr {
    let pid = std::process::id();
    for k in 0..200u32 {
        let n = pid.wrapping_add(k);
        let ip = Ipv4Addr::new(127, 66, (n >> 8) as u8, (n as u8).max(1));
        if UdpSocket::bind((ip, 4500)).is_ok() {
            return (ip, 4500).into();
        }
    }
    panic!("no free 127.66.x.y:4500");
}

/// `clients` loopback IKE clients over `sockets` sockets, rekeying in
/// `rounds` storms of `storm` each (or, with `control`, only timing them).
fn storm_clients(
    clients: usize,
    sockets: usize,
    storm: Duration,
    rounds: u32,
    control: bool,
) -> IkeOptions {
    IkeOptions {
        clients,
        client_ip: "127.0.0.1".parse().unwrap(),
        client_port: 0,
        sockets,
        in_flight: 64,
        setup_timeout: Duration::from_secs(60),
        gateway: None,
        rekey_storm: Some(storm),
        rekey_rounds: rounds,
        storm_control: control,
        peer: None,
        client_id: perf::pktgen::ike::DEFAULT_CLIENT_ID.into(),
    }
}

/// 64-byte traffic at `rate` packets/s on `threads` threads until `stop`.
fn paced(threads: usize, rate: f64, stop: Stop) -> SessionOptions {
    SessionOptions {
        threads,
        traffic: TrafficSpec {
            size: SizeMix::Fixed(64),
            rate: Some(rate),
            stop,
            drain: Duration::from_secs(2),
            burst: 32,
            window: None,
            train: 1,
            shuffle: false,
        },
        progress: false,
        gateway_pid: None,
    }
}

#[test]
fn two_hundred_ike_clients_come_up_ping_rekey_and_get_every_packet_back() {
    let natt = natt_address();
    let ike_port = UdpSocket::bind((natt.ip(), 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = GenConfig {
        ike: true,
        clients: 200,
        gateway: natt,
        ike_port,
        workers: 2,
        ..GenConfig::default()
    }
    .render()
    .unwrap();
    let cfg = config::parse(&text, "pktgen-ike.toml").unwrap();
    let (ready_tx, ready) = mpsc::channel();
    let gw_cfg = cfg.clone();
    let gateway = std::thread::spawn(move || match Daemon::start(&gw_cfg) {
        Ok(d) => {
            let _ = ready_tx.send(None);
            let _ = d.run_until_signal(Duration::from_secs(3600));
        }
        Err(e) => {
            let _ = ready_tx.send(Some(e.to_string()));
        }
    });
    if let Some(e) = ready.recv().unwrap() {
        panic!("gateway: {e}");
    }

    // Two rounds: 0.25-1.25 s and 1.5-2.5 s into the traffic.
    let report = run_ike(
        &cfg,
        &storm_clients(200, 4, Duration::from_secs(1), 2, false),
        &paced(2, 20_000.0, Stop::Count(70_000)),
    );
    // A control run against the same gateway: a storm's round timed and
    // measured (4 s after a quiet second, and a quiet second after it),
    // but no client rekeys.
    let control = report.is_ok().then(|| {
        run_ike(
            &cfg,
            &storm_clients(50, 2, Duration::from_secs(4), 1, true),
            &paced(1, 5_000.0, Stop::After(Duration::from_millis(7_500))),
        )
    });
    // Stop the daemon whatever happened (it registered for SIGTERM before
    // its first control step, so it is listening by now).
    // SAFETY: raise has no preconditions; the handler only sets a flag.
    unsafe { libc::raise(libc::SIGTERM) };
    let joined = gateway.join();
    let r = report.unwrap();
    let c = control.expect("the storm run failed").unwrap();
    assert!(joined.is_ok(), "gateway thread panicked");

    let s = r.setup.as_ref().expect("set-up figures");
    assert_eq!(
        (s.tunnels, s.pinged, s.failed),
        (200, 200, 0),
        "{}",
        r.table()
    );
    assert!(s.tunnels_per_sec > 0.0 && s.seconds > 0.0);
    let d = r.teardown.as_ref().expect("teardown figures");
    assert_eq!((d.deleted, d.left), (200, 0), "{}", r.table());
    assert_eq!(r.clients, 200);
    assert_eq!(r.sent, 70_000);
    // Every client rekeyed under traffic, twice, and moved its data to the
    // new pair after the pong; the old pair was retired after its grace.
    let k = r.rekeys.expect("rekey figures");
    assert_eq!(
        (k.started, k.completed, k.failed),
        (400, 400, 0),
        "{}",
        r.table()
    );
    // Their IKE and epoch work is timed: 400 rekeys take some, and far
    // less than the run.
    let work_s = k.generator_work_ns as f64 / 1e9;
    assert!(work_s > 0.0 && work_s < r.seconds, "{}", r.table());
    assert!(r.table().contains("the generator's own IKE and epoch work"));
    assert_eq!(r.received, r.sent, "{}", r.table());
    assert_eq!((r.lost, r.duplicated), (0, 0));
    assert_eq!(r.errors, Default::default(), "{}", r.table());
    // The rekeys' IKE messages and pings reuse the traffic's buffers: 400
    // rekeys send over 1,200 datagrams, which allocated over 1,200 buffers
    // when each took a fresh one.
    assert!(
        r.generator.buffers_allocated < 400,
        "{} buffers",
        r.generator.buffers_allocated
    );

    // The control run rekeyed nobody and still measured its round, on both
    // sides: steady paced traffic reads about 1.0x.
    let k = c.rekeys.expect("control figures");
    assert!(k.control);
    assert_eq!((k.started, k.completed, k.failed), (0, 0, 0));
    assert_eq!(c.received, c.sent, "{}", c.table());
    assert_eq!(c.storm_rounds.len(), 1, "{}", c.table());
    let round = &c.storm_rounds[0];
    assert!(round.quiet_after_mpps.is_some(), "{}", c.table());
    assert!((0.8..1.25).contains(&round.ratio), "{}", c.table());
    assert!(c.table().contains("rekey storm control"), "{}", c.table());
}
