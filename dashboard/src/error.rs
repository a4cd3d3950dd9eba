//! The dashboard's one error type.

use std::path::PathBuf;

/// What went wrong serving a dashboard.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// A dashboard file is not valid.
    #[error("dashboard {origin}: {message}")]
    Spec { origin: String, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A request the page should not have sent.
    #[error("{0}")]
    BadRequest(String),
    /// No such dashboard or panel.
    #[error("{0}")]
    NotFound(String),
    /// A panel's query failed or was refused (the engine's message, which
    /// never carries data values).
    #[error("{0}")]
    Query(String),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, DashboardError>;
