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
    /// Planning failed for a table or function the statement names and
    /// the session does not know ([`ErrorKind::UndefinedTable`] or
    /// [`ErrorKind::UndefinedFunction`]); DataFusion's error says which.
    #[error("{}", tidy(.1))]
    Undefined(ErrorKind, #[source] DataFusionError),
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

/// What kind of error it is: the one classification that both the audit
/// log's class and the SQLSTATE a client sees are read from. It is read
/// from the error's type (and, for a planning error naming something that
/// does not exist, from looking the name up: see
/// `session::lookup`), never from message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The SQL text does not parse.
    Syntax,
    /// A table the statement reads does not exist (or is not visible).
    UndefinedTable,
    /// A column the statement names does not exist.
    UndefinedColumn,
    /// A function the statement calls does not exist.
    UndefinedFunction,
    /// A column name matches more than one column.
    AmbiguousColumn,
    /// Two columns of one relation have the same name.
    DuplicateColumn,
    /// Any other error in planning the statement.
    Planning,
    /// Valid SQL that is not run.
    Unsupported,
    /// Refused by a rule: the SQLSTATE and the rule's name.
    Refused(&'static str, &'static str),
    /// The store could not be opened or read.
    Store,
    /// The audit log could not be written or read.
    Audit,
    /// A Parquet file cannot be decoded.
    DamagedFile,
    /// A memory limit was reached.
    Resources,
    /// Division by zero in the data.
    DivisionByZero,
    /// Text in the data that does not convert to the type asked for.
    InvalidText,
    /// A number out of its type's range.
    Overflow,
    /// Any other error raised while reading the data.
    Data,
    /// An error of the engine itself.
    Internal,
}

/// True when a known function was called with arguments none of its
/// signatures accepts: PostgreSQL's "function f(integer, text) does not
/// exist" (42883), which DataFusion reports as a planning error.
fn no_matching_signature(message: &str) -> bool {
    message.contains("No function matches the given name and argument types")
        || message.contains("failed to match any signature")
        || message.starts_with("Failed to coerce arguments to satisfy a call to")
}

/// True for Arrow's cast errors of a value beyond the target type ("Can't
/// cast value 3000000000 to type Int32", "... Overflowing on ..."):
/// PostgreSQL's 22003 "integer out of range".
fn cast_out_of_range(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.starts_with("can't cast value")
        || m.contains("overflow")
        || m.contains("out of range")
        || m.contains("too large to store")
        || m.contains("too small to store")
}

/// The message of the Arrow cast error at the root of `e`, if it is one
/// (a decimal beyond its precision is an invalid argument to Arrow).
fn cast_message(e: &DataFusionError) -> Option<&str> {
    use datafusion::arrow::error::ArrowError;
    match e.find_root() {
        DataFusionError::ArrowError(a, _) => match a.as_ref() {
            ArrowError::CastError(m) => Some(m),
            ArrowError::InvalidArgumentError(m) if cast_out_of_range(m) => Some(m),
            _ => None,
        },
        _ => None,
    }
}

/// PostgreSQL's "integer out of range" (no value in it) at the root of `e`,
/// as integer arithmetic raises it (`pg_dialect::arithmetic`).
fn pg_out_of_range(e: &DataFusionError) -> Option<String> {
    let DataFusionError::ArrowError(a, _) = e.find_root() else {
        return None;
    };
    let datafusion::arrow::error::ArrowError::ArithmeticOverflow(m) = a.as_ref() else {
        return None;
    };
    [
        "smallint out of range",
        "integer out of range",
        "bigint out of range",
    ]
    .contains(&m.as_str())
    .then(|| m.clone())
}

impl ErrorKind {
    /// The kind of a DataFusion error.
    pub fn of(e: &DataFusionError) -> ErrorKind {
        use datafusion::arrow::error::ArrowError;
        use datafusion::common::SchemaError;
        if DamagedFile::find(e).is_some() {
            return ErrorKind::DamagedFile;
        }
        match e.find_root() {
            DataFusionError::SQL(..) => ErrorKind::Syntax,
            DataFusionError::NotImplemented(_) => ErrorKind::Unsupported,
            DataFusionError::SchemaError(s, _) => match s.as_ref() {
                SchemaError::FieldNotFound { .. } => ErrorKind::UndefinedColumn,
                SchemaError::AmbiguousReference { .. } => ErrorKind::AmbiguousColumn,
                SchemaError::DuplicateQualifiedField { .. }
                | SchemaError::DuplicateUnqualifiedField { .. } => ErrorKind::DuplicateColumn,
            },
            DataFusionError::Plan(m) if no_matching_signature(m) => ErrorKind::UndefinedFunction,
            DataFusionError::Plan(_) => ErrorKind::Planning,
            DataFusionError::ResourcesExhausted(_) => ErrorKind::Resources,
            DataFusionError::ArrowError(a, _) => match a.as_ref() {
                ArrowError::DivideByZero => ErrorKind::DivisionByZero,
                ArrowError::CastError(m) | ArrowError::InvalidArgumentError(m)
                    if cast_out_of_range(m) =>
                {
                    ErrorKind::Overflow
                }
                ArrowError::CastError(_) | ArrowError::ParseError(_) => ErrorKind::InvalidText,
                ArrowError::ArithmeticOverflow(_) => ErrorKind::Overflow,
                _ => ErrorKind::Internal,
            },
            DataFusionError::Execution(_) => ErrorKind::Data,
            _ => ErrorKind::Internal,
        }
    }

    /// The SQLSTATE a PostgreSQL client is sent.
    pub fn sqlstate(self) -> &'static str {
        match self {
            ErrorKind::Syntax => "42601",
            ErrorKind::UndefinedTable => "42P01",
            ErrorKind::UndefinedColumn => "42703",
            ErrorKind::UndefinedFunction => "42883",
            ErrorKind::AmbiguousColumn => "42702",
            ErrorKind::DuplicateColumn => "42701",
            ErrorKind::Planning => "42000",
            ErrorKind::Unsupported => "0A000",
            ErrorKind::Refused(code, _) => code,
            ErrorKind::Store => "58000",
            ErrorKind::Audit => "58030",
            ErrorKind::DamagedFile => "XX001",
            ErrorKind::Resources => "53200",
            ErrorKind::DivisionByZero => "22012",
            ErrorKind::InvalidText => "22P02",
            ErrorKind::Overflow => "22003",
            ErrorKind::Data => "22000",
            ErrorKind::Internal => "XX000",
        }
    }

    /// The audit log's class: a few words, never the message (it may hold values).
    pub fn audit_class(self) -> &'static str {
        match self {
            ErrorKind::Syntax => "syntax",
            ErrorKind::UndefinedTable
            | ErrorKind::UndefinedColumn
            | ErrorKind::UndefinedFunction
            | ErrorKind::AmbiguousColumn
            | ErrorKind::DuplicateColumn
            | ErrorKind::Planning => "planning",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Refused(_, rule) => rule,
            ErrorKind::Store => "store",
            ErrorKind::Audit => "audit",
            ErrorKind::DamagedFile => "damaged-file",
            ErrorKind::Resources => "resources",
            ErrorKind::DivisionByZero
            | ErrorKind::InvalidText
            | ErrorKind::Overflow
            | ErrorKind::Data
            | ErrorKind::Internal => "execution",
        }
    }

    /// Raised while reading the data: its message may quote values.
    fn reads_data(self) -> bool {
        let code = self.sqlstate();
        code.starts_with("22") || code.starts_with("XX")
    }
}

impl EngineError {
    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::Catalog(_) => ErrorKind::Store,
            EngineError::DataFusion(d) => ErrorKind::of(d),
            EngineError::Undefined(what, _) => *what,
            EngineError::Unsupported(_) => ErrorKind::Unsupported,
            EngineError::Refused { code, rule, .. } => ErrorKind::Refused(code, rule),
            EngineError::Audit(_) => ErrorKind::Audit,
        }
    }

    /// The audit log's class of the error (see [`ErrorKind::audit_class`]).
    pub fn audit_class(&self) -> String {
        self.kind().audit_class().to_owned()
    }

    /// The error's SQLSTATE (see [`ErrorKind::sqlstate`]).
    pub fn sqlstate(&self) -> &'static str {
        self.kind().sqlstate()
    }

    /// The message a client is shown: for errors raised while reading data
    /// (SQLSTATE classes 22 and XX), without the values they quote. The one
    /// place values are taken out of errors.
    pub fn client_message(&self) -> String {
        let cast = match self {
            EngineError::DataFusion(d) => cast_message(d),
            _ => None,
        };
        match (self.kind(), cast) {
            // Arrow writes the value unquoted ("Can't cast value 3000000000
            // to type Int32").
            (ErrorKind::Overflow, Some(m)) => {
                let integer = [
                    ("Int16", "smallint"),
                    ("Int32", "integer"),
                    ("Int64", "bigint"),
                ]
                .into_iter()
                .find(|(t, _)| m.ends_with(&format!("to type {t}")));
                return match integer {
                    Some((_, pg)) => format!("{pg} out of range"),
                    None => "value out of range for the type it is cast to".to_owned(),
                };
            }
            // Arrow names the operands ("Overflow happened on: 123 * 10");
            // integer arithmetic says PostgreSQL's "bigint out of range".
            (ErrorKind::Overflow, None) => {
                return match self {
                    EngineError::DataFusion(d) => pg_out_of_range(d),
                    _ => None,
                }
                .unwrap_or_else(|| "value out of range: arithmetic overflow".to_owned());
            }
            // Only these of Arrow's cast errors quote the value they quote.
            (ErrorKind::InvalidText, Some(m))
                if !(m.starts_with("Cannot cast string '")
                    || m.starts_with("Cannot cast value '")) =>
            {
                return "invalid input: a value does not convert to the type asked for".to_owned();
            }
            _ => {}
        }
        if self.kind().reads_data() {
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

    /// PostgreSQL answers 42883 ("function round(integer, unknown) does not
    /// exist") for arguments no signature accepts, 42000-class otherwise.
    #[tokio::test]
    async fn arguments_no_signature_accepts_are_an_undefined_function() {
        let ctx = datafusion::prelude::SessionContext::new();
        for (sql, want) in [
            ("SELECT round(1, 'x')", "42883"),
            ("SELECT sqrt(1, 2, 3)", "42883"),
            ("SELECT 1 HAVING 1", "42000"),
        ] {
            let e = match ctx.sql(sql).await {
                Ok(df) => df.collect().await.expect_err(sql),
                Err(e) => e,
            };
            assert_eq!(ErrorKind::of(&e).sqlstate(), want, "{sql}: {e}");
        }
    }

    #[tokio::test]
    async fn overflows_name_no_operand() {
        let ctx = datafusion::prelude::SessionContext::new();
        let sql = "SELECT CAST(98765432109876543210987654321098765432 AS DECIMAL(38, 0)) * 10";
        let e = match ctx.sql(sql).await {
            Ok(df) => df.collect().await.expect_err(sql),
            Err(e) => e,
        };
        let e = EngineError::DataFusion(e);
        assert_eq!(e.sqlstate(), "22003");
        assert!(
            !e.client_message().contains("98765"),
            "{}",
            e.client_message()
        );
    }

    /// PostgreSQL: `SELECT CAST(3000000000 AS integer)` is 22003 "integer
    /// out of range"; the value is not echoed.
    #[tokio::test]
    async fn casts_out_of_range_name_no_value() {
        let ctx = datafusion::prelude::SessionContext::new();
        for sql in [
            "SELECT CAST(x AS INT) FROM (VALUES (CAST(3000000077 AS BIGINT))) t(x)",
            "SELECT CAST(x AS DECIMAL(5, 2)) FROM (VALUES (CAST(3000000077 AS BIGINT))) t(x)",
        ] {
            let e = match ctx.sql(sql).await {
                Ok(df) => df.collect().await.expect_err(sql),
                Err(e) => e,
            };
            let e = EngineError::DataFusion(e);
            assert_eq!(e.sqlstate(), "22003", "{sql}: {e}");
            assert!(
                !e.client_message().contains("3000000077"),
                "{}",
                e.client_message()
            );
        }
    }

    #[test]
    fn data_values_are_scrubbed() {
        assert_eq!(
            scrub("Cannot cast string 'K92.2' to value of Int64 type"),
            "Cannot cast string '…' to value of Int64 type"
        );
    }
}
