//! The release of an aggregate across persons: rows backed by fewer than k
//! persons are removed, numbers from fewer than k contributing persons become
//! NULL, counts are rounded.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, new_null_array};
use datafusion::arrow::compute::kernels::zip::zip;
use datafusion::arrow::datatypes::{DataType, Int32Type, Int64Type, UInt64Type};
use datafusion::common::{Column, Result, exec_err};
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{
    Aggregate, ColumnarValue, Expr, Filter, LogicalPlan, Projection, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility, lit,
};

/// Counters of what a statement's releases withheld (for the audit log).
#[derive(Debug, Default)]
pub struct ReleaseStats {
    /// Output rows removed because fewer than k persons backed them.
    pub suppressed_rows: AtomicU64,
    /// Cells withheld: the cells of removed rows and the numbers set to NULL.
    pub suppressed_cells: AtomicU64,
}

impl ReleaseStats {
    /// Cells withheld so far.
    pub fn cells(&self) -> u64 {
        self.suppressed_cells.load(Ordering::Relaxed)
    }
}

/// `tsunagu_keep(persons, cells)`: whether a group is backed by at least k persons.
#[derive(Debug)]
pub(super) struct Keep {
    k: u64,
    stats: Arc<ReleaseStats>,
    signature: Signature,
}

/// `tsunagu_release(value, contributors)`: the value when at least k persons
/// contributed to it (counts rounded to the base), NULL otherwise.
#[derive(Debug)]
pub(super) struct Release {
    k: u64,
    base: u64,
    stats: Arc<ReleaseStats>,
    signature: Signature,
}

macro_rules! identity_eq {
    ($t:ty) => {
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                Arc::ptr_eq(&self.stats, &other.stats)
            }
        }
        impl Eq for $t {}
        impl Hash for $t {
            fn hash<H: Hasher>(&self, state: &mut H) {
                (Arc::as_ptr(&self.stats) as usize).hash(state);
            }
        }
    };
}
identity_eq!(Keep);
identity_eq!(Release);

impl ScalarUDFImpl for Keep {
    fn name(&self) -> &str {
        "tsunagu_keep"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (persons, cells) = (&arrays[0], &arrays[1]);
        let persons = persons.as_primitive::<Int64Type>();
        let cells = cells.as_primitive::<Int64Type>();
        let mut dropped = (0u64, 0u64);
        let keep: BooleanArray = (0..persons.len())
            .map(|i| {
                let ok = persons.is_valid(i) && persons.value(i) as u64 >= self.k;
                if !ok {
                    dropped.0 += 1;
                    dropped.1 += cells.value(i).max(0) as u64;
                }
                Some(ok)
            })
            .collect();
        self.stats
            .suppressed_rows
            .fetch_add(dropped.0, Ordering::Relaxed);
        self.stats
            .suppressed_cells
            .fetch_add(dropped.1, Ordering::Relaxed);
        Ok(ColumnarValue::Array(Arc::new(keep)))
    }
}

impl ScalarUDFImpl for Release {
    fn name(&self) -> &str {
        "tsunagu_release"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args[0].clone())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (value, persons) = (&arrays[0], &arrays[1]);
        let persons = persons.as_primitive::<Int64Type>();
        let enough: BooleanArray = (0..persons.len())
            .map(|i| Some(persons.is_valid(i) && persons.value(i) as u64 >= self.k))
            .collect();
        let withheld = (0..value.len())
            .filter(|&i| value.is_valid(i) && !enough.value(i))
            .count();
        self.stats
            .suppressed_cells
            .fetch_add(withheld as u64, Ordering::Relaxed);
        let rounded = round(value, self.base)?;
        let nulls = new_null_array(value.data_type(), value.len());
        Ok(ColumnarValue::Array(zip(&enough, &rounded, &nulls)?))
    }
}

/// Rounds integer counts to the nearest multiple of `base`.
fn round(values: &ArrayRef, base: u64) -> Result<ArrayRef> {
    if base <= 1 {
        return Ok(values.clone());
    }
    let b = base as f64;
    let near = |v: f64| (v / b).round() * b;
    Ok(match values.data_type() {
        DataType::Int64 => Arc::new(
            values
                .as_primitive::<Int64Type>()
                .unary::<_, Int64Type>(|v| near(v as f64) as i64),
        ),
        DataType::UInt64 => Arc::new(
            values
                .as_primitive::<UInt64Type>()
                .unary::<_, UInt64Type>(|v| near(v as f64) as u64),
        ),
        DataType::Int32 => Arc::new(
            values
                .as_primitive::<Int32Type>()
                .unary::<_, Int32Type>(|v| near(v as f64) as i32),
        ),
        _ => values.clone(),
    })
}

/// The masking functions of one statement, sharing its counters.
#[derive(Debug, Clone)]
pub(super) struct Masks {
    keep: Arc<ScalarUDF>,
    release: Arc<ScalarUDF>,
}

impl Masks {
    pub(super) fn new(k: u64, base: u64, stats: Arc<ReleaseStats>) -> Self {
        let signature = || Signature::any(2, Volatility::Volatile);
        Masks {
            keep: Arc::new(ScalarUDF::new_from_impl(Keep {
                k,
                stats: stats.clone(),
                signature: signature(),
            })),
            release: Arc::new(ScalarUDF::new_from_impl(Release {
                k,
                base,
                stats,
                signature: signature(),
            })),
        }
    }

    /// `value` if at least k persons contributed, else NULL.
    pub(super) fn release(&self, value: Expr, contributors: Expr) -> Expr {
        self.release.call(vec![value, contributors])
    }
}

/// Whether an aggregate's value is a person set (bitmap) rather than a number.
pub(super) fn is_bitmap_aggregate(name: &str) -> bool {
    matches!(name, "rb_build_agg" | "rb_or_agg" | "rb_and_agg")
}

/// Aggregates whose value may be released: counts, sums and moments.
pub(super) fn is_releasable(name: &str) -> bool {
    matches!(
        name,
        "count"
            | "approx_distinct"
            | "sum"
            | "avg"
            | "mean"
            | "stddev"
            | "stddev_pop"
            | "stddev_samp"
            | "var"
            | "var_pop"
            | "var_samp"
            | "var_population"
            | "var_sample"
            | "variance"
            | "corr"
            | "covar"
            | "covar_pop"
            | "covar_samp"
    ) || is_bitmap_aggregate(name)
}

/// Rewrites an aggregate across persons into its release: the aggregate
/// with hidden counts of distinct persons, a filter on the group's persons
/// (grouped aggregates only) and a projection masking each number.
pub(super) fn release(aggregate: &Aggregate, person: Expr, masks: &Masks) -> Result<LogicalPlan> {
    let persons = |filter: Option<Expr>| {
        Expr::AggregateFunction(AggregateFunction::new_udf(
            count_udaf(),
            vec![person.clone()],
            true,
            filter.map(Box::new),
            vec![],
            None,
        ))
    };
    let group_name = "__tsunagu_persons";
    let mut aggr_expr = aggregate.aggr_expr.clone();
    aggr_expr.push(persons(None).alias(group_name));
    // The contributors of each released number, or None when the group's persons.
    let mut contributors: Vec<Option<String>> = Vec::new();
    for (i, e) in aggregate.aggr_expr.iter().enumerate() {
        let Expr::AggregateFunction(f) = strip_alias(e) else {
            return exec_err!("release: expected an aggregate function, got {e}");
        };
        let name = f.func.name().to_ascii_lowercase();
        if is_bitmap_aggregate(&name) {
            contributors.push(None);
            continue;
        }
        let arg = f
            .params
            .args
            .first()
            .filter(|a| !matches!(a, Expr::Literal(..)));
        let mut conds: Vec<Expr> = f.params.filter.iter().map(|b| (**b).clone()).collect();
        if let Some(a) = arg {
            conds.push(a.clone().is_not_null());
            if name == "sum" {
                conds.push(a.clone().not_eq(lit(0)));
            }
        }
        match datafusion::logical_expr::utils::conjunction(conds) {
            None => contributors.push(Some(group_name.to_owned())),
            Some(cond) => {
                let n = format!("__tsunagu_contributors_{i}");
                aggr_expr.push(persons(Some(cond)).alias(&n));
                contributors.push(Some(n));
            }
        }
    }
    let grouped = !aggregate.group_expr.is_empty();
    let new_agg = LogicalPlan::Aggregate(Aggregate::try_new(
        aggregate.input.clone(),
        aggregate.group_expr.clone(),
        aggr_expr,
    )?);
    let cells = aggregate.schema.fields().len() as i64;
    let mut plan = new_agg;
    if grouped {
        let keep = masks.keep.call(vec![
            Expr::Column(Column::from_name(group_name)),
            lit(cells),
        ]);
        plan = LogicalPlan::Filter(Filter::try_new(keep, Arc::new(plan))?);
    }
    let n_groups = aggregate.schema.fields().len() - aggregate.aggr_expr.len();
    let mut exprs = Vec::new();
    for (i, (qualifier, field)) in aggregate.schema.iter().enumerate() {
        let column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
        if i < n_groups {
            exprs.push(column);
            continue;
        }
        match &contributors[i - n_groups] {
            None => exprs.push(column),
            Some(c) => exprs.push(
                masks
                    .release(column, Expr::Column(Column::from_name(c)))
                    .alias_qualified(qualifier.cloned(), field.name()),
            ),
        }
    }
    Ok(LogicalPlan::Projection(Projection::try_new(
        exprs,
        Arc::new(plan),
    )?))
}

fn strip_alias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => strip_alias(&a.expr),
        e => e,
    }
}
