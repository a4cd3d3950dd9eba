//! Engine errors as Postgres errors with SQLSTATE codes.

use datafusion::error::DataFusionError;
use pgwire::error::{ErrorInfo, PgWireError};
use tsunagu_engine::EngineError;

/// The SQLSTATE of an engine error.
pub fn sqlstate(e: &EngineError) -> &'static str {
    match e {
        EngineError::Unsupported(_) => "0A000",
        EngineError::Refused { code, .. } => code,
        EngineError::Audit(_) => "58030",
        EngineError::Catalog(_) => "58000",
        EngineError::DataFusion(d) if tsunagu_engine::DamagedFile::find(d).is_some() => "XX001",
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
                datafusion::arrow::error::ArrowError::ComputeError(m) if m.contains("Overflow") => {
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

/// A wire error for an engine error.
pub fn to_pg(e: EngineError) -> PgWireError {
    let code = sqlstate(&e);
    let message = if code.starts_with("22") || code.starts_with("XX") {
        scrub(&e.to_string())
    } else {
        e.to_string()
    };
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message,
    )))
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

/// A wire error for a DataFusion error raised while streaming.
pub fn from_datafusion(e: DataFusionError) -> PgWireError {
    to_pg(EngineError::DataFusion(e))
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
