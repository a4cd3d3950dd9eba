//! The disclosure class of every function an analyst can call.
//!
//! An allowlist: the RWD functions carry their class where they are defined
//! (`tsunagu_udfs::disclosure`), the engine's own and DataFusion's built-ins
//! are classified here, and a server adds its catalog functions to the
//! policy. A function that is not classified is refused to analysts, so a
//! function added later is safe by default.

use tsunagu_udfs::Disclosure;

/// Scalar built-ins that return a value or NULL for every input.
const TOTAL_SCALARS: &[&str] = &[
    // Mathematics (NaN, not an error, outside a domain).
    "abs",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atan2",
    "atanh",
    "cbrt",
    "ceil",
    "cos",
    "cosh",
    "cot",
    "degrees",
    "exp",
    "floor",
    "isnan",
    "iszero",
    "ln",
    "log",
    "log10",
    "log2",
    "nanvl",
    "pi",
    "radians",
    "round",
    "signum",
    "sign",
    "ceiling",
    "sin",
    "sinh",
    "sqrt",
    "tan",
    "tanh",
    "trunc",
    // Conditionals and structure.
    "coalesce",
    "nullif",
    "nvl",
    "nvl2",
    "greatest",
    "least",
    "named_struct",
    "struct",
    "get_field",
    "arrow_typeof",
    "version",
    // Text.
    "ascii",
    "bit_length",
    "btrim",
    "character_length",
    "concat",
    "concat_ws",
    "contains",
    "ends_with",
    "find_in_set",
    "initcap",
    "left",
    "levenshtein",
    "lower",
    "lpad",
    "ltrim",
    "md5",
    "octet_length",
    "replace",
    "reverse",
    "right",
    "rpad",
    "rtrim",
    "starts_with",
    "strpos",
    "to_hex",
    "translate",
    "upper",
    "btrim",
    "overlay",
    "substr_index",
    // Dates.
    "current_date",
    "current_time",
    "now",
    "age",
    "date_part",
    "date_trunc",
    // Arrays (within a person: episodes, per-person lists).
    "array_any_value",
    "array_append",
    "array_compact",
    "array_concat",
    "array_dims",
    "array_distinct",
    "array_element",
    "array_except",
    "array_first",
    "array_has",
    "array_has_all",
    "array_has_any",
    "array_intersect",
    "array_length",
    "array_max",
    "array_min",
    "array_ndims",
    "array_pop_back",
    "array_pop_front",
    "array_position",
    "array_positions",
    "array_prepend",
    "array_remove",
    "array_remove_all",
    "array_remove_n",
    "array_replace",
    "array_replace_all",
    "array_replace_n",
    "array_reverse",
    "array_slice",
    "array_sort",
    "array_to_string",
    "array_union",
    "cardinality",
    "empty",
    "flatten",
    "make_array",
    "array_sum",
    "array_avg",
    "array_product",
    "generate_series",
    "range",
];

/// Scalar built-ins whose listed arguments must be constants: with a value
/// from the data they could fail on that data (a pattern, a format, a unit).
const CONSTANT_ARGUMENTS: &[(&str, &[usize])] = &[
    ("regexp_like", &[1, 2]),
    ("regexp_match", &[1, 2]),
    ("regexp_replace", &[1, 2, 3]),
    ("regexp_count", &[1, 2, 3]),
    ("regexp_instr", &[1, 2, 3, 4, 5]),
    ("to_char", &[1]),
    ("date_bin", &[0, 2]),
    ("split_part", &[1, 2]),
    ("substr", &[1, 2]),
    ("repeat", &[1]),
    ("array_repeat", &[1]),
    ("array_resize", &[1]),
];

/// Scalar built-ins the rewrite makes total (`make_date` returns NULL for
/// an impossible date; `mod` and a numeric division by zero are NULL; numeric arguments of `power` are computed in floating point).
const HARDENED: &[&str] = &[
    "make_date",
    "mod",
    "power",
    super::total::TOTAL_MAKE_DATE,
    crate::pg_dialect::numeric_division::NUMERIC_DIV,
];

/// Scalar built-ins refused to analysts, and why.
const REFUSED: &[(&str, &str)] = &[
    ("random", "randomness defeats sticky noise"),
    ("uuid", "randomness defeats sticky noise"),
    (
        "arrow_cast",
        "can fail on data; use CAST, which analysts get as TRY_CAST",
    ),
    ("arrow_try_cast", "casts to arbitrary types; use CAST"),
    ("cast_to_type", "casts to arbitrary types; use CAST"),
    ("try_cast_to_type", "casts to arbitrary types; use CAST"),
    ("chr", "fails on data (invalid code points)"),
    ("factorial", "fails on data (overflow)"),
    ("gcd", "fails on data (overflow)"),
    ("lcm", "fails on data (overflow)"),
    ("to_date", "fails on data it cannot parse"),
    ("to_time", "fails on data it cannot parse"),
    ("to_timestamp", "fails on data it cannot parse"),
    ("to_timestamp_seconds", "fails on data it cannot parse"),
    ("to_timestamp_millis", "fails on data it cannot parse"),
    ("to_timestamp_micros", "fails on data it cannot parse"),
    ("to_timestamp_nanos", "fails on data it cannot parse"),
    ("to_unixtime", "fails on data it cannot parse"),
    ("to_local_time", "fails on data (time zones)"),
    ("from_unixtime", "fails on data (overflow)"),
    ("make_time", "fails on data (invalid times)"),
    ("decode", "builds arbitrary bytes (person sets)"),
    ("encode", "reads arbitrary bytes (person sets)"),
    ("digest", "returns bytes"),
    ("sha224", "returns bytes"),
    ("sha256", "returns bytes"),
    ("sha384", "returns bytes"),
    ("sha512", "returns bytes"),
    ("string_to_array", "fails on data"),
    ("arrow_field", "exposes storage metadata"),
    ("arrow_metadata", "exposes storage metadata"),
    ("with_metadata", "changes storage metadata"),
    ("input_file_name", "exposes storage layout"),
    ("file_row_index", "exposes storage layout"),
    ("union_extract", "not needed by studies"),
    ("union_tag", "not needed by studies"),
    ("map", "fails on data (duplicate keys)"),
    ("map_extract", "not needed by studies"),
    ("map_keys", "not needed by studies"),
    ("map_values", "not needed by studies"),
    ("map_entries", "not needed by studies"),
    ("array_filter", "lambdas are not classified"),
    ("array_transform", "lambdas are not classified"),
    ("array_any_match", "lambdas are not classified"),
    ("arrays_zip", "not needed by studies"),
    ("array_add", "fails on data (lengths)"),
    ("array_subtract", "fails on data (lengths)"),
    ("array_scale", "not needed by studies"),
    ("array_distance", "fails on data (lengths)"),
    ("cosine_distance", "fails on data (lengths)"),
    ("inner_product", "fails on data (lengths)"),
    ("array_normalize", "not needed by studies"),
    ("pg_sleep", "delays reveal data"),
    ("sleep", "delays reveal data"),
    // The engine's internal person functions.
    ("tsunagu_person_id", "internal"),
    ("tsunagu_key_position", "internal"),
    ("tsunagu_person_at", "internal"),
    ("tsunagu_person_key_at", "internal"),
];

/// Aggregate built-ins. Within a person any of them may be used; across
/// persons the release decides (counts, sums and moments only).
const AGGREGATES: &[&str] = &[
    "any_value",
    "approx_distinct",
    "approx_median",
    "approx_percentile_cont",
    "approx_percentile_cont_with_weight",
    "array_agg",
    "avg",
    "bit_and",
    "bit_or",
    "bit_xor",
    "bool_and",
    "bool_or",
    "corr",
    "count",
    "covar_pop",
    "covar_samp",
    "first_value",
    "grouping",
    "last_value",
    "max",
    "median",
    "min",
    "nth_value",
    "percentile_cont",
    "percentile_disc",
    "stddev",
    "stddev_pop",
    "string_agg",
    "sum",
    "tsunagu_numeric_avg",
    "tsunagu_numeric_stddev_pop",
    "tsunagu_numeric_stddev_samp",
    "tsunagu_numeric_var_pop",
    "tsunagu_numeric_var_samp",
    "var",
    "var_pop",
    "regr_avgx",
    "regr_avgy",
    "regr_count",
    "regr_intercept",
    "regr_r2",
    "regr_slope",
    "regr_sxx",
    "regr_sxy",
    "regr_syy",
];

/// Window built-ins (windows must be partitioned by person).
const WINDOWS: &[&str] = &[
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
];

/// Functions the engine itself defines.
const ENGINE: &[(&str, Disclosure)] = &[
    ("cohort_bitmap", Disclosure::PersonSet),
    ("current_user", Disclosure::Total),
    ("session_user", Disclosure::Total),
    ("current_role", Disclosure::Total),
    ("user", Disclosure::Total),
    // PostgreSQL's `interval * number` (date arithmetic: total).
    ("interval_mul", Disclosure::Total),
    // PostgreSQL's `EXTRACT` (a date part as a numeric: total).
    ("pg_extract", Disclosure::Total),
];

/// The class of a scalar function, `None` when unclassified.
pub fn scalar(name: &str, extra: &dyn Fn(&str) -> Option<Disclosure>) -> Option<Disclosure> {
    if let Some(d) = tsunagu_udfs::disclosure(name) {
        return Some(d);
    }
    if let Some((_, d)) = ENGINE.iter().find(|(n, _)| *n == name) {
        return Some(*d);
    }
    if let Some((_, why)) = REFUSED.iter().find(|(n, _)| *n == name) {
        return Some(Disclosure::Refused(why));
    }
    use crate::pg_dialect::arithmetic;
    if TOTAL_SCALARS.contains(&name) || arithmetic::total_names().any(|n| n == name) {
        return Some(Disclosure::Total);
    }
    if arithmetic::checked_names().any(|n| n == name) {
        return Some(Disclosure::Refused("fails on data (overflow)"));
    }
    if HARDENED.contains(&name) {
        return Some(Disclosure::Hardened);
    }
    if let Some((_, at)) = CONSTANT_ARGUMENTS.iter().find(|(n, _)| *n == name) {
        return Some(Disclosure::ConstantArguments(at));
    }
    extra(name)
}

/// The class of an aggregate function, `None` when unclassified.
pub fn aggregate(name: &str) -> Option<Disclosure> {
    if let Some(d) = tsunagu_udfs::disclosure(name) {
        return Some(d);
    }
    // `nth_value(x, n)` fails for an `n` it does not support.
    if name == "nth_value" {
        return Some(Disclosure::ConstantArguments(&[1]));
    }
    AGGREGATES.contains(&name).then_some(Disclosure::Total)
}

/// The class of a window function, `None` when unclassified.
pub fn window(name: &str) -> Option<Disclosure> {
    if let Some(d) = tsunagu_udfs::disclosure(name) {
        return Some(d);
    }
    (WINDOWS.contains(&name) || AGGREGATES.contains(&name)).then_some(Disclosure::Total)
}

/// The class of a table function, `None` when unclassified.
pub fn table(name: &str) -> Option<Disclosure> {
    if let Some(d) = tsunagu_udfs::disclosure(name) {
        return Some(d);
    }
    // `cohort('name')` returns person-level rows the walk treats as such.
    matches!(name, "generate_series" | "range" | "cohort").then_some(Disclosure::Total)
}
