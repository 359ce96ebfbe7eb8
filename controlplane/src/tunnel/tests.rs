//! The epoch rules in simulated time: a client and a server tunnel joined by
//! a network the test controls (it can lose what it likes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

fn settings(mode: Mode) -> Settings {
    Settings {
        mode,
        ping_timeout: Duration::from_secs(1),
        ping_retries: 2,
        idle_ping_after: Duration::from_secs(10),
        rekey_attempts: 2,
        ignore_peer_rekey: false,
        grace_period: Duration::from_secs(5),
    }
}

/// Epoch `n`'s SPIs from the client's side (the server sees them swapped).
fn spis(n: u32) -> EpochSpis {
    EpochSpis {
        inbound: 0x100 + n,
        outbound: 0x200 + n,
    }
}

fn mirror(s: EpochSpis) -> EpochSpis {
    EpochSpis {
        inbound: s.outbound,
        outbound: s.inbound,
    }
}

struct Pair {
    now: Instant,
    client: Tunnel,
    server: Tunnel,
    /// Drop everything the client sends / the server sends.
    lose_up: bool,
    lose_down: bool,
    /// Every action each side emitted, in order.
    client_log: Vec<Action>,
    server_log: Vec<Action>,
    /// Epochs whose pong the client accepted.
    ponged: std::collections::HashSet<u32>,
}

impl Pair {
    fn new(mode: Mode) -> Pair {
        let now = Instant::now();
        Pair {
            now,
            client: Tunnel::new(Role::Client, Arc::new(settings(mode)), now, 1),
            server: Tunnel::new(Role::Server, Arc::new(settings(mode)), now, 2),
            lose_up: false,
            lose_down: false,
            client_log: Vec::new(),
            server_log: Vec::new(),
            ponged: Default::default(),
        }
    }

    /// IKE installs epoch `n` on both sides.
    fn epoch(&mut self, n: u32) {
        self.server.handle_epoch_ready(self.now, mirror(spis(n)));
        self.client.handle_epoch_ready(self.now, spis(n));
        self.settle();
    }

    /// Delivers control messages until nothing moves (the client's
    /// outbound SPI is the server's inbound one and back).
    fn settle(&mut self) {
        for _ in 0..16 {
            let mut moved = false;
            while let Some(a) = self.client.poll_action() {
                moved = true;
                self.client_log.push(a);
                if let Action::SendControl {
                    outbound_spi,
                    payload,
                } = a
                {
                    if !self.lose_up {
                        self.server.handle_control(self.now, outbound_spi, &payload);
                    }
                }
            }
            while let Some(a) = self.server.poll_action() {
                moved = true;
                self.server_log.push(a);
                if let Action::SendControl {
                    outbound_spi,
                    payload,
                } = a
                {
                    if !self.lose_down {
                        let before = self.client.stats().pongs_received;
                        self.client.handle_control(self.now, outbound_spi, &payload);
                        if self.client.stats().pongs_received > before {
                            if let Ok(m) = PingMsg::decode(&payload) {
                                self.ponged.insert(m.epoch);
                            }
                        }
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Advances simulated time by `d`, firing timers on the way.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next = [self.client.next_timeout(), self.server.next_timeout()]
                .into_iter()
                .flatten()
                .filter(|t| *t <= end)
                .min();
            let Some(t) = next else { break };
            self.now = t.max(self.now);
            self.client.handle_timeout(self.now);
            self.server.handle_timeout(self.now);
            self.settle();
        }
        self.now = end;
    }

    fn count(log: &[Action], f: impl Fn(&Action) -> bool) -> usize {
        log.iter().filter(|a| f(a)).count()
    }
}

fn is_switch(a: &Action) -> bool {
    matches!(a, Action::SwitchOutbound { .. })
}

#[test]
fn the_first_epoch_carries_data_only_after_the_pong() {
    let mut p = Pair::new(Mode::EspPing);
    p.lose_down = true; // pongs get lost: the client must not switch
    p.epoch(1);
    assert_eq!(p.client.state(), State::Probing);
    assert_eq!(p.client.data_outbound(), None, "no data before the pong");
    assert!(p.client_log.iter().all(|a| !is_switch(a)));
    // The server's data follows the client's ping at once.
    assert_eq!(p.server.data_outbound(), Some(spis(1).inbound));
    p.lose_down = false;
    p.advance(Duration::from_millis(1100)); // the re-ping gets its pong
    assert_eq!(p.client.state(), State::Up);
    assert_eq!(p.client.data_outbound(), Some(spis(1).outbound));
    assert_eq!(p.client.stats().retries, 1);
    assert_eq!(p.client.stats().epoch, 1);
}

#[test]
fn no_pong_re_pings_up_to_the_retries_then_rekeys() {
    let mut p = Pair::new(Mode::EspPing);
    p.epoch(1);
    assert_eq!(p.client.state(), State::Up);
    p.lose_up = true;
    p.advance(Duration::from_secs(12)); // idle ping at 10 s, re-pings at 11 and 12 s
    let s = p.client.stats();
    assert_eq!(
        s.pings_sent,
        1 + 3,
        "first epoch's ping, then idle ping + 2 retries"
    );
    assert_eq!(s.retries, 2);
    assert_eq!(p.client.state(), State::Up, "still hoping");
    p.advance(Duration::from_secs(1));
    assert_eq!(p.client.state(), State::Rekeying);
    assert!(p.client_log.contains(&Action::Rekey));
}

#[test]
fn the_whole_chain_from_a_dead_path_to_a_new_ike_session_and_back() {
    let mut p = Pair::new(Mode::EspPing);
    p.epoch(1);
    // The NAT dies: nothing crosses any more.
    p.lose_up = true;
    p.lose_down = true;
    p.advance(Duration::from_secs(10 + 3 + 1)); // idle ping, retries, rekey
    assert_eq!(Pair::count(&p.client_log, |a| *a == Action::Rekey), 1);
    // Each rekey fails (IKE cannot get through either).
    p.client.handle_rekey_failed(p.now);
    p.settle();
    assert_eq!(Pair::count(&p.client_log, |a| *a == Action::Rekey), 2);
    p.client.handle_rekey_failed(p.now);
    p.settle();
    assert!(p.client_log.contains(&Action::RestartIke));
    assert_eq!(p.client.state(), State::Restarting);
    assert_eq!(p.client.data_outbound(), None);
    // The NAT is back; a new IKE session brings a new first epoch.
    p.lose_up = false;
    p.lose_down = false;
    p.client.handle_ike_down(p.now);
    p.server.handle_ike_down(p.now);
    p.epoch(2);
    assert_eq!(p.client.state(), State::Up);
    assert_eq!(p.client.data_outbound(), Some(spis(2).outbound));
    assert_eq!(p.server.data_outbound(), Some(spis(2).inbound));
    let s = p.client.stats();
    assert_eq!((s.rekeys, s.restarts), (2, 1));
}

#[test]
fn a_rekey_whose_epoch_never_answers_counts_as_failed() {
    let mut p = Pair::new(Mode::EspPing);
    p.epoch(1);
    p.lose_down = true;
    p.epoch(2); // new epoch, pongs lost
    assert_eq!(
        p.client.data_outbound(),
        Some(spis(1).outbound),
        "data stays on epoch 1"
    );
    p.advance(Duration::from_secs(4));
    assert!(p.client_log.contains(&Action::Rekey));
    assert_eq!(p.client.data_outbound(), Some(spis(1).outbound));
}

#[test]
fn the_server_keeps_the_old_epoch_until_the_ping_then_retires_it_after_grace() {
    let mut p = Pair::new(Mode::EspPing);
    p.epoch(1);
    p.lose_up = true; // the client's ping on epoch 2 does not arrive yet
    p.epoch(2);
    assert_eq!(
        p.server.data_outbound(),
        Some(spis(1).inbound),
        "still the old epoch"
    );
    p.lose_up = false;
    p.advance(Duration::from_millis(1100)); // the re-ping arrives
    assert_eq!(p.server.data_outbound(), Some(spis(2).inbound));
    assert!(!p.server_log.contains(&Action::RemoveInbound {
        spi: spis(1).outbound
    }));
    p.advance(Duration::from_secs(5));
    assert!(
        p.server_log.contains(&Action::RemoveInbound {
            spi: spis(1).outbound
        }),
        "after the grace period"
    );
    assert!(p.client_log.contains(&Action::RemoveInbound {
        spi: spis(1).inbound
    }));
}

#[test]
fn replayed_and_forged_pongs_change_nothing() {
    let mut p = Pair::new(Mode::EspPing);
    p.epoch(1);
    // Keep epoch 1's pong to replay later.
    let old_pong = PingMsg {
        kind: Kind::Pong,
        epoch: 1,
        nonce: 0,
        sent_ns: 0,
    };
    p.lose_down = true;
    p.epoch(2);
    let rejected = p.client.stats().rejected;
    // A pong for epoch 1, one with a guessed nonce, one on the wrong SA.
    p.client
        .handle_control(p.now, spis(2).inbound, &old_pong.encode());
    let forged = PingMsg {
        epoch: 2,
        ..old_pong
    };
    p.client
        .handle_control(p.now, spis(2).inbound, &forged.encode());
    p.client
        .handle_control(p.now, spis(1).inbound, &forged.encode());
    p.client.handle_control(p.now, spis(2).inbound, b"garbage");
    assert_eq!(p.client.stats().rejected, rejected + 4);
    assert_eq!(
        p.client.data_outbound(),
        Some(spis(1).outbound),
        "no switch"
    );
    assert_eq!(p.client.state(), State::Probing);
}

#[test]
fn idle_tunnels_ping_and_traffic_postpones_it() {
    let mut p = Pair::new(Mode::EspPing);
    p.epoch(1);
    let sent = p.client.stats().pings_sent;
    for _ in 0..5 {
        p.advance(Duration::from_secs(5));
        p.client.handle_traffic_seen(p.now);
    }
    assert_eq!(p.client.stats().pings_sent, sent, "traffic keeps it quiet");
    p.advance(Duration::from_secs(10));
    assert_eq!(p.client.stats().pings_sent, sent + 1);
    assert!(p.client.stats().last_rtt.is_some());
}

#[test]
fn a_client_may_ignore_the_servers_rekeys() {
    let now = Instant::now();
    let mut s = settings(Mode::EspPing);
    s.ignore_peer_rekey = true;
    let s = Arc::new(s);
    let mut client = Tunnel::new(Role::Client, s.clone(), now, 3);
    assert!(!client.handle_peer_rekey_request(now));
    let mut server = Tunnel::new(Role::Server, s, now, 4);
    assert!(server.handle_peer_rekey_request(now), "only clients ignore");
    let mut plain = Tunnel::new(Role::Client, Arc::new(settings(Mode::EspPing)), now, 5);
    assert!(plain.handle_peer_rekey_request(now));
}

#[test]
fn ike_liveness_mode_sends_no_pings_and_checks_when_idle() {
    let mut p = Pair::new(Mode::Ike);
    p.epoch(1);
    assert_eq!(
        p.client.data_outbound(),
        Some(spis(1).outbound),
        "no probing without pings"
    );
    p.advance(Duration::from_secs(25));
    assert_eq!(p.client.stats().pings_sent, 0);
    assert_eq!(
        Pair::count(&p.client_log, |a| *a == Action::CheckLiveness),
        2
    );
    let mut off = Pair::new(Mode::Off);
    off.epoch(1);
    off.advance(Duration::from_secs(60));
    assert!(off
        .client_log
        .iter()
        .all(|a| is_switch(a) || matches!(a, Action::RemoveInbound { .. })));
}

#[test]
fn after_a_rekey_collision_the_surviving_epoch_is_probed() {
    let mut p = Pair::new(Mode::EspPing);
    p.epoch(1);
    // Both ends rekeyed at once: two new pairs arrive before any ping crosses.
    p.lose_up = true;
    p.epoch(2);
    p.epoch(3);
    // IKE deletes the redundant pair (the newest here).
    p.client.handle_epoch_deleted(p.now, spis(3).inbound);
    p.server
        .handle_epoch_deleted(p.now, mirror(spis(3)).inbound);
    p.lose_up = false;
    p.settle();
    p.advance(Duration::from_millis(600));
    assert_eq!(
        p.client.data_outbound(),
        Some(spis(2).outbound),
        "the survivor carries the data"
    );
    assert_eq!(p.server.data_outbound(), Some(spis(2).inbound));
    assert_eq!(p.client.state(), State::Up);
}

/// Both ends rekey at once and the server proves the client's pair first
/// (giving up its own), then IKE deletes the client's pair as the redundant
/// one: the server's pair, which IKE keeps, must become pending again and
/// answer the client's ping, not be deleted after its grace.
#[test]
fn the_pair_a_collision_keeps_is_probed_even_after_losing_to_the_other() {
    let mut p = Pair::new(Mode::EspPing);
    p.epoch(1);
    // The server's own rekey (epoch 2) and the client's (epoch 3) cross.
    p.server.handle_epoch_ready(p.now, mirror(spis(2)));
    p.server.handle_peer_epoch_ready(p.now, mirror(spis(3)));
    p.client.handle_epoch_ready(p.now, spis(3));
    p.client.handle_peer_epoch_ready(p.now, spis(2));
    p.settle(); // the client's ping on epoch 3 proves it to the server
    assert_eq!(p.server.data_outbound(), Some(spis(3).inbound));
    // IKE deletes epoch 3's pair on both ends (RFC 7296 2.8.1).
    p.client.handle_epoch_deleted(p.now, spis(3).inbound);
    p.server
        .handle_epoch_deleted(p.now, mirror(spis(3)).inbound);
    p.settle();
    p.advance(Duration::from_millis(100)); // epoch 2 has settled: ping
    assert_eq!(p.server.data_outbound(), Some(spis(2).inbound));
    assert_eq!(p.client.data_outbound(), Some(spis(2).outbound));
    p.advance(Duration::from_secs(6)); // past the grace period
    let deleted = |log: &[Action], spi| log.contains(&Action::DeleteUnused { spi });
    assert!(!deleted(&p.server_log, mirror(spis(2)).inbound));
    assert!(!deleted(&p.client_log, spis(2).inbound));
    assert_eq!(p.server.data_outbound(), Some(spis(2).inbound));
    assert_eq!(p.client.state(), State::Up);
    assert_eq!(p.client.stats().rekeys, 0, "no rekey was needed");
}

/// The pings a lone tunnel emitted since the last call.
fn pings(t: &mut Tunnel) -> Vec<(u32, [u8; PING_LEN])> {
    let mut v = Vec::new();
    while let Some(a) = t.poll_action() {
        if let Action::SendControl {
            outbound_spi,
            payload,
        } = a
        {
            v.push((outbound_spi, payload));
        }
    }
    v
}

/// The server's answer to `ping`, as the client receives it.
fn pong(ping: &[u8]) -> [u8; PING_LEN] {
    let m = PingMsg::decode(ping).unwrap();
    PingMsg {
        kind: Kind::Pong,
        ..m
    }
    .encode()
}

#[test]
fn a_peer_created_epoch_is_pinged_after_it_settles() {
    let now = Instant::now();
    let mut c = Tunnel::new(Role::Client, Arc::new(settings(Mode::EspPing)), now, 7);
    c.handle_peer_epoch_ready(now, spis(1));
    assert!(
        pings(&mut c).is_empty(),
        "the peer has not installed it yet"
    );
    assert_eq!(c.next_timeout(), Some(now + PEER_EPOCH_SETTLE));
    c.handle_timeout(now + PEER_EPOCH_SETTLE);
    let sent = pings(&mut c);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, spis(1).outbound);
}

#[test]
fn a_pong_that_arrives_after_a_newer_epoch_still_moves_data() {
    let t0 = Instant::now();
    let mut c = Tunnel::new(Role::Client, Arc::new(settings(Mode::EspPing)), t0, 7);
    c.handle_epoch_ready(t0, spis(1));
    let p1 = pings(&mut c);
    c.handle_control(t0, spis(1).inbound, &pong(&p1[0].1));
    assert_eq!(c.data_outbound(), Some(spis(1).outbound));
    // Epoch 2's ping is answered, but epoch 3 arrives before the pong.
    let t1 = t0 + Duration::from_millis(100);
    c.handle_epoch_ready(t1, spis(2));
    let p2 = pings(&mut c);
    c.handle_epoch_ready(t1, spis(3));
    let p3 = pings(&mut c);
    c.handle_control(t1, spis(2).inbound, &pong(&p2[0].1));
    assert_eq!(
        c.data_outbound(),
        Some(spis(2).outbound),
        "epoch 2 is proven"
    );
    assert_eq!(c.state(), State::Probing, "epoch 3 is still probed");
    c.handle_control(t1, spis(3).inbound, &pong(&p3[0].1));
    assert_eq!(c.data_outbound(), Some(spis(3).outbound));
    assert_eq!(c.state(), State::Up);
    assert_eq!(c.stats().rejected, 0);
}

#[test]
fn a_pending_epoch_overtaken_by_a_newer_one_is_retired_after_grace() {
    let t0 = Instant::now();
    let s = settings(Mode::EspPing);
    let mut c = Tunnel::new(Role::Client, Arc::new(s), t0, 7);
    c.handle_epoch_ready(t0, spis(1));
    let p1 = pings(&mut c);
    c.handle_control(t0, spis(1).inbound, &pong(&p1[0].1));
    c.handle_epoch_ready(t0, spis(2));
    pings(&mut c); // epoch 2's ping is lost
    c.handle_epoch_ready(t0, spis(3));
    let p3 = pings(&mut c);
    c.handle_control(t0, spis(3).inbound, &pong(&p3[0].1));
    assert_eq!(c.data_outbound(), Some(spis(3).outbound));
    let (mut removed, mut unused) = (Vec::new(), Vec::new());
    let end = t0 + s.grace_period;
    while let Some(t) = c.next_timeout().filter(|t| *t <= end) {
        c.handle_timeout(t);
        while let Some(a) = c.poll_action() {
            match a {
                Action::RemoveInbound { spi } => removed.push(spi),
                Action::DeleteUnused { spi } => unused.push(spi),
                _ => {}
            }
        }
    }
    assert_eq!(removed, [spis(1).inbound], "the epoch that carried data");
    assert_eq!(
        unused,
        [spis(2).inbound],
        "the given-up epoch, which no rekey deletes"
    );
}

#[test]
fn a_current_epoch_deleted_under_the_tunnel_leaves_data_waiting_for_the_pong() {
    let t0 = Instant::now();
    let mut c = Tunnel::new(Role::Client, Arc::new(settings(Mode::EspPing)), t0, 7);
    c.handle_epoch_ready(t0, spis(1));
    let p1 = pings(&mut c);
    c.handle_control(t0, spis(1).inbound, &pong(&p1[0].1));
    c.handle_epoch_ready(t0, spis(2));
    let p2 = pings(&mut c);
    c.handle_epoch_deleted(t0, spis(1).inbound);
    assert_eq!(c.data_outbound(), None, "no unproven epoch carries data");
    assert_eq!(c.state(), State::Probing);
    c.handle_control(t0, spis(2).inbound, &pong(&p2[0].1));
    assert_eq!(c.data_outbound(), Some(spis(2).outbound));
}

#[test]
fn a_tunnel_is_small() {
    let size = std::mem::size_of::<Tunnel>();
    // One per client: well inside the 4 KiB per tunnel budget (issue 7).
    assert!(size <= 432, "Tunnel is {size} bytes");
}

#[derive(Clone, Debug)]
enum Step {
    Epoch,
    Advance(u16),
    LoseUp(bool),
    LoseDown(bool),
    Traffic,
    RekeyFailed,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        Just(Step::Epoch),
        (1u16..3000).prop_map(Step::Advance),
        any::<bool>().prop_map(Step::LoseUp),
        any::<bool>().prop_map(Step::LoseDown),
        Just(Step::Traffic),
        Just(Step::RekeyFailed),
    ]
}

proptest! {
    /// Whatever happens, the client never moves its data to an epoch whose
    /// pong it has not received.
    #[test]
    fn no_data_on_an_epoch_before_its_pong(steps in proptest::collection::vec(step(), 1..60)) {
        let mut p = Pair::new(Mode::EspPing);
        let mut n = 0;
        for s in steps {
            match s {
                Step::Epoch => { n += 1; p.epoch(n); }
                Step::Advance(ms) => p.advance(Duration::from_millis(ms as u64)),
                Step::LoseUp(b) => p.lose_up = b,
                Step::LoseDown(b) => p.lose_down = b,
                Step::Traffic => p.client.handle_traffic_seen(p.now),
                Step::RekeyFailed => { p.client.handle_rekey_failed(p.now); p.settle(); }
            }
        }
        // A switch to epoch e needs a pong accepted on e (the switch is
        // emitted while that pong is handled, so "before" holds too).
        let switched: Vec<u32> = p
            .client_log
            .iter()
            .filter_map(|a| match a {
                Action::SwitchOutbound { epoch, .. } => Some(*epoch),
                _ => None,
            })
            .collect();
        for e in &switched {
            prop_assert!(p.ponged.contains(e), "switched to epoch {} without its pong", e);
        }
        // And every switch went to a newer epoch.
        prop_assert!(switched.windows(2).all(|w| w[0] < w[1]));
    }
}

#[test]
fn only_an_authentic_ping_on_an_epoch_says_where_the_peer_is() {
    let t0 = Instant::now();
    let mut s = Tunnel::new(Role::Server, Arc::new(settings(Mode::EspPing)), t0, 3);
    s.handle_epoch_ready(t0, mirror(spis(1)));
    let mut c = Tunnel::new(Role::Client, Arc::new(settings(Mode::EspPing)), t0, 7);
    c.handle_epoch_ready(t0, spis(1));
    let ping = pings(&mut c)[0].1;
    assert!(s.handle_control(t0, mirror(spis(1)).inbound, &ping));
    assert!(
        !s.handle_control(t0, 0xdead, &ping),
        "not one of its epochs"
    );
    assert!(!s.handle_control(t0, mirror(spis(1)).inbound, &[1, 2, 3]));
    assert!(!s.handle_control(t0, mirror(spis(1)).inbound, &pong(&ping)));
}
