//! The README's demo runs: traffic crosses real UDP sockets through ESP both
//! ways, every packet comes back, and the latency histogram is filled.

use std::time::Duration;

use perf::demo::{run, DemoOptions};

#[test]
fn demo_moves_traffic_both_ways_without_loss() {
    for size in [64, 1400] {
        let r = run(&DemoOptions {
            size,
            duration: Duration::from_millis(300),
            window: 64,
        })
        .unwrap();
        assert!(
            r.received > 100,
            "{size} B: only {} round trips",
            r.received
        );
        assert_eq!(r.sent, r.received, "{size} B: loss on loopback");
        // Each round trip is opened and sealed once by each side.
        assert_eq!(r.gateway.decrypted, r.received);
        assert_eq!(r.gateway.encrypted, r.received);
        assert_eq!(r.client.decrypted, r.received);
        assert_eq!(r.gateway.total_drops() + r.client.total_drops(), 0);
        assert_eq!(r.latency.len(), r.received);
        assert!(r.mpps() > 0.0 && r.gbps() > 0.0);
    }
}
