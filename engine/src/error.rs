//! The engine's one error type.

use datafusion::error::DataFusionError;

/// Errors from opening a store or running SQL.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store could not be opened.
    #[error(transparent)]
    Catalog(#[from] tsunagu_catalog::CatalogError),
    /// Planning or execution failed.
    #[error("{}", tidy(.0))]
    DataFusion(#[from] DataFusionError),
    /// The statement is valid SQL but not something Tsunagu runs.
    #[error("{0}")]
    Unsupported(String),
}

impl From<datafusion::arrow::error::ArrowError> for EngineError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        EngineError::DataFusion(e.into())
    }
}

/// DataFusion's message without its nesting prefixes.
fn tidy(e: &DataFusionError) -> String {
    let root = e.find_root();
    match root {
        DataFusionError::Context(_, inner) => tidy(inner),
        _ => root.message().trim().to_string(),
    }
}

/// Result type of the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
