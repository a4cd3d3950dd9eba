//! `quality.checks`, `quality.results` and `quality.characterization`:
//! the checks and what they found, as tables.
//!
//! The checks run the first time `quality.results` or
//! `quality.characterization` is read, and the report is kept for the
//! engine's life (a store does not change while it is open). Stewards read
//! exact counts; an analyst's session reads them released as in the label
//! (k and rounding; a count of violating rows or of records withheld when
//! fewer than k persons stand behind it, characterization strata under k
//! left out).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session as CatalogSession, TableProvider};
use datafusion::common::{Result as DfResult, exec_datafusion_err};
use datafusion::datasource::{MemTable, TableType};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use tsunagu_catalog::Store;

use super::{QualityConfig, Report};

/// The checks of one store and, once computed, their report.
#[derive(Debug)]
pub struct Quality {
    store: Arc<Store>,
    config: QualityConfig,
    report: tokio::sync::OnceCell<Arc<Report>>,
}

impl Quality {
    /// The checks of `store` under `config`; nothing runs yet.
    pub fn new(store: Arc<Store>, config: QualityConfig) -> Quality {
        Quality {
            store,
            config,
            report: tokio::sync::OnceCell::new(),
        }
    }

    /// The configuration the checks run with.
    pub fn config(&self) -> &QualityConfig {
        &self.config
    }

    /// The report, computed on first use on a context showing the store.
    pub async fn report(&self, ctx: &SessionContext) -> crate::Result<Arc<Report>> {
        self.report
            .get_or_try_init(|| async {
                super::run(ctx, &self.store, &self.config)
                    .await
                    .map(Arc::new)
            })
            .await
            .cloned()
    }
}

/// Which quality table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Checks,
    Results,
    Characterization,
}

impl Kind {
    /// The table's name in schema `quality`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Checks => "checks",
            Kind::Results => "results",
            Kind::Characterization => "characterization",
        }
    }
}

/// How a session reads the quality tables: `Some(release)` for released
/// counts (analysts), `None` for exact ones; asked at each scan.
#[derive(Clone)]
pub struct Reader(pub Arc<dyn Fn() -> Option<super::label::Release> + Send + Sync>);

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reader")
    }
}

impl Reader {
    /// Exact counts for everyone (a steward's context).
    pub fn exact() -> Reader {
        Reader(Arc::new(|| None))
    }
}

/// One of the quality tables.
#[derive(Debug)]
pub struct QualityTable {
    pub kind: Kind,
    pub quality: Arc<Quality>,
    pub reader: Reader,
}

fn check_fields() -> Vec<Field> {
    vec![
        Field::new("check_id", DataType::Utf8, false),
        Field::new("check_type", DataType::Utf8, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("subcategory", DataType::Utf8, false),
        Field::new("level", DataType::Utf8, false),
        Field::new("schema_name", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("field_name", DataType::Utf8, true),
        Field::new("concept_id", DataType::Int64, true),
        Field::new("threshold_pct", DataType::Float64, false),
        Field::new("severity", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, false),
    ]
}

/// The schema of a quality table.
pub fn schema(kind: Kind) -> SchemaRef {
    let fields = match kind {
        Kind::Checks => check_fields(),
        Kind::Results => {
            let mut f = check_fields();
            f.extend([
                Field::new("status", DataType::Utf8, false),
                Field::new("violating_rows", DataType::Int64, true),
                Field::new("denominator_rows", DataType::Int64, true),
                Field::new("violating_persons", DataType::Int64, true),
                Field::new("pct_violating", DataType::Float64, true),
                Field::new("note", DataType::Utf8, true),
            ]);
            f
        }
        Kind::Characterization => vec![
            Field::new("analysis_id", DataType::Int64, false),
            Field::new("analysis", DataType::Utf8, false),
            Field::new("schema_name", DataType::Utf8, false),
            Field::new("table_name", DataType::Utf8, true),
            Field::new("stratum_1", DataType::Utf8, true),
            Field::new("stratum_2", DataType::Utf8, true),
            Field::new("count_value", DataType::Int64, true),
            Field::new("person_count", DataType::Int64, true),
        ],
    };
    Arc::new(Schema::new(fields))
}

fn check_columns(defs: &[&super::CheckDef]) -> Vec<ArrayRef> {
    let s = |f: fn(&super::CheckDef) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(defs.iter().map(|d| f(d))))
    };
    vec![
        s(|d| &d.check_id),
        s(|d| &d.check_type),
        s(|d| &d.category),
        s(|d| &d.subcategory),
        s(|d| &d.level),
        s(|d| &d.schema_name),
        s(|d| &d.table_name),
        Arc::new(StringArray::from_iter(
            defs.iter().map(|d| d.field_name.as_deref()),
        )),
        Arc::new(Int64Array::from_iter(defs.iter().map(|d| d.concept_id))),
        Arc::new(Float64Array::from_iter_values(
            defs.iter().map(|d| d.threshold_pct),
        )),
        s(|d| &d.severity),
        s(|d| &d.description),
    ]
}

/// The rows of a quality table: exact, or released by `release`.
pub fn batch(
    kind: Kind,
    report: &Report,
    release: Option<super::label::Release>,
) -> DfResult<RecordBatch> {
    let released;
    let report = match release {
        None => report,
        Some(rel) => {
            released = released_report(report, rel);
            &released
        }
    };
    let columns: Vec<ArrayRef> = match kind {
        Kind::Checks | Kind::Results => {
            let defs: Vec<&super::CheckDef> = report.results.iter().map(|r| &r.check).collect();
            let mut cols = check_columns(&defs);
            if kind == Kind::Results {
                let r = &report.results;
                cols.extend([
                    Arc::new(StringArray::from_iter_values(
                        r.iter().map(|r| r.status.as_str()),
                    )) as ArrayRef,
                    Arc::new(Int64Array::from_iter(
                        r.iter().map(|r| r.violating_rows.map(|v| v as i64)),
                    )),
                    Arc::new(Int64Array::from_iter(
                        r.iter().map(|r| r.denominator_rows.map(|v| v as i64)),
                    )),
                    Arc::new(Int64Array::from_iter(
                        r.iter().map(|r| r.violating_persons.map(|v| v as i64)),
                    )),
                    Arc::new(Float64Array::from_iter(r.iter().map(|r| r.pct_violating))),
                    Arc::new(StringArray::from_iter(r.iter().map(|r| r.note.as_deref()))),
                ]);
            }
            cols
        }
        Kind::Characterization => {
            let c = &report.characterization;
            vec![
                Arc::new(Int64Array::from_iter_values(
                    c.iter().map(|r| r.analysis_id),
                )),
                Arc::new(StringArray::from_iter_values(c.iter().map(|r| r.analysis))),
                Arc::new(StringArray::from_iter_values(
                    c.iter().map(|r| r.schema_name.as_str()),
                )),
                Arc::new(StringArray::from_iter(
                    c.iter().map(|r| r.table_name.as_deref()),
                )),
                Arc::new(StringArray::from_iter(
                    c.iter().map(|r| r.stratum_1.as_deref()),
                )),
                Arc::new(StringArray::from_iter(
                    c.iter().map(|r| r.stratum_2.as_deref()),
                )),
                Arc::new(Int64Array::from_iter(c.iter().map(|r| r.count_value))),
                Arc::new(Int64Array::from_iter(c.iter().map(|r| r.person_count))),
            ]
        }
    };
    Ok(RecordBatch::try_new(schema(kind), columns)?)
}

/// The report as an analyst reads it: every count released as in the label.
fn released_report(report: &Report, rel: super::label::Release) -> Report {
    let mut out = report.clone();
    for r in &mut out.results {
        let v = rel.violating(r);
        let d = r.denominator_rows.and_then(|d| rel.count(d));
        r.pct_violating = super::label::pct(v, d);
        r.violating_persons = r
            .violating_persons
            .and_then(|p| if p == 0 { Some(0) } else { rel.backed(p, p) });
        r.violating_rows = v;
        r.denominator_rows = d;
    }
    out.characterization = report
        .characterization
        .iter()
        .filter_map(|c| {
            let persons = c
                .person_count
                .map(|p| rel.backed(p.max(0) as u64, p.max(0) as u64));
            if matches!(persons, Some(None)) {
                return None;
            }
            let mut c = c.clone();
            c.person_count = persons.flatten().map(|p| p as i64);
            c.count_value = match (c.count_value, persons.flatten()) {
                (Some(n), Some(p)) => rel.backed(n.max(0) as u64, p).map(|n| n as i64),
                (Some(n), None) => rel.count(n.max(0) as u64).map(|n| n as i64),
                (None, _) => None,
            };
            Some(c)
        })
        .collect();
    out
}

#[async_trait::async_trait]
impl TableProvider for QualityTable {
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
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batch = if self.kind == Kind::Checks {
            let plan = super::checks::plan(&self.quality.store, &self.quality.config);
            let mut owned = plan.checks();
            owned.extend(
                super::checks::linkage_results(
                    &super::linkage(&self.quality.store),
                    &self.quality.config,
                )
                .into_iter()
                .map(|r| r.check),
            );
            let defs: Vec<&super::CheckDef> = owned.iter().collect();
            RecordBatch::try_new(schema(Kind::Checks), check_columns(&defs))?
        } else {
            let session = state
                .as_any()
                .downcast_ref::<SessionState>()
                .ok_or_else(|| exec_datafusion_err!("quality tables need a full session"))?;
            let ctx = SessionContext::new_with_state(session.clone());
            let report = self
                .quality
                .report(&ctx)
                .await
                .map_err(|e| exec_datafusion_err!("data quality checks: {e}"))?;
            batch(self.kind, &report, (self.reader.0)())?
        };
        MemTable::try_new(schema(self.kind), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}
