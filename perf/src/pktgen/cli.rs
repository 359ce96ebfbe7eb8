//! The command line of `esprit-pktgen`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use super::gen_config::GenConfig;
use super::ike::{run_ike, IkeOptions};
use super::report::Report;
use super::session::SessionOptions;
use super::traffic::{SizeMix, Stop, TrafficSpec};
use super::{clients, plot, session, PktgenError};

/// esprit's load generator: many emulated clients against one gateway.
#[derive(Parser, Debug)]
#[command(name = "esprit-pktgen", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write an espritd config with N manually keyed clients and a
    /// reflecting inside; `manual --config` reads the same file.
    GenConfig(GenArgs),
    /// Clients keyed by hand: the SAs come from the gateway's config.
    Manual(ManualArgs),
    /// Clients that are IKEv2 initiators and ping on their epochs, against
    /// the responder [[peer]] of the gateway's config (gen-config --ike).
    Ike(IkeArgs),
}

#[derive(Args, Debug)]
pub struct IkeArgs {
    /// The gateway's config: its outside address, IKE port and responder
    /// [[peer]] (PSK, proposals, selectors).
    #[arg(long, short)]
    pub config: PathBuf,
    /// The responder [[peer]] the clients connect to (default: the first).
    #[arg(long)]
    pub peer: Option<String>,
    /// The clients' identities, `{i}` for the index: an FQDN, an e-mail
    /// address or an IP; the peer's remote_id must accept them.
    #[arg(long, default_value = crate::pktgen::ike::DEFAULT_CLIENT_ID)]
    pub client_id: String,
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Send to this address instead of gateway.outside[0].
    #[arg(long)]
    pub gateway: Option<SocketAddr>,
    /// The clients' outer address.
    #[arg(long, default_value = "127.0.0.1")]
    pub client_ip: IpAddr,
    /// First client port (0: any free ports).
    #[arg(long, default_value_t = 0)]
    pub client_port: u16,
    /// Client sockets; clients are spread over them.
    #[arg(long, default_value_t = 4)]
    pub sockets: usize,
    /// Handshakes in progress at most.
    #[arg(long, default_value_t = 128)]
    pub in_flight: usize,
    /// Seconds the set-up phase may take; clients not up by then are
    /// counted as failed.
    #[arg(long, default_value_t = 120.0)]
    pub setup_timeout: f64,
    /// Rekey storm: every client rekeys its CHILD SA once while traffic
    /// flows, spread over this many seconds (from a quarter of them into
    /// the traffic); one traffic thread then.
    #[arg(long)]
    pub rekey_storm: Option<f64>,
    /// With --rekey-storm: run it this many times, each round after a quiet
    /// quarter of its length; the report gives each round's throughput
    /// against the quiet seconds before it and after it (run the traffic a
    /// quiet quarter past the last round to have the after).
    #[arg(long, default_value_t = 1)]
    pub rekey_rounds: u32,
    /// With --rekey-storm: a control run. The rounds are timed and measured
    /// as a storm's, but no client rekeys; compare its figures with a
    /// storm's to see how much of a storm's drop is the machine's noise.
    #[arg(long, requires = "rekey_storm")]
    pub storm_control: bool,
    #[command(flatten)]
    pub traffic: TrafficArgs,
}

#[derive(Args, Debug)]
pub struct GenArgs {
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Where to write the config.
    #[arg(long, short)]
    pub out: PathBuf,
    /// The gateway's outside address.
    #[arg(long, default_value = "127.0.0.1:4500")]
    pub gateway: SocketAddr,
    #[arg(long, default_value_t = 500)]
    pub ike_port: u16,
    /// Data-plane workers of the gateway.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// The clients' outer address.
    #[arg(long, default_value = "127.0.0.1")]
    pub client_ip: IpAddr,
    /// First client port; client i uses port + i % sockets.
    #[arg(long, default_value_t = 20000)]
    pub client_port: u16,
    /// Client sockets (each a separate source port).
    #[arg(long, default_value_t = 4)]
    pub sockets: usize,
    /// 128 or 256.
    #[arg(long, default_value_t = 128)]
    pub key_bits: usize,
    /// espritd's control socket.
    #[arg(long)]
    pub control: Option<PathBuf>,
    /// An IKE responder with an address pool (for `esprit-pktgen ike`)
    /// instead of manual tunnels.
    #[arg(long)]
    pub ike: bool,
    /// IPv6 inner addresses (manual clients in fd00:0:0:128::/64; with
    /// --ike a pool in fd00:0:0:128::/105 the clients lease from), sending
    /// to fd00:0:0:1::1 on the gateway's protected side.
    #[arg(long)]
    pub inner_ipv6: bool,
}

#[derive(Args, Debug)]
pub struct ManualArgs {
    /// The gateway's config (from gen-config): its [[manual_tunnel]]s,
    /// mirrored, are the clients.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Send to this address instead of gateway.outside[0].
    #[arg(long)]
    pub gateway: Option<SocketAddr>,
    #[command(flatten)]
    pub traffic: TrafficArgs,
}

#[derive(Args, Debug, Clone)]
pub struct TrafficArgs {
    /// Sender/receiver threads (each owns some of the sockets).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Packets per second over all clients; flat out when omitted.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Inner packet size: 64..1500, or imix (7:4:1 of 64/576/1500).
    #[arg(long, default_value = "64")]
    pub size: SizeMix,
    /// Seconds of sending (ignored with --count).
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Packets to send in total, instead of --duration.
    #[arg(long)]
    pub count: Option<u64>,
    /// Seconds to wait for packets still in flight after sending.
    #[arg(long, default_value_t = 1.0)]
    pub drain: f64,
    /// Packets per send burst.
    #[arg(long, default_value_t = 32)]
    pub burst: usize,
    /// Packets in flight per thread at most: the sender waits for replies
    /// (flat out without overrunning the gateway's queues).
    #[arg(long)]
    pub window: Option<usize>,
    /// Packets each client sends in a row before the next client's turn
    /// (1: round robin, every packet on another tunnel).
    #[arg(long, default_value_t = 1)]
    pub train: usize,
    /// Clients take turns in a fixed random order, not their set-up order
    /// (whose state the cores' prefetchers can stream at both ends).
    #[arg(long)]
    pub shuffle: bool,
    /// Write the report as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write throughput over time and the latency CDF as SVG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// No progress line each second.
    #[arg(long)]
    pub quiet: bool,
    /// The gateway's process ID (on this machine): the report adds its CPU
    /// time per round trip, to set beside the generator's (which of the
    /// two costs more).
    #[arg(long)]
    pub gateway_pid: Option<u32>,
}

impl TrafficArgs {
    pub fn session(&self) -> Result<SessionOptions, PktgenError> {
        if self.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            return Err(PktgenError::Option("--rate must be positive".into()));
        }
        if !(self.duration.is_finite() && self.duration > 0.0 && self.duration <= 86_400.0) {
            return Err(PktgenError::Option("--duration must be 0..86400 s".into()));
        }
        if let Some(pid) = self.gateway_pid {
            if super::cpu::CpuTime::of_process(pid).is_none() {
                return Err(PktgenError::Option(format!(
                    "--gateway-pid {pid}: no such process to read in /proc"
                )));
            }
        }
        let stop = match self.count {
            Some(n) => Stop::Count(n),
            None => Stop::After(Duration::from_secs_f64(self.duration)),
        };
        Ok(SessionOptions {
            threads: self.threads.clamp(1, 1024),
            traffic: TrafficSpec {
                size: self.size,
                rate: self.rate,
                stop,
                drain: Duration::from_secs_f64(self.drain.clamp(0.0, 60.0)),
                burst: self.burst.clamp(1, 1024),
                window: self.window.map(|w| w.clamp(1, 1 << 20)),
                train: self.train.clamp(1, 1 << 16),
                shuffle: self.shuffle,
            },
            progress: !self.quiet,
            gateway_pid: self.gateway_pid,
        })
    }

    /// Prints the table and writes the files asked for.
    pub fn output(&self, report: &Report) -> Result<(), PktgenError> {
        print!("{}", report.table());
        if let Some(p) = &self.json {
            report
                .write_json(p)
                .map_err(PktgenError::io(format!("write {}", p.display())))?;
        }
        if let Some(p) = &self.plot {
            plot::write_svg(report, p).map_err(|e| PktgenError::Option(e.to_string()))?;
        }
        Ok(())
    }
}

/// `manual`: the clients of the config at `path`, one traffic phase.
pub fn run_manual(
    path: &std::path::Path,
    gateway: Option<SocketAddr>,
    opt: &SessionOptions,
) -> Result<Report, PktgenError> {
    let cfg = config::load(path)?;
    let clients = clients::from_config(&cfg, gateway)?;
    let lanes = session::bind_lanes(clients::by_socket(clients))?;
    Ok(session::run(lanes, opt, "manual")?.0)
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), PktgenError> {
    match cli.command {
        Command::GenConfig(a) => {
            let g = GenConfig {
                clients: a.clients,
                gateway: a.gateway,
                ike_port: a.ike_port,
                workers: a.workers,
                client_ip: a.client_ip,
                client_port: a.client_port,
                sockets: a.sockets,
                key_len: a.key_bits / 8,
                control: a.control,
                ike: a.ike,
                inner_ipv6: a.inner_ipv6,
            };
            let text = g.render()?;
            std::fs::write(&a.out, text)
                .map_err(PktgenError::io(format!("write {}", a.out.display())))?;
            eprintln!(
                "wrote {} ({} clients on {} sockets from {}:{})",
                a.out.display(),
                a.clients,
                a.sockets,
                a.client_ip,
                a.client_port
            );
            Ok(())
        }
        Command::Ike(a) => {
            let opt = a.traffic.session()?;
            let cfg = config::load(&a.config)?;
            let ike = IkeOptions {
                clients: a.clients,
                client_ip: a.client_ip,
                client_port: a.client_port,
                sockets: a.sockets,
                in_flight: a.in_flight.clamp(1, 100_000),
                setup_timeout: Duration::from_secs_f64(a.setup_timeout.clamp(1.0, 86_400.0)),
                gateway: a.gateway,
                rekey_storm: a
                    .rekey_storm
                    .map(|s| Duration::from_secs_f64(s.clamp(0.001, 86_400.0))),
                rekey_rounds: a.rekey_rounds.clamp(1, 1000),
                storm_control: a.storm_control,
                peer: a.peer.clone(),
                client_id: a.client_id.clone(),
            };
            let report = run_ike(&cfg, &ike, &opt)?;
            a.traffic.output(&report)
        }
        Command::Manual(a) => {
            let opt = a.traffic.session()?;
            let report = run_manual(&a.config, a.gateway, &opt)?;
            a.traffic.output(&report)
        }
    }
}
