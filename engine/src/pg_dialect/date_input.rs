//! Date literals as PostgreSQL reads them (`DateStyle` ISO, MDY):
//! `DATE '01-jan-2011'`, `CAST('Jan 5 2011' AS DATE)`, `'20110105'::date`,
//! `'01/05/2011'::date`. Arrow reads only ISO dates, so the statement's
//! date constants are rewritten to ISO before planning (see `rewrite`);
//! strings the planner casts to a date (`start_date <= '01-jan-2011'`) are
//! read by [`DateCasts`].

use chrono::{Datelike, NaiveDate};
use datafusion::arrow::datatypes::DataType as ArrowType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::optimizer::AnalyzerRule;

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

fn month(word: &str) -> Option<u32> {
    let w = word.to_ascii_lowercase();
    if w.len() < 3 {
        return None;
    }
    let full = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    (0..12)
        .find(|&i| w == MONTHS[i] || w == full[i] || (w == "sept" && i == 8))
        .map(|i| i as u32 + 1)
}

/// A year as PostgreSQL reads it: two digits are 1970–2069.
fn year(digits: &str) -> Option<i32> {
    let y: i32 = digits.parse().ok()?;
    Some(match digits.len() {
        1 | 2 if y < 70 => 2000 + y,
        1 | 2 => 1900 + y,
        _ => y,
    })
}

/// Parses a date as PostgreSQL does with `DateStyle = ISO, MDY`; `None` when
/// it is not one.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    let text = text.trim();
    let tokens: Vec<&str> = text
        .split(['-', '/', ' ', ',', '.'])
        .filter(|t| !t.is_empty())
        .collect();
    let number = |t: &str| t.chars().all(|c| c.is_ascii_digit());
    let (y, m, d) = match tokens.as_slice() {
        [t] if number(t) && t.len() == 8 => (year(&t[..4])?, t[4..6].parse().ok()?, &t[6..]),
        [t] if number(t) && t.len() == 6 => (year(&t[..2])?, t[2..4].parse().ok()?, &t[4..]),
        [a, b, c] if number(a) && number(b) && number(c) => {
            if a.len() >= 3 {
                (year(a)?, b.parse().ok()?, *c)
            } else {
                (year(c)?, a.parse().ok()?, *b)
            }
        }
        // Mon DD YYYY
        [a, b, c] if !number(a) && number(b) && number(c) => (year(c)?, month(a)?, *b),
        // DD Mon YYYY, or YYYY Mon DD
        [a, b, c] if number(a) && !number(b) && number(c) => {
            if a.len() >= 3 {
                (year(a)?, month(b)?, *c)
            } else {
                (year(c)?, month(b)?, *a)
            }
        }
        _ => return None,
    };
    let date = NaiveDate::from_ymd_opt(y, m, d.parse().ok()?)?;
    (date.year() != 0).then_some(date)
}

/// The ISO form of a date string PostgreSQL reads and Arrow does not
/// (`None` for ISO dates, which Arrow reads itself, and for non-dates).
pub fn to_iso(text: &str) -> Option<String> {
    if text
        .trim()
        .get(..10)
        .is_some_and(|d| d.parse::<NaiveDate>().is_ok())
    {
        return None;
    }
    parse_date(text).map(|d| d.format("%Y-%m-%d").to_string())
}

/// Date strings that become dates through a cast the planner added, as in
/// `observation_period_start_date <= '01-jan-2011'`, read as PostgreSQL
/// reads them. Runs after type coercion, so only strings the plan compares
/// with or assigns to a date are touched; a string compared with text stays
/// text.
#[derive(Debug, Default)]
pub struct DateCasts;

impl AnalyzerRule for DateCasts {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|p| {
            let names = NamePreserver::new(&p);
            p.map_expressions(|e| {
                let name = names.save(&e);
                Ok(e.transform_up(date_cast)?.update_data(|e| name.restore(e)))
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "pg_date_casts"
    }
}

fn date_cast(e: Expr) -> Result<Transformed<Expr>> {
    let (inner, to) = match &e {
        Expr::Cast(c) => (c.expr.as_ref(), c.field.data_type()),
        Expr::TryCast(c) => (c.expr.as_ref(), c.field.data_type()),
        _ => return Ok(Transformed::no(e)),
    };
    let timestamp = matches!(to, ArrowType::Timestamp(..));
    if *to != ArrowType::Date32 && !timestamp {
        return Ok(Transformed::no(e));
    }
    let text = match inner {
        Expr::Literal(
            ScalarValue::Utf8(Some(t))
            | ScalarValue::LargeUtf8(Some(t))
            | ScalarValue::Utf8View(Some(t)),
            _,
        ) => t,
        _ => return Ok(Transformed::no(e)),
    };
    if timestamp {
        // `2010-01-01 10:00`: PostgreSQL's seconds are optional.
        let Some(with_seconds) = with_seconds(text) else {
            return Ok(Transformed::no(e));
        };
        let literal = Expr::Literal(ScalarValue::Utf8(Some(with_seconds)), None);
        return Ok(Transformed::yes(match e {
            Expr::Cast(c) => Expr::Cast(datafusion::logical_expr::Cast {
                expr: Box::new(literal),
                field: c.field,
            }),
            Expr::TryCast(c) => Expr::TryCast(datafusion::logical_expr::TryCast {
                expr: Box::new(literal),
                field: c.field,
            }),
            other => other,
        }));
    }
    let Some(date) = to_iso(text.as_str()).and_then(|iso| iso.parse::<NaiveDate>().ok()) else {
        return Ok(Transformed::no(e));
    };
    let days = (date - NaiveDate::default()).num_days() as i32;
    Ok(Transformed::yes(Expr::Literal(
        ScalarValue::Date32(Some(days)),
        None,
    )))
}

/// An ISO date and time given to the minute (`2010-01-01 10:00`), with
/// `:00` seconds added.
fn with_seconds(text: &str) -> Option<String> {
    let t = text.trim();
    let (date, time) = t.split_once([' ', 'T'])?;
    let (h, m) = time.split_once(':')?;
    let digits = |s: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    (date.parse::<NaiveDate>().is_ok() && digits(h, 1..=2) && digits(m, 2..=2))
        .then(|| format!("{date} {h:0>2}:{m}:00"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_to_the_minute() {
        assert_eq!(
            with_seconds("2010-01-01 10:00").as_deref(),
            Some("2010-01-01 10:00:00")
        );
        assert_eq!(
            with_seconds("2010-01-01T9:05").as_deref(),
            Some("2010-01-01 09:05:00")
        );
        assert_eq!(with_seconds("2010-01-01 10:00:00"), None);
        assert_eq!(with_seconds("2010-01-01"), None);
    }

    fn ymd(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(y, m, d)
    }

    #[test]
    fn reads_the_forms_postgres_reads() {
        assert_eq!(parse_date("01-jan-2011"), ymd(2011, 1, 1));
        assert_eq!(parse_date("Jan 5 2011"), ymd(2011, 1, 5));
        assert_eq!(parse_date("January 5, 2011"), ymd(2011, 1, 5));
        assert_eq!(parse_date("20110203"), ymd(2011, 2, 3));
        assert_eq!(parse_date("02/03/2011"), ymd(2011, 2, 3));
        assert_eq!(parse_date("2011/02/03"), ymd(2011, 2, 3));
        assert_eq!(parse_date("2011-feb-03"), ymd(2011, 2, 3));
        assert_eq!(parse_date("31-feb-2011"), None);
        assert_eq!(parse_date("yesterday"), None);
    }
}
