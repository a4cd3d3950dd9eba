//! Finding the delivered tables of a source folder and reading Parquet footers.

use std::fs::File;
use std::path::{Path, PathBuf};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};

use crate::error::{CatalogError, Result};
use crate::manifest::is_identifier;

/// How a table was delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Parquet,
    Csv,
}

/// A table as found in a delivered folder: its name and its files.
#[derive(Debug, Clone)]
pub struct DeliveredTable {
    /// Table name in SQL.
    pub name: String,
    /// Parquet or CSV.
    pub format: FileFormat,
    /// The data files, sorted by path.
    pub files: Vec<PathBuf>,
}

/// Lists the tables of a folder: `<t>.parquet`, `<t>.csv`, or `<t>/` holding `*.parquet`.
///
/// `rel` is the folder relative to the store, for messages.
pub fn discover(folder: &Path, rel: &Path) -> Result<Vec<DeliveredTable>> {
    let mut tables: Vec<DeliveredTable> = Vec::new();
    let entries = std::fs::read_dir(folder).map_err(|e| CatalogError::io(rel, e))?;
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| CatalogError::io(rel, e))?;
    paths.sort();
    for path in paths {
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if file_name.starts_with('.') {
            continue;
        }
        let (stem, format, files) = if path.is_dir() {
            let files = folder_files(&path, &rel.join(&file_name))?;
            if files.is_empty() {
                continue;
            }
            let format = if files[0].extension().is_some_and(|e| e == "csv") {
                FileFormat::Csv
            } else {
                FileFormat::Parquet
            };
            (file_name.clone(), format, files)
        } else if let Some(stem) = file_name.strip_suffix(".parquet") {
            (stem.to_owned(), FileFormat::Parquet, vec![path.clone()])
        } else if let Some(stem) = file_name.strip_suffix(".csv") {
            (stem.to_owned(), FileFormat::Csv, vec![path.clone()])
        } else {
            continue;
        };
        let name = stem.to_ascii_lowercase();
        if !is_identifier(&name) {
            return Err(CatalogError::malformed(
                rel.join(&file_name),
                None,
                None,
                "the table name is not a valid SQL name (letters, digits and _, starting with a letter)",
            ));
        }
        if let Some(other) = tables.iter().find(|t| t.name == name) {
            return Err(CatalogError::malformed(
                rel.join(&file_name),
                None,
                None,
                format!(
                    "table {name} is delivered twice (also as {})",
                    other.files[0].display()
                ),
            ));
        }
        tables.push(DeliveredTable {
            name,
            format,
            files,
        });
    }
    Ok(tables)
}

/// The data files of a folder table: all `*.parquet`, or else all `*.csv`, recursively.
fn folder_files(dir: &Path, rel: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    collect(dir, rel, &mut out)?;
    out.sort();
    let parquet: Vec<PathBuf> = out
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .cloned()
        .collect();
    if !parquet.is_empty() {
        return Ok(parquet);
    }
    Ok(out
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect())
}

fn collect(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| CatalogError::io(rel, e))? {
        let path = entry.map_err(|e| CatalogError::io(rel, e))?.path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(['.', '_']));
        if hidden {
            continue;
        }
        if path.is_dir() {
            collect(&path, rel, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads the Arrow schema and row count from a Parquet file's footer.
pub fn parquet_schema(path: &Path, shown_as: &Path) -> Result<(SchemaRef, u64)> {
    let file = File::open(path).map_err(|e| CatalogError::io(shown_as, e))?;
    let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(|e| {
        CatalogError::malformed(
            shown_as,
            None,
            None,
            format!("not a readable Parquet file ({e})"),
        )
    })?;
    let rows = meta.metadata().file_metadata().num_rows().max(0) as u64;
    Ok((meta.schema().clone(), rows))
}
