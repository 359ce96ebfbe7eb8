//! esprit-demo: a gateway and a client data plane on 127.0.0.1 with a
//! manually keyed tunnel; pushes traffic both ways and prints a table.
//! No root, no hardware.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use perf::demo::{print_table, run, DemoOptions};

/// The gateway in this process allocates as espritd does (see espritd).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "esprit-demo", version, about)]
struct Args {
    /// Seconds of traffic per packet size.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Inner packet sizes in bytes (48..=1400).
    #[arg(long, value_delimiter = ',', default_values_t = vec![64, 1400])]
    sizes: Vec<usize>,
    /// Packets in flight.
    #[arg(long, default_value_t = 256)]
    window: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    println!(
        "esprit demo: gateway and client data planes on 127.0.0.1, ESP-in-UDP, AES-128-GCM, \
         {} s per size, {} packets in flight\n",
        args.seconds, args.window
    );
    let mut results = Vec::new();
    for size in &args.sizes {
        let opt = DemoOptions {
            size: *size,
            duration: Duration::from_secs_f64(args.seconds.clamp(0.1, 600.0)),
            window: args.window.clamp(1, 4096),
        };
        match run(&opt) {
            Ok(r) => results.push(r),
            Err(e) => {
                eprintln!("esprit-demo: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    print_table(&results);
    println!(
        "\n(Mpps = round trips per second: each is sealed and opened twice, once per direction.)"
    );
    ExitCode::SUCCESS
}
