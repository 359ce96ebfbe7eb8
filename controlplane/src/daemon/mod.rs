//! The gateway process: builds the data plane from the config, runs its
//! workers, and owns everything that changes SAs (manual tunnels now; IKE,
//! epochs and the control socket as they arrive).

mod manual;
mod ports;
mod stats_log;

pub use manual::to_dataplane;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::gateway::{IkeDriver, SpiSlots};
use dataplane::port::tun::TunDevice;
use dataplane::sa::SaPublisher;
use dataplane::worker::{
    handoff_mesh, ControlLink, StatsSnapshot, Worker, WorkerConfig, WorkerStats,
};

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

/// A running data plane.
pub struct Daemon {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    stats: Vec<Arc<WorkerStats>>,
    publisher: SaPublisher,
    ike: Option<IkeDriver>,
    _tun: Option<TunDevice>,
}

impl Daemon {
    /// Opens the ports, installs the manual tunnels and starts the workers.
    pub fn start(cfg: &config::Config) -> Result<Daemon, DaemonError> {
        let n = cfg.dataplane.workers.max(1);
        let ports::Opened {
            outside,
            inside,
            tun,
        } = ports::open(cfg, n)?;

        let mut publisher = SaPublisher::new();
        let slots = SpiSlots::new();
        for (i, t) in cfg.manual_tunnels.iter().enumerate() {
            slots.reserve(t.inbound.spi);
            let tunnel = to_dataplane(t, i as u32 + 1).map_err(|message| DaemonError::Tunnel {
                name: t.name.clone(),
                message,
            })?;
            dataplane::sa::manual::install(publisher.edit(), &tunnel, n).map_err(|e| {
                DaemonError::Tunnel {
                    name: t.name.clone(),
                    message: e.to_string(),
                }
            })?;
            for prefix in &t.remote_ts {
                route_into(tun.as_ref(), &prefix.to_string())?;
            }
            tracing::info!(
                tunnel = %t.name,
                inbound_spi = format_args!("{:#010x}", t.inbound.spi),
                outbound_spi = format_args!("{:#010x}", t.outbound.spi),
                remote = %t.remote,
                "manual tunnel installed"
            );
        }
        // What lies behind IKE peers (their selectors, the addresses leased
        // to clients) is reached through the TUN.
        for peer in &cfg.peers {
            for net in peer.remote_ts.iter().chain(&peer.pool) {
                if net.prefix_len() == 0 {
                    // A default route into the tunnel would capture the
                    // tunnel's own outer traffic: leave it to the operator.
                    tracing::warn!(peer = %peer.name, %net, "not routing a default route into the TUN");
                    continue;
                }
                route_into(tun.as_ref(), &net.to_string())?;
            }
        }
        publisher.publish();

        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut stats = Vec::new();
        let mut control = Vec::new();
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
        let ike = if cfg.peers.is_empty() {
            None
        } else {
            let first_tunnel = cfg.manual_tunnels.len() as u32 + 1;
            Some(
                IkeDriver::new(cfg, control, slots, first_tunnel)
                    .map_err(io_err(format!("IKE on port {}", cfg.gateway.ike_port)))?,
            )
        };
        let inside = tun.as_ref().map_or("reflect", |t| t.name());
        tracing::info!(
            workers = n,
            inside,
            ike = ike.is_some(),
            "data plane running"
        );
        Ok(Daemon {
            stop,
            threads,
            stats,
            publisher,
            ike,
            _tun: tun,
        })
    }

    /// Counters summed over all workers.
    pub fn totals(&self) -> StatsSnapshot {
        let mut t = StatsSnapshot::default();
        for s in &self.stats {
            t.add(&s.snapshot());
        }
        t
    }

    /// Runs until SIGINT or SIGTERM, logging stats every `every`.
    pub fn run_until_signal(mut self, every: Duration) -> Result<(), DaemonError> {
        let term = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, term.clone())
                .map_err(io_err("install signal handler"))?;
        }
        let mut log = stats_log::StatsLog::new(every);
        while !term.load(Ordering::Relaxed) {
            self.control_step();
            log.maybe_log(&self.totals(), &self.publisher.published());
            self.publisher.reclaim();
        }
        tracing::info!("shutting down");
        if let Some(ike) = self.ike.as_mut() {
            ike.shutdown(Instant::now(), self.publisher.edit());
            self.publisher.publish();
            // Let the workers send the DELETEs that leave on port 4500.
            std::thread::sleep(Duration::from_millis(100));
        }
        self.shutdown();
        Ok(())
    }

    /// One turn of the control loop: IKE datagrams and timers, then a
    /// short sleep on the IKE socket (the workers' queues are checked at
    /// least every few milliseconds).
    fn control_step(&mut self) {
        let Some(ike) = self.ike.as_mut() else {
            std::thread::sleep(Duration::from_millis(50));
            return;
        };
        if ike.poll(Instant::now(), self.publisher.edit()) {
            self.publisher.publish();
        }
        let wait = ike
            .next_timeout()
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::MAX)
            .min(Duration::from_millis(5));
        let mut fds = [libc::pollfd {
            fd: ike.fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd for the duration of the call.
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
