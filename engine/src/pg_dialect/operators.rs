//! PostgreSQL's date and interval operators and `EXTRACT`, as an
//! `ExprPlanner` consulted before DataFusion's own.
//!
//! DataFusion 55 types `date - date` as an integer but computes a duration,
//! cannot multiply an interval by a number (how OHDSI SqlRender spells
//! `DATEADD`: `d + 365 * INTERVAL '1 day'`), keeps `date + interval` a date,
//! and returns integers from `EXTRACT`. PostgreSQL 15 answers an integer
//! number of days, an interval, a timestamp and a numeric.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr::Cast;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{Expr, ExprSchemable, Operator, binary_expr};
use datafusion::sql::sqlparser::ast::BinaryOperator;

/// Plans PostgreSQL's date arithmetic and `EXTRACT`.
#[derive(Debug, Default)]
pub struct PgOperators;

fn cast(e: Expr, t: DataType) -> Expr {
    Expr::Cast(Cast::new(Box::new(e), t))
}

fn is_date(t: &DataType) -> bool {
    matches!(t, DataType::Date32 | DataType::Date64)
}

fn is_interval(t: &DataType) -> bool {
    matches!(t, DataType::Interval(_))
}

/// PostgreSQL's `timestamp without time zone`.
pub(crate) const TIMESTAMP: DataType = DataType::Timestamp(TimeUnit::Microsecond, None);

impl ExprPlanner for PgOperators {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        let (Ok(lt), Ok(rt)) = (expr.left.get_type(schema), expr.right.get_type(schema)) else {
            return Ok(PlannerResult::Original(expr));
        };
        let RawBinaryExpr { op, left, right } = expr;
        let planned = match (&op, &lt, &rt) {
            // date - date: the number of days between, an integer.
            (BinaryOperator::Minus, l, r) if is_date(l) && is_date(r) => binary_expr(
                cast(cast(left, DataType::Date32), DataType::Int32),
                Operator::Minus,
                cast(cast(right, DataType::Date32), DataType::Int32),
            ),
            // date ± integer: a date.
            (BinaryOperator::Plus | BinaryOperator::Minus, d, n)
                if is_date(d) && n.is_integer() =>
            {
                let op = if op == BinaryOperator::Plus {
                    Operator::Plus
                } else {
                    Operator::Minus
                };
                cast(
                    binary_expr(
                        cast(cast(left, DataType::Date32), DataType::Int32),
                        op,
                        cast(right, DataType::Int32),
                    ),
                    DataType::Date32,
                )
            }
            (BinaryOperator::Plus, n, d) if is_date(d) && n.is_integer() => cast(
                binary_expr(
                    cast(cast(right, DataType::Date32), DataType::Int32),
                    Operator::Plus,
                    cast(left, DataType::Int32),
                ),
                DataType::Date32,
            ),
            // date ± interval: a timestamp.
            (BinaryOperator::Plus | BinaryOperator::Minus, d, i)
                if is_date(d) && is_interval(i) =>
            {
                let op = if op == BinaryOperator::Plus {
                    Operator::Plus
                } else {
                    Operator::Minus
                };
                binary_expr(cast(left, TIMESTAMP), op, right)
            }
            (BinaryOperator::Plus, i, d) if is_date(d) && is_interval(i) => {
                binary_expr(cast(right, TIMESTAMP), Operator::Plus, left)
            }
            // number * interval, interval * number: an interval.
            (BinaryOperator::Multiply, n, i) if n.is_numeric() && is_interval(i) => {
                super::interval_mul::interval_mul().call(vec![right, left])
            }
            (BinaryOperator::Multiply, i, n) if n.is_numeric() && is_interval(i) => {
                super::interval_mul::interval_mul().call(vec![left, right])
            }
            _ => return Ok(PlannerResult::Original(RawBinaryExpr { op, left, right })),
        };
        Ok(PlannerResult::Planned(planned))
    }

    fn plan_extract(&self, args: Vec<Expr>) -> Result<PlannerResult<Vec<Expr>>> {
        // A numeric, its scale following the field and the source's type.
        Ok(PlannerResult::Planned(
            super::functions::Extract::udf().call(args),
        ))
    }
}
