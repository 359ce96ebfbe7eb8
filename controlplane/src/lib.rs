//! esprit control plane: IKEv2, tunnel epochs and pings, timers, control socket.

pub mod ctl;
pub mod daemon;
pub mod gateway;
pub mod ike;
pub mod metrics;
pub mod timer_wheel;
pub mod tunnel;
