//! The client side of the control socket, for `espritctl` and tests.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::proto::{Reply, Request};

/// Why a request got no reply; each maps to an `espritctl` exit code.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("espritd is not running (no control socket at {0})")]
    NotRunning(String),
    #[error("not permitted to use {0}: run as root or as a member of the control group")]
    NotPermitted(String),
    #[error("control socket {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the daemon's reply is not valid: {0}")]
    Protocol(String),
}

/// Sends one request and waits for its reply.
pub fn request(socket: &Path, req: &Request, timeout: Duration) -> Result<Reply, ClientError> {
    let path = socket.display().to_string();
    let mut s = UnixStream::connect(socket).map_err(|e| match e.kind() {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => ClientError::NotRunning(path.clone()),
        ErrorKind::PermissionDenied => ClientError::NotPermitted(path.clone()),
        _ => ClientError::Io {
            path: path.clone(),
            source: e,
        },
    })?;
    let io = |e| ClientError::Io {
        path: path.clone(),
        source: e,
    };
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    let line = serde_json::to_string(req).map_err(|e| ClientError::Protocol(e.to_string()))?;
    writeln!(s, "{line}").map_err(|e| ClientError::Io {
        path: path.clone(),
        source: e,
    })?;
    let mut answer = String::new();
    BufReader::new(s)
        .read_line(&mut answer)
        .map_err(|e| ClientError::Io {
            path: path.clone(),
            source: e,
        })?;
    let reply: Reply = serde_json::from_str(answer.trim())
        .map_err(|e| ClientError::Protocol(format!("{e}: {answer:?}")))?;
    if let Some(err) = reply.error.as_deref() {
        if err.contains("may not use the control socket") {
            return Err(ClientError::NotPermitted(path));
        }
    }
    Ok(reply)
}
