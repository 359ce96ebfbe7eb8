//! espritd to espritd through a real Linux NAT (nftables masquerade) in
//! network namespaces: IKE detects the NAT, moves to UDP 4500, and ESP-in-UDP
//! crosses the NAT both ways.

mod common;

use std::time::{Duration, Instant};

use common::natlab::NatLab;
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
