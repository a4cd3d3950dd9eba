//! `graph.nodes` and `graph.edges` as tables.
//!
//! Both are planned when scanned: the curated part as SQL over the `vocab`
//! tables (nothing is copied), the data-derived edges as rows released for
//! the reading session.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session as CatalogSession, TableProvider};
use datafusion::common::{Result as DfResult, exec_datafusion_err};
use datafusion::datasource::TableType;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use tsunagu_catalog::VOCAB_SCHEMA;

use super::KnowledgeGraph;
use super::derived::{Derived, Edge};
use crate::quality::label::Release;
use crate::quality::tables::Reader;

/// Language concept of Japanese names in `vocab.concept_synonym`.
pub const JAPANESE: i64 = 4_181_524;

/// Which graph table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Nodes,
    Edges,
}

impl Kind {
    /// The table's name in schema `graph`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Nodes => "nodes",
            Kind::Edges => "edges",
        }
    }
}

/// The schema of a graph table.
pub fn schema(kind: Kind) -> SchemaRef {
    let text = |n: &str| Field::new(n, DataType::Utf8, true);
    let int = |n: &str| Field::new(n, DataType::Int64, true);
    let float = |n: &str| Field::new(n, DataType::Float64, true);
    Arc::new(Schema::new(match kind {
        Kind::Nodes => vec![
            int("concept_id"),
            text("concept_name"),
            text("concept_name_ja"),
            text("vocabulary_id"),
            text("domain_id"),
            text("concept_class_id"),
            text("standard_concept"),
            text("concept_code"),
        ],
        Kind::Edges => vec![
            int("concept_id_1"),
            int("concept_id_2"),
            text("relationship_id"),
            text("provenance"),
            text("statistic"),
            float("value"),
            float("lower_95"),
            int("persons"),
            int("window_days"),
            text("computation"),
            text("derived_from"),
        ],
    }))
}

/// One graph table as a session reads it.
#[derive(Debug)]
pub struct GraphTable {
    pub kind: Kind,
    pub graph: Arc<KnowledgeGraph>,
    pub reader: Reader,
}

impl GraphTable {
    fn has_vocab(&self, name: &str) -> bool {
        self.graph
            .store()
            .tables()
            .iter()
            .any(|t| t.schema == VOCAB_SCHEMA && t.name == name)
    }

    /// The SQL of the curated part, in the table's columns.
    fn curated_sql(&self) -> Option<String> {
        match self.kind {
            Kind::Nodes => {
                if !self.has_vocab("concept") {
                    return None;
                }
                let japanese = if self.has_vocab("concept_synonym") {
                    format!(
                        "LEFT JOIN (SELECT concept_id, min(CAST(concept_synonym_name AS VARCHAR)) AS name_ja \
                         FROM vocab.concept_synonym WHERE language_concept_id = {JAPANESE} GROUP BY concept_id) s \
                         ON s.concept_id = c.concept_id"
                    )
                } else {
                    "LEFT JOIN (SELECT CAST(NULL AS BIGINT) AS concept_id, CAST(NULL AS VARCHAR) AS name_ja WHERE false) s \
                     ON s.concept_id = c.concept_id"
                        .into()
                };
                Some(format!(
                    "SELECT CAST(c.concept_id AS BIGINT) AS concept_id, CAST(c.concept_name AS VARCHAR) AS concept_name, \
                     s.name_ja AS concept_name_ja, CAST(c.vocabulary_id AS VARCHAR) AS vocabulary_id, \
                     CAST(c.domain_id AS VARCHAR) AS domain_id, CAST(c.concept_class_id AS VARCHAR) AS concept_class_id, \
                     CAST(c.standard_concept AS VARCHAR) AS standard_concept, CAST(c.concept_code AS VARCHAR) AS concept_code \
                     FROM vocab.concept c {japanese}"
                ))
            }
            Kind::Edges => {
                if !self.has_vocab("concept_relationship") {
                    return None;
                }
                Some(
                    "SELECT CAST(concept_id_1 AS BIGINT) AS concept_id_1, CAST(concept_id_2 AS BIGINT) AS concept_id_2, \
                     CAST(relationship_id AS VARCHAR) AS relationship_id, \
                     CASE WHEN relationship_id IN ('Maps to', 'Mapped from', 'Maps to value', 'Value mapped from') \
                          THEN 'mapping' ELSE 'vocabulary' END AS provenance, \
                     CAST(NULL AS VARCHAR) AS statistic, CAST(NULL AS DOUBLE) AS value, CAST(NULL AS DOUBLE) AS lower_95, \
                     CAST(NULL AS BIGINT) AS persons, CAST(NULL AS BIGINT) AS window_days, \
                     CAST(NULL AS VARCHAR) AS computation, 'vocab.concept_relationship' AS derived_from \
                     FROM vocab.concept_relationship \
                     WHERE (invalid_reason IS NULL OR invalid_reason = '') AND concept_id_1 <> concept_id_2"
                        .into(),
                )
            }
        }
    }
}

/// An edge as released by `release` (`None`: exact): persons, value and
/// lower bound; `None` when the edge is withheld.
pub fn released(e: &Edge, release: Option<Release>) -> Option<(u64, Option<f64>, Option<f64>)> {
    match release {
        None => {
            let (v, l) = Edge::statistic(
                e.kind,
                e.persons as f64,
                e.a as f64,
                e.b as f64,
                e.all as f64,
            );
            Some((e.persons, v, l))
        }
        Some(r) => {
            if e.persons < r.k {
                return None;
            }
            let persons = r.count(e.persons)?;
            // A count under k stands as k: the statistic shows no small count.
            let part = |n: u64| -> f64 {
                if n < r.k {
                    r.k as f64
                } else {
                    r.count(n).unwrap_or(r.k) as f64
                }
            };
            let (v, l) = Edge::statistic(e.kind, persons as f64, part(e.a), part(e.b), part(e.all));
            let two = |x: Option<f64>| x.map(|x| (x * 100.0).round() / 100.0);
            Some((persons, two(v), two(l)))
        }
    }
}

/// The data-derived edges as rows of `graph.edges`.
pub fn derived_batch(
    d: &Derived,
    release: Option<Release>,
    derived_from: &str,
) -> DfResult<RecordBatch> {
    let rows: Vec<(&Edge, (u64, Option<f64>, Option<f64>))> = d
        .edges
        .iter()
        .filter_map(|e| released(e, release).map(|r| (e, r)))
        .collect();
    let window = |e: &Edge| match e.kind {
        super::derived::Kind::Sequence { window } => Some(window as i64),
        _ => None,
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|(e, _)| e.from),
        )),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|(e, _)| e.to))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(e, _)| e.kind.relationship()),
        )),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|_| "data"))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(e, _)| e.kind.statistic()),
        )),
        Arc::new(Float64Array::from_iter(rows.iter().map(|(_, r)| r.1))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|(_, r)| r.2))),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|(_, r)| r.0 as i64),
        )),
        Arc::new(Int64Array::from_iter(rows.iter().map(|(e, _)| window(e)))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(e, _)| e.kind.computation()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|_| derived_from),
        )),
    ];
    Ok(RecordBatch::try_new(schema(Kind::Edges), columns)?)
}

#[async_trait::async_trait]
impl TableProvider for GraphTable {
    fn schema(&self) -> SchemaRef {
        schema(self.kind)
    }
    fn table_type(&self) -> TableType {
        TableType::View
    }
    async fn scan(
        &self,
        state: &dyn CatalogSession,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let session = state
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| exec_datafusion_err!("graph tables need a full session"))?;
        let ctx = SessionContext::new_with_state(session.clone());
        let target = schema(self.kind);
        let mut frame = match self.curated_sql() {
            Some(sql) => Some(ctx.sql(&sql).await?),
            None => None,
        };
        if self.kind == Kind::Edges {
            let derived = self
                .graph
                .derived()
                .await
                .map_err(|e| exec_datafusion_err!("knowledge graph: {e}"))?;
            let batch = derived_batch(&derived, (self.reader.0)(), &self.graph.derived_from())?;
            let rows = ctx.read_batch(batch)?;
            frame = Some(match frame {
                Some(f) => f.union(rows)?,
                None => rows,
            });
        }
        let frame = match frame {
            Some(f) => f,
            None => ctx.read_batch(RecordBatch::new_empty(target.clone()))?,
        };
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..target.fields().len()).collect(),
        };
        // In the declared types (SQL text may plan as views of strings).
        let columns: Vec<Expr> = wanted
            .iter()
            .map(|&i| {
                let f = target.field(i);
                datafusion::logical_expr::cast(
                    datafusion::prelude::col(datafusion::common::Column::new_unqualified(f.name())),
                    f.data_type().clone(),
                )
                .alias(f.name())
            })
            .collect();
        let mut frame = frame.select(columns)?;
        if let Some(n) = limit {
            frame = frame.limit(0, Some(n))?;
        }
        frame.create_physical_plan().await
    }
}
