//! Named, saved cohorts: `CREATE COHORT name AS <query>`, `DROP COHORT name`,
//! `cohort('name')`, `cohort_bitmap('name')` and the `cohorts` table.
//!
//! A cohort is a folder `<state>/cohorts/<name>/` holding `meta.json` and
//! `rows.parquet`. It is written into a hidden temporary folder, fsynced,
//! and renamed into place, so a crash mid-write leaves either the whole
//! cohort or nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, Date32Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{
    Session as CatalogSession, TableFunctionArgs, TableFunctionImpl, TableProvider,
};
use datafusion::common::{Result as DfResult, ScalarValue, exec_datafusion_err, plan_err};
use datafusion::datasource::{MemTable, TableType};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::physical_plan::ExecutionPlan;
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// What the `cohorts` table shows of a cohort.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CohortMeta {
    pub name: String,
    pub owner: String,
    pub created_at: String,
    pub definition: String,
    pub size: u64,
    /// The fingerprint of the store's files the cohort was built on.
    pub store: String,
    /// The state its person numbers belong to ([`Version::lineage`]).
    #[serde(default)]
    pub lineage: String,
    /// The delivery it was built on ([`Version::generation`]).
    #[serde(default)]
    pub delivery: u64,
}

/// Which person numbers saved cohorts can be used with.
#[derive(Debug, Clone)]
pub struct Version {
    pub fingerprint: String,
    /// Person numbers are shared by every state of a lineage.
    pub lineage: String,
    /// Deliveries taken in since the lineage began.
    pub generation: u64,
}

impl Version {
    /// The version of an opened store.
    pub fn of(store: &tsunagu_catalog::Store) -> Version {
        Version {
            fingerprint: store.fingerprint().to_owned(),
            lineage: store.lineage().to_owned(),
            generation: store.generation(),
        }
    }

    /// A store that never takes in deliveries (tests, embedders).
    pub fn fixed(fingerprint: &str) -> Version {
        Version {
            fingerprint: fingerprint.to_owned(),
            lineage: fingerprint.to_owned(),
            generation: 0,
        }
    }

    /// True when person numbers written at `(lineage, delivery)` on files
    /// with `fingerprint` are this store's: an earlier (or the same)
    /// delivery of the same lineage, or the same files numbered from scratch
    /// both times (numbering from scratch depends only on the files).
    pub fn holds_numbers(&self, fingerprint: &str, lineage: &str, delivery: u64) -> bool {
        (!lineage.is_empty() && lineage == self.lineage && delivery <= self.generation)
            || (fingerprint == self.fingerprint && self.generation == 0 && delivery == 0)
    }

    fn holds(&self, meta: &CohortMeta) -> bool {
        self.holds_numbers(&meta.store, &meta.lineage, meta.delivery)
    }
}

/// A loaded cohort.
#[derive(Debug)]
pub struct Cohort {
    pub meta: CohortMeta,
    pub rows: RecordBatch,
    pub bitmap: RoaringBitmap,
}

/// The schema of `cohort('name')`.
pub fn rows_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new("person_id", DataType::Int64, false),
            Field::new("cohort_start_date", DataType::Date32, true),
            Field::new("cohort_end_date", DataType::Date32, true),
        ]))
    })
    .clone()
}

/// Checks a cohort name: a plain lower-case identifier.
pub fn check_name(name: &str) -> Result<()> {
    let ok = name.len() <= 63
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(EngineError::Unsupported(format!(
            "invalid cohort name {name:?}: use lower-case letters, digits and _, starting with a letter (at most 63)"
        )))
    }
}

/// The saved cohorts of one store.
#[derive(Debug)]
pub struct CohortStore {
    dir: PathBuf,
    version: Version,
    cache: Mutex<HashMap<String, Arc<Cohort>>>,
}

/// Whether the process that named a temporary folder `.<name>.tmp-<pid>-<n>`
/// has ended (known on Linux only; elsewhere the folder waits an hour).
fn writer_is_gone(folder: &str) -> bool {
    let Some(pid) = folder
        .rsplit_once(".tmp-")
        .and_then(|(_, rest)| rest.split('-').next())
        .and_then(|p| p.parse::<u32>().ok())
    else {
        return false;
    };
    cfg!(target_os = "linux")
        && pid != std::process::id()
        && !Path::new("/proc").join(pid.to_string()).exists()
}

fn io(path: &Path, e: impl std::fmt::Display) -> EngineError {
    EngineError::Unsupported(format!("cohort storage {}: {e}", path.display()))
}

impl CohortStore {
    /// The cohorts kept in `state_dir/cohorts`, for the store at this version.
    pub fn new(state_dir: &Path, version: Version) -> Self {
        let dir = state_dir.join("cohorts");
        // Leftovers of writes that never finished: of a process that is
        // gone, or an hour old (a save may be under way in another session).
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let hour = std::time::Duration::from_secs(3600);
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') {
                    continue;
                }
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > hour));
                if old || writer_is_gone(&name) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        CohortStore {
            dir,
            version,
            cache: Mutex::default(),
        }
    }

    /// Every saved cohort, by name.
    pub fn list(&self) -> Result<Vec<CohortMeta>> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(out);
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = e.path().join("meta.json");
            let text = std::fs::read(&path).map_err(|e| io(&path, e))?;
            out.push(serde_json::from_slice(&text).map_err(|e| io(&path, e))?);
        }
        out.sort_by(|a: &CohortMeta, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Loads a cohort.
    pub fn load(&self, name: &str) -> Result<Arc<Cohort>> {
        check_name(name)?;
        if let Some(c) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Ok(c.clone());
        }
        let folder = self.dir.join(name);
        let meta_path = folder.join("meta.json");
        let text = std::fs::read(&meta_path)
            .map_err(|_| EngineError::Unsupported(format!("cohort {name:?} does not exist")))?;
        let meta: CohortMeta = serde_json::from_slice(&text).map_err(|e| io(&meta_path, e))?;
        if !self.version.holds(&meta) {
            return Err(EngineError::Unsupported(format!(
                "cohort {name:?} was built on a version of the store whose persons were numbered \
                 differently; drop it and create it again"
            )));
        }
        let rows_path = folder.join("rows.parquet");
        let file = std::fs::File::open(&rows_path).map_err(|e| io(&rows_path, e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .map_err(|e| io(&rows_path, e))?;
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| io(&rows_path, e))?;
        let rows = datafusion::arrow::compute::concat_batches(&rows_schema(), &batches)?;
        let ids = rows
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        // The bitmap, and the set operations computed from it, stand for the
        // rows: a damaged file is refused rather than read differently.
        if ids.null_count() > 0
            || ids
                .values()
                .iter()
                .any(|&v| !(0..=u32::MAX as i64).contains(&v))
        {
            return Err(io(
                &rows_path,
                "person_id values outside the engine's person numbers",
            ));
        }
        let bitmap = ids.values().iter().map(|&v| v as u32).collect();
        let cohort = Arc::new(Cohort { meta, rows, bitmap });
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), cohort.clone());
        Ok(cohort)
    }

    /// Saves a new cohort atomically; fails if one of that name exists.
    pub fn save(&self, mut meta: CohortMeta, rows: RecordBatch) -> Result<CohortMeta> {
        check_name(&meta.name)?;
        let target = self.dir.join(&meta.name);
        if target.exists() {
            return Err(EngineError::Unsupported(format!(
                "cohort {:?} already exists; DROP COHORT it first",
                meta.name
            )));
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!(".{}.tmp-{}-{n}", meta.name, std::process::id()));
        let result = (|| -> Result<()> {
            std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
            let rows_path = tmp.join("rows.parquet");
            let file = std::fs::File::create(&rows_path).map_err(|e| io(&rows_path, e))?;
            let mut w =
                ArrowWriter::try_new(file, rows_schema(), None).map_err(|e| io(&rows_path, e))?;
            w.write(&rows).map_err(|e| io(&rows_path, e))?;
            let file = w.into_inner().map_err(|e| io(&rows_path, e))?;
            file.sync_all().map_err(|e| io(&rows_path, e))?;
            meta.store = self.version.fingerprint.clone();
            meta.lineage = self.version.lineage.clone();
            meta.delivery = self.version.generation;
            let meta_path = tmp.join("meta.json");
            let text = serde_json::to_vec_pretty(&meta).map_err(|e| io(&meta_path, e))?;
            let f = std::fs::File::create(&meta_path).map_err(|e| io(&meta_path, e))?;
            use std::io::Write;
            (&f).write_all(&text).map_err(|e| io(&meta_path, e))?;
            f.sync_all().map_err(|e| io(&meta_path, e))?;
            std::fs::File::open(&tmp)
                .and_then(|d| d.sync_all())
                .map_err(|e| io(&tmp, e))?;
            std::fs::rename(&tmp, &target).map_err(|_| {
                EngineError::Unsupported(format!(
                    "cohort {:?} already exists; DROP COHORT it first",
                    meta.name
                ))
            })?;
            std::fs::File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io(&self.dir, e))
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result.map(|_| meta)
    }

    /// Drops a cohort; `false` when there was none.
    pub fn drop_cohort(&self, name: &str) -> Result<bool> {
        check_name(name)?;
        let target = self.dir.join(name);
        if !target.exists() {
            return Ok(false);
        }
        let trash = self
            .dir
            .join(format!(".{name}.drop-{}", std::process::id()));
        std::fs::rename(&target, &trash).map_err(|e| io(&target, e))?;
        let _ = std::fs::File::open(&self.dir).and_then(|d| d.sync_all());
        let _ = std::fs::remove_dir_all(&trash);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        Ok(true)
    }
}

/// Builds the rows of a cohort from a query's batches; the query must return `person_id`.
pub fn cohort_rows(schema: &Schema, batches: &[RecordBatch]) -> Result<(RecordBatch, u64)> {
    let Ok((pid, field)) = schema.column_with_name("person_id").ok_or(()) else {
        return Err(EngineError::Unsupported(
            "CREATE COHORT: the query must return a person_id column".into(),
        ));
    };
    if !field.data_type().is_integer() {
        return Err(EngineError::Unsupported(
            "CREATE COHORT: person_id must be an integer column".into(),
        ));
    }
    let date_col = |name: &str| -> Result<Option<usize>> {
        match schema.column_with_name(name) {
            None => Ok(None),
            Some((i, f))
                if matches!(
                    f.data_type(),
                    DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)
                ) =>
            {
                Ok(Some(i))
            }
            Some(_) => Err(EngineError::Unsupported(format!(
                "CREATE COHORT: {name} must be a DATE column"
            ))),
        }
    };
    let (start, end) = (date_col("cohort_start_date")?, date_col("cohort_end_date")?);
    let mut ids = Vec::new();
    let mut starts = Vec::new();
    let mut ends = Vec::new();
    for b in batches {
        let p = cast(b.column(pid), &DataType::Int64)?;
        let p = p.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        let dates = |i: Option<usize>| -> Result<Option<ArrayRef>> {
            Ok(match i {
                Some(i) => Some(cast(b.column(i), &DataType::Date32)?),
                None => None,
            })
        };
        let (s, e) = (dates(start)?, dates(end)?);
        for row in 0..b.num_rows() {
            if p.is_null(row) {
                continue;
            }
            let id = p.value(row);
            if !(0..=u32::MAX as i64).contains(&id) {
                return Err(EngineError::Unsupported(
                    "CREATE COHORT: person_id values must be the engine's person numbers".into(),
                ));
            }
            ids.push(id);
            let get = |a: &Option<ArrayRef>| {
                a.as_ref().and_then(|a| {
                    a.is_valid(row).then(|| {
                        a.as_primitive::<datafusion::arrow::datatypes::Date32Type>()
                            .value(row)
                    })
                })
            };
            starts.push(get(&s));
            ends.push(get(&e));
        }
    }
    let size = ids
        .iter()
        .map(|&v| v as u32)
        .collect::<RoaringBitmap>()
        .len();
    let batch = RecordBatch::try_new(
        rows_schema(),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(Date32Array::from(starts)),
            Arc::new(Date32Array::from(ends)),
        ],
    )?;
    Ok((batch, size))
}

fn name_arg(function: &str, e: &Expr) -> DfResult<String> {
    match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
            _,
        ) => Ok(s.clone()),
        _ => plan_err!("{function} takes a cohort name as a constant string"),
    }
}

fn to_df(e: EngineError) -> datafusion::error::DataFusionError {
    match e {
        EngineError::DataFusion(d) | EngineError::Undefined(_, d) => d,
        other => datafusion::error::DataFusionError::Plan(other.to_string()),
    }
}

/// The documentation of `cohort('name')`.
pub fn cohort_function_doc() -> &'static Documentation {
    static DOC: OnceLock<Documentation> = OnceLock::new();
    DOC.get_or_init(|| {
        Documentation::builder(
            tsunagu_udfs::docs::COHORTS,
            "Table function: the rows of a saved cohort (person_id BIGINT, cohort_start_date DATE, cohort_end_date DATE). Cohorts are saved with CREATE COHORT name AS <query returning person_id [, cohort_start_date, cohort_end_date]>, removed with DROP COHORT [IF EXISTS] name, and listed in the table cohorts (name, owner, created_at, definition, size). They are kept in the state folder, survive restarts and crashes, and belong to the version of the store they were built on.",
            "SELECT * FROM cohort('name')",
        )
        .with_argument("name", "The cohort's name.")
        .with_sql_example("CREATE COHORT elderly AS SELECT person_id FROM ndb.person WHERE year_of_birth < 1950;\nSELECT count(*) FROM cohort('elderly') c JOIN ndb.drug_exposure d USING (person_id);")
        .build()
    })
}

/// Whose cohorts a session may use: every cohort (stewards), or only its
/// user's own (analysts).
#[derive(Clone, Default)]
pub struct Viewer(Option<Arc<dyn Fn() -> Option<String> + Send + Sync>>);

impl std::fmt::Debug for Viewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Viewer")
    }
}

impl Viewer {
    /// Every cohort.
    pub fn all() -> Self {
        Viewer(None)
    }

    /// Asks `only` each time: `Some(user)` when the session sees only that
    /// user's cohorts (its role may change during the session).
    pub fn new(only: impl Fn() -> Option<String> + Send + Sync + 'static) -> Self {
        Viewer(Some(Arc::new(only)))
    }

    fn only(&self) -> Option<String> {
        self.0.as_ref().and_then(|f| f())
    }

    /// Whether the session may see this cohort.
    pub fn sees(&self, meta: &CohortMeta) -> bool {
        self.only().is_none_or(|u| u == meta.owner)
    }

    /// A cohort the session may use.
    pub fn load(&self, store: &CohortStore, name: &str) -> Result<Arc<Cohort>> {
        let cohort = store.load(name)?;
        if !self.sees(&cohort.meta) {
            return Err(EngineError::Unsupported(format!(
                "cohort {name:?} does not exist or belongs to another user"
            )));
        }
        Ok(cohort)
    }
}

/// The table function `cohort('name')`.
#[derive(Debug)]
pub struct CohortFunction {
    pub store: Arc<CohortStore>,
    pub viewer: Viewer,
}

impl TableFunctionImpl for CohortFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let [arg] = args.exprs() else {
            return plan_err!("cohort takes one argument: the cohort name");
        };
        let cohort = self
            .viewer
            .load(&self.store, &name_arg("cohort", arg)?)
            .map_err(to_df)?;
        Ok(Arc::new(CohortRows { cohort }))
    }
}

/// The rows of a saved cohort, as `cohort('name')` returns them; the
/// optimizer reads the cohort's bitmap through it
/// ([`crate::cohort_algebra`]).
#[derive(Debug)]
pub struct CohortRows {
    pub cohort: Arc<Cohort>,
}

#[async_trait::async_trait]
impl TableProvider for CohortRows {
    fn schema(&self) -> SchemaRef {
        rows_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn CatalogSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        MemTable::try_new(rows_schema(), vec![vec![self.cohort.rows.clone()]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

/// The scalar `cohort_bitmap('name')`.
#[derive(Debug)]
pub struct CohortBitmap {
    store: Arc<CohortStore>,
    viewer: Viewer,
    signature: Signature,
}

impl CohortBitmap {
    /// The function over a cohort store.
    pub fn new(store: Arc<CohortStore>, viewer: Viewer) -> Self {
        Self {
            store,
            viewer,
            // Volatile: a cohort's bytes are never folded into a plan (EXPLAIN).
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Volatile),
        }
    }
}

impl CohortBitmap {
    /// Whether the session may use this cohort.
    pub fn check(&self, name: &str) -> Result<()> {
        self.viewer.load(&self.store, name).map(|_| ())
    }
}

impl PartialEq for CohortBitmap {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.store, &other.store)
    }
}
impl Eq for CohortBitmap {}
impl std::hash::Hash for CohortBitmap {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "cohort_bitmap".hash(state);
    }
}

impl ScalarUDFImpl for CohortBitmap {
    fn name(&self) -> &str {
        "cohort_bitmap"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Binary)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let one = |name: &str| -> DfResult<Vec<u8>> {
            let c = self.viewer.load(&self.store, name).map_err(to_df)?;
            Ok(tsunagu_udfs::bitmaps::to_bytes(&c.bitmap))
        };
        match &args.args[0] {
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(n))) => {
                Ok(ColumnarValue::Scalar(ScalarValue::Binary(Some(one(n)?))))
            }
            ColumnarValue::Scalar(_) => Ok(ColumnarValue::Scalar(ScalarValue::Binary(None))),
            ColumnarValue::Array(a) => {
                let names = a.as_string::<i32>();
                let mut out = BinaryBuilder::new();
                for n in names.iter() {
                    match n {
                        Some(n) => out.append_value(one(n)?),
                        None => out.append_null(),
                    }
                }
                Ok(ColumnarValue::Array(Arc::new(out.finish())))
            }
        }
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(DOC.get_or_init(|| {
            Documentation::builder(
                tsunagu_udfs::docs::COHORTS,
                "The person set of a saved cohort as a roaring bitmap (BYTEA).",
                "cohort_bitmap('name')",
            )
            .with_argument("name", "The cohort's name.")
            .with_sql_example("SELECT rb_cardinality(rb_and(cohort_bitmap('nsaid_new_users'), cohort_bitmap('age_65_plus')))")
            .build()
        }))
    }
}

/// The `cohorts` table: name, owner, created_at, definition, size.
#[derive(Debug)]
pub struct CohortsTable {
    pub store: Arc<CohortStore>,
    pub viewer: Viewer,
}

impl CohortsTable {
    fn schema_ref() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("owner", DataType::Utf8, false),
            Field::new("created_at", DataType::Utf8, false),
            Field::new("definition", DataType::Utf8, false),
            Field::new("size", DataType::Int64, false),
        ]))
    }
}

#[async_trait::async_trait]
impl TableProvider for CohortsTable {
    fn schema(&self) -> SchemaRef {
        Self::schema_ref()
    }
    fn table_type(&self) -> TableType {
        TableType::View
    }
    async fn scan(
        &self,
        state: &dyn CatalogSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut list = self.store.list().map_err(|e| exec_datafusion_err!("{e}"))?;
        list.retain(|m| self.viewer.sees(m));
        let col = |f: fn(&CohortMeta) -> &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(list.iter().map(f)))
        };
        let batch = RecordBatch::try_new(
            Self::schema_ref(),
            vec![
                col(|m| &m.name),
                col(|m| &m.owner),
                col(|m| &m.created_at),
                col(|m| &m.definition),
                Arc::new(Int64Array::from_iter_values(
                    list.iter().map(|m| m.size as i64),
                )),
            ],
        )?;
        MemTable::try_new(Self::schema_ref(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Date32Array, Int64Array, RecordBatch};
    use datafusion::parquet::arrow::ArrowWriter;

    use super::{CohortMeta, CohortStore, rows_schema};

    fn rows(ids: Vec<i64>) -> RecordBatch {
        let n = ids.len();
        RecordBatch::try_new(
            rows_schema(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(Date32Array::from(vec![None; n])),
                Arc::new(Date32Array::from(vec![None; n])),
            ],
        )
        .unwrap()
    }

    /// A saved cohort reads back as written; one whose rows file was
    /// damaged to hold a number no person has is refused by name of file,
    /// not read as another person.
    #[test]
    fn damaged_rows_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = CohortStore::new(dir.path(), super::Version::fixed("fp"));
        let meta = CohortMeta {
            name: "c".into(),
            owner: "steward".into(),
            created_at: String::new(),
            definition: "SELECT 1".into(),
            size: 3,
            store: String::new(),
            lineage: String::new(),
            delivery: 0,
        };
        store.save(meta, rows(vec![3, 1, 3, 7])).unwrap();
        let loaded = CohortStore::new(dir.path(), super::Version::fixed("fp"))
            .load("c")
            .unwrap();
        assert_eq!(loaded.bitmap.iter().collect::<Vec<_>>(), vec![1, 3, 7]);
        assert_eq!(loaded.rows.num_rows(), 4);

        let path = dir.path().join("cohorts").join("c").join("rows.parquet");
        let mut w =
            ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), rows_schema(), None)
                .unwrap();
        w.write(&rows(vec![1, -4294967295])).unwrap();
        w.close().unwrap();
        let err = CohortStore::new(dir.path(), super::Version::fixed("fp"))
            .load("c")
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("rows.parquet") && text.contains("outside"),
            "{text}"
        );
    }
}
