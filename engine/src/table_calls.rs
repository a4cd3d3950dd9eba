//! A distinct name for each table function call in a plan.
//!
//! DataFusion names the scan of a table function after the function alone
//! (`cohort()`, `generate_series()`), and plans compare scans by name, not
//! by what they read. Two calls with different arguments therefore look
//! like one subplan: common subexpression elimination merged
//! `(SELECT count(*) FROM generate_series(1, 10))` and the same over
//! `generate_series(1, 20)` into one value, and repeated subplans were
//! shared between `cohort('a')` and `cohort('b')`. [`NameTableFunctionCalls`]
//! renames each call's scan `name()#k`, one `k` per table the call returned
//! (a CTE read twice is one call), under an alias keeping the name the
//! query's columns are qualified by. It runs among the analyzer rules,
//! after the privacy rules have read the plan.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Result, TableReference};
use datafusion::logical_expr::{LogicalPlan, SubqueryAlias, TableScanBuilder};
use datafusion::optimizer::AnalyzerRule;

/// The analyzer rule; see the module documentation.
#[derive(Debug, Default)]
pub struct NameTableFunctionCalls;

impl AnalyzerRule for NameTableFunctionCalls {
    fn name(&self) -> &str {
        "name_table_function_calls"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        let mut calls: HashMap<usize, usize> = HashMap::new();
        plan.transform_up_with_subqueries(|node| {
            let LogicalPlan::TableScan(scan) = &node else {
                return Ok(Transformed::no(node));
            };
            let Some(function) = call_name(&scan.table_name) else {
                return Ok(Transformed::no(node));
            };
            let identity = Arc::as_ptr(&scan.source) as *const () as usize;
            let next = calls.len() + 1;
            let k = *calls.entry(identity).or_insert(next);
            let alias = scan.table_name.clone();
            let renamed = TableScanBuilder::new(
                TableReference::bare(format!("{function}()#{k}")),
                scan.source.clone(),
            )
            .with_projection(scan.projection.clone())
            .with_filters(scan.filters.clone())
            .with_fetch(scan.fetch)
            .with_statistics_requests(scan.statistics_requests.clone())
            .build()?;
            Ok(Transformed::yes(LogicalPlan::SubqueryAlias(
                SubqueryAlias::try_new(Arc::new(LogicalPlan::TableScan(renamed)), alias)?,
            )))
        })
        .map(|t| t.data)
    }
}

/// The function of a table function's scan (`name()`, unqualified).
fn call_name(table: &TableReference) -> Option<&str> {
    match table {
        TableReference::Bare { table } => table.strip_suffix("()"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::prelude::SessionContext;

    use super::NameTableFunctionCalls;

    fn context(named: bool) -> SessionContext {
        let mut state =
            crate::repeated_subplans::install(SessionStateBuilder::new().with_default_features());
        if named {
            state = state.with_analyzer_rule(Arc::new(NameTableFunctionCalls));
        }
        SessionContext::new_with_state(state.build())
    }

    async fn answer(ctx: &SessionContext, sql: &str) -> String {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        pretty_format_batches(&batches).unwrap().to_string()
    }

    /// The sums are computed by hand: 1 + ... + n = n(n + 1)/2.
    #[tokio::test]
    async fn calls_with_different_arguments_give_their_own_answers() {
        let ctx = context(true);
        let merged = "SELECT (SELECT count(*) FROM generate_series(1, 10)) \
                      + 1000 * (SELECT count(*) FROM generate_series(1, 20)) AS n";
        assert!(answer(&ctx, merged).await.contains("| 20010 |"));
        // Without the rule, DataFusion merges the two subqueries.
        assert!(answer(&context(false), merged).await.contains("| 10010 |"));
        let text = answer(
            &ctx,
            "SELECT a.s AS a, b.s AS b \
             FROM (SELECT sum(value) AS s FROM generate_series(1, 1000)) a, \
                  (SELECT sum(value) AS s FROM generate_series(1, 2000)) b",
        )
        .await;
        assert!(text.contains("| 500500 | 2001000 |"), "{text}");
        // Columns resolve, qualified or not.
        let text = answer(
            &ctx,
            "SELECT max(value) AS m, max(g.v) AS n \
             FROM generate_series(1, 7), (SELECT value AS v FROM generate_series(1, 5)) g",
        )
        .await;
        assert!(text.contains("| 7 | 5 |"), "{text}");
    }

    #[tokio::test]
    async fn a_call_read_twice_is_one_call() {
        let ctx = context(true);
        let plan = ctx
            .sql(
                "WITH g AS (SELECT sum(value) AS s FROM generate_series(1, 1000)) \
                 SELECT a.s AS a, b.s AS b FROM g a, g b",
            )
            .await
            .unwrap()
            .into_optimized_plan()
            .unwrap();
        let text = plan.display_indent().to_string();
        assert!(text.contains("generate_series()#1"), "{text}");
        assert!(!text.contains("generate_series()#2"), "{text}");
        assert!(text.contains("SharedPlan"), "{text}");
    }
}
