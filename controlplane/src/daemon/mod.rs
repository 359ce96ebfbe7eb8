//! The gateway process: builds the data plane from the config, runs its
//! workers, and owns everything that changes SAs: manual tunnels, the IKE
//! driver, reloads and the control socket, all on one control-plane thread.

mod affinity;
mod bypass;
mod control;
mod inner_addresses;
mod manual;
mod metrics_page;
mod ports;
mod stats_log;

pub use manual::to_dataplane;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::ctl::{Access, CtlServer};
use crate::gateway::{IkeDriver, SpiSlots};
use dataplane::pmtu::PmtuConfig;
use dataplane::port::tun::TunDevice;
use dataplane::sa::manual::ManualTunnel as DpManualTunnel;
use dataplane::sa::{SaPublisher, TunnelId};
use dataplane::worker::{
    handoff_mesh, ControlLink, StatsSnapshot, Worker, WorkerConfig, WorkerStats,
};
use inner_addresses::{HostAddresses, InnerAddresses};

/// Manual tunnels get ids from here up, IKE tunnels from 1: a reload can add
/// either kind without the two ever meeting.
const MANUAL_TUNNEL_BASE: TunnelId = 1 << 23;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("manual tunnel {name:?}: {message}")]
    Tunnel { name: String, message: String },
    #[error("unsupported configuration: {0}")]
    Unsupported(String),
}

/// Routes `prefix` into the TUN device, if the inside is one.
fn route_into(tun: Option<&TunDevice>, prefix: &str) -> Result<(), DaemonError> {
    match tun {
        Some(t) => ports::add_route(t.name(), prefix)
            .map_err(io_err(format!("route {prefix} into {}", t.name()))),
        None => Ok(()),
    }
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}

/// Changes the log filter at run time (the binary owns the subscriber).
pub type LogFilterSetter = Box<dyn Fn(&str) -> Result<(), String> + Send>;

/// How the daemon is started, besides its config.
#[derive(Default)]
pub struct Options {
    /// Where the config came from, for reloads.
    pub config_path: Option<PathBuf>,
    pub set_log_filter: Option<LogFilterSetter>,
}

/// A manually keyed tunnel, its SAs (kept across terminate/initiate so
/// sequence numbers go on) and whether it is in the data plane.
struct ManualEntry {
    tunnel: DpManualTunnel,
    sas: dataplane::sa::manual::ManualSas,
    up: bool,
}

/// A running gateway.
pub struct Daemon {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    stats: Vec<Arc<WorkerStats>>,
    publisher: SaPublisher,
    ike: IkeDriver,
    tun: Option<TunDevice>,
    /// Our leased inner addresses put on the TUN.
    inner_addresses: InnerAddresses,
    workers: usize,
    config: config::Config,
    options: Options,
    manual: BTreeMap<String, ManualEntry>,
    next_manual_id: TunnelId,
    slots: SpiSlots,
    ctl: Option<CtlServer>,
    /// The Prometheus page and when it was last rendered.
    metrics: Option<(crate::metrics::Page, Instant)>,
    started: Instant,
}

impl Daemon {
    /// Opens the ports, installs the manual tunnels and starts the workers.
    pub fn start(cfg: &config::Config) -> Result<Daemon, DaemonError> {
        Daemon::start_with(cfg, Options::default())
    }

    /// As [`Daemon::start`], with the control socket and reload support.
    pub fn start_with(cfg: &config::Config, options: Options) -> Result<Daemon, DaemonError> {
        let n = cfg.dataplane.workers.max(1);
        let ports::Opened {
            outside,
            inside,
            tun,
        } = ports::open(cfg, n)?;

        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut stats = Vec::new();
        let mut control = Vec::new();
        let publisher = SaPublisher::new();
        let mesh = handoff_mesh(n, cfg.dataplane.ring_size.max(64));
        for (id, ((out, ins), handoff)) in outside.into_iter().zip(inside).zip(mesh).enumerate() {
            let link = ControlLink::new(1024);
            let wcfg = WorkerConfig {
                id: id as u16,
                burst: cfg.dataplane.burst,
                core: cfg
                    .dataplane
                    .cores
                    .as_ref()
                    .and_then(|c| c.get(id).copied()),
                spin_before_sleep: cfg.dataplane.idle_spins,
                pmtu: PmtuConfig {
                    outer_mtu: cfg.dataplane.effective_outer_mtu(),
                    mss_clamp: cfg.dataplane.mss_clamp,
                    ..PmtuConfig::default()
                },
                ..WorkerConfig::default()
            };
            let worker = Worker::new(wcfg, out, ins, publisher.reader(), handoff, link.clone());
            stats.push(worker.stats());
            control.push(link);
            threads.push(
                worker
                    .spawn(stop.clone())
                    .map_err(io_err(format!("spawn worker {id}")))?,
            );
        }
        if let Some(cores) = &cfg.dataplane.cores {
            match affinity::keep_off_workers(cores) {
                Ok(Some(rest)) => {
                    tracing::info!(cores = ?rest, "control thread kept off the workers' cores")
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "could not move the control thread"),
            }
        }
        let slots = SpiSlots::new();
        for w in config_warnings(cfg) {
            tracing::warn!("{w}");
        }
        let ike = IkeDriver::new(cfg, control, slots.clone(), 1)
            .map_err(io_err(format!("IKE on port {}", cfg.gateway.ike_port)))?;
        let ctl = if options.config_path.is_some() {
            Some(open_control_socket(&cfg.control)?)
        } else {
            None
        };
        let metrics = match &cfg.metrics {
            None => None,
            Some(m) => {
                let page = crate::metrics::Page::default();
                let at = crate::metrics::serve(m.listen, page.clone())
                    .map_err(io_err(format!("metrics listener {}", m.listen)))?;
                tracing::info!(listen = %at, "metrics at http://{at}/metrics");
                Some((page, Instant::now()))
            }
        };
        let mut d = Daemon {
            stop,
            threads,
            stats,
            publisher,
            ike,
            tun,
            inner_addresses: InnerAddresses::default(),
            workers: n,
            config: cfg.clone(),
            options,
            manual: BTreeMap::new(),
            next_manual_id: MANUAL_TUNNEL_BASE,
            slots,
            ctl,
            metrics,
            started: Instant::now(),
        };
        for t in &cfg.manual_tunnels {
            d.add_manual(t)?;
        }
        d.route_peers(&cfg.peers)?;
        d.index_pools(cfg);
        d.publisher.publish();
        let inside = d.tun.as_ref().map_or("reflect", |t| t.name());
        tracing::info!(workers = n, inside, "data plane running");
        Ok(d)
    }

    /// Installs a manual tunnel from the config (not yet published).
    fn add_manual(&mut self, t: &config::ManualTunnel) -> Result<(), DaemonError> {
        self.slots.reserve(t.inbound.spi);
        let id = self.next_manual_id;
        self.next_manual_id += 1;
        let tunnel = to_dataplane(t, id).map_err(|message| DaemonError::Tunnel {
            name: t.name.clone(),
            message,
        })?;
        let sas = dataplane::sa::manual::install(self.publisher.edit(), &tunnel, self.workers)
            .map_err(|e| DaemonError::Tunnel {
                name: t.name.clone(),
                message: e.to_string(),
            })?;
        for prefix in &t.remote_ts {
            route_into(self.tun.as_ref(), &prefix.to_string())?;
        }
        tracing::info!(
            tunnel = %t.name,
            inbound_spi = format_args!("{:#010x}", t.inbound.spi),
            outbound_spi = format_args!("{:#010x}", t.outbound.spi),
            remote = %t.remote,
            "manual tunnel installed"
        );
        self.manual.insert(
            t.name.clone(),
            ManualEntry {
                tunnel,
                sas,
                up: true,
            },
        );
        Ok(())
    }

    /// Removes a manual tunnel from the data plane (not yet published).
    fn remove_manual(&mut self, name: &str) {
        if let Some(e) = self.manual.remove(name) {
            if e.up {
                dataplane::sa::manual::remove(self.publisher.edit(), &e.tunnel);
            }
            tracing::info!(tunnel = %name, "manual tunnel removed");
        }
    }

    /// Lets the data plane index the host routes inside responders' pools
    /// and `[dataplane] route_pools` (not yet published). A pool it
    /// refuses still works, hashed.
    fn index_pools(&mut self, cfg: &config::Config) {
        let pools = crate::gateway::route_pools(cfg);
        for e in self.publisher.edit().routes.set_pools(&pools) {
            tracing::info!("address pool routes hashed, not indexed: {e}");
        }
    }

    /// What lies behind IKE peers (their selectors, the addresses leased
    /// to clients) is reached through the TUN.
    fn route_peers(&self, peers: &[config::Peer]) -> Result<(), DaemonError> {
        for peer in peers {
            for net in peer.remote_ts.iter().chain(&peer.pool) {
                if net.prefix_len() == 0 {
                    // A default route into the tunnel would capture the
                    // tunnel's own outer traffic: leave it to the operator.
                    tracing::warn!(peer = %peer.name, %net, "not routing a default route into the TUN");
                    continue;
                }
                route_into(self.tun.as_ref(), &net.to_string())?;
            }
        }
        Ok(())
    }

    /// Counters summed over all workers.
    pub fn totals(&self) -> StatsSnapshot {
        let mut t = StatsSnapshot::default();
        for s in &self.stats {
            t.add(&s.snapshot());
        }
        t
    }

    /// Runs until SIGINT or SIGTERM, logging stats every `every`; SIGHUP
    /// reloads the config.
    pub fn run_until_signal(mut self, every: Duration) -> Result<(), DaemonError> {
        let term = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, term.clone())
                .map_err(io_err("install signal handler"))?;
        }
        let hup = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
            .map_err(io_err("install signal handler"))?;
        let mut log = stats_log::StatsLog::new(every);
        while !term.load(Ordering::Relaxed) {
            if hup.swap(false, Ordering::Relaxed) {
                let reply = self.reload();
                match reply.error {
                    None => tracing::info!(result = %reply.data, "reloaded on SIGHUP"),
                    Some(e) => tracing::warn!(error = %e, "SIGHUP reload refused"),
                }
            }
            self.control_step();
            log.maybe_log(&self.totals(), &self.publisher.published());
            self.publisher.reclaim();
        }
        tracing::info!("shutting down");
        self.ike.shutdown(Instant::now(), self.publisher.edit());
        self.publisher.publish();
        // Let the workers send the DELETEs that leave on port 4500.
        std::thread::sleep(Duration::from_millis(100));
        self.shutdown();
        Ok(())
    }

    /// Puts the inner addresses responders leased to us on the inside TUN,
    /// and takes off those no SA holds any more (see `inner_addresses`):
    /// the CHILD SAs' selectors are narrowed to them, so hosts must be able
    /// to send from them.
    fn sync_inner_addresses(&mut self, now: Instant) {
        let own = self.ike.own_addresses();
        let Some(tun) = self.tun.as_ref() else {
            return;
        };
        let (version, wanted) = (own.version(), own.all());
        self.inner_addresses
            .sync(&TunAddresses(tun), version, &wanted, now);
    }

    /// One turn of the control loop: control requests, IKE datagrams and
    /// timers, then a short sleep on the IKE socket (the workers' queues are
    /// checked at least every few milliseconds).
    fn control_step(&mut self) {
        while let Some(p) = self.ctl.as_ref().and_then(|c| c.next()) {
            let reply = self.handle(p.request.clone());
            p.answer(reply);
        }
        if self.ike.poll(Instant::now(), self.publisher.edit()) {
            self.publisher.publish();
        }
        self.ike.flush();
        // Without an inside TUN (a reflecting inside) there is nowhere to
        // put them, and nothing to try again.
        let now = Instant::now();
        if self.tun.is_some()
            && self
                .inner_addresses
                .due(self.ike.own_addresses().version(), now)
        {
            self.sync_inner_addresses(now);
        }
        if self
            .metrics
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() >= Duration::from_secs(1))
        {
            let text = self.render_metrics();
            if let Some((page, at)) = self.metrics.as_mut() {
                if let Ok(mut p) = page.write() {
                    *p = text;
                }
                *at = Instant::now();
            }
        }
        let wait = self
            .ike
            .next_timeout()
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::MAX)
            .min(Duration::from_millis(5));
        // Without an IKE socket (IKE through the workers) poll just sleeps.
        let mut fds = [libc::pollfd {
            fd: self.ike.fd().unwrap_or(-1),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one pollfd (a negative fd is ignored) for the duration of the call.
        unsafe { libc::poll(fds.as_mut_ptr(), 1, wait.as_millis() as libc::c_int) };
    }

    /// Stops the workers and waits for them.
    pub fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn open_control_socket(c: &config::ControlSocket) -> Result<CtlServer, DaemonError> {
    let group = match &c.group {
        None => None,
        Some(name) => Some(group_id(name).ok_or_else(|| {
            DaemonError::Unsupported(format!("control.group {name:?}: no such group"))
        })?),
    };
    CtlServer::bind(&c.path, c.mode, Access { group })
        .map_err(io_err(format!("control socket {}", c.path.display())))
}

/// The numeric id of group `name`.
fn group_id(name: &str) -> Option<u32> {
    let cname = std::ffi::CString::new(name).ok()?;
    // SAFETY: getgrnam takes a valid C string and returns a pointer to
    // static storage (or null), read at once.
    let gr = unsafe { libc::getgrnam(cname.as_ptr()) };
    if gr.is_null() {
        None
    } else {
        // SAFETY: non-null result of getgrnam.
        Some(unsafe { (*gr).gr_gid })
    }
}

/// What in a valid config will not work as an operator may expect; logged
/// at start and printed by `espritd --check-config`.
///
/// IKE NAT traversal lives on UDP 4500 (RFC 3948: the non-ESP marker, and
/// an initiator behind a NAT moves there); a gateway listening elsewhere
/// still serves clients that are not behind a NAT, but not the others.
/// A responder hands out addresses from the first IPv4 and the first IPv6
/// prefix of its `pool`; further prefixes are not leased.
pub fn config_warnings(cfg: &config::Config) -> Vec<String> {
    if cfg.peers.is_empty() {
        return Vec::new();
    }
    let natt = cfg
        .gateway
        .outside
        .iter()
        .filter(|a| a.port() != 4500)
        .map(|a| {
            format!(
                "gateway.outside {a}: IKE peers behind a NAT cannot reach this gateway: \
                 NAT traversal uses UDP 4500 (RFC 3948), not {}",
                a.port()
            )
        });
    let pools = cfg
        .peers
        .iter()
        .filter(|p| p.role == config::Role::Responder)
        .flat_map(|p| {
            let v4 = crate::gateway::leased_prefix(p).map(|(i, _)| i);
            let v6 = crate::gateway::leased_prefix6(p).map(|(i, _)| i);
            p.pool
                .iter()
                .enumerate()
                .filter(move |(i, _)| Some(*i) != v4 && Some(*i) != v6)
                .map(move |(_, net)| {
                    format!(
                        "peer {}: pool {net} is not handed out: clients get addresses \
                         from the first IPv4 and the first IPv6 prefix of the pool only",
                        p.name
                    )
                })
        });
    natt.chain(pools).collect()
}

/// The inside TUN as the device leased addresses go on.
struct TunAddresses<'a>(&'a TunDevice);

impl HostAddresses for TunAddresses<'_> {
    fn add(&self, a: IpAddr) -> std::io::Result<()> {
        self.0.add_host_address(a)
    }
    fn remove(&self, a: IpAddr) -> std::io::Result<()> {
        self.0.remove_host_address(a)
    }
    fn name(&self) -> &str {
        self.0.name()
    }
}
