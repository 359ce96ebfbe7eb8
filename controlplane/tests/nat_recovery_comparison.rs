//! espritd's epochs and pings against strongSwan's DPD (issue 4, item 4):
//! the same NAT lab, the same three NAT accidents, the same timers, and the
//! time until a ping from the client's protected side crosses again.
//!
//! Outside the default suite (strongSwan may need minutes, or never recover):
//! `cargo test -p controlplane --test nat_recovery_comparison -- --ignored --nocapture`
//!
//! Timers on both sides: liveness probe after 1 s of silence (espritd's
//! `idle_ping_after`, strongSwan's `dpd_delay`); probes retransmitted after
//! 500 ms, then 1 s (espritd's `ping_timeout` and IKE retransmission,
//! charon's `retransmit_timeout/base/limit`); a dead peer makes the client
//! start over (espritd's rekey then new IKE session, charon's
//! `dpd_action = restart`). strongSwan runs without MOBIKE: with MOBIKE it
//! recovers worse here (shared/interop/README.md).

mod common;

use std::time::Duration;

use common::natlab::{both_logs, try_until_pings, until_pings, NatLab, FAST_IKE, FAST_PEER, PSK};
use common::netns::privileged_or_skip;
use common::strongswan::{self, SiteTuning};

/// How long each side gets to recover before it counts as "not recovered".
const LIMIT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug)]
enum Accident {
    /// `conntrack -F`: the NAT forgets every mapping.
    Flush,
    /// The NAT's port range changes and its mappings are flushed: the
    /// client's flows come out of new ports.
    NewPorts,
    /// Everything through the NAT dropped for 6 s (longer than the ping
    /// budget), then restored; recovery is timed from the restore.
    BlackHole,
}

impl Accident {
    fn name(self) -> &'static str {
        match self {
            Accident::Flush => "NAT state flushed (conntrack -F)",
            Accident::NewPorts => "NAT mapping moved to new ports",
            Accident::BlackHole => "6 s black hole, then restored",
        }
    }

    fn strike(self, lab: &NatLab) {
        match self {
            Accident::Flush => lab.flush_conntrack(),
            Accident::NewPorts => {
                lab.masquerade(":40000-40999");
                lab.flush_conntrack();
            }
            Accident::BlackHole => {
                lab.black_hole();
                std::thread::sleep(Duration::from_secs(6));
                lab.restore_path();
            }
        }
    }
}

fn espritd_recovery(tag: &str, accident: Accident) -> Option<Duration> {
    let lab = NatLab::new(tag);
    let server = lab.start_server(
        &format!("{}{FAST_PEER}", lab.server_config(""))
            .replace("[[peer]]", &format!("{FAST_IKE}\n[[peer]]")),
    );
    let client = lab.start_client(&lab.client_config(FAST_IKE, FAST_PEER));
    let logs = || both_logs(&client, &server);
    until_pings(&lab, Duration::from_secs(10), &logs);
    accident.strike(&lab);
    try_until_pings(&lab, LIMIT)
}

/// IKE retransmission as espritd's FAST_IKE: 500 ms, then 1 s, 3 tries.
const CHARON_TIMERS: &str =
    "retransmit_timeout = 0.5\n  retransmit_base = 2.0\n  retransmit_limit = 1.0\n  retransmit_tries = 3";

fn strongswan_recovery(tag: &str, accident: Accident) -> Option<Duration> {
    let lab = NatLab::new(tag);
    let (client, server) = strongswan::site_to_site(
        &lab.dir,
        (&lab.client, "198.51.100.2"),
        (&lab.server, "203.0.113.2"),
        PSK,
        &SiteTuning {
            connection: "dpd_delay = 1s\n    mobike = no",
            client_child: "dpd_action = restart",
            server_child: "dpd_action = clear",
            charon: CHARON_TIMERS,
        },
    );
    let logs = || strongswan::both_logs(&client, &server);
    until_pings(&lab, Duration::from_secs(15), &logs);
    accident.strike(&lab);
    try_until_pings(&lab, LIMIT)
}

fn show(d: Option<Duration>) -> String {
    d.map_or_else(
        || format!("not within {} s", LIMIT.as_secs()),
        |d| format!("{:.2} s", d.as_secs_f64()),
    )
}

#[test]
#[ignore = "minutes long (strongSwan may not recover): run with --ignored"]
fn espritd_and_strongswan_dpd_recover_from_the_same_nat_accidents() {
    if !privileged_or_skip("NAT recovery comparison") {
        return;
    }
    assert!(
        strongswan::available(),
        "strongSwan's charon with kernel-libipsec is needed"
    );
    // The budget: ping_timeout x (ping_retries + 1) after the idle
    // ping's 1 s, plus one rekey or one new IKE session.
    let budget = Duration::from_millis(1000 + 500 * 3) + Duration::from_secs(5);
    let mut rows = Vec::new();
    for (i, accident) in [Accident::Flush, Accident::NewPorts, Accident::BlackHole]
        .into_iter()
        .enumerate()
    {
        let ours = espritd_recovery(&format!("ce{i}"), accident);
        let theirs = strongswan_recovery(&format!("cs{i}"), accident);
        println!(
            "{:<34} espritd {:>16}   strongSwan DPD {:>16}",
            accident.name(),
            show(ours),
            show(theirs)
        );
        rows.push((accident, ours, theirs));
    }
    println!("\n| NAT accident | espritd (esp-ping) | strongSwan (DPD 1 s, dpd_action=restart) |");
    println!("|---|---|---|");
    for (a, ours, theirs) in &rows {
        println!("| {} | {} | {} |", a.name(), show(*ours), show(*theirs));
    }
    for (a, ours, _) in rows {
        assert!(
            ours.is_some_and(|d| d <= budget),
            "espritd recovers from {a:?} within {budget:?}: {ours:?}"
        );
    }
}
