//! Functions whose result can grow far beyond their arguments, bounded:
//! `lpad`, `rpad`, `repeat`, `array_repeat`, `array_resize`, `range`,
//! `generate_series` and `replace` are NULL for a row whose result would
//! exceed [`MAX_LENGTH`] characters or elements (or its longest argument,
//! when that is longer). DataFusion allocates a whole result at once:
//! `lpad(s, 2000000000)` or `range(0, 20000000)` over a few hundred rows
//! asks for tens or hundreds of gigabytes, and a failed allocation (or the
//! kernel's out-of-memory killer) ends the process, every session with it.
//! NULL rather than an error, so that an analyst's statement still runs the
//! same way whatever the data holds; a zero step of a series is NULL too.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array};
use datafusion::arrow::compute::kernels::zip::zip;
use datafusion::arrow::compute::{cast, nullif};
use datafusion::arrow::datatypes::{DataType, FieldRef, IntervalMonthDayNanoType, TimeUnit};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};

/// The most characters or elements one row's result may hold (unless an
/// argument of that row is already longer).
pub const MAX_LENGTH: f64 = 100_000.0;

/// How a function's result grows with its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// The second argument is the result's length (`lpad`, `rpad`).
    Length,
    /// The first argument, the second's number of times (`repeat`,
    /// `array_repeat`).
    Repeat,
    /// The second argument's number of elements, each as large as the
    /// first argument or the fill (`array_resize`).
    Resize,
    /// From a start to a stop by a step (`range`, `generate_series`).
    Series,
    /// `replace(s, from, to)`: every `from` in `s` becomes `to`.
    Replace,
}

/// The bounded functions.
pub fn functions() -> Vec<ScalarUDF> {
    use datafusion::functions::{string, unicode};
    use datafusion::functions_nested::{range, repeat, resize};
    [
        (unicode::lpad(), Growth::Length),
        (unicode::rpad(), Growth::Length),
        (string::repeat(), Growth::Repeat),
        (string::replace(), Growth::Replace),
        (repeat::array_repeat_udf(), Growth::Repeat),
        (resize::array_resize_udf(), Growth::Resize),
        (range::range_udf(), Growth::Series),
        (range::gen_series_udf(), Growth::Series),
    ]
    .into_iter()
    .map(|(inner, growth)| ScalarUDF::new_from_impl(Bounded { inner, growth }))
    .collect()
}

/// A built-in whose result is bounded.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    growth: Growth,
}

/// Characters of a string, elements (at every depth) of an array, 1 for
/// any other value and 0 for NULL.
fn units(a: &dyn Array, i: usize) -> f64 {
    if a.is_null(i) {
        return 0.0;
    }
    let within = |values: &ArrayRef, from: usize, to: usize| -> f64 {
        match values.data_type() {
            DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(..)
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View => (from..to).map(|j| units(values.as_ref(), j)).sum(),
            _ => (to - from) as f64,
        }
    };
    match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>().value(i).chars().count() as f64,
        DataType::LargeUtf8 => a.as_string::<i64>().value(i).chars().count() as f64,
        DataType::Utf8View => a.as_string_view().value(i).chars().count() as f64,
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            let o = l.value_offsets();
            within(l.values(), o[i] as usize, o[i + 1] as usize)
        }
        DataType::LargeList(_) => {
            let l = a.as_list::<i64>();
            let o = l.value_offsets();
            within(l.values(), o[i] as usize, o[i + 1] as usize)
        }
        DataType::FixedSizeList(_, n) => {
            let n = *n as usize;
            within(a.as_fixed_size_list().values(), i * n, (i + 1) * n)
        }
        _ => 1.0,
    }
}

/// A number argument's values as floats (NULL where it cannot be read).
fn numbers(a: &ArrayRef) -> Float64Array {
    match cast(a, &DataType::Float64) {
        Ok(f) => f.as_primitive().clone(),
        Err(_) => Float64Array::new_null(a.len()),
    }
}

/// Points in time as floats in one unit (days for dates, nanoseconds for
/// timestamps), and the length of that unit's day.
fn instants(a: &ArrayRef) -> Option<(Float64Array, f64)> {
    let (as_int, day) = match a.data_type() {
        DataType::Date32 | DataType::Date64 => (cast(a, &DataType::Date32).ok()?, 1.0),
        DataType::Timestamp(_, tz) => (
            cast(a, &DataType::Timestamp(TimeUnit::Nanosecond, tz.clone())).ok()?,
            86_400e9,
        ),
        _ => return None,
    };
    let as_int = cast(&as_int, &DataType::Int64).ok()?;
    Some((numbers(&as_int), day))
}

/// The number of elements of each row's series; infinite for a step of
/// zero, which DataFusion refuses with an error.
fn series(args: &[ArrayRef], rows: usize) -> Vec<f64> {
    let count = |start: f64, stop: f64, step: f64| -> f64 {
        if step == 0.0 {
            f64::INFINITY
        } else {
            ((stop - start) / step).max(0.0) + 1.0
        }
    };
    match args {
        [stop] => {
            let stop = numbers(stop);
            (0..rows).map(|i| count(0.0, stop.value(i), 1.0)).collect()
        }
        [start, stop, rest @ ..] => {
            if let (Some((start, day)), Some((stop, _))) = (instants(start), instants(stop)) {
                let step = rest.first().and_then(|s| {
                    (s.data_type()
                        == &DataType::Interval(
                            datafusion::arrow::datatypes::IntervalUnit::MonthDayNano,
                        ))
                        .then(|| s.as_primitive::<IntervalMonthDayNanoType>().clone())
                });
                return (0..rows)
                    .map(|i| {
                        let step = match &step {
                            Some(s) if !s.is_null(i) => {
                                let v = s.value(i);
                                // Months and days of opposite signs may never
                                // reach the stop.
                                if (v.months > 0 && v.days < 0) || (v.months < 0 && v.days > 0) {
                                    return f64::INFINITY;
                                }
                                // The shortest month, so the count is not underestimated.
                                (v.months as f64 * 28.0 + v.days as f64) * day
                                    + if day > 1.0 { v.nanoseconds as f64 } else { 0.0 }
                            }
                            _ => day,
                        };
                        count(start.value(i), stop.value(i), step)
                    })
                    .collect();
            }
            let (start, stop) = (numbers(start), numbers(stop));
            let step = rest.first().map(numbers);
            (0..rows)
                .map(|i| {
                    let step = step.as_ref().map_or(1.0, |s| s.value(i));
                    count(start.value(i), stop.value(i), step)
                })
                .collect()
        }
        [] => vec![0.0; rows],
    }
}

impl Bounded {
    /// Each row's result size, in characters or elements.
    fn sizes(&self, args: &[ArrayRef], rows: usize) -> Vec<f64> {
        let unit = |k: usize, i: usize| args.get(k).map_or(0.0, |a| units(a.as_ref(), i));
        let number = args.get(1).map(numbers);
        let n = |i: usize| number.as_ref().map_or(0.0, |n| n.value(i));
        match self.growth {
            Growth::Length => (0..rows).map(n).collect(),
            Growth::Repeat => (0..rows).map(|i| unit(0, i).max(1.0) * n(i)).collect(),
            Growth::Resize => (0..rows)
                .map(|i| n(i) * unit(0, i).max(unit(2, i)).max(1.0))
                .collect(),
            Growth::Series => series(args, rows),
            Growth::Replace => (0..rows)
                .map(|i| {
                    let (s, from, to) = (unit(0, i), unit(1, i), unit(2, i));
                    if from == 0.0 {
                        // An empty `from` matches around every character.
                        s + (s + 1.0) * to
                    } else {
                        s + (s / from).floor() * (to - from).max(0.0)
                    }
                })
                .collect(),
        }
    }

    /// The argument made NULL for a row whose result is too large.
    fn nulled(&self, args: usize) -> usize {
        match self.growth {
            Growth::Replace => 0,
            Growth::Series if args == 1 => 0,
            _ => 1,
        }
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(args)
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        self.inner.return_type(args)
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }
    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalars = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalars { 1 } else { args.number_rows };
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let arrays: Vec<ArrayRef> = arrays
            .into_iter()
            .map(|a| {
                if a.len() == rows {
                    a
                } else {
                    a.slice(0, rows.min(a.len()))
                }
            })
            .collect();
        if arrays.iter().any(|a| a.len() != rows) {
            return self.inner.invoke_with_args(args);
        }
        let sizes = self.sizes(&arrays, rows);
        let too_large: BooleanArray = (0..rows)
            .map(|i| {
                let longest = (0..arrays.len())
                    .map(|k| units(arrays[k].as_ref(), i))
                    .fold(MAX_LENGTH, f64::max);
                Some(sizes[i].is_nan() || sizes[i] > longest)
            })
            .collect();
        // A negative length pads to nothing, as in PostgreSQL (DataFusion's
        // `lpad` panics on it).
        let negative = match (self.growth, arrays.get(1)) {
            (Growth::Length, Some(length)) if length.data_type().is_integer() => {
                let n = numbers(length);
                let negative: BooleanArray = n.iter().map(|v| v.map(|v| v < 0.0)).collect();
                (negative.true_count() > 0).then_some(negative)
            }
            _ => None,
        };
        if too_large.true_count() == 0 && negative.is_none() {
            return self.inner.invoke_with_args(args);
        }
        let k = self.nulled(arrays.len());
        let mut arrays = arrays;
        if let Some(negative) = negative {
            let zero = ScalarValue::new_zero(arrays[1].data_type())?.to_scalar()?;
            arrays[1] = zip(&negative, &zero, &arrays[1])?;
        }
        arrays[k] = nullif(&arrays[k], &too_large)?;
        args.args = arrays
            .into_iter()
            .map(|a| {
                if scalars {
                    ScalarValue::try_from_array(&a, 0).map(ColumnarValue::Scalar)
                } else {
                    Ok(ColumnarValue::Array(a))
                }
            })
            .collect::<Result<_>>()?;
        self.inner.invoke_with_args(args)
    }
    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    async fn rows(sql: &str) -> Vec<String> {
        let ctx = SessionContext::new();
        for f in super::functions() {
            ctx.register_udf(f);
        }
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        text.lines()
            .filter(|l| l.starts_with("| ") && !l.contains(" a "))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    }

    /// Within the bound, PostgreSQL's (or DataFusion's) answers; beyond it,
    /// NULL, and no allocation of the size asked for.
    #[tokio::test]
    async fn results_beyond_the_bound_are_null() {
        let sql = "SELECT lpad('7', 3, '0') AS a, \
                   coalesce(length(rpad('ab', n)), -1) AS b, \
                   coalesce(length(repeat('xy', n / 2)), -1) AS c, \
                   coalesce(cardinality(array_repeat(1, n)), -1) AS d, \
                   coalesce(cardinality(range(0, n)), -1) AS e, \
                   coalesce(cardinality(generate_series(DATE '2000-01-01', CAST(CAST(10957 + n / 100 AS INT) AS DATE), INTERVAL '1 day')), -1) AS f, \
                   coalesce(length(replace(repeat('a', 1000), 'a', repeat('b', CAST(n / 1000 AS BIGINT)))), -1) AS g, \
                   coalesce(cardinality(array_repeat(array_repeat(1, 1000), CAST(n / 1000 AS BIGINT))), -1) AS h \
                   FROM (VALUES (CAST(4000 AS BIGINT)), (CAST(4000000000 AS BIGINT))) t(n) ORDER BY n";
        assert_eq!(
            rows(sql).await,
            [
                "| 007 | 4000 | 4000 | 4000 | 4000 | 41 | 4000 | 4000 |",
                "| 007 | -1 | -1 | -1 | -1 | -1 | -1 | -1 |"
            ]
        );
        // A zero step is NULL, not an error; a long argument is kept.
        assert_eq!(
            rows(
                "SELECT range(1, 5, 0) IS NULL AS a, \
                 length(replace(repeat('a', 100000) || repeat('a', 100000), 'a', 'b')) AS b, \
                 length(lpad('abc', x)) AS c, \
                 range(DATE '2000-01-01', DATE '2000-01-01', INTERVAL '1 month' - INTERVAL '31 days') IS NULL AS d \
                 FROM (VALUES (CAST(-1 AS BIGINT))) t(x)"
            )
            .await,
            ["| true | 200000 | 0 | true |"]
        );
    }
}
