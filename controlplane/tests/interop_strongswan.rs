//! Interop with strongSwan (charon, userspace ESP through kernel-libipsec)
//! in network namespaces. Root and the strongSwan packages (`.ci/run`
//! installs them).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::daemon::Espritd;
use common::netns::{privileged_or_skip, veth, NetNs};
use common::strongswan::{self, Charon};

const PSK: &str = "interop-test-psk-0123456789abcdef";

fn gateway_config(proposal: &str, esp: &str) -> String {
    format!(
        r#"
[gateway]
outside = ["192.0.2.1:4500"]

[dataplane]
workers = 2

[dataplane.inside]
name = "esprit0"
addresses = ["10.1.0.1/24"]

[ike]
local_id = "gw.lab.test"

[[peer]]
name = "roadwarriors"
role = "responder"
remote_id = "any"
psk = "{PSK}"
local_ts = ["10.1.0.0/24"]
pool = "10.3.0.0/24"
proposals = ["{proposal}"]
esp_proposals = ["{esp}"]
liveness = "ike"
"#
    )
}

fn roadwarrior_swanctl(proposal: &str, esp: &str) -> String {
    format!(
        r#"connections {{
  gw {{
    version = 2
    local_addrs = 192.0.2.2
    remote_addrs = 192.0.2.1
    proposals = {proposal}
    vips = 0.0.0.0
    local {{
      auth = psk
      id = client.lab.test
    }}
    remote {{
      auth = psk
      id = gw.lab.test
    }}
    children {{
      net {{
        remote_ts = 10.1.0.0/24
        esp_proposals = {esp}
      }}
    }}
  }}
}}
secrets {{
  ike-gw {{
    id-1 = client.lab.test
    id-2 = gw.lab.test
    secret = "{PSK}"
  }}
}}
"#
    )
}

/// Sends `len` patterned bytes from `client` to `server_addr` (served in
/// `server`), and checks they arrive intact.
fn tcp_transfer(server: &NetNs, client: &NetNs, server_addr: &str, len: usize) {
    let data: Vec<u8> = (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let expected = data.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let bind = server_addr.to_string();
    let srv = server.run(move || {
        let l = TcpListener::bind(&bind).expect("bind");
        ready_tx.send(()).unwrap();
        let (mut s, _) = l.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).expect("read");
        got
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("server ready");
    let to: SocketAddr = server_addr.parse().unwrap();
    let cl = client.run(move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5))
            .expect("connect through the tunnel");
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(&data).expect("send");
    });
    cl.join().expect("client");
    let got = srv.join().expect("server");
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "TCP content differs");
}

fn roadwarrior(tag: &str, proposal: &str, esp: &str) {
    if !privileged_or_skip("strongswan roadwarrior") {
        return;
    }
    assert!(
        strongswan::available(),
        "strongSwan (charon + kernel-libipsec) is not installed"
    );
    let id = format!("{}{tag}", std::process::id());
    let gw = NetNs::new(&format!("esprit-sg-{id}"));
    let cl = NetNs::new(&format!("esprit-sc-{id}"));
    veth(
        &gw,
        "veth-gw",
        "192.0.2.1/24",
        &cl,
        "veth-cl",
        "192.0.2.2/24",
    );
    let dir = std::env::temp_dir().join(format!("esprit-swan-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("espritd.toml");
    std::fs::write(&cfg, gateway_config(proposal, esp)).unwrap();
    let espritd = Espritd::start(&gw, &cfg, "esprit0");
    let charon = Charon::start(
        &cl,
        &dir.join("charon"),
        &roadwarrior_swanctl(proposal, esp),
    );

    let t0 = Instant::now();
    let up = charon.swanctl(&["--initiate", "--child", "net", "--timeout", "15"]);
    let up_text = String::from_utf8_lossy(&up.stdout).into_owned();
    assert!(
        up.status.success(),
        "strongSwan could not connect:\n{up_text}\n--- espritd:\n{}\n--- charon:\n{}",
        espritd.log_text(),
        charon.log()
    );
    eprintln!("IKE_SA + CHILD_SA with strongSwan in {:?}", t0.elapsed());
    let sas = charon.list_sas();
    assert!(sas.contains("ESTABLISHED"), "{sas}");
    assert!(sas.contains("INSTALLED"), "{sas}");
    assert!(
        sas.contains("10.3.0."),
        "virtual IP from espritd's pool: {sas}"
    );

    let ping = cl.try_exec(&["ping", "-c", "5", "-i", "0.2", "-W", "2", "10.1.0.1"]);
    let text = String::from_utf8_lossy(&ping.stdout);
    assert!(
        ping.status.success() && text.contains("5 received"),
        "ping through the tunnel failed:\n{text}\n--- espritd:\n{}",
        espritd.log_text()
    );
    tcp_transfer(&gw, &cl, "10.1.0.1:5001", 2 << 20);
    let log = espritd.log_text();
    if std::env::var_os("ESPRIT_TEST_VERBOSE").is_some() {
        eprintln!(
            "--- strongSwan SAs:\n{}\n--- espritd:\n{log}",
            charon.list_sas()
        );
    }
    assert!(log.contains("CHILD SA installed"), "{log}");
    assert!(
        !log.contains(&PSK[..10]),
        "the PSK must never reach the log"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn strongswan_roadwarrior_gets_a_pool_address_aes128_x25519() {
    roadwarrior("a", "aes128gcm16-prfsha256-x25519", "aes128gcm16");
}

#[test]
fn strongswan_roadwarrior_gets_a_pool_address_aes256_ecp256() {
    roadwarrior("b", "aes256gcm16-prfsha384-ecp256", "aes256gcm16");
}
