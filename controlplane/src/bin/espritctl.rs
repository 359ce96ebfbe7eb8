//! espritctl: watch and steer a running espritd through its control socket.
//!
//! Exit codes: 0 done; 1 the daemon refused the request (the reply says
//! why); 2 espritd is not running; 3 not permitted to use the socket;
//! 4 anything else (I/O, a reply that is not valid).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use controlplane::ctl::client::{request, ClientError};
use controlplane::ctl::Request;
use serde_json::Value;

#[derive(Parser)]
#[command(name = "espritctl", version, about = "Control a running espritd")]
struct Args {
    /// The daemon's control socket.
    #[arg(long, default_value = "/run/esprit/ctl.sock", global = true)]
    socket: PathBuf,
    /// Print the daemon's JSON reply as it is (for scripts).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Version, uptime, counts of tunnels and SAs.
    Status,
    /// Tunnels with their state and traffic.
    Tunnels {
        /// Only this peer or manual tunnel.
        #[arg(long)]
        peer: Option<String>,
        /// Only tunnels in this state (up, down, connecting, ...).
        #[arg(long)]
        state: Option<String>,
    },
    /// Every SA in the data plane.
    Sas,
    /// Counters per worker and per drop reason.
    Stats,
    /// Re-read the config file and apply the difference.
    Reload,
    /// Bring a manual tunnel or an initiator peer up.
    Initiate { name: String },
    /// Take a manual tunnel or an initiator peer down.
    Terminate { name: String },
    /// Rekey a peer's CHILD SAs now.
    Rekey { name: String },
    /// Change the log filter (e.g. debug, info, controlplane=debug).
    LogLevel { filter: String },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let req = match args.command {
        Command::Status => Request::Status {},
        Command::Tunnels { peer, state } => Request::Tunnels { peer, state },
        Command::Sas => Request::Sas {},
        Command::Stats => Request::Stats {},
        Command::Reload => Request::Reload {},
        Command::Initiate { name } => Request::Initiate { name },
        Command::Terminate { name } => Request::Terminate { name },
        Command::Rekey { name } => Request::Rekey { name },
        Command::LogLevel { filter } => Request::LogLevel { filter },
    };
    let reply = match request(&args.socket, &req, Duration::from_secs(15)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("espritctl: {e}");
            return ExitCode::from(match e {
                ClientError::NotRunning(_) => 2,
                ClientError::NotPermitted(_) => 3,
                ClientError::Io { .. } | ClientError::Protocol(_) => 4,
            });
        }
    };
    if args.json {
        println!("{}", reply.to_line());
    } else if let Some(err) = &reply.error {
        eprintln!("espritctl: {err}");
    } else {
        print_human(&req, &reply.data);
    }
    if reply.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.len().to_string(),
        other => other.to_string(),
    }
}

/// Prints rows as an aligned table with the given columns.
fn table(rows: &[Value], columns: &[&str]) {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| cell(&r[*c])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].len())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |vals: Vec<String>| {
        let parts: Vec<String> = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(columns.iter().map(|c| c.to_uppercase()).collect());
    for r in cells {
        line(r);
    }
}

fn print_human(req: &Request, data: &Value) {
    match req {
        Request::Tunnels { .. } => {
            let rows = data.as_array().cloned().unwrap_or_default();
            table(
                &rows,
                &[
                    "name",
                    "kind",
                    "state",
                    "remote",
                    "virtual_ip",
                    "virtual_ip6",
                    "epoch",
                    "epoch_state",
                    "rtt_ms",
                    "inbound_spi",
                    "outbound_spi",
                    "packets_in",
                    "packets_out",
                ],
            );
        }
        Request::Sas {} => {
            let rows = data.as_array().cloned().unwrap_or_default();
            table(
                &rows,
                &[
                    "direction",
                    "spi",
                    "tunnel",
                    "worker",
                    "packets",
                    "bytes",
                    "seq",
                ],
            );
        }
        Request::Stats {} => {
            let workers = data["workers"].as_array().cloned().unwrap_or_default();
            table(
                &workers,
                &[
                    "worker",
                    "outside_rx",
                    "outside_tx",
                    "inside_rx",
                    "inside_tx",
                    "decrypted",
                    "encrypted",
                    "to_control",
                ],
            );
            println!();
            // What the workers did besides moving packets: hand-offs to an
            // SA's owner, TUN super-packets, MSS and PMTU work.
            table(
                &workers,
                &[
                    "worker",
                    "handed_off",
                    "keepalives",
                    "tun_rx_super_packets",
                    "tun_tx_super_packets",
                    "mss_clamped",
                    "fragmented",
                    "icmp_too_big_sent",
                    "icmp_too_big_limited",
                ],
            );
            println!();
            if let Some(drops) = data["drops"].as_object() {
                let rows: Vec<Value> = drops
                    .iter()
                    .map(|(k, v)| serde_json::json!({"reason": k, "count": v}))
                    .collect();
                table(&rows, &["reason", "count"]);
            }
            if let Some(ike) = data["ike"].as_object() {
                println!();
                let rows: Vec<Value> = ike
                    .iter()
                    .map(|(k, v)| serde_json::json!({"ike": k, "count": v}))
                    .collect();
                table(&rows, &["ike", "count"]);
            }
        }
        _ => match data.as_object() {
            Some(obj) => {
                let w = obj.keys().map(|k| k.len()).max().unwrap_or(0);
                for (k, v) in obj {
                    println!("{k:<w$}  {}", cell(v));
                }
            }
            None => println!("{data}"),
        },
    }
}
