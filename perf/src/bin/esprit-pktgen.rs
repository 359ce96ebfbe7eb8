//! esprit-pktgen: many emulated clients against an esprit gateway; see
//! perf/README.md.

use std::process::ExitCode;

use clap::Parser;
use perf::pktgen::cli::{run, Cli};

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("esprit-pktgen: {e}");
            ExitCode::FAILURE
        }
    }
}
