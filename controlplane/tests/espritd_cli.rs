//! espritd's command line: `--check-config` accepts the shipped examples and
//! names file, line and key of what is wrong in a bad file; a bad `--config`
//! stops the daemon before it touches the network.

use std::process::Command;

fn espritd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_espritd"))
        .args(args)
        .output()
        .expect("run espritd")
}

#[test]
fn check_config_accepts_every_shipped_example() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/examples");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = espritd(&["--check-config", path.to_str().unwrap()]);
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
            n += 1;
        }
    }
    assert!(n >= 3, "examples found: {n}");
}

#[test]
fn a_bad_file_is_refused_with_file_line_and_key() {
    let dir = std::env::temp_dir().join(format!("esprit-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[dataplane]\nworkers = 1\nburts = 32\n\n[[manual_tunnel]]\nname = \"x\"\n",
    )
    .unwrap();
    for flag in ["--check-config", "--config"] {
        let out = espritd(&[flag, bad.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{flag}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("bad.toml:3:"), "{flag}: {err}");
        assert!(err.contains("burts"), "{flag}: {err}");
    }
    let missing = espritd(&["--check-config", "/nonexistent/esprit.toml"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/esprit.toml"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_config_warns_when_ike_cannot_cross_a_nat() {
    let dir = std::env::temp_dir().join(format!("esprit-cli-natt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let peer = "[ike]\nlocal_id = \"gw.test\"\n\n[[peer]]\nname = \"c\"\nrole = \"responder\"\nremote_id = \"c.test\"\n\
                psk = \"0123456789abcdef0123\"\nlocal_ts = [\"10.1.0.0/24\"]\nremote_ts = [\"10.8.0.0/24\"]\n";
    for (port, warned) in [(4501, true), (4500, false)] {
        let f = dir.join(format!("gw{port}.toml"));
        std::fs::write(
            &f,
            format!("[gateway]\noutside = [\"192.0.2.1:{port}\"]\n\n{peer}"),
        )
        .unwrap();
        let out = espritd(&["--check-config", f.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err.contains("NAT traversal uses UDP 4500"),
            warned,
            "port {port}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_config_warns_about_pool_prefixes_that_are_not_handed_out() {
    let dir = std::env::temp_dir().join(format!("esprit-cli-pool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (pool, warned) in [
        (
            "[\"10.8.0.0/24\", \"fd00:8::/112\", \"fd00:9::/112\"]",
            Some("fd00:9::/112"),
        ),
        ("[\"10.8.0.0/24\", \"10.9.0.0/24\"]", Some("10.9.0.0/24")),
        ("[\"10.8.0.0/24\", \"fd00:8::/112\"]", None),
        ("\"10.8.0.0/24\"", None),
    ] {
        let f = dir.join("gw.toml");
        std::fs::write(
            &f,
            format!(
                "[gateway]\noutside = [\"192.0.2.1:4500\"]\n\n[ike]\nlocal_id = \"gw.test\"\n\n\
                 [[peer]]\nname = \"c\"\nrole = \"responder\"\nremote_id = \"any\"\n\
                 psk = \"0123456789abcdef0123\"\nlocal_ts = [\"10.1.0.0/24\"]\npool = {pool}\n"
            ),
        )
        .unwrap();
        let out = espritd(&["--check-config", f.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        match warned {
            Some(net) => assert!(
                err.contains(&format!("peer c: pool {net} is not handed out")),
                "{err}"
            ),
            None => assert!(!err.contains("not handed out"), "{err}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
