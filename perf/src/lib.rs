//! esprit performance tooling: the demo, the pktgen load generator, reports.
pub mod demo;
pub mod pktgen;
