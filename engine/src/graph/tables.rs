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
use super::derived::{Derived, Edge, Kind, edges};
use crate::quality::label::Release;
use crate::quality::tables::Reader;

/// Language concept of Japanese names in `vocab.concept_synonym`.
pub const JAPANESE: i64 = 4_181_524;

/// Which graph table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    Nodes,
    Edges,
}

impl TableKind {
    /// The table's name in schema `graph`.
    pub fn name(self) -> &'static str {
        match self {
            TableKind::Nodes => "nodes",
            TableKind::Edges => "edges",
        }
    }
}

/// The schema of a graph table.
pub fn schema(kind: TableKind) -> SchemaRef {
    let text = |n: &str| Field::new(n, DataType::Utf8, true);
    let int = |n: &str| Field::new(n, DataType::Int64, true);
    let float = |n: &str| Field::new(n, DataType::Float64, true);
    Arc::new(Schema::new(match kind {
        TableKind::Nodes => vec![
            int("concept_id"),
            text("concept_name"),
            text("concept_name_ja"),
            text("vocabulary_id"),
            text("domain_id"),
            text("concept_class_id"),
            text("standard_concept"),
            text("concept_code"),
        ],
        TableKind::Edges => vec![
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
    pub kind: TableKind,
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
            TableKind::Nodes => {
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
            TableKind::Edges => {
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

/// The data-derived edges as rows of `graph.edges`, exact or released.
pub fn derived_batch(
    d: &Derived,
    release: Option<Release>,
    min_persons: u64,
    derived_from: &str,
) -> DfResult<RecordBatch> {
    let rows: Vec<Edge> = d
        .pairs
        .iter()
        .flat_map(|p| edges(p, d.persons, release, min_persons))
        .collect();
    let window = |e: &Edge| match e.kind {
        Kind::Sequence { window } => Some(window as i64),
        _ => None,
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|e| e.from))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|e| e.to))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|e| e.kind.relationship()),
        )),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|_| "data"))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|e| e.kind.statistic()),
        )),
        Arc::new(Float64Array::from_iter(rows.iter().map(|e| e.value))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|e| e.lower))),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|e| e.persons as i64),
        )),
        Arc::new(Int64Array::from_iter(rows.iter().map(window))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|e| e.kind.computation()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|_| derived_from),
        )),
    ];
    Ok(RecordBatch::try_new(schema(TableKind::Edges), columns)?)
}

/// True when the filters keep no data-derived edge (`provenance` compared
/// with a constant other than 'data', or `<> 'data'`).
fn excludes_data(filters: &[Expr]) -> bool {
    use datafusion::logical_expr::{BinaryExpr, Operator};
    filters.iter().any(|f| match f {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (column, value) = match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c)) => {
                    (c, v)
                }
                _ => return false,
            };
            let text = match value {
                datafusion::common::ScalarValue::Utf8(Some(t))
                | datafusion::common::ScalarValue::Utf8View(Some(t))
                | datafusion::common::ScalarValue::LargeUtf8(Some(t)) => t.as_str(),
                _ => return false,
            };
            column.name == "provenance"
                && match op {
                    Operator::Eq => text != "data",
                    Operator::NotEq => text == "data",
                    _ => false,
                }
        }
        _ => false,
    })
}

#[async_trait::async_trait]
impl TableProvider for GraphTable {
    fn schema(&self) -> SchemaRef {
        schema(self.kind)
    }
    fn table_type(&self) -> TableType {
        TableType::View
    }
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<datafusion::logical_expr::TableProviderFilterPushDown>> {
        // Seen (to skip the data-derived edges when none can pass), and
        // applied again above the scan.
        Ok(vec![
            datafusion::logical_expr::TableProviderFilterPushDown::Inexact;
            filters.len()
        ])
    }
    async fn scan(
        &self,
        state: &dyn CatalogSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
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
        if self.kind == TableKind::Edges && !excludes_data(filters) {
            let batch = self
                .graph
                .edges_batch((self.reader.0)())
                .await
                .map_err(|e| exec_datafusion_err!("knowledge graph: {e}"))?;
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
