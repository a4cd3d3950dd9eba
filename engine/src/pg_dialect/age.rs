//! `age(a, b)`: PostgreSQL's symbolic difference of two timestamps (or
//! dates), in years, months and days from the later back to the earlier,
//! then the time of day (`timestamp_age` in PostgreSQL's timestamp.c):
//! `age(DATE '2011-03-01', DATE '1950-07-15')` is `60 years 7 mons 17 days`.

use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike};
use datafusion::arrow::array::{Array, AsArray, IntervalMonthDayNanoArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, IntervalMonthDayNano, IntervalUnit, TimeUnit, TimestampMicrosecondType,
};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

const TIMESTAMP: DataType = DataType::Timestamp(TimeUnit::Microsecond, None);

/// The function.
pub fn age() -> ScalarUDF {
    ScalarUDF::new_from_impl(Age {
        signature: Signature::user_defined(Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Age {
    signature: Signature,
}

impl ScalarUDFImpl for Age {
    fn name(&self) -> &str {
        "age"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        let moment = |t: &DataType| {
            matches!(
                t,
                DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)
            ) || t.is_null()
        };
        match args {
            [a, b] if moment(a) && moment(b) => Ok(vec![TIMESTAMP, TIMESTAMP]),
            _ => plan_err!("age takes two timestamps or dates"),
        }
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Interval(IntervalUnit::MonthDayNano))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [a, b] = args.args.as_slice() else {
            return exec_err!("age takes two timestamps or dates");
        };
        let scalar = matches!((a, b), (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_)));
        let n = args.number_rows;
        let (a, b) = (
            cast(&a.to_array(n)?, &TIMESTAMP)?,
            cast(&b.to_array(n)?, &TIMESTAMP)?,
        );
        let (a, b) = (
            a.as_primitive::<TimestampMicrosecondType>(),
            b.as_primitive::<TimestampMicrosecondType>(),
        );
        let out: IntervalMonthDayNanoArray = (0..n)
            .map(|i| {
                if a.is_null(i) || b.is_null(i) {
                    return None;
                }
                let at = |m: i64| DateTime::from_timestamp_micros(m).map(|t| t.naive_utc());
                Some(symbolic_difference(at(a.value(i))?, at(b.value(i))?))
            })
            .collect();
        let out = Arc::new(out);
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(out.as_ref(), 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

fn days_in_month(year: i32, month: u32) -> i64 {
    let (y, m) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|next| Some((next - NaiveDate::from_ymd_opt(year, month, 1)?).num_days()))
        .unwrap_or(30)
}

/// `a - b` field by field, borrowing as PostgreSQL's `timestamp_age` does.
fn symbolic_difference(a: NaiveDateTime, b: NaiveDateTime) -> IntervalMonthDayNano {
    // Computed from the later moment back, then given the sign.
    let flip = a < b;
    let sign: i64 = if flip { -1 } else { 1 };
    let field = |f: fn(&NaiveDateTime) -> i64| sign * (f(&a) - f(&b));
    let mut usec = field(|t| (t.nanosecond() / 1000) as i64);
    let mut sec = field(|t| t.second() as i64);
    let mut min = field(|t| t.minute() as i64);
    let mut hour = field(|t| t.hour() as i64);
    let mut mday = field(|t| t.day() as i64);
    let mut mon = field(|t| t.month() as i64);
    let mut year = field(|t| t.year() as i64);
    while usec < 0 {
        usec += 1_000_000;
        sec -= 1;
    }
    while sec < 0 {
        sec += 60;
        min -= 1;
    }
    while min < 0 {
        min += 60;
        hour -= 1;
    }
    while hour < 0 {
        hour += 24;
        mday -= 1;
    }
    // A day borrowed is a month of the earlier moment's calendar.
    let (by, bm) = if flip {
        (a.year(), a.month())
    } else {
        (b.year(), b.month())
    };
    while mday < 0 {
        mday += days_in_month(by, bm);
        mon -= 1;
    }
    while mon < 0 {
        mon += 12;
        year -= 1;
    }
    let micros = ((hour * 60 + min) * 60 + sec) * 1_000_000 + usec;
    IntervalMonthDayNano::new(
        (sign * (year * 12 + mon)) as i32,
        (sign * mday) as i32,
        sign * micros * 1000,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    /// PostgreSQL 15.18's `age(a, b)`, read as (months, days, hours).
    #[test]
    fn ages_as_postgresql_counts_them() {
        let hours = |h: i64| h * 3_600_000_000_000;
        let age = |a: &str, b: &str| symbolic_difference(at(a), at(b));
        // 60 years 7 mons 17 days
        assert_eq!(
            age("2011-03-01 00:00:00", "1950-07-15 00:00:00"),
            IntervalMonthDayNano::new(60 * 12 + 7, 17, 0)
        );
        // 1 day 22:00:00
        assert_eq!(
            age("2011-03-01 10:00:00", "2011-02-27 12:00:00"),
            IntervalMonthDayNano::new(0, 1, hours(22))
        );
        // -1 mons -3 days
        assert_eq!(
            age("2011-02-28 00:00:00", "2011-03-31 00:00:00"),
            IntervalMonthDayNano::new(-1, -3, 0)
        );
        // 1 mon 1 day: the days borrowed from January
        assert_eq!(
            age("2011-03-01 00:00:00", "2011-01-31 00:00:00"),
            IntervalMonthDayNano::new(1, 1, 0)
        );
    }
}
