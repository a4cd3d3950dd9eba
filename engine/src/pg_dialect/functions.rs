//! PostgreSQL's names and result types for built-in functions DataFusion
//! has under other names or types: `sign` (`signum`), `ceiling` (`ceil`),
//! and `date_part`, which returns `double precision` in PostgreSQL (an
//! integer in DataFusion, so `date_part('year', d) / 10` would divide
//! integers). `EXTRACT` returns a numeric (see `operators`). Over a
//! `numeric`, `round(x, s)` and `trunc(x, s)` have scale `s` and `floor`,
//! `ceil`, `round(x)` and `trunc(x)` scale 0, as in PostgreSQL
//! (`round(7795.3, 0)` is `7795`, not `7795.0`).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};

/// The built-ins under PostgreSQL's names and types.
pub fn functions() -> Vec<ScalarUDF> {
    use datafusion::functions::{datetime, math};
    vec![
        math::signum().as_ref().clone().with_aliases(["sign"]),
        ScalarUDF::new_from_impl(DecimalScale::new(math::ceil(), &["ceiling"], false)),
        ScalarUDF::new_from_impl(DecimalScale::new(math::floor(), &[], false)),
        ScalarUDF::new_from_impl(DecimalScale::new(math::round(), &[], true)),
        ScalarUDF::new_from_impl(DecimalScale::new(math::trunc(), &[], true)),
        ScalarUDF::new_from_impl(DatePart {
            inner: datetime::date_part(),
        }),
        ScalarUDF::new_from_impl(Mod::new()),
    ]
}

/// `mod(a, b)`: the remainder of `a / b` with the sign of `a`, as `a % b`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Mod {
    signature: Signature,
}

impl Mod {
    fn new() -> Self {
        Mod {
            signature: Signature::user_defined(datafusion::logical_expr::Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Mod {
    fn name(&self) -> &str {
        "mod"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        let [a, b] = args else {
            return datafusion::common::plan_err!("mod takes two numbers");
        };
        let integer = |t: &DataType| t.is_integer() || t.is_null();
        let common = if integer(a) && integer(b) {
            DataType::Int64
        } else if (a.is_numeric() || a.is_null()) && (b.is_numeric() || b.is_null()) {
            DataType::Float64
        } else {
            return datafusion::common::plan_err!("mod takes two numbers, not {a} and {b}");
        };
        Ok(vec![common.clone(), common])
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args.first().cloned().unwrap_or(DataType::Int64))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [a, b] = args.args.as_slice() else {
            return datafusion::common::exec_err!("mod takes two numbers");
        };
        let scalar = matches!((a, b), (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_)));
        let n = args.number_rows;
        let out =
            datafusion::arrow::compute::kernels::numeric::rem(&a.to_array(n)?, &b.to_array(n)?)?;
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

/// The constant arguments of a call (`None` for columns).
fn scalar_arguments(args: &[ColumnarValue]) -> Vec<Option<&ScalarValue>> {
    args.iter()
        .map(|a| match a {
            ColumnarValue::Scalar(s) => Some(s),
            ColumnarValue::Array(_) => None,
        })
        .collect()
}

/// The types of a call's argument fields.
pub(super) fn types_of(fields: &[FieldRef]) -> Vec<DataType> {
    fields.iter().map(|f| f.data_type().clone()).collect()
}

/// The types `udf`'s own signature coerces `args` to.
pub(super) fn coerced_types(udf: &ScalarUDF, args: &[DataType]) -> Result<Vec<DataType>> {
    let fields: Vec<FieldRef> = args
        .iter()
        .map(|t| Arc::new(Field::new("a", t.clone(), true)))
        .collect();
    Ok(
        datafusion::logical_expr::type_coercion::functions::fields_with_udf(&fields, udf)?
            .iter()
            .map(|f| f.data_type().clone())
            .collect(),
    )
}

/// A rounding function whose result over a decimal has PostgreSQL's scale:
/// the constant second argument when `scaled` (0 without one, never
/// negative), else 0. Other types are DataFusion's function unchanged.
///
/// Its arguments are coerced as DataFusion's function coerces them, except
/// that an integer scale keeps its type (a cast would hide a constant scale
/// from the result type); it is cast when the function runs.
#[derive(Debug, PartialEq, Eq, Hash)]
struct DecimalScale {
    inner: Arc<ScalarUDF>,
    aliases: Vec<String>,
    scaled: bool,
    signature: Signature,
}

impl DecimalScale {
    fn new(inner: Arc<ScalarUDF>, aliases: &[&str], scaled: bool) -> Self {
        let mut all = inner.aliases().to_vec();
        all.extend(aliases.iter().map(|a| a.to_string()));
        let signature = Signature::user_defined(inner.signature().volatility);
        DecimalScale {
            inner,
            aliases: all,
            scaled,
            signature,
        }
    }

    /// The result type over a decimal argument: `None` when the scale is not
    /// a constant, or the argument not a decimal.
    fn decimal_type(&self, arg: &DataType, scale: Option<&ScalarValue>) -> Option<DataType> {
        let (precision, from) = match arg {
            DataType::Decimal128(p, s) => (*p, *s),
            _ => return None,
        };
        let to: i8 = match (self.scaled, scale) {
            (false, _) | (true, None) => 0,
            (true, Some(v)) if v.is_null() => return None,
            (true, Some(v)) => {
                let n = v.cast_to(&DataType::Int64).ok()?;
                match n {
                    ScalarValue::Int64(Some(n)) => n.clamp(0, 38) as i8,
                    _ => return None,
                }
            }
        };
        // The integer digits, one more for a carry (9.9 rounds to 10).
        let whole = (precision as i16 - from as i16).max(1) + 1;
        let precision = (whole + to as i16).clamp(1, 38) as u8;
        Some(DataType::Decimal128(precision, to))
    }

    /// DataFusion's result field, for arguments given in this function's types.
    fn inner_field(
        &self,
        arg_fields: &[FieldRef],
        scalars: &[Option<&ScalarValue>],
    ) -> Result<FieldRef> {
        let types = coerced_types(&self.inner, &types_of(arg_fields))?;
        let fields: Vec<FieldRef> = arg_fields
            .iter()
            .zip(&types)
            .map(|(f, t)| Arc::new(f.as_ref().clone().with_data_type(t.clone())))
            .collect();
        let cast: Vec<Option<ScalarValue>> = scalars
            .iter()
            .zip(&types)
            .map(|(s, t)| s.and_then(|s| s.cast_to(t).ok()))
            .collect();
        let cast_refs: Vec<Option<&ScalarValue>> = cast.iter().map(|s| s.as_ref()).collect();
        self.inner.return_field_from_args(ReturnFieldArgs {
            arg_fields: &fields,
            scalar_arguments: &cast_refs,
        })
    }

    fn scale_argument<'a>(
        &self,
        scalars: &[Option<&'a ScalarValue>],
    ) -> Result<Option<&'a ScalarValue>, ()> {
        match scalars.get(1) {
            None => Ok(None),
            Some(Some(v)) => Ok(Some(*v)),
            // A scale from a column: DataFusion's type.
            Some(None) => Err(()),
        }
    }
}

impl ScalarUDFImpl for DecimalScale {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        let mut types = coerced_types(&self.inner, args)?;
        for (t, given) in types.iter_mut().zip(args).skip(1) {
            if given.is_integer() {
                *t = given.clone();
            }
        }
        Ok(types)
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        self.inner.return_type(args)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let inner = self.inner_field(args.arg_fields, args.scalar_arguments)?;
        let decimal = self
            .scale_argument(args.scalar_arguments)
            .ok()
            .and_then(|scale| self.decimal_type(args.arg_fields[0].data_type(), scale));
        Ok(match decimal {
            Some(t) => Arc::new(Field::new(self.name(), t, inner.is_nullable())),
            None => inner,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let wanted = args.return_field.data_type().clone();
        let types = coerced_types(&self.inner, &types_of(&args.arg_fields))?;
        let values = args
            .args
            .into_iter()
            .zip(&types)
            .map(|(v, t)| v.cast_to(t, None))
            .collect::<Result<Vec<_>>>()?;
        let fields: Vec<FieldRef> = args
            .arg_fields
            .iter()
            .zip(&types)
            .map(|(f, t)| Arc::new(f.as_ref().clone().with_data_type(t.clone())))
            .collect();
        let scalars = scalar_arguments(&values);
        let return_field = self.inner.return_field_from_args(ReturnFieldArgs {
            arg_fields: &fields,
            scalar_arguments: &scalars,
        })?;
        drop(scalars);
        let value = self.inner.invoke_with_args(ScalarFunctionArgs {
            args: values,
            arg_fields: fields,
            number_rows: args.number_rows,
            return_field,
            config_options: args.config_options,
        })?;
        // A decimal result is rescaled to PostgreSQL's scale (exactly: the
        // digits dropped are zeros once rounded).
        value.cast_to(&wanted, None)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
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
        let scalars = scalar_arguments(&args.args);
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

/// A field of `EXTRACT` under one name: PostgreSQL's abbreviations and
/// plurals (`secs`, `ms`, `mons`, ...) as the names DataFusion knows.
fn canonical(field: &str) -> String {
    let f = field.to_ascii_lowercase();
    match f.as_str() {
        "microseconds" | "us" | "usec" | "usecs" => "microsecond",
        "milliseconds" | "ms" | "msec" | "msecs" => "millisecond",
        "seconds" | "s" | "sec" | "secs" => "second",
        "minutes" | "m" | "min" | "mins" => "minute",
        "hours" | "h" | "hr" | "hrs" => "hour",
        "days" | "d" => "day",
        "weeks" | "w" => "week",
        "months" | "mon" | "mons" => "month",
        "qtr" => "quarter",
        "years" | "y" | "yr" | "yrs" => "year",
        "decades" | "dec" | "decs" => "decade",
        "centuries" | "c" | "cent" => "century",
        "millennia" | "mil" | "mils" => "millennium",
        _ => return f,
    }
    .into()
}

/// The scale of the numeric `EXTRACT(field FROM source)` returns in
/// PostgreSQL 15: the fraction of a second for `second`, `millisecond` and
/// the `epoch` of a timestamp or interval; none otherwise.
fn extract_scale(field: &str, source: &DataType) -> i8 {
    match canonical(field).as_str() {
        "second" => 6,
        "millisecond" => 3,
        "epoch" if !matches!(source, DataType::Date32 | DataType::Date64) => 6,
        _ => 0,
    }
}

/// Precision of `EXTRACT`'s numeric.
const EXTRACT_PRECISION: u8 = 20;

/// A field of an interval (months, days, microseconds) as PostgreSQL's
/// `interval_part` computes it, unscaled at the field's scale; `None` for a
/// field intervals do not have.
fn interval_field(field: &str, months: i32, days: i32, micros: i64) -> Option<i128> {
    const MINUTE: i64 = 60_000_000;
    let years = (months / 12) as i128;
    Some(match field {
        "year" => years,
        "month" => (months % 12) as i128,
        "quarter" => ((months % 12) / 3 + 1) as i128,
        "decade" => years / 10,
        "century" => years / 100,
        "millennium" => years / 1000,
        "day" => days as i128,
        "hour" => (micros / (60 * MINUTE)) as i128,
        "minute" => (micros / MINUTE % 60) as i128,
        // Microseconds of the minute, read at scale 6 (second), 3
        // (millisecond) or 0 (microsecond).
        "second" | "millisecond" | "microsecond" => (micros % MINUTE) as i128,
        // Years of 365.25 days and months of 30, as PostgreSQL counts them.
        "epoch" => {
            let seconds =
                years * 31_557_600 + (months % 12) as i128 * 2_592_000 + days as i128 * 86_400;
            seconds * 1_000_000 + micros as i128
        }
        _ => return None,
    })
}

/// `EXTRACT(field FROM source)` as PostgreSQL 15 answers it: a numeric,
/// keeping the microseconds of `second`, `millisecond` and `epoch`, and
/// reading the parts of an interval (or a difference of timestamps) as
/// PostgreSQL shows them.
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

    fn field(value: Option<&ScalarValue>) -> Option<&str> {
        match value? {
            ScalarValue::Utf8(Some(f))
            | ScalarValue::Utf8View(Some(f))
            | ScalarValue::LargeUtf8(Some(f)) => Some(f.as_str()),
            _ => None,
        }
    }

    /// DataFusion's `date_part` of `field` over `args`' source.
    fn date_part(
        &self,
        field: &str,
        args: &ScalarFunctionArgs,
    ) -> Result<datafusion::arrow::array::ArrayRef> {
        let field = ColumnarValue::Scalar(ScalarValue::Utf8(Some(field.to_owned())));
        let return_field = {
            let f = match &field {
                ColumnarValue::Scalar(s) => Some(s),
                ColumnarValue::Array(_) => None,
            };
            self.inner.return_field_from_args(ReturnFieldArgs {
                arg_fields: &args.arg_fields,
                scalar_arguments: &[f, None],
            })?
        };
        self.inner
            .invoke_with_args(ScalarFunctionArgs {
                args: vec![field, args.args[1].clone()],
                arg_fields: args.arg_fields.clone(),
                number_rows: args.number_rows,
                return_field,
                config_options: args.config_options.clone(),
            })?
            .to_array(args.number_rows)
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
        let scale = match (field, source) {
            (Some(f), Some(s)) => extract_scale(f, &s),
            _ => 0,
        };
        let inner = self.inner.return_field_from_args(args)?;
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
            Some(ColumnarValue::Scalar(s)) => canonical(Self::field(Some(s)).unwrap_or("")),
            _ => String::new(),
        };
        let n = args.number_rows;
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let source_type = args.arg_fields.get(1).map(|f| f.data_type().clone());
        let numeric = |values: Decimal128Array| -> Result<ColumnarValue> {
            Ok(ColumnarValue::Array(Arc::new(
                values.with_precision_and_scale(EXTRACT_PRECISION, scale)?,
            )))
        };
        // Integer microseconds read as a numeric of `scale`: exact.
        let scaled = |micros: &dyn Array| -> Result<ColumnarValue> {
            let micros = cast(micros, &DataType::Int64)?;
            numeric(
                micros
                    .as_primitive::<Int64Type>()
                    .iter()
                    .map(|v| v.map(i128::from))
                    .collect(),
            )
        };
        let out = match (&source_type, field.as_str()) {
            (Some(DataType::Interval(_) | DataType::Duration(_)), _) => {
                let source = args.args[1].to_array(n)?;
                let mut values = Vec::with_capacity(n);
                for r in 0..n {
                    if source.is_null(r) {
                        values.push(None);
                        continue;
                    }
                    let Some((months, days, micros)) = super::interval_text::parts(&source, r)
                    else {
                        return datafusion::common::internal_err!("an interval");
                    };
                    match interval_field(&field, months, days, micros) {
                        Some(v) => values.push(Some(v)),
                        None => {
                            return datafusion::common::plan_err!(
                                "EXTRACT({field} FROM interval) is not supported: intervals have year, month, day, hour, minute, second and epoch"
                            );
                        }
                    }
                }
                numeric(values.into_iter().collect())?
            }
            // Seconds within the minute, in microseconds: second (scale 6),
            // millisecond (scale 3; the same microseconds).
            (
                Some(DataType::Timestamp(..) | DataType::Time32(_) | DataType::Time64(_)),
                "second" | "millisecond",
            ) => scaled(self.date_part("microsecond", &args)?.as_ref())?,
            // The timestamp's own microseconds since 1970.
            (Some(DataType::Timestamp(_, tz)), "epoch") => {
                let source = args.args[1].to_array(n)?;
                let micros = cast(
                    &source,
                    &DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
                )?;
                scaled(micros.as_ref())?
            }
            // Counted from the year as PostgreSQL counts them (no year 0).
            (_, "century" | "decade" | "millennium") => {
                let years = cast(self.date_part("year", &args)?.as_ref(), &DataType::Int64)?;
                numeric(
                    years
                        .as_primitive::<Int64Type>()
                        .iter()
                        .map(|y| y.map(|y| i128::from(years_field(&field, y))))
                        .collect(),
                )?
            }
            _ => ColumnarValue::Array(cast(self.date_part(&field, &args)?.as_ref(), &target)?),
        };
        Ok(match (scalar, out) {
            (true, ColumnarValue::Array(a)) => {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&a, 0)?)
            }
            (_, out) => out,
        })
    }
}

/// The century, decade or millennium of a year, as PostgreSQL's
/// `timestamp_part` computes them (`year <= 0` is before Christ).
fn years_field(field: &str, year: i64) -> i64 {
    match field {
        "century" if year > 0 => (year + 99) / 100,
        "century" => -((99 - (year - 1)) / 100),
        "millennium" if year > 0 => (year + 999) / 1000,
        "millennium" => -((999 - (year - 1)) / 1000),
        _ if year >= 0 => year / 10,
        _ => -((8 - (year - 1)) / 10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL 15's `EXTRACT(CENTURY | MILLENNIUM | DECADE FROM DATE ...)`.
    #[test]
    fn centuries_decades_and_millennia_as_postgresql_counts_them() {
        assert_eq!(years_field("century", 2000), 20);
        assert_eq!(years_field("century", 2001), 21);
        assert_eq!(years_field("millennium", 2000), 2);
        assert_eq!(years_field("millennium", 2001), 3);
        assert_eq!(years_field("decade", 2011), 201);
    }

    /// PostgreSQL 15's `EXTRACT(field FROM INTERVAL ...)`, by psql.
    #[test]
    fn interval_parts_as_postgresql_reads_them() {
        let hour = 3_600_000_000i64;
        // INTERVAL '1 year 14 months 3 days 25:30:01.5'
        let (months, days, micros) = (26, 3, 25 * hour + 30 * 60_000_000 + 1_500_000);
        for (field, want) in [
            ("year", 2),
            ("month", 2),
            ("quarter", 1),
            ("day", 3),
            ("hour", 25),
            ("minute", 30),
            ("second", 1_500_000),
            ("millisecond", 1_500_000),
            ("microsecond", 1_500_000),
            ("epoch", 68_650_201_500_000),
        ] {
            assert_eq!(
                interval_field(field, months, days, micros),
                Some(want),
                "{field}"
            );
        }
        // INTERVAL '-1 day -02:00:00.25'
        let (months, days, micros) = (0, -1, -2 * hour - 250_000);
        for (field, want) in [
            ("day", -1),
            ("hour", -2),
            ("second", -250_000),
            ("epoch", -93_600_250_000),
        ] {
            assert_eq!(
                interval_field(field, months, days, micros),
                Some(want),
                "{field}"
            );
        }
        assert_eq!(interval_field("dow", 0, 1, 0), None);
        assert_eq!(canonical("SECS"), "second");
        assert_eq!(canonical("mons"), "month");
    }
}
