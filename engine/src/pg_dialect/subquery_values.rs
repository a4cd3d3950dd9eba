//! Subqueries used as values where DataFusion 55 cannot run them:
//!
//! - `EXISTS (...)` outside `WHERE` (the select list, a `CASE`, a join
//!   condition) becomes `(SELECT count(*) FROM ...) > 0`, a scalar subquery
//!   DataFusion decorrelates (`EXISTS` is never NULL, and neither is the count);
//! - `x IN (SELECT y ...)` outside `WHERE` becomes three counts with
//!   PostgreSQL's NULL semantics: true when some `y = x`; false when the
//!   subquery is empty; NULL when `x` is NULL or some `y` is NULL; else false;
//! - scalar subqueries inside an aggregation (`sum(CASE WHEN EXISTS ...)`,
//!   `GROUP BY (SELECT ...)`) are computed in a projection beneath it;
//! - an `EXISTS` correlated by more than equalities (`co.day > e.index`),
//!   which DataFusion cannot decorrelate as a count, splits the projection
//!   holding it in two: the rows where it holds (a semi join) with `true` in
//!   its place, and the others (an anti join) with `false`.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, ExprSchema, Result, ScalarValue, plan_err};
use datafusion::functions_aggregate::count::count;
use datafusion::logical_expr::expr::{Cast, Exists, InSubquery};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::type_coercion::binary::comparison_coercion;
use datafusion::logical_expr::{
    Aggregate, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, Operator, Projection,
    Subquery, binary_expr, col, lit, when,
};
use datafusion::optimizer::AnalyzerRule;

use crate::repeated_subplans::repeatable;

/// Rewrites `EXISTS` and `IN (subquery)` outside `WHERE`, and lifts
/// subqueries out of aggregations.
#[derive(Debug, Default)]
pub struct SubqueriesAsValues;

/// `(SELECT count(*) FROM <subquery> [WHERE filter])`, with extra outer references.
fn count_rows(subquery: &Subquery, filter: Option<Expr>, outer: &[Expr]) -> Result<Expr> {
    let mut plan = LogicalPlanBuilder::from(subquery.subquery.as_ref().clone());
    if let Some(f) = filter {
        plan = plan.filter(f)?;
    }
    let counted = plan
        .aggregate(Vec::<Expr>::new(), vec![count(lit(1)).alias("count")])?
        .build()?;
    let mut scalar = subquery.clone();
    scalar.subquery = Arc::new(counted);
    for o in outer {
        if !scalar.outer_ref_columns.contains(o) {
            scalar.outer_ref_columns.push(o.clone());
        }
    }
    Ok(Expr::ScalarSubquery(scalar))
}

/// `x IN (subquery)` as counts; `outer` is the schema `x` is evaluated in.
fn in_as_counts(x: Expr, subquery: Subquery, negated: bool, outer: &DFSchema) -> Result<Expr> {
    let inner = subquery.subquery.schema();
    if inner.fields().len() != 1 {
        return plan_err!("a subquery after IN must return one column");
    }
    let y = Expr::Column(Column::from(inner.qualified_field(0)));
    let mut refs = Vec::new();
    let outer_x = x
        .clone()
        .transform_up(|e| match e {
            Expr::Column(c) => {
                let field = outer.field_from_column(&c)?.clone();
                let r = Expr::OuterReferenceColumn(field, c);
                refs.push(r.clone());
                Ok(Transformed::yes(r))
            }
            e => Ok(Transformed::no(e)),
        })?
        .data;
    let (yt, xt) = (y.get_type(inner)?, x.get_type(outer)?);
    let common = comparison_coercion(&yt, &xt).unwrap_or(yt.clone());
    let cast = |e: Expr, t: &DataType| {
        if *t == common {
            e
        } else {
            Expr::Cast(Cast::new(Box::new(e), common.clone()))
        }
    };
    let equal = binary_expr(cast(y.clone(), &yt), Operator::Eq, cast(outer_x, &xt));
    let matches = count_rows(&subquery, Some(equal), &refs)?;
    let rows = count_rows(&subquery, None, &[])?;
    let nulls = count_rows(&subquery, Some(y.is_null()), &[])?;
    let found = when(binary_expr(matches, Operator::Gt, lit(0i64)), lit(true))
        .when(binary_expr(rows, Operator::Eq, lit(0i64)), lit(false))
        .when(
            x.is_null().or(binary_expr(nulls, Operator::Gt, lit(0i64))),
            lit(ScalarValue::Boolean(None)),
        )
        .otherwise(lit(false))?;
    Ok(if negated { !found } else { found })
}

fn rewrite(e: Expr, outer: &DFSchema) -> Result<Transformed<Expr>> {
    match e {
        Expr::Exists(Exists { subquery, negated }) if !correlated_beyond_equalities(&subquery)? => {
            let op = if negated { Operator::Eq } else { Operator::Gt };
            Ok(Transformed::yes(binary_expr(
                count_rows(&subquery, None, &[])?,
                op,
                lit(0i64),
            )))
        }
        Expr::InSubquery(InSubquery {
            expr,
            subquery,
            negated,
        }) => Ok(Transformed::yes(in_as_counts(
            *expr, subquery, negated, outer,
        )?)),
        e => Ok(Transformed::no(e)),
    }
}

/// True when a subquery refers to the outer query other than by
/// `column = outer column` conjuncts of its filters.
fn correlated_beyond_equalities(subquery: &Subquery) -> Result<bool> {
    let mut beyond = false;
    subquery.subquery.apply(|p| {
        let in_filter = matches!(p, LogicalPlan::Filter(_));
        p.apply_expressions(|e| {
            for c in datafusion::logical_expr::utils::split_conjunction(e) {
                let outer = c.exists(|x| Ok(matches!(x, Expr::OuterReferenceColumn(..))))?;
                let equality = matches!(c, Expr::BinaryExpr(b) if b.op == Operator::Eq
                    && matches!((b.left.as_ref(), b.right.as_ref()),
                        (Expr::Column(_), Expr::OuterReferenceColumn(..))
                        | (Expr::OuterReferenceColumn(..), Expr::Column(_))));
                if outer && !(in_filter && equality) {
                    beyond = true;
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })
    })?;
    Ok(beyond)
}

/// The first `EXISTS` of the expressions correlated beyond equalities.
fn exists_beyond_equalities(exprs: &[Expr]) -> Result<Option<Expr>> {
    let mut found = None;
    for e in exprs {
        e.apply(|x| {
            if let Expr::Exists(Exists { subquery, .. }) = x
                && found.is_none()
                && correlated_beyond_equalities(subquery)?
                && repeatable(&subquery.subquery)?
            {
                found = Some(x.clone());
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
    }
    Ok(found)
}

/// The most such `EXISTS` one projection is split on (each doubles it).
const MAX_SPLITS: usize = 3;

/// A projection holding an `EXISTS` correlated beyond equalities, as the
/// union of its rows where the `EXISTS` holds and where it does not.
fn split_on_exists(projection: Projection, depth: usize) -> Result<Transformed<LogicalPlan>> {
    let Some(found) = (if depth < MAX_SPLITS && repeatable(&projection.input)? {
        exists_beyond_equalities(&projection.expr)?
    } else {
        None
    }) else {
        return Ok(Transformed::no(LogicalPlan::Projection(projection)));
    };
    let Expr::Exists(Exists { subquery, negated }) = &found else {
        return Ok(Transformed::no(LogicalPlan::Projection(projection)));
    };
    let branch = |holds: bool| -> Result<LogicalPlan> {
        let test = Expr::Exists(Exists {
            subquery: subquery.clone(),
            negated: !holds,
        });
        let input = LogicalPlanBuilder::from(projection.input.as_ref().clone())
            .filter(test)?
            .build()?;
        let value = lit(holds != *negated);
        let names = NamePreserver::new_for_projection();
        let exprs = projection
            .expr
            .iter()
            .map(|e| {
                let name = names.save(e);
                let e = e
                    .clone()
                    .transform_up(|x| {
                        if x == found {
                            Ok(Transformed::yes(value.clone()))
                        } else {
                            Ok(Transformed::no(x))
                        }
                    })?
                    .data;
                Ok(name.restore(e))
            })
            .collect::<Result<Vec<_>>>()?;
        let p = Projection::try_new(exprs, Arc::new(input))?;
        Ok(split_on_exists(p, depth + 1)?.data)
    };
    let union = LogicalPlanBuilder::from(branch(true)?)
        .union(branch(false)?)?
        .build()?;
    // A union's columns lose their tables; the plan above reads them by
    // the projection's qualified names.
    let requalified = projection
        .schema
        .iter()
        .enumerate()
        .map(|(i, (q, f))| {
            Expr::Column(Column::from(union.schema().qualified_field(i)))
                .alias_qualified(q.cloned(), f.name())
        })
        .collect();
    Ok(Transformed::yes(LogicalPlan::Projection(
        Projection::try_new(requalified, Arc::new(union))?,
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
            let exists = matches!(x, Expr::Exists(Exists { subquery, .. })
                if correlated_beyond_equalities(subquery)?);
            if (exists || matches!(x, Expr::ScalarSubquery(_))) && !found.contains(x) {
                found.push(x.clone());
                return Ok(TreeNodeRecursion::Jump);
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
    let input = split_on_exists(Projection::try_new(below, agg.input.clone())?, 0)?.data;
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

impl AnalyzerRule for SubqueriesAsValues {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|p| {
            // DataFusion turns subqueries in a filter into semi or mark joins;
            // a value is computed from the plan's one input.
            let outer = match p.inputs().as_slice() {
                [input] if !matches!(p, LogicalPlan::Filter(_)) => input.schema().clone(),
                _ => return Ok(Transformed::no(p)),
            };
            let names = NamePreserver::new(&p);
            let p = p.map_expressions(|e| {
                let name = names.save(&e);
                Ok(e.transform_up(|e| rewrite(e, &outer))?
                    .update_data(|e| name.restore(e)))
            })?;
            p.transform_data(|p| match p {
                LogicalPlan::Aggregate(agg) => lift_subqueries(agg),
                LogicalPlan::Projection(projection) => split_on_exists(projection, 0),
                p => Ok(Transformed::no(p)),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "pg_subqueries_as_values"
    }
}
