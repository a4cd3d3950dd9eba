//! PostgreSQL's formatting functions with PostgreSQL's templates:
//! `to_char(number, '0000')`, `to_char(date, 'YYYYMMDD')`,
//! `to_date(text, 'YYYY-MM-DD')`, `to_timestamp(text, 'YYYY-MM-DD HH24:MI')`.
//! DataFusion's versions take chrono's `%Y-%m-%d` and write PostgreSQL's
//! `YYYY` back unchanged; OHDSI SqlRender renders `DATEFROMPARTS` as
//! `TO_DATE(TO_CHAR(y,'0000')||'-'||TO_CHAR(m,'00')||..., 'YYYY-MM-DD')`.
//!
//! Covered: digits `9` `0`, `.` `D`, `,` `G`, `S` `MI` `PL` `SG`, `FM` for
//! numbers; `YYYY` `YYY` `YY` `Y` `MM` `DD` `DDD` `D` `HH24` `HH12` `HH`
//! `MI` `SS` `MS` `US` `AM` `PM` `Q` `WW` `IW` `CC`, month and day names
//! (`Month`, `MON`, `Dy`, ...), `FM`, quoted text for dates. A value
//! `to_char` does not format (an interval) keeps DataFusion's function, as
//! do `to_date` and `to_timestamp` with one argument.

use std::sync::Arc;

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};
use datafusion::common::{Result, ScalarValue, exec_datafusion_err, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};

/// `to_char`, `to_date` and `to_timestamp` with PostgreSQL's templates.
pub fn functions() -> Vec<ScalarUDF> {
    use datafusion::functions::datetime;
    vec![
        ScalarUDF::new_from_impl(Formatting::new(Kind::Char, datetime::to_char())),
        ScalarUDF::new_from_impl(Formatting::new(Kind::Date, datetime::to_date())),
        ScalarUDF::new_from_impl(Formatting::new(
            Kind::Timestamp,
            datetime::to_timestamp(&datafusion::common::config::ConfigOptions::default()),
        )),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Char,
    Date,
    Timestamp,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Formatting {
    kind: Kind,
    /// DataFusion's function, for the forms PostgreSQL has no template for.
    inner: Arc<ScalarUDF>,
    signature: Signature,
}

impl Formatting {
    fn new(kind: Kind, inner: Arc<ScalarUDF>) -> Self {
        Formatting {
            kind,
            inner,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    /// True when the call takes PostgreSQL's template (else DataFusion's).
    fn ours(&self, args: &[DataType]) -> bool {
        if args.len() != 2 {
            return false;
        }
        match self.kind {
            Kind::Char => {
                args[0].is_numeric()
                    || matches!(args[0], DataType::Date32 | DataType::Timestamp(..))
                    || args[0].is_null()
            }
            Kind::Date | Kind::Timestamp => true,
        }
    }

    fn our_type(&self) -> DataType {
        match self.kind {
            Kind::Char => DataType::Utf8,
            Kind::Date => DataType::Date32,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        }
    }
}

impl ScalarUDFImpl for Formatting {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        if !self.ours(args) {
            return super::functions::coerced_types(&self.inner, args);
        }
        let first = match (self.kind, &args[0]) {
            (Kind::Char, DataType::Decimal128(..) | DataType::Float64 | DataType::Date32) => {
                args[0].clone()
            }
            (Kind::Char, DataType::Timestamp(..)) => {
                DataType::Timestamp(TimeUnit::Microsecond, None)
            }
            (Kind::Char, DataType::Float32) => DataType::Float64,
            (Kind::Char, t) if t.is_integer() || t.is_null() => DataType::Int64,
            (Kind::Char, DataType::Decimal32(p, s) | DataType::Decimal64(p, s)) => {
                DataType::Decimal128(*p, *s)
            }
            (Kind::Char, _) => DataType::Float64,
            _ => DataType::Utf8,
        };
        Ok(vec![first, DataType::Utf8])
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        if self.ours(args) {
            Ok(self.our_type())
        } else {
            self.inner.return_type(args)
        }
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let types = super::functions::types_of(args.arg_fields);
        if self.ours(&types) {
            Ok(Arc::new(Field::new(self.name(), self.our_type(), true)))
        } else {
            self.inner.return_field_from_args(args)
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let types = super::functions::types_of(&args.arg_fields);
        if !self.ours(&types) {
            return self.inner.invoke_with_args(args);
        }
        let rows = args.number_rows;
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let value = args.args[0].to_array(rows)?;
        let template = cast(&args.args[1].to_array(rows)?, &DataType::Utf8)?;
        let template = template.as_string::<i32>();
        let out: ArrayRef = match self.kind {
            Kind::Char => Arc::new(to_char(&value, template)?),
            Kind::Date | Kind::Timestamp => {
                let text = cast(&value, &DataType::Utf8)?;
                let text = text.as_string::<i32>();
                let read = per_row(
                    rows,
                    |i| text.is_valid(i) && template.is_valid(i),
                    |i| parse(text.value(i), template.value(i)),
                )?;
                if self.kind == Kind::Date {
                    let days = read
                        .iter()
                        .map(|t| t.map(|t| (t.date() - epoch()).num_days() as i32));
                    Arc::new(Date32Array::from(days.collect::<Vec<_>>()))
                } else {
                    let micros = read
                        .iter()
                        .map(|t| t.map(|t| t.and_utc().timestamp_micros()));
                    Arc::new(
                        TimestampMicrosecondArray::from(micros.collect::<Vec<_>>())
                            .with_timezone("+00:00"),
                    )
                }
            }
        };
        if scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

fn epoch() -> NaiveDate {
    NaiveDate::default()
}

/// `f(i)` for each row `i` where `valid(i)`, NULL elsewhere.
fn per_row<T>(
    n: usize,
    valid: impl Fn(usize) -> bool,
    f: impl Fn(usize) -> Result<T>,
) -> Result<Vec<Option<T>>> {
    (0..n).map(|i| valid(i).then(|| f(i)).transpose()).collect()
}

fn to_char(value: &ArrayRef, template: &StringArray) -> Result<StringArray> {
    use datafusion::arrow::datatypes::{
        Date32Type, Decimal128Type, Float64Type, Int64Type, TimestampMicrosecondType,
    };
    let n = value.len();
    let valid = |i: usize| value.is_valid(i) && template.is_valid(i);
    let out = match value.data_type() {
        DataType::Date32 => {
            let v = value.as_primitive::<Date32Type>();
            per_row(n, valid, |i| {
                let d = epoch()
                    .checked_add_signed(chrono::TimeDelta::days(v.value(i) as i64))
                    .ok_or_else(|| exec_datafusion_err!("to_char: date out of range"))?;
                Ok(datetime_text(
                    &d.and_time(Default::default()),
                    template.value(i),
                ))
            })?
        }
        DataType::Timestamp(..) => {
            let v = cast(value, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
            let v = v.as_primitive::<TimestampMicrosecondType>();
            per_row(n, valid, |i| {
                let t = chrono::DateTime::from_timestamp_micros(v.value(i))
                    .ok_or_else(|| exec_datafusion_err!("to_char: timestamp out of range"))?;
                Ok(datetime_text(&t.naive_utc(), template.value(i)))
            })?
        }
        DataType::Decimal128(_, scale) => {
            let v = value.as_primitive::<Decimal128Type>();
            per_row(n, valid, |i| {
                Ok(number_text(
                    Digits::decimal(v.value(i), *scale),
                    template.value(i),
                    false,
                ))
            })?
        }
        DataType::Int64 => {
            let v = value.as_primitive::<Int64Type>();
            per_row(n, valid, |i| {
                let d = Digits::decimal(v.value(i) as i128, 0);
                Ok(number_text(d, template.value(i), false))
            })?
        }
        DataType::Float64 => {
            let v = value.as_primitive::<Float64Type>();
            per_row(n, valid, |i| {
                Ok(float_number_text(v.value(i), template.value(i)))
            })?
        }
        DataType::Null => vec![None::<String>; n],
        other => return exec_err!("to_char does not format {other}"),
    };
    Ok(StringArray::from(out))
}

/// A number as sign, integer digits and fraction digits (decimal text).
struct Digits {
    negative: bool,
    int: String,
    frac: String,
}

impl Digits {
    fn decimal(v: i128, scale: i8) -> Digits {
        let negative = v < 0;
        let abs = v.unsigned_abs().to_string();
        let scale = scale.max(0) as usize;
        let (int, frac) = if abs.len() > scale {
            let (a, b) = abs.split_at(abs.len() - scale);
            (a.to_string(), b.to_string())
        } else {
            ("0".to_string(), format!("{abs:0>scale$}"))
        };
        Digits {
            negative,
            int: int.trim_start_matches('0').to_string(),
            frac,
        }
    }

    /// Rounded half away from zero to `places` fraction digits.
    fn rounded(mut self, places: usize) -> Digits {
        if self.frac.len() <= places {
            self.frac = format!("{:0<places$}", self.frac);
            return self;
        }
        let up = self.frac.as_bytes()[places] >= b'5';
        let mut all: Vec<u8> = format!("{}{}", self.int, &self.frac[..places]).into_bytes();
        if up {
            let mut i = all.len();
            loop {
                if i == 0 {
                    all.insert(0, b'1');
                    break;
                }
                i -= 1;
                if all[i] == b'9' {
                    all[i] = b'0';
                } else {
                    all[i] += 1;
                    break;
                }
            }
        }
        let all = String::from_utf8(all).unwrap_or_default();
        let (int, frac) = all.split_at(all.len() - places);
        Digits {
            negative: self.negative,
            int: int.trim_start_matches('0').to_string(),
            frac: frac.to_string(),
        }
    }
}

/// A float formatted as PostgreSQL formats a `double precision`: rounded
/// to the template's fraction digits half to even, as `printf` does.
fn float_number_text(v: f64, template: &str) -> String {
    if !v.is_finite() {
        return number_text(Digits::decimal(0, 0), template, true);
    }
    let places = Template::number(template).frac_digits;
    let text = format!("{:.*}", places, v.abs());
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let d = Digits {
        negative: v < 0.0 && text.bytes().any(|b| b.is_ascii_digit() && b != b'0'),
        int: int.trim_start_matches('0').to_string(),
        frac: frac.to_string(),
    };
    number_text(d, template, !v.is_finite())
}

/// The parts of a number template.
#[derive(Debug)]
enum NumPart {
    Digit { zero: bool },
    Point,
    Group,
    Sign(SignStyle),
    Text(char),
}

#[derive(Debug, Clone, Copy)]
enum SignStyle {
    /// `S`: `+` or `-`.
    Both,
    /// `MI`: `-` or a space.
    Minus,
    /// `PL`: `+` or a space.
    Plus,
    /// `SG`: `+` or `-`.
    Explicit,
}

struct Template {
    parts: Vec<NumPart>,
    fill: bool,
    int_digits: usize,
    frac_digits: usize,
}

impl Template {
    fn number(template: &str) -> Template {
        let chars: Vec<char> = template.chars().collect();
        let mut parts = Vec::new();
        let mut fill = false;
        let mut seen_point = false;
        let (mut int_digits, mut frac_digits) = (0, 0);
        let mut i = 0;
        while i < chars.len() {
            let rest: String = chars[i..]
                .iter()
                .take(2)
                .collect::<String>()
                .to_ascii_uppercase();
            let c = chars[i];
            if rest == "FM" {
                fill = true;
                i += 2;
                continue;
            }
            if rest == "MI" || rest == "PL" || rest == "SG" {
                parts.push(NumPart::Sign(match rest.as_str() {
                    "MI" => SignStyle::Minus,
                    "PL" => SignStyle::Plus,
                    _ => SignStyle::Explicit,
                }));
                i += 2;
                continue;
            }
            match c {
                '9' | '0' => {
                    parts.push(NumPart::Digit { zero: c == '0' });
                    if seen_point {
                        frac_digits += 1;
                    } else {
                        int_digits += 1;
                    }
                }
                '.' | 'D' | 'd' if !seen_point => {
                    seen_point = true;
                    parts.push(NumPart::Point);
                }
                ',' | 'G' | 'g' => parts.push(NumPart::Group),
                'S' | 's' => parts.push(NumPart::Sign(SignStyle::Both)),
                c => parts.push(NumPart::Text(c)),
            }
            i += 1;
        }
        Template {
            parts,
            fill,
            int_digits,
            frac_digits,
        }
    }
}

/// A number in a PostgreSQL number template (`to_char(9999, '0000')` is
/// ` 9999`: one place for the sign, then the digits).
fn number_text(d: Digits, template: &str, overflow: bool) -> String {
    let t = Template::number(template);
    let d = d.rounded(t.frac_digits);
    let mut int = d.int.clone();
    // A zero shows one digit in the last integer place.
    let zero_int = int.is_empty();
    let overflow = overflow || int.len() > t.int_digits;
    let negative = d.negative && (!int.is_empty() || d.frac.bytes().any(|b| b != b'0'));
    let explicit_sign = t.parts.iter().any(|p| matches!(p, NumPart::Sign(_)));
    // The first integer place that shows a digit or a leading zero.
    let first_zero = t
        .parts
        .iter()
        .filter(|p| matches!(p, NumPart::Digit { .. } | NumPart::Point))
        .take(t.int_digits)
        .position(|p| matches!(p, NumPart::Digit { zero: true }));
    let lead = t.int_digits.saturating_sub(int.len());
    let shown_from = first_zero.map_or(lead, |z| z.min(lead));
    if zero_int && t.int_digits > 0 && first_zero.is_none() && t.frac_digits == 0 {
        int = "0".to_string();
    }
    let lead = t.int_digits.saturating_sub(int.len());
    let shown_from = if zero_int && t.frac_digits == 0 {
        shown_from.min(lead)
    } else {
        shown_from
    };
    let int_chars: Vec<char> = int.chars().collect();
    let mut out = String::new();
    let mut place = 0; // integer places passed
    let mut frac_place = 0;
    let mut after_point = false;
    let mut sign_written = explicit_sign;
    let mut any_digit = false;
    let mut fill_frac_zeros = Vec::new(); // positions of `9` fraction digits
    for p in &t.parts {
        match p {
            NumPart::Digit { .. } if !after_point => {
                let shown = place >= shown_from;
                if shown && !sign_written {
                    out.push(if negative {
                        '-'
                    } else if t.fill {
                        '\0'
                    } else {
                        ' '
                    });
                    sign_written = true;
                }
                if overflow {
                    out.push('#');
                } else if shown {
                    let digit = if place >= lead {
                        int_chars[place - lead]
                    } else {
                        '0'
                    };
                    out.push(digit);
                    any_digit = true;
                } else if !t.fill {
                    out.push(' ');
                }
                place += 1;
            }
            NumPart::Digit { zero } => {
                let digit = if overflow {
                    '#'
                } else {
                    d.frac
                        .as_bytes()
                        .get(frac_place)
                        .map_or('0', |b| *b as char)
                };
                if !zero {
                    fill_frac_zeros.push(out.len());
                } else {
                    fill_frac_zeros.clear();
                }
                out.push(digit);
                frac_place += 1;
            }
            NumPart::Point => {
                if !sign_written {
                    out.push(if negative {
                        '-'
                    } else if t.fill {
                        '\0'
                    } else {
                        ' '
                    });
                    sign_written = true;
                }
                after_point = true;
                out.push('.');
            }
            NumPart::Group => {
                if any_digit {
                    out.push(',');
                } else if !t.fill {
                    out.push(' ');
                }
            }
            NumPart::Sign(style) => out.push_str(match (style, negative) {
                (SignStyle::Both | SignStyle::Explicit, true) | (SignStyle::Minus, true) => "-",
                (SignStyle::Both | SignStyle::Explicit | SignStyle::Plus, false) => "+",
                (SignStyle::Minus, false) | (SignStyle::Plus, true) => " ",
            }),
            NumPart::Text(c) => out.push(*c),
        }
    }
    if !sign_written {
        out.insert(0, if negative { '-' } else { ' ' });
    }
    if t.fill && !overflow {
        // Fill mode drops trailing zeros of `9` fraction places.
        let mut bytes: Vec<char> = out.chars().collect();
        for &at in fill_frac_zeros.iter().rev() {
            if at + 1 == bytes.len() && bytes[at] == '0' {
                bytes.pop();
            } else {
                break;
            }
        }
        out = bytes.into_iter().collect();
    }
    out.replace('\0', "")
}

/// Names of months and days, as PostgreSQL writes them.
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// The fields of a date template, longest first so `HH24` wins over `HH`.
const FIELDS: &[&str] = &[
    "HH24", "HH12", "YYYY", "IYYY", "MONTH", "A.M.", "P.M.", "YYY", "MON", "DAY", "DDD", "HH",
    "MI", "SS", "MS", "US", "AM", "PM", "YY", "MM", "DD", "DY", "WW", "IW", "CC", "Y", "D", "Q",
];

/// One piece of a date template: a field (as written, for the case of
/// names), or text copied as it is.
enum DatePart {
    Field {
        name: &'static str,
        written: String,
        fill: bool,
    },
    Text(String),
}

fn date_template(template: &str) -> Vec<DatePart> {
    let chars: Vec<char> = template.chars().collect();
    let mut parts = Vec::new();
    let mut fill = false;
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '"' {
            let mut text = String::new();
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                text.push(chars[i]);
                i += 1;
            }
            i += 1;
            parts.push(DatePart::Text(text));
            continue;
        }
        let upper: String = chars[i..]
            .iter()
            .take(5)
            .collect::<String>()
            .to_ascii_uppercase();
        if upper.starts_with("FM") {
            fill = true;
            i += 2;
            continue;
        }
        if let Some(name) = FIELDS.iter().find(|f| upper.starts_with(**f)) {
            let written: String = chars[i..i + name.len()].iter().collect();
            parts.push(DatePart::Field {
                name,
                written,
                fill,
            });
            fill = false;
            i += name.len();
            continue;
        }
        parts.push(DatePart::Text(chars[i].to_string()));
        i += 1;
    }
    parts
}

/// A name in the case the template writes it: `MONTH` upper, `Month`
/// capitalized, `month` lower; padded to 9 unless in fill mode.
fn name_text(name: &str, written: &str, fill: bool, short: bool) -> String {
    let name = if short { &name[..3] } else { name };
    let mut chars = written.chars();
    let first_upper = chars.next().is_some_and(|c| c.is_ascii_uppercase());
    let second_upper = chars.next().is_some_and(|c| c.is_ascii_uppercase());
    let text = match (first_upper, second_upper) {
        (true, true) => name.to_ascii_uppercase(),
        (true, false) => name.to_string(),
        _ => name.to_ascii_lowercase(),
    };
    if fill || short {
        text
    } else {
        format!("{text:<9}")
    }
}

/// A date or timestamp in a PostgreSQL date template.
fn datetime_text(t: &NaiveDateTime, template: &str) -> String {
    let mut out = String::new();
    let num = |v: i64, width: usize, fill: bool| {
        if fill {
            v.to_string()
        } else {
            format!("{v:0width$}")
        }
    };
    let hour12 = match t.hour() % 12 {
        0 => 12,
        h => h,
    };
    for part in date_template(template) {
        let (name, written, fill) = match part {
            DatePart::Text(s) => {
                out.push_str(&s);
                continue;
            }
            DatePart::Field {
                name,
                written,
                fill,
            } => (name, written, fill),
        };
        let year = t.year() as i64;
        let text = match name {
            "YYYY" => num(year, 4, fill),
            "IYYY" => num(t.iso_week().year() as i64, 4, fill),
            "YYY" => num(year % 1000, 3, fill),
            "YY" => num(year % 100, 2, fill),
            "Y" => num(year % 10, 1, fill),
            "CC" => num((year - 1) / 100 + 1, 2, fill),
            "MM" => num(t.month() as i64, 2, fill),
            "DD" => num(t.day() as i64, 2, fill),
            "DDD" => num(t.ordinal() as i64, 3, fill),
            "D" => num(t.weekday().num_days_from_sunday() as i64 + 1, 1, fill),
            "Q" => num((t.month() as i64 - 1) / 3 + 1, 1, fill),
            "WW" => num((t.ordinal() as i64 - 1) / 7 + 1, 2, fill),
            "IW" => num(t.iso_week().week() as i64, 2, fill),
            "HH24" => num(t.hour() as i64, 2, fill),
            "HH12" | "HH" => num(hour12 as i64, 2, fill),
            "MI" => num(t.minute() as i64, 2, fill),
            "SS" => num(t.second() as i64, 2, fill),
            "MS" => num((t.nanosecond() / 1_000_000) as i64, 3, fill),
            "US" => num((t.nanosecond() / 1_000) as i64, 6, fill),
            "AM" | "PM" | "A.M." | "P.M." => {
                let pm = t.hour() >= 12;
                let dotted = name.contains('.');
                let text = match (pm, dotted) {
                    (false, false) => "AM",
                    (true, false) => "PM",
                    (false, true) => "A.M.",
                    (true, true) => "P.M.",
                };
                if written.starts_with(|c: char| c.is_ascii_lowercase()) {
                    text.to_ascii_lowercase()
                } else {
                    text.to_string()
                }
            }
            "MONTH" => name_text(MONTHS[t.month0() as usize], &written, fill, false),
            "MON" => name_text(MONTHS[t.month0() as usize], &written, fill, true),
            "DAY" => name_text(
                DAYS[t.weekday().num_days_from_sunday() as usize],
                &written,
                fill,
                false,
            ),
            "DY" => name_text(
                DAYS[t.weekday().num_days_from_sunday() as usize],
                &written,
                fill,
                true,
            ),
            _ => String::new(),
        };
        out.push_str(&text);
    }
    out
}

/// Text read with a PostgreSQL date template, as `to_date` and
/// `to_timestamp` read it: spaces before a field are skipped, a field reads
/// its digits (a year as many as are given, unless the next field follows
/// with no separator), a separator in the template passes one character.
fn parse(text: &str, template: &str) -> Result<NaiveDateTime> {
    let bad = || {
        exec_datafusion_err!(
            "invalid value for the template of to_date/to_timestamp (the text does not match it)"
        )
    };
    let parts = date_template(template);
    let input: Vec<char> = text.chars().collect();
    let mut at = 0;
    let (mut year, mut month, mut day) = (None::<i64>, 1u32, 1u32);
    let (mut hour, mut minute, mut second, mut micros) = (0u32, 0u32, 0u32, 0u32);
    let mut pm = None::<bool>;
    let mut ordinal = None::<u32>;
    for (k, part) in parts.iter().enumerate() {
        let name = match part {
            DatePart::Text(s) => {
                for c in s.chars() {
                    if c == ' ' {
                        while at < input.len() && input[at] == ' ' {
                            at += 1;
                        }
                    } else if at < input.len()
                        && (!input[at].is_ascii_alphanumeric() || input[at] == c)
                    {
                        // A separator passes any separator, or the same letter.
                        at += 1;
                    }
                }
                continue;
            }
            DatePart::Field { name, .. } => *name,
        };
        while at < input.len() && input[at] == ' ' {
            at += 1;
        }
        // The next part is another field: this one reads its fixed width.
        let packed = matches!(parts.get(k + 1), Some(DatePart::Field { .. }));
        let mut digits = |width: usize, greedy: bool| -> Result<i64> {
            let start = at;
            let negative = at < input.len() && input[at] == '-' && greedy;
            if negative {
                at += 1;
            }
            let digits_from = at;
            while at < input.len()
                && input[at].is_ascii_digit()
                && (at - digits_from < width || (greedy && !packed))
            {
                at += 1;
            }
            if at == digits_from {
                at = start;
                return Err(bad());
            }
            let v: String = input[digits_from..at].iter().collect();
            let v: i64 = v.parse().map_err(|_| bad())?;
            Ok(if negative { -v } else { v })
        };
        match name {
            "YYYY" | "IYYY" => year = Some(digits(4, true)?),
            "YYY" => year = Some(2000 + digits(3, false)?),
            "YY" => {
                let y = digits(2, false)?;
                year = Some(if y < 70 { 2000 + y } else { 1900 + y });
            }
            "Y" => year = Some(2000 + digits(1, false)?),
            "MM" => month = digits(2, false)? as u32,
            "DD" => day = digits(2, false)? as u32,
            "DDD" => ordinal = Some(digits(3, false)? as u32),
            "HH24" => hour = digits(2, false)? as u32,
            "HH12" | "HH" => hour = digits(2, false)? as u32,
            "MI" => minute = digits(2, false)? as u32,
            "SS" => second = digits(2, false)? as u32,
            "MS" => micros = digits(3, false)? as u32 * 1000,
            "US" => micros = digits(6, false)? as u32,
            "AM" | "PM" | "A.M." | "P.M." => {
                let rest: String = input[at..]
                    .iter()
                    .take(4)
                    .collect::<String>()
                    .to_ascii_uppercase();
                let (is_pm, len) = if rest.starts_with("P.M.") {
                    (true, 4)
                } else if rest.starts_with("A.M.") {
                    (false, 4)
                } else if rest.starts_with("PM") {
                    (true, 2)
                } else if rest.starts_with("AM") {
                    (false, 2)
                } else {
                    return Err(bad());
                };
                pm = Some(is_pm);
                at += len;
            }
            "MONTH" | "MON" => {
                let rest: String = input[at..].iter().collect::<String>().to_ascii_lowercase();
                let (m, len) = MONTHS
                    .iter()
                    .enumerate()
                    .find_map(|(i, full)| {
                        let full = full.to_ascii_lowercase();
                        if name == "MONTH" && rest.starts_with(&full) {
                            Some((i, full.len()))
                        } else if rest.starts_with(&full[..3]) {
                            Some((i, 3))
                        } else {
                            None
                        }
                    })
                    .ok_or_else(bad)?;
                month = m as u32 + 1;
                at += len;
            }
            "DAY" | "DY" => {
                let rest: String = input[at..].iter().collect::<String>().to_ascii_lowercase();
                let len = DAYS
                    .iter()
                    .find_map(|full| {
                        let full = full.to_ascii_lowercase();
                        if name == "DAY" && rest.starts_with(&full) {
                            Some(full.len())
                        } else if rest.starts_with(&full[..3]) {
                            Some(3)
                        } else {
                            None
                        }
                    })
                    .ok_or_else(bad)?;
                at += len;
            }
            _ => {
                digits(2, false)?;
            }
        }
    }
    if let Some(is_pm) = pm {
        if !(1..=12).contains(&hour) {
            return Err(bad());
        }
        hour = hour % 12 + if is_pm { 12 } else { 0 };
    }
    let year = year.unwrap_or(1);
    // PostgreSQL has no year 0: `-1` is 1 BC, chrono's year 0.
    let year = match year {
        0 => return Err(bad()),
        y if y < 0 => y + 1,
        y => y,
    };
    let year = i32::try_from(year).map_err(|_| bad())?;
    let date = match ordinal {
        Some(o) => NaiveDate::from_yo_opt(year, o),
        None => NaiveDate::from_ymd_opt(year, month, day),
    }
    .ok_or_else(|| {
        exec_datafusion_err!("date/time field value out of range in to_date/to_timestamp")
    })?;
    date.and_hms_micro_opt(hour, minute, second, micros)
        .ok_or_else(|| {
            exec_datafusion_err!("date/time field value out of range in to_date/to_timestamp")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(v: i128, scale: i8, t: &str) -> String {
        number_text(Digits::decimal(v, scale), t, false)
    }

    /// Expected texts are PostgreSQL 15's for the same calls.
    #[test]
    fn numbers_as_postgresql_formats_them() {
        assert_eq!(num(9999, 0, "0000"), " 9999");
        assert_eq!(num(1, 0, "00"), " 01");
        assert_eq!(num(-1, 0, "00"), "-01");
        assert_eq!(num(5, 1, "9.99"), "  .50");
        assert_eq!(num(5, 1, "0.99"), " 0.50");
        assert_eq!(num(123456, 3, "999.99"), " 123.46");
        assert_eq!(num(12345, 0, "99"), " ##");
        assert_eq!(num(1, 0, "FM00"), "01");
        assert_eq!(num(-12, 0, "9999"), "  -12");
        assert_eq!(num(1234567, 0, "9,999,999"), " 1,234,567");
        assert_eq!(num(12, 0, "9,999"), "    12");
        assert_eq!(num(15, 1, "FM9.99"), "1.5");
        assert_eq!(num(3, 0, "FM9.00"), "3.00");
        assert_eq!(num(-35, 1, "S9.9"), "-3.5");
        assert_eq!(num(35, 1, "9.9MI"), "3.5 ");
        assert_eq!(num(-25, 1, "9"), "-3");
        assert_eq!(num(0, 0, "9"), " 0");
        assert_eq!(num(0, 0, "FM9"), "0");
        assert_eq!(float_number_text(2.5, "9"), " 2");
        assert_eq!(num(0, 0, "9.99"), "  .00");
        assert_eq!(num(0, 0, "99"), "  0");
        assert_eq!(num(12345, 0, "99.9"), " ##.#");
        assert_eq!(num(5, 1, "FM9.99"), ".5");
    }

    fn at(y: i32, m: u32, d: u32, h: u32, mi: u32, s: u32, us: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|d| d.and_hms_micro_opt(h, mi, s, us))
            .expect("a valid instant")
    }

    #[test]
    fn dates_as_postgresql_formats_and_reads_them() {
        let d = at(2011, 3, 5, 0, 0, 0, 0);
        assert_eq!(datetime_text(&d, "YYYYMMDD"), "20110305");
        assert_eq!(datetime_text(&d, "YYYY-MM-DD"), "2011-03-05");
        assert_eq!(datetime_text(&d, "Month DD, YYYY"), "March     05, 2011");
        assert_eq!(datetime_text(&d, "FMMonth FMDD"), "March 5");
        assert_eq!(
            datetime_text(&d, "Mon MON mon Dy DAY D DDD Q WW IW YY"),
            "Mar MAR mar Sat SATURDAY  7 064 1 10 09 11"
        );
        assert_eq!(datetime_text(&d, "\"Year\" YYYY"), "Year 2011");
        let t = at(2011, 3, 5, 14, 7, 9, 123456);
        assert_eq!(
            datetime_text(&t, "HH24:MI:SS.MS US HH12 AM pm"),
            "14:07:09.123 123456 02 PM pm"
        );
        let day = |s: &str, t: &str| parse(s, t).expect("parsed").date();
        assert_eq!(day(" 9999- 01- 01", "YYYY-MM-DD").to_string(), "9999-01-01");
        assert_eq!(day("00010101", "yyyymmdd").to_string(), "0001-01-01");
        assert_eq!(day("20110305", "yyyymmdd").to_string(), "2011-03-05");
        assert_eq!(day("5 Mar 2011", "DD Mon YYYY").to_string(), "2011-03-05");
        assert_eq!(
            parse("2011-03-05 14:07:09", "YYYY-MM-DD HH24:MI:SS")
                .expect("parsed")
                .to_string(),
            "2011-03-05 14:07:09"
        );
        assert!(parse("2011-02-30", "YYYY-MM-DD").is_err());
        assert!(parse("x", "YYYY").is_err());
    }
}
