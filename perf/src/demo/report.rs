//! The demo's table.

use dataplane::DropReason;

use super::DemoResult;

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// Prints one row per run, then the drops by reason.
pub fn print_table(results: &[DemoResult]) {
    println!(
        "{:>6} {:>9} {:>9} {:>10} {:>10} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "size",
        "Mpps",
        "Gbit/s",
        "sent",
        "received",
        "lost",
        "p50 us",
        "p99 us",
        "p99.9 us",
        "max us"
    );
    for r in results {
        let h = &r.latency;
        println!(
            "{:>5}B {:>9.3} {:>9.3} {:>10} {:>10} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            r.size,
            r.mpps(),
            r.gbps(),
            r.sent,
            r.received,
            r.sent.saturating_sub(r.received),
            us(h.value_at_quantile(0.50)),
            us(h.value_at_quantile(0.99)),
            us(h.value_at_quantile(0.999)),
            us(h.max()),
        );
    }
    for r in results {
        println!(
            "{:>5}B gateway: {} ESP opened, {} sealed; client: {} opened, {} sealed",
            r.size,
            r.gateway.decrypted,
            r.gateway.encrypted,
            r.client.decrypted,
            r.client.encrypted
        );
    }
    println!("\ndrops by reason (gateway + client):");
    let mut any = false;
    for reason in DropReason::ALL {
        let n: u64 = results
            .iter()
            .map(|r| r.gateway.drops(reason) + r.client.drops(reason))
            .sum();
        if n > 0 {
            any = true;
            println!("  {:<16} {n}", reason.name());
        }
    }
    if !any {
        println!("  none");
    }
}
