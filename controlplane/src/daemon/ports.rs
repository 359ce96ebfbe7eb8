//! Opens the ports the config asks for: one outside and one inside queue
//! per worker.

use std::process::Command;

use std::net::IpAddr;

use dataplane::port::dual::DualPort;
use dataplane::port::raw_esp::RawEspPort;
use dataplane::port::reflect::ReflectPort;
use dataplane::port::tun::{TunDevice, TunPort};
use dataplane::port::udp::{UdpConfig, UdpPort};
use dataplane::port::Port;

use super::{io_err, DaemonError};

/// Each worker's outside and inside port, in worker order, and the TUN
/// device they share.
pub struct Opened {
    pub outside: Vec<Box<dyn Port>>,
    pub inside: Vec<Box<dyn Port>>,
    /// The TUN device, when the inside is one (`None` for `reflect`).
    pub tun: Option<TunDevice>,
}

pub fn open(cfg: &config::Config, workers: usize) -> Result<Opened, DaemonError> {
    use config::schema::dataplane::{InsideKind, PortKind};
    if cfg.dataplane.port == PortKind::Mem {
        return Err(DaemonError::Unsupported(
            "dataplane.port = \"mem\" is for tests; espritd takes udp, af_packet, af_xdp or dpdk"
                .into(),
        ));
    }
    if cfg.dataplane.inside.kind == InsideKind::Mem {
        return Err(DaemonError::Unsupported(
            "dataplane.inside.kind = \"mem\" is for tests and the demo; espritd takes tun or reflect"
                .into(),
        ));
    }
    let outside = if cfg.dataplane.port.owns_interface() {
        super::bypass::open_outside(cfg, workers)?
    } else {
        open_udp(cfg, workers)?
    };
    open_inside(cfg, workers, outside)
}

/// The socket ports: UDP at the outside address (and raw ESP beside it).
fn open_udp(cfg: &config::Config, workers: usize) -> Result<Vec<Box<dyn Port>>, DaemonError> {
    let addr = match cfg.gateway.outside.as_slice() {
        [one] => *one,
        [] => return Err(DaemonError::Unsupported("gateway.outside is empty".into())),
        _ => {
            return Err(DaemonError::Unsupported(
                "gateway.outside: one address per daemon so far".into(),
            ))
        }
    };
    let udp = UdpPort::bind_group(addr, workers, UdpConfig::default())
        .map_err(io_err(format!("outside UDP {addr}")))?;
    let outside: Vec<Box<dyn Port>> = if cfg.gateway.raw_esp {
        let IpAddr::V4(local) = addr.ip() else {
            return Err(DaemonError::Unsupported(
                "gateway.raw_esp needs an IPv4 outside address".into(),
            ));
        };
        let mut v: Vec<Box<dyn Port>> = Vec::with_capacity(workers);
        for (w, u) in udp.into_iter().enumerate() {
            let raw = RawEspPort::open_worker(local, w, workers)
                .map_err(io_err(format!("raw ESP socket on {local}")))?;
            v.push(Box::new(DualPort::new(u, raw)));
        }
        v
    } else {
        udp.into_iter()
            .map(|u| Box::new(u) as Box<dyn Port>)
            .collect()
    };
    Ok(outside)
}

fn open_inside(
    cfg: &config::Config,
    workers: usize,
    outside: Vec<Box<dyn Port>>,
) -> Result<Opened, DaemonError> {
    use config::schema::dataplane::InsideKind;
    if cfg.dataplane.inside.kind == InsideKind::Reflect {
        let ring = cfg.dataplane.ring_size.max(64);
        return Ok(Opened {
            outside,
            inside: (0..workers)
                .map(|_| Box::new(ReflectPort::new(ring)) as Box<dyn Port>)
                .collect(),
            tun: None,
        });
    }
    let (tun, queues) = open_tun(&cfg.dataplane.inside, workers)?;
    Ok(Opened {
        outside,
        inside: queues
            .into_iter()
            .map(|q| Box::new(q) as Box<dyn Port>)
            .collect(),
        tun: Some(tun),
    })
}

fn open_tun(
    inside: &config::schema::dataplane::Inside,
    workers: usize,
) -> Result<(TunDevice, Vec<TunPort>), DaemonError> {
    let open = match (inside.offload, inside.offload_udp) {
        (true, true) => TunDevice::open_offloaded,
        (true, false) => TunDevice::open_offloaded_tcp,
        (false, _) => TunDevice::open,
    };
    let (tun, queues) =
        open(&inside.name, workers).map_err(io_err(format!("TUN device {}", inside.name)))?;
    tun.set_mtu(inside.mtu as u32)
        .map_err(io_err(format!("MTU of {}", inside.name)))?;
    for a in &inside.addresses {
        tun.add_address(a.addr(), a.prefix_len())
            .map_err(io_err(format!("address {a} on {}", inside.name)))?;
    }
    tun.set_up()
        .map_err(io_err(format!("bring {} up", inside.name)))?;
    Ok((tun, queues))
}

/// Routes `prefix` into the TUN device so the kernel hands its traffic to
/// the workers.
pub fn add_route(dev: &str, prefix: &str) -> std::io::Result<()> {
    let out = Command::new("ip")
        .args(["route", "replace", prefix, "dev", dev])
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}
