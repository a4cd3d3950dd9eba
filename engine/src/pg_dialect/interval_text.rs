//! Intervals as PostgreSQL writes them with its default `IntervalStyle`
//! (`postgres`): years, months and days in words, then the time of day as
//! `hh:mm:ss` with the fraction of a second it has (`1 year 2 mons`,
//! `-1 days +02:00:00`, `00:00:01.5`, `00:00:00`).

use std::fmt::Write;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{
    DataType, IntervalDayTimeType, IntervalMonthDayNanoType, IntervalUnit, IntervalYearMonthType,
    TimeUnit,
};

const USECS_PER_HOUR: i64 = 3_600_000_000;
const USECS_PER_MINUTE: i64 = 60_000_000;
const USECS_PER_SEC: i64 = 1_000_000;
const USECS_PER_DAY: i64 = 24 * USECS_PER_HOUR;

/// An interval of `months`, `days` and `micros` (microseconds) as
/// PostgreSQL's `interval_out` writes it.
pub fn interval(months: i32, days: i32, micros: i64) -> String {
    let mut out = String::new();
    // Nothing written yet; the last part written was negative.
    let (mut empty, mut after_negative) = (true, false);
    for (value, unit) in [(months / 12, "year"), (months % 12, "mon"), (days, "day")] {
        if value == 0 {
            continue;
        }
        let _ = write!(
            out,
            "{}{}{value} {unit}{}",
            if empty { "" } else { " " },
            if after_negative && value > 0 { "+" } else { "" },
            if value == 1 { "" } else { "s" },
        );
        after_negative = value < 0;
        empty = false;
    }
    if empty || micros != 0 {
        let hours = micros / USECS_PER_HOUR;
        let minutes = micros % USECS_PER_HOUR / USECS_PER_MINUTE;
        let seconds = micros % USECS_PER_MINUTE / USECS_PER_SEC;
        let fraction = micros % USECS_PER_SEC;
        let sign = if micros < 0 {
            "-"
        } else if after_negative {
            "+"
        } else {
            ""
        };
        let _ = write!(
            out,
            "{}{sign}{:02}:{:02}:{:02}",
            if empty { "" } else { " " },
            hours.unsigned_abs(),
            minutes.unsigned_abs(),
            seconds.unsigned_abs(),
        );
        if fraction != 0 {
            let digits = format!("{:06}", fraction.unsigned_abs());
            out.push('.');
            out.push_str(digits.trim_end_matches('0'));
        }
    }
    out
}

/// The (months, days, microseconds) of row `row` of an interval or
/// duration column; `None` for other columns. Nanoseconds are cut to microseconds, as
/// PostgreSQL keeps them.
pub fn parts(column: &dyn Array, row: usize) -> Option<(i32, i32, i64)> {
    Some(match column.data_type() {
        DataType::Interval(IntervalUnit::YearMonth) => (
            column.as_primitive::<IntervalYearMonthType>().value(row),
            0,
            0,
        ),
        DataType::Interval(IntervalUnit::DayTime) => {
            let v = column.as_primitive::<IntervalDayTimeType>().value(row);
            (0, v.days, v.milliseconds as i64 * 1000)
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = column.as_primitive::<IntervalMonthDayNanoType>().value(row);
            (v.months, v.days, v.nanoseconds / 1000)
        }
        // A difference of timestamps: whole days, then the time (PostgreSQL's
        // `timestamp - timestamp`, justified to days).
        DataType::Duration(unit) => {
            let v = duration_value(column, row)?;
            let micros = match unit {
                TimeUnit::Second => v.saturating_mul(USECS_PER_SEC),
                TimeUnit::Millisecond => v.saturating_mul(1000),
                TimeUnit::Microsecond => v,
                TimeUnit::Nanosecond => v / 1000,
            };
            (0, (micros / USECS_PER_DAY) as i32, micros % USECS_PER_DAY)
        }
        _ => return None,
    })
}

/// The raw value of a duration column.
fn duration_value(column: &dyn Array, row: usize) -> Option<i64> {
    use datafusion::arrow::datatypes::{
        DurationMicrosecondType, DurationMillisecondType, DurationNanosecondType,
        DurationSecondType,
    };
    Some(match column.data_type() {
        DataType::Duration(TimeUnit::Second) => {
            column.as_primitive::<DurationSecondType>().value(row)
        }
        DataType::Duration(TimeUnit::Millisecond) => {
            column.as_primitive::<DurationMillisecondType>().value(row)
        }
        DataType::Duration(TimeUnit::Microsecond) => {
            column.as_primitive::<DurationMicrosecondType>().value(row)
        }
        DataType::Duration(TimeUnit::Nanosecond) => {
            column.as_primitive::<DurationNanosecondType>().value(row)
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL 15's `SELECT INTERVAL '...'` output, by psql.
    #[test]
    fn as_postgresql_writes_them() {
        let h = USECS_PER_HOUR;
        for (months, days, micros, postgres) in [
            (0, 0, 0, "00:00:00"),
            (0, 1, 0, "1 day"),
            (0, 2, 0, "2 days"),
            (0, -1, 0, "-1 days"),
            (12, 0, 0, "1 year"),
            (14, 3, 0, "1 year 2 mons 3 days"),
            (-14, 0, 0, "-1 years -2 mons"),
            (0, 1, 12 * h, "1 day 12:00:00"),
            (0, -1, 2 * h, "-1 days +02:00:00"),
            (0, 1, -2 * h, "1 day -02:00:00"),
            (0, 0, 1_500_000, "00:00:01.5"),
            (0, 0, -90 * USECS_PER_MINUTE, "-01:30:00"),
            (0, 0, 100 * h + 5, "100:00:00.000005"),
            (1, -1, 0, "1 mon -1 days"),
            (-1, 1, 0, "-1 mons +1 day"),
        ] {
            assert_eq!(
                interval(months, days, micros),
                postgres,
                "{months} {days} {micros}"
            );
        }
    }
}

/// An interval constant in the forms PostgreSQL writes and reads with a
/// time of day (`1 day 02:00:00`, `-1 days +02:00:00`, `3 days 04:05:06.5`,
/// `02:30`) or with parts of their own signs (`-1 day +2 hours`, `1 day -30
/// minutes`), as (months, days, microseconds); `None` for other text or
/// text that is not such an interval (DataFusion reads the rest: `30 days`,
/// `1 year 2 months`).
pub fn parse_with_time(text: &str) -> Option<(i32, i32, i64)> {
    let signed_part = text
        .split_whitespace()
        .enumerate()
        .any(|(i, w)| w.starts_with('+') || (i > 0 && w.starts_with('-')));
    if !text.contains(':') && !signed_part {
        return None;
    }
    let (mut months, mut days, mut micros) = (0i64, 0i64, 0i64);
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut i = 0;
    let mut seen_time = false;
    while i < words.len() {
        let word = words[i];
        if word.contains(':') {
            if seen_time {
                return None;
            }
            seen_time = true;
            micros = micros.checked_add(time_of_day(word)?)?;
            i += 1;
            continue;
        }
        let n: i64 = word.strip_prefix('+').unwrap_or(word).parse().ok()?;
        let unit = words.get(i + 1)?.to_ascii_lowercase();
        match unit.strip_suffix('s').unwrap_or(&unit) {
            "year" | "yr" => months = months.checked_add(n.checked_mul(12)?)?,
            "mon" | "month" => months = months.checked_add(n)?,
            "week" => days = days.checked_add(n.checked_mul(7)?)?,
            "day" => days = days.checked_add(n)?,
            "hour" | "hr" => micros = micros.checked_add(n.checked_mul(USECS_PER_HOUR)?)?,
            "min" | "minute" => micros = micros.checked_add(n.checked_mul(60 * USECS_PER_SEC)?)?,
            "sec" | "second" => micros = micros.checked_add(n.checked_mul(USECS_PER_SEC)?)?,
            _ => return None,
        }
        i += 2;
    }
    Some((
        i32::try_from(months).ok()?,
        i32::try_from(days).ok()?,
        micros,
    ))
}

/// `[+-]hh:mm[:ss[.ffffff]]` in microseconds.
fn time_of_day(word: &str) -> Option<i64> {
    let (sign, rest) = match word.as_bytes().first()? {
        b'-' => (-1, &word[1..]),
        b'+' => (1, &word[1..]),
        _ => (1, word),
    };
    let mut parts = rest.split(':');
    let hours: i64 = parts.next()?.parse().ok()?;
    let minutes: i64 = parts.next()?.parse().ok()?;
    let seconds = parts.next().unwrap_or("0");
    if parts.next().is_some() || !(0..60).contains(&minutes) {
        return None;
    }
    let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
    let whole: i64 = whole.parse().ok()?;
    if !(0..60).contains(&whole)
        || fraction.len() > 6
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let fraction: i64 = format!("{fraction:0<6}").parse().ok()?;
    let total = hours
        .checked_mul(USECS_PER_HOUR)?
        .checked_add(minutes * 60 * USECS_PER_SEC + whole * USECS_PER_SEC + fraction)?;
    Some(sign * total)
}

#[cfg(test)]
mod input_tests {
    use super::*;

    /// What PostgreSQL writes reads back as the same interval (round trip
    /// through `interval`), and the forms without a time are left alone.
    #[test]
    fn reads_back_what_postgresql_writes() {
        let h = USECS_PER_HOUR;
        for (months, days, micros) in [
            (0, 1, 2 * h),
            (0, -1, 2 * h),
            (0, 1, -2 * h),
            (14, 3, 4 * h + 5 * 60 * USECS_PER_SEC + 6_500_000),
            (0, 0, 0),
            (0, 0, -90 * 60 * USECS_PER_SEC),
            (-14, 0, 100 * h + 5),
            (0, 25683, h + 30 * 60 * USECS_PER_SEC),
        ] {
            let text = interval(months, days, micros);
            assert_eq!(
                parse_with_time(&text),
                if text.contains(':') {
                    Some((months, days, micros))
                } else {
                    None
                },
                "{text}"
            );
        }
        assert_eq!(
            parse_with_time("02:30"),
            Some((0, 0, 150 * 60 * USECS_PER_SEC))
        );
        assert_eq!(parse_with_time("1 day 12 hours"), None);
        // Parts with signs of their own, as PostgreSQL 15.18 reads them
        // (`-1 days +02:00:00`, `1 day -00:30:00`, `3 days -01:00:00`,
        // `-2 days -03:00:00`, `-1 years -2 mons`).
        for (text, want) in [
            ("-1 day +2 hours", (0, -1, 2 * h)),
            ("1 day -30 minutes", (0, 1, -30 * 60 * USECS_PER_SEC)),
            ("+3 days -1 hour", (0, 3, -h)),
            ("-2 days -3 hours", (0, -2, -3 * h)),
            ("-1 years -2 mons", (-14, 0, 0)),
        ] {
            assert_eq!(parse_with_time(text), Some(want), "{text}");
        }
        assert_eq!(parse_with_time("-1 day"), None);
        assert_eq!(parse_with_time("1.5 days -1 hour"), None);
        assert_eq!(parse_with_time("1 fortnight 02:00"), None);
        assert_eq!(parse_with_time("1 day 02:61:00"), None);
        assert_eq!(parse_with_time("1 day 02:00 03:00"), None);
    }
}
