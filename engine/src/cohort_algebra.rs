//! Set operations over saved cohorts answered from their bitmaps.
//!
//! Analysts combine saved cohorts the way SQL combines row sets:
//!
//! ```sql
//! SELECT person_id FROM cohort('hypertension')
//! INTERSECT SELECT person_id FROM cohort('amlodipine')
//! EXCEPT SELECT person_id FROM cohort('inpatients')
//! ```
//!
//! DataFusion plans `INTERSECT` and `EXCEPT` as a distinct aggregate and a
//! semi or anti hash join, and `UNION` as a distinct aggregate over the
//! rows of both inputs: every cohort row is hashed, although each cohort
//! already holds its person set as a roaring bitmap. [`CohortSetOperations`]
//! finds subplans built only of cohort scans of `person_id`, semi and anti
//! joins on it, unions, and distinct aggregates, whose output is a set of
//! distinct persons, computes that set with bitmap operations while
//! planning, and scans it in ascending order instead. The rows are the
//! same; only their order, which SQL leaves open, may change. Subplans
//! shared between parts of the query ([`crate::repeated_subplans`]) are seen
//! through.

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session as CatalogSession, TableProvider};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Result, Statistics};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableType, provider_as_source, source_as_provider};
use datafusion::logical_expr::{
    Distinct, Expr, JoinConstraint, JoinType, LogicalPlan, LogicalPlanBuilder,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use datafusion::physical_plan::ExecutionPlan;
use roaring::RoaringBitmap;

use crate::cohorts::CohortRows;
use crate::repeated_subplans::SharedPlan;

/// The logical optimizer rule; see the module documentation.
#[derive(Debug, Default)]
pub struct CohortSetOperations;

impl OptimizerRule for CohortSetOperations {
    fn name(&self) -> &str {
        "cohort_set_operations"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        match persons(&plan) {
            Some(p) if p.distinct && p.combined => Ok(Transformed::yes(scan_of(&plan, p.set)?)),
            _ => Ok(Transformed::no(plan)),
        }
    }
}

/// What a subplan outputs, when it is one column of persons of saved
/// cohorts.
struct Persons {
    /// The persons present.
    set: RoaringBitmap,
    /// Whether each appears once.
    distinct: bool,
    /// Whether anything beyond a scan and renaming is involved (the
    /// rewrite is then worth it, and never repeats on its own output).
    combined: bool,
}

/// The persons a subplan outputs, if it is built only of what this rule
/// understands.
fn persons(plan: &LogicalPlan) -> Option<Persons> {
    if plan.schema().fields().len() != 1 {
        return None;
    }
    match plan {
        LogicalPlan::TableScan(scan) => {
            if !scan.filters.is_empty() || scan.fetch.is_some() {
                return None;
            }
            let provider = source_as_provider(&scan.source).ok()?;
            if let Some(rows) = provider.as_ref().downcast_ref::<CohortRows>() {
                // Only the person column is read (column 0 of the rows).
                if scan.projection.as_deref() != Some(&[0]) {
                    return None;
                }
                let set = rows.cohort.bitmap.clone();
                let distinct = rows.cohort.rows.num_rows() as u64 == set.len();
                return Some(Persons {
                    set,
                    distinct,
                    combined: false,
                });
            }
            let set = provider.as_ref().downcast_ref::<PersonSet>()?;
            Some(Persons {
                set: set.persons.as_ref().clone(),
                distinct: true,
                combined: false,
            })
        }
        LogicalPlan::SubqueryAlias(a) => persons(&a.input),
        // A subplan shared with other parts of the query: what it computes.
        LogicalPlan::Extension(_) => persons(&SharedPlan::of(plan)?.input),
        LogicalPlan::Projection(p) => match p.expr.as_slice() {
            [e] if is_column(e) => persons(&p.input),
            _ => None,
        },
        LogicalPlan::Aggregate(a) => match (a.group_expr.as_slice(), a.aggr_expr.is_empty()) {
            ([e], true) if is_column(e) => persons(&a.input).map(|p| Persons {
                distinct: true,
                combined: true,
                ..p
            }),
            _ => None,
        },
        LogicalPlan::Distinct(Distinct::All(input)) => persons(input).map(|p| Persons {
            distinct: true,
            combined: true,
            ..p
        }),
        LogicalPlan::Join(j)
            if matches!(j.join_type, JoinType::LeftSemi | JoinType::LeftAnti)
                && j.join_constraint == JoinConstraint::On
                && j.filter.is_none()
                && matches!(j.on.as_slice(), [(Expr::Column(_), Expr::Column(_))]) =>
        {
            let left = persons(&j.left)?;
            let right = persons(&j.right)?;
            let set = if j.join_type == JoinType::LeftSemi {
                left.set & right.set
            } else {
                left.set - right.set
            };
            Some(Persons {
                set,
                distinct: left.distinct,
                combined: true,
            })
        }
        LogicalPlan::Union(u) => {
            let mut set = RoaringBitmap::new();
            for input in &u.inputs {
                set |= persons(input)?.set;
            }
            Some(Persons {
                set,
                distinct: false,
                combined: true,
            })
        }
        _ => None,
    }
}

/// A column reference, perhaps renamed.
fn is_column(e: &Expr) -> bool {
    match e {
        Expr::Column(_) => true,
        Expr::Alias(a) => is_column(&a.expr),
        _ => false,
    }
}

/// A scan of `set` named and typed as `plan`'s one output column.
fn scan_of(plan: &LogicalPlan, set: RoaringBitmap) -> Result<LogicalPlan> {
    let (qualifier, field) = plan.schema().qualified_field(0);
    // Plans compare scans by name: the name says which set is read.
    let name = format!("cohort_set_{:016x}", {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut h = DefaultHasher::new();
        set.len().hash(&mut h);
        set.iter().for_each(|p| p.hash(&mut h));
        h.finish()
    });
    let provider = Arc::new(PersonSet {
        persons: Arc::new(set),
    });
    let scan = LogicalPlanBuilder::scan(name, provider_as_source(provider), None)?;
    let column = datafusion::prelude::col("person_id");
    let named = match qualifier {
        Some(q) => column.alias_qualified(Some(q.clone()), field.name()),
        None => column.alias(field.name()),
    };
    scan.project([named])?.build()
}

/// The persons of a computed set, one `person_id` row each, ascending.
#[derive(Debug)]
pub struct PersonSet {
    persons: Arc<RoaringBitmap>,
}

impl PersonSet {
    fn schema_ref() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new(
            "person_id",
            DataType::Int64,
            false,
        )]))
    }
}

/// Rows per batch of a scanned set.
const BATCH: usize = 32 * 1024;

#[async_trait::async_trait]
impl TableProvider for PersonSet {
    fn schema(&self) -> SchemaRef {
        Self::schema_ref()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn CatalogSession,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = Self::schema_ref();
        let ids: Vec<i64> = self.persons.iter().map(i64::from).collect();
        let batches = ids
            .chunks(BATCH)
            .map(|c| {
                RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(c.to_vec()))])
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let exec = MemorySourceConfig::try_new_exec(&[batches], schema, projection.cloned())?;
        Ok(exec)
    }

    fn statistics(&self) -> Option<Statistics> {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    use datafusion::arrow::array::{AsArray, Date32Array, Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
    use datafusion::common::{Result, ScalarValue, plan_err};
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::logical_expr::Expr;
    use datafusion::prelude::SessionContext;
    use roaring::RoaringBitmap;

    use super::CohortSetOperations;
    use crate::cohorts::{Cohort, CohortMeta, CohortRows, rows_schema};

    /// `cohort('name')` over cohorts held in memory.
    #[derive(Debug)]
    struct Cohorts(BTreeMap<String, Arc<Cohort>>);

    impl TableFunctionImpl for Cohorts {
        fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
            let [Expr::Literal(ScalarValue::Utf8(Some(name)), _)] = args.exprs() else {
                return plan_err!("cohort takes a name");
            };
            match self.0.get(name) {
                Some(c) => Ok(Arc::new(CohortRows { cohort: c.clone() })),
                None => plan_err!("no cohort {name}"),
            }
        }
    }

    /// A cohort with these rows (persons may repeat).
    fn cohort(name: &str, ids: Vec<i64>) -> (String, Arc<Cohort>) {
        let bitmap: RoaringBitmap = ids.iter().map(|&i| i as u32).collect();
        let n = ids.len();
        let rows = RecordBatch::try_new(
            rows_schema(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(Date32Array::from(vec![Some(1); n])),
                Arc::new(Date32Array::from(vec![None; n])),
            ],
        )
        .unwrap();
        let meta = CohortMeta {
            name: name.into(),
            owner: "test".into(),
            created_at: String::new(),
            definition: String::new(),
            size: bitmap.len(),
            store: String::new(),
            lineage: String::new(),
            delivery: 0,
        };
        (name.into(), Arc::new(Cohort { meta, rows, bitmap }))
    }

    fn context(rule: bool) -> SessionContext {
        let mut state = SessionStateBuilder::new().with_default_features();
        if rule {
            state = crate::repeated_subplans::install(state)
                .with_optimizer_rule(Arc::new(CohortSetOperations));
        }
        let ctx = SessionContext::new_with_state(state.build());
        // a: multiples of 2 below 3,000, each twice; b: multiples of 3,
        // once; c: multiples of 5 below 1,000, once.
        let a = (0..3000).step_by(2).flat_map(|i| [i, i]).collect();
        let b = (0..4000).step_by(3).collect();
        let c = (0..1000).step_by(5).collect();
        let cohorts = [cohort("a", a), cohort("b", b), cohort("c", c)];
        ctx.register_udtf("cohort", Arc::new(Cohorts(cohorts.into_iter().collect())));
        ctx
    }

    /// The answer as a sorted multiset of persons (or one count), and
    /// whether the plan scanned a computed set.
    async fn run(ctx: &SessionContext, sql: &str) -> (Vec<i64>, bool) {
        let df = ctx.sql(sql).await.unwrap();
        let plan = format!(
            "{}",
            df.clone().into_optimized_plan().unwrap().display_indent()
        );
        let mut out: Vec<i64> = df
            .collect()
            .await
            .unwrap()
            .iter()
            .flat_map(|b| {
                let c = b.column(0);
                let c = c.as_primitive::<Int64Type>();
                (0..c.len()).map(|i| c.value(i)).collect::<Vec<_>>()
            })
            .collect();
        out.sort();
        (out, plan.contains("cohort_set"))
    }

    #[tokio::test]
    async fn set_operations_over_cohorts_give_the_rows_hash_plans_give() {
        let a: BTreeSet<i64> = (0..3000).step_by(2).collect();
        let b: BTreeSet<i64> = (0..4000).step_by(3).collect();
        let c: BTreeSet<i64> = (0..1000).step_by(5).collect();
        let sorted = |s: BTreeSet<i64>| s.into_iter().collect::<Vec<_>>();
        let pa = "SELECT person_id FROM cohort('a')";
        let pb = "SELECT person_id FROM cohort('b')";
        let pc = "SELECT person_id FROM cohort('c')";
        // (query, the answer computed here, whether the rule applies)
        let cases: Vec<(String, Vec<i64>, bool)> = vec![
            (format!("{pa} INTERSECT {pb}"), sorted(&a & &b), true),
            (format!("{pa} EXCEPT {pb}"), sorted(&a - &b), true),
            (format!("{pa} UNION {pb}"), sorted(&a | &b), true),
            (
                format!("{pa} INTERSECT {pb} EXCEPT {pc}"),
                sorted(&(&a & &b) - &c),
                true,
            ),
            (
                format!("{pa} UNION {pb} EXCEPT {pc}"),
                sorted(&(&a | &b) - &c),
                true,
            ),
            (
                format!("{pc} EXCEPT ({pa} INTERSECT {pb})"),
                sorted(&c - &(&a & &b)),
                true,
            ),
            (
                "SELECT DISTINCT person_id FROM cohort('a')".into(),
                sorted(a.clone()),
                true,
            ),
            (
                format!("SELECT count(*) FROM ({pa} INTERSECT {pb}) t"),
                vec![(&a & &b).len() as i64],
                true,
            ),
            (
                format!("SELECT count(*) FROM ({pa} UNION {pb} UNION {pc}) t"),
                vec![(&(&a | &b) | &c).len() as i64],
                true,
            ),
            // The same distinct input in two operations (shared subplans).
            (
                format!(
                    "SELECT (SELECT count(*) FROM ({pa} INTERSECT {pb}) t) \
                     + 10000 * (SELECT count(*) FROM ({pa} EXCEPT {pb}) t)"
                ),
                vec![(&a & &b).len() as i64 + 10000 * (&a - &b).len() as i64],
                true,
            ),
            // A bag stays a bag: a's persons appear twice.
            (
                format!("{pa} UNION ALL {pc}"),
                {
                    let mut v: Vec<i64> = a.iter().flat_map(|&i| [i, i]).chain(c.clone()).collect();
                    v.sort();
                    v
                },
                false,
            ),
            (
                format!("{pa} WHERE person_id IN ({pb})"),
                {
                    let mut v: Vec<i64> = (&a & &b).into_iter().flat_map(|i| [i, i]).collect();
                    v.sort();
                    v
                },
                false,
            ),
            (
                format!("{pb} WHERE person_id NOT IN ({pc})"),
                sorted(&b - &c),
                true,
            ),
            // Filtered or computed inputs are left to the hash plans.
            (
                format!("{pa} WHERE person_id < 100 INTERSECT {pb}"),
                sorted(
                    &a.iter()
                        .copied()
                        .filter(|&i| i < 100)
                        .collect::<BTreeSet<_>>()
                        & &b,
                ),
                false,
            ),
            (
                format!("SELECT person_id + 1 FROM cohort('b') INTERSECT {pc}"),
                sorted(&b.iter().map(|i| i + 1).collect::<BTreeSet<_>>() & &c),
                false,
            ),
        ];
        let (with, without) = (context(true), context(false));
        for (sql, expected, applies) in cases {
            let (rows, rewritten) = run(&with, &sql).await;
            assert_eq!(rows, expected, "{sql}");
            assert_eq!(rewritten, applies, "{sql}");
            let (rows, rewritten) = run(&without, &sql).await;
            assert_eq!(rows, expected, "hash plan: {sql}");
            assert!(!rewritten);
        }
    }
}
