//! `esprit-pktgen ike`: every client a real IKEv2 initiator (the control
//! plane's sans-IO endpoint) that pings on its first epoch; then the same
//! traffic phase as `manual`, and DELETEs at the end.

mod handshakes;
mod policy;
mod storm_schedule;

pub use handshakes::{HandshakeOptions, Handshakes, Rekeys};
pub use policy::DEFAULT_CLIENT_ID;
use policy::{ClientPolicy, ClientSpec, Target};
pub use storm_schedule::{RoundFigures, Schedule};

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use dataplane::port::udp::UdpPort;

use super::report::Report;
use super::session::{self, SessionOptions};
use super::PktgenError;

/// What `ike` mode runs.
#[derive(Clone, Debug)]
pub struct IkeOptions {
    pub clients: usize,
    /// The clients' sockets: `client_ip`, ports from `client_port` (0:
    /// any free port; IKE tells the gateway where they are).
    pub client_ip: IpAddr,
    pub client_port: u16,
    pub sockets: usize,
    pub in_flight: usize,
    pub setup_timeout: Duration,
    /// Send to this address instead of `gateway.outside[0]`.
    pub gateway: Option<SocketAddr>,
    /// Every client rekeys once while traffic flows, the rekeys spread
    /// over this long (starting a quarter of it into the traffic).
    pub rekey_storm: Option<Duration>,
    /// How many times the storm runs, each round after a quiet quarter.
    pub rekey_rounds: u32,
    /// Time and measure the storm's rounds, but rekey no client: the same
    /// figures from a run where nothing happens (the method's noise floor).
    pub storm_control: bool,
    /// The responder `[[peer]]` to connect to; `None`: the first.
    pub peer: Option<String>,
    /// The clients' identity, `{i}` for the index ([`DEFAULT_CLIENT_ID`]).
    pub client_id: String,
}

fn bind(opt: &IkeOptions) -> Result<Vec<UdpPort>, PktgenError> {
    let cfg = super::session::client_socket_config();
    (0..opt.sockets.clamp(1, 65535))
        .map(|k| {
            let port = if opt.client_port == 0 {
                0
            } else {
                opt.client_port
                    .checked_add(k as u16)
                    .ok_or_else(|| PktgenError::Option("client ports run past 65535".into()))?
            };
            let addr = SocketAddr::new(opt.client_ip, port);
            UdpPort::bind_with(addr, cfg).map_err(PktgenError::io(format!("bind {addr}")))
        })
        .collect()
}

/// Sets the clients up against the gateway of `cfg`, runs the traffic
/// phase with those that came up, deletes their IKE SAs, and reports.
pub fn run_ike(
    cfg: &config::Config,
    opt: &IkeOptions,
    traffic: &SessionOptions,
) -> Result<Report, PktgenError> {
    if opt.clients == 0 {
        return Err(PktgenError::Option("--clients must be at least 1".into()));
    }
    let target = Target::from_config(cfg, opt.gateway)?;
    let policy = ClientPolicy::from_config(
        cfg,
        &ClientSpec {
            peer: opt.peer.as_deref(),
            id_template: &opt.client_id,
            clients: opt.clients,
        },
    )?;
    let mut hs = Handshakes::new(bind(opt)?, target, policy, opt.clients);
    let setup = hs.run(&HandshakeOptions {
        in_flight: opt.in_flight.max(1),
        timeout: opt.setup_timeout,
        progress: traffic.progress,
    });
    let schedule = opt.rekey_storm.map(|over| Schedule {
        over,
        rounds: opt.rekey_rounds.max(1),
    });
    if let Some(s) = schedule {
        hs.plan_rekey_storm(s, opt.storm_control);
    }
    let lanes = hs.take_lanes();
    if lanes.iter().all(|l| l.clients.is_empty()) {
        return Err(PktgenError::Ike(format!(
            "no client came up ({} failed)",
            setup.failed
        )));
    }
    let hook_buffers = hs.buffers_allocated();
    let (mut report, lanes) = if opt.rekey_storm.is_some() {
        session::run_with(lanes, traffic, "ike", Some(&mut hs))?
    } else {
        session::run(lanes, traffic, "ike")?
    };
    report.generator.buffers_allocated += hs.buffers_allocated() - hook_buffers;
    report.setup = Some(setup);
    report.rekeys = hs.rekeys();
    if let Some(s) = schedule {
        report.storm_rounds = s.figures(&report.timeline);
    }
    // 2 s, and 1 s more per 10,000 tunnels.
    let wait = Duration::from_secs(2) + Duration::from_micros(100) * opt.clients as u32;
    report.teardown = Some(hs.delete_all(lanes, opt.in_flight.max(1), wait));
    Ok(report)
}
