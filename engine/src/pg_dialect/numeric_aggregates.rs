//! `sum` and `avg` of integers with PostgreSQL's result types.
//!
//! PostgreSQL sums a `bigint` into a `numeric` and averages any integer
//! into a `numeric`; DataFusion answers `bigint` and `double precision`.
//! [`NumericAggregates`], an analyzer rule that runs before type coercion,
//! plans grouped aggregates as PostgreSQL types them:
//!
//! - `sum(x)` of a `bigint` is the sum of `x` as a `numeric` (a decimal of
//!   scale 0), except when `x` is built from integer constants only
//!   (`sum(CASE WHEN ... THEN 1 ELSE 0 END)`, or a column so computed in a
//!   subquery, a `WITH` or `VALUES`): PostgreSQL reads those constants as
//!   `integer` and sums them into a `bigint`;
//! - `avg(x)` of an integer or a `numeric` (a decimal of at most twenty
//!   digits after the point: `avg(CAST(x AS numeric(5, 1)))`) is
//!   [`tsunagu_numeric_avg`](NUMERIC_AVG): the
//!   exact quotient rounded as PostgreSQL's `numeric_div` rounds it
//!   (`select_div_scale`: sixteen significant digits, more for averages
//!   below one), written with twenty digits after the point
//!   (`2.50000000000000000000` where PostgreSQL writes `2.5000000000000000`);
//!   an average beyond 38 digits (18 before the point) is NULL.
//!
//! - `variance`, `var_pop`, `stddev` and `stddev_pop` of an integer or a
//!   `numeric` are [`numeric_variance`]'s aggregates, a `numeric`.
//!
//! Window aggregates (`sum(x) OVER (...)`) are typed the same way;
//! `avg(DISTINCT x)` keeps DataFusion's type.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Decimal128Array, Int64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
use datafusion::common::{Column, Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, Aggregate, AggregateUDF, AggregateUDFImpl, EmitTo, Expr, ExprSchemable,
    GroupsAccumulator, LogicalPlan, Signature, Volatility, Window, WindowFunctionDefinition, cast,
};
use datafusion::optimizer::AnalyzerRule;

use super::numeric_variance::{self, Moment};

/// The name of the `numeric` average of integers.
pub const NUMERIC_AVG: &str = "tsunagu_numeric_avg";

/// The type of the `numeric` average: 38 digits, 20 after the point.
pub const AVG_TYPE: DataType = DataType::Decimal128(38, AVG_SCALE as i8);
const AVG_SCALE: u32 = 20;

/// The type a `bigint` is summed as: every `bigint` fits in 20 digits.
const SUM_INPUT: DataType = DataType::Decimal128(20, 0);

/// The `numeric` average of integers, as an aggregate function.
pub fn numeric_avg() -> Arc<AggregateUDF> {
    static AVG: LazyLock<Arc<AggregateUDF>> =
        LazyLock::new(|| Arc::new(AggregateUDF::new_from_impl(NumericAvg::new())));
    AVG.clone()
}

/// The analyzer rule; see the module's documentation.
#[derive(Debug, Default)]
pub struct NumericAggregates;

impl AnalyzerRule for NumericAggregates {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        if !has_aggregate_to_retype(&plan)? {
            return Ok(plan);
        }
        // Every node above a retyped aggregate takes its new output types.
        plan.transform_up_with_subqueries(|p| match p {
            LogicalPlan::Aggregate(a) => retype(a),
            LogicalPlan::Window(w) => retype_window(w),
            other => other.recompute_schema().map(Transformed::yes),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "pg_numeric_aggregates"
    }
}

/// Whether the plan, or a subquery in it, holds an aggregate to retype.
fn has_aggregate_to_retype(plan: &LogicalPlan) -> Result<bool> {
    let mut found = false;
    plan.apply_with_subqueries(|p| {
        found = aggregate_to_retype(p);
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    Ok(found)
}

fn aggregate_to_retype(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Aggregate(a) => a.aggr_expr.iter().any(|e| retyped(e, &a.input).is_some()),
        LogicalPlan::Window(w) => w.window_expr.iter().any(|e| retyped(e, &w.input).is_some()),
        _ => false,
    }
}

/// The aggregate (or window aggregate) expression as PostgreSQL types it,
/// if that differs.
fn retyped(e: &Expr, input: &LogicalPlan) -> Option<Expr> {
    let (inner, alias) = match e {
        Expr::Alias(a) => (a.expr.as_ref(), Some(a)),
        other => (other, None),
    };
    let (name, args, distinct) = match inner {
        Expr::AggregateFunction(f) => (f.func.name(), &f.params.args, f.params.distinct),
        Expr::WindowFunction(w) => match &w.fun {
            WindowFunctionDefinition::AggregateUDF(f) => {
                (f.name(), &w.params.args, w.params.distinct)
            }
            _ => return None,
        },
        _ => return None,
    };
    let [arg] = args.as_slice() else {
        return None;
    };
    let arg_type = arg.get_type(input.schema()).ok()?;
    let mut e2 = inner.clone();
    match name {
        "sum"
            if matches!(arg_type, DataType::Int64 | DataType::UInt64)
                && !of_constants(arg, input, 0) =>
        {
            let cast_arg = vec![cast(arg.clone(), SUM_INPUT)];
            match &mut e2 {
                Expr::AggregateFunction(f) => f.params.args = cast_arg,
                Expr::WindowFunction(w) => w.params.args = cast_arg,
                _ => return None,
            }
        }
        "avg" if averaged_exactly(&arg_type) && !distinct => match &mut e2 {
            Expr::AggregateFunction(f) => f.func = numeric_avg(),
            Expr::WindowFunction(w) => {
                w.fun = WindowFunctionDefinition::AggregateUDF(numeric_avg())
            }
            _ => return None,
        },
        other => {
            let moment =
                Moment::of(other).filter(|_| !distinct && numeric_variance::takes(&arg_type))?;
            let f = numeric_variance::numeric_moment(moment);
            match &mut e2 {
                Expr::AggregateFunction(a) => a.func = f,
                Expr::WindowFunction(w) => w.fun = WindowFunctionDefinition::AggregateUDF(f),
                _ => return None,
            }
        }
    }
    Some(match alias {
        Some(a) => e2.alias_qualified(a.relation.clone(), a.name.clone()),
        None => e2,
    })
}

/// Whether `avg` of a `t` is [`NUMERIC_AVG`]: integers, and decimals whose
/// scale the average's holds.
fn averaged_exactly(t: &DataType) -> bool {
    match t {
        DataType::Decimal128(_, s) => (0..=AVG_SCALE as i8).contains(s),
        t => t.is_integer(),
    }
}

/// The decimal scale of the average's input: 0 for integers.
fn input_scale(t: &DataType) -> u32 {
    match t {
        DataType::Decimal128(_, s) => (*s).max(0) as u32,
        _ => 0,
    }
}

/// The type PostgreSQL gives an aggregate of `input` where it differs from
/// DataFusion's (the analysts' release casts to it).
pub fn postgres_type(e: &Expr, input: &LogicalPlan) -> Option<DataType> {
    retyped(e, input)?.get_type(input.schema()).ok()
}

/// How deep [`of_constants`] follows a column to where it is computed.
const ORIGIN_DEPTH: usize = 32;

/// Whether an integer expression's values all come from integer constants
/// (which PostgreSQL reads as `integer`): a constant, a `CASE` or
/// `coalesce` of them, or a column computed so below (in a subquery, a
/// `WITH`, a `VALUES` list).
fn of_constants(e: &Expr, input: &LogicalPlan, depth: usize) -> bool {
    match e {
        Expr::Literal(v, _) => match v {
            ScalarValue::Int64(Some(v)) => i32::try_from(*v).is_ok(),
            ScalarValue::Int64(None) | ScalarValue::Null => true,
            _ => false,
        },
        Expr::Case(c) => {
            c.when_then_expr
                .iter()
                .all(|(_, then)| of_constants(then, input, depth))
                && c.else_expr
                    .as_deref()
                    .is_none_or(|x| of_constants(x, input, depth))
        }
        Expr::Alias(a) => of_constants(&a.expr, input, depth),
        Expr::Negative(x) => of_constants(x, input, depth),
        Expr::ScalarFunction(f) if f.name() == "coalesce" => {
            f.args.iter().all(|x| of_constants(x, input, depth))
        }
        Expr::Column(c) if depth < ORIGIN_DEPTH => column_of_constants(input, c, depth + 1),
        _ => false,
    }
}

/// Whether the column `c` of `plan` is computed from integer constants.
fn column_of_constants(plan: &LogicalPlan, c: &Column, depth: usize) -> bool {
    let Ok(i) = plan.schema().index_of_column(c) else {
        return false;
    };
    let input_column = |input: &LogicalPlan| {
        let (q, f) = input.schema().qualified_field(i);
        Column::new(q.cloned(), f.name())
    };
    match plan {
        LogicalPlan::Projection(p) => of_constants(&p.expr[i], &p.input, depth),
        LogicalPlan::SubqueryAlias(s) => {
            column_of_constants(&s.input, &input_column(&s.input), depth + 1)
        }
        LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::Repartition(_)
        | LogicalPlan::Distinct(datafusion::logical_expr::Distinct::All(_)) => {
            let input = plan.inputs()[0];
            column_of_constants(input, &input_column(input), depth + 1)
        }
        LogicalPlan::Window(w) if i < w.input.schema().fields().len() => {
            column_of_constants(&w.input, &input_column(&w.input), depth + 1)
        }
        LogicalPlan::Union(u) => u
            .inputs
            .iter()
            .all(|input| column_of_constants(input, &input_column(input), depth + 1)),
        LogicalPlan::Values(v) => v
            .values
            .iter()
            .all(|row| of_constants(&row[i], plan, ORIGIN_DEPTH)),
        _ => false,
    }
}

fn retype(a: Aggregate) -> Result<Transformed<LogicalPlan>> {
    let names = NamePreserver::new_for_projection();
    let mut changed = false;
    let aggr_expr = a
        .aggr_expr
        .iter()
        .map(|e| match retyped(e, &a.input) {
            Some(e2) => {
                changed = true;
                names.save(e).restore(e2)
            }
            None => e.clone(),
        })
        .collect();
    if !changed {
        // Its input may have changed types below it.
        return LogicalPlan::Aggregate(a)
            .recompute_schema()
            .map(Transformed::yes);
    }
    Aggregate::try_new(a.input, a.group_expr, aggr_expr)
        .map(|a| Transformed::yes(LogicalPlan::Aggregate(a)))
}

fn retype_window(w: Window) -> Result<Transformed<LogicalPlan>> {
    let names = NamePreserver::new_for_projection();
    let window_expr = w
        .window_expr
        .iter()
        .map(|e| match retyped(e, &w.input) {
            Some(e2) => names.save(e).restore(e2),
            None => e.clone(),
        })
        .collect();
    Window::try_new(window_expr, w.input).map(|w| Transformed::yes(LogicalPlan::Window(w)))
}

/// `tsunagu_numeric_avg(x)`: the average of integers or decimals as
/// PostgreSQL's `numeric`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct NumericAvg {
    signature: Signature,
}

impl NumericAvg {
    fn new() -> Self {
        NumericAvg {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for NumericAvg {
    fn name(&self) -> &str {
        NUMERIC_AVG
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        match args {
            [t] if t.is_integer() || t.is_null() => Ok(vec![DataType::Int64]),
            [t @ DataType::Decimal128(..)] if averaged_exactly(t) => {
                Ok(vec![DataType::Decimal128(38, input_scale(t) as i8)])
            }
            _ => plan_err!("{NUMERIC_AVG} takes one integer or decimal"),
        }
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(AVG_TYPE)
    }
    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Single(Sums::of(&args))))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format_state_name(args.name, "sum"),
                DataType::Decimal128(
                    38,
                    args.input_fields
                        .first()
                        .map_or(0, |f| input_scale(f.data_type())) as i8,
                ),
                false,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "count"),
                DataType::Int64,
                false,
            )),
        ])
    }
    fn groups_accumulator_supported(&self, _: AccumulatorArgs) -> bool {
        true
    }
    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(Sums::of(&args)))
    }
}

/// Each group's exact sum (at the input's scale) and count of non-NULL values.
#[derive(Debug, Default)]
struct Sums {
    scale: u32,
    sum: Vec<i128>,
    count: Vec<i64>,
}

fn take<T>(v: &mut Vec<T>, emit: EmitTo) -> Vec<T> {
    match emit {
        EmitTo::All => std::mem::take(v),
        EmitTo::First(n) => {
            let rest = v.split_off(n.min(v.len()));
            std::mem::replace(v, rest)
        }
    }
}

/// The input's values, read as integers at its scale.
enum Scaled<'a> {
    Integers(&'a Int64Array),
    Decimals(&'a Decimal128Array),
}

impl<'a> Scaled<'a> {
    fn of(values: &'a [ArrayRef]) -> Result<Self> {
        let Some(x) = values.first() else {
            return exec_err!("{NUMERIC_AVG}: expected one argument");
        };
        if let Some(x) = x.as_primitive_opt::<Int64Type>() {
            return Ok(Scaled::Integers(x));
        }
        match x.as_primitive_opt::<datafusion::arrow::datatypes::Decimal128Type>() {
            Some(x) => Ok(Scaled::Decimals(x)),
            None => exec_err!("{NUMERIC_AVG}: expected integer or decimal values"),
        }
    }

    fn len(&self) -> usize {
        match self {
            Scaled::Integers(x) => x.len(),
            Scaled::Decimals(x) => x.len(),
        }
    }

    fn get(&self, row: usize) -> Option<i128> {
        match self {
            Scaled::Integers(x) => x.is_valid(row).then(|| x.value(row) as i128),
            Scaled::Decimals(x) => x.is_valid(row).then(|| x.value(row)),
        }
    }
}

impl Sums {
    fn of(args: &AccumulatorArgs) -> Self {
        Sums {
            scale: args
                .expr_fields
                .first()
                .map_or(0, |f| input_scale(f.data_type())),
            ..Sums::default()
        }
    }

    fn resize(&mut self, groups: usize) {
        self.sum.resize(groups, 0);
        self.count.resize(groups, 0);
    }

    fn state_arrays(&mut self, emit: EmitTo) -> Result<Vec<ArrayRef>> {
        let sum = Decimal128Array::from(take(&mut self.sum, emit))
            .with_precision_and_scale(38, self.scale as i8)?;
        let count = Int64Array::from(take(&mut self.count, emit));
        Ok(vec![Arc::new(sum), Arc::new(count)])
    }

    fn averages(&mut self, emit: EmitTo) -> Result<ArrayRef> {
        let sum = take(&mut self.sum, emit);
        let count = take(&mut self.count, emit);
        let values = sum
            .iter()
            .zip(&count)
            .map(|(&s, &n)| {
                if n > 0 {
                    average(s, self.scale, n)
                } else {
                    None
                }
            })
            .collect::<Vec<_>>();
        Ok(Arc::new(
            Decimal128Array::from(values).with_precision_and_scale(38, AVG_SCALE as i8)?,
        ))
    }
}

fn skip(filter: Option<&BooleanArray>, row: usize) -> bool {
    filter.is_some_and(|f| !f.is_valid(row) || !f.value(row))
}

impl GroupsAccumulator for Sums {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        let x = Scaled::of(values)?;
        for (row, &g) in group_indices.iter().enumerate() {
            if let Some(v) = x.get(row)
                && !skip(opt_filter, row)
            {
                self.sum[g] += v;
                self.count[g] += 1;
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        self.averages(emit_to)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        self.state_arrays(emit_to)
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        let (Some(sum), Some(count)) = (
            values
                .first()
                .and_then(|v| v.as_primitive_opt::<datafusion::arrow::datatypes::Decimal128Type>()),
            values
                .get(1)
                .and_then(|v| v.as_primitive_opt::<Int64Type>()),
        ) else {
            return exec_err!("{NUMERIC_AVG}: unexpected state");
        };
        for (row, &g) in group_indices.iter().enumerate() {
            self.sum[g] += sum.value(row);
            self.count[g] += count.value(row);
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let rows = values.first().map_or(0, |v| v.len());
        let mut each = Sums {
            scale: self.scale,
            ..Sums::default()
        };
        let indices: Vec<usize> = (0..rows).collect();
        each.update_batch(values, &indices, opt_filter, rows)?;
        each.state_arrays(EmitTo::All)
    }

    fn size(&self) -> usize {
        self.sum.capacity() * 16 + self.count.capacity() * 8
    }
}

/// The aggregate without GROUP BY: one group.
#[derive(Debug)]
struct Single(Sums);

impl Accumulator for Single {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let rows = values.first().map_or(0, |v| v.len());
        self.0.update_batch(values, &vec![0; rows], None, 1)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.0.resize(1);
        let (s, n) = (self.0.sum[0], self.0.count[0]);
        let value = if n > 0 {
            average(s, self.0.scale, n)
        } else {
            None
        };
        Ok(ScalarValue::Decimal128(value, 38, AVG_SCALE as i8))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.0.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.0.resize(1);
        Ok(vec![
            ScalarValue::Decimal128(Some(self.0.sum[0]), 38, self.0.scale as i8),
            ScalarValue::Int64(Some(self.0.count[0])),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let rows = states.first().map_or(0, |v| v.len());
        self.0.merge_batch(states, &vec![0; rows], 1)
    }

    /// Rows leaving a sliding window frame.
    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.0.resize(1);
        let x = Scaled::of(values)?;
        for v in (0..x.len()).filter_map(|row| x.get(row)) {
            self.0.sum[0] -= v;
            self.0.count[0] -= 1;
        }
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }
}

/// The weight and first digit of `x / 10^scale` in base 10000, as
/// PostgreSQL's `numeric` stores it (digits aligned at the point).
fn weight_and_first_digit(x: u128, scale: u32) -> (i64, u128) {
    if x == 0 {
        return (0, 0);
    }
    let digits = x.ilog10() as i64 + 1;
    let weight = (digits - 1 - scale as i64).div_euclid(4);
    let shift = scale as i64 + 4 * weight;
    let first = if shift >= 0 {
        x / 10u128.pow(shift as u32)
    } else {
        x * 10u128.pow((-shift) as u32)
    };
    (weight, first)
}

/// The display scale of `x / 10^scale`: its scale without trailing zeros.
fn display_scale(x: u128, scale: u32) -> u32 {
    let mut s = scale;
    let mut x = x;
    while s > 0 && x != 0 && x.is_multiple_of(10) {
        x /= 10;
        s -= 1;
    }
    s
}

/// PostgreSQL's scale of the quotient `x / y` of two decimals given as
/// (value, scale): `select_div_scale` in numeric.c.
pub(super) fn division_scale_of((x, sx): (i128, u32), (y, sy): (i128, u32)) -> u32 {
    let (x, y) = (x.unsigned_abs(), y.unsigned_abs());
    let (w1, d1) = weight_and_first_digit(x, sx);
    let (w2, d2) = weight_and_first_digit(y, sy);
    let mut weight = w1 - w2;
    if d1 <= d2 {
        weight -= 1;
    }
    let scale = (16 - weight * 4)
        .max(display_scale(x, sx) as i64)
        .max(display_scale(y, sy) as i64);
    scale.clamp(0, 1000) as u32
}

/// `num / den` with `digits` digits after the point, rounded half away from
/// zero, as an integer of that scale; `None` when it does not fit.
pub(super) fn rounded_quotient(num: u128, den: u128, digits: u32) -> Option<u128> {
    let mut q = num / den;
    let mut rem = num % den;
    for _ in 0..digits {
        rem = rem.checked_mul(10)?;
        q = q.checked_mul(10)?.checked_add(rem / den)?;
        rem %= den;
    }
    if rem >= den - rem {
        q = q.checked_add(1)?;
    }
    Some(q)
}

/// `sum / 10^scale / count` rounded at PostgreSQL's scale, as a decimal
/// of scale [`AVG_SCALE`]; `None` beyond 38 digits.
fn average(sum: i128, scale: u32, count: i64) -> Option<i128> {
    let digits = division_scale_of((sum, scale), (count as i128, 0)).min(AVG_SCALE);
    let count = count.unsigned_abs() as u128;
    let q = match digits.checked_sub(scale) {
        Some(more) => rounded_quotient(sum.unsigned_abs(), count, more)?,
        None => rounded_quotient(
            sum.unsigned_abs(),
            count.checked_mul(10u128.pow(scale - digits))?,
            0,
        )?,
    };
    let q = q.checked_mul(10u128.pow(AVG_SCALE - digits))?;
    let q = i128::try_from(q).ok().filter(|q| *q < 10i128.pow(38))?;
    Some(if sum < 0 { -q } else { q })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(sum: i128, count: i64) -> String {
        scaled_text(sum, 0, count)
    }

    fn scaled_text(sum: i128, scale: u32, count: i64) -> String {
        let v = average(sum, scale, count).expect("an average in range");
        let s = format!("{:021}", v.abs());
        let (i, f) = s.split_at(s.len() - AVG_SCALE as usize);
        let f = &f[..division_scale_of((sum, scale), (count as i128, 0)).min(AVG_SCALE) as usize];
        format!(
            "{}{i}{}{f}",
            if v < 0 { "-" } else { "" },
            if f.is_empty() { "" } else { "." }
        )
    }

    /// PostgreSQL 15.18's answers to `SELECT avg(x) FROM (VALUES ...)`, as psql prints them.
    #[test]
    fn averages_as_postgresql_writes_them() {
        assert_eq!(text(3, 2), "1.5000000000000000");
        assert_eq!(text(3, 3), "1.00000000000000000000");
        assert_eq!(text(9, 3), "3.0000000000000000");
        assert_eq!(text(2, 3), "0.66666666666666666667");
        assert_eq!(text(-2, 3), "-0.66666666666666666667");
        assert_eq!(text(0, 4), "0.00000000000000000000");
        assert_eq!(text(123_456_789, 2), "61728394.500000000000");
        assert_eq!(text(50_001, 2), "25000.500000000000");
    }

    /// PostgreSQL 15.18's answers to `SELECT avg(x) FROM (VALUES ...)` of
    /// numeric constants: (1.5), (2.5); (1.0), (0.0), (0.0); (0.25), (0.5);
    /// (1000.125), (0.5); (-0.01), (0.00).
    #[test]
    fn averages_of_decimals_as_postgresql_writes_them() {
        assert_eq!(scaled_text(40, 1, 2), "2.0000000000000000");
        assert_eq!(scaled_text(10, 1, 3), "0.33333333333333333333");
        assert_eq!(scaled_text(75, 2, 2), "0.37500000000000000000");
        assert_eq!(scaled_text(1_000_625, 3, 2), "500.3125000000000000");
        assert_eq!(scaled_text(-1, 2, 2), "-0.00500000000000000000");
    }
}
