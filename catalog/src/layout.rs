//! The person layout: a copy of every person-level table, written once into
//! the state folder, with the linked `person_id` stored as a column.
//!
//! Delivered tables carry long pseudonymous keys (often 64 hex characters);
//! mapping them to `person_id` at query time means decoding every key and a
//! hash lookup per row. The copy replaces the key by two integers: the
//! person number (`__tsunagu_person_id`) and the key's position among the
//! source's sorted keys (`__tsunagu_key_index`, from which `person_key` is
//! read back only when a query asks for it). Row order is the delivered
//! order, so deliveries grouped by person stay grouped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::common::config::TableParquetOptions;
use datafusion::common::{Column, ScalarValue, exec_err};
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, cast,
};
use datafusion::prelude::SessionContext;

use crate::error::{CatalogError, Result};
use crate::linkage::SourceKeys;
use crate::tables::{ColumnSource, TableDef};

/// The stored person number of a row in the copy.
pub const PERSON_ID: &str = "__tsunagu_person_id";
/// The stored key position of a row in the copy.
pub const KEY_INDEX: &str = "__tsunagu_key_index";

/// Where the copy of a table lives inside a derived state folder.
pub fn copy_dir(derived: &Path, def: &TableDef) -> PathBuf {
    derived.join("layout").join(&def.schema).join(&def.name)
}

/// The copy's files, in path order: the first delivery's, then each later
/// delivery's folder (none when the table has no copy).
pub fn copy_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut files = Vec::new();
    let mut later = Vec::new();
    for e in entries {
        let path = e.map_err(|e| CatalogError::state(dir, e))?.path();
        if path.is_dir() {
            later.push(path);
        } else if path.extension().is_some_and(|x| x == "parquet") {
            files.push(path);
        }
    }
    files.sort();
    // delivery-2 before delivery-10.
    later.sort_by_key(|p| {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        let n = name
            .as_deref()
            .and_then(|n| n.strip_prefix("delivery-"))
            .and_then(|n| n.parse::<u64>().ok());
        (n, p.clone())
    });
    for sub in later {
        files.extend(copy_files(&sub)?);
    }
    Ok(files)
}

/// True when the copy in `dir` has the columns (names and types) the table
/// is read with now.
pub fn same_columns(def: &TableDef, dir: &Path) -> Result<bool> {
    let Some(first) = copy_files(dir)?.into_iter().next() else {
        return Ok(false);
    };
    let (written, _) = crate::files::parquet_schema(&first, &first)?;
    let wanted = copy_schema(def);
    Ok(written.fields().len() == wanted.fields().len()
        && written
            .fields()
            .iter()
            .zip(wanted.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type()))
}

/// True when the copy keeps the delivered key column (a shown column reads it).
fn keeps_key(def: &TableDef) -> bool {
    def.key.as_ref().is_some_and(|k| {
        def.columns
            .iter()
            .any(|c| c.source == ColumnSource::File(k.clone()))
    })
}

/// The schema the copy is read with: the delivered columns (the key only
/// when shown as itself), then the person number and key position.
pub fn copy_schema(def: &TableDef) -> SchemaRef {
    let keep = keeps_key(def);
    let mut fields: Vec<Field> = def
        .file_schema
        .fields()
        .iter()
        .filter(|f| keep || Some(f.name()) != def.key.as_ref())
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(PERSON_ID, DataType::Int64, true));
    fields.push(Field::new(KEY_INDEX, DataType::Int64, true));
    Arc::new(Schema::new(fields))
}

/// Writes the copy of a person-level table into `dir` (which must not exist).
pub async fn write_copy(def: &TableDef, keys: Arc<SourceKeys>, dir: &Path) -> Result<Vec<PathBuf>> {
    let Some(key) = &def.key else {
        return Ok(Vec::new());
    };
    std::fs::create_dir_all(dir).map_err(|e| CatalogError::state(dir, e))?;
    let ctx = SessionContext::new();
    let position = ScalarUDF::new_from_impl(KeyUdf::new(Op::Position, &def.schema, keys.clone()));
    let person = ScalarUDF::new_from_impl(KeyUdf::new(Op::PersonAt, &def.schema, keys));
    let column = |n: &str| Expr::Column(Column::new_unqualified(n));
    let keep = keeps_key(def);
    let names: Vec<&String> = def
        .file_schema
        .fields()
        .iter()
        .map(|f| f.name())
        .filter(|n| keep || *n != key)
        .collect();
    let mut inner: Vec<Expr> = names.iter().map(|n| column(n)).collect();
    inner.push(
        position
            .call(vec![cast(column(key), DataType::Utf8)])
            .alias(KEY_INDEX),
    );
    let mut outer: Vec<Expr> = names.iter().map(|n| column(n)).collect();
    outer.push(person.call(vec![column(KEY_INDEX)]).alias(PERSON_ID));
    outer.push(column(KEY_INDEX));
    let mut options = TableParquetOptions::default();
    options.global.compression = Some("lz4_raw".into());
    let target = format!("{}/", dir.to_string_lossy());
    ctx.read_table(def.file_provider()?)?
        .select(inner)?
        .select(outer)?
        .write_parquet(&target, DataFrameWriteOptions::new(), Some(options))
        .await?;
    copy_files(dir)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    /// key text -> position among the sorted keys
    Position,
    /// position -> person number
    PersonAt,
    /// position -> key text
    KeyAt,
}

/// The lookups of the person layout, for one source: used inside the views
/// the engine shows and to write the copy, never called by name in SQL.
#[derive(Debug)]
pub struct KeyUdf {
    op: Op,
    source: String,
    keys: Arc<SourceKeys>,
    signature: Signature,
}

impl KeyUdf {
    fn new(op: Op, source: &str, keys: Arc<SourceKeys>) -> Self {
        let arg = if op == Op::Position {
            DataType::Utf8
        } else {
            DataType::Int64
        };
        KeyUdf {
            op,
            source: source.to_owned(),
            keys,
            signature: Signature::exact(vec![arg], Volatility::Immutable),
        }
    }

    /// `person_key` of a copy row, read back from its key position.
    pub fn key_at(source: &str, keys: Arc<SourceKeys>) -> Self {
        Self::new(Op::KeyAt, source, keys)
    }
}

impl PartialEq for KeyUdf {
    fn eq(&self, other: &Self) -> bool {
        self.op == other.op && self.source == other.source && Arc::ptr_eq(&self.keys, &other.keys)
    }
}
impl Eq for KeyUdf {}
impl std::hash::Hash for KeyUdf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.op.hash(state);
        self.source.hash(state);
    }
}

impl ScalarUDFImpl for KeyUdf {
    fn name(&self) -> &str {
        match self.op {
            Op::Position => "tsunagu_key_position",
            Op::PersonAt => "tsunagu_person_at",
            Op::KeyAt => "tsunagu_person_key_at",
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(if self.op == Op::KeyAt {
            DataType::Utf8
        } else {
            DataType::Int64
        })
    }
    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let array = match &args.args[0] {
            ColumnarValue::Array(a) => a.clone(),
            ColumnarValue::Scalar(s) => s.to_array_of_size(1)?,
        };
        let out: Arc<dyn Array> = match self.op {
            Op::Position => {
                let s = array.as_string::<i32>();
                // Deliveries are usually grouped by person: reuse the last answer.
                let mut last: Option<(&str, Option<u32>)> = None;
                let v: Int64Array = s
                    .iter()
                    .map(|k| {
                        let k = k?;
                        let p = match last {
                            Some((l, p)) if l == k => p,
                            _ => self.keys.position_of(k),
                        };
                        last = Some((k, p));
                        p.map(i64::from)
                    })
                    .collect();
                Arc::new(v)
            }
            Op::PersonAt => {
                let p = array.as_primitive::<Int64Type>();
                let v: Int64Array = p
                    .iter()
                    .map(|p| self.keys.id_at(usize::try_from(p?).ok()?).map(i64::from))
                    .collect();
                Arc::new(v)
            }
            Op::KeyAt => {
                let p = array.as_primitive::<Int64Type>();
                let v: StringArray = p
                    .iter()
                    .map(|p| self.keys.key_at(usize::try_from(p?).ok()?))
                    .collect();
                Arc::new(v)
            }
        };
        match &args.args[0] {
            ColumnarValue::Array(_) => Ok(ColumnarValue::Array(out)),
            ColumnarValue::Scalar(_) if out.len() == 1 => {
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
            }
            ColumnarValue::Scalar(_) => exec_err!("{}: unexpected result", self.name()),
        }
    }
}
