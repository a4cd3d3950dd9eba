//! Windows around an index date: `in_window`, `overlap_days`, `window_days`.
//! Spans are inclusive at both ends, as in OMOP.

use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array};
use datafusion::arrow::datatypes::{DataType, Date32Type, Int64Type};
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::docs;

/// Argument kinds: D a date, N a day count.
fn coerce(name: &str, kinds: &str, args: &[DataType]) -> Result<Vec<DataType>> {
    if args.len() != kinds.len() {
        return plan_err!("{name} takes {} arguments, got {}", kinds.len(), args.len());
    }
    kinds
        .chars()
        .zip(args)
        .enumerate()
        .map(|(i, (k, t))| match k {
            'D' if matches!(
                t,
                DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) | DataType::Null
            ) =>
            {
                Ok(DataType::Date32)
            }
            'N' if t.is_integer() || t == &DataType::Null => Ok(DataType::Int64),
            'D' => plan_err!("{name}: argument {} must be a DATE, got {t}", i + 1),
            _ => plan_err!(
                "{name}: argument {} must be an integer number of days, got {t}",
                i + 1
            ),
        })
        .collect()
}

/// One argument of a window function, read as days (dates) or a day count.
enum Days<'a> {
    Constant(Option<i64>),
    Dates(&'a datafusion::arrow::array::Date32Array),
    Counts(&'a Int64Array),
}

impl Days<'_> {
    #[inline]
    fn get(&self, i: usize) -> Option<i64> {
        match self {
            Days::Constant(v) => *v,
            Days::Dates(a) => (!a.is_null(i)).then(|| a.value(i) as i64),
            Days::Counts(a) => (!a.is_null(i)).then(|| a.value(i)),
        }
    }
}

/// Evaluates a row function over arguments that are all dates or day counts
/// (as i64); constants are read once, NULL in any argument gives NULL.
fn rows<T>(args: &[ColumnarValue], n: usize, f: impl Fn(&[i64]) -> T) -> Result<Vec<Option<T>>> {
    let mut len = n;
    let mut days = Vec::with_capacity(args.len());
    for a in args {
        days.push(match a {
            ColumnarValue::Scalar(s) => Days::Constant(match s {
                datafusion::common::ScalarValue::Date32(v) => v.map(i64::from),
                datafusion::common::ScalarValue::Int64(v) => *v,
                s if s.is_null() => None,
                s => {
                    return datafusion::common::exec_err!(
                        "window argument of type {}",
                        s.data_type()
                    );
                }
            }),
            ColumnarValue::Array(a) => {
                len = a.len();
                match a.data_type() {
                    DataType::Date32 => Days::Dates(a.as_primitive::<Date32Type>()),
                    _ => Days::Counts(a.as_primitive::<Int64Type>()),
                }
            }
        });
    }
    let mut vals = vec![0i64; days.len()];
    let mut out = Vec::with_capacity(len);
    'row: for i in 0..len {
        for (v, d) in vals.iter_mut().zip(&days) {
            match d.get(i) {
                Some(x) => *v = x,
                None => {
                    out.push(None);
                    continue 'row;
                }
            }
        }
        out.push(Some(f(&vals)));
    }
    Ok(out)
}

fn overlap(a0: i64, a1: i64, b0: i64, b1: i64) -> i64 {
    a1.min(b1)
        .saturating_sub(a0.max(b0))
        .saturating_add(1)
        .max(0)
}

macro_rules! scalar_udf {
    ($ty:ident, $name:literal, $kinds:literal, $ret:expr, $eval:expr, $doc:expr) => {
        #[doc = concat!("`", $name, "`.")]
        #[derive(Debug, PartialEq, Eq, Hash)]
        pub struct $ty {
            signature: Signature,
        }

        impl Default for $ty {
            fn default() -> Self {
                Self {
                    signature: Signature::user_defined(Volatility::Immutable),
                }
            }
        }

        impl ScalarUDFImpl for $ty {
            fn name(&self) -> &str {
                $name
            }
            fn signature(&self) -> &Signature {
                &self.signature
            }
            fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
                coerce($name, $kinds, args)
            }
            fn return_type(&self, _: &[DataType]) -> Result<DataType> {
                Ok($ret)
            }
            fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
                let all_scalar = args
                    .args
                    .iter()
                    .all(|a| matches!(a, ColumnarValue::Scalar(_)));
                let out = $eval(&args.args, if all_scalar { 1 } else { args.number_rows })?;
                if all_scalar {
                    Ok(ColumnarValue::Scalar(
                        datafusion::common::ScalarValue::try_from_array(&out, 0)?,
                    ))
                } else {
                    Ok(ColumnarValue::Array(out))
                }
            }
            fn documentation(&self) -> Option<&Documentation> {
                static DOC: OnceLock<Documentation> = OnceLock::new();
                Some(DOC.get_or_init($doc))
            }
        }
    };
}

scalar_udf!(
    InWindow,
    "in_window",
    "DDNN",
    DataType::Boolean,
    |args: &[ColumnarValue], n| -> Result<ArrayRef> {
        // Saturating: offsets of any size are a window, not an overflow.
        let v = rows(args, n, |x| {
            x[1].saturating_add(x[2]) <= x[0] && x[0] <= x[1].saturating_add(x[3])
        })?;
        Ok(Arc::new(BooleanArray::from(v)))
    },
    || {
        Documentation::builder(
        docs::WINDOWS,
        "True when event_date falls in the window index_date + from_days .. index_date + to_days, both ends included. Look-back windows use negative offsets, risk windows positive ones.",
        "in_window(event_date, index_date, from_days, to_days)",
    )
    .with_argument("event_date", "DATE of the event.")
    .with_argument("index_date", "DATE the window is anchored on.")
    .with_argument("from_days", "First day of the window, relative to index_date.")
    .with_argument("to_days", "Last day of the window, relative to index_date.")
    .with_sql_example("SELECT count(*) FROM cohort c JOIN ndb.condition_occurrence o USING (person_id)\n WHERE in_window(o.condition_start_date, c.index_date, 1, 30)")
    .build()
    }
);

scalar_udf!(
    OverlapDays,
    "overlap_days",
    "DDDD",
    DataType::Int64,
    |args: &[ColumnarValue], n| -> Result<ArrayRef> {
        let v = rows(args, n, |x| overlap(x[0], x[1], x[2], x[3]))?;
        Ok(Arc::new(Int64Array::from(v)))
    },
    || {
        Documentation::builder(
        docs::WINDOWS,
        "Days that two inclusive spans share; 0 when they are disjoint. Person-time at risk.",
        "overlap_days(a_start, a_end, b_start, b_end)",
    )
    .with_argument("a_start", "DATE: start of the first span.")
    .with_argument("a_end", "DATE: end of the first span (inclusive).")
    .with_argument("b_start", "DATE: start of the second span.")
    .with_argument("b_end", "DATE: end of the second span (inclusive).")
    .with_sql_example("SELECT overlap_days(DATE '2020-01-01', DATE '2020-01-10', DATE '2020-01-05', DATE '2020-02-01')  -- 6")
    .build()
    }
);

scalar_udf!(
    WindowDays,
    "window_days",
    "DNNDD",
    DataType::Int64,
    |args: &[ColumnarValue], n| -> Result<ArrayRef> {
        let v = rows(args, n, |x| {
            overlap(
                x[0].saturating_add(x[1]),
                x[0].saturating_add(x[2]),
                x[3],
                x[4],
            )
        })?;
        Ok(Arc::new(Int64Array::from(v)))
    },
    || {
        Documentation::builder(
        docs::WINDOWS,
        "Days of the window index_date + from_days .. index_date + to_days that fall inside the observation span obs_start .. obs_end (censoring), both ends included.",
        "window_days(index_date, from_days, to_days, obs_start, obs_end)",
    )
    .with_argument("index_date", "DATE the window is anchored on.")
    .with_argument("from_days", "First day of the window, relative to index_date.")
    .with_argument("to_days", "Last day of the window, relative to index_date.")
    .with_argument("obs_start", "DATE: start of observation.")
    .with_argument("obs_end", "DATE: end of observation (inclusive).")
    .with_sql_example("SELECT sum(window_days(index_date, 1, 30, observation_period_start_date, observation_period_end_date)) AS days_at_risk FROM ...")
    .build()
    }
);

/// Disclosure classes of the window functions: total over any dates.
pub const DISCLOSURE: &[(&str, crate::Disclosure)] = &[
    ("in_window", crate::Disclosure::Total),
    ("overlap_days", crate::Disclosure::Total),
    ("window_days", crate::Disclosure::Total),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_is_inclusive() {
        assert_eq!(overlap(0, 9, 5, 31), 5);
        assert_eq!(overlap(0, 9, 9, 20), 1);
        assert_eq!(overlap(0, 9, 10, 20), 0);
        assert_eq!(overlap(5, 5, 5, 5), 1);
    }
}
