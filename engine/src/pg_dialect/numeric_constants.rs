//! Numeric constants as PostgreSQL reads them.
//!
//! PostgreSQL reads a constant with a point or an exponent (`0.1`, `1e3`,
//! `2.5E-4`) as a `numeric`, exactly: `0.1 + 0.2` is `0.3`. DataFusion reads
//! it as a `decimal` when `parse_float_as_decimal` is set (the session sets
//! it), but keeps an exponent as a negative scale (`1e15` becomes a
//! one-digit decimal scaled by 10¹⁵), which Arrow's casts handle poorly, and
//! cannot hold more than 38 digits. Before planning, constants with an
//! exponent are written out in plain digits (`1e3` as a `numeric(4, 0)`,
//! `2.5E-4` as `0.00025`), and a constant that does not fit 38 digits is
//! read as `double precision`, the nearest type that holds it.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, Value, VisitorMut};

/// Digits a `decimal` constant may hold (Arrow's `Decimal128`).
const MAX_DIGITS: usize = 38;

/// How a numeric constant is planned.
#[derive(Debug, PartialEq)]
enum Constant {
    /// As written, or in these plain digits: DataFusion reads it exactly.
    Digits(String),
    /// A whole number written with an exponent, as `numeric(p, 0)`.
    Whole(String, usize),
    /// Too many digits for a `decimal`: as `double precision`.
    Float,
}

/// How the unsigned constant `text` (digits, an optional point and
/// exponent, `_` separators) is planned; `None` to leave it as it is.
fn read(text: &str) -> Option<Constant> {
    let text: String = text.chars().filter(|c| *c != '_').collect();
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], Some(text[at + 1..].parse::<i64>().ok()?)),
        None => (text.as_str(), None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if !(whole.bytes().all(|b| b.is_ascii_digit()) && fraction.bytes().all(|b| b.is_ascii_digit()))
        || whole.is_empty() && fraction.is_empty()
    {
        return None;
    }
    if exponent.is_none() && fraction.is_empty() && !mantissa.contains('.') {
        // An integer: DataFusion's own reading (bigint, or decimal if larger).
        return None;
    }
    let digits = format!("{whole}{fraction}");
    let significant = digits.trim_start_matches('0');
    // The constant is `significant × 10^-scale`.
    let scale = fraction.len() as i64 - exponent.unwrap_or(0);
    if scale <= 0 {
        if significant.is_empty() {
            return Some(Constant::Whole("0".into(), 1));
        }
        let zeros = usize::try_from(-scale).ok()?;
        if significant.len() + zeros > MAX_DIGITS {
            return Some(Constant::Float);
        }
        let value = format!("{significant}{}", "0".repeat(zeros));
        // `10.` and `1e2` alike: PostgreSQL gives them scale 0.
        let precision = value.len();
        return Some(Constant::Whole(value, precision));
    }
    let scale = scale as usize;
    if significant.len().max(scale) > MAX_DIGITS {
        return Some(Constant::Float);
    }
    // DataFusion reads plain digits exactly (and drops `_` itself).
    exponent?;
    let padded = format!(
        "{}{significant}",
        "0".repeat(scale.saturating_sub(significant.len()))
    );
    let (int, frac) = padded.split_at(padded.len() - scale);
    let int = if int.is_empty() { "0" } else { int };
    Some(Constant::Digits(format!("{int}.{frac}")))
}

/// The expression a constant is planned as, if not as written.
fn replacement(text: &str) -> Option<Expr> {
    let sql = match read(text)? {
        Constant::Digits(d) => d,
        Constant::Whole(v, p) => format!("CAST({v} AS NUMERIC({p}, 0))"),
        Constant::Float => format!("CAST('{text}' AS DOUBLE PRECISION)"),
    };
    super::lateral::parse_expr(&sql)
}

/// Rewrites numeric constants (see the module's documentation).
pub(crate) struct NumericConstants;

impl VisitorMut for NumericConstants {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Value(v) = expr
            && let Value::Number(text, _) = &v.value
            && let Some(e) = replacement(text)
        {
            *expr = e;
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digits(s: &str) -> Constant {
        Constant::Digits(s.into())
    }

    #[test]
    fn exponents_are_written_in_plain_digits() {
        assert_eq!(read("2.5E-4"), Some(digits("0.00025")));
        assert_eq!(read("1e-3"), Some(digits("0.001")));
        assert_eq!(read("12.5e-1"), Some(digits("1.25")));
        assert_eq!(read("1.25e1"), Some(digits("12.5")));
        assert_eq!(
            read("1e15"),
            Some(Constant::Whole("1000000000000000".into(), 16))
        );
        assert_eq!(read("1.5e2"), Some(Constant::Whole("150".into(), 3)));
        assert_eq!(read("0e5"), Some(Constant::Whole("0".into(), 1)));
        assert_eq!(read("10."), Some(Constant::Whole("10".into(), 2)));
    }

    #[test]
    fn plain_constants_stay_as_written() {
        assert_eq!(read("0.1"), None);
        assert_eq!(read("123"), None);
        assert_eq!(read(".5"), None);
        assert_eq!(read("1_000.5"), None);
        assert_eq!(read("1_000e-1"), Some(digits("100.0")));
    }

    #[test]
    fn constants_beyond_38_digits_are_floats() {
        assert_eq!(read("1e-200"), Some(Constant::Float));
        assert_eq!(read("1e300"), Some(Constant::Float));
        assert_eq!(
            read(&format!("0.{}", "1".repeat(39))),
            Some(Constant::Float)
        );
        assert_eq!(read(&format!("0.{}", "1".repeat(38))), None);
        assert_eq!(
            read("1e37"),
            Some(Constant::Whole(format!("1{}", "0".repeat(37)), 38))
        );
    }

    #[test]
    fn replacements_parse() {
        assert!(replacement("1e-200").is_some());
        assert!(replacement("1e3").is_some());
        assert!(replacement("0.1").is_none());
    }
}
