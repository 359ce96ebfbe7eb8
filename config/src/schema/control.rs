//! `[control]` (the control socket) and `[metrics]`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::error::with_hint;

/// The Unix control socket that `espritctl` talks to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSocket {
    /// Socket path, default `/run/esprit/ctl.sock`.
    pub path: PathBuf,
    /// Permission bits of the socket, default 0o600; TOML `0o660` or a string `"0660"`.
    #[serde(deserialize_with = "deserialize_mode")]
    pub mode: u32,
    /// Group owning the socket, so its members may use `espritctl`.
    pub group: Option<String>,
}

impl Default for ControlSocket {
    fn default() -> Self {
        Self {
            path: PathBuf::from("/run/esprit/ctl.sock"),
            mode: 0o600,
            group: None,
        }
    }
}

/// `[metrics]`: an HTTP listener for Prometheus-style metrics; absent means none.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// TCP listen address, like `127.0.0.1:9180`.
    pub listen: SocketAddr,
}

struct ModeVisitor;

impl Visitor<'_> for ModeVisitor {
    type Value = u32;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a file mode like 0o660 or \"0660\"")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
        u32::try_from(v).map_err(|_| {
            E::custom(with_hint(
                format!("{v} is not a file mode"),
                "write 0o600 or 0o660",
            ))
        })
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u32, E> {
        let digits = v.strip_prefix("0o").unwrap_or(v);
        u32::from_str_radix(digits, 8).map_err(|_| {
            E::custom(with_hint(
                format!("`{v}` is not an octal file mode"),
                "write 0o660 (a TOML octal integer) or \"0660\"",
            ))
        })
    }
}

fn deserialize_mode<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    d.deserialize_any(ModeVisitor)
}
