//! Running a panel's query for a viewer and keeping the answer per snapshot.
//!
//! Queries run in the viewer's own engine session, so what comes back has
//! passed the same release as the viewer's SQL (analysts: counts of at
//! least k persons, rounded, noise; stewards: exact) and is audited as
//! theirs. Answers are cached per (snapshot, viewer, panel, parameters):
//! the same numbers are shown again without running anything.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use serde::Serialize;
use tsunagu_engine::Session;

use crate::error::{DashboardError, Result};
use crate::live::Snapshot;
use crate::spec::Panel;

/// A panel's rows as the page reads them.
#[derive(Debug, Serialize)]
pub struct PanelData {
    pub columns: Vec<Column>,
    /// One array per row, in column order; withheld cells are null.
    pub rows: Vec<Vec<serde_json::Value>>,
    pub snapshot: Snapshot,
    /// The numbers are released (analysts), not exact (stewards).
    pub released: bool,
    pub elapsed_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct Column {
    pub name: String,
    /// `number`, `text`, `date` or `other`.
    pub kind: &'static str,
}

/// True when a panel's answer may change with the saved cohorts.
pub fn reads_cohorts(panel: &Panel) -> bool {
    panel.sql.to_ascii_lowercase().contains("cohort")
}

/// What an answer depends on: the snapshot (the cohorts' part only for
/// panels that read cohorts), who asks, where (the project: its scope,
/// policy and pseudonyms) and in which role, and the panel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    store: u64,
    cohorts: u64,
    user: String,
    database: String,
    role: tsunagu_engine::Role,
    dashboard: String,
    panel: usize,
    params: BTreeMap<String, String>,
}

impl Key {
    pub fn new(
        snapshot: Snapshot,
        session: &Session,
        database: &str,
        dashboard: &str,
        index: usize,
        panel: &Panel,
        params: &BTreeMap<String, String>,
    ) -> Key {
        Key {
            store: snapshot.store,
            cohorts: if reads_cohorts(panel) {
                snapshot.cohorts
            } else {
                0
            },
            user: session.user(),
            database: database.to_owned(),
            role: session.role(),
            dashboard: dashboard.to_owned(),
            panel: index,
            params: params.clone(),
        }
    }
}

/// Answers kept at most; beyond, the oldest snapshot's are dropped first.
const KEPT: usize = 10_000;

/// Answers per snapshot.
#[derive(Default)]
pub struct Cache {
    entries: Mutex<HashMap<Key, Arc<PanelData>>>,
}

impl Cache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<PanelData>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The answer kept for `key`, if any.
    pub fn get(&self, key: &Key) -> Option<Arc<PanelData>> {
        self.lock().get(key).cloned()
    }

    /// Runs the panel in the viewer's session and keeps the answer.
    pub async fn compute(
        &self,
        key: Key,
        snapshot: Snapshot,
        session: &Session,
        panel: &Panel,
        params: &BTreeMap<String, String>,
    ) -> Result<Arc<PanelData>> {
        let started = std::time::Instant::now();
        let query = |e: tsunagu_engine::EngineError| DashboardError::Query(e.client_message());
        let prepared = session
            .prepare(&panel.sql_with(params))
            .await
            .map_err(query)?;
        let stream = session.execute(&prepared, vec![]).await.map_err(query)?;
        let batches = datafusion::physical_plan::common::collect(stream)
            .await
            .map_err(|e| query(e.into()))?;
        let mut data = to_json(&prepared.schema(), &batches)?;
        data.snapshot = snapshot;
        data.released = session.role() != tsunagu_engine::Role::Steward;
        data.elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
        let data = Arc::new(data);
        let mut entries = self.lock();
        // Answers of earlier snapshots are never asked for again.
        entries.retain(|k, _| {
            k.store == snapshot.store && (k.cohorts == 0 || k.cohorts == snapshot.cohorts)
        });
        if entries.len() >= KEPT {
            entries.clear();
        }
        entries.insert(key, data.clone());
        Ok(data)
    }
}

fn kind(t: &DataType) -> &'static str {
    if t.is_numeric() {
        "number"
    } else if matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
        "text"
    } else if matches!(
        t,
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)
    ) {
        "date"
    } else {
        "other"
    }
}

/// Rows as JSON arrays, column by column through Arrow's JSON writer (so
/// numbers stay numbers, dates are ISO text, and two columns of one name
/// keep their own values).
fn to_json(schema: &Schema, batches: &[RecordBatch]) -> Result<PanelData> {
    let columns: Vec<Column> = schema
        .fields()
        .iter()
        .map(|f| Column {
            name: f.name().clone(),
            kind: kind(f.data_type()),
        })
        .collect();
    let internal = |e: &dyn std::fmt::Display| DashboardError::Internal(e.to_string());
    let mut rows: Vec<Vec<serde_json::Value>> = Vec::new();
    for batch in batches {
        let mut values: Vec<Vec<serde_json::Value>> = Vec::with_capacity(batch.num_columns());
        for (i, field) in batch.schema().fields().iter().enumerate() {
            let one = Arc::new(Schema::new(vec![field.as_ref().clone().with_name("v")]));
            let part = RecordBatch::try_new(one, vec![batch.column(i).clone()])
                .map_err(|e| internal(&e))?;
            let mut buf = Vec::new();
            {
                let mut w = datafusion::arrow::json::ArrayWriter::new(&mut buf);
                w.write(&part).map_err(|e| internal(&e))?;
                w.finish().map_err(|e| internal(&e))?;
            }
            let objects: Vec<serde_json::Map<String, serde_json::Value>> = if buf.is_empty() {
                vec![]
            } else {
                serde_json::from_slice(&buf).map_err(|e| internal(&e))?
            };
            values.push(
                objects
                    .into_iter()
                    .map(|mut o| o.remove("v").unwrap_or(serde_json::Value::Null))
                    .collect(),
            );
        }
        for r in 0..batch.num_rows() {
            rows.push(
                values
                    .iter()
                    .map(|c| c.get(r).cloned().unwrap_or(serde_json::Value::Null))
                    .collect(),
            );
        }
    }
    Ok(PanelData {
        columns,
        rows,
        snapshot: Snapshot {
            store: 0,
            cohorts: 0,
        },
        released: false,
        elapsed_ms: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Date32Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::Field;

    #[test]
    fn rows_keep_numbers_nulls_and_dates() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("year", DataType::Int64, true),
            Field::new("source", DataType::Utf8, true),
            Field::new("year", DataType::Date32, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![Some(2020), None])),
                Arc::new(StringArray::from(vec![Some("ndb"), Some("dpc")])),
                Arc::new(Date32Array::from(vec![Some(0), None])),
            ],
        )
        .unwrap();
        let data = to_json(&schema, &[batch]).unwrap();
        let empty = to_json(&schema, &[]).unwrap();
        assert_eq!((empty.columns.len(), empty.rows.len()), (3, 0));
        let kinds: Vec<_> = data.columns.iter().map(|c| c.kind).collect();
        assert_eq!(kinds, ["number", "text", "date"]);
        // Two columns of one name keep their own values.
        assert_eq!(
            serde_json::to_string(&data.rows).unwrap(),
            r#"[[2020,"ndb","1970-01-01"],[null,"dpc",null]]"#
        );
    }
}
