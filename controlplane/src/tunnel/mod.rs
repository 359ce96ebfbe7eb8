//! Tunnel epochs and pings: the NAT-survival mechanism (DESIGN.md 4).

mod machine;
pub mod ping_msg;

#[cfg(test)]
mod tests;

pub use machine::{
    Action, EpochSpis, Mode, Role, Settings, State, Tunnel, TunnelStats, PEER_EPOCH_SETTLE,
};
pub use ping_msg::{Kind, PingMsg, PING_LEN};
