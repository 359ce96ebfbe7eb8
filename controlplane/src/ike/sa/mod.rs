//! The IKEv2 state machines, sans-IO (quinn-style): an [`IkeEndpoint`] is fed
//! `handle_datagram(now, local, remote, bytes)` and `handle_timeout(now)`,
//! and drained with `poll_transmit()`, `poll_event()` and `next_timeout()`.

mod auth;
mod child;
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
mod transport;

pub use endpoint::{EndpointStats, IkeEndpoint};
pub use event::{ChildSa, Event, IkeSaEnd, IkeSaId, Transmit};
pub use narrow::narrow;
pub use policy::{PeerPolicy, Policy, Retransmit};
pub use pool::AddressPool;
pub use proposal::{EspSuite, IkeSuite};
pub use spi::{SequentialSpis, SpiAllocator};
