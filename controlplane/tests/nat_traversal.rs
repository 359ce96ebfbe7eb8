//! espritd to espritd through a real Linux NAT (nftables masquerade) in
//! network namespaces: IKE detects the NAT, moves to UDP 4500, and ESP-in-UDP
//! crosses the NAT both ways.

mod common;

use std::time::{Duration, Instant};

use common::natlab::{both_logs, until_pings, NatLab, FAST_IKE, FAST_PEER};
use common::netns::privileged_or_skip;

#[test]
fn two_espritd_through_a_linux_nat() {
    if !privileged_or_skip("two_espritd_through_a_linux_nat") {
        return;
    }
    let lab = NatLab::new("t");
    let server = lab.start_server(&lab.server_config("liveness = \"ike\""));
    let client = lab.start_client(&lab.client_config("", "liveness = \"ike\""));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lab.ping_once("1") {
        assert!(
            Instant::now() < deadline,
            "no tunnel through the NAT\n--- client:\n{}\n--- server:\n{}",
            client.log_text(),
            server.log_text()
        );
    }
    let ping = lab.client.try_exec(&[
        "ping", "-c", "5", "-i", "0.2", "-W", "2", "-I", "10.8.0.1", "10.1.0.1",
    ]);
    assert!(String::from_utf8_lossy(&ping.stdout).contains("5 received"));
    // The server saw the client behind the NAT's address, on 4500.
    let log = server.log_text();
    assert!(log.contains("peer=203.0.113.1:"), "{log}");
    assert!(log.contains("udp_encap=true"), "{log}");
    let ct = lab.nat.try_exec(&["conntrack", "-L", "-p", "udp"]);
    assert!(
        String::from_utf8_lossy(&ct.stdout).contains("dport=4500"),
        "a NAT mapping for 4500"
    );
}

fn esp_ping_lab(tag: &str) -> Option<(NatLab, common::daemon::Espritd, common::daemon::Espritd)> {
    if !privileged_or_skip("esp-ping NAT recovery") {
        return None;
    }
    let lab = NatLab::new(tag);
    let server = lab.start_server(
        &format!("{}{FAST_PEER}", lab.server_config(""))
            .replace("[[peer]]", &format!("{FAST_IKE}\n[[peer]]")),
    );
    let client = lab.start_client(&lab.client_config(FAST_IKE, FAST_PEER));
    Some((lab, server, client))
}

#[test]
fn esp_ping_epochs_come_up_through_a_linux_nat() {
    let Some((lab, server, client)) = esp_ping_lab("e") else {
        return;
    };
    let logs = || both_logs(&client, &server);
    until_pings(&lab, Duration::from_secs(10), &logs);
    let c = client.log_text();
    assert!(
        c.contains("epoch confirmed"),
        "the client moved data only after its pong:\n{}",
        logs()
    );
    // espritctl shows the epoch, its state and the last pong's RTT.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_espritctl"))
        .arg("--socket")
        .arg(common::daemon::Espritd::socket(
            &lab.dir.join("client.toml"),
        ))
        .args(["--json", "tunnels"])
        .output()
        .unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &reply["data"][0];
    assert_eq!(row["epoch_state"], "up", "{reply}");
    assert!(row["epoch"].as_u64().unwrap_or(0) >= 1, "{reply}");
    assert!(row["rtt_ms"].as_f64().is_some(), "{reply}");
    assert!(
        server.log_text().contains("epoch confirmed"),
        "the server moved after the client's ping:\n{}",
        logs()
    );
    // Each switch is counted (the lines are debug level: the test's
    // daemons log at debug, an operator's at info).
    for (name, d) in [("client", &client), ("server", &server)] {
        let logged = d.log_text().matches("epoch confirmed").count() as u64;
        let stats = common::daemon::Espritd::stats(&lab.dir.join(format!("{name}.toml")));
        let counted = stats["data"]["ike"]["epoch_switches"].as_u64().unwrap_or(0);
        assert!(
            logged >= 1 && counted >= logged,
            "{name}: {logged} switches logged, {counted} counted"
        );
    }
}

/// The budget the issue sets: ping_timeout x (ping_retries + 1), plus one
/// rekey or one new IKE session (with the idle ping's 1 s in front).
fn budget() -> Duration {
    Duration::from_millis(1000 + 500 * 3) + Duration::from_secs(5)
}

#[test]
fn recovers_after_the_nat_forgets_its_mappings() {
    let Some((lab, server, client)) = esp_ping_lab("a") else {
        return;
    };
    let logs = || both_logs(&client, &server);
    until_pings(&lab, Duration::from_secs(10), &logs);
    lab.flush_conntrack();
    let took = until_pings(&lab, budget(), &logs);
    eprintln!("recovery after conntrack -F: {took:?}");
}

#[test]
fn recovers_when_the_nat_moves_its_mapping_to_other_ports() {
    let Some((lab, server, client)) = esp_ping_lab("b") else {
        return;
    };
    let logs = || both_logs(&client, &server);
    until_pings(&lab, Duration::from_secs(10), &logs);
    lab.masquerade(":40000-40999");
    lab.flush_conntrack();
    let took = until_pings(&lab, budget(), &logs);
    eprintln!("recovery after the NAT moved to ports 40000-40999: {took:?}");
    // The client's next ping comes from the new port; it is authentic, so
    // the server follows it there (its SAs and IKE), without a rekey.
    let s = server.log_text();
    let moved_peer = s
        .lines()
        .filter(|l| l.contains("peer moved"))
        .filter_map(|l| {
            l.split("to=203.0.113.1:")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u16>()
                .ok()
        })
        .any(|p| (40000..=40999).contains(&p));
    assert!(
        moved_peer,
        "the server follows the new mapping:\n{}",
        logs()
    );
    assert!(
        !client
            .log_text()
            .contains("the epoch's path does not answer"),
        "no rekey was needed:\n{}",
        logs()
    );
    // And IKE follows too: a rekey now reaches the client at its new port.
    espritctl(&lab.dir.join("server.toml"), &["rekey", "client"]);
    let installed_at_new_port = || {
        server
            .log_text()
            .lines()
            .filter(|l| l.contains("CHILD SA installed") && l.contains("rekey=true"))
            .filter_map(|l| {
                l.split("peer=203.0.113.1:")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse::<u16>()
                    .ok()
            })
            .any(|p| (40000..=40999).contains(&p))
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !installed_at_new_port() {
        assert!(
            Instant::now() < deadline,
            "the server's rekey reached the moved client:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    until_pings(&lab, Duration::from_secs(5), &logs);
    let ct = lab.nat.try_exec(&["conntrack", "-L", "-p", "udp"]);
    let text = String::from_utf8_lossy(&ct.stdout);
    let moved = text
        .split("dport=")
        .skip(1)
        .filter_map(|t| t.split_whitespace().next()?.parse::<u16>().ok())
        .any(|p| (40000..=40999).contains(&p));
    assert!(moved, "the new mapping is in the new range:\n{text}");
}

#[test]
fn recovers_after_a_black_hole_longer_than_the_ping_budget() {
    let Some((lab, server, client)) = esp_ping_lab("c") else {
        return;
    };
    let logs = || both_logs(&client, &server);
    until_pings(&lab, Duration::from_secs(10), &logs);
    lab.black_hole();
    std::thread::sleep(Duration::from_secs(6));
    lab.restore_path();
    let took = until_pings(&lab, budget(), &logs);
    eprintln!("recovery after a 6 s black hole: {took:?}");
    // The black hole outlasted the ping budget: the client found the path
    // dead and rekeyed (the rekey's retransmission gets through on restore).
    assert!(
        client
            .log_text()
            .contains("the epoch's path does not answer"),
        "{}",
        logs()
    );
}

#[test]
fn a_client_reconnects_by_itself_after_the_server_crashed_and_came_back() {
    let Some((lab, server, client)) = esp_ping_lab("r") else {
        return;
    };
    until_pings(&lab, Duration::from_secs(10), &|| client.log_text());
    // The server dies without a word and comes back with no state: the
    // client's epoch goes quiet, its rekey meets a stranger, and it must
    // start a new IKE session (with INITIAL_CONTACT) on its own.
    server.crash();
    let server = lab.start_server(
        &format!("{}{FAST_PEER}", lab.server_config(""))
            .replace("[[peer]]", &format!("{FAST_IKE}\n[[peer]]")),
    );
    let logs = || both_logs(&client, &server);
    // Budget: the ping budget (1 s idle + 3 x 500 ms), one failed rekey
    // (IKE retransmissions: 500 ms + 1 s + 1 s + 1 s), the reconnect delay
    // (3 s) and a new IKE session.
    let took = until_pings(&lab, Duration::from_secs(15), &logs);
    eprintln!("recovery after a server crash and restart: {took:?}");
    let c = client.log_text();
    for l in c
        .lines()
        .filter(|l| l.contains("IKE SA") || l.contains("rekey") || l.contains("new IKE session"))
    {
        eprintln!("  client: {}", l.get(27..).unwrap_or(l));
    }
    assert!(
        c.matches("IKE SA established").count() >= 2,
        "a second IKE session:\n{}",
        logs()
    );
    assert!(
        server.log_text().contains("IKE SA established"),
        "{}",
        logs()
    );
}

#[test]
fn a_peer_added_by_reload_gets_epochs_and_pings() {
    let Some((lab, server, client)) = esp_ping_lab("l") else {
        return;
    };
    let logs = || both_logs(&client, &server);
    until_pings(&lab, Duration::from_secs(10), &logs);
    // The client's peer goes away by reload, then comes back under a new
    // name: its new tunnel must run the esp-ping epochs, as at start.
    let path = lab.dir.join("client.toml");
    let full = std::fs::read_to_string(&path).unwrap();
    // The [control] section the test harness appended stays.
    let (peer, control) = (
        full.find("[[peer]]").unwrap(),
        full.find("\n[control]").unwrap(),
    );
    let without = format!("{}{}", &full[..peer], &full[control..]);
    let reload = |text: &str| reload_with(&path, text);
    reload(&without);
    let renamed = full.replace("name = \"server\"", "name = \"server2\"");
    let before = client.log_text().matches("epoch confirmed").count();
    reload(&renamed);
    until_pings(&lab, Duration::from_secs(10), &logs);
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.log_text().matches("epoch confirmed").count() <= before {
        assert!(
            Instant::now() < deadline,
            "the reloaded peer's tunnel waits for its pong:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_gateway_given_its_first_responder_peer_by_reload_answers_clients() {
    if !privileged_or_skip("first responder by reload") {
        return;
    }
    let lab = NatLab::new("g");
    let full = format!("{}{FAST_PEER}", lab.server_config(""))
        .replace("[[peer]]", &format!("{FAST_IKE}\n[[peer]]"));
    // The gateway starts with no peer at all: nobody is answered.
    let server = lab.start_server(&full[..full.find("[[peer]]").unwrap()]);
    let client = lab.start_client(&lab.client_config(FAST_IKE, FAST_PEER));
    let logs = || both_logs(&client, &server);
    assert!(!lab.ping_once("1"), "no tunnel without a responder peer");
    let path = lab.dir.join("server.toml");
    let written = std::fs::read_to_string(&path).unwrap();
    let control = written.find("\n[control]").unwrap();
    reload_with(&path, &format!("{full}{}", &written[control..]));
    // The client retries every 3 s; its next attempt is answered.
    until_pings(&lab, Duration::from_secs(15), &logs);
}

/// Writes `text` to the daemon's config at `path` and has it reloaded.
fn reload_with(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).unwrap();
    espritctl(path, &["reload"]);
}

/// Runs espritctl against the daemon of config `path`; it must succeed.
fn espritctl(path: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_espritctl"))
        .arg("--socket")
        .arg(common::daemon::Espritd::socket(path))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn removing_a_responder_peer_by_reload_ends_its_clients_tunnels() {
    let Some((lab, server, client)) = esp_ping_lab("x") else {
        return;
    };
    let logs = || both_logs(&client, &server);
    until_pings(&lab, Duration::from_secs(10), &logs);
    let path = lab.dir.join("server.toml");
    let full = std::fs::read_to_string(&path).unwrap();
    let (peer, control) = (
        full.find("[[peer]]").unwrap(),
        full.find("\n[control]").unwrap(),
    );
    reload_with(&path, &format!("{}{}", &full[..peer], &full[control..]));
    // The client is no longer admitted: its IKE SA (and with it the
    // tunnel) goes at once, and its attempts to come back are refused.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server
        .log_text()
        .contains("no responder peer admits this client")
    {
        assert!(Instant::now() < deadline, "{}", logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(!lab.ping_once("1"), "the tunnel is gone:\n{}", logs());
}
