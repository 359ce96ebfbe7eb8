//! espritd: the esprit gateway daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use controlplane::daemon::Daemon;

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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    if let Some(file) = &args.check_config {
        return match config::load(file) {
            Ok(c) => {
                println!("{}: OK: {}", file.display(), c.summary());
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
    let daemon = match Daemon::start(&cfg) {
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
