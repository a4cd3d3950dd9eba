//! Arrow ↔ Postgres: result column types, row encoding (text and binary),
//! and parameter decoding.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Date64Type, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type,
    Int32Type, Int64Type, Schema, Time64MicrosecondType, TimeUnit, UInt8Type, UInt16Type,
    UInt32Type,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::ScalarValue;
use pgwire::api::Type;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use rust_decimal::Decimal;
use tsunagu_engine::pg_dialect::{datetime_text, float_text, interval_text};

/// The Postgres type a column of `t` is sent as.
pub fn pg_type(t: &DataType) -> Type {
    match t {
        DataType::Null => Type::TEXT,
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 => Type::INT8,
        DataType::UInt64
        | DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => Type::NUMERIC,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Type::TEXT,
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => Type::BYTEA,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Time32(_) | DataType::Time64(_) => Type::TIME,
        DataType::Interval(_) | DataType::Duration(_) => Type::INTERVAL,
        DataType::Dictionary(_, v) => pg_type(v),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _) => {
            match pg_type(f.data_type()) {
                Type::BOOL => Type::BOOL_ARRAY,
                Type::INT2 => Type::INT2_ARRAY,
                Type::INT4 => Type::INT4_ARRAY,
                Type::INT8 => Type::INT8_ARRAY,
                Type::FLOAT4 => Type::FLOAT4_ARRAY,
                Type::FLOAT8 => Type::FLOAT8_ARRAY,
                Type::TEXT => Type::TEXT_ARRAY,
                Type::DATE => Type::DATE_ARRAY,
                Type::TIMESTAMP => Type::TIMESTAMP_ARRAY,
                Type::NUMERIC => Type::NUMERIC_ARRAY,
                // Arrays of records and the like go as text.
                _ => Type::TEXT,
            }
        }
        _ => Type::TEXT,
    }
}

/// Field descriptions of a result schema; `format` says text or binary per column.
pub fn fields(schema: &Schema, format: &Format) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let t = pg_type(f.data_type());
            // Types we only send as text are sent as text even when binary is asked.
            let fmt = if t == Type::TEXT && !is_text_type(f.data_type()) {
                FieldFormat::Text
            } else {
                format.format_for(i)
            };
            FieldInfo::new(f.name().clone(), None, None, t, fmt)
        })
        .collect()
}

fn is_text_type(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
        || matches!(t, DataType::Dictionary(_, v) if is_text_type(v))
}

/// Encodes every row of a batch.
pub fn encode_batch(
    batch: &RecordBatch,
    fields: &Arc<Vec<FieldInfo>>,
) -> PgWireResult<Vec<DataRow>> {
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::Dictionary(_, v) => cast(c, v).map_err(err),
            _ => Ok(c.clone()),
        })
        .collect::<PgWireResult<_>>()?;
    let mut rows = Vec::with_capacity(batch.num_rows());
    let mut encoder = DataRowEncoder::new(fields.clone());
    for row in 0..batch.num_rows() {
        for (col, field) in columns.iter().zip(fields.iter()) {
            encode_value(&mut encoder, col, row, field)?;
        }
        rows.push(encoder.take_row());
    }
    Ok(rows)
}

fn err(e: impl std::fmt::Display) -> PgWireError {
    PgWireError::ApiError(e.to_string().into())
}

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")
}

fn date32(days: i32) -> Option<NaiveDate> {
    epoch().checked_add_signed(chrono::TimeDelta::days(days as i64))
}

fn timestamp(v: i64, unit: &TimeUnit) -> Option<NaiveDateTime> {
    let micros = match unit {
        TimeUnit::Second => v.checked_mul(1_000_000)?,
        TimeUnit::Millisecond => v.checked_mul(1_000)?,
        TimeUnit::Microsecond => v,
        TimeUnit::Nanosecond => v.div_euclid(1_000),
    };
    DateTime::from_timestamp_micros(micros).map(|d| d.naive_utc())
}

/// True when a field is sent as text in `DateStyle` ISO (PostgreSQL's
/// default), where timestamps and times are written as PostgreSQL writes
/// them; other styles are left to pgwire.
fn iso_text(field: &FieldInfo) -> bool {
    field.format() == FieldFormat::Text
        && field
            .format_options()
            .date_style
            .trim_start()
            .get(..3)
            .is_some_and(|s| s.eq_ignore_ascii_case("iso"))
}

fn encode_value(
    enc: &mut DataRowEncoder,
    col: &ArrayRef,
    row: usize,
    field: &FieldInfo,
) -> PgWireResult<()> {
    if col.data_type() == &DataType::Null || col.is_null(row) {
        return enc.encode_field(&None::<i8>);
    }
    if field.datatype() == &Type::TEXT && !is_text_type(col.data_type()) {
        let options = FormatOptions::default();
        let formatter = ArrayFormatter::try_new(col.as_ref(), &options).map_err(err)?;
        return enc.encode_field(&formatter.value(row).to_string());
    }
    match col.data_type() {
        DataType::Boolean => enc.encode_field(&col.as_boolean().value(row)),
        DataType::Int8 => enc.encode_field(&(col.as_primitive::<Int8Type>().value(row) as i16)),
        DataType::Int16 => enc.encode_field(&col.as_primitive::<Int16Type>().value(row)),
        DataType::UInt8 => enc.encode_field(&(col.as_primitive::<UInt8Type>().value(row) as i16)),
        DataType::Int32 => enc.encode_field(&col.as_primitive::<Int32Type>().value(row)),
        DataType::UInt16 => enc.encode_field(&(col.as_primitive::<UInt16Type>().value(row) as i32)),
        DataType::Int64 => enc.encode_field(&col.as_primitive::<Int64Type>().value(row)),
        DataType::UInt32 => enc.encode_field(&(col.as_primitive::<UInt32Type>().value(row) as i64)),
        DataType::Float16 => {
            enc.encode_field(&col.as_primitive::<Float16Type>().value(row).to_f32())
        }
        DataType::Float32 if field.format() == FieldFormat::Text => {
            let digits = field.format_options().extra_float_digits.into();
            let text = float_text::float4(col.as_primitive::<Float32Type>().value(row), digits);
            enc.encode_field_with_type_and_format(
                &text,
                &Type::FLOAT4,
                FieldFormat::Text,
                field.format_options(),
            )
        }
        DataType::Float64 if field.format() == FieldFormat::Text => {
            let digits = field.format_options().extra_float_digits.into();
            let text = float_text::float8(col.as_primitive::<Float64Type>().value(row), digits);
            enc.encode_field_with_type_and_format(
                &text,
                &Type::FLOAT8,
                FieldFormat::Text,
                field.format_options(),
            )
        }
        DataType::Float32 => enc.encode_field(&col.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => enc.encode_field(&col.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => enc.encode_field(&col.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => enc.encode_field(&col.as_string::<i64>().value(row)),
        DataType::Utf8View => enc.encode_field(&col.as_string_view().value(row)),
        DataType::Binary => enc.encode_field(&col.as_binary::<i32>().value(row)),
        DataType::LargeBinary => enc.encode_field(&col.as_binary::<i64>().value(row)),
        DataType::BinaryView => enc.encode_field(&col.as_binary_view().value(row)),
        DataType::FixedSizeBinary(_) => enc.encode_field(&col.as_fixed_size_binary().value(row)),
        DataType::Date32 => enc.encode_field(&date32(col.as_primitive::<Date32Type>().value(row))),
        DataType::Date64 => {
            let ms = col.as_primitive::<Date64Type>().value(row);
            enc.encode_field(&DateTime::from_timestamp_millis(ms).map(|d| d.date_naive()))
        }
        DataType::Timestamp(unit, tz) => {
            let v = cast(col, &DataType::Int64).map_err(err)?;
            let ts = timestamp(v.as_primitive::<Int64Type>().value(row), unit);
            if let (Some(t), true) = (ts, iso_text(field)) {
                let (text, ty) = match tz {
                    None => (datetime_text::timestamp(&t, false), Type::TIMESTAMP),
                    Some(_) => (datetime_text::timestamp(&t, true), Type::TIMESTAMPTZ),
                };
                return enc.encode_field_with_type_and_format(
                    &text,
                    &ty,
                    FieldFormat::Text,
                    field.format_options(),
                );
            }
            match tz {
                None => enc.encode_field(&ts),
                Some(_) => enc
                    .encode_field(&ts.map(|t| DateTime::<Utc>::from_naive_utc_and_offset(t, Utc))),
            }
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            let us = col.as_primitive::<Time64MicrosecondType>().value(row);
            let t = NaiveTime::from_num_seconds_from_midnight_opt(
                (us / 1_000_000) as u32,
                ((us % 1_000_000) * 1000) as u32,
            );
            match t {
                Some(t) if iso_text(field) => enc.encode_field_with_type_and_format(
                    &datetime_text::time(&t),
                    &Type::TIME,
                    FieldFormat::Text,
                    field.format_options(),
                ),
                _ => enc.encode_field(&t),
            }
        }
        DataType::Time32(_) | DataType::Time64(_) => {
            let t = cast(col, &DataType::Time64(TimeUnit::Microsecond)).map_err(err)?;
            encode_value(enc, &t, row, field)
        }
        DataType::Interval(_) | DataType::Duration(_) => {
            let (months, days, micros) =
                interval_text::parts(col.as_ref(), row).ok_or_else(|| err("not an interval"))?;
            let options = field.format_options();
            if field.format() == FieldFormat::Text
                && options.interval_style.eq_ignore_ascii_case("postgres")
            {
                let text = interval_text::interval(months, days, micros);
                enc.encode_field_with_type_and_format(
                    &text,
                    &Type::INTERVAL,
                    FieldFormat::Text,
                    options,
                )
            } else {
                // Binary, or another IntervalStyle a client asked for.
                enc.encode_field_with_type_and_format(
                    &pg_interval::Interval::new(months, days, micros),
                    &Type::INTERVAL,
                    field.format(),
                    options,
                )
            }
        }
        DataType::UInt64
        | DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => {
            let scalar = ScalarValue::try_from_array(col, row).map_err(err)?;
            enc.encode_field(&decimal(&scalar)?)
        }
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::FixedSizeList(..)
        | DataType::ListView(_)
        | DataType::LargeListView(_) => {
            let inner = ScalarValue::try_from_array(col, row).map_err(err)?;
            encode_list(enc, &inner, field)
        }
        _ => {
            let options = FormatOptions::default();
            let formatter = ArrayFormatter::try_new(col.as_ref(), &options).map_err(err)?;
            enc.encode_field(&formatter.value(row).to_string())
        }
    }
}

fn decimal(v: &ScalarValue) -> PgWireResult<Option<Decimal>> {
    Ok(match v {
        ScalarValue::UInt64(Some(x)) => Some(Decimal::from(*x)),
        ScalarValue::Decimal128(Some(x), _, s) => {
            Some(Decimal::try_from_i128_with_scale(*x, *s as u32).map_err(err)?)
        }
        ScalarValue::Decimal32(Some(x), _, s) => {
            Some(Decimal::try_from_i128_with_scale(*x as i128, *s as u32).map_err(err)?)
        }
        ScalarValue::Decimal64(Some(x), _, s) => {
            Some(Decimal::try_from_i128_with_scale(*x as i128, *s as u32).map_err(err)?)
        }
        other if other.is_null() => None,
        other => Some(other.to_string().parse::<Decimal>().map_err(err)?),
    })
}

/// A float array in text: `{1,2.5,NULL}` with elements written by `element`.
fn float_array(
    enc: &mut DataRowEncoder,
    field: &FieldInfo,
    n: usize,
    element: impl Fn(usize) -> Option<String>,
) -> PgWireResult<()> {
    let mut text = String::from("{");
    for i in 0..n {
        if i > 0 {
            text.push(',');
        }
        text.push_str(element(i).as_deref().unwrap_or("NULL"));
    }
    text.push('}');
    // Written as it is (as text, not quoted as one element of an array);
    // the column's array type was announced in the row description.
    enc.encode_field_with_type_and_format(
        &text,
        &Type::TEXT,
        FieldFormat::Text,
        field.format_options(),
    )
}

/// Encodes a list value as a Postgres array of the element type.
fn encode_list(
    enc: &mut DataRowEncoder,
    list: &ScalarValue,
    field: &FieldInfo,
) -> PgWireResult<()> {
    let values: ArrayRef = match list {
        ScalarValue::List(a) => a.value(0),
        ScalarValue::LargeList(a) => a.value(0),
        ScalarValue::FixedSizeList(a) => a.value(0),
        _ => return enc.encode_field(&list.to_string()),
    };
    let n = values.len();
    macro_rules! prim {
        ($t:ty, $conv:expr) => {{
            let a = values.as_primitive::<$t>();
            let v: Vec<Option<_>> = (0..n)
                .map(|i| (!a.is_null(i)).then(|| $conv(a.value(i))))
                .collect();
            enc.encode_field(&v)
        }};
    }
    match (field.datatype(), values.data_type()) {
        (&Type::BOOL_ARRAY, _) => {
            let a = values.as_boolean();
            let v: Vec<Option<bool>> = (0..n)
                .map(|i| (!a.is_null(i)).then(|| a.value(i)))
                .collect();
            enc.encode_field(&v)
        }
        (&Type::INT2_ARRAY, DataType::Int16) => prim!(Int16Type, |x| x),
        (&Type::INT4_ARRAY, DataType::Int32) => prim!(Int32Type, |x| x),
        (&Type::INT8_ARRAY, DataType::Int64) => prim!(Int64Type, |x| x),
        (&Type::INT8_ARRAY, DataType::UInt32) => prim!(UInt32Type, |x| x as i64),
        // In text, each element as float8out / float4out writes it.
        (&Type::FLOAT4_ARRAY, DataType::Float32) if field.format() == FieldFormat::Text => {
            let digits = field.format_options().extra_float_digits.into();
            let a = values.as_primitive::<Float32Type>();
            float_array(enc, field, n, |i| {
                (!a.is_null(i)).then(|| float_text::float4(a.value(i), digits))
            })
        }
        (&Type::FLOAT8_ARRAY, DataType::Float64) if field.format() == FieldFormat::Text => {
            let digits = field.format_options().extra_float_digits.into();
            let a = values.as_primitive::<Float64Type>();
            float_array(enc, field, n, |i| {
                (!a.is_null(i)).then(|| float_text::float8(a.value(i), digits))
            })
        }
        (&Type::FLOAT4_ARRAY, DataType::Float32) => prim!(Float32Type, |x| x),
        (&Type::FLOAT8_ARRAY, DataType::Float64) => prim!(Float64Type, |x| x),
        (&Type::DATE_ARRAY, DataType::Date32) => prim!(Date32Type, date32),
        (&Type::INT2_ARRAY | &Type::INT4_ARRAY | &Type::INT8_ARRAY, _) => {
            let a = cast(&values, &DataType::Int64).map_err(err)?;
            let a = a.as_primitive::<Int64Type>();
            let v: Vec<Option<i64>> = (0..n)
                .map(|i| (!a.is_null(i)).then(|| a.value(i)))
                .collect();
            // Widened values travel as text to keep the declared element type honest.
            enc.encode_field_with_type_and_format(
                &v,
                &Type::INT8_ARRAY,
                FieldFormat::Text,
                field.format_options(),
            )
        }
        _ => {
            let a = cast(&values, &DataType::Utf8).map_err(err)?;
            let a = a.as_string::<i32>();
            let v: Vec<Option<&str>> = (0..n)
                .map(|i| (!a.is_null(i)).then(|| a.value(i)))
                .collect();
            if field.datatype() == &Type::TEXT_ARRAY {
                enc.encode_field(&v)
            } else {
                enc.encode_field_with_type_and_format(
                    &v,
                    &Type::TEXT_ARRAY,
                    FieldFormat::Text,
                    field.format_options(),
                )
            }
        }
    }
}

/// The Arrow type a parameter of Postgres type `t` is read as.
pub fn arrow_type(t: &Type) -> Option<DataType> {
    Some(match *t {
        Type::BOOL => DataType::Boolean,
        Type::INT2 => DataType::Int16,
        Type::INT4 => DataType::Int32,
        Type::INT8 | Type::OID => DataType::Int64,
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 => DataType::Float64,
        Type::NUMERIC => DataType::Float64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => DataType::Utf8,
        Type::BYTEA => DataType::Binary,
        Type::DATE => DataType::Date32,
        Type::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        Type::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        _ => return None,
    })
}

/// Reads the bound parameters of a portal as Arrow scalars of the types the plan expects.
///
/// `declared` are the types the client gave at Parse; `inferred` are those the plan infers.
pub fn parameters<S: Clone>(
    portal: &Portal<S>,
    declared: &[Option<Type>],
    inferred: &[Option<DataType>],
) -> PgWireResult<Vec<ScalarValue>> {
    let mut out = Vec::with_capacity(portal.parameter_len());
    for i in 0..portal.parameter_len() {
        let target = inferred.get(i).cloned().flatten();
        let pg = declared
            .get(i)
            .cloned()
            .flatten()
            .filter(|t| *t != Type::UNKNOWN)
            .or_else(|| target.as_ref().map(pg_type))
            .unwrap_or(Type::TEXT);
        let value = read_param(portal, i, &pg)?;
        let value = match target {
            Some(t) if value.data_type() != t => value.cast_to(&t).map_err(|_| {
                user_error(
                    "22P02",
                    format!("parameter ${} cannot be read as {t}", i + 1),
                )
            })?,
            _ => value,
        };
        out.push(value);
    }
    Ok(out)
}

fn read_param<S: Clone>(portal: &Portal<S>, i: usize, pg: &Type) -> PgWireResult<ScalarValue> {
    let bad = |_| {
        user_error(
            "22P02",
            format!("parameter ${} is not a valid {}", i + 1, pg.name()),
        )
    };
    Ok(match *pg {
        Type::BOOL => ScalarValue::Boolean(portal.parameter::<bool>(i, pg).map_err(bad)?),
        Type::INT2 => ScalarValue::Int16(portal.parameter::<i16>(i, pg).map_err(bad)?),
        Type::INT4 => ScalarValue::Int32(portal.parameter::<i32>(i, pg).map_err(bad)?),
        Type::INT8 => ScalarValue::Int64(portal.parameter::<i64>(i, pg).map_err(bad)?),
        Type::FLOAT4 => ScalarValue::Float32(portal.parameter::<f32>(i, pg).map_err(bad)?),
        Type::FLOAT8 => ScalarValue::Float64(portal.parameter::<f64>(i, pg).map_err(bad)?),
        Type::NUMERIC => {
            let d = portal.parameter::<Decimal>(i, pg).map_err(bad)?;
            ScalarValue::Float64(d.map(|d| d.to_string().parse::<f64>().unwrap_or(f64::NAN)))
        }
        Type::DATE => ScalarValue::Date32(
            portal
                .parameter::<NaiveDate>(i, pg)
                .map_err(bad)?
                .map(|d| (d - epoch()).num_days() as i32),
        ),
        Type::TIMESTAMP => ScalarValue::TimestampMicrosecond(
            portal
                .parameter::<NaiveDateTime>(i, pg)
                .map_err(bad)?
                .map(|d| d.and_utc().timestamp_micros()),
            None,
        ),
        Type::TIMESTAMPTZ => ScalarValue::TimestampMicrosecond(
            portal
                .parameter::<DateTime<chrono::FixedOffset>>(i, pg)
                .map_err(bad)?
                .map(|d| d.timestamp_micros()),
            Some("+00:00".into()),
        ),
        Type::BYTEA => ScalarValue::Binary(portal.parameter::<Vec<u8>>(i, pg).map_err(bad)?),
        _ => ScalarValue::Utf8(portal.parameter::<String>(i, &Type::TEXT).map_err(bad)?),
    })
}

/// An error for the client with a SQLSTATE code.
pub fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(pgwire::error::ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message,
    )))
}
