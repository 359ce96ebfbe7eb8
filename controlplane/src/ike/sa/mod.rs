//! The IKEv2 state machines, sans-IO (quinn-style): an [`IkeEndpoint`] is fed
//! `handle_datagram(now, local, remote, bytes)` and `handle_timeout(now)`,
//! and drained with `poll_transmit()`, `poll_event()` and `next_timeout()`.
//!
//! One endpoint holds every IKE SA of the process, initiated (`connect`) or
//! accepted (`accept`, optionally `set_peer_policy`), keyed by the SPI it
//! chose. Commands: `rekey_child_sa`, `rekey_ike_sa`, `delete_child_sa`,
//! `delete_ike_sa`, `check_liveness`. When to rekey or probe is the
//! caller's decision (the tunnel/epoch machine's). Inbound ESP SPIs come
//! from the caller's [`SpiAllocator`].
//!
//! Files: `ike_sa` (one SA's state), `transport` (sending, retransmission,
//! reply cache), `dispatch` (receiving), `init`/`init_responder`
//! (IKE_SA_INIT), `auth` (IKE_AUTH), `child` (CHILD SAs, CREATE_CHILD_SA),
//! `rekey_ike`, `informational` (DELETE, liveness), `proposal`, `narrow`
//! (TS), `pool` (CP addresses).

mod auth;
mod child;
mod collision;
mod dispatch;
mod endpoint;
mod event;
mod ike_sa;
mod informational;
mod init;
mod init_responder;
mod io;
mod narrow;
mod policy;
mod pool;
mod proposal;
mod rekey_ike;
mod spi;
mod status;
mod transport;

pub use endpoint::{EndpointStats, IkeEndpoint, DEFAULT_COOKIE_THRESHOLD};
pub use event::{ChildSa, Event, IkeSaEnd, IkeSaId, Transmit};
pub use narrow::narrow;
pub use policy::{PeerPolicy, Policy, PoolName, Retransmit};
pub use pool::AddressPool;
pub use proposal::{EspSuite, IkeSuite};
pub use spi::{SequentialSpis, SpiAllocator};
pub use status::{IkeSaState, IkeSaStatus};
