//! The gateway's IKE side: the driver that runs the sans-IO IKE endpoint
//! on real sockets and installs what it negotiates into the data plane.

mod child_install;
mod driver;
mod epochs;
mod in_process;
mod own_addresses;
mod policy;
mod spi_slots;

pub use child_install::{prefixes, TunnelBook};
pub use driver::{DriverStats, IkeDriver};
pub use epochs::Epochs;
pub use in_process::InProcessGateway;
pub use own_addresses::OwnAddresses;
pub use policy::{
    address_pool, address_pool6, identification, leased_prefix, leased_prefix6, leased_prefixes,
    policy, route_pools,
};
pub use spi_slots::SpiSlots;
