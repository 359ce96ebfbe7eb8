//! esprit-pktgen: many emulated clients against an esprit gateway; see
//! perf/README.md.

use std::process::ExitCode;

use clap::Parser;
use perf::pktgen::cli::{run, Cli};

/// mimalloc, as espritd: a rekey storm allocates each client's IKE
/// messages and new SAs on the traffic thread.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("esprit-pktgen: {e}");
            ExitCode::FAILURE
        }
    }
}
