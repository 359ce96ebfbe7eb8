//! The control protocol: one JSON request per line, one JSON reply per line.
//!
//! ```text
//! {"cmd":"status"}
//! {"cmd":"tunnels","state":"up"}
//! {"cmd":"terminate","name":"branch-a"}
//! {"cmd":"log-level","filter":"debug"}
//! ```
//! Every reply is `{"ok":true,"data":...}` or `{"ok":false,"error":"..."}`.

use serde::{Deserialize, Serialize};

/// Longest request line accepted.
pub const MAX_REQUEST: usize = 64 * 1024;

/// What a client may ask.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Version, uptime, workers, tunnel and SA counts.
    // (Empty struct variants, not unit ones: only those reject unknown fields.)
    Status {},
    /// Tunnels, optionally only one peer's or those in one state.
    Tunnels {
        #[serde(default)]
        peer: Option<String>,
        #[serde(default)]
        state: Option<String>,
    },
    /// Every SA in the data plane with its counters.
    Sas {},
    /// Counters per worker and per drop reason.
    Stats {},
    /// Re-read the config file and apply the difference.
    Reload {},
    /// Bring a tunnel (manual) or peer (IKE initiator) up.
    Initiate { name: String },
    /// Take a tunnel or peer down.
    Terminate { name: String },
    /// Rekey a peer's CHILD SAs now.
    Rekey { name: String },
    /// Replace the log filter (tracing env-filter syntax).
    LogLevel { filter: String },
}

/// The answer to one request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

impl Reply {
    pub fn ok(data: serde_json::Value) -> Reply {
        Reply {
            ok: true,
            error: None,
            data,
        }
    }

    pub fn error(msg: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            error: Some(msg.into()),
            data: serde_json::Value::Null,
        }
    }

    /// The reply as one line of JSON (no newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|_| r#"{"ok":false,"error":"reply not serializable"}"#.into())
    }
}

/// Parses one request line, with an error a person can act on.
pub fn parse_request(line: &str) -> Result<Request, String> {
    serde_json::from_str(line.trim()).map_err(|e| {
        format!("bad request: {e} (expected one JSON object per line, like {{\"cmd\":\"status\"}})")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_errors_explain() {
        assert_eq!(parse_request(r#"{"cmd":"status"}"#), Ok(Request::Status {}));
        assert_eq!(
            parse_request(r#"{"cmd":"tunnels","state":"up"}"#),
            Ok(Request::Tunnels {
                peer: None,
                state: Some("up".into())
            })
        );
        assert_eq!(
            parse_request(r#"{"cmd":"log-level","filter":"debug"}"#),
            Ok(Request::LogLevel {
                filter: "debug".into()
            })
        );
        for bad in [
            "",
            "nonsense",
            r#"{"cmd":"format-disk"}"#,
            r#"{"cmd":"terminate"}"#,
            r#"{"cmd":"status","x":1}"#,
            "[1,2]",
        ] {
            let e = parse_request(bad).unwrap_err();
            assert!(e.starts_with("bad request"), "{bad}: {e}");
        }
        let line = Reply::error("no such tunnel").to_line();
        assert_eq!(line, r#"{"ok":false,"error":"no such tunnel"}"#);
    }
}
