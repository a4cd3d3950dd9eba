//! `graph.nodes` and `graph.edges` as tables.
//!
//! `graph.nodes` is planned when scanned, as SQL over the `vocab` tables
//! (nothing is copied; the scan's filters narrow what is read).
//! `graph.edges` is written from rows held sorted by their first concept:
//! the curated relationships ([`super::curated`]) and the data-derived
//! edges as released to the reader; a filter naming `concept_id_1` reads
//! that concept's slice only, and rows are written as they are read.

use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session as CatalogSession, TableProvider};
use datafusion::common::{Result as DfResult, exec_datafusion_err};
use datafusion::datasource::TableType;
use datafusion::execution::session_state::SessionState;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use tsunagu_catalog::VOCAB_SCHEMA;

use super::KnowledgeGraph;
use super::curated::{Curated, slices};
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

    /// The SQL of `graph.nodes` over the vocabulary tables.
    fn nodes_sql(&self) -> Option<String> {
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

    /// The edges a scan reads: the curated edges unless the policy hides
    /// `vocab.concept_relationship` from the reader, and the data-derived
    /// ones as released to the reader, each narrowed to the first concepts
    /// a filter names.
    async fn scan_edges(
        &self,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let release = (self.reader.0)();
        let failed = |e: crate::EngineError| exec_datafusion_err!("knowledge graph: {e}");
        let first = first_concepts(filters);
        let hidden = release.is_some() && {
            let relationships =
                datafusion::common::TableReference::partial(VOCAB_SCHEMA, "concept_relationship");
            let columns = datafusion::common::DFSchema::empty();
            self.graph.policy().table_role(&relationships, &columns)
                == crate::privacy::TableRole::Hidden
        };
        let curated = if hidden
            || provenance_excludes(filters, false)
            || !self.has_vocab("concept_relationship")
        {
            Arc::new(Curated::default())
        } else {
            self.graph.curated().await.map_err(failed)?
        };
        let ranges = curated.ranges(first.as_deref());
        let data = if provenance_excludes(filters, true) {
            Vec::new()
        } else {
            let sorted = self.graph.edges_batch(release).await.map_err(failed)?;
            slices(&sorted, first.as_deref())
        };
        let rows: Arc<dyn PartitionStream> = Arc::new(EdgeRows {
            curated,
            ranges,
            data,
        });
        Ok(Arc::new(StreamingTableExec::try_new(
            schema(TableKind::Edges),
            vec![rows],
            projection,
            Vec::new(),
            false,
            limit,
        )?))
    }
}

/// The data-derived edges as rows of `graph.edges`, exact or released.
pub fn derived_batch(
    d: &Derived,
    release: Option<Release>,
    min_persons: u64,
    derived_from: &str,
) -> DfResult<RecordBatch> {
    let mut rows: Vec<Edge> = d
        .pairs
        .iter()
        .flat_map(|p| edges(p, d.persons, release, min_persons))
        .collect();
    // By first concept: a concept's edges are a slice.
    rows.sort_by_key(|e| e.from);
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

/// True when the filters keep no data-derived edge (`data`: `provenance`
/// compared with a constant other than 'data', or `<> 'data'`) or no curated
/// one (`!data`: `provenance = 'data'`).
fn provenance_excludes(filters: &[Expr], data: bool) -> bool {
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
                && match (op, data) {
                    (Operator::Eq, true) => text != "data",
                    (Operator::NotEq, true) => text == "data",
                    (Operator::Eq, false) => text == "data",
                    _ => false,
                }
        }
        _ => false,
    })
}

/// The concepts a filter pins `concept_id_1` to (`= c`, `IN (c, ...)`), from
/// the first filter that does.
fn first_concepts(filters: &[Expr]) -> Option<Vec<i64>> {
    use datafusion::logical_expr::{BinaryExpr, Operator, expr::InList};
    let is_first = |e: &Expr| matches!(e, Expr::Column(c) if c.name == "concept_id_1");
    let int = |e: &Expr| match e {
        Expr::Literal(v, _) if !v.is_null() && v.data_type().is_integer() => {
            v.cast_to(&DataType::Int64).ok().and_then(|v| match v {
                datafusion::common::ScalarValue::Int64(n) => n,
                _ => None,
            })
        }
        _ => None,
    };
    filters
        .iter()
        .find_map(|f| match f {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) => {
                if is_first(left) {
                    int(right).map(|c| vec![c])
                } else if is_first(right) {
                    int(left).map(|c| vec![c])
                } else {
                    None
                }
            }
            Expr::InList(InList {
                expr,
                list,
                negated: false,
            }) if is_first(expr) => list.iter().map(int).collect(),
            _ => None,
        })
        .map(|mut concepts: Vec<i64>| {
            // A concept named twice is read once.
            concepts.sort_unstable();
            concepts.dedup();
            concepts
        })
}

/// The rows of `graph.edges` a scan reads: curated ranges written as they
/// are read, then the data-derived slices.
#[derive(Debug)]
struct EdgeRows {
    curated: Arc<Curated>,
    ranges: Vec<Range<usize>>,
    data: Vec<RecordBatch>,
}

impl PartitionStream for EdgeRows {
    fn schema(&self) -> &SchemaRef {
        static SCHEMA: std::sync::OnceLock<SchemaRef> = std::sync::OnceLock::new();
        SCHEMA.get_or_init(|| schema(TableKind::Edges))
    }
    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let size = ctx.session_config().batch_size().max(1);
        let chunks: Vec<Range<usize>> = self
            .ranges
            .iter()
            .flat_map(|r| {
                r.clone()
                    .step_by(size)
                    .map(move |lo| lo..(lo + size).min(r.end))
            })
            .collect();
        let curated = self.curated.clone();
        let written = futures::stream::iter(chunks).map(move |r| curated.batch(r));
        let data = futures::stream::iter(self.data.clone().into_iter().map(Ok));
        Box::pin(RecordBatchStreamAdapter::new(
            self.schema().clone(),
            written.chain(data),
        ))
    }
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
        // Used to narrow what is read, and applied again above the scan.
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
        if self.kind == TableKind::Edges {
            return self.scan_edges(projection, filters, limit).await;
        }
        let target = schema(self.kind);
        let ctx = SessionContext::new_with_state(session.clone());
        let frame = match self.nodes_sql() {
            Some(sql) => Some(ctx.sql(&sql).await?),
            None => None,
        };
        let mut frame = match frame {
            Some(f) => f,
            None => ctx.read_batch(RecordBatch::new_empty(target.clone()))?,
        };
        // The filters, applied below the names (so a concept's row is read
        // by its id); applied again above the scan.
        for f in filters {
            use datafusion::common::tree_node::{Transformed, TreeNode};
            let unqualified = f
                .clone()
                .transform(|e| {
                    Ok(match e {
                        Expr::Column(c) => Transformed::yes(Expr::Column(
                            datafusion::common::Column::new_unqualified(c.name),
                        )),
                        e => Transformed::no(e),
                    })
                })?
                .data;
            // One that cannot be planned here is left to the filter above.
            if let Ok(narrowed) = frame.clone().filter(unqualified) {
                frame = narrowed;
            }
        }
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
