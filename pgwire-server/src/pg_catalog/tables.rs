//! The `pg_catalog` tables, built for one session from what it can see:
//! schemas, tables and their columns, types, the RWD functions, roles.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::{Result, ScalarValue};
use datafusion::datasource::MemTable;
use pgwire::api::Type;

use super::Catalog;

/// Column kinds of catalog tables.
#[derive(Clone, Copy)]
enum K {
    /// oid, int8 in SQL.
    O,
    /// text
    T,
    /// boolean
    B,
    /// int2
    S,
    /// int4
    I,
    /// float4
    F,
    /// text[]
    A,
    /// timestamp
    Ts,
}

impl K {
    fn data_type(self) -> DataType {
        match self {
            K::O => DataType::Int64,
            K::T => DataType::Utf8,
            K::B => DataType::Boolean,
            K::S => DataType::Int16,
            K::I => DataType::Int32,
            K::F => DataType::Float32,
            K::A => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            K::Ts => DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None),
        }
    }
}

/// A value of a catalog row.
enum V {
    O(i64),
    T(String),
    B(bool),
    I(i64),
    F(f32),
    Null,
}

fn o(v: i64) -> V {
    V::O(v)
}
fn t(v: &str) -> V {
    V::T(v.to_owned())
}
fn b(v: bool) -> V {
    V::B(v)
}
fn i(v: i64) -> V {
    V::I(v)
}

impl V {
    fn scalar(&self, k: K) -> ScalarValue {
        match (self, k) {
            (V::Null, k) => ScalarValue::try_from(&k.data_type()).unwrap_or(ScalarValue::Null),
            (V::O(v), _) => ScalarValue::Int64(Some(*v)),
            (V::T(v), _) => ScalarValue::Utf8(Some(v.clone())),
            (V::B(v), _) => ScalarValue::Boolean(Some(*v)),
            (V::I(v), K::S) => ScalarValue::Int16(Some(*v as i16)),
            (V::I(v), K::I) => ScalarValue::Int32(Some(*v as i32)),
            (V::I(v), _) => ScalarValue::Int64(Some(*v)),
            (V::F(v), _) => ScalarValue::Float32(Some(*v)),
        }
    }
}

struct Table {
    columns: Vec<(&'static str, K)>,
    rows: Vec<Vec<V>>,
}

impl Table {
    fn new(columns: &[(&'static str, K)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, values: Vec<V>) {
        debug_assert_eq!(values.len(), self.columns.len());
        self.rows.push(values);
    }

    fn build(self) -> Result<MemTable> {
        let schema = Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|(n, k)| Field::new(*n, k.data_type(), true))
                .collect::<Vec<_>>(),
        ));
        let mut arrays = Vec::new();
        for (c, (_, k)) in self.columns.iter().enumerate() {
            let values = self.rows.iter().map(|r| r[c].scalar(*k));
            arrays.push(if self.rows.is_empty() {
                datafusion::arrow::array::new_empty_array(&k.data_type())
            } else {
                ScalarValue::iter_to_array(values)?
            });
        }
        let batch = RecordBatch::try_new(schema.clone(), arrays)?;
        MemTable::try_new(schema, vec![vec![batch]])
    }
}

/// Well-known oids, as PostgreSQL numbers them.
pub const PG_CATALOG_OID: i64 = 11;
pub const PUBLIC_OID: i64 = 2200;
pub const PG_PROC_CLASS: i64 = 1255;
const OWNER_OID: i64 = 10;
const DATABASE_OID: i64 = 16384;

/// The types shown in `pg_type`: every type the server returns.
fn types() -> Vec<Type> {
    vec![
        Type::BOOL,
        Type::BYTEA,
        Type::CHAR,
        Type::NAME,
        Type::INT8,
        Type::INT2,
        Type::INT4,
        Type::TEXT,
        Type::OID,
        Type::FLOAT4,
        Type::FLOAT8,
        Type::VARCHAR,
        Type::BPCHAR,
        Type::DATE,
        Type::TIME,
        Type::TIMESTAMP,
        Type::TIMESTAMPTZ,
        Type::INTERVAL,
        Type::NUMERIC,
        Type::JSON,
        Type::UNKNOWN,
        Type::BOOL_ARRAY,
        Type::INT2_ARRAY,
        Type::INT4_ARRAY,
        Type::INT8_ARRAY,
        Type::TEXT_ARRAY,
        Type::FLOAT4_ARRAY,
        Type::FLOAT8_ARRAY,
        Type::DATE_ARRAY,
        Type::TIMESTAMP_ARRAY,
        Type::NUMERIC_ARRAY,
        Type::BYTEA_ARRAY,
        Type::VARCHAR_ARRAY,
    ]
}

/// (name, oid) of every type in `pg_type`.
pub(super) fn type_oids() -> Vec<(String, i64)> {
    types()
        .iter()
        .map(|t| (t.name().to_owned(), t.oid() as i64))
        .collect()
}

fn type_len(t: &Type) -> i64 {
    match *t {
        Type::BOOL | Type::CHAR => 1,
        Type::INT2 => 2,
        Type::INT4 | Type::OID | Type::FLOAT4 | Type::DATE => 4,
        Type::INT8 | Type::FLOAT8 | Type::TIME | Type::TIMESTAMP | Type::TIMESTAMPTZ => 8,
        Type::INTERVAL => 16,
        Type::NAME => 64,
        _ => -1,
    }
}

/// Builds every table of the catalog into a `pg_catalog` schema.
pub(super) fn build(cat: &Catalog) -> Result<Arc<MemorySchemaProvider>> {
    let schema = Arc::new(MemorySchemaProvider::new());
    let reg = |name: &str, table: Table| -> Result<()> {
        use datafusion::catalog::SchemaProvider;
        schema.register_table(name.into(), Arc::new(table.build()?))?;
        Ok(())
    };

    let mut ns = Table::new(&[
        ("oid", K::O),
        ("nspname", K::T),
        ("nspowner", K::O),
        ("nspacl", K::A),
    ]);
    for n in &cat.namespaces {
        ns.row(vec![o(n.oid), t(&n.name), o(OWNER_OID), V::Null]);
    }
    reg("pg_namespace", ns)?;

    let mut class = Table::new(&[
        ("oid", K::O),
        ("relname", K::T),
        ("relnamespace", K::O),
        ("reltype", K::O),
        ("reloftype", K::O),
        ("relowner", K::O),
        ("relam", K::O),
        ("relfilenode", K::O),
        ("reltablespace", K::O),
        ("relpages", K::I),
        ("reltuples", K::F),
        ("relallvisible", K::I),
        ("reltoastrelid", K::O),
        ("relhasindex", K::B),
        ("relisshared", K::B),
        ("relpersistence", K::T),
        ("relkind", K::T),
        ("relnatts", K::S),
        ("relchecks", K::S),
        ("relhasrules", K::B),
        ("relhastriggers", K::B),
        ("relhassubclass", K::B),
        ("relrowsecurity", K::B),
        ("relforcerowsecurity", K::B),
        ("relispopulated", K::B),
        ("relreplident", K::T),
        ("relispartition", K::B),
        ("relrewrite", K::O),
        ("relacl", K::A),
        ("reloptions", K::A),
        ("relpartbound", K::T),
        ("relhasoids", K::B),
    ]);
    let mut attr = Table::new(&[
        ("attrelid", K::O),
        ("attname", K::T),
        ("atttypid", K::O),
        ("attstattarget", K::I),
        ("attlen", K::S),
        ("attnum", K::S),
        ("attndims", K::I),
        ("attcacheoff", K::I),
        ("atttypmod", K::I),
        ("attbyval", K::B),
        ("attalign", K::T),
        ("attstorage", K::T),
        ("attcompression", K::T),
        ("attnotnull", K::B),
        ("atthasdef", K::B),
        ("atthasmissing", K::B),
        ("attidentity", K::T),
        ("attgenerated", K::T),
        ("attisdropped", K::B),
        ("attislocal", K::B),
        ("attinhcount", K::I),
        ("attcollation", K::O),
        ("attacl", K::A),
        ("attoptions", K::A),
        ("attfdwoptions", K::A),
    ]);
    let mut tables = Table::new(&[
        ("schemaname", K::T),
        ("tablename", K::T),
        ("tableowner", K::T),
        ("tablespace", K::T),
        ("hasindexes", K::B),
        ("hasrules", K::B),
        ("hastriggers", K::B),
        ("rowsecurity", K::B),
    ]);
    let mut views = Table::new(&[
        ("schemaname", K::T),
        ("viewname", K::T),
        ("viewowner", K::T),
        ("definition", K::T),
    ]);
    for rel in &cat.relations {
        class.row(vec![
            o(rel.oid),
            t(&rel.name),
            o(rel.namespace),
            o(0),
            o(0),
            o(OWNER_OID),
            o(if rel.kind == "r" { 2 } else { 0 }),
            o(0),
            o(0),
            i(0),
            V::F(-1.0),
            i(0),
            o(0),
            b(false),
            b(false),
            t("p"),
            t(rel.kind),
            i(rel.columns.len() as i64),
            i(0),
            b(false),
            b(false),
            b(false),
            b(false),
            b(false),
            b(true),
            t("d"),
            b(false),
            o(0),
            V::Null,
            V::Null,
            V::Null,
            b(false),
        ]);
        let ns_name = cat
            .namespaces
            .iter()
            .find(|n| n.oid == rel.namespace)
            .map(|n| n.name.clone())
            .unwrap_or_default();
        if rel.kind == "r" {
            tables.row(vec![
                t(&ns_name),
                t(&rel.name),
                t("tsunagu"),
                V::Null,
                b(false),
                b(false),
                b(false),
                b(false),
            ]);
        } else {
            views.row(vec![t(&ns_name), t(&rel.name), t("tsunagu"), V::Null]);
        }
        for (n, (name, ty, nullable)) in rel.columns.iter().enumerate() {
            attr.row(vec![
                o(rel.oid),
                t(name),
                o(ty.oid() as i64),
                i(-1),
                i(type_len(ty)),
                i(n as i64 + 1),
                i(0),
                i(-1),
                i(-1),
                b(type_len(ty) > 0 && type_len(ty) <= 8),
                t("i"),
                t("p"),
                t(""),
                b(!nullable),
                b(false),
                b(false),
                t(""),
                t(""),
                b(false),
                b(true),
                i(0),
                o(0),
                V::Null,
                V::Null,
                V::Null,
            ]);
        }
    }
    reg("pg_class", class)?;
    reg("pg_attribute", attr)?;
    reg("pg_tables", tables)?;
    reg("pg_views", views)?;

    let mut ty = Table::new(&[
        ("oid", K::O),
        ("typname", K::T),
        ("typnamespace", K::O),
        ("typowner", K::O),
        ("typlen", K::S),
        ("typbyval", K::B),
        ("typtype", K::T),
        ("typcategory", K::T),
        ("typispreferred", K::B),
        ("typisdefined", K::B),
        ("typdelim", K::T),
        ("typrelid", K::O),
        ("typelem", K::O),
        ("typarray", K::O),
        ("typinput", K::T),
        ("typoutput", K::T),
        ("typreceive", K::T),
        ("typsend", K::T),
        ("typalign", K::T),
        ("typstorage", K::T),
        ("typnotnull", K::B),
        ("typbasetype", K::O),
        ("typtypmod", K::I),
        ("typndims", K::I),
        ("typcollation", K::O),
        ("typdefault", K::T),
        ("typacl", K::A),
    ]);
    let all = types();
    for tp in &all {
        // Array types are named after their element with a leading underscore.
        let (elem, category) = match tp.name().strip_prefix('_') {
            Some(e) => (
                all.iter()
                    .find(|x| x.name() == e)
                    .map(|x| x.oid() as i64)
                    .unwrap_or(0),
                "A",
            ),
            None => (0, category(tp)),
        };
        let array_name = format!("_{}", tp.name());
        let array = all
            .iter()
            .find(|a| a.name() == array_name)
            .map(|a| a.oid() as i64)
            .unwrap_or(0);
        let len = type_len(tp);
        ty.row(vec![
            o(tp.oid() as i64),
            t(tp.name()),
            o(PG_CATALOG_OID),
            o(OWNER_OID),
            i(len),
            b(len > 0 && len <= 8),
            t("b"),
            t(category),
            b(false),
            b(true),
            t(","),
            o(0),
            o(elem),
            o(array),
            t(&format!("{}in", tp.name())),
            t(&format!("{}out", tp.name())),
            t(&format!("{}recv", tp.name())),
            t(&format!("{}send", tp.name())),
            t("i"),
            t("p"),
            b(false),
            o(0),
            i(-1),
            i(0),
            o(0),
            V::Null,
            V::Null,
        ]);
    }
    reg("pg_type", ty)?;

    let mut proc_ = Table::new(&[
        ("oid", K::O),
        ("proname", K::T),
        ("pronamespace", K::O),
        ("proowner", K::O),
        ("prolang", K::O),
        ("procost", K::F),
        ("prorows", K::F),
        ("provariadic", K::O),
        ("prokind", K::T),
        ("prosecdef", K::B),
        ("proleakproof", K::B),
        ("proisstrict", K::B),
        ("proretset", K::B),
        ("provolatile", K::T),
        ("proparallel", K::T),
        ("pronargs", K::S),
        ("pronargdefaults", K::S),
        ("prorettype", K::O),
        ("proargtypes", K::T),
        ("proargnames", K::A),
        ("prosrc", K::T),
        ("proacl", K::A),
    ]);
    let mut desc = Table::new(&[
        ("objoid", K::O),
        ("classoid", K::O),
        ("objsubid", K::I),
        ("description", K::T),
    ]);
    for f in &cat.functions {
        proc_.row(vec![
            o(f.oid),
            t(&f.name),
            o(f.namespace),
            o(OWNER_OID),
            o(12),
            V::F(1.0),
            V::F(if f.kind == "table" { 1000.0 } else { 0.0 }),
            o(0),
            t(match f.kind {
                "aggregate" => "a",
                "window" => "w",
                _ => "f",
            }),
            b(false),
            b(false),
            b(false),
            b(f.kind == "table"),
            t("i"),
            t("s"),
            i(f.arguments.len() as i64),
            i(0),
            o(25),
            t(""),
            V::Null,
            t(&f.name),
            V::Null,
        ]);
        if let Some(d) = &f.description {
            desc.row(vec![o(f.oid), o(PG_PROC_CLASS), i(0), t(d)]);
        }
    }
    reg("pg_proc", proc_)?;
    reg("pg_description", desc)?;

    let mut db = Table::new(&[
        ("oid", K::O),
        ("datname", K::T),
        ("datdba", K::O),
        ("encoding", K::I),
        ("datlocprovider", K::T),
        ("datistemplate", K::B),
        ("datallowconn", K::B),
        ("datconnlimit", K::I),
        ("dattablespace", K::O),
        ("datcollate", K::T),
        ("datctype", K::T),
        ("daticulocale", K::T),
        ("daticurules", K::T),
        ("datcollversion", K::T),
        ("datacl", K::A),
    ]);
    db.row(vec![
        o(DATABASE_OID),
        t("tsunagu"),
        o(OWNER_OID),
        i(6),
        t("c"),
        b(false),
        b(true),
        i(-1),
        o(1663),
        t("C"),
        t("C"),
        V::Null,
        V::Null,
        V::Null,
        V::Null,
    ]);
    reg("pg_database", db)?;

    let role_cols: &[(&'static str, K)] = &[
        ("oid", K::O),
        ("rolname", K::T),
        ("rolsuper", K::B),
        ("rolinherit", K::B),
        ("rolcreaterole", K::B),
        ("rolcreatedb", K::B),
        ("rolcanlogin", K::B),
        ("rolreplication", K::B),
        ("rolconnlimit", K::I),
        ("rolpassword", K::T),
        ("rolvaliduntil", K::Ts),
        ("rolbypassrls", K::B),
        ("rolconfig", K::A),
    ];
    let mut roles = Table::new(role_cols);
    let mut users = Table::new(&[
        ("usename", K::T),
        ("usesysid", K::O),
        ("usecreatedb", K::B),
        ("usesuper", K::B),
        ("userepl", K::B),
        ("usebypassrls", K::B),
        ("passwd", K::T),
        ("valuntil", K::Ts),
        ("useconfig", K::A),
    ]);
    let mut role_names = vec![
        ("tsunagu".to_owned(), OWNER_OID, false),
        ("steward".to_owned(), OWNER_OID + 1, false),
        ("analyst".to_owned(), OWNER_OID + 2, false),
        ("viewer".to_owned(), OWNER_OID + 3, false),
    ];
    for (n, (name, _)) in cat.users.iter().enumerate() {
        if !role_names.iter().any(|(r, _, _)| r == name) {
            role_names.push((name.clone(), 20000 + n as i64, true));
        }
    }
    for (name, oid, login) in &role_names {
        let login = *login || cat.users.iter().any(|(u, _)| u == name);
        roles.row(vec![
            o(*oid),
            t(name),
            b(false),
            b(true),
            b(false),
            b(false),
            b(login),
            b(false),
            i(-1),
            t("********"),
            V::Null,
            b(false),
            V::Null,
        ]);
        if login {
            users.row(vec![
                t(name),
                o(*oid),
                b(false),
                b(false),
                b(false),
                b(false),
                t("********"),
                V::Null,
                V::Null,
            ]);
        }
    }
    reg("pg_roles", roles)?;
    reg("pg_user", users)?;
    reg(
        "pg_auth_members",
        Table::new(&[
            ("oid", K::O),
            ("roleid", K::O),
            ("member", K::O),
            ("grantor", K::O),
            ("admin_option", K::B),
        ]),
    )?;

    let mut am = Table::new(&[
        ("oid", K::O),
        ("amname", K::T),
        ("amhandler", K::T),
        ("amtype", K::T),
    ]);
    am.row(vec![o(2), t("heap"), t("heap_tableam_handler"), t("t")]);
    reg("pg_am", am)?;

    let mut ts = Table::new(&[
        ("oid", K::O),
        ("spcname", K::T),
        ("spcowner", K::O),
        ("spcacl", K::A),
        ("spcoptions", K::A),
    ]);
    ts.row(vec![
        o(1663),
        t("pg_default"),
        o(OWNER_OID),
        V::Null,
        V::Null,
    ]);
    reg("pg_tablespace", ts)?;

    let mut settings = Table::new(&[
        ("name", K::T),
        ("setting", K::T),
        ("unit", K::T),
        ("category", K::T),
        ("short_desc", K::T),
        ("context", K::T),
        ("vartype", K::T),
        ("source", K::T),
        ("boot_val", K::T),
        ("reset_val", K::T),
    ]);
    for (name, value) in &cat.settings {
        settings.row(vec![
            t(name),
            t(value),
            V::Null,
            t("Tsunagu"),
            t(""),
            t("user"),
            t("string"),
            t("default"),
            t(value),
            t(value),
        ]);
    }
    reg("pg_settings", settings)?;

    // Catalogs that exist so that client queries join against them; Tsunagu
    // has no indexes, constraints, inheritance, triggers or policies.
    let empty: &[(&str, &[(&'static str, K)])] = &[
        (
            "pg_index",
            &[
                ("indexrelid", K::O),
                ("indrelid", K::O),
                ("indnatts", K::S),
                ("indisunique", K::B),
                ("indisprimary", K::B),
                ("indisclustered", K::B),
                ("indisvalid", K::B),
                ("indkey", K::T),
                ("indexprs", K::T),
                ("indpred", K::T),
            ],
        ),
        (
            "pg_inherits",
            &[
                ("inhrelid", K::O),
                ("inhparent", K::O),
                ("inhseqno", K::I),
                ("inhdetachpending", K::B),
            ],
        ),
        (
            "pg_constraint",
            &[
                ("oid", K::O),
                ("conname", K::T),
                ("connamespace", K::O),
                ("contype", K::T),
                ("conrelid", K::O),
                ("conindid", K::O),
                ("confrelid", K::O),
                ("conkey", K::A),
                ("confkey", K::A),
                ("conparentid", K::O),
                ("conislocal", K::B),
                ("convalidated", K::B),
            ],
        ),
        (
            "pg_attrdef",
            &[
                ("oid", K::O),
                ("adrelid", K::O),
                ("adnum", K::S),
                ("adbin", K::T),
            ],
        ),
        (
            "pg_collation",
            &[
                ("oid", K::O),
                ("collname", K::T),
                ("collnamespace", K::O),
                ("collprovider", K::T),
            ],
        ),
        (
            "pg_policy",
            &[
                ("oid", K::O),
                ("polname", K::T),
                ("polrelid", K::O),
                ("polcmd", K::T),
                ("polpermissive", K::B),
                ("polroles", K::A),
                ("polqual", K::T),
                ("polwithcheck", K::T),
            ],
        ),
        (
            "pg_trigger",
            &[
                ("oid", K::O),
                ("tgrelid", K::O),
                ("tgname", K::T),
                ("tgisinternal", K::B),
                ("tgenabled", K::T),
            ],
        ),
        (
            "pg_rewrite",
            &[
                ("oid", K::O),
                ("rulename", K::T),
                ("ev_class", K::O),
                ("ev_type", K::T),
            ],
        ),
        (
            "pg_statistic_ext",
            &[
                ("oid", K::O),
                ("stxrelid", K::O),
                ("stxname", K::T),
                ("stxnamespace", K::O),
                ("stxkind", K::A),
            ],
        ),
        (
            "pg_publication",
            &[("oid", K::O), ("pubname", K::T), ("puballtables", K::B)],
        ),
        (
            "pg_publication_rel",
            &[("oid", K::O), ("prpubid", K::O), ("prrelid", K::O)],
        ),
        (
            "pg_publication_namespace",
            &[("oid", K::O), ("pnpubid", K::O), ("pnnspid", K::O)],
        ),
        (
            "pg_extension",
            &[
                ("oid", K::O),
                ("extname", K::T),
                ("extowner", K::O),
                ("extnamespace", K::O),
                ("extversion", K::T),
            ],
        ),
        (
            "pg_enum",
            &[
                ("oid", K::O),
                ("enumtypid", K::O),
                ("enumsortorder", K::F),
                ("enumlabel", K::T),
            ],
        ),
        ("pg_range", &[("rngtypid", K::O), ("rngsubtype", K::O)]),
        ("pg_foreign_table", &[("ftrelid", K::O), ("ftserver", K::O)]),
        ("pg_foreign_server", &[("oid", K::O), ("srvname", K::T)]),
        (
            "pg_partitioned_table",
            &[("partrelid", K::O), ("partstrat", K::T)],
        ),
        (
            "pg_depend",
            &[
                ("classid", K::O),
                ("objid", K::O),
                ("objsubid", K::I),
                ("refclassid", K::O),
                ("refobjid", K::O),
                ("refobjsubid", K::I),
                ("deptype", K::T),
            ],
        ),
        ("pg_sequence", &[("seqrelid", K::O), ("seqtypid", K::O)]),
        (
            "pg_matviews",
            &[
                ("schemaname", K::T),
                ("matviewname", K::T),
                ("matviewowner", K::T),
                ("definition", K::T),
            ],
        ),
        (
            "pg_shdescription",
            &[("objoid", K::O), ("classoid", K::O), ("description", K::T)],
        ),
        ("pg_event_trigger", &[("oid", K::O), ("evtname", K::T)]),
        ("pg_language", &[("oid", K::O), ("lanname", K::T)]),
        (
            "pg_cast",
            &[
                ("oid", K::O),
                ("castsource", K::O),
                ("casttarget", K::O),
                ("castfunc", K::O),
                ("castcontext", K::T),
                ("castmethod", K::T),
            ],
        ),
        (
            "pg_operator",
            &[
                ("oid", K::O),
                ("oprname", K::T),
                ("oprnamespace", K::O),
                ("oprleft", K::O),
                ("oprright", K::O),
                ("oprresult", K::O),
            ],
        ),
        (
            "pg_opclass",
            &[("oid", K::O), ("opcname", K::T), ("opcnamespace", K::O)],
        ),
        ("pg_conversion", &[("oid", K::O), ("conname", K::T)]),
        (
            "pg_locks",
            &[
                ("locktype", K::T),
                ("pid", K::I),
                ("mode", K::T),
                ("granted", K::B),
            ],
        ),
        ("pg_prepared_xacts", &[("transaction", K::O), ("gid", K::T)]),
    ];
    for (name, cols) in empty {
        reg(name, Table::new(cols))?;
    }
    Ok(schema)
}

fn category(t: &Type) -> &'static str {
    match *t {
        Type::BOOL => "B",
        Type::INT2
        | Type::INT4
        | Type::INT8
        | Type::FLOAT4
        | Type::FLOAT8
        | Type::NUMERIC
        | Type::OID => "N",
        Type::DATE | Type::TIME | Type::TIMESTAMP | Type::TIMESTAMPTZ => "D",
        Type::INTERVAL => "T",
        Type::BYTEA | Type::JSON | Type::UNKNOWN => "U",
        _ => "S",
    }
}
