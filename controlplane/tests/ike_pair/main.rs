//! The IKE state machines end to end in simulated time: an initiator and a
//! responder over an in-memory network (quinn-proto's `Pair` style), with
//! loss, a NAT, and misconfigurations.

mod harness;

mod child_limit;
mod child_rekey;
mod collisions;
mod failures;
mod fuzz;
mod handshake;
mod ike_rekey;
mod informational;
mod leases;
