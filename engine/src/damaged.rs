//! Errors from damaged Parquet files name the file.
//!
//! A page that cannot be decoded (a file damaged on disk or in transfer,
//! with its footer intact, so the store opened) fails the query with the
//! Parquet reader's message, which does not say which file it was reading:
//! DataFusion's scans read many files per partition and keep no file in
//! their errors. When a query fails that way, the files its scans read are
//! read again, column by column as the query read them, and the first one
//! that fails is named (relative to the store, or to the state folder for
//! derived files) in a [`DamagedFile`] error. This costs a re-read of the
//! scanned files, on the error path only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::source_as_provider;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::errors::ParquetError;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{StreamExt, stream};

use crate::error::DamagedFile;

/// Where a session's files live, to name them in messages.
#[derive(Debug, Clone)]
pub(crate) struct Roots {
    pub store: PathBuf,
    pub state: PathBuf,
}

impl Roots {
    fn name(&self, path: &Path) -> (String, bool) {
        if let Ok(rel) = path.strip_prefix(&self.store) {
            return (rel.display().to_string(), false);
        }
        if let Ok(rel) = path.strip_prefix(&self.state) {
            return (format!("{} (state folder)", rel.display()), true);
        }
        (path.display().to_string(), false)
    }
}

/// True when an error comes from decoding Parquet data.
fn is_decode_error(e: &DataFusionError) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if err.downcast_ref::<ParquetError>().is_some()
            || matches!(
                err.downcast_ref::<DataFusionError>(),
                Some(DataFusionError::ParquetError(_))
            )
            || matches!(
                err.downcast_ref::<datafusion::arrow::error::ArrowError>(),
                Some(datafusion::arrow::error::ArrowError::ParquetError(_))
            )
        {
            return true;
        }
        current = err.source();
    }
    false
}

/// The files the plan's scans read, with the columns read from each.
fn scanned_files(plan: &LogicalPlan) -> Vec<(PathBuf, Option<Vec<String>>)> {
    let mut out = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = source_as_provider(&scan.source)
            && let Some(listing) = provider.as_ref().downcast_ref::<ListingTable>()
        {
            let schema = scan.source.schema();
            let columns = scan.projection.as_ref().map(|p| {
                p.iter()
                    .filter_map(|&i| schema.fields().get(i).map(|f| f.name().clone()))
                    .collect()
            });
            for url in listing.table_paths() {
                if let Ok(path) = url.get_url().to_file_path() {
                    out.push((path, columns.clone()));
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out
}

/// Reads a file's columns to the end; the error if it cannot.
fn check(path: &Path, columns: Option<&[String]>) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
    if let Some(columns) = columns.filter(|c| !c.is_empty()) {
        let mask =
            ProjectionMask::columns(builder.parquet_schema(), columns.iter().map(String::as_str));
        builder = builder.with_projection(mask);
    }
    let reader = builder.build().map_err(|e| e.to_string())?;
    for batch in reader {
        batch.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The first of `files` that cannot be read, and why.
fn find_damaged(files: Vec<(PathBuf, Option<Vec<String>>)>) -> Option<(PathBuf, String)> {
    let mut seen = std::collections::HashSet::new();
    for (path, columns) in files {
        if !seen.insert((path.clone(), columns.clone())) {
            continue;
        }
        if let Err(detail) = check(&path, columns.as_deref()) {
            return Some((path, detail));
        }
    }
    None
}

/// Wraps a query's stream: a Parquet decode error becomes a [`DamagedFile`]
/// error naming the file, when a file of the plan's scans is found damaged.
pub(crate) fn name_damaged_files(
    inner: SendableRecordBatchStream,
    plan: LogicalPlan,
    roots: Arc<Roots>,
) -> SendableRecordBatchStream {
    let schema = inner.schema();
    let state = Some((inner, plan, roots));
    let batches = stream::unfold(state, |state| async move {
        let (mut inner, plan, roots) = state?;
        match inner.next().await? {
            Ok(batch) => Some((Ok(batch), Some((inner, plan, roots)))),
            Err(e) if is_decode_error(&e) => {
                drop(inner);
                let files = scanned_files(&plan);
                let found = tokio::task::spawn_blocking(move || find_damaged(files))
                    .await
                    .ok()
                    .flatten();
                let err = match found {
                    Some((path, detail)) => {
                        let (path, derived) = roots.name(&path);
                        DataFusionError::External(Box::new(DamagedFile {
                            path,
                            detail,
                            derived,
                        }))
                    }
                    None => e,
                };
                Some((Err(err), None))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, batches))
}
