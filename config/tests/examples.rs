//! Every example config under deploy/examples loads, and a few say what they mean.

use std::path::{Path, PathBuf};

fn examples() -> Vec<PathBuf> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    files
}

fn load(name: &str) -> config::Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/examples")
        .join(name);
    config::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_example_loads() {
    let files = examples();
    assert!(files.len() >= 5, "examples found: {files:?}");
    for file in files {
        if let Err(e) = config::load(&file) {
            panic!("{} does not load:\n{e}", file.display());
        }
    }
}

#[test]
fn full_example_sets_every_section() {
    let config = load("full.toml");
    assert_eq!(config.dataplane.cores, Some(vec![0, 1]));
    assert_eq!(config.manual_tunnels.len(), 1);
    assert_eq!(config.manual_tunnels[0].inbound.spi, 0x1001);
    assert_eq!(config.manual_tunnels[0].outbound.spi, 0x2001);
    assert_eq!(config.manual_tunnels[0].outbound.replay_window, 0);
    assert_eq!(config.peers.len(), 2);
    let responder = &config.peers[0];
    assert_eq!(responder.role, config::Role::Responder);
    assert!(responder.remote_id.matches(
        &"bob@example.org"
            .parse()
            .unwrap_or_else(|e| panic!("{e:?}"))
    ));
    assert_eq!(responder.ike_lifetime.as_secs(), 8 * 3600);
    let initiator = &config.peers[1];
    assert_eq!(initiator.remote.map(|r| r.port()), Some(500));
    assert_eq!(initiator.psk.len(), 20);
    assert!(initiator.liveness.ignore_peer_rekey);
    assert_eq!(config.control.mode, 0o660);
    assert_eq!(config.metrics.map(|m| m.listen.port()), Some(9180));
}

#[test]
fn minimal_example_takes_the_defaults() {
    let config = load("minimal.toml");
    assert_eq!(config.gateway, config::Gateway::default());
    assert_eq!(config.dataplane, config::Dataplane::default());
    assert_eq!(config.control, config::ControlSocket::default());
    let tunnel = &config.manual_tunnels[0];
    assert_eq!(tunnel.encap, config::Encap::Udp);
    assert!(tunnel.inbound.esn);
    assert_eq!(tunnel.inbound.replay_window, 1024);
    assert_eq!(tunnel.inbound.salt_bytes(), Some([0x10, 0x11, 0x12, 0x13]));
    assert_eq!(tunnel.inbound.key.as_bytes().len(), 16);
}

#[test]
fn concentrator_pool_is_the_remote_selector() {
    let config = load("concentrator.toml");
    let peer = &config.peers[0];
    assert_eq!(peer.remote_ts, peer.pool);
    assert_eq!(peer.local_id.to_string(), "vpn.example.org");
    assert_eq!(config.peers[1].liveness.mode, config::LivenessMode::Ike);
}

#[test]
fn raw_esp_tunnel_has_no_port() {
    let config = load("site-to-site-manual.toml");
    let tunnel = &config.manual_tunnels[1];
    assert_eq!(tunnel.encap, config::Encap::Esp);
    assert_eq!(tunnel.remote.port(), 0);
    assert_eq!(tunnel.inbound.replay_window, 4096);
}

#[test]
fn an_empty_file_is_the_default_config() {
    let config = config::parse("", "empty.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config, config::Config::default());
    assert_eq!(
        config.summary(),
        "1 worker(s), 1 outside address(es), 0 manual tunnel(s), 0 initiator peer(s), 0 responder template(s), control socket /run/esprit/ctl.sock"
    );
}

#[test]
fn kernel_bypass_examples_name_their_interface_and_next_hops() {
    let dpdk = load("concentrator-dpdk.toml");
    assert_eq!(dpdk.dataplane.port, config::PortKind::Dpdk);
    let outside = dpdk
        .dataplane
        .outside
        .as_ref()
        .unwrap_or_else(|| panic!("outside"));
    assert_eq!(outside.interface, "0000:03:00.0");
    assert_eq!(outside.gateway, Some([203, 0, 113, 254].into()));
    let eal = dpdk
        .dataplane
        .dpdk
        .as_ref()
        .unwrap_or_else(|| panic!("dpdk"));
    assert_eq!(eal.mbufs, 16383);
    assert!(eal.eal_args.iter().any(|a| a == "0000:03:00.0"));

    let af = load("concentrator-af-packet.toml");
    assert_eq!(af.dataplane.port, config::PortKind::AfPacket);
    let outside = af
        .dataplane
        .outside
        .as_ref()
        .unwrap_or_else(|| panic!("outside"));
    assert_eq!(outside.mtu, 1500);
    assert_eq!(outside.routes.len(), 1);
    assert_eq!(
        outside.routes[0].mac_bytes(),
        Some([0x02, 0x00, 0x5e, 0x10, 0x00, 0x02])
    );
    assert!(af.dataplane.dpdk.is_none());
}

#[test]
fn udp_offload_is_on_by_default_and_can_be_turned_off_alone() {
    let on = config::Config::default();
    assert!(on.dataplane.inside.offload && on.dataplane.inside.offload_udp);
    let off = config::parse("[dataplane.inside]\noffload_udp = false\n", "udp-off.toml")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(off.dataplane.inside.offload, "TCP's stay on");
    assert!(!off.dataplane.inside.offload_udp);
}
