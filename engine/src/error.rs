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

/// The audit log's class of an error raised while a result streams.
pub(crate) fn stream_class(e: &DataFusionError) -> &'static str {
    match e.find_root() {
        DataFusionError::ResourcesExhausted(_) => "resources",
        _ if DamagedFile::find(e).is_some() => "damaged-file",
        _ => "execution",
    }
}

impl EngineError {
    /// A short class of the error for the audit log (never its message: it
    /// may hold values), from its type.
    pub fn audit_class(&self) -> String {
        match self {
            EngineError::Catalog(_) => "store".into(),
            EngineError::DataFusion(d) if DamagedFile::find(d).is_some() => "damaged-file".into(),
            EngineError::DataFusion(d) => match d.find_root() {
                DataFusionError::SQL(..) => "syntax".into(),
                DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => "planning".into(),
                DataFusionError::ResourcesExhausted(_) => "resources".into(),
                _ => "execution".into(),
            },
            EngineError::Unsupported(_) => "unsupported".into(),
            EngineError::Refused { rule, .. } => rule.to_string(),
            EngineError::Audit(_) => "audit".into(),
        }
    }

    /// The error's SQLSTATE, from its type (and, for DataFusion's plan
    /// errors, which carry no finer type, from its message).
    pub fn sqlstate(&self) -> &'static str {
        match self {
            EngineError::Unsupported(_) => "0A000",
            EngineError::Refused { code, .. } => code,
            EngineError::Audit(_) => "58030",
            EngineError::Catalog(_) => "58000",
            EngineError::DataFusion(d) if DamagedFile::find(d).is_some() => "XX001",
            EngineError::DataFusion(d) => match d.find_root() {
                DataFusionError::SQL(..) => "42601",
                DataFusionError::NotImplemented(_) => "0A000",
                DataFusionError::SchemaError(s, _) => {
                    let m = s.to_string();
                    if m.contains("No field named") {
                        "42703"
                    } else if m.contains("not found") {
                        "42P01"
                    } else {
                        "42P10"
                    }
                }
                DataFusionError::Plan(m) => {
                    if m.contains("table") && m.contains("not found") {
                        "42P01"
                    } else if m.contains("Invalid function")
                        || m.contains("function") && m.contains("not found")
                        || m.contains("No function matches")
                        || m.contains("does not support")
                    {
                        "42883"
                    } else {
                        "42000"
                    }
                }
                DataFusionError::ResourcesExhausted(_) => "53200",
                DataFusionError::ArrowError(a, _) => match a.as_ref() {
                    datafusion::arrow::error::ArrowError::DivideByZero => "22012",
                    datafusion::arrow::error::ArrowError::CastError(_) => "22P02",
                    datafusion::arrow::error::ArrowError::ComputeError(m)
                        if m.contains("Overflow") =>
                    {
                        "22003"
                    }
                    _ => "XX000",
                },
                DataFusionError::Execution(m) if m.contains("Divide by zero") => "22012",
                DataFusionError::Execution(_) => "22000",
                _ => "XX000",
            },
        }
    }

    /// The message a client is shown: for errors raised while reading data
    /// (SQLSTATE classes 22 and XX), without the values they quote.
    pub fn client_message(&self) -> String {
        let code = self.sqlstate();
        if code.starts_with("22") || code.starts_with("XX") {
            scrub(&self.to_string())
        } else {
            self.to_string()
        }
    }
}

/// Removes quoted values from a message raised while reading data, so that
/// errors never echo what the data holds.
pub fn scrub(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    for c in message.chars() {
        match c {
            '\'' if quoted => {
                quoted = false;
                out.push_str("…'");
            }
            '\'' => {
                quoted = true;
                out.push('\'');
            }
            _ if quoted => {}
            c => out.push(c),
        }
    }
    if quoted {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_values_are_scrubbed() {
        assert_eq!(
            scrub("Cannot cast string 'K92.2' to value of Int64 type"),
            "Cannot cast string '…' to value of Int64 type"
        );
    }
}
