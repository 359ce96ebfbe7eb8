//! Interop with a real strongSwan 5.9 (charon) in network namespaces the
//! test creates itself: our IkeEndpoint drives real UDP sockets on
//! 192.0.2.1, charon sits on 192.0.2.2 and installs its SAs in its
//! namespace's XFRM tables, whose keys must equal the ones we derived.
//! Needs root and /usr/lib/ipsec/charon; without them the tests say so
//! and pass vacuously.

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use controlplane::ike::crypto::{DhGroup, Prf, Secret};
use controlplane::ike::sa::*;
use controlplane::ike::wire::{Identification, TrafficSelector};
use rand::SeedableRng;

const CHARON: &str = "/usr/lib/ipsec/charon";
const PSK: &str = "interop-lab-psk-0123456789";

/// Two namespaces joined by a veth pair, charon running in the right one.
struct Lab {
    left: String,
    right: String,
    dir: PathBuf,
    charon: Option<Child>,
}

fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn available() -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    let ok = root && std::path::Path::new(CHARON).exists() && sh(&["ip", "netns", "list"]).is_ok();
    if !ok {
        assert!(
            std::env::var_os("ESPRIT_REQUIRE_PRIVILEGED_TESTS").is_none(),
            "needs root, iproute2 and {CHARON}, and CI requires them"
        );
        eprintln!("skipping: needs root, iproute2 and {CHARON}");
    }
    ok
}

impl Lab {
    fn up(tag: &str) -> Lab {
        let id = std::process::id();
        let left = format!("eike-{tag}-l-{id}");
        let right = format!("eike-{tag}-r-{id}");
        let dir = std::env::temp_dir().join(format!("esprit-ike-{tag}-{id}"));
        let lab = Lab {
            left,
            right,
            dir,
            charon: None,
        };
        lab.setup().unwrap_or_else(|e| panic!("lab setup: {e}"));
        lab
    }

    fn setup(&self) -> Result<(), String> {
        let (l, r) = (self.left.as_str(), self.right.as_str());
        for n in [l, r] {
            sh(&["ip", "netns", "add", n])?;
            sh(&["ip", "-n", n, "link", "set", "lo", "up"])?;
        }
        sh(&[
            "ip", "-n", l, "link", "add", "lv0", "type", "veth", "peer", "name", "rv0", "netns", r,
        ])?;
        sh(&["ip", "-n", l, "addr", "add", "192.0.2.1/24", "dev", "lv0"])?;
        sh(&["ip", "-n", r, "addr", "add", "192.0.2.2/24", "dev", "rv0"])?;
        sh(&["ip", "-n", l, "link", "set", "lv0", "up"])?;
        sh(&["ip", "-n", r, "link", "set", "rv0", "up"])?;
        // An inner address inside charon's local TS, as in the lab script.
        sh(&["ip", "-n", r, "addr", "add", "10.99.2.1/32", "dev", "lo"])?;
        Ok(())
    }

    /// Starts charon in the right namespace; `conn_extra` goes into the
    /// connection, `local_ts` is its CHILD SA's local selector.
    fn start_charon(&mut self, local_ts: &str, conn_extra: &str) {
        let d = &self.dir;
        fs::create_dir_all(d.join("run")).unwrap();
        let conf = format!(
            r#"charon {{
  # kernel-libipsec: userspace ESP, since this kernel may lack XFRM AEAD.
  load = random nonce openssl aes gcm sha2 hmac kdf curve25519 socket-default kernel-libipsec kernel-netlink vici
  # kernel-libipsec routes the protected nets through its TUN device.
  install_routes = yes
  install_virtual_ip = yes
  retransmit_timeout = 1.0
  filelog {{
    lab {{
      path = {d}/charon.log
      time_format = %T
      flush_line = yes
      default = 1
      ike = 2
      # chd = 4 dumps the ESP keys, which we compare with ours.
      chd = 4
    }}
  }}
  plugins {{
    vici {{
      socket = unix://{d}/charon.vici
    }}
  }}
}}
swanctl {{
  socket = unix://{d}/charon.vici
}}
"#,
            d = d.display()
        );
        fs::write(d.join("strongswan.conf"), conf).unwrap();
        let swanctl = format!(
            r#"connections {{
  lab {{
    version = 2
    local_addrs = 192.0.2.2
    remote_addrs = 192.0.2.1
    proposals = aes128gcm16-prfsha256-x25519
    {conn_extra}
    local {{
      auth = psk
      id = right.lab.test
    }}
    remote {{
      auth = psk
      id = left.lab.test
    }}
    children {{
      net {{
        local_ts = {local_ts}
        remote_ts = 10.99.1.0/24
        esp_proposals = aes128gcm16
      }}
    }}
  }}
}}
secrets {{
  ike-lab {{
    id-1 = left.lab.test
    id-2 = right.lab.test
    secret = "{PSK}"
  }}
}}
"#
        );
        fs::write(d.join("swanctl.conf"), swanctl).unwrap();
        // charon's pid file is /run/charon.pid: give it a private /run
        // (ip netns exec runs the command in its own mount namespace).
        let cmd = format!("mount --bind {}/run /run && exec {CHARON}", d.display());
        let child = Command::new("ip")
            .args(["netns", "exec", &self.right, "env"])
            .arg(format!("STRONGSWAN_CONF={}/strongswan.conf", d.display()))
            .args(["sh", "-c", &cmd])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.charon = Some(child);
        let t0 = Instant::now();
        while self.swanctl(&["--stats"]).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "charon did not come up"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.swanctl(&[
            "--load-all",
            "--file",
            &format!("{}/swanctl.conf", d.display()),
        ])
        .unwrap();
    }

    fn swanctl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("swanctl")
            .env("STRONGSWAN_CONF", self.dir.join("strongswan.conf"))
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The hex dumps following each of charon's "<what> => N bytes" lines.
    fn logged_keys(&self, what: &str) -> Vec<Vec<u8>> {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let mut out = Vec::new();
        for (at, l) in lines.iter().enumerate() {
            if !l.contains(&format!("{what} => ")) {
                continue;
            }
            let n: usize = l
                .split("=> ")
                .nth(1)
                .and_then(|x| x.split(' ').next())
                .and_then(|x| x.parse().ok())
                .unwrap_or(0);
            let mut hex = String::new();
            for l in &lines[at + 1..] {
                let Some((_, rest)) = l.split_once(": ") else {
                    break;
                };
                // "  0: 5A AD ...  ascii": the bytes are the first 16 two-digit groups.
                for b in rest.split(' ').filter(|t| t.len() == 2).take(16) {
                    hex.push_str(b);
                }
                if hex.len() >= 2 * n {
                    break;
                }
            }
            hex.truncate(2 * n);
            out.push(hex::decode(hex).unwrap());
        }
        out
    }

    /// Each "CHILD_SA net{1} established with SPIs 79fb08bf_i b28022eb_o": charon's (in, out).
    fn logged_spis(&self) -> Vec<(u32, u32)> {
        let log = self.log();
        log.lines()
            .filter_map(|l| {
                let mut it = l.split("established with SPIs ").nth(1)?.split(' ');
                let i = u32::from_str_radix(it.next()?.strip_suffix("_i")?, 16).ok()?;
                let o = u32::from_str_radix(it.next()?.strip_suffix("_o")?, 16).ok()?;
                Some((i, o))
            })
            .collect()
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("charon.log")).unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.charon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in [&self.left, &self.right] {
            let _ = sh(&["ip", "netns", "del", n]);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn ts(a: &str, b: &str) -> TrafficSelector {
    TrafficSelector::range(a.parse().unwrap(), b.parse().unwrap())
}

fn policy() -> Policy {
    Policy {
        local_id: Identification::fqdn("left.lab.test"),
        remote_id: Some(Identification::fqdn("right.lab.test")),
        psk: Secret::from_slice(PSK.as_bytes()),
        ike_encr_bits: vec![128],
        ike_prfs: vec![Prf::HmacSha256],
        ike_groups: vec![DhGroup::Curve25519],
        esp_encr_bits: vec![128],
        esp_groups: vec![],
        local_ts: vec![ts("10.99.1.0", "10.99.1.255")],
        remote_ts: vec![ts("10.99.2.0", "10.99.2.255")],
        request_virtual_ip: false,
        request_virtual_ip6: false,
        dns: vec![],
        pool: None,
        retransmit: Retransmit::default(),
    }
}

/// Our side: an endpoint on real sockets in the left namespace, run on a
/// thread of its own (setns changes only the calling thread).
struct Driver {
    ep: IkeEndpoint,
    s500: UdpSocket,
    s4500: UdpSocket,
    events: Vec<Event>,
    /// ESP-in-UDP datagrams that arrived on 4500 (no non-ESP marker).
    esp: Vec<Vec<u8>>,
}

impl Driver {
    fn new(ns: &str) -> Driver {
        let f = fs::File::open(format!("/run/netns/{ns}")).unwrap();
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        let bind = |p: u16| {
            let s = UdpSocket::bind(("192.0.2.1", p)).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
            s
        };
        Driver {
            ep: IkeEndpoint::new(
                Box::new(rand::rngs::StdRng::from_os_rng()),
                Box::new(SequentialSpis::starting_at(0xc0de_0000)),
            ),
            s500: bind(500),
            s4500: bind(4500),
            events: Vec::new(),
            esp: Vec::new(),
        }
    }

    /// Pumps until `done` holds for the events seen, or `limit` passes.
    fn run(&mut self, limit: Duration, done: impl Fn(&[Event]) -> bool) -> bool {
        let end = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            while let Some(t) = self.ep.poll_transmit() {
                let s = if t.local.port() == 4500 {
                    &self.s4500
                } else {
                    &self.s500
                };
                s.send_to(&t.payload, t.remote).unwrap();
            }
            while let Some(e) = self.ep.poll_event() {
                self.events.push(e);
            }
            if done(&self.events) {
                return true;
            }
            for s in [&self.s500, &self.s4500] {
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    let local: SocketAddr = s.local_addr().unwrap();
                    if local.port() == 4500 && n > 8 && buf[..4] != [0; 4] {
                        self.esp.push(buf[..n].to_vec());
                    }
                    self.ep
                        .handle_datagram(Instant::now(), local, from, &buf[..n]);
                }
            }
            self.ep.handle_timeout(Instant::now());
        }
        false
    }

    fn child(&self) -> Option<&ChildSa> {
        self.events.iter().find_map(|e| match e {
            Event::ChildSaEstablished(c) => Some(&**c),
            _ => None,
        })
    }
}

fn has_child(e: &[Event]) -> bool {
    e.iter().any(|e| {
        matches!(
            e,
            Event::ChildSaEstablished(_) | Event::ChildSaFailed { .. } | Event::IkeSaDeleted { .. }
        )
    })
}

/// charon's keys and SPIs of its `nth` CHILD SA, from its log, equal ours.
/// `we_initiated` (the exchange that made it) says which logged key
/// protects our outbound traffic.
fn assert_keys_match_charon(lab: &Lab, c: &ChildSa, we_initiated: bool, nth: usize) {
    let ki = lab.logged_keys("encryption initiator key");
    let kr = lab.logged_keys("encryption responder key");
    let (out, inb) = if we_initiated {
        (&ki[nth], &kr[nth])
    } else {
        (&kr[nth], &ki[nth])
    };
    assert_eq!(c.outbound_key.0.as_bytes(), &out[..]);
    assert_eq!(c.inbound_key.0.as_bytes(), &inb[..]);
    assert_eq!(lab.logged_spis()[nth], (c.outbound_spi, c.inbound_spi));
}

/// Opens an ESP packet (RFC 4303/4106) with our inbound key; returns the
/// inner packet without padding and trailer.
fn open_esp(c: &ChildSa, p: &[u8]) -> Vec<u8> {
    assert_eq!(
        u32::from_be_bytes(p[..4].try_into().unwrap()),
        c.inbound_spi
    );
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&c.inbound_key.salt());
    nonce[4..].copy_from_slice(&p[8..16]);
    let (body, tag) = p[16..].split_at(p.len() - 32);
    let mut plain = body.to_vec();
    dataplane::crypto::AesGcm::new(c.inbound_key.key())
        .unwrap()
        .open_in_place(&nonce, &p[..8], &mut plain, tag.try_into().unwrap())
        .expect("ESP from charon opens with our inbound key");
    let n = plain.len();
    assert_eq!(plain[n - 1], 4, "next header IPv4");
    let pad = usize::from(plain[n - 2]);
    plain.truncate(n - 2 - pad);
    plain
}

fn children(events: &[Event]) -> Vec<ChildSa> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ChildSaEstablished(c) => Some((**c).clone()),
            _ => None,
        })
        .collect()
}

fn count(events: &[Event], f: impl Fn(&Event) -> bool) -> usize {
    events.iter().filter(|e| f(e)).count()
}

fn rekeyed_to(events: &[Event]) -> Option<IkeSaId> {
    events.iter().find_map(|e| match e {
        Event::IkeSaRekeyed { new, .. } => Some(*new),
        _ => None,
    })
}

#[test]
fn our_initiator_with_strongswan_responder() {
    if !available() {
        return;
    }
    let mut lab = Lab::up("i");
    lab.start_charon("10.99.2.0/24", "");
    let left = lab.left.clone();
    let right = lab.right.clone();
    let events = std::thread::spawn(move || {
        let mut d = Driver::new(&left);
        let now = Instant::now();
        let id =
            d.ep.connect(
                now,
                "192.0.2.1:500".parse().unwrap(),
                "192.0.2.2:500".parse().unwrap(),
                policy(),
            )
            .unwrap();
        d.run(Duration::from_secs(15), has_child);
        let Some(first) = d.child().cloned() else {
            return (d.events, Vec::new());
        };
        // charon pings into the tunnel: ESP in UDP to us, sealed with the
        // key we derived for our inbound SA.
        std::thread::sleep(Duration::from_millis(300));
        let mut ping = Command::new("ip")
            .args([
                "netns", "exec", &right, "ping", "-c", "2", "-i", "0.2", "-W", "1",
            ])
            .args(["-I", "10.99.2.1", "10.99.1.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        d.run(Duration::from_secs(2), |_| false);
        let _ = ping.wait();
        let esp = std::mem::take(&mut d.esp);
        // Then rekey the CHILD SA.
        assert!(d.ep.rekey_child_sa(Instant::now(), id, first.inbound_spi));
        d.run(Duration::from_secs(10), |e| {
            count(e, |e| matches!(e, Event::ChildSaDeleted { .. })) == 1
        });
        // Then the IKE SA, then delete everything from the new IKE SA.
        assert!(d.ep.rekey_ike_sa(Instant::now(), id));
        d.run(Duration::from_secs(10), |e| {
            count(e, |e| {
                matches!(
                    e,
                    Event::IkeSaDeleted {
                        reason: IkeSaEnd::Rekeyed,
                        ..
                    }
                )
            }) == 1
        });
        let Some(new) = rekeyed_to(&d.events) else {
            return (d.events, esp);
        };
        assert!(d.ep.delete_ike_sa(Instant::now(), new));
        d.run(Duration::from_secs(10), |e| {
            count(e, |e| {
                matches!(
                    e,
                    Event::IkeSaDeleted {
                        reason: IkeSaEnd::Deleted,
                        ..
                    }
                )
            }) == 1
        });
        (d.events, esp)
    })
    .join()
    .unwrap();
    let (events, esp) = events;
    let log = lab.log();
    let c = children(&events);
    assert_eq!(c.len(), 2, "{events:?}\n{log}");
    assert!(!esp.is_empty(), "no ESP from charon\n{log}");
    for p in &esp {
        let inner = open_esp(&c[0], p);
        // IPv4 ICMP echo request 10.99.2.1 -> 10.99.1.1.
        assert_eq!((inner[0] >> 4, inner[9], inner[20]), (4, 1, 8));
        assert_eq!(&inner[12..20], [10, 99, 2, 1, 10, 99, 1, 1]);
    }
    assert_eq!(c[0].remote_ts, [ts("10.99.2.0", "10.99.2.255")]);
    assert_eq!(c[0].local_ts, [ts("10.99.1.0", "10.99.1.255")]);
    assert_keys_match_charon(&lab, &c[0], true, 0);
    // The CHILD rekey (no PFS): new keys from the CREATE_CHILD_SA nonces.
    assert_eq!(c[1].replaces, Some(c[0].inbound_spi));
    assert_keys_match_charon(&lab, &c[1], true, 1);
    assert!(log.contains("IKE_SA lab[1] established"), "{log}");
    let ended: Vec<&IkeSaEnd> = events
        .iter()
        .filter_map(|e| match e {
            Event::IkeSaDeleted { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(
        ended,
        [&IkeSaEnd::Rekeyed, &IkeSaEnd::Deleted],
        "{events:?}\n{log}"
    );
    // charon answered our DELETE on the rekeyed SA, so it shares its keys.
    assert_eq!(
        count(&events, |e| matches!(e, Event::ChildSaDeleted { .. })),
        2
    );
    assert!(log.contains("received DELETE for IKE_SA lab[2]"), "{log}");
}

fn responder_policy() -> Policy {
    let mut p = policy();
    p.remote_id = Some(Identification::fqdn("right.lab.test"));
    p.dns = vec!["10.99.1.53".parse().unwrap()];
    p
}

/// charon initiates (`swanctl --initiate`) while our responder runs.
fn strongswan_initiates(
    tag: &str,
    conn_extra: &str,
    local_ts: &str,
) -> (Lab, Vec<Event>, Result<String, String>) {
    let mut lab = Lab::up(tag);
    lab.start_charon(local_ts, conn_extra);
    let left = lab.left.clone();
    let conf = lab.dir.join("strongswan.conf");
    let driver = std::thread::spawn(move || {
        let mut d = Driver::new(&left);
        d.ep.accept(
            responder_policy(),
            Some(AddressPool::new("10.99.7.1".parse().unwrap(), 8)),
        );
        d.run(Duration::from_secs(15), has_child);
        if d.child().is_none() {
            return d.events;
        }
        d.run(Duration::from_millis(300), |_| false);
        // charon rekeys the CHILD SA, then the IKE SA (swanctl runs beside us).
        let swanctl = |args: &[&str]| {
            Command::new("swanctl")
                .env("STRONGSWAN_CONF", &conf)
                .args(args)
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        };
        let mut p = swanctl(&["--rekey", "--child", "net"]);
        d.run(Duration::from_secs(10), |e| {
            count(e, |e| matches!(e, Event::ChildSaDeleted { .. })) == 1
        });
        let _ = p.wait();
        let mut p = swanctl(&["--rekey", "--ike", "lab"]);
        d.run(Duration::from_secs(10), |e| {
            count(e, |e| {
                matches!(
                    e,
                    Event::IkeSaDeleted {
                        reason: IkeSaEnd::Rekeyed,
                        ..
                    }
                )
            }) == 1
        });
        let _ = p.wait();
        // Liveness on the new IKE SA.
        if let Some(id) = rekeyed_to(&d.events) {
            assert!(d.ep.check_liveness(Instant::now(), id));
            d.run(Duration::from_secs(3), |_| false);
        }
        d.events
    });
    std::thread::sleep(Duration::from_millis(200));
    let initiated = lab.swanctl(&["--initiate", "--child", "net", "--timeout", "10"]);
    let events = driver.join().unwrap();
    (lab, events, initiated)
}

#[test]
fn strongswan_initiator_with_our_responder() {
    if !available() {
        return;
    }
    let (lab, events, initiated) = strongswan_initiates("r", "", "10.99.2.0/24");
    let log = lab.log();
    assert!(initiated.is_ok(), "{initiated:?}\n{log}");
    let c = children(&events);
    assert_eq!(c.len(), 2, "{events:?}\n{log}");
    assert_keys_match_charon(&lab, &c[0], false, 0);
    assert_eq!(c[0].local_ts, [ts("10.99.1.0", "10.99.1.255")]);
    assert_eq!(c[0].remote_ts, [ts("10.99.2.0", "10.99.2.255")]);
    // charon fakes a NAT with kernel-libipsec, so everything moved to 4500.
    assert!(c[0].udp_encap);
    assert_eq!(c[0].peer, "192.0.2.2:4500".parse().unwrap());
    // charon's CHILD rekey, answered by us; it deleted the old pair.
    assert_eq!(c[1].replaces, Some(c[0].inbound_spi));
    assert_keys_match_charon(&lab, &c[1], false, 1);
    assert_eq!(
        count(&events, |e| matches!(e, Event::ChildSaDeleted { .. })),
        1
    );
    // charon's IKE rekey: the CHILD SA moved to the new IKE SA, which
    // answered our liveness check (nothing else ended).
    assert!(rekeyed_to(&events).is_some(), "{events:?}\n{log}");
    let ended: Vec<&IkeSaEnd> = events
        .iter()
        .filter_map(|e| match e {
            Event::IkeSaDeleted { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(ended, [&IkeSaEnd::Rekeyed], "{events:?}\n{log}");
    let sas = lab.swanctl(&["--list-sas"]).unwrap();
    assert!(
        sas.contains("ESTABLISHED") && sas.contains("INSTALLED"),
        "{sas}"
    );
}

#[test]
fn strongswan_gets_a_virtual_ip_from_our_pool() {
    if !available() {
        return;
    }
    let (lab, events, initiated) = strongswan_initiates("v", "vips = 0.0.0.0", "dynamic");
    assert!(initiated.is_ok(), "{initiated:?}\n{}", lab.log());
    let c = events
        .iter()
        .find_map(|e| match e {
            Event::ChildSaEstablished(c) => Some(c.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{events:?}\n{}", lab.log()));
    let vip: std::net::Ipv4Addr = "10.99.7.1".parse().unwrap();
    assert_eq!(c.virtual_ip, Some(vip));
    assert_eq!(c.remote_ts, [ts("10.99.7.1", "10.99.7.1")]);
    assert_keys_match_charon(&lab, &c, false, 0);
    // charon shows the address it got from our CP reply on its SA.
    let sas = lab.swanctl(&["--list-sas"]).unwrap();
    assert!(sas.contains("10.99.7.1"), "{sas}");
}
