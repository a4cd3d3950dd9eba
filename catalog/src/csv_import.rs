//! Delivered CSV tables, checked and converted once into typed Parquet in the
//! state folder, so that every query reads Parquet.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringArray,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::csv::ReaderBuilder;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;

use crate::error::{CatalogError, Result};

/// Decides the type of a CSV column by name; `None` means "infer from the data".
pub type TypeFor<'a> = &'a dyn Fn(&str) -> Option<DataType>;

const BATCH: usize = 64 * 1024;

/// Converts the CSV files of one table into one Parquet file at `out`.
///
/// `shown` maps a file to the path used in messages (relative to the store).
pub fn convert(
    files: &[PathBuf],
    shown: &dyn Fn(&Path) -> PathBuf,
    type_for: TypeFor<'_>,
    out: &Path,
) -> Result<SchemaRef> {
    let header = read_header(&files[0], &shown(&files[0]))?;
    for f in &files[1..] {
        if read_header(f, &shown(f))? != header {
            return Err(CatalogError::malformed(
                shown(f),
                None,
                Some(1),
                format!(
                    "the header differs from that of {}",
                    shown(&files[0]).display()
                ),
            ));
        }
    }
    let mut types: Vec<Option<DataType>> = header.iter().map(|c| type_for(c)).collect();
    if types.iter().any(Option::is_none) {
        let inferred = infer(files, shown, &header, &types)?;
        for (t, i) in types.iter_mut().zip(inferred) {
            if t.is_none() {
                *t = Some(i);
            }
        }
    }
    let schema = Arc::new(Schema::new(
        header
            .iter()
            .zip(&types)
            .map(|(name, t)| Field::new(name, t.clone().unwrap_or(DataType::Utf8), true))
            .collect::<Vec<_>>(),
    ));
    let out_file = File::create(out).map_err(|e| CatalogError::state(out, e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut writer = ArrowWriter::try_new(out_file, schema.clone(), Some(props))
        .map_err(|e| CatalogError::state(out, std::io::Error::other(e)))?;
    for file in files {
        let shown_file = shown(file);
        for_each_batch(file, &shown_file, header.len(), |batch, first_line| {
            let columns = batch
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(col, field)| {
                    let strings = col
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .expect("CSV is read as text");
                    parse_column(strings, field.data_type()).map_err(|(row, problem)| {
                        CatalogError::malformed(
                            &shown_file,
                            Some(field.name()),
                            Some(first_line + row as u64),
                            problem,
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let typed = RecordBatch::try_new(schema.clone(), columns)
                .map_err(|e| CatalogError::state(out, std::io::Error::other(e)))?;
            writer
                .write(&typed)
                .map_err(|e| CatalogError::state(out, std::io::Error::other(e)))
        })?;
    }
    writer
        .close()
        .map_err(|e| CatalogError::state(out, std::io::Error::other(e)))?;
    Ok(schema)
}

/// The column names of a CSV file's header row.
pub fn read_header(path: &Path, shown: &Path) -> Result<Vec<String>> {
    let file = File::open(path).map_err(|e| CatalogError::io(shown, e))?;
    let mut line = String::new();
    BufReader::new(file).read_line(&mut line).map_err(|e| {
        CatalogError::malformed(
            shown,
            None,
            Some(1),
            format!("cannot read the header row ({e})"),
        )
    })?;
    let line = line
        .trim_end_matches(['\n', '\r'])
        .trim_start_matches('\u{feff}');
    if line.is_empty() {
        return Err(CatalogError::malformed(
            shown,
            None,
            Some(1),
            "the file has no header row",
        ));
    }
    let names: Vec<String> = split_header(line);
    for (i, n) in names.iter().enumerate() {
        if n.is_empty() {
            return Err(CatalogError::malformed(
                shown,
                None,
                Some(1),
                format!("header column {} has no name", i + 1),
            ));
        }
        if names[..i].contains(n) {
            return Err(CatalogError::malformed(
                shown,
                Some(n),
                Some(1),
                "the column appears twice in the header",
            ));
        }
    }
    Ok(names)
}

/// Splits a header row, honouring double quotes.
fn split_header(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().map(|s| s.trim().to_owned()).collect()
}

/// Reads a CSV file as text columns, calling `f` with each batch and the line of its first row.
fn for_each_batch(
    path: &Path,
    shown: &Path,
    width: usize,
    mut f: impl FnMut(&RecordBatch, u64) -> Result<()>,
) -> Result<()> {
    let schema = Arc::new(Schema::new(
        (0..width)
            .map(|i| Field::new(format!("c{i}"), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let file = File::open(path).map_err(|e| CatalogError::io(shown, e))?;
    let reader = ReaderBuilder::new(schema)
        .with_header(true)
        .with_batch_size(BATCH)
        .build(file)
        .map_err(|e| CatalogError::malformed(shown, None, None, e.to_string()))?;
    let mut line = 2u64;
    for batch in reader {
        let batch = batch.map_err(|e| {
            CatalogError::malformed(
                shown,
                None,
                None,
                format!("not valid CSV: {}", csv_problem(&e.to_string())),
            )
        })?;
        f(&batch, line)?;
        line += batch.num_rows() as u64;
    }
    Ok(())
}

/// Keeps a CSV reader's message but drops anything that could quote data.
fn csv_problem(message: &str) -> String {
    let m = message.trim_start_matches("Csv error: ");
    m.split(':').next().unwrap_or(m).to_owned()
}

/// Infers a type for each column whose type is not given.
fn infer(
    files: &[PathBuf],
    shown: &dyn Fn(&Path) -> PathBuf,
    header: &[String],
    given: &[Option<DataType>],
) -> Result<Vec<DataType>> {
    const INT: u8 = 1;
    const FLOAT: u8 = 2;
    const DATE: u8 = 4;
    const DATETIME: u8 = 8;
    const BOOL: u8 = 16;
    let mut possible = vec![INT | FLOAT | DATE | DATETIME | BOOL; header.len()];
    let mut seen = vec![false; header.len()];
    for file in files {
        for_each_batch(file, &shown(file), header.len(), |batch, _| {
            for (i, col) in batch.columns().iter().enumerate() {
                if given[i].is_some() || possible[i] == 0 {
                    continue;
                }
                let strings = col.as_any().downcast_ref::<StringArray>().expect("text");
                for v in strings.iter().flatten() {
                    seen[i] = true;
                    let p = &mut possible[i];
                    if *p & INT != 0 && v.parse::<i64>().is_err() {
                        *p &= !INT;
                    }
                    if *p & FLOAT != 0 && v.parse::<f64>().is_err() {
                        *p &= !FLOAT;
                    }
                    if *p & DATE != 0 && parse_date(v).is_none() {
                        *p &= !DATE;
                    }
                    if *p & DATETIME != 0 && parse_timestamp(v).is_none() {
                        *p &= !DATETIME;
                    }
                    if *p & BOOL != 0 && parse_bool(v).is_none() {
                        *p &= !BOOL;
                    }
                    if *p == 0 {
                        break;
                    }
                }
            }
            Ok(())
        })?;
    }
    Ok(possible
        .iter()
        .zip(seen)
        .map(|(&p, seen)| match p {
            _ if !seen => DataType::Utf8,
            p if p & INT != 0 => DataType::Int64,
            p if p & FLOAT != 0 => DataType::Float64,
            p if p & DATE != 0 => DataType::Date32,
            p if p & DATETIME != 0 => DataType::Timestamp(TimeUnit::Microsecond, None),
            p if p & BOOL != 0 => DataType::Boolean,
            _ => DataType::Utf8,
        })
        .collect())
}

/// Converts a text column to `target`; on failure, the row index and the problem.
fn parse_column(
    strings: &StringArray,
    target: &DataType,
) -> std::result::Result<ArrayRef, (usize, String)> {
    fn build<B, T>(
        strings: &StringArray,
        mut b: B,
        parse: impl Fn(&str) -> Option<T>,
        append: impl Fn(&mut B, Option<T>),
        finish: impl FnOnce(B) -> ArrayRef,
        what: &str,
    ) -> std::result::Result<ArrayRef, (usize, String)> {
        for (row, v) in strings.iter().enumerate() {
            match v {
                None => append(&mut b, None),
                Some(s) => match parse(s) {
                    Some(x) => append(&mut b, Some(x)),
                    None => return Err((row, format!("the value is not {what}"))),
                },
            }
        }
        Ok(finish(b))
    }
    let n = strings.len();
    match target {
        DataType::Utf8 => Ok(Arc::new(strings.clone())),
        DataType::Int64 => build(
            strings,
            Int64Builder::with_capacity(n),
            |s| s.trim().parse::<i64>().ok(),
            |b, v| b.append_option(v),
            |mut b| Arc::new(b.finish()),
            "an integer",
        ),
        DataType::Float64 => build(
            strings,
            Float64Builder::with_capacity(n),
            |s| s.trim().parse::<f64>().ok(),
            |b, v| b.append_option(v),
            |mut b| Arc::new(b.finish()),
            "a number",
        ),
        DataType::Boolean => build(
            strings,
            BooleanBuilder::with_capacity(n),
            parse_bool,
            |b, v| b.append_option(v),
            |mut b| Arc::new(b.finish()),
            "a boolean",
        ),
        DataType::Date32 => build(
            strings,
            Date32Builder::with_capacity(n),
            parse_date,
            |b, v| b.append_option(v),
            |mut b| Arc::new(b.finish()),
            "a date (YYYY-MM-DD)",
        ),
        DataType::Timestamp(TimeUnit::Microsecond, None) => build(
            strings,
            TimestampMicrosecondBuilder::with_capacity(n),
            parse_timestamp,
            |b, v| b.append_option(v),
            |mut b| Arc::new(b.finish()),
            "a date-time (YYYY-MM-DD HH:MM:SS)",
        ),
        other => Err((0, format!("unsupported CSV column type {other}"))),
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim() {
        "true" | "TRUE" | "True" | "t" => Some(true),
        "false" | "FALSE" | "False" | "f" => Some(false),
        _ => None,
    }
}

/// Parses `YYYY-MM-DD` (a time part after it is ignored) into days since 1970-01-01.
pub fn parse_date(s: &str) -> Option<i32> {
    let b = s.trim().as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    if b.len() > 10 && b[10] != b' ' && b[10] != b'T' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as u32)
        })
    };
    let date = chrono::NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    if b.len() > 10 {
        parse_time(&s.trim()[11..])?;
    }
    Some((date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?).num_days() as i32)
}

/// Parses `HH:MM[:SS[.ffffff]]` into microseconds since midnight.
fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim_end_matches('Z');
    let mut parts = s.splitn(3, ':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let sec: f64 = match parts.next() {
        Some(x) => x.parse().ok()?,
        None => 0.0,
    };
    if !(0..24).contains(&h) || !(0..60).contains(&m) || !(0.0..61.0).contains(&sec) {
        return None;
    }
    Some((h * 3600 + m * 60) * 1_000_000 + (sec * 1_000_000.0).round() as i64)
}

/// Parses `YYYY-MM-DD[ HH:MM:SS[.ffffff]]` into microseconds since 1970-01-01.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let t = s.trim();
    let days = parse_date(&t[..t.len().min(10)])? as i64;
    let time = if t.len() > 10 {
        if !matches!(t.as_bytes()[10], b' ' | b'T') {
            return None;
        }
        parse_time(&t[11..])?
    } else {
        0
    };
    Some(days * 86_400_000_000 + time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_parse_strictly() {
        assert_eq!(parse_date("1970-01-02"), Some(1));
        assert_eq!(parse_date("2020-02-30"), None);
        assert_eq!(parse_date("2020/01/01"), None);
        assert_eq!(parse_date("2020-01-01 00:00:00"), parse_date("2020-01-01"));
        assert_eq!(parse_date("2020-01-01x"), None);
        assert_eq!(parse_timestamp("1970-01-01 00:00:01"), Some(1_000_000));
        assert_eq!(parse_timestamp("1970-01-02"), Some(86_400_000_000));
        assert_eq!(parse_timestamp("1970-01-01 25:00:00"), None);
    }

    #[test]
    fn header_split_honours_quotes() {
        assert_eq!(split_header(r#"a,"b,c",d"#), vec!["a", "b,c", "d"]);
    }

    fn convert_text(text: &str, type_for: TypeFor<'_>) -> Result<SchemaRef> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.csv");
        std::fs::write(&f, text).unwrap();
        convert(
            &[f],
            &|p| p.file_name().unwrap().into(),
            type_for,
            &dir.path().join("t.parquet"),
        )
    }

    #[test]
    fn bad_values_are_located() {
        let e = convert_text("id,d\n1,2020-01-01\n2,2020-13-01\n", &|c| {
            (c == "d").then_some(DataType::Date32)
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("t.csv, line 3, column d"), "{e}");
        assert!(e.contains("not a date"), "{e}");
        assert!(!e.contains("2020-13-01"), "values are never echoed: {e}");
    }

    #[test]
    fn inference_picks_the_narrowest_type() {
        let s = convert_text(
            "a,b,c,d,e\n1,1.5,2020-01-01,x,\n2,2,2020-01-02,3,\n",
            &|_| None,
        )
        .unwrap();
        let types: Vec<_> = s.fields().iter().map(|f| f.data_type().clone()).collect();
        assert_eq!(
            types,
            vec![
                DataType::Int64,
                DataType::Float64,
                DataType::Date32,
                DataType::Utf8,
                DataType::Utf8
            ]
        );
    }
}
