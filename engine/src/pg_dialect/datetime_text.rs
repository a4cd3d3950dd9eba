//! Timestamps and times as PostgreSQL writes them in text (`DateStyle`
//! ISO): fractional seconds only when there are any, without trailing
//! zeros (`2011-01-05 00:00:00`, `05:35:38.8`), years before 1 as `BC`, and
//! a `timestamptz` in UTC with its offset as `+00`.

use chrono::{Datelike, NaiveDateTime, NaiveTime, Timelike};

/// A `timestamp` (`with_zone`: a `timestamptz` shown in UTC).
pub fn timestamp(t: &NaiveDateTime, with_zone: bool) -> String {
    let year = t.year();
    let (shown_year, bc) = if year <= 0 {
        (1 - year, true)
    } else {
        (year, false)
    };
    let mut out = format!("{shown_year:04}-{:02}-{:02} ", t.month(), t.day());
    push_time(&mut out, &t.time());
    if with_zone {
        out.push_str("+00");
    }
    if bc {
        out.push_str(" BC");
    }
    out
}

/// A `time` of day.
pub fn time(t: &NaiveTime) -> String {
    let mut out = String::with_capacity(15);
    push_time(&mut out, t);
    out
}

fn push_time(out: &mut String, t: &NaiveTime) {
    use std::fmt::Write;
    let _ = write!(out, "{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second());
    // A leap second is shown as second 60 by chrono's nanoseconds past 1e9.
    let micros = (t.nanosecond() % 1_000_000_000) / 1_000;
    if micros > 0 {
        let digits = format!("{micros:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(y: i32, m: u32, d: u32, h: u32, mi: u32, s: u32, us: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|d| d.and_hms_micro_opt(h, mi, s, us))
            .expect("a valid instant")
    }

    /// Expected texts are what PostgreSQL 15 prints for the same values
    /// (`SELECT TIMESTAMP '...'`, `'...'::time`, `TIMESTAMPTZ '...'` with
    /// `TimeZone` UTC).
    #[test]
    fn written_as_postgresql_writes_them() {
        assert_eq!(
            timestamp(&at(1936, 10, 15, 0, 0, 0, 0), false),
            "1936-10-15 00:00:00"
        );
        assert_eq!(
            timestamp(&at(1984, 9, 15, 5, 35, 38, 828369), false),
            "1984-09-15 05:35:38.828369"
        );
        assert_eq!(
            timestamp(&at(2011, 1, 5, 12, 0, 0, 500000), false),
            "2011-01-05 12:00:00.5"
        );
        assert_eq!(
            timestamp(&at(2011, 1, 5, 12, 0, 0, 10), false),
            "2011-01-05 12:00:00.00001"
        );
        assert_eq!(
            timestamp(&at(2020, 2, 29, 23, 59, 59, 0), true),
            "2020-02-29 23:59:59+00"
        );
        assert_eq!(
            timestamp(&at(0, 1, 1, 0, 0, 0, 0), false),
            "0001-01-01 00:00:00 BC"
        );
        assert_eq!(
            time(&NaiveTime::from_hms_micro_opt(5, 35, 38, 800000).expect("a time")),
            "05:35:38.8"
        );
        assert_eq!(
            time(&NaiveTime::from_hms_opt(0, 0, 0).expect("a time")),
            "00:00:00"
        );
    }
}
