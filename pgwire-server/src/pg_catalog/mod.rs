//! PostgreSQL's system catalogs as clients query them: `pg_catalog` tables
//! built for each session from what it shows (schemas, tables, columns,
//! types, the RWD functions with their descriptions, roles), the catalog
//! functions psql, drivers and BI tools call, and a rewrite of the
//! PostgreSQL-only syntax in their queries (`OPERATOR(pg_catalog.~)`,
//! `COLLATE`, `::regclass`, `pg_catalog.` function prefixes, `ARRAY(subquery)`).
//!
//! Hand-written: `datafusion-pg-catalog` targets an older DataFusion, and
//! depending on it would bring a second copy of DataFusion and Arrow.

mod functions;
mod rewrite;
mod tables;

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::prelude::SessionContext;
use pgwire::api::Type;
use tsunagu_engine::Role;

pub use rewrite::rewrite;

use crate::commands::Settings;
use crate::encode::pg_type;

/// A schema as `pg_namespace` shows it.
struct Namespace {
    oid: i64,
    name: String,
}

/// A table as `pg_class` shows it.
struct Relation {
    oid: i64,
    name: String,
    namespace: i64,
    /// `r` for tables, `v` for views.
    kind: &'static str,
    /// (name, type, nullable)
    columns: Vec<(String, Type, bool)>,
}

/// A function as `pg_proc` shows it.
struct Function {
    oid: i64,
    name: String,
    namespace: i64,
    kind: &'static str,
    arguments: Vec<String>,
    result: String,
    description: Option<String>,
}

/// What the catalog of one session holds.
pub struct Catalog {
    namespaces: Vec<Namespace>,
    relations: Vec<Relation>,
    functions: Vec<Function>,
    users: Vec<(String, Role)>,
    settings: Vec<(String, String)>,
}

/// Result types of RWD functions, for `\df`.
fn result_of(name: &str, kind: &str) -> &'static str {
    match (name, kind) {
        ("episodes", _) => "episode[]",
        ("episode_number", _) => "bigint",
        ("in_window" | "rb_contains" | "is_a", _) => "boolean",
        ("overlap_days" | "window_days" | "rb_cardinality", _) => "bigint",
        ("rb_to_array", _) => "bigint[]",
        (n, _) if n.starts_with("rb_") || n == "cohort_bitmap" => "bytea",
        ("descendants" | "ancestors", _) => "TABLE(concept_id bigint, levels bigint)",
        ("related", _) => "TABLE(concept_id bigint)",
        ("cohort", _) => "TABLE(person_id bigint, cohort_start_date date, cohort_end_date date)",
        _ => "",
    }
}

impl Catalog {
    /// Gathers what a session shows.
    async fn gather(
        ctx: &SessionContext,
        users: Vec<(String, Role)>,
        settings: Vec<(String, String)>,
    ) -> Result<Catalog> {
        let mut cat = Catalog {
            namespaces: vec![
                Namespace {
                    oid: tables::PG_CATALOG_OID,
                    name: "pg_catalog".into(),
                },
                Namespace {
                    oid: tables::PUBLIC_OID,
                    name: "public".into(),
                },
            ],
            relations: Vec::new(),
            functions: Vec::new(),
            users,
            settings,
        };
        let Some(catalog) = ctx.catalog(tsunagu_engine::CATALOG) else {
            return Ok(cat);
        };
        let mut schemas = catalog.schema_names();
        schemas.sort();
        for name in &schemas {
            if cat.namespaces.iter().all(|n| &n.name != name) {
                let oid = if name == "information_schema" {
                    13000
                } else {
                    16385 + cat.namespaces.len() as i64
                };
                cat.namespaces.push(Namespace {
                    oid,
                    name: name.clone(),
                });
            }
        }
        for name in &schemas {
            if name == "pg_catalog" {
                continue;
            }
            let Some(schema) = catalog.schema(name) else {
                continue;
            };
            let namespace = cat
                .namespaces
                .iter()
                .find(|n| &n.name == name)
                .map(|n| n.oid)
                .unwrap_or(tables::PUBLIC_OID);
            let mut names = schema.table_names();
            names.sort();
            for table in names {
                let Ok(Some(provider)) = schema.table(&table).await else {
                    continue;
                };
                let columns = provider
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| (f.name().clone(), pg_type(f.data_type()), f.is_nullable()))
                    .collect();
                cat.relations.push(Relation {
                    oid: 17000 + cat.relations.len() as i64,
                    name: table,
                    namespace,
                    kind: if name == "information_schema" {
                        "v"
                    } else {
                        "r"
                    },
                    columns,
                });
            }
        }
        for (name, kind, doc) in tsunagu_engine::functions() {
            let arguments = doc
                .arguments
                .as_ref()
                .map(|a| a.iter().map(|(n, _)| n.clone()).collect())
                .unwrap_or_default();
            cat.functions.push(Function {
                oid: 30000 + cat.functions.len() as i64,
                result: result_of(&name, kind).into(),
                name,
                namespace: tables::PUBLIC_OID,
                kind,
                arguments,
                description: Some(doc.description.clone()),
            });
        }
        let state = ctx.state();
        let mut builtin: Vec<(String, &'static str)> = Vec::new();
        builtin.extend(
            state
                .scalar_functions()
                .keys()
                .map(|k| (k.clone(), "scalar")),
        );
        builtin.extend(
            state
                .aggregate_functions()
                .keys()
                .map(|k| (k.clone(), "aggregate")),
        );
        builtin.extend(
            state
                .window_functions()
                .keys()
                .map(|k| (k.clone(), "window")),
        );
        builtin.sort();
        for (name, kind) in builtin {
            if cat.functions.iter().any(|f| f.name == name) {
                continue;
            }
            cat.functions.push(Function {
                oid: 30000 + cat.functions.len() as i64,
                name,
                namespace: tables::PG_CATALOG_OID,
                kind,
                arguments: vec![],
                result: String::new(),
                description: None,
            });
        }
        Ok(cat)
    }
}

/// Registers `pg_catalog` and the catalog functions on a session's context.
pub async fn register(
    ctx: &SessionContext,
    users: Vec<(String, Role)>,
    settings: Arc<Settings>,
) -> Result<()> {
    let cat = Catalog::gather(ctx, users, settings.all()).await?;
    let schema = tables::build(&cat)?;
    if let Some(catalog) = ctx.catalog(tsunagu_engine::CATALOG) {
        catalog.register_schema("pg_catalog", schema)?;
    }
    functions::register(ctx, &cat, settings);
    Ok(())
}

/// The type name of a PostgreSQL type oid.
fn type_name(oid: i64) -> Option<String> {
    let t = Type::from_oid(u32::try_from(oid).ok()?)?;
    Some(match t {
        Type::INT8 => "bigint".into(),
        Type::INT4 => "integer".into(),
        Type::INT2 => "smallint".into(),
        Type::FLOAT8 => "double precision".into(),
        Type::FLOAT4 => "real".into(),
        Type::BOOL => "boolean".into(),
        Type::VARCHAR => "character varying".into(),
        Type::BPCHAR => "character".into(),
        Type::TIMESTAMP => "timestamp without time zone".into(),
        Type::TIMESTAMPTZ => "timestamp with time zone".into(),
        Type::TIME => "time without time zone".into(),
        Type::INT8_ARRAY => "bigint[]".into(),
        Type::INT4_ARRAY => "integer[]".into(),
        Type::TEXT_ARRAY => "text[]".into(),
        Type::FLOAT8_ARRAY => "double precision[]".into(),
        Type::BOOL_ARRAY => "boolean[]".into(),
        Type::DATE_ARRAY => "date[]".into(),
        other => other.name().to_owned(),
    })
}
