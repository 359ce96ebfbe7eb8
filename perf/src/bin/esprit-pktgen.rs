//! esprit-pktgen: many emulated clients against an esprit gateway; see
//! perf/README.md.

use std::process::ExitCode;

use clap::Parser;
use perf::pktgen::cli::{run, Cli};

/// The IKE clients allocate per message as espritd's control thread
/// does, and take the same allocator (see espritd).
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
