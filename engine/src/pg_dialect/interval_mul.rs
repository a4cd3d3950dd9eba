//! `interval_mul(interval, number)`: PostgreSQL's `interval * number`,
//! fractions of months cascading into days (30 to a month) and fractions of
//! days into time, as PostgreSQL 15's `interval_mul`. NULL where the result
//! leaves the interval range (PostgreSQL raises an error there).

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, IntervalMonthDayNanoArray};
use datafusion::arrow::datatypes::{
    DataType, Float64Type, IntervalMonthDayNano, IntervalMonthDayNanoType, IntervalUnit,
};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, DocSection, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};

const INTERVAL: DataType = DataType::Interval(IntervalUnit::MonthDayNano);

/// The `interval_mul` function.
pub fn interval_mul() -> Arc<ScalarUDF> {
    static UDF: LazyLock<Arc<ScalarUDF>> =
        LazyLock::new(|| Arc::new(ScalarUDF::new_from_impl(IntervalMul::default())));
    UDF.clone()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct IntervalMul {
    signature: Signature,
}

impl Default for IntervalMul {
    fn default() -> Self {
        IntervalMul {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

static DOCS: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DocSection {
            include: true,
            label: "Dates",
            description: None,
        },
        "An interval multiplied by a number, as PostgreSQL's `interval * number` \
         (which is planned as this function).",
        "interval_mul(INTERVAL '1 day', 365)",
    )
    .with_argument("interval", "the interval")
    .with_argument("factor", "the number it is multiplied by")
    .build()
});

/// Rounds to whole microseconds, as PostgreSQL's `TSROUND`.
fn ts_round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// `span * factor` as PostgreSQL computes it, `None` out of range.
pub(crate) fn multiply(span: IntervalMonthDayNano, factor: f64) -> Option<IntervalMonthDayNano> {
    const DAYS_PER_MONTH: f64 = 30.0;
    const SECS_PER_DAY: f64 = 86_400.0;
    let in_i32 = |x: f64| (x.is_finite() && x.abs() < i32::MAX as f64).then_some(x.trunc());
    let months_f = span.months as f64 * factor;
    let days_f = span.days as f64 * factor;
    let months = in_i32(months_f)?;
    let mut days = in_i32(days_f)?;
    let month_remainder_days = ts_round((months_f - months) * DAYS_PER_MONTH);
    let mut sec_remainder = ts_round(
        (days_f - days + month_remainder_days - month_remainder_days.trunc()) * SECS_PER_DAY,
    );
    if sec_remainder.abs() >= SECS_PER_DAY {
        days += (sec_remainder / SECS_PER_DAY).trunc();
        sec_remainder -= (sec_remainder / SECS_PER_DAY).trunc() * SECS_PER_DAY;
    }
    days = in_i32(days + month_remainder_days.trunc())?;
    let micros = ((span.nanoseconds as f64 / 1000.0) * factor + sec_remainder * 1e6).round();
    if !micros.is_finite() || micros.abs() >= (i64::MAX / 1000) as f64 {
        return None;
    }
    Some(IntervalMonthDayNano::new(
        months as i32,
        days as i32,
        micros as i64 * 1000,
    ))
}

impl ScalarUDFImpl for IntervalMul {
    fn name(&self) -> &str {
        "interval_mul"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(INTERVAL)
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        match args {
            [i, n]
                if matches!(i, DataType::Interval(_) | DataType::Null)
                    && (n.is_numeric() || n == &DataType::Null) =>
            {
                Ok(vec![INTERVAL, DataType::Float64])
            }
            _ => exec_err!("interval_mul takes an interval and a number, not {args:?}"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [spans, factors] = arrays.as_slice() else {
            return exec_err!("interval_mul takes two arguments");
        };
        let spans = spans.as_primitive::<IntervalMonthDayNanoType>();
        let factors = factors.as_primitive::<Float64Type>();
        let out: IntervalMonthDayNanoArray = (0..spans.len())
            .map(|i| {
                if spans.is_null(i) || factors.is_null(i) {
                    return None;
                }
                multiply(spans.value(i), factors.value(i))
            })
            .collect();
        let out: ArrayRef = Arc::new(out);
        if args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)))
        {
            return Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::try_from_array(&out, 0)?,
            ));
        }
        Ok(ColumnarValue::Array(out))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOCS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_cascade_as_in_postgres() {
        let day = IntervalMonthDayNano::new(0, 1, 0);
        assert_eq!(
            multiply(day, 365.0),
            Some(IntervalMonthDayNano::new(0, 365, 0))
        );
        // 1.5 days: 1 day 12:00:00.
        assert_eq!(
            multiply(day, 1.5),
            Some(IntervalMonthDayNano::new(0, 1, 43_200_000_000_000))
        );
        // Half a month: 15 days.
        let month = IntervalMonthDayNano::new(1, 0, 0);
        assert_eq!(
            multiply(month, 0.5),
            Some(IntervalMonthDayNano::new(0, 15, 0))
        );
        assert_eq!(multiply(day, 1e12), None);
    }
}
