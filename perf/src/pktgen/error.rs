//! What can stop a pktgen run.

/// Errors of pktgen's set-up (the traffic itself only counts).
#[derive(Debug, thiserror::Error)]
pub enum PktgenError {
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("client {name:?}: {message}")]
    Client { name: String, message: String },
    #[error("invalid option: {0}")]
    Option(String),
    #[error("IKE: {0}")]
    Ike(String),
}

impl PktgenError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PktgenError {
        let what = what.into();
        move |source| PktgenError::Io { what, source }
    }
}
