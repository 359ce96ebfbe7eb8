//! esprit's ESP against an independent implementation: scapy's
//! `SecurityAssociation` decrypts what esprit seals (tunnel mode, AES-GCM,
//! ESN across the 2^32 wrap) and seals packets esprit must open.
//!
//! Needs python3 with scapy (`.ci/run` installs it). Set
//! ESPRIT_SKIP_SCAPY=1 to skip on a machine without it.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use dataplane::esp::{self, next_header};
use dataplane::packet::{Encap, Packet};
use dataplane::sa::{HardLimits, InboundSa, InboundSpec, OutboundSa, OutboundSpec};
use dataplane::testkit::ipv4_udp;
use rand::Rng;
use serde_json::{json, Value};

fn scapy(input: &Value) -> Option<Value> {
    if std::env::var_os("ESPRIT_SKIP_SCAPY").is_some() {
        eprintln!("ESPRIT_SKIP_SCAPY set: skipping the scapy cross-check");
        return None;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/scapy_esp.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed (or set ESPRIT_SKIP_SCAPY=1)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "scapy check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

fn check_with_key_len(key_len: usize) {
    let mut rng = rand::rng();
    let key: Vec<u8> = (0..key_len).map(|_| rng.random()).collect();
    let salt: [u8; 4] = rng.random();
    let spi = 0x0100_2345;
    let out = OutboundSa::new(OutboundSpec {
        spi,
        tunnel: 1,
        owner: 0,
        key: &key,
        salt,
        esn: true,
        remote: "192.0.2.2:0".parse().unwrap(),
        encap: Encap::RawEsp,
        limits: HardLimits::default(),
    })
    .unwrap();
    let inb = InboundSa::new(InboundSpec {
        spi,
        tunnel: 1,
        owner: 0,
        key: &key,
        salt,
        esn: true,
        replay_window: 1024,
        allowed_sources: vec!["0.0.0.0/0".parse().unwrap()],
        limits: HardLimits::default(),
    })
    .unwrap();

    let mut packets = Vec::new();
    for (i, len) in [0usize, 1, 2, 3, 17, 100, 1372].into_iter().enumerate() {
        if i == 4 {
            // Jump close to the wrap so the high half of the ESN is used.
            out.set_last_seq(u32::MAX as u64 - 1);
        }
        let payload: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let inner = ipv4_udp(
            Ipv4Addr::new(10, 1, 0, 9),
            Ipv4Addr::new(10, 2, 0, 5),
            (7, 9),
            &payload,
        );
        let mut p = Packet::from_slice(&inner).unwrap();
        esp::seal(&out, &mut p, next_header::IPV4).unwrap();
        packets.push(json!({"seq": out.last_seq(), "esp": hex::encode(p.data()), "inner": hex::encode(&inner)}));
    }
    let input = json!({"key": hex::encode(&key), "salt": hex::encode(salt), "spi": spi, "esn": true, "packets": packets});
    let Some(reply) = scapy(&input) else { return };
    assert_eq!(
        reply["checked"],
        packets.len(),
        "scapy decrypted every packet"
    );

    let sealed = reply["sealed"].as_array().unwrap();
    assert!(!sealed.is_empty());
    for s in sealed {
        let esp_bytes = hex::decode(s["esp"].as_str().unwrap()).unwrap();
        let mut p = Packet::from_slice(&esp_bytes).unwrap();
        let o = esp::open(&inb, &mut p).unwrap_or_else(|r| panic!("seq {}: {r:?}", s["seq"]));
        assert_eq!(o.next_header, next_header::IPV4);
        assert_eq!(o.seq, s["seq"].as_u64().unwrap());
        assert_eq!(hex::encode(p.data()), s["inner"].as_str().unwrap());
    }
}

#[test]
fn scapy_opens_esprit_esp_and_esprit_opens_scapy_esp_aes128() {
    check_with_key_len(16);
}

#[test]
fn scapy_opens_esprit_esp_and_esprit_opens_scapy_esp_aes256() {
    check_with_key_len(32);
}
