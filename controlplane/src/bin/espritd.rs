//! espritd: the esprit gateway daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use controlplane::daemon::{Daemon, Options};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter};

/// The control thread allocates for every IKE message it parses and
/// builds, and glibc's malloc spent a third of a CHILD SA rekey searching
/// its bins; mimalloc takes a rekey from 22 to 15 µs at 100k tunnels
/// (README, Dependencies). The workers' fast path does not allocate.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// esprit IPsec gateway.
#[derive(Parser)]
#[command(name = "espritd", version)]
struct Args {
    /// Configuration file.
    #[arg(short, long, default_value = "/etc/esprit/esprit.toml")]
    config: PathBuf,
    /// Only validate FILE, print what is wrong, and exit (0 if valid).
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
    /// Seconds between stats lines in the log.
    #[arg(long, default_value_t = 10)]
    stats_interval: u64,
    /// Log filter (tracing env-filter syntax), overridden by RUST_LOG.
    #[arg(long, default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&args.log));
    let (filter, handle) = reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .init();

    if let Some(file) = &args.check_config {
        return match config::load(file) {
            Ok(c) => {
                println!("{}: OK: {}", file.display(), c.summary());
                for w in controlplane::daemon::config_warnings(&c) {
                    eprintln!("{}: warning: {w}", file.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        };
    }
    let cfg = match config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let options = Options {
        config_path: Some(args.config.clone()),
        set_log_filter: Some(Box::new(move |f: &str| {
            let new = EnvFilter::try_new(f).map_err(|e| e.to_string())?;
            handle.reload(new).map_err(|e| e.to_string())
        })),
    };
    let daemon = match Daemon::start_with(&cfg, options) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("espritd: {e}");
            return ExitCode::from(2);
        }
    };
    match daemon.run_until_signal(Duration::from_secs(args.stats_interval.max(1))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("espritd: {e}");
            ExitCode::from(2)
        }
    }
}
