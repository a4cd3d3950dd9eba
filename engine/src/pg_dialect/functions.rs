//! PostgreSQL's names and result types for built-in functions DataFusion
//! has under other names or types: `sign` (`signum`), `ceiling` (`ceil`),
//! and `date_part`, which returns `double precision` in PostgreSQL (an
//! integer in DataFusion, so `date_part('year', d) / 10` would divide
//! integers). `EXTRACT` returns a numeric (see `operators`).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};

/// The built-ins under PostgreSQL's names and types.
pub fn functions() -> Vec<ScalarUDF> {
    use datafusion::functions::{datetime, math};
    vec![
        math::signum().as_ref().clone().with_aliases(["sign"]),
        math::ceil().as_ref().clone().with_aliases(["ceiling"]),
        ScalarUDF::new_from_impl(DatePart {
            inner: datetime::date_part(),
        }),
    ]
}

/// `date_part(field, source)` returning `double precision`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct DatePart {
    inner: Arc<ScalarUDF>,
}

impl ScalarUDFImpl for DatePart {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let inner = self.inner.return_field_from_args(args)?;
        Ok(Arc::new(Field::new(
            self.name(),
            DataType::Float64,
            inner.is_nullable(),
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalars: Vec<_> = args
            .args
            .iter()
            .map(|a| match a {
                ColumnarValue::Scalar(s) => Some(s),
                ColumnarValue::Array(_) => None,
            })
            .collect();
        let return_field = self.inner.return_field_from_args(ReturnFieldArgs {
            arg_fields: &args.arg_fields,
            scalar_arguments: &scalars,
        })?;
        drop(scalars);
        let value = self.inner.invoke_with_args(ScalarFunctionArgs {
            return_field,
            ..args
        })?;
        value.cast_to(&DataType::Float64, None)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

/// The scale of the numeric `EXTRACT(field FROM source)` returns in
/// PostgreSQL 15: the fraction of a second for `second`, `millisecond` and
/// the `epoch` of a timestamp or interval; none otherwise.
fn extract_scale(field: &str, source: &DataType) -> i8 {
    match field.to_ascii_lowercase().as_str() {
        "second" | "seconds" => 6,
        "millisecond" | "milliseconds" => 3,
        "epoch" if !matches!(source, DataType::Date32 | DataType::Date64) => 6,
        _ => 0,
    }
}

/// Precision of `EXTRACT`'s numeric.
const EXTRACT_PRECISION: u8 = 20;

/// `EXTRACT(field FROM source)` as PostgreSQL 15 answers it: a numeric,
/// keeping the microseconds of `second`, `millisecond` and `epoch`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Extract {
    inner: Arc<ScalarUDF>,
}

impl Extract {
    pub(crate) fn udf() -> Arc<ScalarUDF> {
        static UDF: std::sync::OnceLock<Arc<ScalarUDF>> = std::sync::OnceLock::new();
        UDF.get_or_init(|| {
            Arc::new(ScalarUDF::new_from_impl(Extract {
                inner: datafusion::functions::datetime::date_part(),
            }))
        })
        .clone()
    }

    fn field(value: Option<&datafusion::common::ScalarValue>) -> Option<&str> {
        match value? {
            datafusion::common::ScalarValue::Utf8(Some(f))
            | datafusion::common::ScalarValue::Utf8View(Some(f))
            | datafusion::common::ScalarValue::LargeUtf8(Some(f)) => Some(f.as_str()),
            _ => None,
        }
    }
}

impl ScalarUDFImpl for Extract {
    fn name(&self) -> &str {
        "pg_extract"
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(args)
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        datafusion::common::internal_err!("pg_extract's type follows its arguments")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let field = Self::field(args.scalar_arguments.first().copied().flatten());
        let source = args.arg_fields.get(1).map(|f| f.data_type().clone());
        let inner = self.inner.return_field_from_args(args)?;
        let scale = match (field, source) {
            (Some(f), Some(s)) => extract_scale(f, &s),
            _ => 0,
        };
        Ok(Arc::new(Field::new(
            self.name(),
            DataType::Decimal128(EXTRACT_PRECISION, scale),
            inner.is_nullable(),
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::{Array, AsArray, Decimal128Array};
        use datafusion::arrow::compute::cast;
        use datafusion::arrow::datatypes::{Int64Type, TimeUnit};
        let target = args.return_field.data_type().clone();
        let DataType::Decimal128(_, scale) = target else {
            return datafusion::common::internal_err!("pg_extract returns a numeric");
        };
        let field = match args.args.first() {
            Some(ColumnarValue::Scalar(s)) => {
                Self::field(Some(s)).unwrap_or("").to_ascii_lowercase()
            }
            _ => String::new(),
        };
        let source_type = args.arg_fields.get(1).map(|f| f.data_type().clone());
        let is_timestamp = matches!(source_type, Some(DataType::Timestamp(..)));
        let is_time = matches!(source_type, Some(DataType::Time32(_) | DataType::Time64(_)));
        // Integer microseconds read as a numeric of `scale`: exact.
        let scaled = |micros: &dyn Array| -> Result<ColumnarValue> {
            let micros = cast(micros, &DataType::Int64)?;
            let values: Decimal128Array = micros
                .as_primitive::<Int64Type>()
                .iter()
                .map(|v| v.map(i128::from))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(
                values.with_precision_and_scale(EXTRACT_PRECISION, scale)?,
            )))
        };
        let n = args.number_rows;
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let out = match field.as_str() {
            // Seconds within the minute, in microseconds: second (scale 6),
            // millisecond (scale 3).
            "second" | "seconds" | "millisecond" | "milliseconds" if is_timestamp || is_time => {
                let micros = self.inner.invoke_with_args(ScalarFunctionArgs {
                    args: vec![
                        ColumnarValue::Scalar(datafusion::common::ScalarValue::Utf8(Some(
                            "microsecond".into(),
                        ))),
                        args.args[1].clone(),
                    ],
                    arg_fields: args.arg_fields.clone(),
                    number_rows: n,
                    return_field: Arc::new(Field::new("micros", DataType::Int32, true)),
                    config_options: args.config_options.clone(),
                })?;
                // Milliseconds with three decimals are the same microseconds.
                scaled(micros.to_array(n)?.as_ref())?
            }
            // The timestamp's own microseconds since 1970.
            "epoch" if is_timestamp => {
                let Some(DataType::Timestamp(_, tz)) = &source_type else {
                    return datafusion::common::internal_err!("a timestamp");
                };
                let source = args.args[1].to_array(n)?;
                let micros = cast(
                    &source,
                    &DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
                )?;
                scaled(micros.as_ref())?
            }
            _ => {
                let inner_field = self.inner.return_field_from_args(ReturnFieldArgs {
                    arg_fields: &args.arg_fields,
                    scalar_arguments: &args
                        .args
                        .iter()
                        .map(|a| match a {
                            ColumnarValue::Scalar(s) => Some(s),
                            ColumnarValue::Array(_) => None,
                        })
                        .collect::<Vec<_>>(),
                })?;
                let value = self.inner.invoke_with_args(ScalarFunctionArgs {
                    return_field: inner_field,
                    ..args
                })?;
                value.cast_to(&target, None)?
            }
        };
        Ok(match (scalar, out) {
            (true, ColumnarValue::Array(a)) => {
                ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&a, 0)?)
            }
            (_, out) => out,
        })
    }
}
