//! The shape a delivered table is shown with: CDM columns in CDM order and
//! types, the engine's `person_id` and the delivered `person_key`, extras as
//! delivered.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};

use crate::cdm::{self, CdmType};
use crate::error::{CatalogError, Result};

/// Where a shown column's values come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnSource {
    /// The engine's dense linked-person number.
    PersonId,
    /// The delivered person key, as text.
    PersonKey,
    /// A column of the files, cast to the shown type when they differ.
    File(String),
    /// A CDM column the files lack: NULL of its CDM type.
    Null,
}

/// A column as the engine shows it.
#[derive(Debug, Clone)]
pub struct ShownColumn {
    pub name: String,
    pub data_type: DataType,
    pub source: ColumnSource,
}

/// A delivered table, checked and ready to be shown.
#[derive(Debug, Clone)]
pub struct TableDef {
    /// SQL schema: the source name, or `vocab`.
    pub schema: String,
    /// SQL table name.
    pub name: String,
    /// The Parquet files to read (delivered, or converted from CSV in the state folder).
    pub files: Vec<PathBuf>,
    /// The schema of the files, merged across them.
    pub file_schema: SchemaRef,
    /// The person-key column, when the table is person-level.
    pub key: Option<String>,
    /// The columns shown in SQL, in order.
    pub columns: Vec<ShownColumn>,
    /// Rows in the files.
    pub rows: u64,
    /// The person-layout copy in the state folder (see `layout`), when written.
    pub person_files: Vec<PathBuf>,
    /// The person ranges the copy is split into, when written.
    pub person_ranges: Option<crate::layout::PersonRanges>,
}

impl TableDef {
    /// True when the table holds rows about persons.
    pub fn is_person_level(&self) -> bool {
        self.key.is_some()
    }

    /// A provider reading the table's delivered Parquet files with their
    /// merged schema.
    pub fn file_provider(&self) -> Result<Arc<dyn TableProvider>> {
        parquet_provider(&self.files, self.file_schema.clone())
    }

    /// The Arrow schema shown in SQL.
    pub fn shown_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, c.data_type.clone(), true))
                .collect::<Vec<_>>(),
        ))
    }
}

/// A provider reading Parquet `files` with `schema`.
pub(crate) fn parquet_provider(
    files: &[std::path::PathBuf],
    schema: datafusion::arrow::datatypes::SchemaRef,
) -> Result<Arc<dyn TableProvider>> {
    let urls = files
        .iter()
        .map(|p| ListingTableUrl::parse(p.to_string_lossy()))
        .collect::<datafusion::error::Result<Vec<_>>>()?;
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// The type a delivered column is shown with, outside the CDM.
pub fn normalize(t: &DataType) -> Option<DataType> {
    Some(match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
        DataType::Dictionary(_, v) => return normalize(v),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => DataType::Binary,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => DataType::Int64,
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 => DataType::Int64,
        DataType::UInt64 => DataType::Decimal128(20, 0),
        DataType::Float16 | DataType::Float32 | DataType::Float64 => DataType::Float64,
        DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
        DataType::Date64 => DataType::Date32,
        DataType::Null => DataType::Utf8,
        other @ (DataType::Boolean
        | DataType::Date32
        | DataType::Decimal128(..)
        | DataType::Decimal256(..)
        | DataType::List(_)
        | DataType::LargeList(_)
        | DataType::Struct(_)
        | DataType::Time32(_)
        | DataType::Time64(_)
        | DataType::Interval(_)) => other.clone(),
        _ => return None,
    })
}

fn is_integer(t: &DataType) -> bool {
    t.is_integer() || matches!(t, DataType::Decimal128(_, 0) | DataType::Decimal256(_, 0))
}

pub(crate) fn is_text(t: &DataType) -> bool {
    matches!(normalize(t), Some(DataType::Utf8))
}

/// Whether a delivered column of type `from` can be shown as `to` without guessing.
fn fits(from: &DataType, to: CdmType) -> bool {
    match to {
        CdmType::Integer => is_integer(from) || matches!(from, DataType::Null),
        CdmType::Float => from.is_numeric() || matches!(from, DataType::Null),
        CdmType::Date | CdmType::Datetime => matches!(
            from,
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) | DataType::Null
        ),
        CdmType::Text => is_text(from) || is_integer(from) || matches!(from, DataType::Null),
    }
}

/// Describes a type for messages.
fn describe(t: &DataType) -> String {
    match t {
        t if is_text(t) => "TEXT".into(),
        t if t.is_integer() => "INTEGER".into(),
        t if t.is_floating() => "DOUBLE".into(),
        other => other.to_string().to_uppercase(),
    }
}

/// Checks a table's file schema and works out the columns it is shown with.
///
/// `key` is the source's person-key column (`None` for vocabulary tables);
/// `shown_path` names the table's file in messages.
pub fn shape(
    name: &str,
    file_schema: &Schema,
    key: Option<&str>,
    shown_path: &Path,
) -> Result<(Vec<ShownColumn>, Option<String>)> {
    let cdm_table = cdm::table(name);
    let has = |c: &str| file_schema.field_with_name(c).ok();
    let key_field = key.and_then(has);
    if let (Some(key), None) = (key, key_field)
        && cdm_table.is_some_and(|t| t.is_person_level())
    {
        return Err(CatalogError::malformed(
            shown_path,
            Some(key),
            None,
            format!("the person-level table {name} lacks its person-key column {key}"),
        ));
    }
    if let Some(f) = key_field
        && !(is_text(f.data_type()) || f.data_type().is_integer())
    {
        return Err(CatalogError::malformed(
            shown_path,
            Some(f.name()),
            None,
            format!(
                "the person-key column has type {}, expected text or integer",
                describe(f.data_type())
            ),
        ));
    }
    let person_level = key_field.is_some();
    let key = key_field.map(|f| f.name().clone());
    let engine_owned = |c: &str| person_level && (c == "person_id" || c == "person_key");
    let mut columns = Vec::new();
    let person_columns = |columns: &mut Vec<ShownColumn>| {
        columns.push(ShownColumn {
            name: "person_id".into(),
            data_type: DataType::Int64,
            source: ColumnSource::PersonId,
        });
        columns.push(ShownColumn {
            name: "person_key".into(),
            data_type: DataType::Utf8,
            source: ColumnSource::PersonKey,
        });
    };
    if let Some(t) = cdm_table {
        for (col, ty) in &t.columns {
            if *col == "person_id" && person_level {
                person_columns(&mut columns);
                continue;
            }
            let source = match has(col) {
                Some(f) if Some(f.name()) != key.as_ref() => {
                    if !fits(f.data_type(), *ty) {
                        return Err(CatalogError::malformed(
                            shown_path,
                            Some(col),
                            None,
                            format!(
                                "the column has type {}, expected {} (OMOP CDM)",
                                describe(f.data_type()),
                                ty.sql_name()
                            ),
                        ));
                    }
                    ColumnSource::File(col.to_string())
                }
                _ => ColumnSource::Null,
            };
            columns.push(ShownColumn {
                name: col.to_string(),
                data_type: ty.arrow(),
                source,
            });
        }
    }
    for f in file_schema.fields() {
        let n = f.name();
        if Some(n) == key.as_ref() {
            if cdm_table.is_none_or(|t| !t.is_person_level()) {
                person_columns(&mut columns);
            }
            continue;
        }
        if engine_owned(n) || cdm_table.is_some_and(|t| t.column(n).is_some()) {
            continue;
        }
        let Some(data_type) = normalize(f.data_type()) else {
            return Err(CatalogError::malformed(
                shown_path,
                Some(n),
                None,
                format!("the column type {} is not supported", f.data_type()),
            ));
        };
        columns.push(ShownColumn {
            name: n.clone(),
            data_type,
            source: ColumnSource::File(n.clone()),
        });
    }
    Ok((columns, key))
}

/// Merges the schemas of a table's files; columns missing from some files are NULL there.
pub fn merge_schemas(schemas: &[(PathBuf, SchemaRef)]) -> Result<SchemaRef> {
    let mut fields: Vec<Field> = Vec::new();
    for (path, schema) in schemas {
        for f in schema.fields() {
            match fields.iter_mut().find(|g| g.name() == f.name()) {
                None => fields.push(f.as_ref().clone().with_nullable(true)),
                Some(g) if g.data_type() == f.data_type() => {}
                Some(g) => {
                    let (a, b) = (g.data_type(), f.data_type());
                    let merged = if a.is_integer() && b.is_integer() {
                        DataType::Int64
                    } else if a.is_numeric() && b.is_numeric() {
                        DataType::Float64
                    } else if is_text(a) && is_text(b) {
                        DataType::Utf8
                    } else {
                        return Err(CatalogError::malformed(
                            path,
                            Some(f.name()),
                            None,
                            format!(
                                "the column has type {} here but {} in another file of the table",
                                describe(b),
                                describe(a)
                            ),
                        ));
                    };
                    *g = Field::new(f.name(), merged, true);
                }
            }
        }
    }
    Ok(Arc::new(Schema::new(fields)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(cols: &[(&str, DataType)]) -> Schema {
        Schema::new(
            cols.iter()
                .map(|(n, t)| Field::new(*n, t.clone(), true))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn cdm_tables_get_cdm_columns_and_person_columns() {
        let s = schema(&[
            ("person_key", DataType::Utf8),
            ("death_date", DataType::Date32),
            ("extra", DataType::Int32),
        ]);
        let (cols, key) = shape("death", &s, Some("person_key"), Path::new("x")).unwrap();
        assert_eq!(key.as_deref(), Some("person_key"));
        let names: Vec<_> = cols.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            &names[..4],
            &["person_id", "person_key", "death_date", "death_datetime"]
        );
        assert_eq!(names.last(), Some(&"extra"));
        assert_eq!(cols[3].source, ColumnSource::Null);
    }

    #[test]
    fn wrong_types_and_missing_keys_are_refused() {
        let s = schema(&[
            ("person_key", DataType::Utf8),
            ("death_date", DataType::Utf8),
        ]);
        let e = shape("death", &s, Some("person_key"), Path::new("d.parquet")).unwrap_err();
        assert!(e.to_string().contains("column death_date"), "{e}");
        let s = schema(&[("death_date", DataType::Date32)]);
        let e = shape("death", &s, Some("person_key"), Path::new("d.parquet")).unwrap_err();
        assert!(e.to_string().contains("lacks its person-key column"), "{e}");
    }

    #[test]
    fn non_cdm_tables_are_person_level_by_their_key() {
        let s = schema(&[
            ("care_level", DataType::Int64),
            ("person_key", DataType::Utf8),
        ]);
        let (cols, key) =
            shape("care_certification", &s, Some("person_key"), Path::new("x")).unwrap();
        assert!(key.is_some());
        let names: Vec<_> = cols.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["care_level", "person_id", "person_key"]);
        let (_, key) = shape("lookup", &s, Some("patient"), Path::new("x")).unwrap();
        assert!(key.is_none());
    }
}
