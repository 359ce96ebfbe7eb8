//! What one CHILD SA rekey costs the gateway's control thread, at a small
//! and a large tunnel count, as esprit's epochs have it (docs/ping.md): the
//! client's CREATE_CHILD_SA, the new pair installed in the SA tables, the
//! client's ping on it (the epoch switch: outbound moves, a pong is
//! sealed), then the client's DELETE of the old pair and its removal; the
//! tables published after each poll that changed them. The lab's rekey storm (issue 7) runs
//! this path 1,667 times a second at 100,000 tunnels, on a core that also
//! carries traffic, so its cost per rekey is what the storm's throughput
//! drop comes from.
//!
//! Only the gateway's time is counted (handing it the datagrams and its
//! `poll`); the clients' side runs in the same thread, untimed. Simulated
//! time: each round spreads the rekeys over a minute, as the lab does.
//!
//! `cargo bench -p controlplane --bench rekey` (`ESPRIT_REKEY_TUNNELS`,
//! a comma-separated list, default `1000,20000`; `ESPRIT_REKEY_ROUNDS`,
//! default 3, more to profile a small size)

use std::time::{Duration, Instant};

mod common;

/// espritd's allocator, so the figures are the daemon's (see espritd.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use common::client_batch;
use controlplane::gateway::InProcessGateway;
use controlplane::ike::sa::{ChildSa, Event, IkeEndpoint, IkeSaId, Transmit};
use controlplane::tunnel::{Kind, PingMsg};

const BATCH: usize = 1000;
/// Datagrams the gateway takes per poll (and so per publication of its
/// tables). The lab's storm, 1,667 rekeys a second on a control loop that
/// wakes every few milliseconds, hands it a few at a time.
const PER_POLL: usize = 8;

fn main() {
    let sizes: Vec<usize> = std::env::var("ESPRIT_REKEY_TUNNELS")
        .unwrap_or_else(|_| "1000,20000".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    println!("== gateway control thread per CHILD SA rekey (CREATE_CHILD_SA + DELETE) ==");
    let rounds: usize = std::env::var("ESPRIT_REKEY_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let mut first = None;
    for n in sizes {
        let per = per_rekey(n, rounds);
        let base = *first.get_or_insert(per);
        println!(
            "{n:>7} tunnels: median of {rounds} rounds {:6.1} µs per rekey ({:.2}x of the first size)",
            per.as_secs_f64() * 1e6,
            per.as_secs_f64() / base.as_secs_f64()
        );
    }
}

/// A batch of clients: their endpoint and each one's IKE SA and current
/// inbound SPI.
struct Clients {
    ep: IkeEndpoint,
    children: Vec<(IkeSaId, u32)>,
    /// New pairs of this round's rekeys, to ping on and then delete the
    /// pairs they replace.
    rekeyed: Vec<ChildSa>,
}

/// The gateway's median time per rekey over `rounds` rounds, `n` tunnels
/// up.
fn per_rekey(n: usize, rounds: usize) -> Duration {
    let text = common::gateway_config("", "");
    let cfg = config::parse(&text, "bench").unwrap_or_else(|e| panic!("{e}"));
    let mut gw = InProcessGateway::new(&cfg).expect("gateway");
    let mut now = Instant::now();
    let mut batches: Vec<Clients> = (0..n.div_ceil(BATCH))
        .map(|b| Clients {
            ep: client_batch(n, b, 5000, gw.ike, now),
            children: Vec::new(),
            rekeyed: Vec::new(),
        })
        .collect();
    for c in &mut batches {
        exchange(&mut gw, c, now);
        // Old pairs are deleted after the epoch switch, as pktgen does.
        c.ep.set_defer_rekeyed_delete(true);
    }
    assert_eq!(gw.driver.tunnels(), n, "every client got its tunnel");
    eprintln!("{n} tunnels up; rekeying them {rounds} times");
    let step = Duration::from_secs(60) / batches.len() as u32;
    let mut per_round = Vec::new();
    for _ in 0..rounds {
        let mut spent = Duration::ZERO;
        let mut rekeys = 0;
        for c in &mut batches {
            now += step;
            for &(ike, spi) in &c.children {
                rekeys += usize::from(c.ep.rekey_child_sa(now, ike, spi));
            }
            spent += exchange(&mut gw, c, now);
            spent += ping_then_delete(&mut gw, c, now);
        }
        assert_eq!(rekeys, n, "every client started its rekey");
        assert_eq!(gw.driver.tunnels(), n, "the tunnels stayed");
        assert_eq!(
            gw.driver.stats.child_sas_installed as usize,
            n * (per_round.len() + 2),
            "each rekey installed its new pair"
        );
        assert_eq!(
            gw.driver.stats.child_sas_removed as usize,
            n * (per_round.len() + 1),
            "each rekey removed the old pair"
        );
        per_round.push(spent / n as u32);
    }
    per_round.sort();
    per_round[rounds / 2]
}

/// Runs a batch's datagrams to and from the gateway until both are quiet;
/// returns the time the gateway spent. Keeps each client's newest SPI.
fn exchange(gw: &mut InProcessGateway, c: &mut Clients, now: Instant) -> Duration {
    let mut spent = Duration::ZERO;
    loop {
        let sent: Vec<Transmit> = std::iter::from_fn(|| c.ep.poll_transmit()).collect();
        let t = Instant::now();
        let mut back = Vec::new();
        for group in sent.chunks(PER_POLL) {
            for d in group {
                gw.deliver(now, d);
            }
            back.extend(gw.poll(now));
        }
        if sent.is_empty() {
            back.extend(gw.poll(now));
        }
        spent += t.elapsed();
        for d in &back {
            c.ep.handle_datagram(now, d.remote, d.local, &d.payload);
        }
        take_events(c);
        if sent.is_empty() && back.is_empty() {
            return spent;
        }
    }
}

/// Keeps what the batch's clients learnt: new pairs, and IKE SAs the
/// gateway rekeyed (hours of simulated rounds reach their lifetime).
fn take_events(c: &mut Clients) {
    while let Some(e) = c.ep.poll_event() {
        match e {
            Event::ChildSaEstablished(sa) => match sa.replaces {
                Some(_) => c.rekeyed.push(*sa),
                None => c.children.push((sa.ike_sa, sa.inbound_spi)),
            },
            Event::IkeSaRekeyed { old, new } => {
                for child in c.children.iter_mut().filter(|x| x.0 == old) {
                    child.0 = new;
                }
                for sa in c.rekeyed.iter_mut().filter(|x| x.ike_sa == old) {
                    sa.ike_sa = new;
                }
            }
            _ => {}
        }
    }
}

/// Each new pair of the batch's rekeys carries a ping to the gateway (as a
/// worker hands it over after opening it), which must answer with a pong
/// on the new pair; then the clients delete the old pairs. Returns the
/// gateway's time.
fn ping_then_delete(gw: &mut InProcessGateway, c: &mut Clients, now: Instant) -> Duration {
    let t = Instant::now();
    let mut back = Vec::new();
    for group in c.rekeyed.chunks(PER_POLL) {
        for sa in group {
            common::deliver_ping(gw, sa, now);
        }
        back.extend(gw.poll(now));
    }
    let mut spent = t.elapsed();
    // What the gateway sent meanwhile (its own IKE requests) reaches the
    // clients before they delete.
    for d in &back {
        c.ep.handle_datagram(now, d.remote, d.local, &d.payload);
    }
    take_events(c);
    let rekeyed = std::mem::take(&mut c.rekeyed);
    let pongs = gw.take_sealed();
    assert_eq!(pongs.len(), rekeyed.len(), "every ping got its pong");
    for (sa, (spi, msg)) in rekeyed.iter().zip(&pongs) {
        assert_eq!(*spi, sa.inbound_spi, "the pong goes out on the new pair");
        assert_eq!(PingMsg::decode(msg).map(|m| m.kind), Ok(Kind::Pong));
    }
    for sa in &rekeyed {
        let (old, new) = (sa.replaces.unwrap_or_default(), sa.inbound_spi);
        if let Some(entry) = c.children.iter_mut().find(|x| x.1 == old) {
            entry.1 = new;
        }
        c.ep.delete_child_sa(now, sa.ike_sa, old);
    }
    spent += exchange(gw, c, now);
    spent
}
