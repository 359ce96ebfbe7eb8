//! deploy/lab/lab.sh builds its namespaces, runs espritd and esprit-pktgen
//! there for the `smoke` scenario, and leaves nothing behind. Root only.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root && std::env::var_os("ESPRIT_REQUIRE_PRIVILEGED_TESTS").is_some() {
        panic!("the lab needs root (network namespaces), and CI requires it");
    }
    root
}

/// The directory of this build's binaries, with espritd built if missing
/// (it belongs to the controlplane crate, which `cargo test -p perf` alone
/// does not build).
fn bin_dir() -> PathBuf {
    let pktgen = Path::new(env!("CARGO_BIN_EXE_esprit-pktgen"));
    let dir = pktgen.parent().expect("binary directory").to_path_buf();
    if !dir.join("espritd").exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let target = dir.parent().expect("target directory");
        let mut c = Command::new(cargo);
        c.args(["build", "-p", "controlplane", "--bin", "espritd"])
            .env("CARGO_TARGET_DIR", target)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if dir.ends_with("release") {
            c.arg("--release");
        }
        let status = c.status().expect("run cargo");
        assert!(status.success(), "could not build espritd");
    }
    dir
}

fn lab_namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("esplab-"))
        .map(|l| l.to_string())
        .collect()
}

/// Processes running with a lab work directory on their command line.
fn lab_processes() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains("/tmp/esplab-"))
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn the_smoke_scenario_runs_and_cleans_up() {
    if !root() {
        eprintln!("lab test skipped: needs root");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/lab/lab.sh");
    let out_dir = std::env::temp_dir().join(format!("esplab-test-{}", std::process::id()));
    let before = lab_namespaces();
    let procs_before = lab_processes();
    let out = Command::new("bash")
        .arg(&script)
        .arg("smoke")
        .env("BIN_DIR", bin_dir())
        .env("OUT", &out_dir)
        .env("CLIENTS", "50")
        .env("COUNT", "3000")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("manual mode, 50 clients"), "{stdout}");
    let json = std::fs::read_to_string(out_dir.join("smoke.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["sent"], 3000);
    assert_eq!(v["received"], 3000, "{stdout}");
    assert!(out_dir.join("smoke.svg").exists());
    let _ = std::fs::remove_dir_all(&out_dir);
    // Its namespaces are gone (another lab running alongside may have its own).
    let after = lab_namespaces();
    assert!(
        after.iter().all(|n| before.contains(n)),
        "left behind: {after:?}"
    );
    assert!(stderr.contains("scenario smoke"));
    // And no espritd it started outlives it.
    let procs_after = lab_processes();
    assert!(
        procs_after.iter().all(|p| procs_before.contains(p)),
        "still running: {procs_after:?}"
    );
}

#[test]
fn an_unknown_scenario_is_refused_without_building_anything() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/lab/lab.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("no-such-scenario")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown scenario") || err.contains("run as root"),
        "{err}"
    );
}
