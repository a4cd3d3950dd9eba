//! Arithmetic that neither wraps around nor fails on data unannounced.
//!
//! DataFusion computes `+ - *` of integers wrapping around
//! (`CAST(2147483647 AS integer) + 1` is -2147483648) where PostgreSQL
//! raises 22003 "integer out of range", and fails on a decimal product past
//! 128 bits, `i64::MIN / -1` or a date moved a hundred million years.
//! Two forms of each operator, as functions with the operator's types and
//! names:
//!
//! - *checked* (`tsunagu_checked_plus`, ...): integer `+ - *` that fail
//!   with 22003 where the result is beyond the type, as PostgreSQL's;
//! - *total* (`tsunagu_total_plus`, ...): `+ - * / %` of integers and
//!   decimals, and dates or timestamps moved by intervals, that are NULL
//!   where the operator would fail or wrap. An analyst's statement thus
//!   fails on no data: an error that some row's value overflows would tell
//!   about that row (`privacy`).
//!
//! [`CheckedIntegerArithmetic`], the last analyzer rule, plans integer
//! `+ - *` in one of the two forms, after [`ArithmeticOptions`]: checked
//! for a steward, total in a session under the privacy rules.

use datafusion::arrow::array::{Array, ArrayRef, Datum, new_null_array};
use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::compute::{cast, concat};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::error::ArrowError;
use datafusion::common::config::{ConfigExtension, ConfigOptions};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{
    DFSchema, DataFusionError, Result, ScalarValue, exec_err, extensions_options, plan_err,
};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::type_coercion::binary::BinaryTypeCoercer;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_expr_common::datum::apply;

extensions_options! {
    /// How a session's expressions fail (`tsunagu.total`).
    pub struct ArithmeticOptions {
        /// NULL where integer `+ - *` overflow, instead of PostgreSQL's
        /// error, and every cast and function total (`privacy::TotalExpressions`):
        /// set in sessions under the privacy rules.
        pub total: bool, default = false
    }
}

impl ConfigExtension for ArithmeticOptions {
    const PREFIX: &'static str = "tsunagu";
}

/// What an operator does where it would fail or wrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Failure {
    /// PostgreSQL's error, 22003.
    Error,
    /// NULL.
    Null,
}

/// The operators, their forms and their functions' names.
const FORMS: [(Operator, Failure, &str); 8] = [
    (Operator::Plus, Failure::Null, "tsunagu_total_plus"),
    (Operator::Minus, Failure::Null, "tsunagu_total_minus"),
    (Operator::Multiply, Failure::Null, "tsunagu_total_multiply"),
    (Operator::Divide, Failure::Null, "tsunagu_total_divide"),
    (Operator::Modulo, Failure::Null, "tsunagu_total_modulo"),
    (Operator::Plus, Failure::Error, "tsunagu_checked_plus"),
    (Operator::Minus, Failure::Error, "tsunagu_checked_minus"),
    (
        Operator::Multiply,
        Failure::Error,
        "tsunagu_checked_multiply",
    ),
];

/// `a op b` in one form.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Arithmetic {
    op: Operator,
    failure: Failure,
    name: &'static str,
    signature: Signature,
}

/// Every form of every operator, as functions to register.
pub fn functions() -> Vec<ScalarUDF> {
    FORMS
        .iter()
        .map(|&(op, failure, name)| {
            ScalarUDF::new_from_impl(Arithmetic {
                op,
                failure,
                name,
                signature: Signature::user_defined(Volatility::Immutable),
            })
        })
        .collect()
}

/// The names of the total forms.
pub fn total_names() -> impl Iterator<Item = &'static str> {
    FORMS
        .iter()
        .filter(|(_, f, _)| *f == Failure::Null)
        .map(|(_, _, name)| *name)
}

/// The names of the checked forms.
pub fn checked_names() -> impl Iterator<Item = &'static str> {
    FORMS
        .iter()
        .filter(|(_, f, _)| *f == Failure::Error)
        .map(|(_, _, name)| *name)
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

fn call(op: Operator, failure: Failure, left: &Expr, right: &Expr) -> Option<Expr> {
    let name = FORMS.iter().find(|(o, f, _)| *o == op && *f == failure)?.2;
    let udf = functions().into_iter().find(|u| u.name() == name)?;
    Some(udf.call(vec![left.clone(), right.clone()]))
}

/// `left op right` in its total form when it can fail on data (typed
/// against `schema`); `None` for other operators or types.
pub fn total(left: &Expr, op: Operator, right: &Expr, schema: &DFSchema) -> Option<Expr> {
    let (l, r) = (left.get_type(schema).ok()?, right.get_type(schema).ok()?);
    if !may_fail(op, &l, &r) {
        return None;
    }
    call(op, Failure::Null, left, right)
}

/// The analyzer rule; see the module's documentation.
#[derive(Debug, Default)]
pub struct CheckedIntegerArithmetic;

impl AnalyzerRule for CheckedIntegerArithmetic {
    fn analyze(&self, plan: LogicalPlan, config: &ConfigOptions) -> Result<LogicalPlan> {
        let failure = match config.extensions.get::<ArithmeticOptions>() {
            Some(o) if o.total => Failure::Null,
            _ => Failure::Error,
        };
        super::retype_up(plan, |p| {
            super::rewrite_expressions(p, |e, schema| {
                let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &e else {
                    return Ok(Transformed::no(e));
                };
                if !matches!(op, Operator::Plus | Operator::Minus | Operator::Multiply) {
                    return Ok(Transformed::no(e));
                }
                let (Ok(l), Ok(r)) = (left.get_type(schema), right.get_type(schema)) else {
                    return Ok(Transformed::no(e));
                };
                if !(l.is_integer() && r.is_integer()) {
                    return Ok(Transformed::no(e));
                }
                Ok(match call(*op, failure, left, right) {
                    Some(c) => Transformed::yes(c),
                    None => Transformed::no(e),
                })
            })
        })
    }

    fn name(&self) -> &str {
        "pg_checked_integer_arithmetic"
    }
}

/// `n` rows of type `out`, each computed alone by `row`, NULL where it
/// gives none: how a total form computes a batch in which some row fails.
pub(crate) fn row_by_row(
    n: usize,
    out: &DataType,
    row: impl Fn(usize) -> Option<ArrayRef>,
) -> Result<ArrayRef> {
    let rows: Vec<ArrayRef> = (0..n)
        .map(|i| {
            row(i)
                .filter(|a| a.len() == 1 && a.data_type() == out)
                .unwrap_or_else(|| new_null_array(out, 1))
        })
        .collect();
    if rows.is_empty() {
        return Ok(new_null_array(out, 0));
    }
    let refs: Vec<&dyn Array> = rows.iter().map(|r| r.as_ref()).collect();
    Ok(concat(&refs)?)
}

/// PostgreSQL's name of an integer type, for its "out of range" error.
fn pg_integer_name(t: &DataType) -> &'static str {
    match t {
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint",
        DataType::Int32 | DataType::UInt16 => "integer",
        _ => "bigint",
    }
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
            _ => plan_err!("{} takes two arguments", self.name),
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
            _ => plan_err!("{} takes two arguments", self.name),
        }
    }
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        match args {
            [a, b] => {
                let (a, b) = BinaryTypeCoercer::new(a, &self.op, b).get_input_types()?;
                Ok(vec![a, b])
            }
            _ => plan_err!("{} takes two arguments", self.name),
        }
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match args {
            [a, b] => BinaryTypeCoercer::new(a, &self.op, b).get_result_type(),
            _ => plan_err!("{} takes two arguments", self.name),
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
            return exec_err!("{} takes two arguments", self.name);
        };
        let out = args.return_field.data_type();
        let value = match (apply(a, b, |l, r| self.kernel(l, r)), self.failure) {
            (Ok(v), _) => v,
            (Err(e), Failure::Error) => {
                return Err(match e {
                    DataFusionError::ArrowError(a, _)
                        if matches!(*a, ArrowError::ArithmeticOverflow(_)) =>
                    {
                        DataFusionError::ArrowError(
                            Box::new(ArrowError::ArithmeticOverflow(format!(
                                "{} out of range",
                                pg_integer_name(out)
                            ))),
                            None,
                        )
                    }
                    e => e,
                });
            }
            // Some row fails: each row alone, NULL where it fails.
            (Err(_), Failure::Null) => {
                let n = args.number_rows;
                let (a, b) = (a.to_array(n)?, b.to_array(n)?);
                let array = row_by_row(n, out, |i| {
                    self.kernel(&a.slice(i, 1), &b.slice(i, 1))
                        .and_then(|v| cast(&v, out))
                        .ok()
                })?;
                let scalars = args
                    .args
                    .iter()
                    .all(|v| matches!(v, ColumnarValue::Scalar(_)));
                if scalars && array.len() == 1 {
                    ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
                } else {
                    ColumnarValue::Array(array)
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

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    async fn text(ctx: &SessionContext, sql: &str) -> String {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string()
    }

    /// Within range, both forms answer what DataFusion's operators answer,
    /// types included; beyond it, the total form is NULL and the checked
    /// one fails with PostgreSQL's message.
    #[tokio::test]
    async fn both_forms_answer_as_the_operators_within_range() {
        let ctx = SessionContext::new();
        for f in super::functions() {
            ctx.register_udf(f);
        }
        let values = "(VALUES (CAST(7 AS INT), CAST(-3 AS BIGINT), CAST(12.25 AS DECIMAL(10, 2)), \
                      CAST(3 AS DECIMAL(5, 0)), DATE '2024-02-29')) t(i, b, d, e, day)";
        let operators = format!(
            "SELECT i + b, i - b, i * b, i / b, i % b, d + e, d - e, d * e, d / e, d % e, \
             arrow_typeof(d * e), day + INTERVAL '1 month' FROM {values}"
        );
        let total = format!(
            "SELECT tsunagu_total_plus(i, b), tsunagu_total_minus(i, b), \
             tsunagu_total_multiply(i, b), tsunagu_total_divide(i, b), tsunagu_total_modulo(i, b), \
             tsunagu_total_plus(d, e), tsunagu_total_minus(d, e), tsunagu_total_multiply(d, e), \
             tsunagu_total_divide(d, e), tsunagu_total_modulo(d, e), \
             arrow_typeof(tsunagu_total_multiply(d, e)), \
             tsunagu_total_plus(day, INTERVAL '1 month') FROM {values}"
        );
        let body = |t: String| t.lines().skip(3).collect::<Vec<_>>().join("\n");
        assert_eq!(
            body(text(&ctx, &operators).await),
            body(text(&ctx, &total).await)
        );
        let checked = "SELECT tsunagu_checked_plus(i, b), tsunagu_checked_minus(i, b), \
                       tsunagu_checked_multiply(i, b) FROM (VALUES (CAST(7 AS INT), CAST(-3 AS BIGINT))) t(i, b)";
        assert!(text(&ctx, checked).await.contains("| 4 "));
        let beyond = "SELECT tsunagu_total_plus(b, 1) IS NULL, tsunagu_total_divide(b, -1) IS NULL, \
                      tsunagu_total_plus(b, 0) = b \
                      FROM (VALUES (CAST(9223372036854775807 AS BIGINT)), (CAST(-9223372036854775808 AS BIGINT))) t(b)";
        let out = text(&ctx, beyond).await;
        assert!(out.contains("| true ") && out.contains("| false "), "{out}");
        let e = ctx
            .sql("SELECT tsunagu_checked_plus(b, b) FROM (VALUES (CAST(9223372036854775807 AS BIGINT))) t(b)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err();
        assert!(e.to_string().contains("bigint out of range"), "{e}");
    }
}
