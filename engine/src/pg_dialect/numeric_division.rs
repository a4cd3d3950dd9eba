//! Division of a `numeric` as PostgreSQL divides it.
//!
//! DataFusion divides decimals at the dividend's scale plus four
//! (`49.0348`); PostgreSQL's `numeric_div` rounds the quotient at a scale
//! chosen per value (`select_div_scale`: sixteen significant digits, at
//! least the operands' scales), `49.0348923533778768`. [`NumericDivision`],
//! an analyzer rule that runs after the aggregates are typed and before
//! type coercion, plans `a / b` where one side is a `numeric` and the other
//! a `numeric` or an integer as [`tsunagu_numeric_div`](NUMERIC_DIV): that
//! rounding, written with twenty digits after the point. A quotient beyond
//! 38 digits is NULL; division by zero is PostgreSQL's error.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, AsArray, Decimal128Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Decimal128Type};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, DataFusionError, Result, ScalarValue, plan_err};
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use super::numeric_aggregates::{AVG_TYPE, division_scale_of, rounded_quotient};

/// The name of the `numeric` division.
pub const NUMERIC_DIV: &str = "tsunagu_numeric_div";

/// The scale of the quotient as written.
const SCALE: u32 = 20;

/// The `numeric` division, as a scalar function.
pub fn numeric_div() -> Arc<ScalarUDF> {
    static DIV: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
        Arc::new(ScalarUDF::new_from_impl(NumericDiv {
            signature: Signature::user_defined(Volatility::Immutable),
        }))
    });
    DIV.clone()
}

/// The analyzer rule; see the module's documentation.
#[derive(Debug, Default)]
pub struct NumericDivision;

impl AnalyzerRule for NumericDivision {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        super::retype_up(plan, |p| super::rewrite_expressions(p, divide))
    }

    fn name(&self) -> &str {
        "pg_numeric_division"
    }
}

fn divide(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr {
        op: Operator::Divide,
        left,
        right,
    }) = &e
    else {
        return Ok(Transformed::no(e));
    };
    let (Ok(l), Ok(r)) = (left.get_type(schema), right.get_type(schema)) else {
        return Ok(Transformed::no(e));
    };
    let decimal = |t: &DataType| matches!(t, DataType::Decimal128(..));
    let exact = |t: &DataType| decimal(t) || t.is_integer();
    if !(decimal(&l) || decimal(&r)) || !exact(&l) || !exact(&r) {
        return Ok(Transformed::no(e));
    }
    Ok(Transformed::yes(
        numeric_div().call(vec![*left.clone(), *right.clone()]),
    ))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct NumericDiv {
    signature: Signature,
}

/// An exact operand's decimal type: decimals as they are, integers of scale 0.
fn as_decimal(t: &DataType) -> Option<DataType> {
    match t {
        DataType::Decimal128(..) => Some(t.clone()),
        t if t.is_integer() || t.is_null() => Some(DataType::Decimal128(20, 0)),
        _ => None,
    }
}

impl ScalarUDFImpl for NumericDiv {
    fn name(&self) -> &str {
        NUMERIC_DIV
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        match args {
            [a, b] => match (as_decimal(a), as_decimal(b)) {
                (Some(a), Some(b)) => Ok(vec![a, b]),
                _ => plan_err!("{NUMERIC_DIV} divides numerics or integers, not {a} by {b}"),
            },
            _ => plan_err!("{NUMERIC_DIV} takes two numbers"),
        }
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(AVG_TYPE)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [a, b] = args.args.as_slice() else {
            return datafusion::common::exec_err!("{NUMERIC_DIV} takes two numbers");
        };
        let scalar = matches!((a, b), (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_)));
        let n = args.number_rows;
        let operand = |v: &ColumnarValue| -> Result<(Decimal128Array, u32)> {
            let a = v.to_array(n)?;
            let t = as_decimal(a.data_type()).unwrap_or(DataType::Decimal128(38, 0));
            let a = cast(&a, &t)?;
            let scale = match t {
                DataType::Decimal128(_, s) => s.max(0) as u32,
                _ => 0,
            };
            Ok((a.as_primitive::<Decimal128Type>().clone(), scale))
        };
        let ((a, sa), (b, sb)) = (operand(a)?, operand(b)?);
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            if a.is_null(i) || b.is_null(i) {
                out.push(None);
                continue;
            }
            let (x, y) = (a.value(i), b.value(i));
            if y == 0 {
                return Err(DataFusionError::ArrowError(
                    Box::new(datafusion::arrow::error::ArrowError::DivideByZero),
                    None,
                ));
            }
            out.push(quotient(x, sa, y, sb));
        }
        let out = Arc::new(Decimal128Array::from(out).with_precision_and_scale(38, SCALE as i8)?);
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(out.as_ref(), 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

/// `(x / 10^sx) / (y / 10^sy)` rounded at PostgreSQL's scale, as a decimal
/// of scale [`SCALE`]; `None` beyond 38 digits.
fn quotient(x: i128, sx: u32, y: i128, sy: u32) -> Option<i128> {
    let scale = division_scale_of((x, sx), (y, sy)).min(SCALE);
    // x·10^(sy + scale) / (y·10^sx), by long division.
    let shift = sy as i64 + scale as i64 - sx as i64;
    let (num, den) = if shift >= 0 {
        (x.unsigned_abs(), y.unsigned_abs())
    } else {
        let den = y
            .unsigned_abs()
            .checked_mul(10u128.checked_pow((-shift) as u32)?)?;
        (x.unsigned_abs(), den)
    };
    let q = rounded_quotient(num, den, shift.max(0) as u32)?;
    let q = q.checked_mul(10u128.pow(SCALE - scale))?;
    let q = i128::try_from(q).ok().filter(|q| *q < 10i128.pow(38))?;
    Some(if (x < 0) != (y < 0) { -q } else { q })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(x: i128, sx: u32, y: i128, sy: u32) -> String {
        let v = quotient(x, sx, y, sy).unwrap();
        let s = format!("{:021}", v.abs());
        let (i, f) = s.split_at(s.len() - SCALE as usize);
        let shown = division_scale_of((x, sx), (y, sy)).min(SCALE) as usize;
        let f = &f[..shown];
        let point = if f.is_empty() { "" } else { "." };
        format!("{}{i}{point}{f}", if v < 0 { "-" } else { "" })
    }

    /// PostgreSQL 15.18's `numeric` quotients, as psql prints them.
    #[test]
    fn quotients_as_postgresql_writes_them() {
        // 132400 / 2700::numeric
        assert_eq!(text(132_400, 0, 2700, 0), "49.0370370370370370");
        // 2011::numeric / 10
        assert_eq!(text(2011, 0, 10, 0), "201.1000000000000000");
        // 1.25 / 3
        assert_eq!(text(125, 2, 3, 0), "0.41666666666666666667");
        // -7 / 2.5
        assert_eq!(text(-7, 0, 25, 1), "-2.8000000000000000");
        // 1 / 3::numeric
        assert_eq!(text(1, 0, 3, 0), "0.33333333333333333333");
        // 123456789.123 / 7
        assert_eq!(text(123_456_789_123, 3, 7, 0), "17636684.160428571429");
    }
}
