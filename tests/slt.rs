//! SQL behaviour as sqllogictest files under `sql/tests/<store>/`, run on
//! the embedded engine. `TSUNAGU_SLT_COMPLETE=1 cargo test slt` rewrites
//! the expected results from what the engine returns.
//!
//! Files named `postgres*.slt` hold PostgreSQL's own answers (recorded by
//! `scripts/pg-expected`, never completed from the engine): their values are
//! compared as PostgreSQL writes them in text (`t`/`f`, floats as
//! `float8out`, timestamps with a space), numerics up to trailing zeros of
//! their scale, which Tsunagu does not reproduce (a numeric `0` and `0.0000`
//! compare equal; a float must be written exactly as PostgreSQL writes it).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type};
use datafusion::arrow::util::display::ArrayFormatter;
use sqllogictest::{DBOutput, DefaultColumnType};
use tsunagu_engine::{EngineError, Session};

use crate::common::{eunomia, open, repo, synthetic};

struct Db {
    session: Session,
    /// Write values as PostgreSQL does in text.
    postgres_text: bool,
}

/// One value as PostgreSQL writes it in text, where Arrow's display differs.
fn postgres_text(column: &dyn Array, row: usize) -> Option<String> {
    use tsunagu_engine::pg_dialect::{float_text, interval_text};
    Some(match column.data_type() {
        DataType::Boolean => if column.as_boolean().value(row) {
            "t"
        } else {
            "f"
        }
        .into(),
        DataType::Float64 => float_text::float8(column.as_primitive::<Float64Type>().value(row), 1),
        DataType::Float32 => float_text::float4(column.as_primitive::<Float32Type>().value(row), 1),
        DataType::Timestamp(..) => {
            let f = ArrayFormatter::try_new(column, &Default::default()).ok()?;
            f.value(row).to_string().replacen('T', " ", 1)
        }
        DataType::Interval(_) | DataType::Duration(_) => {
            let (months, days, micros) = interval_text::parts(column, row)?;
            interval_text::interval(months, days, micros)
        }
        // Tsunagu's numeric scale is not PostgreSQL's: numerics are written
        // without trailing zeros, and compared so (see `postgres_validator`).
        DataType::Decimal128(..) | DataType::Decimal256(..) => {
            let f = ArrayFormatter::try_new(column, &Default::default()).ok()?;
            without_scale(&f.value(row).to_string()).to_owned()
        }
        _ => return None,
    })
}

/// A number written with a decimal point, without the trailing zeros of its scale.
fn without_scale(text: &str) -> &str {
    let numeric = text.contains('.')
        && text
            .trim_start_matches('-')
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.');
    if numeric {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

/// Rows as PostgreSQL's answers: cell by cell, numerics up to their scale
/// (an expected `201.1000000000000000` is met by a numeric `201.1`, never
/// by a float written `201.10`).
fn postgres_validator(
    normalizer: sqllogictest::Normalizer,
    actual: &[Vec<String>],
    expected: &[String],
) -> bool {
    let expected: Vec<&str> = expected.iter().flat_map(|l| l.split_whitespace()).collect();
    let actual: Vec<String> = actual
        .iter()
        .flat_map(|row| row.iter().map(normalizer))
        .collect();
    let actual: Vec<&str> = actual.iter().flat_map(|c| c.split_whitespace()).collect();
    actual.len() == expected.len()
        && actual
            .iter()
            .zip(&expected)
            .all(|(a, e)| a == e || *a == without_scale(e))
}

fn column_type(t: &DataType) -> DefaultColumnType {
    match t {
        t if t.is_integer() => DefaultColumnType::Integer,
        t if t.is_floating() || matches!(t, DataType::Decimal128(..)) => {
            DefaultColumnType::FloatingPoint
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DefaultColumnType::Text,
        _ => DefaultColumnType::Any,
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for Db {
    type Error = EngineError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, EngineError> {
        let mut statements = self.session.statements(sql)?;
        let mut last = None;
        while let Some(next) = statements.next().await {
            let (prepared, stream) = next?;
            let batches = datafusion::physical_plan::common::collect(stream).await?;
            last = Some((prepared.schema(), batches));
        }
        let Some((schema, batches)) = last else {
            return Ok(DBOutput::StatementComplete(0));
        };
        if schema.fields().is_empty() {
            return Ok(DBOutput::StatementComplete(0));
        }
        let types = schema
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        let mut rows = Vec::new();
        for b in &batches {
            let formatters = b
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &Default::default()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(datafusion::error::DataFusionError::from)?;
            for row in 0..b.num_rows() {
                rows.push(
                    b.columns()
                        .iter()
                        .zip(&formatters)
                        .map(|(c, f)| {
                            if c.is_null(row) {
                                "NULL".to_string()
                            } else {
                                let s = self
                                    .postgres_text
                                    .then(|| postgres_text(c.as_ref(), row))
                                    .flatten()
                                    .unwrap_or_else(|| f.value(row).to_string());
                                if s.is_empty() { "(empty)".into() } else { s }
                            }
                        })
                        .collect(),
                );
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "tsunagu"
    }
}

fn slt_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    files
}

async fn run_all(store: &Path, folder: &str) {
    let engine = std::sync::Arc::new(open(store).await);
    let files = slt_files(&repo().join("sql/tests").join(folder));
    assert!(!files.is_empty(), "no .slt files in sql/tests/{folder}");
    let complete = std::env::var_os("TSUNAGU_SLT_COMPLETE").is_some();
    for file in files {
        let engine = engine.clone();
        let postgres = file
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("postgres"));
        let mut runner = sqllogictest::Runner::new(move || {
            let engine = engine.clone();
            async move {
                Ok(Db {
                    session: engine.session()?,
                    postgres_text: postgres,
                })
            }
        });
        if postgres {
            runner.with_validator(postgres_validator);
        }
        if complete && postgres {
            // PostgreSQL's answers are recorded from PostgreSQL (scripts/pg-expected).
            continue;
        } else if complete {
            runner
                .update_test_file(
                    &file,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::default_column_validator,
                )
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        } else if let Err(e) = runner.run_file_async(&file).await {
            panic!("{}:\n{}", file.display(), e.display(true));
        }
    }
}

#[tokio::test]
async fn slt_eunomia() {
    run_all(&eunomia(), "eunomia").await;
}

#[tokio::test]
async fn slt_synthetic() {
    run_all(synthetic(), "synthetic").await;
}
