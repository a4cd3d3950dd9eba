//! The catalog functions clients call: `version()`, `current_setting`,
//! `current_schema(s)`, `format_type`, `pg_get_userbyid`, `has_*_privilege`,
//! `obj_description`, `pg_table_is_visible` and their kin.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;

use super::Catalog;
use crate::commands::Settings;

/// What a catalog function answers.
enum Answer {
    /// The same value for every row.
    Const(ScalarValue),
    /// A text looked up by the oid in the first argument (NULL when unknown).
    ByOid(HashMap<i64, String>),
    /// A setting, by the name in the first argument.
    Setting(Arc<Settings>),
    /// The schemas of the search path.
    Schemas(Arc<Settings>, bool),
    /// The type name of a type oid.
    TypeName,
    /// An identifier quoted when it needs to be.
    QuoteIdent,
}

struct CatalogFn {
    name: &'static str,
    answer: Answer,
    ret: DataType,
    signature: Signature,
}

impl std::fmt::Debug for CatalogFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}
impl PartialEq for CatalogFn {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}
impl Eq for CatalogFn {}
impl Hash for CatalogFn {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

fn oids(a: &ArrayRef) -> Result<ArrayRef> {
    Ok(cast(a, &DataType::Int64)
        .unwrap_or_else(|_| datafusion::arrow::array::new_null_array(&DataType::Int64, a.len())))
}

impl ScalarUDFImpl for CatalogFn {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.ret.clone())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let first = || -> Result<ArrayRef> {
            match args.args.first() {
                Some(v) => v.to_array(rows),
                None => Ok(datafusion::arrow::array::new_null_array(
                    &DataType::Int64,
                    rows,
                )),
            }
        };
        match &self.answer {
            Answer::Const(v) => Ok(ColumnarValue::Scalar(v.clone())),
            Answer::ByOid(map) => {
                let a = oids(&first()?)?;
                let a = a.as_primitive::<Int64Type>();
                let out: StringArray = (0..a.len())
                    .map(|i| {
                        a.is_valid(i)
                            .then(|| map.get(&a.value(i)).cloned())
                            .flatten()
                    })
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
            Answer::TypeName => {
                let a = oids(&first()?)?;
                let a = a.as_primitive::<Int64Type>();
                let out: StringArray = (0..a.len())
                    .map(|i| {
                        a.is_valid(i)
                            .then(|| super::type_name(a.value(i)))
                            .flatten()
                    })
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
            Answer::QuoteIdent => {
                let a = cast(&first()?, &DataType::Utf8)?;
                let a = a.as_string::<i32>();
                let out: StringArray = (0..a.len())
                    .map(|i| {
                        a.is_valid(i).then(|| {
                            let v = a.value(i);
                            let plain = v
                                .chars()
                                .next()
                                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                                && v.chars().all(|c| {
                                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
                                });
                            if plain {
                                v.to_owned()
                            } else {
                                format!("\"{}\"", v.replace('"', "\"\""))
                            }
                        })
                    })
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
            Answer::Setting(settings) => {
                let a = cast(&first()?, &DataType::Utf8)?;
                let a = a.as_string::<i32>();
                let out: StringArray = (0..a.len())
                    .map(|i| {
                        a.is_valid(i)
                            .then(|| settings.get(&a.value(i).to_ascii_lowercase()))
                            .flatten()
                    })
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
            Answer::Schemas(settings, list) => {
                let path = settings
                    .get("search_path")
                    .unwrap_or_else(|| "public".into());
                let schemas: Vec<String> = path
                    .split(',')
                    .map(|s| s.trim().trim_matches('"').to_owned())
                    .filter(|s| !s.is_empty() && s != "$user")
                    .collect();
                if *list {
                    let mut all = vec!["pg_catalog".to_owned()];
                    all.extend(schemas);
                    let values: Vec<ScalarValue> = all
                        .into_iter()
                        .map(|s| ScalarValue::Utf8(Some(s)))
                        .collect();
                    Ok(ColumnarValue::Scalar(ScalarValue::List(
                        ScalarValue::new_list_nullable(&values, &DataType::Utf8),
                    )))
                } else {
                    Ok(ColumnarValue::Scalar(ScalarValue::Utf8(
                        schemas.into_iter().next(),
                    )))
                }
            }
        }
    }
}

fn any_args() -> Signature {
    Signature::one_of(
        vec![TypeSignature::Nullary, TypeSignature::VariadicAny],
        Volatility::Stable,
    )
}

/// Registers the catalog functions of one session.
pub(super) fn register(ctx: &SessionContext, cat: &Catalog, settings: Arc<Settings>) {
    let text = |s: &str| ScalarValue::Utf8(Some(s.to_owned()));
    let version = format!(
        "PostgreSQL {} (Tsunagu {}) on x86_64-pc-linux-gnu, a DataFusion engine for linked real-world data",
        crate::commands::SERVER_VERSION,
        env!("CARGO_PKG_VERSION")
    );
    let by_oid = |pairs: Vec<(i64, String)>| pairs.into_iter().collect::<HashMap<_, _>>();
    let descriptions = by_oid(
        cat.functions
            .iter()
            .filter_map(|f| f.description.clone().map(|d| (f.oid, d)))
            .collect(),
    );
    let results = by_oid(
        cat.functions
            .iter()
            .map(|f| (f.oid, f.result.clone()))
            .collect(),
    );
    let arguments = by_oid(
        cat.functions
            .iter()
            .map(|f| (f.oid, f.arguments.join(", ")))
            .collect(),
    );
    let relnames = by_oid(
        cat.relations
            .iter()
            .map(|r| (r.oid, r.name.clone()))
            .collect(),
    );
    let list = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    let fns: Vec<(&'static str, Answer, DataType)> = vec![
        ("version", Answer::Const(text(&version)), DataType::Utf8),
        (
            "current_setting",
            Answer::Setting(settings.clone()),
            DataType::Utf8,
        ),
        (
            "current_schema",
            Answer::Schemas(settings.clone(), false),
            DataType::Utf8,
        ),
        ("current_schemas", Answer::Schemas(settings, true), list),
        (
            "current_database",
            Answer::Const(text("tsunagu")),
            DataType::Utf8,
        ),
        (
            "current_catalog",
            Answer::Const(text("tsunagu")),
            DataType::Utf8,
        ),
        ("format_type", Answer::TypeName, DataType::Utf8),
        ("quote_ident", Answer::QuoteIdent, DataType::Utf8),
        (
            "pg_get_userbyid",
            Answer::Const(text("tsunagu")),
            DataType::Utf8,
        ),
        (
            "pg_encoding_to_char",
            Answer::Const(text("UTF8")),
            DataType::Utf8,
        ),
        (
            "pg_table_is_visible",
            Answer::Const(ScalarValue::Boolean(Some(true))),
            DataType::Boolean,
        ),
        (
            "pg_type_is_visible",
            Answer::Const(ScalarValue::Boolean(Some(true))),
            DataType::Boolean,
        ),
        (
            "pg_function_is_visible",
            Answer::Const(ScalarValue::Boolean(Some(true))),
            DataType::Boolean,
        ),
        (
            "has_table_privilege",
            Answer::Const(ScalarValue::Boolean(Some(true))),
            DataType::Boolean,
        ),
        (
            "has_schema_privilege",
            Answer::Const(ScalarValue::Boolean(Some(true))),
            DataType::Boolean,
        ),
        (
            "has_database_privilege",
            Answer::Const(ScalarValue::Boolean(Some(true))),
            DataType::Boolean,
        ),
        (
            "has_column_privilege",
            Answer::Const(ScalarValue::Boolean(Some(true))),
            DataType::Boolean,
        ),
        (
            "has_any_column_privilege",
            Answer::Const(ScalarValue::Boolean(Some(true))),
            DataType::Boolean,
        ),
        (
            "pg_is_in_recovery",
            Answer::Const(ScalarValue::Boolean(Some(false))),
            DataType::Boolean,
        ),
        (
            "pg_relation_is_publishable",
            Answer::Const(ScalarValue::Boolean(Some(false))),
            DataType::Boolean,
        ),
        (
            "pg_get_expr",
            Answer::Const(ScalarValue::Utf8(None)),
            DataType::Utf8,
        ),
        (
            "pg_get_indexdef",
            Answer::Const(ScalarValue::Utf8(None)),
            DataType::Utf8,
        ),
        (
            "pg_get_constraintdef",
            Answer::Const(ScalarValue::Utf8(None)),
            DataType::Utf8,
        ),
        (
            "pg_get_viewdef",
            Answer::Const(ScalarValue::Utf8(None)),
            DataType::Utf8,
        ),
        (
            "pg_get_triggerdef",
            Answer::Const(ScalarValue::Utf8(None)),
            DataType::Utf8,
        ),
        (
            "pg_get_function_sqlbody",
            Answer::Const(ScalarValue::Utf8(None)),
            DataType::Utf8,
        ),
        (
            "pg_get_partkeydef",
            Answer::Const(ScalarValue::Utf8(None)),
            DataType::Utf8,
        ),
        (
            "pg_get_ruledef",
            Answer::Const(ScalarValue::Utf8(None)),
            DataType::Utf8,
        ),
        (
            "pg_get_serial_sequence",
            Answer::Const(ScalarValue::Utf8(None)),
            DataType::Utf8,
        ),
        (
            "pg_tablespace_location",
            Answer::Const(ScalarValue::Utf8(None)),
            DataType::Utf8,
        ),
        (
            "pg_get_statisticsobjdef_columns",
            Answer::Const(ScalarValue::Utf8(None)),
            DataType::Utf8,
        ),
        (
            "col_description",
            Answer::Const(ScalarValue::Utf8(None)),
            DataType::Utf8,
        ),
        (
            "shobj_description",
            Answer::Const(ScalarValue::Utf8(None)),
            DataType::Utf8,
        ),
        (
            "obj_description",
            Answer::ByOid(descriptions),
            DataType::Utf8,
        ),
        (
            "pg_get_function_result",
            Answer::ByOid(results),
            DataType::Utf8,
        ),
        (
            "pg_get_function_arguments",
            Answer::ByOid(arguments.clone()),
            DataType::Utf8,
        ),
        (
            "pg_get_function_identity_arguments",
            Answer::ByOid(arguments),
            DataType::Utf8,
        ),
        (
            "tsunagu_regclass_name",
            Answer::ByOid(relnames),
            DataType::Utf8,
        ),
        (
            "pg_backend_pid",
            Answer::Const(ScalarValue::Int32(Some(std::process::id() as i32))),
            DataType::Int32,
        ),
        (
            "inet_server_addr",
            Answer::Const(ScalarValue::Utf8(None)),
            DataType::Utf8,
        ),
        (
            "inet_client_addr",
            Answer::Const(ScalarValue::Utf8(None)),
            DataType::Utf8,
        ),
        (
            "pg_postmaster_start_time",
            Answer::Const(ScalarValue::Utf8(None)),
            DataType::Utf8,
        ),
        (
            "txid_current",
            Answer::Const(ScalarValue::Int64(Some(1))),
            DataType::Int64,
        ),
        (
            "pg_relation_size",
            Answer::Const(ScalarValue::Int64(None)),
            DataType::Int64,
        ),
        (
            "pg_total_relation_size",
            Answer::Const(ScalarValue::Int64(None)),
            DataType::Int64,
        ),
        (
            "pg_table_size",
            Answer::Const(ScalarValue::Int64(None)),
            DataType::Int64,
        ),
        (
            "pg_indexes_size",
            Answer::Const(ScalarValue::Int64(None)),
            DataType::Int64,
        ),
        (
            "pg_size_pretty",
            Answer::Const(ScalarValue::Utf8(None)),
            DataType::Utf8,
        ),
    ];
    for (name, answer, ret) in fns {
        ctx.register_udf(ScalarUDF::new_from_impl(CatalogFn {
            name,
            answer,
            ret,
            signature: any_args(),
        }));
    }
    // `'name'::regclass`: the oid of a table by its (optionally qualified) name.
    let mut by_name: HashMap<String, i64> = HashMap::new();
    for r in &cat.relations {
        let ns = cat
            .namespaces
            .iter()
            .find(|n| n.oid == r.namespace)
            .map(|n| n.name.clone())
            .unwrap_or_default();
        by_name.insert(format!("{ns}.{}", r.name), r.oid);
        by_name.entry(r.name.clone()).or_insert(r.oid);
    }
    for name in ["tsunagu_regclass", "to_regclass"] {
        ctx.register_udf(ScalarUDF::new_from_impl(RegClass {
            name,
            by_name: by_name.clone(),
            signature: any_args(),
        }));
    }
    let types: HashMap<String, i64> = super::tables::type_oids()
        .into_iter()
        .flat_map(|(name, oid)| {
            let long = super::type_name(oid).unwrap_or_else(|| name.clone());
            [(name, oid), (long, oid)]
        })
        .collect();
    ctx.register_udf(ScalarUDF::new_from_impl(RegClass {
        name: "to_regtype",
        by_name: types,
        signature: any_args(),
    }));
}

/// `tsunagu_regclass(name)`: a table's oid, as `'name'::regclass` gives it.
#[derive(Debug)]
struct RegClass {
    name: &'static str,
    by_name: HashMap<String, i64>,
    signature: Signature,
}
impl PartialEq for RegClass {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}
impl Eq for RegClass {}
impl Hash for RegClass {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}
impl ScalarUDFImpl for RegClass {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let a = args.args[0].to_array(args.number_rows)?;
        if a.data_type().is_integer() {
            return Ok(ColumnarValue::Array(cast(&a, &DataType::Int64)?));
        }
        let a = cast(&a, &DataType::Utf8)?;
        let a = a.as_string::<i32>();
        let out: datafusion::arrow::array::Int64Array = (0..a.len())
            .map(|i| {
                a.is_valid(i)
                    .then(|| {
                        let n = a.value(i).trim_matches('"').to_ascii_lowercase();
                        self.by_name.get(&n).copied().or_else(|| n.parse().ok())
                    })
                    .flatten()
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}
