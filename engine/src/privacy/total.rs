//! Total forms of functions that can fail on data: an analyst's statement
//! runs the same way whatever the data holds.

use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use datafusion::arrow::array::{Array, AsArray, Date32Array};
use datafusion::arrow::datatypes::{DataType, FieldRef, Int32Type};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{ExprSchema, Result, ScalarValue};
use datafusion::logical_expr::interval_arithmetic::Interval;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

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

/// The prefix of a function's total form: `tsunagu_total:sqrt`.
const TOTAL_PREFIX: &str = "tsunagu_total:";

/// A scalar function that is NULL where it would fail or panic: the batch
/// is computed as usual, and only when that fails each row alone, NULL for
/// the rows that fail. Its names (column names, `EXPLAIN`) are the
/// function's own.
#[derive(Debug, PartialEq, Eq, Hash)]
struct TotalFunction {
    inner: Arc<ScalarUDF>,
    name: String,
}

/// The total form of `f`.
pub fn total_function(f: Arc<ScalarUDF>) -> ScalarUDF {
    let name = format!("{TOTAL_PREFIX}{}", f.name());
    ScalarUDF::new_from_impl(TotalFunction { inner: f, name })
}

/// `f(args)` computed without failing: `None` for a panic or an error.
fn attempt(f: &ScalarUDF, args: ScalarFunctionArgs) -> Option<ColumnarValue> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f.invoke_with_args(args)))
        .ok()?
        .ok()
}

impl ScalarUDFImpl for TotalFunction {
    fn name(&self) -> &str {
        &self.name
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.schema_name(args)
    }
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(args)
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        self.inner.return_type(args)
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        // Nullable: a row that fails is NULL.
        let field = self.inner.return_field_from_args(args)?;
        Ok(Arc::new(field.as_ref().clone().with_nullable(true)))
    }
    fn is_nullable(&self, _args: &[Expr], _schema: &dyn ExprSchema) -> bool {
        true
    }
    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        // A function that simplifies into other expressions (`coalesce`
        // into `CASE`) is total in them.
        Ok(match self.inner.simplify(args, info)? {
            ExprSimplifyResult::Original(args) => ExprSimplifyResult::Original(args),
            ExprSimplifyResult::Simplified(e) => {
                ExprSimplifyResult::Simplified(e.transform_up(total_expression)?.data)
            }
        })
    }
    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }
    fn conditional_arguments<'a>(
        &self,
        args: &'a [Expr],
    ) -> Option<(Vec<&'a Expr>, Vec<&'a Expr>)> {
        self.inner.conditional_arguments(args)
    }
    fn evaluate_bounds(&self, input: &[&Interval]) -> Result<Interval> {
        self.inner.evaluate_bounds(input)
    }
    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.output_ordering(inputs)
    }
    fn preserves_lex_ordering(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.preserves_lex_ordering(inputs)
    }
    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        let inner = self.inner.inner().with_updated_config(config)?;
        Some(total_function(Arc::new(inner)))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let Some(v) = attempt(&self.inner, args.clone()) {
            return Ok(v);
        }
        let out = args.return_field.data_type().clone();
        let scalars = args
            .args
            .iter()
            .all(|v| matches!(v, ColumnarValue::Scalar(_)));
        if scalars {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from(&out)?));
        }
        // Each row alone, NULL where it fails.
        let array = crate::pg_dialect::arithmetic::row_by_row(args.number_rows, &out, |i| {
            let mut one = args.clone();
            one.number_rows = 1;
            one.args = args
                .args
                .iter()
                .map(|v| match v {
                    ColumnarValue::Array(a) => ColumnarValue::Array(a.slice(i, 1)),
                    s => s.clone(),
                })
                .collect();
            attempt(&self.inner, one).and_then(|v| v.to_array(1).ok())
        })?;
        Ok(ColumnarValue::Array(array))
    }
}

/// One expression in its total form: a cast becomes `TRY_CAST`, a scalar
/// function (other than Tsunagu's own `tsunagu_*`, which the privacy layer
/// places and keeps where it plans them) its total form.
fn total_expression(e: Expr) -> Result<Transformed<Expr>> {
    Ok(match e {
        Expr::Cast(c) => Transformed::yes(Expr::TryCast(datafusion::logical_expr::TryCast {
            expr: c.expr,
            field: c.field,
        })),
        Expr::ScalarFunction(f) if !f.func.name().starts_with("tsunagu_") => Transformed::yes(
            Expr::ScalarFunction(datafusion::logical_expr::expr::ScalarFunction::new_udf(
                Arc::new(total_function(f.func)),
                f.args,
            )),
        ),
        e => Transformed::no(e),
    })
}

/// The last analyzer rule of a session under the privacy rules
/// (`tsunagu.total`): every cast, including those type coercion
/// adds (`year_of_birth = 'abc'`), is a `TRY_CAST`, and every scalar
/// function is NULL where it would fail or panic (`sqrt(-1)`,
/// `abs(i64::MIN)`, an array index beyond 32 bits, ...), so that an
/// analyst's statement fails on no data, whatever function it calls under
/// whatever condition.
#[derive(Debug, Default)]
pub struct TotalExpressions;

impl AnalyzerRule for TotalExpressions {
    fn analyze(&self, plan: LogicalPlan, config: &ConfigOptions) -> Result<LogicalPlan> {
        let total = config
            .extensions
            .get::<crate::pg_dialect::arithmetic::ArithmeticOptions>()
            .is_some_and(|o| o.total);
        if !total {
            return Ok(plan);
        }
        plan.transform_up_with_subqueries(|node| {
            node.map_expressions(|e| e.transform_up(total_expression))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "tsunagu_total_expressions"
    }
}
