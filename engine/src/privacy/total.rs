//! Total forms of functions that can fail on data: an analyst's statement
//! runs the same way whatever the data holds.

use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use datafusion::arrow::array::{Array, AsArray, Date32Array};
use datafusion::arrow::datatypes::{DataType, Int32Type};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

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
