//! The person layout: a copy of every person-level table, written once into
//! the state folder, with the linked `person_id` stored as a column, split
//! into person ranges and sorted by person and event date.
//!
//! Delivered tables carry long pseudonymous keys (often 64 hex characters);
//! mapping them to `person_id` at query time means decoding every key and a
//! hash lookup per row. The copy replaces the key by two integers: the
//! person number (`__tsunagu_person_id`) and the key's position among the
//! source's sorted keys (`__tsunagu_key_index`, from which `person_key` is
//! read back only when a query asks for it).
//!
//! Every copy is written as one file per range of person numbers, the same
//! ranges for every table of the store ([`PersonRanges`]), each file sorted
//! by (`person_id`, event date). Both facts are declared to DataFusion (a
//! range partitioning on `person_id` and the files' sort order), so windows
//! partitioned by person, aggregates grouped by person and joins on
//! `person_id` between person-level tables run per range, with no
//! repartition and, where the date order is what they ask for, no sort.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::fs::File;
use std::io::{BufReader, BufWriter};

use datafusion::arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::catalog::TableProvider;
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::{Column, ScalarValue, SplitPoint, exec_err};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::logical_expr::{
    ColumnarValue, Expr, Partitioning as LogicalPartitioning, RangePartitioning,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, SortExpr, Volatility, cast,
};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::physical_plan::{ExecutionPlanProperties, SendableRecordBatchStream};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::{CatalogError, Result};
use crate::linkage::SourceKeys;
use crate::tables::{ColumnSource, TableDef};

/// The stored person number of a row in the copy.
pub const PERSON_ID: &str = "__tsunagu_person_id";
/// The stored key position of a row in the copy.
pub const KEY_INDEX: &str = "__tsunagu_key_index";

/// Where the copies of a derived state folder live.
pub fn layout_dir(derived: &Path) -> PathBuf {
    derived.join("layout")
}

/// Where the copy of a table lives inside a derived state folder.
pub fn copy_dir(derived: &Path, def: &TableDef) -> PathBuf {
    layout_dir(derived).join(&def.schema).join(&def.name)
}

/// How the person numbers of a store are split into the copies' ranges:
/// `count` ranges of `width` numbers each, from 0; the last range also holds
/// every later number (persons added by later deliveries) and rows without
/// a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonRanges {
    pub count: usize,
    pub width: u64,
}

impl PersonRanges {
    const FILE: &str = "ranges.json";

    /// `count` ranges for a store of `persons`, by default one per core of
    /// this machine, the partitions DataFusion plans with by default. (More
    /// ranges than cores run more tasks than cores for every query on one
    /// machine, and starve other sessions; fewer leave cores idle. On a
    /// cluster, the ranges are the tasks a scan is cut into.)
    pub fn for_persons(persons: u64, count: Option<usize>) -> Self {
        let count = count.filter(|&c| c > 0).unwrap_or_else(cores);
        PersonRanges {
            count,
            width: persons.div_ceil(count as u64).max(1),
        }
    }

    /// The ranges saved in a layout folder.
    pub fn load(layout: &Path) -> Result<Self> {
        let path = layout.join(Self::FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| CatalogError::state(&path, e))?;
        let ranges: PersonRanges = serde_json::from_str(&text)
            .map_err(|e| CatalogError::state(&path, std::io::Error::other(e.to_string())))?;
        if ranges.count == 0 || ranges.width == 0 {
            return Err(CatalogError::state(
                &path,
                std::io::Error::other("no person ranges"),
            ));
        }
        Ok(ranges)
    }

    /// Saves the ranges into a layout folder.
    pub fn save(&self, layout: &Path) -> Result<()> {
        std::fs::create_dir_all(layout).map_err(|e| CatalogError::state(layout, e))?;
        let path = layout.join(Self::FILE);
        let text = serde_json::to_string(self)
            .map_err(|e| CatalogError::state(&path, std::io::Error::other(e.to_string())))?;
        std::fs::write(&path, text).map_err(|e| CatalogError::state(&path, e))
    }

    /// The first person number of each range but the first.
    fn split_points(&self) -> Vec<SplitPoint> {
        (1..self.count as u64)
            .map(|i| SplitPoint::new(vec![ScalarValue::Int64(Some((i * self.width) as i64))]))
            .collect()
    }
}

/// The file of range `i` in a copy folder.
fn range_file(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("range-{i:05}.parquet"))
}

/// The copy's files, one per range in range order (none when the table has
/// no copy).
pub fn copy_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut files = Vec::new();
    for e in entries {
        let path = e.map_err(|e| CatalogError::state(dir, e))?.path();
        if path.extension().is_some_and(|x| x == "parquet") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Removes the work folders of copies (named `….<process id>`) left in
/// `work_root` by processes no longer running. Where `/proc` is missing
/// (not Linux) nothing is removed.
pub fn remove_abandoned(work_root: &Path) {
    let Ok(entries) = std::fs::read_dir(work_root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name.rsplit('.').next().and_then(|p| p.parse::<u32>().ok());
        let gone = pid.is_some_and(|p| {
            Path::new("/proc/self").exists() && !Path::new(&format!("/proc/{p}")).exists()
        });
        if gone {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
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

/// The delivered column a person's rows are ordered by within the copy: the
/// shown event date (`*_start_date`, else the first `*_date`), when the
/// files hold it as a date.
pub fn event_date(def: &TableDef) -> Option<&str> {
    let dated = |suffix: &str| {
        def.columns.iter().find_map(|c| match &c.source {
            ColumnSource::File(f) if c.name.ends_with(suffix) => {
                let t = def.file_schema.field_with_name(f).ok()?.data_type();
                matches!(t, DataType::Date32 | DataType::Timestamp(..)).then_some(f.as_str())
            }
            _ => None,
        })
    };
    dated("_start_date").or_else(|| dated("_date"))
}

/// The order of rows within each file of the copy.
fn copy_order(def: &TableDef) -> Vec<SortExpr> {
    let column = |n: &str| Expr::Column(Column::new_unqualified(n));
    let mut order = vec![column(PERSON_ID).sort(true, false)];
    if let Some(date) = event_date(def) {
        order.push(column(date).sort(true, false));
    }
    order
}

/// A provider reading the copy of `def`, with its ranges and sort order
/// declared. The files must be those [`write_copy`] wrote: one per range.
pub fn copy_provider(
    def: &TableDef,
    files: &[PathBuf],
    ranges: &PersonRanges,
) -> Result<Arc<dyn TableProvider>> {
    if files.len() != ranges.count {
        return Err(CatalogError::state(
            files.first().map_or(Path::new("-"), |f| f.as_path()),
            std::io::Error::other(format!(
                "the person layout of {}.{} has {} files for {} ranges",
                def.schema,
                def.name,
                files.len(),
                ranges.count
            )),
        ));
    }
    let urls = files
        .iter()
        .map(|p| ListingTableUrl::parse(p.to_string_lossy()))
        .collect::<datafusion::error::Result<Vec<_>>>()?;
    let column = |n: &str| Expr::Column(Column::new_unqualified(n));
    let partitioning = RangePartitioning::try_new(
        vec![column(PERSON_ID).sort(true, false)],
        ranges.split_points(),
    )?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_file_sort_order(vec![copy_order(def)])
        .with_output_partitioning(Some(LogicalPartitioning::Range(partitioning)));
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(copy_schema(def));
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// Rows of one bucket the writer aims at: a bucket is sorted in memory.
const BUCKET_ROWS: u64 = 1_000_000;
/// At most this many buckets per range (open files while the copy is written).
const MAX_BUCKETS: u64 = 256;

/// Writes the copy of a person-level table into `dir` (which must not
/// exist): one file per range of `ranges`, each sorted by person and event
/// date.
///
/// Two passes, with memory bounded by one bucket per core. First the rows
/// are read (all cores) and appended, unsorted, to bucket files (Arrow
/// IPC) of consecutive person numbers, several buckets per range so each
/// holds about [`BUCKET_ROWS`]. Then each range (one per core at a time)
/// reads its buckets in order, sorts each in memory and appends it to the
/// range's Parquet file; the buckets are removed.
pub async fn write_copy(
    def: &TableDef,
    keys: Arc<SourceKeys>,
    dir: &Path,
    ranges: &PersonRanges,
) -> Result<Vec<PathBuf>> {
    let Some(key) = &def.key else {
        return Ok(Vec::new());
    };
    let started = std::time::Instant::now();
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
    let plan = ctx
        .read_table(def.file_provider()?)?
        .select(inner)?
        .select(outer)?
        .create_physical_plan()
        .await?;
    let schema = copy_schema(def);
    let per_range = def
        .rows
        .div_ceil(ranges.count as u64 * BUCKET_ROWS)
        .clamp(1, MAX_BUCKETS);
    let buckets = Buckets {
        dir: dir.to_path_buf(),
        ranges: *ranges,
        per_range,
        person_at: schema.index_of(PERSON_ID)?,
        date_at: event_date(def).map(|d| schema.index_of(d)).transpose()?,
        schema,
    };
    // First pass: every partition of the scan into its own bucket files.
    let mut tasks = Vec::new();
    for p in 0..plan.output_partitioning().partition_count() {
        let stream = plan.execute(p, ctx.task_ctx())?;
        let b = buckets.clone();
        tasks.push(SpawnedTask::spawn(async move { b.fill(p, stream).await }));
    }
    let mut writers = 0;
    for task in tasks {
        task.join_unwind().await.map_err(join_error)??;
        writers += 1;
    }
    // Second pass: each range from its buckets, sorted.
    let mut tasks = Vec::new();
    for r in 0..ranges.count {
        let b = buckets.clone();
        tasks.push(SpawnedTask::spawn_blocking(move || {
            b.write_range(r, writers)
        }));
        if tasks.len() == ranges.count.min(cores()) {
            tasks.remove(0).join_unwind().await.map_err(join_error)??;
        }
    }
    for task in tasks {
        task.join_unwind().await.map_err(join_error)??;
    }
    log::info!(
        "person layout of {}.{} ({} rows) written in {:.1?}",
        def.schema,
        def.name,
        def.rows,
        started.elapsed()
    );
    copy_files(dir)
}

/// The machine's cores (one when unknown).
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn join_error(e: impl std::error::Error + Send + Sync + 'static) -> CatalogError {
    datafusion::error::DataFusionError::External(Box::new(e)).into()
}

fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::LZ4_RAW)
        .build()
}

/// The bucket files of one copy being written.
#[derive(Clone)]
struct Buckets {
    dir: PathBuf,
    ranges: PersonRanges,
    /// Buckets per range.
    per_range: u64,
    schema: SchemaRef,
    person_at: usize,
    date_at: Option<usize>,
}

impl Buckets {
    /// The bucket of a person number (rows without one go last).
    fn of(&self, person: Option<i64>) -> usize {
        let count = self.ranges.count as u64;
        let width = self.ranges.width;
        let last = (count * self.per_range - 1) as usize;
        let Some(p) = person.and_then(|p| u64::try_from(p).ok()) else {
            return last;
        };
        let range = (p / width).min(count - 1);
        let within = ((p - range * width) * self.per_range / width).min(self.per_range - 1);
        ((range * self.per_range + within) as usize).min(last)
    }

    fn file(&self, bucket: usize, writer: usize) -> PathBuf {
        self.dir
            .join(format!("bucket-{bucket:06}-{writer:03}.arrow"))
    }

    /// Appends the rows of one stream to this writer's bucket files.
    async fn fill(self, writer: usize, mut stream: SendableRecordBatchStream) -> Result<()> {
        let total = self.ranges.count * self.per_range as usize;
        let mut files: Vec<Option<StreamWriter<BufWriter<File>>>> =
            (0..total).map(|_| None).collect();
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); total];
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let batch = RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())?;
            let persons = batch.column(self.person_at).as_primitive::<Int64Type>();
            for (i, p) in persons.iter().enumerate() {
                rows[self.of(p)].push(i as u32);
            }
            for (b, indices) in rows.iter_mut().enumerate().filter(|(_, r)| !r.is_empty()) {
                let part = take_record_batch(&batch, &UInt32Array::from(std::mem::take(indices)))?;
                let w = match &mut files[b] {
                    Some(w) => w,
                    slot => {
                        let path = self.file(b, writer);
                        let file =
                            File::create(&path).map_err(|e| CatalogError::state(&path, e))?;
                        slot.insert(StreamWriter::try_new(BufWriter::new(file), &self.schema)?)
                    }
                };
                w.write(&part)?;
            }
        }
        for w in files.into_iter().flatten() {
            w.into_inner()?;
        }
        Ok(())
    }

    /// The rows of `batch` in (person, event date) order, rows without a
    /// person or a date after the others, ties in their order in `batch`.
    fn order_of(&self, batch: &RecordBatch) -> Result<UInt32Array> {
        let persons = batch.column(self.person_at).as_primitive::<Int64Type>();
        // Dates and timestamps alike, as their integer values.
        let dates = self
            .date_at
            .map(|d| datafusion::arrow::compute::cast(batch.column(d), &DataType::Int64))
            .transpose()?;
        let dates = dates.as_ref().map(|d| d.as_primitive::<Int64Type>());
        // (person, date missing, date shifted to unsigned, row): compared as
        // integers instead of through Arrow's comparators.
        let mut keys: Vec<(u64, bool, u64, u32)> = (0..batch.num_rows())
            .map(|i| {
                let person = if persons.is_valid(i) {
                    persons.value(i) as u64
                } else {
                    u64::MAX
                };
                let date = dates.filter(|d| d.is_valid(i)).map(|d| d.value(i));
                let shifted = date.map_or(0, |d| (d as u64) ^ (1 << 63));
                (person, date.is_none(), shifted, i as u32)
            })
            .collect();
        keys.sort_unstable();
        Ok(keys.into_iter().map(|k| k.3).collect())
    }

    /// Writes range `r`'s file from its buckets, each sorted in memory, and
    /// removes them.
    fn write_range(self, r: usize, writers: usize) -> Result<()> {
        let path = range_file(&self.dir, r);
        let file = File::create(&path).map_err(|e| CatalogError::state(&path, e))?;
        let mut out = ArrowWriter::try_new(file, self.schema.clone(), Some(writer_properties()))
            .map_err(datafusion::error::DataFusionError::from)?;
        for j in 0..self.per_range as usize {
            let bucket = r * self.per_range as usize + j;
            let mut batches = Vec::new();
            for w in 0..writers {
                let path = self.file(bucket, w);
                let Ok(file) = File::open(&path) else {
                    continue;
                };
                let reader = StreamReader::try_new(BufReader::new(file), None)?;
                for batch in reader {
                    batches.push(batch?);
                }
                std::fs::remove_file(&path).map_err(|e| CatalogError::state(&path, e))?;
            }
            if batches.is_empty() {
                continue;
            }
            let all = concat_batches(&self.schema, &batches)?;
            drop(batches);
            let order = self.order_of(&all)?;
            let sorted = take_record_batch(&all, &order)?;
            out.write(&sorted)
                .map_err(datafusion::error::DataFusionError::from)?;
        }
        out.close()
            .map_err(datafusion::error::DataFusionError::from)?;
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Date32Array;

    #[test]
    fn rows_are_ordered_by_person_then_date_with_missing_ones_last() {
        let schema = Arc::new(Schema::new(vec![
            Field::new(PERSON_ID, DataType::Int64, true),
            Field::new("d", DataType::Date32, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![
                    Some(2),
                    None,
                    Some(1),
                    Some(2),
                    Some(1),
                    Some(2),
                    Some(1),
                ])),
                Arc::new(Date32Array::from(vec![
                    Some(5),
                    Some(0),
                    None,
                    Some(-3),
                    Some(7),
                    Some(5),
                    Some(-1),
                ])),
            ],
        )
        .unwrap();
        let buckets = Buckets {
            dir: PathBuf::new(),
            ranges: PersonRanges::for_persons(3, Some(1)),
            per_range: 1,
            schema,
            person_at: 0,
            date_at: Some(1),
        };
        let order = buckets.order_of(&batch).unwrap();
        // Person 1: dates -1, 7, missing; person 2: -3, then the two 5s in
        // their order; the row without a person last.
        assert_eq!(order.values().to_vec(), vec![6, 4, 2, 3, 0, 5, 1]);
    }
}
