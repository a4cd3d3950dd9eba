//! Running window functions over input sorted by person (or any partition
//! key): one pass over each batch instead of per-partition state.
//!
//! RWD SQL computes windows per person and concept — the OHDSI era pattern
//! of a running maximum over the preceding rows and a running sum of "new
//! era" flags, first events by `row_number()`, counts so far. DataFusion's
//! `BoundedWindowAggExec` keeps state for every window partition and
//! evaluates accumulators on slices of a few rows each, which costs over
//! half a microsecond per row when partitions are that small.
//! [`RunningWindows`] replaces it, when its input arrives sorted and every
//! function is a running one — `sum` of integers, `count`, `min` and `max`
//! of integers, dates and timestamps, with a frame from the partition's
//! first row to the current row, to `k PRECEDING`, or (`RANGE`/`GROUPS`) to
//! the current row's last peer; `row_number`, `rank` and `dense_rank` — by
//! [`RunningWindowExec`], which computes each batch in one pass and carries
//! the running state to the next. The answers are DataFusion's; any other
//! window stays with DataFusion's operator.

mod exec;
mod functions;

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;

pub use exec::RunningWindowExec;

/// True when a window expression is `row_number()` (numbering rows from 1).
pub fn is_row_number(
    expr: &Arc<dyn datafusion::physical_plan::WindowExpr>,
    input: &datafusion::arrow::datatypes::Schema,
) -> Result<bool> {
    Ok(functions::Function::of(expr, input)?.is_some_and(|f| f.kind == functions::Kind::RowNumber))
}

/// The physical optimizer rule planting [`RunningWindowExec`].
#[derive(Debug, Default)]
pub struct RunningWindows;

impl PhysicalOptimizerRule for RunningWindows {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| match RunningWindowExec::of(&node)? {
            Some(running) => Ok(Transformed::yes(Arc::new(running) as Arc<dyn ExecutionPlan>)),
            None => Ok(Transformed::no(node)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "running_windows"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Date32Array, Int32Array, Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::physical_plan::{collect, displayable};
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::RunningWindows;

    /// Rows of many small partitions (persons and concepts), with ties and
    /// nulls, in batches of a few rows so partitions and peer groups cross
    /// batch boundaries.
    fn table() -> MemTable {
        let schema = Arc::new(Schema::new(vec![
            Field::new("p", DataType::Int64, false),
            Field::new("c", DataType::Int32, true),
            Field::new("s", DataType::Date32, true),
            Field::new("e", DataType::Date32, true),
            Field::new("x", DataType::Int64, true),
        ]));
        let mut seed: u64 = 7;
        let mut next = |m: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % m
        };
        let mut batches = Vec::new();
        for b in 0..60 {
            let n = 1 + next(23) as usize;
            let mut cols: (
                Vec<i64>,
                Vec<Option<i32>>,
                Vec<Option<i32>>,
                Vec<Option<i32>>,
                Vec<Option<i64>>,
            ) = Default::default();
            for _ in 0..n {
                cols.0.push((b / 3) as i64 + next(2) as i64);
                cols.1.push((next(10) > 0).then(|| next(3) as i32));
                let s = 18000 + next(40) as i32;
                cols.2.push((next(15) > 0).then_some(s));
                cols.3.push((next(8) > 0).then(|| s + next(30) as i32 - 3));
                cols.4.push((next(6) > 0).then(|| next(100) as i64 - 20));
            }
            batches.push(
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(Int64Array::from(cols.0)),
                        Arc::new(Int32Array::from(cols.1)),
                        Arc::new(Date32Array::from(cols.2)),
                        Arc::new(Date32Array::from(cols.3)),
                        Arc::new(Int64Array::from(cols.4)),
                    ],
                )
                .unwrap(),
            );
        }
        let (a, b) = batches.split_at(30);
        MemTable::try_new(schema, vec![a.to_vec(), b.to_vec()]).unwrap()
    }

    fn context(running: bool, batch_size: usize) -> SessionContext {
        let config = SessionConfig::new()
            .with_target_partitions(2)
            .with_batch_size(batch_size);
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features();
        if running {
            state = state.with_physical_optimizer_rule(Arc::new(RunningWindows));
        }
        let ctx = SessionContext::new_with_state(state.build());
        ctx.register_table("t", Arc::new(table())).unwrap();
        ctx
    }

    async fn run(ctx: &SessionContext, sql: &str) -> (String, String) {
        let plan = ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let shown = displayable(plan.as_ref()).indent(false).to_string();
        let batches = collect(plan, ctx.task_ctx()).await.unwrap();
        (pretty_format_batches(&batches).unwrap().to_string(), shown)
    }

    /// Every running function gives DataFusion's own answer, computed by
    /// its window operator on the same rows.
    #[tokio::test]
    async fn running_windows_answer_as_datafusion_does() {
        let windows = [
            "max(e) OVER (PARTITION BY p, c ORDER BY s, e ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)",
            "min(e) OVER (PARTITION BY p ORDER BY s ROWS BETWEEN UNBOUNDED PRECEDING AND 3 PRECEDING)",
            "sum(x) OVER (PARTITION BY p, c ORDER BY s, e ROWS UNBOUNDED PRECEDING)",
            "sum(c) OVER (PARTITION BY p ORDER BY s DESC ROWS UNBOUNDED PRECEDING)",
            "sum(x) OVER (PARTITION BY p ORDER BY s)",
            "max(x) OVER (PARTITION BY p ORDER BY c GROUPS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)",
            "count(*) OVER (PARTITION BY p ORDER BY s)",
            "count(x) OVER (PARTITION BY p, c ORDER BY s ROWS BETWEEN UNBOUNDED PRECEDING AND 2 PRECEDING)",
            "count(NULL) OVER (PARTITION BY p ORDER BY s)",
            "count(CASE WHEN x > 10 THEN NULL ELSE x END) OVER (PARTITION BY p ORDER BY s ROWS UNBOUNDED PRECEDING)",
            "row_number() OVER (PARTITION BY p ORDER BY s, e, x)",
            "rank() OVER (PARTITION BY p, c ORDER BY s)",
            "dense_rank() OVER (PARTITION BY p ORDER BY s DESC NULLS LAST)",
            "sum(x) OVER (ORDER BY p, s ROWS UNBOUNDED PRECEDING)",
        ];
        for w in windows {
            let sql = format!("SELECT p, c, s, e, x, {w} AS w FROM t ORDER BY p, c, s, e, x, w");
            for batch_size in [3, 8192] {
                let (expected, plain_plan) = run(&context(false, batch_size), &sql).await;
                let (got, plan) = run(&context(true, batch_size), &sql).await;
                assert!(plain_plan.contains("WindowAggExec"), "{plain_plan}");
                assert!(
                    plan.contains("RunningWindowExec"),
                    "{w}: not running:\n{plan}"
                );
                assert_eq!(got, expected, "{w} (batches of {batch_size})");
            }
        }
    }

    /// Windows it does not compute stay with DataFusion.
    #[tokio::test]
    async fn other_windows_stay_with_datafusion() {
        for w in [
            "sum(x) OVER (PARTITION BY p ORDER BY s ROWS BETWEEN 2 PRECEDING AND CURRENT ROW)",
            "avg(x) OVER (PARTITION BY p ORDER BY s)",
            "lag(x) OVER (PARTITION BY p ORDER BY s)",
            "sum(x) FILTER (WHERE c = 1) OVER (PARTITION BY p ORDER BY s)",
            "count(x) FILTER (WHERE 'filter: None' <> CAST(c AS VARCHAR)) OVER (PARTITION BY p ORDER BY s)",
        ] {
            let sql = format!("SELECT p, {w} AS w FROM t ORDER BY 1, 2");
            let (expected, _) = run(&context(false, 8192), &sql).await;
            let (got, plan) = run(&context(true, 8192), &sql).await;
            assert!(!plan.contains("RunningWindowExec"), "{w}:\n{plan}");
            assert_eq!(got, expected);
        }
    }
}
