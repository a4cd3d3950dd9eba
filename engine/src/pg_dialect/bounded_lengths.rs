//! Functions whose result grows with an argument, bounded: `lpad`, `rpad`,
//! `repeat`, `array_repeat` and `array_resize` are NULL for a length (their
//! second argument) beyond [`MAX_LENGTH`]. DataFusion allocates a whole
//! result at once: `lpad(s, 2000000000)` over a few hundred rows asks for
//! hundreds of gigabytes, and a failed allocation ends the process, every
//! session with it. NULL rather than an error, so that an analyst's
//! statement still runs the same way whatever the data holds.

use std::sync::Arc;

use datafusion::arrow::array::{Array, Int64Array};
use datafusion::arrow::compute::kernels::cmp::gt;
use datafusion::arrow::compute::{cast, nullif};
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};

/// The longest string or array these functions build, in characters or
/// elements.
pub const MAX_LENGTH: i64 = 100_000;

/// The bounded functions.
pub fn functions() -> Vec<ScalarUDF> {
    use datafusion::functions::string;
    use datafusion::functions::unicode;
    use datafusion::functions_nested::{repeat, resize};
    [
        unicode::lpad(),
        unicode::rpad(),
        string::repeat(),
        repeat::array_repeat_udf(),
        resize::array_resize_udf(),
    ]
    .into_iter()
    .map(|inner| ScalarUDF::new_from_impl(Bounded { inner }))
    .collect()
}

/// A built-in whose second argument, a length, is bounded.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
}

/// `length` with values beyond [`MAX_LENGTH`] made NULL.
fn bounded(length: &ColumnarValue, rows: usize) -> Result<ColumnarValue> {
    let t = length.data_type();
    if !t.is_integer() {
        return Ok(length.clone());
    }
    let values = length.to_array(rows)?;
    let wide = cast(&values, &DataType::Int64)?;
    let Some(wide) = wide.as_any().downcast_ref::<Int64Array>() else {
        return Ok(length.clone());
    };
    let beyond = gt(wide, &Int64Array::new_scalar(MAX_LENGTH))?;
    let kept = nullif(&values, &beyond)?;
    Ok(match length {
        ColumnarValue::Scalar(_) => ColumnarValue::Scalar(ScalarValue::try_from_array(&kept, 0)?),
        ColumnarValue::Array(_) => ColumnarValue::Array(kept),
    })
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
        if let Some(length) = args.args.get(1) {
            let rows = if length.data_type().is_integer() {
                match length {
                    ColumnarValue::Scalar(_) => 1,
                    ColumnarValue::Array(a) => a.len(),
                }
            } else {
                0
            };
            args.args[1] = bounded(length, rows)?;
        }
        self.inner.invoke_with_args(args)
    }
    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    /// Within the bound, PostgreSQL's answers; beyond it, NULL and no
    /// allocation of the length asked for.
    #[tokio::test]
    async fn lengths_beyond_the_bound_are_null() {
        let ctx = SessionContext::new();
        for f in super::functions() {
            ctx.register_udf(f);
        }
        let sql = "SELECT lpad('7', 3, '0') AS a, rpad('ab', n) IS NULL AS b, \
                   repeat('x', n) IS NULL AS c, cardinality(array_repeat(1, n)) AS d, \
                   length(lpad('a', 100000)) AS e \
                   FROM (VALUES (CAST(4 AS BIGINT)), (CAST(4000000000 AS BIGINT))) t(n) ORDER BY n";
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| 0")).collect();
        assert_eq!(
            rows,
            [
                "| 007 | false | false | 4 | 100000 |",
                "| 007 | true  | true  |   | 100000 |"
            ],
            "{text}"
        );
    }
}
