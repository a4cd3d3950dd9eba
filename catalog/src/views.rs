//! The logical plans behind every table the engine shows: a scan of the
//! Parquet files, projected to the shown columns with `person_id` looked up.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, ScalarValue, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, ScalarUDF, cast, lit};

use crate::error::Result;
use crate::layout;
use crate::linkage::{PersonIdUdf, PersonIndex};
use crate::source_codes::CodedTable;
use crate::tables::{ColumnSource, TableDef};

/// The catalog name under which the raw file scans are planned.
pub const FILES_CATALOG: &str = "tsunagu_files";

fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// The plan of a shown table: file scan, then one expression per shown column.
///
/// `codes`: how the table's source codes fill its concept columns, when its
/// source declares them (see `source_codes`).
pub fn table_plan(
    def: &TableDef,
    index: &PersonIndex,
    codes: Option<&CodedTable>,
) -> Result<LogicalPlan> {
    match (&def.key, index.source(&def.schema)) {
        (Some(_), Some(keys)) => match &def.person_ranges {
            Some(ranges) if !def.person_files.is_empty() => copy_plan(def, keys, ranges, codes),
            _ => delivered_plan(def, index, codes),
        },
        _ => delivered_plan(def, index, codes),
    }
}

/// A delivered column as shown: the codes' concept where they fill it.
fn coded_column(
    def: &TableDef,
    c: &crate::tables::ShownColumn,
    codes: Option<&CodedTable>,
) -> Result<Expr> {
    let delivered = shown_column(def, &c.source, &c.data_type)?;
    Ok(match codes {
        Some(t) => t.shown(&c.name, delivered.clone()).unwrap_or(delivered),
        None => delivered,
    })
}

/// The plan of a person-level table read from its person-layout copy.
fn copy_plan(
    def: &TableDef,
    keys: &Arc<crate::linkage::SourceKeys>,
    ranges: &layout::PersonRanges,
    codes: Option<&CodedTable>,
) -> Result<LogicalPlan> {
    let provider = layout::copy_provider(def, &def.person_files, ranges)?;
    let scan = LogicalPlanBuilder::scan(
        TableReference::full(FILES_CATALOG, def.schema.as_str(), def.name.as_str()),
        provider_as_source(provider),
        None,
    )?;
    let key_at = Arc::new(ScalarUDF::new_from_impl(layout::KeyUdf::key_at(
        &def.schema,
        keys.clone(),
    )));
    let exprs = def
        .columns
        .iter()
        .map(|c| {
            let e = match &c.source {
                ColumnSource::PersonId => column(layout::PERSON_ID),
                ColumnSource::PersonKey => Expr::ScalarFunction(ScalarFunction::new_udf(
                    key_at.clone(),
                    vec![column(layout::KEY_INDEX)],
                )),
                _ => coded_column(def, c, codes)?,
            };
            Ok(e.alias(&c.name))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(scan.project(exprs)?.build()?)
}

/// A delivered column (or NULL) as a shown column.
fn shown_column(def: &TableDef, source: &ColumnSource, shown: &DataType) -> Result<Expr> {
    Ok(match source {
        ColumnSource::File(name) => {
            let file_type = def.file_schema.field_with_name(name)?.data_type();
            if file_type == shown {
                column(name)
            } else {
                cast(column(name), shown.clone())
            }
        }
        _ => lit(ScalarValue::try_from(shown)?),
    })
}

/// The plan of a table read from its delivered files, keys looked up per row.
fn delivered_plan(
    def: &TableDef,
    index: &PersonIndex,
    codes: Option<&CodedTable>,
) -> Result<LogicalPlan> {
    let provider = def.file_provider()?;
    let scan = LogicalPlanBuilder::scan(
        TableReference::full(FILES_CATALOG, def.schema.as_str(), def.name.as_str()),
        provider_as_source(provider),
        None,
    )?;
    let lookup = match (&def.key, index.source(&def.schema)) {
        (Some(_), Some(keys)) => Some(Arc::new(ScalarUDF::new_from_impl(PersonIdUdf::new(
            &def.schema,
            keys.clone(),
        )))),
        _ => None,
    };
    let key_text = || {
        cast(
            column(def.key.as_deref().unwrap_or_default()),
            DataType::Utf8,
        )
    };
    let exprs = def
        .columns
        .iter()
        .map(|c| {
            let e = match &c.source {
                ColumnSource::PersonId => match &lookup {
                    Some(udf) => {
                        Expr::ScalarFunction(ScalarFunction::new_udf(udf.clone(), vec![key_text()]))
                    }
                    None => lit(ScalarValue::Int64(None)),
                },
                ColumnSource::PersonKey => key_text(),
                _ => coded_column(def, c, codes)?,
            };
            Ok(e.alias(&c.name))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(scan.project(exprs)?.build()?)
}

/// The plan of `linked.<table>`: the union by column name of one table across
/// sources, with a `source` column first; NULL where a source lacks a column.
pub fn linked_plan(parts: &[(&TableDef, &LogicalPlan)]) -> Result<LogicalPlan> {
    let mut names: Vec<String> = Vec::new();
    let mut types: HashMap<String, DataType> = HashMap::new();
    for (def, _) in parts {
        for c in &def.columns {
            match types.get(&c.name) {
                None => {
                    names.push(c.name.clone());
                    types.insert(c.name.clone(), c.data_type.clone());
                }
                Some(t) if t == &c.data_type => {}
                Some(t) => {
                    let common = if t.is_numeric() && c.data_type.is_numeric() {
                        DataType::Float64
                    } else {
                        DataType::Utf8
                    };
                    types.insert(c.name.clone(), common);
                }
            }
        }
    }
    let mut builder: Option<LogicalPlanBuilder> = None;
    for (def, plan) in parts {
        let mut exprs = vec![lit(def.schema.as_str()).alias("source")];
        for name in &names {
            let t = &types[name];
            let e = match def.columns.iter().find(|c| &c.name == name) {
                Some(c) if &c.data_type == t => column(name),
                Some(_) => cast(column(name), t.clone()),
                None => lit(ScalarValue::try_from(t)?),
            };
            exprs.push(e.alias(name));
        }
        let branch = LogicalPlanBuilder::from((*plan).clone())
            .project(exprs)?
            .build()?;
        builder = Some(match builder {
            None => LogicalPlanBuilder::from(branch),
            Some(b) => b.union(branch)?,
        });
    }
    Ok(builder.expect("at least two parts").build()?)
}
