//! deploy/lab/lab.sh builds its namespaces, runs espritd and esprit-pktgen
//! there for the `smoke`, `nat` and `protected` scenarios, and leaves
//! nothing behind. Root only.

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

/// lab.sh for `scenario`, its namespaces tagged `tag`.
fn lab(scenario: &str, tag: &str) -> Command {
    let mut c = Command::new("bash");
    c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/lab/lab.sh"))
        .arg(scenario)
        .env("LAB_TAG", tag);
    c
}

/// Namespaces of the lab run tagged `tag`.
fn lab_namespaces(tag: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(tag))
        .map(|l| l.to_string())
        .collect()
}

/// Processes running with the work directory of lab run `tag` on their
/// command line.
fn lab_processes(tag: &str) -> Vec<u32> {
    let needle = format!("/tmp/{tag}.");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                .unwrap_or(false)
        })
        .collect()
}

/// What a finished lab run printed and wrote.
struct LabRun {
    stdout: String,
    stderr: String,
    /// pktgen's JSON report.
    json: serde_json::Value,
    /// pktgen wrote its plot.
    plotted: bool,
}

/// Runs `scenario` on this build's binaries with the environment `vars`,
/// its namespaces tagged `esplab-t<pid>-<short>`; asserts that it
/// succeeded and left no namespace or process behind.
fn run_lab(scenario: &str, short: &str, vars: &[(&str, &str)]) -> LabRun {
    let pid = std::process::id();
    let out_dir = std::env::temp_dir().join(format!("esplab-{short}-{pid}"));
    let tag = format!("esplab-t{pid}-{short}");
    let out = lab(scenario, &tag)
        .env("BIN_DIR", bin_dir())
        .env("OUT", &out_dir)
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}{stderr}");
    let json = std::fs::read_to_string(out_dir.join(format!("{scenario}.json"))).unwrap();
    let plotted = out_dir.join(format!("{scenario}.svg")).exists();
    let _ = std::fs::remove_dir_all(&out_dir);
    // Its namespaces are gone, and no process it started outlives it.
    assert_eq!(lab_namespaces(&tag), Vec::<String>::new());
    assert_eq!(lab_processes(&tag), Vec::<u32>::new());
    LabRun {
        stdout,
        stderr,
        json: serde_json::from_str(&json).unwrap(),
        plotted,
    }
}

#[test]
fn the_smoke_scenario_runs_and_cleans_up() {
    if !root() {
        eprintln!("lab test skipped: needs root");
        return;
    }
    // Pinned, where there is a core for each end.
    let pin = if two_cores() { "1" } else { "0" };
    let LabRun {
        stdout,
        stderr,
        json: v,
        plotted,
    } = run_lab(
        "smoke",
        "smoke",
        &[("CLIENTS", "50"), ("COUNT", "3000"), ("PIN", pin)],
    );
    assert!(stdout.contains("manual mode, 50 clients"), "{stdout}");
    assert_eq!(v["sent"], 3000);
    assert_eq!(v["received"], 3000, "{stdout}");
    assert!(plotted);
    assert!(stderr.contains("scenario smoke"));
    if two_cores() {
        assert!(
            stderr.contains("lab.sh: pinned: gateway workers on cores"),
            "{stderr}"
        );
    }
}

/// With IPv6 inside the tunnels (`INNER6=1`), manual clients (`smoke`) and
/// IKE clients that lease their addresses (`ike-1k`): every packet comes
/// back through the gateway's IPv6 routes and reflection, and every packet
/// sent was an IPv6 one.
#[test]
fn ipv6_inner_traffic_runs_through_the_lab() {
    if !root() {
        eprintln!("lab test skipped: needs root");
        return;
    }
    for (scenario, short) in [("smoke", "inner6"), ("ike-1k", "ike6")] {
        let LabRun {
            stdout, json: v, ..
        } = run_lab(
            scenario,
            short,
            &[("CLIENTS", "20"), ("COUNT", "2000"), ("INNER6", "1")],
        );
        assert_eq!(v["sent"], 2000, "{scenario}");
        assert_eq!(v["received"], 2000, "{scenario}: {stdout}");
        // Bytes sent per packet: an IPv4 packet of `--size 64` is 64
        // bytes, an IPv6 one 72 (its longer header and the stamp).
        let secs = v["seconds"].as_f64().unwrap();
        let per_packet = v["tx_gbps"].as_f64().unwrap() * 1e9 / 8.0 * secs / 2000.0;
        assert!(
            (per_packet - 72.0).abs() < 0.5,
            "{scenario}: {per_packet} bytes a packet"
        );
        if scenario == "ike-1k" {
            assert_eq!(v["setup"]["tunnels"], 20, "{stdout}");
            assert_eq!(v["setup"]["failed"], 0, "{stdout}");
        }
    }
}

fn two_cores() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
}

#[test]
fn ike_clients_behind_a_nat_come_up_and_get_their_traffic_back() {
    if !root() {
        eprintln!("lab test skipped: needs root");
        return;
    }
    // More clients than the gateway's queue to its control plane holds:
    // pktgen's DELETEs at the end must be paced to all be answered.
    let LabRun {
        stdout,
        stderr,
        json: v,
        ..
    } = run_lab(
        "nat",
        "nat",
        &[("CLIENTS", "5000"), ("COUNT", "2000"), ("RATE", "5000")],
    );
    assert_eq!(v["mode"], "ike");
    assert_eq!(v["setup"]["tunnels"], 5000, "{stdout}");
    assert_eq!(v["setup"]["pinged"], 5000, "{stdout}");
    assert_eq!(v["teardown"]["deleted"], 5000, "{stdout}");
    assert_eq!(v["teardown"]["left"], 0, "{stdout}");
    assert_eq!(v["sent"], 2000);
    assert_eq!(v["received"], 2000, "{stdout}");
    assert!(stderr.contains("NAT 1"));
}

/// Runs lab.sh's `scenario` with `vars` and asserts it refused (exit 2)
/// saying `why`, or, not as root, that it needs root; either way it built
/// no namespace.
fn assert_refused(scenario: &str, short: &str, vars: &[(&str, &str)], why: &str) {
    let tag = format!("esplab-t{}-{short}", std::process::id());
    let out = lab(scenario, &tag)
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(why) || err.contains("run as root"), "{err}");
    assert_eq!(lab_namespaces(&tag), Vec::<String>::new());
}

#[test]
fn an_unknown_scenario_is_refused_without_building_anything() {
    assert_refused("no-such-scenario", "unknown", &[], "unknown scenario");
}

#[test]
fn a_bad_pin_is_refused_without_building_anything() {
    assert_refused("smoke", "pin", &[("PIN", "yes")], "PIN must be 0, 1 or 2");
}

#[test]
fn ipv6_inner_addresses_are_refused_for_the_tun_inside_without_building_anything() {
    assert_refused(
        "protected",
        "inner6",
        &[("INNER6", "1")],
        "INNER6=1 needs the reflecting inside",
    );
}

/// `protected`: the gateway's inside is a TUN device routed to a UDP echo
/// in the protected namespace, not the reflecting inside of the others.
#[test]
fn the_protected_scenario_runs_through_the_tun_and_the_echo() {
    if !root() {
        eprintln!("lab test skipped: needs root");
        return;
    }
    let LabRun {
        stdout,
        stderr,
        json: v,
        ..
    } = run_lab(
        "protected",
        "pn",
        &[("CLIENTS", "20"), ("COUNT", "2000"), ("KEEP", "1")],
    );
    let work = stderr
        .lines()
        .find_map(|l| l.strip_prefix("lab.sh: logs in "))
        .expect("KEEP=1 names the work directory");
    let log = std::fs::read_to_string(Path::new(work).join("espritd.log")).unwrap();
    let _ = std::fs::remove_dir_all(work);
    assert!(log.contains("inside=\"esprit0\""), "the TUN inside: {log}");
    assert_eq!(v["sent"], 2000);
    let received = v["received"].as_u64().unwrap_or(0);
    assert!(
        received >= 1980,
        "the echo answered through the tunnel: {stdout}"
    );
    // lab.sh waits for the echo: no ICMP error from a port not yet open
    // comes back through the tunnel.
    assert_eq!(v["errors"]["foreign"], 0, "{stdout}");
}
