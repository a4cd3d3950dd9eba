//! Total forms of functions that can fail on data: an analyst's statement
//! runs the same way whatever the data holds.

use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Date32Array, Datum, new_null_array};
use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::compute::{cast, concat};
use datafusion::arrow::datatypes::{DataType, Int32Type};
use datafusion::arrow::error::ArrowError;
use datafusion::common::{DFSchema, Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::type_coercion::binary::BinaryTypeCoercer;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, Operator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::physical_expr_common::datum::apply;

/// `make_date(year, month, day)` that returns NULL for an impossible date.
/// It has a name of its own: functions travel to a cluster's workers by
/// name, and under `make_date` a worker would run DataFusion's, which fails.
#[derive(Debug, PartialEq, Eq, Hash)]
struct MakeDate {
    signature: Signature,
}

impl ScalarUDFImpl for MakeDate {
    fn name(&self) -> &str {
        TOTAL_MAKE_DATE
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Date32)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [y, m, d] = [&arrays[0], &arrays[1], &arrays[2]].map(|a| a.as_primitive::<Int32Type>());
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).map(|e| e.num_days_from_ce());
        let out: Date32Array = (0..y.len())
            .map(|i| {
                if y.is_null(i) || m.is_null(i) || d.is_null(i) {
                    return None;
                }
                let (mm, dd) = (
                    u32::try_from(m.value(i)).ok()?,
                    u32::try_from(d.value(i)).ok()?,
                );
                let date = NaiveDate::from_ymd_opt(y.value(i), mm, dd)?;
                Some(date.num_days_from_ce() - epoch?)
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// The name of the total `make_date`.
pub(super) const TOTAL_MAKE_DATE: &str = "tsunagu_make_date";

/// The total `make_date`, as a function to register.
pub(super) fn make_date_udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(MakeDate {
        signature: Signature::exact(vec![DataType::Int32; 3], Volatility::Immutable),
    })
}

/// The total `make_date` over the original arguments.
pub(super) fn make_date(args: Vec<Expr>) -> Expr {
    let udf = make_date_udf();
    let args = args
        .into_iter()
        .map(|a| {
            Expr::TryCast(datafusion::logical_expr::TryCast::new(
                Box::new(a),
                DataType::Int32,
            ))
        })
        .collect();
    udf.call(args)
}

/// `a op b` over exact numbers (integers and decimals), or dates and
/// timestamps moved by intervals, that is NULL where DataFusion would fail
/// or wrap: a result beyond its type (`i64::MIN / -1`, a decimal product
/// past 128 bits, an integer sum that would wrap around, a date a hundred
/// million years away) or a zero divisor. An analyst's arithmetic thus fails on no data: an
/// error that some row's value overflows would tell about that row.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Arithmetic {
    op: Operator,
    name: &'static str,
    signature: Signature,
}

/// The total arithmetic operators and their functions' names.
const ARITHMETIC: [(Operator, &str); 5] = [
    (Operator::Plus, "tsunagu_total_plus"),
    (Operator::Minus, "tsunagu_total_minus"),
    (Operator::Multiply, "tsunagu_total_multiply"),
    (Operator::Divide, "tsunagu_total_divide"),
    (Operator::Modulo, "tsunagu_total_modulo"),
];

/// Every total arithmetic operator, as functions to register.
pub(super) fn arithmetic_udfs() -> Vec<ScalarUDF> {
    ARITHMETIC
        .iter()
        .map(|&(op, name)| {
            ScalarUDF::new_from_impl(Arithmetic {
                op,
                name,
                signature: Signature::user_defined(Volatility::Immutable),
            })
        })
        .collect()
}

/// The names of the total arithmetic operators.
pub(super) fn arithmetic_names() -> impl Iterator<Item = &'static str> {
    ARITHMETIC.iter().map(|(_, name)| *name)
}

/// True when `l op r` can fail or wrap on data: arithmetic of integers and
/// decimals, and a date or timestamp moved by an interval (beyond the
/// representable years).
fn may_fail(op: Operator, l: &DataType, r: &DataType) -> bool {
    let exact = |t: &DataType| t.is_integer() || t.is_decimal();
    let temporal = |t: &DataType| {
        matches!(
            t,
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)
        )
    };
    let interval = |t: &DataType| matches!(t, DataType::Interval(_));
    (exact(l) && exact(r))
        || match op {
            Operator::Plus => {
                (temporal(l) && interval(r))
                    || (interval(l) && temporal(r))
                    || (interval(l) && interval(r))
            }
            Operator::Minus => (temporal(l) || interval(l)) && interval(r),
            _ => false,
        }
}

/// `left op right` in its total form when it can fail on data (typed
/// against `schema`); `None` for other operators or types.
pub(super) fn arithmetic(
    left: &Expr,
    op: Operator,
    right: &Expr,
    schema: &DFSchema,
) -> Option<Expr> {
    let name = ARITHMETIC.iter().find(|(o, _)| *o == op)?.1;
    let (l, r) = (left.get_type(schema).ok()?, right.get_type(schema).ok()?);
    if !may_fail(op, &l, &r) {
        return None;
    }
    let udf = arithmetic_udfs().into_iter().find(|u| u.name() == name)?;
    Some(udf.call(vec![left.clone(), right.clone()]))
}

impl Arithmetic {
    fn kernel(&self, l: &dyn Datum, r: &dyn Datum) -> std::result::Result<ArrayRef, ArrowError> {
        match self.op {
            Operator::Plus => numeric::add(l, r),
            Operator::Minus => numeric::sub(l, r),
            Operator::Multiply => numeric::mul(l, r),
            Operator::Divide => numeric::div(l, r),
            _ => numeric::rem(l, r),
        }
    }
}

impl ScalarUDFImpl for Arithmetic {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn display_name(&self, args: &[Expr]) -> Result<String> {
        match args {
            [a, b] => Ok(format!("{a} {} {b}", self.op)),
            _ => plan_err!("{} takes two numbers", self.name),
        }
    }
    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        match args {
            [a, b] => Ok(format!(
                "{} {} {}",
                a.schema_name(),
                self.op,
                b.schema_name()
            )),
            _ => plan_err!("{} takes two numbers", self.name),
        }
    }
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        match args {
            [a, b] => {
                let (a, b) = BinaryTypeCoercer::new(a, &self.op, b).get_input_types()?;
                Ok(vec![a, b])
            }
            _ => plan_err!("{} takes two numbers", self.name),
        }
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match args {
            [a, b] => BinaryTypeCoercer::new(a, &self.op, b).get_result_type(),
            _ => plan_err!("{} takes two numbers", self.name),
        }
    }
    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        Ok(match (self.op, inputs) {
            (Operator::Plus, [a, b]) => a.sort_properties.add(&b.sort_properties),
            (Operator::Minus, [a, b]) => a.sort_properties.sub(&b.sort_properties),
            _ => SortProperties::Unordered,
        })
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [a, b] = args.args.as_slice() else {
            return exec_err!("{} takes two numbers", self.name);
        };
        let out = args.return_field.data_type();
        let value = match apply(a, b, |l, r| self.kernel(l, r)) {
            Ok(v) => v,
            // Some row fails: each row alone, NULL where it fails.
            Err(_) => {
                let n = args.number_rows;
                let (a, b) = (a.to_array(n)?, b.to_array(n)?);
                let rows = (0..n)
                    .map(|i| {
                        self.kernel(&a.slice(i, 1), &b.slice(i, 1))
                            .and_then(|v| cast(&v, out))
                            .unwrap_or_else(|_| new_null_array(out, 1))
                    })
                    .collect::<Vec<_>>();
                let refs: Vec<&dyn Array> = rows.iter().map(|r| r.as_ref()).collect();
                let array = if refs.is_empty() {
                    new_null_array(out, 0)
                } else {
                    concat(&refs)?
                };
                match (
                    a.len(),
                    args.args
                        .iter()
                        .all(|v| matches!(v, ColumnarValue::Scalar(_))),
                ) {
                    (1, true) => ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?),
                    _ => ColumnarValue::Array(array),
                }
            }
        };
        // Arrow types a decimal result by its own rules; DataFusion's are
        // what the plan announced.
        if value.data_type() == *out {
            Ok(value)
        } else {
            value.cast_to(out, None)
        }
    }
}
