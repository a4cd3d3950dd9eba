//! Floating-point numbers as PostgreSQL 15 writes them in text (`float8out`,
//! `float4out`): with `extra_float_digits` ≥ 1 (the default) the shortest
//! text that reads back to the same number, in exponent form below 1e-4 or
//! from 1e15 (1e6 for `real`): `0`, `1.5`, `1e+20`, `1e-05`, `Infinity`, `NaN`.
//! With `extra_float_digits` ≤ 0, `%g` with 15 (6) + `extra_float_digits` digits.

/// Digits of a significand and its decimal exponent: `1.5e20` is ("15", 20).
fn split_exponent(formatted: &str) -> (String, i32) {
    let (mantissa, exp) = formatted.split_once('e').unwrap_or((formatted, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    (digits, exp.parse().unwrap_or(0))
}

/// Writes `digits` × 10^(exp - len + 1) in PostgreSQL's layout.
fn layout(negative: bool, digits: &str, exp: i32, exponent_from: i32) -> String {
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let mut out = String::from(if negative { "-" } else { "" });
    if exp < -4 || exp >= exponent_from {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push_str(&format!(
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        ));
    } else if exp < 0 {
        out.push_str("0.");
        out.push_str(&"0".repeat((-exp - 1) as usize));
        out.push_str(digits);
    } else {
        let point = exp as usize + 1;
        if digits.len() <= point {
            out.push_str(digits);
            out.push_str(&"0".repeat(point - digits.len()));
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
    out
}

fn special(v: f64) -> Option<&'static str> {
    if v.is_nan() {
        Some("NaN")
    } else if v == f64::INFINITY {
        Some("Infinity")
    } else if v == f64::NEG_INFINITY {
        Some("-Infinity")
    } else if v == 0.0 {
        Some(if v.is_sign_negative() { "-0" } else { "0" })
    } else {
        None
    }
}

/// A `double precision` value as PostgreSQL writes it.
pub fn float8(v: f64, extra_float_digits: i32) -> String {
    if let Some(s) = special(v) {
        return s.to_owned();
    }
    let formatted = if extra_float_digits > 0 {
        format!("{:e}", v.abs())
    } else {
        let precision = (15 + extra_float_digits).max(1) as usize;
        format!("{:.*e}", precision - 1, v.abs())
    };
    let (digits, exp) = split_exponent(&formatted);
    let from = if extra_float_digits > 0 {
        15
    } else {
        (15 + extra_float_digits).max(1)
    };
    layout(v < 0.0, &digits, exp, from)
}

/// A `real` value as PostgreSQL writes it.
pub fn float4(v: f32, extra_float_digits: i32) -> String {
    if let Some(s) = special(v as f64) {
        return s.to_owned();
    }
    let formatted = if extra_float_digits > 0 {
        format!("{:e}", v.abs())
    } else {
        let precision = (6 + extra_float_digits).max(1) as usize;
        format!("{:.*e}", precision - 1, v.abs())
    };
    let (digits, exp) = split_exponent(&formatted);
    let from = if extra_float_digits > 0 {
        6
    } else {
        (6 + extra_float_digits).max(1)
    };
    layout(v < 0.0, &digits, exp, from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each pair as PostgreSQL 15 prints it (`extra_float_digits = 1`).
    #[test]
    fn writes_what_postgres_writes() {
        for (v, pg) in [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.5, "1.5"),
            (1e20, "1e+20"),
            (1e15, "1e+15"),
            (1e14, "100000000000000"),
            (123456789012345.0, "123456789012345"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.0 / 3.0, "0.3333333333333333"),
            (7.0 / 3.0, "2.3333333333333335"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (f64::NAN, "NaN"),
            (-2.5, "-2.5"),
        ] {
            assert_eq!(float8(v, 1), pg, "{v}");
        }
        for (v, pg) in [(1e6f32, "1e+06"), (1e5, "100000"), (100000.5, "100000.5")] {
            assert_eq!(float4(v, 1), pg, "{v}");
        }
        assert_eq!(float8(1.0 / 3.0, 0), "0.333333333333333");
        assert_eq!(float8(1e20, 0), "1e+20");
    }
}
