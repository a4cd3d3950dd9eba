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
    /// The privacy layer refused an analyst's statement.
    #[error("{message}")]
    Refused {
        /// SQLSTATE: 42501 (a privacy rule) or 0A000 (not available to analysts).
        code: &'static str,
        /// The rule, in a few words.
        rule: &'static str,
        /// What was refused and how to rewrite the query.
        message: String,
    },
    /// The audit log could not be written or read.
    #[error("audit log: {0}")]
    Audit(String),
}

impl From<crate::privacy::Refusal> for EngineError {
    fn from(r: crate::privacy::Refusal) -> Self {
        use crate::privacy::Refusal;
        match r {
            Refusal::Rule { rule, message } => EngineError::Refused {
                code: "42501",
                rule,
                message: format!("{message} [rule: {rule}]"),
            },
            Refusal::Unsupported { rule, message } => EngineError::Refused {
                code: "0A000",
                rule,
                message: format!("{message} [rule: {rule}]"),
            },
            Refusal::Plan(e) => EngineError::DataFusion(e),
        }
    }
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

/// A Parquet file of the store (or of its derived state) that cannot be
/// decoded, found after a query failed reading it.
#[derive(Debug, thiserror::Error)]
#[error(
    "{path}: the Parquet file is damaged and cannot be read ({detail}); {}",
    if *.derived {
        "it is derived state: delete the state folder and it is written again when the store is next opened"
    } else {
        "restore it from the delivery"
    }
)]
pub struct DamagedFile {
    /// The file, relative to the store (or marked as in the state folder).
    pub path: String,
    /// The reader's error.
    pub detail: String,
    /// The file is derived state, not a delivered file.
    pub derived: bool,
}

impl DamagedFile {
    /// The damaged file behind an error, if that is what it is.
    pub fn find(e: &DataFusionError) -> Option<&DamagedFile> {
        match e.find_root() {
            DataFusionError::External(inner) => inner.downcast_ref::<DamagedFile>(),
            _ => None,
        }
    }
}

/// Result type of the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
