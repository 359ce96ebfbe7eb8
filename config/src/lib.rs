//! esprit configuration: the TOML schema, its validation and the diff between two versions.
//!
//! [`load`] reads `/etc/esprit/esprit.toml`-style files; every key is documented in
//! `deploy/examples/full.toml`. Errors name the file, line, column and key of every problem,
//! with a hint:
//!
//! ```text
//! esprit.toml:14:7: manual_tunnel[1].inbound.spi: inbound SPI 0x2001001 has the same slot (low 24 bits) as 0x1001001 of manual_tunnel[0]
//!   hint: the data plane indexes inbound SAs by spi & 0xFFFFFF; change the low 24 bits of one of them
//! ```
//!
//! The daemon loads a file, and on reload loads the new one and applies only the difference:
//!
//! ```
//! let running = config::parse("", "esprit.toml")?;
//! let error = config::parse("[dataplane]\nburst = 0\n", "esprit.toml").unwrap_err();
//! assert!(error.to_string().starts_with("esprit.toml:2:9: dataplane.burst: burst 0 is not in 1..=256"));
//! let new = config::parse("[dataplane]\nworkers = 2\n", "esprit.toml")?;
//! assert_eq!(running.diff(&new).restart_required, vec!["dataplane"]);
//! # Ok::<(), config::ConfigError>(())
//! ```

mod diff;
pub mod duration;
mod error;
mod keypath;
mod locate;
mod resolve;
pub mod schema;
mod secret;
mod validate;

use std::path::Path;

pub use diff::{ConfigDiff, NamedChanges};
pub use error::{ConfigError, Diagnostic};
pub use ipnet::IpNet;
pub use schema::control::{ControlSocket, Metrics};
pub use schema::dataplane::{Dataplane, Inside, InsideKind, PortKind};
pub use schema::gateway::Gateway;
pub use schema::identity::{Identity, IdentityPattern};
pub use schema::ike::{IkeDefaults, Retransmit};
pub use schema::manual_tunnel::{Encap, ManualSa, ManualTunnel};
pub use schema::outside_port::{Dpdk, OutsidePort, OutsideRoute, XdpMode};
pub use schema::peer::{Liveness, LivenessMode, Peer, Role};
pub use schema::proposal::{Algorithm, DhGroup, EspProposal, IkeProposal, Prf};
pub use schema::Config;
pub use secret::Secret;
pub use validate::{MAX_REPLAY_WINDOW, SPI_SLOT_MASK};

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        origin: origin.clone(),
        source,
    })?;
    parse(&text, &origin)
}

/// Parses and validates config text; `origin` names it in errors, and relative `psk_file`
/// paths are taken from `origin`'s folder.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let raw: schema::ConfigToml =
        toml::from_str(text).map_err(|e| error::locate_toml_error(text, origin, &e))?;
    let mut problems = validate::check(&raw);
    let base = Path::new(origin).parent().unwrap_or(Path::new(""));
    let (config, more) = resolve::resolve(raw, base);
    problems.extend(more);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(error::locate_problems(text, origin, problems))
    }
}
