//! The control socket (`/run/esprit/ctl.sock`): the protocol, the server
//! that takes requests, and the client side used by `espritctl`.

pub mod client;
pub mod proto;
pub mod server;

pub use proto::{Reply, Request};
pub use server::{Access, CtlServer, Pending};
