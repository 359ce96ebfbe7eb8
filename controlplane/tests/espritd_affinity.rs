//! espritd with its worker pinned (`[dataplane] cores`): the worker runs on
//! its core only, and the control thread (the main thread, IKE and epochs)
//! on the other cores, off the worker's. On loopback, with a reflecting
//! inside: no root needed.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The cores in `/proc/…/status` file `path` says the thread may run on
/// (`Cpus_allowed_list`, as `0-3,6`).
fn allowed(path: &str) -> Vec<usize> {
    let status = std::fs::read_to_string(path).unwrap();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim();
    list.split(',')
        .flat_map(|r| match r.split_once('-') {
            Some((a, b)) => (a.parse().unwrap()..=b.parse().unwrap()).collect(),
            None => vec![r.parse().unwrap()],
        })
        .collect()
}

/// The thread of `pid` named `name`, waiting up to 10 s for it.
fn thread_named(pid: u32, name: &str) -> Option<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        for t in std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()?
            .flatten()
        {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if comm.trim() == name {
                return t.file_name().to_str()?.parse().ok();
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Two different free UDP ports on 127.0.0.1: both probe sockets are held
/// at once, so the kernel cannot hand out the same port twice.
fn two_free_udp_ports() -> (u16, u16) {
    let bind = || std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (a, b) = (bind(), bind());
    let port = |s: &std::net::UdpSocket| s.local_addr().unwrap().port();
    (port(&a), port(&b))
}

#[test]
fn the_control_thread_keeps_off_the_pinned_workers_core() {
    let cores = allowed("/proc/thread-self/status");
    let Some(&last) = cores.last().filter(|_| cores.len() >= 2) else {
        eprintln!("skipped: one core, nothing to keep apart");
        return;
    };
    let dir = std::env::temp_dir().join(format!("esprit-affinity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("gateway.toml");
    let (outside_port, ike_port) = two_free_udp_ports();
    std::fs::write(
        &cfg,
        format!(
            "[gateway]\noutside = [\"127.0.0.1:{outside_port}\"]\nike_port = {ike_port}\n\n\
             [dataplane]\nworkers = 1\ncores = [{last}]\n\n[dataplane.inside]\nkind = \"reflect\"\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_espritd"))
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let worker = thread_named(pid, "esprit-worker-0");
    // The main thread moves itself right after starting the workers.
    std::thread::sleep(Duration::from_millis(300));
    let task = |tid: u32| allowed(&format!("/proc/{pid}/task/{tid}/status"));
    let (worker_cores, control) = (worker.map(task), task(pid));
    let _ = child.kill();
    let _ = child.wait();
    let mut log = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut log);
    }
    let _ = std::fs::remove_dir_all(&dir);

    assert_eq!(
        worker_cores,
        Some(vec![last]),
        "the worker on its core:\n{log}"
    );
    let rest: Vec<usize> = cores.iter().copied().filter(|&c| c != last).collect();
    assert_eq!(control, rest, "the control thread on the others:\n{log}");
}
