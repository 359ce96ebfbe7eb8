//! esprit-pktgen: many emulated clients against one gateway.
//!
//! - `gen_config`: writes an espritd config with N manually keyed tunnels
//!   and a reflecting inside; the same file is pktgen's client list, so the
//!   two sides always agree on keys, SPIs and addresses;
//! - `clients`: the client side of each tunnel (its SA pair, inner and
//!   outer address), from that config or from IKE;
//! - `traffic`: sizes, rate, the stamp carried in each inner payload;
//! - `engine`: one thread per group of sockets: seal, send, receive, open;
//!   `look_ahead`: the client state it asks the cache for, packets ahead;
//!   `by_spi`: which client an SPI belongs to;
//! - `receiver`: loss, duplicates and latency from the returned stamps;
//! - `report`: the table, the JSON and the timeline; `plot`: SVG charts;
//!   `cpu`: the generator's own CPU time, to tell when it was the limit;
//! - `ike`: clients that are real IKEv2 initiators with epoch pings.

mod by_spi;
pub mod cli;
pub mod clients;
pub mod cpu;
pub mod engine;
pub mod error;
pub mod gen_config;
pub mod ike;
mod look_ahead;
pub mod plot;
pub mod receiver;
pub mod report;
pub mod session;
pub mod traffic;

pub use error::PktgenError;
