//! Bad configs: each error names its line, key path and problem, with a hint.

use std::os::unix::fs::PermissionsExt;

const SA_IN: &str = "spi = 0x1001\nalgorithm = \"aes128gcm16\"\nkey = \"000102030405060708090a0b0c0d0e0f\"\nsalt = \"10111213\"\n";
const SA_OUT: &str = "spi = 0x2001\nalgorithm = \"aes128gcm16\"\nkey = \"202122232425262728292a2b2c2d2e2f\"\nsalt = \"30313233\"\n";

/// A valid tunnel (17 lines: `name` on line 2, inbound spi on 8, outbound key on 16).
fn tunnel(name: &str, spi: u32, remote_ts: &str) -> String {
    format!(
        "[[manual_tunnel]]\nname = \"{name}\"\nremote = \"192.0.2.2:4500\"\nlocal_ts = [\"10.1.0.0/24\"]\nremote_ts = [\"{remote_ts}\"]\n\n[manual_tunnel.inbound]\n{}\n[manual_tunnel.outbound]\n{}",
        SA_IN.replace("0x1001", &format!("{spi:#x}")),
        SA_OUT.replace("0x2001", &format!("{:#x}", spi + 0x1000)),
    )
}

/// (line, key path, part of the message, part of the hint)
type Expected = (usize, &'static str, &'static str, &'static str);

fn assert_errors(name: &str, text: &str, expected: &[Expected]) {
    let error = match config::parse(text, "bad.toml") {
        Ok(_) => panic!("{name}: loaded, expected errors"),
        Err(e) => e,
    };
    let got = error.diagnostics();
    let summary = error.to_string();
    assert_eq!(got.len(), expected.len(), "{name}: got\n{summary}");
    for (diagnostic, (line, key, message, hint)) in got.iter().zip(expected) {
        assert_eq!(diagnostic.origin, "bad.toml", "{name}");
        assert_eq!(
            (diagnostic.line, diagnostic.key.as_str()),
            (*line, *key),
            "{name}: got\n{summary}"
        );
        assert!(
            diagnostic.message.contains(message),
            "{name}: message {:?} lacks {message:?}",
            diagnostic.message
        );
        let got_hint = diagnostic.hint.as_deref().unwrap_or("");
        assert!(
            got_hint.contains(hint),
            "{name}: hint {got_hint:?} lacks {hint:?}"
        );
    }
}

#[test]
fn the_tunnel_helper_is_valid() {
    let text = tunnel("a", 0x1001, "10.2.0.0/24") + &tunnel("b", 0x1002, "10.3.0.0/24");
    let config = config::parse(&text, "ok.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.manual_tunnels[1].inbound.spi, 0x1002);
}

#[test]
fn type_and_syntax_errors() {
    let bad_hex = tunnel("a", 0x1001, "10.2.0.0/24").replace(
        "000102030405060708090a0b0c0d0e0f",
        "zz0102030405060708090a0b0c0d0e0f",
    );
    let cases: Vec<(&str, String, Vec<Expected>)> =
        vec![
        (
            "unknown key",
            "[dataplane]\nworkers = 2\nbursts = 32\n".into(),
            vec![(
                3,
                "dataplane.bursts",
                "unknown field `bursts`",
                "did you mean `burst`?",
            )],
        ),
        (
            "syntax",
            "[gateway\nike_port = 500\n".into(),
            vec![(1, "", "", "")],
        ),
        (
            "bad hex",
            bad_hex,
            vec![(
                10,
                "manual_tunnel[0].inbound.key",
                "not valid hex",
                "hex digits",
            )],
        ),
        (
            "bad duration",
            "[ike]\nlocal_id = \"gw\"\nchild_lifetime = \"1 fortnight\"\n".into(),
            vec![(
                3,
                "ike.child_lifetime",
                "unknown unit `fortnight`",
                "\"30s\"",
            )],
        ),
        (
            "no CHILD SA beyond the first",
            "[ike]\nlocal_id = \"gw\"\nchild_sa_limit = 0\n".into(),
            vec![(3, "ike.child_sa_limit", "would refuse every CHILD SA", "16")],
        ),
        (
            "resends jittered down to nothing",
            "[ike]\nlocal_id = \"gw\"\n[ike.retransmit]\njitter = 0.9\n".into(),
            vec![(4, "ike.retransmit.jitter", "not in 0.0..=0.5", "0.2")],
        ),
        (
            "unknown uniqueness",
            "[ike]\nlocal_id = \"gw\"\nunique = \"keep\"\n".into(),
            vec![(3, "ike.unique", "unknown variant `keep`, expected `no` or `replace`", "")],
        ),
        (
            "duration without unit",
            "[ike.retransmit]\ntimeout = 2\n".into(),
            vec![(2, "ike.retransmit.timeout", "has no unit", "\"2s\"")],
        ),
        (
            "unknown port kind",
            "[dataplane]\nport = \"netmap\"\n".into(),
            vec![(2, "dataplane.port", "unknown variant `netmap`", "")],
        ),
        (
            "replay window on outbound",
            tunnel("a", 0x1001, "10.2.0.0/24") + "replay_window = 64\n",
            vec![(
                18,
                "manual_tunnel[0].outbound.replay_window",
                "unknown field `replay_window`",
                "",
            )],
        ),
        (
            "bad proposal",
            "[ike]\nproposals = [\"aes128gcm16-prfsha256-x25519\", \"aes128gcm16-md5-x25519\"]\n"
                .into(),
            vec![(
                2,
                "ike.proposals[1]",
                "unknown algorithm `md5`",
                "encryption-prf-dh",
            )],
        ),
        (
            "bad prefix",
            tunnel("a", 0x1001, "10.2.0.0/33"),
            vec![(5, "manual_tunnel[0].remote_ts[0]", "invalid IP address", "")],
        ),
    ];
    for (name, text, expected) in cases {
        assert_errors(name, &text, &expected);
    }
}

#[test]
fn semantic_errors() {
    let aes256_short_key =
        tunnel("a", 0x1001, "10.2.0.0/24").replacen("aes128gcm16", "aes256gcm16", 1);
    let cases: Vec<(&str, String, Vec<Expected>)> = vec![
        (
            "wrong key length",
            aes256_short_key,
            vec![(10, "manual_tunnel[0].inbound.key", "key is 16 bytes, aes256gcm16 needs 32", "64 hex digits")],
        ),
        (
            "duplicate SPI slot",
            tunnel("a", 0x0100_1001, "10.2.0.0/24") + &tunnel("b", 0x0200_1001, "10.3.0.0/24"),
            vec![(25, "manual_tunnel[1].inbound.spi", "same slot (low 24 bits) as 0x1001001", "spi & 0xFFFFFF")],
        ),
        (
            "duplicate SPI and name",
            tunnel("a", 0x1001, "10.2.0.0/24") + &tunnel("a", 0x1001, "10.3.0.0/24"),
            vec![
                (19, "manual_tunnel[1].name", "name `a` is already used by manual_tunnel[0]", "unique"),
                (25, "manual_tunnel[1].inbound.spi", "inbound SPI 0x1001 is already used", "unique"),
            ],
        ),
        (
            "overlapping remote_ts",
            tunnel("a", 0x1001, "10.2.0.0/16") + &tunnel("b", 0x1002, "10.2.7.0/24"),
            vec![(22, "manual_tunnel[1].remote_ts[0]", "10.2.7.0/24 overlaps 10.2.0.0/16 of manual_tunnel[0].remote_ts[0]", "one tunnel")],
        ),
        (
            "reserved SPI and host bits",
            tunnel("a", 0xff, "10.2.0.1/24"),
            vec![
                (5, "manual_tunnel[0].remote_ts[0]", "host bits set", "10.2.0.0/24"),
                (8, "manual_tunnel[0].inbound.spi", "SPI 255 is reserved", "RFC 4303"),
            ],
        ),
        (
            "udp without port",
            tunnel("a", 0x1001, "10.2.0.0/24").replace("192.0.2.2:4500", "192.0.2.2"),
            vec![(3, "manual_tunnel[0].remote", "needs the peer's UDP port", "192.0.2.2:4500")],
        ),
        (
            "same key both ways",
            tunnel("a", 0x1001, "10.2.0.0/24")
                .replace("202122232425262728292a2b2c2d2e2f", "000102030405060708090a0b0c0d0e0f")
                .replace("30313233", "10111213"),
            vec![(16, "manual_tunnel[0].outbound.key", "same key and salt", "nonces")],
        ),
        (
            "every dataplane error at once",
            "[dataplane]\nworkers = 2\ncores = [3]\nburst = 0\nring_size = 1000\n[dataplane.inside]\nname = \"a-very-long-interface-name\"\n".into(),
            vec![
                (3, "dataplane.cores", "1 cores listed for 2 workers", "one core per worker"),
                (4, "dataplane.burst", "burst 0 is not in 1..=256", "32"),
                (5, "dataplane.ring_size", "not a power of two", "1024"),
                (7, "dataplane.inside.name", "is not an interface name", "15 characters"),
            ],
        ),
        (
            "wildcard and specific outside address",
            "[gateway]\noutside = [\"0.0.0.0:4500\", \"[::]:4500\", \"192.0.2.1:4500\", \"0.0.0.0:4500\"]\n".into(),
            vec![
                (2, "gateway.outside[2]", "192.0.2.1:4500 and 0.0.0.0:4500 take the same port", "wildcard"),
                (2, "gateway.outside[3]", "0.0.0.0:4500 is listed twice", "remove one"),
            ],
        ),
        (
            "outer MTU too small",
            "[dataplane]\nouter_mtu = 100\n".into(),
            vec![(2, "dataplane.outer_mtu", "outer_mtu 100 is not in 576..=9216", "1500")],
        ),
        (
            "kernel-bypass port without its interface",
            "[dataplane]\nport = \"af_packet\"\n".into(),
            vec![(2, "dataplane.port", "port = \"af_packet\" needs [dataplane.outside]", "interface = \"eth1\"")],
        ),
        (
            "outside section with the udp port",
            "[dataplane.outside]\ninterface = \"eth1\"\n".into(),
            vec![(1, "dataplane.outside", "port = \"udp\" does not own an interface", "af_packet")],
        ),
        (
            "every outside error at once",
            "[gateway]\noutside = [\"192.0.2.9:4500\"]\n[dataplane]\nport = \"af_xdp\"\n[dataplane.outside]\ninterface = \"an-interface-name-too-long\"\naddress = \"192.0.2.1/24\"\ngateway = \"198.51.100.1\"\nmtu = 200\n[[dataplane.outside.routes]]\nto = \"203.0.113.0/24\"\nvia = \"198.51.100.7\"\nmac = \"02:00:5e\"\n[[dataplane.outside.routes]]\nto = \"2001:db8::/32\"\nvia = \"192.0.2.7\"\n[dataplane.dpdk]\nmbufs = 100\n".into(),
            vec![
                (2, "gateway.outside", "192.0.2.9:4500 is not the port's address 192.0.2.1", "192.0.2.1:4500"),
                (6, "dataplane.outside.interface", "is not an interface name", "15 characters"),
                (8, "dataplane.outside.gateway", "198.51.100.1 is not on-link in 192.0.2.0/24", "prefix"),
                (9, "dataplane.outside.mtu", "mtu 200 is not in 576..=9216", "1500"),
                (12, "dataplane.outside.routes[0].via", "198.51.100.7 is not on-link", "prefix"),
                (13, "dataplane.outside.routes[0].mac", "is not a MAC address", "six hex pairs"),
                (16, "dataplane.outside.routes[1].via", "different families", "IPv4 next hop"),
                (17, "dataplane.dpdk", "port = \"af_xdp\" does not use DPDK", "port = \"dpdk\""),
                (18, "dataplane.dpdk.mbufs", "100 mbufs cannot fill the rx rings", "8191"),
            ],
        ),
        (
            "control socket for everyone",
            "[control]\nmode = 0o666\n".into(),
            vec![(2, "control.mode", "lets every local user control the gateway", "0o600")],
        ),
        (
            "decimal mode",
            "[control]\nmode = 600\n".into(),
            vec![(2, "control.mode", "1130 (octal) is not a permission mode", "0o600")],
        ),
    ];
    for (name, text, expected) in cases {
        assert_errors(name, &text, &expected);
    }
}

const PEER: &str = "[[peer]]\nname = \"rw\"\nrole = \"responder\"\nlocal_id = \"vpn.example.org\"\nremote_id = \"*@example.org\"\nlocal_ts = [\"10.1.0.0/16\"]\npool = \"10.3.0.0/16\"\n";

#[test]
fn peer_errors() {
    let cases: Vec<(&str, String, Vec<Expected>)> = vec![
        ("missing psk", PEER.into(), vec![(1, "peer[0]", "no psk or psk_file", "psk_file")]),
        (
            "responder with initiator keys",
            format!("{PEER}psk = \"k\"\nremote = \"192.0.2.9\"\nvirtual_ip6 = true\nignore_peer_rekey = true\n"),
            vec![
                (9, "peer[0].remote", "accepts any source address", "remote_id"),
                (10, "peer[0].virtual_ip6", "virtual_ip6 is for initiators", "pool"),
                (11, "peer[0].ignore_peer_rekey", "only an initiator", ""),
            ],
        ),
        (
            "initiator without remote",
            "[ike]\nlocal_id = \"me\"\n[[peer]]\nname = \"hq\"\nrole = \"initiator\"\nremote_id = \"hq\"\npsk = \"k\"\nlocal_ts = [\"10.1.0.0/16\"]\nremote_ts = [\"10.9.0.0/16\"]\npool = \"10.3.0.0/16\"\n".into(),
            vec![
                (3, "peer[0].remote", "needs the remote address", "remote ="),
                (10, "peer[0].pool", "only a responder hands out addresses", "virtual_ip"),
            ],
        ),
        (
            "overlapping pools and a name clash",
            format!("{PEER}psk = \"k\"\n{}psk = \"k\"\n", PEER.replace("10.3.0.0/16", "10.3.128.0/17")),
            vec![
                (10, "peer[1].name", "name `rw` is already used by peer[0]", "unique"),
                (15, "peer[1].pool[0]", "10.3.128.0/17 overlaps 10.3.0.0/16 of peer[0].pool[0]", ""),
            ],
        ),
        (
            "pool outside remote_ts and tiny",
            format!("{PEER}psk = \"k\"\nremote_ts = [\"10.4.0.0/16\"]\n").replace("10.3.0.0/16", "10.3.0.0/31"),
            vec![
                (7, "peer[0].pool[0]", "pool 10.3.0.0/31 is too small", "30"),
                (7, "peer[0].pool[0]", "outside remote_ts", ""),
            ],
        ),
        (
            "liveness and lifetimes",
            format!("{PEER}psk = \"k\"\nping_timeout = \"0s\"\nchild_lifetime = \"5m\"\ngrace_period = \"1h\"\n"),
            vec![
                (9, "peer[0].ping_timeout", "must be more than 0s", "liveness = \"off\""),
                (10, "peer[0].child_lifetime", "lifetime 5m is not longer than rekey_margin + rekey_jitter (6m)", ""),
                (11, "peer[0].grace_period", "grace_period 1h is not shorter than the child lifetime 5m", ""),
            ],
        ),
        (
            "route pools: host bits, too large, overlapping each other and a lease pool",
            format!("[dataplane]\nroute_pools = [\"10.128.0.1/15\", \"8.0.0.0/7\", \"10.3.0.0/24\", \"10.128.0.0/16\"]\n{PEER}psk = \"k\"\n"),
            vec![
                (2, "dataplane.route_pools[0]", "host bits set", "10.128.0.0/15"),
                (2, "dataplane.route_pools[1]", "8.0.0.0/7 holds more than 2^24 addresses", "/8 or longer"),
                (2, "dataplane.route_pools[2]", "10.3.0.0/24 overlaps 10.3.0.0/16 of peer[0].pool[0]", "indexed without"),
                (2, "dataplane.route_pools[3]", "10.128.0.0/16 overlaps 10.128.0.1/15", "once"),
            ],
        ),
        (
            "no local id",
            format!("{PEER}psk = \"k\"\n").replace("local_id = \"vpn.example.org\"\n", ""),
            vec![(1, "peer[0].local_id", "no local_id", "[ike]")],
        ),
    ];
    for (name, text, expected) in cases {
        assert_errors(name, &text, &expected);
    }
}

#[test]
fn psk_file_permissions_are_checked() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("rw.psk");
    std::fs::write(&file, "a secret from a file\n").unwrap_or_else(|e| panic!("{e}"));
    let set_mode = |mode| {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let text = format!("{PEER}psk_file = \"rw.psk\"\n");
    let origin = dir.path().join("esprit.toml").display().to_string();

    set_mode(0o644);
    let error = config::parse(&text, &origin)
        .err()
        .unwrap_or_else(|| panic!("world-readable psk_file loaded"));
    let diagnostic = error
        .diagnostics()
        .first()
        .cloned()
        .unwrap_or_else(|| panic!("no diagnostic"));
    assert_eq!(
        (diagnostic.line, diagnostic.key.as_str()),
        (8, "peer[0].psk_file")
    );
    assert!(
        diagnostic
            .message
            .ends_with("rw.psk is accessible by group or others (mode 0o644)"),
        "{diagnostic}"
    );
    assert!(diagnostic
        .hint
        .unwrap_or_default()
        .starts_with("chmod 600 "));

    set_mode(0o600);
    let config = config::parse(&text, &origin).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.peers[0].psk.as_bytes(), b"a secret from a file");
    assert_eq!(config.peers[0].psk_file.as_deref(), Some(file.as_path()));
    assert_eq!(format!("{:?}", config.peers[0].psk), "<redacted>");

    let missing = text.replace("rw.psk", "missing.psk");
    let error = config::parse(&missing, &origin)
        .err()
        .unwrap_or_else(|| panic!("missing psk_file loaded"));
    assert!(
        error.to_string().contains("peer[0].psk_file: cannot read"),
        "{error}"
    );
}

#[test]
fn display_is_file_line_column_key_message_hint() {
    let error = config::parse("[dataplane]\nburst = 0\n", "/etc/esprit/esprit.toml").err();
    let text = error.map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(
        text,
        "/etc/esprit/esprit.toml:2:9: dataplane.burst: burst 0 is not in 1..=256\n  hint: 32 is a good start"
    );
}

#[test]
fn debug_output_has_no_key_material() {
    let config = config::parse(&tunnel("a", 0x1001, "10.2.0.0/24"), "ok.toml")
        .unwrap_or_else(|e| panic!("{e}"));
    let debug = format!("{config:?}");
    assert!(!debug.contains("[0, 1, 2, 3"), "{debug}");
    assert!(
        debug.contains("key: <redacted>, salt: <redacted>"),
        "{debug}"
    );
}

#[test]
fn bad_pool_element_is_located() {
    let text = format!("{PEER}psk = \"k\"\n").replace(
        "pool = \"10.3.0.0/16\"",
        "pool = [\"10.3.0.0/16\", \"10.4.0.0/99\"]",
    );
    assert_errors(
        "bad pool element",
        &text,
        &[(7, "peer[0].pool[1]", "invalid IP address syntax", "prefix")],
    );
    let text = format!("{PEER}psk = \"k\"\n").replace("10.3.0.0/16", "ten");
    assert_errors(
        "bad pool string",
        &text,
        &[(7, "peer[0].pool", "`ten` is not a prefix", "10.3.0.0/16")],
    );
}

/// Cut and corrupted versions of the full example: errors, never a panic.
#[test]
fn mangled_files_never_panic() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/full.toml");
    let full = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
    let mut errors = 0;
    for (at, _) in full.char_indices().step_by(13) {
        let cut = full.get(..at).unwrap_or("");
        errors += usize::from(config::parse(cut, "cut.toml").is_err());
        for with in ["\"", "]", "=", "\n[", "0", "é"] {
            let mangled = format!("{}{with}{}", cut, full.get(at + 1..).unwrap_or(""));
            if let Err(e) = config::parse(&mangled, "mangled.toml") {
                assert!(
                    e.diagnostics().iter().all(|d| d.line >= 1 && d.column >= 1),
                    "{e}"
                );
                errors += 1;
            }
        }
    }
    assert!(errors > 500, "only {errors} mangled files were rejected");
}
