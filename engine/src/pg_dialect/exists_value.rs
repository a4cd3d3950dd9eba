//! Subqueries used as values where DataFusion 55 cannot run them:
//!
//! - `EXISTS (...)` outside `WHERE` (the select list, a `CASE`, a join
//!   condition) becomes `(SELECT count(*) FROM ...) > 0`, a scalar subquery
//!   DataFusion decorrelates (`EXISTS` is never NULL, and neither is the count);
//! - scalar subqueries inside an aggregation (`sum(CASE WHEN EXISTS ...)`,
//!   `GROUP BY (SELECT ...)`) are computed in a projection beneath it.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::functions_aggregate::count::count;
use datafusion::logical_expr::expr::Exists;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    Aggregate, Expr, LogicalPlan, LogicalPlanBuilder, Operator, Projection, binary_expr, col, lit,
};
use datafusion::optimizer::AnalyzerRule;

/// Rewrites `EXISTS` outside `WHERE`, and lifts subqueries out of aggregations.
#[derive(Debug, Default)]
pub struct ExistsAsValue;

fn rewrite(e: Expr) -> Result<Transformed<Expr>> {
    let Expr::Exists(Exists { subquery, negated }) = e else {
        return Ok(Transformed::no(e));
    };
    let counted = LogicalPlanBuilder::from(subquery.subquery.as_ref().clone())
        .aggregate(Vec::<Expr>::new(), vec![count(lit(1)).alias("count")])?
        .build()?;
    let mut scalar = subquery;
    scalar.subquery = Arc::new(counted);
    let op = if negated { Operator::Eq } else { Operator::Gt };
    Ok(Transformed::yes(binary_expr(
        Expr::ScalarSubquery(scalar),
        op,
        lit(0i64),
    )))
}

fn lifted_name(k: usize) -> String {
    format!("__tsunagu_subquery_{k}")
}

/// An aggregation whose expressions hold scalar subqueries, with them
/// computed in a projection beneath it.
fn lift_subqueries(agg: Aggregate) -> Result<Transformed<LogicalPlan>> {
    let mut found: Vec<Expr> = Vec::new();
    for e in agg.group_expr.iter().chain(agg.aggr_expr.iter()) {
        e.apply(|x| {
            if matches!(x, Expr::ScalarSubquery(_)) && !found.contains(x) {
                found.push(x.clone());
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
    }
    if found.is_empty() {
        return Ok(Transformed::no(LogicalPlan::Aggregate(agg)));
    }
    let mut below: Vec<Expr> = agg
        .input
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
    for (k, s) in found.iter().enumerate() {
        below.push(s.clone().alias(lifted_name(k)));
    }
    let input = LogicalPlan::Projection(Projection::try_new(below, agg.input.clone())?);
    let names = NamePreserver::new_for_projection();
    let replace = |exprs: Vec<Expr>| -> Result<Vec<Expr>> {
        exprs
            .into_iter()
            .map(|e| {
                let name = names.save(&e);
                let e = e
                    .transform_up(|x| match found.iter().position(|f| *f == x) {
                        Some(k) => Ok(Transformed::yes(col(lifted_name(k)))),
                        None => Ok(Transformed::no(x)),
                    })?
                    .data;
                Ok(name.restore(e))
            })
            .collect()
    };
    let group = replace(agg.group_expr)?;
    let aggregates = replace(agg.aggr_expr)?;
    Ok(Transformed::yes(LogicalPlan::Aggregate(
        Aggregate::try_new(Arc::new(input), group, aggregates)?,
    )))
}

impl AnalyzerRule for ExistsAsValue {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|p| {
            // DataFusion turns EXISTS in a filter into a semi or mark join.
            if matches!(p, LogicalPlan::Filter(_)) {
                return Ok(Transformed::no(p));
            }
            let names = NamePreserver::new(&p);
            let p = p.map_expressions(|e| {
                let name = names.save(&e);
                Ok(e.transform_up(rewrite)?.update_data(|e| name.restore(e)))
            })?;
            p.transform_data(|p| match p {
                LogicalPlan::Aggregate(agg) => lift_subqueries(agg),
                p => Ok(Transformed::no(p)),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "pg_exists_as_value"
    }
}
