//! The catalog's one error type.

use std::path::PathBuf;

/// Where in a delivered file a problem was found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// The file, relative to the store when possible.
    pub file: PathBuf,
    /// The column, when the problem is in one column.
    pub column: Option<String>,
    /// The line of a CSV file (the header is line 1), when known.
    pub line: Option<u64>,
    /// The row of a Parquet file (the first row is row 1), when known.
    pub row: Option<u64>,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        if let Some(row) = self.row {
            write!(f, ", row {row}")?;
        }
        if let Some(column) = &self.column {
            write!(f, ", column {column}")?;
        }
        Ok(())
    }
}

/// Errors raised while opening a store or maintaining its derived state.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// `rwd.toml` is missing, does not parse, or names something that is not there.
    #[error("manifest {path}: {message}")]
    Manifest { path: PathBuf, message: String },
    /// A delivered file cannot be used as it is: the store is refused.
    #[error("malformed store: {location}: {problem}")]
    Malformed { location: Location, problem: String },
    /// Reading or writing the state folder failed.
    #[error("state folder {path}: {source}")]
    State {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An I/O error on a delivered file.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing a store on object storage failed.
    #[error("object storage {url}: {message}")]
    ObjectStore { url: String, message: String },
    /// An error from the query engine while deriving state.
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
}

impl CatalogError {
    /// A malformed-store error at a file (and optionally a column and a line).
    pub fn malformed(
        file: impl Into<PathBuf>,
        column: Option<&str>,
        line: Option<u64>,
        problem: impl Into<String>,
    ) -> Self {
        CatalogError::Malformed {
            location: Location {
                file: file.into(),
                column: column.map(str::to_owned),
                line,
                row: None,
            },
            problem: problem.into(),
        }
    }

    /// A malformed-store error at a row of a Parquet file.
    pub fn malformed_row(
        file: impl Into<PathBuf>,
        column: Option<&str>,
        row: u64,
        problem: impl Into<String>,
    ) -> Self {
        CatalogError::Malformed {
            location: Location {
                file: file.into(),
                column: column.map(str::to_owned),
                line: None,
                row: Some(row),
            },
            problem: problem.into(),
        }
    }

    /// A manifest error.
    pub fn manifest(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        CatalogError::Manifest {
            path: path.into(),
            message: message.into(),
        }
    }

    /// An error writing or reading the state folder.
    pub fn state(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CatalogError::State {
            path: path.into(),
            source,
        }
    }

    /// An error reading or writing `url` on object storage.
    pub fn object_store(url: impl Into<String>, message: impl std::fmt::Display) -> Self {
        CatalogError::ObjectStore {
            url: url.into(),
            message: message.to_string(),
        }
    }

    /// An error reading a delivered file.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CatalogError::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<datafusion::arrow::error::ArrowError> for CatalogError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        CatalogError::DataFusion(e.into())
    }
}

/// Result type of the catalog.
pub type Result<T, E = CatalogError> = std::result::Result<T, E>;
