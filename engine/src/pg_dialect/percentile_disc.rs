//! `percentile_disc(f) WITHIN GROUP (ORDER BY x)`: the first value of `x`,
//! in that order, whose position reaches the fraction `f` of the non-NULL
//! values (PostgreSQL's `percentile_disc`): a value of the data, of its
//! type, never an interpolation.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, Signature, Volatility,
};

/// The aggregate function.
pub fn percentile_disc() -> Arc<AggregateUDF> {
    static F: LazyLock<Arc<AggregateUDF>> = LazyLock::new(|| {
        Arc::new(AggregateUDF::new_from_impl(PercentileDisc {
            signature: Signature::user_defined(Volatility::Immutable),
        }))
    });
    F.clone()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PercentileDisc {
    signature: Signature,
}

impl AggregateUDFImpl for PercentileDisc {
    fn name(&self) -> &str {
        "percentile_disc"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        match args {
            [x, f] if f.is_numeric() || f.is_null() => Ok(vec![x.clone(), DataType::Float64]),
            _ => plan_err!("percentile_disc takes a fraction and WITHIN GROUP (ORDER BY value)"),
        }
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args.first().cloned().unwrap_or(DataType::Null))
    }

    fn supports_within_group_clause(&self) -> bool {
        true
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let item = Field::new_list_field(args.input_fields[0].data_type().clone(), true);
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "values"),
            DataType::List(Arc::new(item)),
            true,
        ))])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        // The fraction is a constant: evaluated without rows.
        let none = RecordBatch::new_empty(Arc::new(Schema::empty()));
        let fraction = match args.exprs.get(1).map(|e| e.evaluate(&none)) {
            Some(Ok(ColumnarValue::Scalar(ScalarValue::Float64(Some(f))))) => Some(f),
            _ => None,
        };
        let Some(fraction) = fraction.filter(|f| (0.0..=1.0).contains(f)) else {
            return plan_err!("percentile_disc takes a constant fraction between 0 and 1");
        };
        Ok(Box::new(Values {
            fraction,
            descending: args.order_bys.first().is_some_and(|o| o.options.descending),
            data_type: args.expr_fields[0].data_type().clone(),
            values: Vec::new(),
        }))
    }
}

/// Every non-NULL value seen.
#[derive(Debug)]
struct Values {
    fraction: f64,
    descending: bool,
    data_type: DataType,
    values: Vec<ScalarValue>,
}

impl Values {
    fn add(&mut self, array: &ArrayRef) -> Result<()> {
        for i in 0..array.len() {
            if array.is_valid(i) {
                self.values.push(ScalarValue::try_from_array(array, i)?);
            }
        }
        Ok(())
    }
}

impl Accumulator for Values {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        match values.first() {
            Some(a) => self.add(a),
            None => exec_err!("percentile_disc: no values"),
        }
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.values.is_empty() {
            return ScalarValue::try_from(&self.data_type);
        }
        let mut sorted = self.values.clone();
        sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        if self.descending {
            sorted.reverse();
        }
        let n = sorted.len();
        let at = ((self.fraction * n as f64).ceil() as usize).clamp(1, n) - 1;
        Ok(sorted[at].clone())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.values.iter().map(ScalarValue::size).sum::<usize>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let list = ScalarValue::new_list_nullable(&self.values, &self.data_type);
        Ok(vec![ScalarValue::List(list)])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let Some(lists) = states.first().and_then(|s| s.as_list_opt::<i32>()) else {
            return exec_err!("percentile_disc: unexpected state");
        };
        for i in 0..lists.len() {
            if lists.is_valid(i) {
                self.add(&lists.value(i))?;
            }
        }
        Ok(())
    }
}
