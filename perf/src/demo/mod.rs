//! The demo: a gateway and a client data plane on 127.0.0.1, joined by a
//! manually keyed tunnel over real UDP sockets. The client's inside sends
//! numbered, timestamped packets; the gateway's inside reflects them; the
//! client measures what comes back.
//!
//! Two threads, one per core: the gateway (worker + reflector) and the
//! client (generator + worker + receiver). Each packet is sealed and opened
//! twice per round trip.

mod lab;
mod report;

pub use lab::{run, DemoOptions, DemoResult};
pub use report::print_table;
