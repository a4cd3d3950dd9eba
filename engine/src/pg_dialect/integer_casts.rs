//! Casts of fractional numbers to integers, rounded as PostgreSQL rounds.
//!
//! PostgreSQL rounds when it casts to an integer: a `numeric` half away from
//! zero (`2.5::int` is 3), a `double precision` half to even (`2.5::float8::int`
//! is 2, as `rint`). DataFusion truncates both (2), so `CAST(days / 365.25
//! AS INT)` gave a year less for half the persons. [`RoundedIntegerCasts`],
//! an analyzer rule that runs before type coercion (so only the statement's
//! own casts are met), rounds the value first.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result};
use datafusion::functions::math::expr_fn::{abs, round, trunc};
use datafusion::logical_expr::expr::{Cast, TryCast};
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, lit, when};
use datafusion::optimizer::AnalyzerRule;

/// The analyzer rule; see the module's documentation.
#[derive(Debug, Default)]
pub struct RoundedIntegerCasts;

impl AnalyzerRule for RoundedIntegerCasts {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|p| super::rewrite_expressions(p, rounded))
            .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "pg_rounded_integer_casts"
    }
}

fn rounded(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let (inner, to) = match &e {
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => {
            (expr.as_ref(), field.data_type())
        }
        _ => return Ok(Transformed::no(e)),
    };
    if !to.is_integer() {
        return Ok(Transformed::no(e));
    }
    let Ok(from) = inner.get_type(schema) else {
        return Ok(Transformed::no(e));
    };
    let value = match from {
        DataType::Decimal128(_, s) | DataType::Decimal256(_, s) if s > 0 => {
            round(vec![inner.clone()])
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => half_to_even(inner.clone())?,
        _ => return Ok(Transformed::no(e)),
    };
    let replaced = match e {
        Expr::Cast(Cast { field, .. }) => Expr::Cast(Cast {
            expr: Box::new(value),
            field,
        }),
        Expr::TryCast(TryCast { field, .. }) => Expr::TryCast(TryCast {
            expr: Box::new(value),
            field,
        }),
        other => return Ok(Transformed::no(other)),
    };
    Ok(Transformed::yes(replaced))
}

/// `x` rounded half to even, as C's `rint`: `2 * round(x / 2)` on a half,
/// `round(x)` otherwise.
fn half_to_even(x: Expr) -> Result<Expr> {
    let fraction = abs(x.clone() - trunc(vec![x.clone()]));
    when(
        fraction.eq(lit(0.5)),
        lit(2.0) * round(vec![x.clone() / lit(2.0)]),
    )
    .otherwise(round(vec![x]))
}
