//! Column builders that flush to one Parquet file per table.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Date32Builder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;

use crate::GenerateError;

/// A value of one cell.
pub enum V<'a> {
    I(i64),
    F(f64),
    S(&'a str),
    D(i32),
    Null,
}

enum Col {
    I(Int64Builder),
    F(Float64Builder),
    S(StringBuilder),
    D(Date32Builder),
}

/// Rows of one table being built in memory.
pub struct RowBuf {
    schema: SchemaRef,
    cols: Vec<Col>,
    rows: usize,
}

/// The Arrow schema of columns given as (name, type letter: i, f, s, d).
pub fn schema(columns: &[(&str, char)]) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, t)| {
            let dt = match t {
                'i' => DataType::Int64,
                'f' => DataType::Float64,
                'd' => DataType::Date32,
                _ => DataType::Utf8,
            };
            Field::new(*n, dt, true)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

impl RowBuf {
    /// An empty buffer for `schema`.
    pub fn new(schema: SchemaRef) -> Self {
        let mut b = RowBuf {
            schema,
            cols: Vec::new(),
            rows: 0,
        };
        b.reset();
        b
    }

    fn reset(&mut self) {
        self.cols = self
            .schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Int64 => Col::I(Int64Builder::new()),
                DataType::Float64 => Col::F(Float64Builder::new()),
                DataType::Date32 => Col::D(Date32Builder::new()),
                _ => Col::S(StringBuilder::new()),
            })
            .collect();
        self.rows = 0;
    }

    /// Appends one row; values must follow the column order and types.
    pub fn row(&mut self, values: &[V<'_>]) {
        debug_assert_eq!(values.len(), self.cols.len());
        for (c, v) in self.cols.iter_mut().zip(values) {
            match (c, v) {
                (Col::I(b), V::I(x)) => b.append_value(*x),
                (Col::F(b), V::F(x)) => b.append_value(*x),
                (Col::S(b), V::S(x)) => b.append_value(x),
                (Col::D(b), V::D(x)) => b.append_value(*x),
                (Col::I(b), V::Null) => b.append_null(),
                (Col::F(b), V::Null) => b.append_null(),
                (Col::S(b), V::Null) => b.append_null(),
                (Col::D(b), V::Null) => b.append_null(),
                _ => unreachable!("generator tables are written with values of their column types"),
            }
        }
        self.rows += 1;
    }

    /// Takes the rows built so far as a batch.
    pub fn take(&mut self) -> RecordBatch {
        let arrays: Vec<ArrayRef> = self
            .cols
            .iter_mut()
            .map(|c| -> ArrayRef {
                match c {
                    Col::I(b) => Arc::new(b.finish()),
                    Col::F(b) => Arc::new(b.finish()),
                    Col::S(b) => Arc::new(b.finish()),
                    Col::D(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        let batch =
            RecordBatch::try_new(self.schema.clone(), arrays).expect("builders follow the schema");
        self.reset();
        batch
    }
}

/// The batch with its concept id columns (`*concept_id`) mapped through `map`.
pub fn renumber(batch: RecordBatch, map: &std::collections::BTreeMap<i64, i64>) -> RecordBatch {
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::Int64Type;
    let columns: Vec<ArrayRef> = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| -> ArrayRef {
            if !f.name().ends_with("concept_id") || f.data_type() != &DataType::Int64 {
                return c.clone();
            }
            let ids: Int64Array = c
                .as_primitive::<Int64Type>()
                .iter()
                .map(|v| v.map(|v| map.get(&v).copied().unwrap_or(v)))
                .collect();
            Arc::new(ids)
        })
        .collect();
    RecordBatch::try_new(batch.schema(), columns).expect("same schema")
}

/// A Parquet file being written.
pub struct TableFile {
    writer: ArrowWriter<File>,
    path: std::path::PathBuf,
}

impl TableFile {
    /// Creates the file at `path`.
    pub fn create(path: &Path, schema: SchemaRef) -> Result<Self, GenerateError> {
        let file = File::create(path).map_err(|e| GenerateError::io(path, e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(1024 * 1024))
            .build();
        let writer = ArrowWriter::try_new(file, schema, Some(props))
            .map_err(|e| GenerateError::io(path, std::io::Error::other(e)))?;
        Ok(TableFile {
            writer,
            path: path.to_path_buf(),
        })
    }

    /// Appends a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), GenerateError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.writer
            .write(batch)
            .map_err(|e| GenerateError::io(&self.path, std::io::Error::other(e)))
    }

    /// Closes the file.
    pub fn finish(self) -> Result<(), GenerateError> {
        self.writer
            .close()
            .map(|_| ())
            .map_err(|e| GenerateError::io(&self.path, std::io::Error::other(e)))
    }
}

/// A table delivered as a folder of yearly files, one per delivery: rows go
/// to the file of their date's calendar year, and each file's modification
/// time is its delivery, 40 days after the year's end.
pub struct YearlyFiles {
    dir: std::path::PathBuf,
    schema: SchemaRef,
    date_column: usize,
    files: std::collections::BTreeMap<i32, TableFile>,
}

impl YearlyFiles {
    /// The folder `dir` for a table whose rows are dated by `date_column`.
    pub fn create(dir: &Path, schema: SchemaRef, date_column: &str) -> Result<Self, GenerateError> {
        std::fs::create_dir_all(dir).map_err(|e| GenerateError::io(dir, e))?;
        let date_column = schema
            .index_of(date_column)
            .map_err(|e| GenerateError::Invalid(e.to_string()))?;
        Ok(YearlyFiles {
            dir: dir.to_path_buf(),
            schema,
            date_column,
            files: Default::default(),
        })
    }

    /// Appends a batch, row by row to the file of its year.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), GenerateError> {
        use datafusion::arrow::array::{AsArray, UInt32Array};
        use datafusion::arrow::datatypes::Date32Type;
        let dates = batch.column(self.date_column).as_primitive::<Date32Type>();
        let mut rows: std::collections::BTreeMap<i32, Vec<u32>> = Default::default();
        for (i, d) in dates.iter().enumerate() {
            let year = d.map(crate::sim::year_of).unwrap_or(0);
            rows.entry(year).or_default().push(i as u32);
        }
        for (year, idx) in rows {
            let idx = UInt32Array::from(idx);
            let columns = batch
                .columns()
                .iter()
                .map(|c| datafusion::arrow::compute::take(c, &idx, None))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| GenerateError::Invalid(e.to_string()))?;
            let part = RecordBatch::try_new(self.schema.clone(), columns)
                .map_err(|e| GenerateError::Invalid(e.to_string()))?;
            let file = match self.files.entry(year) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => e.insert(TableFile::create(
                    &self.dir.join(format!("{year}.parquet")),
                    self.schema.clone(),
                )?),
            };
            file.write(&part)?;
        }
        Ok(())
    }

    /// Closes the files and dates each delivery.
    pub fn finish(self) -> Result<(), GenerateError> {
        for (year, file) in self.files {
            let path = file.path.clone();
            file.finish()?;
            let delivered = chrono::NaiveDate::from_ymd_opt(year + 1, 2, 9)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc().timestamp())
                .unwrap_or(0);
            let when =
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(delivered.max(0) as u64);
            std::fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(when))
                .map_err(|e| GenerateError::io(&path, e))?;
        }
        Ok(())
    }
}

/// Where a generated table's rows go: one file, or a folder of deliveries.
pub enum TableSink {
    One(Box<TableFile>),
    Yearly(YearlyFiles),
}

impl TableSink {
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), GenerateError> {
        match self {
            TableSink::One(f) => f.write(batch),
            TableSink::Yearly(f) => f.write(batch),
        }
    }

    pub fn finish(self) -> Result<(), GenerateError> {
        match self {
            TableSink::One(f) => f.finish(),
            TableSink::Yearly(f) => f.finish(),
        }
    }
}
