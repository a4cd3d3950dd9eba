//! Data quality checks and the label: the generator's planted truth found
//! with exact counts, the Eunomia store's counts against reference
//! computations written separately from the checks, the label against its
//! documented schema and the release rules, the tables refused to analysts.

use std::collections::{BTreeMap, HashMap};
use std::process::Command;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Date32Type, Int64Type};
use serde_json::Value;
use tsunagu_engine::{Engine, Role};

use crate::common::{count, eunomia, open, query, repo, state_dir, synthetic, tsunagu};

/// `check_id` → (status, violating rows, denominator rows).
async fn results(engine: &Engine) -> BTreeMap<String, (String, Option<i64>, Option<i64>)> {
    let rows = query(
        engine,
        "SELECT check_id, status, violating_rows, denominator_rows FROM quality.results",
    )
    .await;
    rows.iter()
        .map(|r| {
            let f: Vec<&str> = r.split('|').collect();
            (
                f[0].to_owned(),
                (f[1].to_owned(), f[2].parse().ok(), f[3].parse().ok()),
            )
        })
        .collect()
}

fn violating(r: &BTreeMap<String, (String, Option<i64>, Option<i64>)>, id: &str) -> i64 {
    r.get(id)
        .unwrap_or_else(|| panic!("no check {id}"))
        .1
        .unwrap_or_else(|| panic!("check {id} has no count: {:?}", r[id]))
}

#[tokio::test]
async fn every_planted_record_is_found_by_its_check_with_the_exact_count() {
    let store = synthetic();
    let truth: HashMap<String, i64> = serde_json::from_str(
        &std::fs::read_to_string(store.join("planted.json")).expect("planted.json"),
    )
    .expect("planted.json parses");
    let t = |k: &str| truth[k];
    let engine = open(store).await;
    let r = results(&engine).await;
    assert!(r.values().all(|(s, ..)| s != "Error"), "{r:?}");
    let expect: &[(&[&str], &str)] = &[
        (
            &["ndb.drug_exposure.drug_exposure_end_date.plausible_start_before_end"],
            "ndb_drug_end_before_start",
        ),
        (
            &["ndb.drug_exposure.days_supply.plausible_value_low"],
            "ndb_days_supply_zero",
        ),
        (
            &["ndb.condition_occurrence.condition_concept_id.standard_concept_record_completeness"],
            "ndb_unmapped_conditions",
        ),
        (
            &["ndb.visit_occurrence.visit_start_date.plausible_within_observation"],
            "ndb_visits_outside_observation",
        ),
        (
            &["ndb.condition_occurrence.condition_start_date.plausible_within_observation"],
            "ndb_conditions_outside_observation",
        ),
        (
            &[
                "ndb.visit_occurrence.visit_start_date.plausible_after_birth",
                "ndb.condition_occurrence.condition_start_date.plausible_after_birth",
            ],
            "ndb_events_before_birth",
        ),
        (
            &["ndb.measurement.measurement_date.plausible_date_not_future"],
            "ndb_future_measurements",
        ),
        (
            &["ndb.measurement.measurement_date.plausible_within_observation"],
            "ndb_future_measurements",
        ),
        (
            &[
                "ndb.measurement.value_as_number.5000001.plausible_value_low",
                "ndb.measurement.value_as_number.5000001.plausible_value_high",
                "ndb.measurement.value_as_number.5000002.plausible_value_low",
                "ndb.measurement.value_as_number.5000002.plausible_value_high",
                "ndb.measurement.value_as_number.5000003.plausible_value_low",
                "ndb.measurement.value_as_number.5000003.plausible_value_high",
                "ndb.measurement.value_as_number.5000004.plausible_value_low",
                "ndb.measurement.value_as_number.5000004.plausible_value_high",
            ],
            "ndb_implausible_measurements",
        ),
        (
            &[
                "ndb.observation_period.observation_period_start_date.plausible_no_overlapping_periods",
            ],
            "ndb_overlapping_periods",
        ),
        (
            &["dpc.person.year_of_birth.plausible_value_low"],
            "dpc_birth_year_1800",
        ),
        (
            &["dpc.visit_occurrence.person_key.is_foreign_key"],
            "dpc_visits_without_person",
        ),
        (
            &["dpc.condition_occurrence.person_key.is_foreign_key"],
            "dpc_conditions_without_person",
        ),
        (
            &["dpc.procedure_occurrence.person_key.is_foreign_key"],
            "dpc_procedures_without_person",
        ),
    ];
    for (checks, planted) in expect {
        let found: i64 = checks.iter().map(|c| violating(&r, c)).sum();
        assert_eq!(found, t(planted), "{planted}: {checks:?}");
    }
    // The store is big enough for every kind but the rarest to be planted.
    for (k, v) in &truth {
        assert!(
            *v > 0 || k == "ndb_events_before_birth",
            "nothing planted: {k}"
        );
    }
    // Nothing else is implausible in the synthetic store: every other check
    // counts no violating row (unlinked keys are by design, not planted).
    let planted: Vec<&str> = expect.iter().flat_map(|(c, _)| c.iter().copied()).collect();
    for (id, (_, v, _)) in &r {
        if !planted.contains(&id.as_str()) && !id.ends_with(".unlinked_keys") {
            assert_eq!(v.unwrap_or(0), 0, "{id} found rows that were not planted");
        }
    }
    // Keys without a link row, from the delivered files read by plain DataFusion.
    let raw = datafusion::prelude::SessionContext::new();
    raw.register_parquet(
        "link",
        store.join("linkage/person_link.parquet").to_str().unwrap(),
        Default::default(),
    )
    .await
    .unwrap();
    for (source, tables) in [
        (
            "ndb",
            &["person", "observation_period", "visit_occurrence"][..],
        ),
        (
            "dpc",
            &[
                "person",
                "visit_occurrence",
                "condition_occurrence",
                "procedure_occurrence",
            ][..],
        ),
        (
            "kaigo",
            &["person", "care_certification", "care_service"][..],
        ),
    ] {
        let mut union = Vec::new();
        for t in tables {
            let name = format!("{source}_{t}");
            // A table delivered as a folder of files is read as the folder.
            let folder = store.join(format!("{source}/{t}"));
            let path = if folder.is_dir() {
                format!("{}/", folder.display())
            } else {
                store
                    .join(format!("{source}/{t}.parquet"))
                    .display()
                    .to_string()
            };
            raw.register_parquet(&name, &path, Default::default())
                .await
                .unwrap();
            union.push(format!("SELECT person_key FROM {name}"));
        }
        let sql = format!(
            "SELECT count(*) AS n FROM (SELECT DISTINCT person_key FROM ({})) k \
             WHERE k.person_key NOT IN (SELECT person_key FROM link WHERE source = '{source}')",
            union.join(" UNION ALL ")
        );
        let batches = raw.sql(&sql).await.unwrap().collect().await.unwrap();
        let n = batches[0].column(0).as_primitive::<Int64Type>().value(0);
        assert_eq!(
            violating(
                &r,
                &format!("{source}.person_link.person_key.unlinked_keys")
            ),
            n,
            "{source} unlinked keys"
        );
        assert!(n > 0);
    }
}

/// Reads (person_id, date, end date) of a table's rows.
async fn spans(
    engine: &Engine,
    table: &str,
    start: &str,
    end: Option<&str>,
) -> Vec<(i64, Option<i32>, Option<i32>)> {
    let sql = format!(
        "SELECT person_id, {start}, {} FROM {table}",
        end.unwrap_or("CAST(NULL AS DATE)")
    );
    let batches = engine.session().unwrap().sql(&sql).await.unwrap();
    let mut out = Vec::new();
    for b in &batches {
        let p = b.column(0).as_primitive::<Int64Type>();
        let s = b.column(1).as_primitive::<Date32Type>();
        let e = b.column(2).as_primitive::<Date32Type>();
        for i in 0..b.num_rows() {
            out.push((
                p.value(i),
                (!s.is_null(i)).then(|| s.value(i)),
                (!e.is_null(i)).then(|| e.value(i)),
            ));
        }
    }
    out
}

#[tokio::test]
async fn eunomia_counts_agree_with_reference_computations() {
    let engine = open(&eunomia()).await;
    let r = results(&engine).await;
    assert!(r.values().all(|(s, ..)| s != "Error"), "{r:?}");
    // Reference 1: plain SQL, one statement per check, shaped unlike the checks.
    let sql_refs: &[(&str, &str)] = &[
        (
            "cdm.drug_exposure.drug_exposure_id.is_primary_key",
            "SELECT count(*) FROM cdm.drug_exposure WHERE drug_exposure_id IN \
             (SELECT drug_exposure_id FROM cdm.drug_exposure GROUP BY drug_exposure_id HAVING count(*) > 1)",
        ),
        (
            "cdm.measurement.measurement_id.is_primary_key",
            "SELECT count(*) FROM cdm.measurement WHERE measurement_id IN \
             (SELECT measurement_id FROM cdm.measurement GROUP BY measurement_id HAVING count(*) > 1)",
        ),
        (
            "cdm.observation_period.person_key.is_foreign_key",
            "SELECT count(*) FROM cdm.observation_period WHERE person_key NOT IN (SELECT person_key FROM cdm.person)",
        ),
        (
            "cdm.condition_occurrence.person_key.is_foreign_key",
            "SELECT count(*) FROM cdm.condition_occurrence WHERE person_key NOT IN (SELECT person_key FROM cdm.person)",
        ),
        (
            "cdm.person.race_concept_id.fk_concept_exists",
            "SELECT count(*) FROM cdm.person WHERE race_concept_id <> 0 AND race_concept_id NOT IN (SELECT concept_id FROM vocab.concept)",
        ),
        (
            "cdm.person.ethnicity_concept_id.fk_concept_exists",
            "SELECT count(*) FROM cdm.person WHERE ethnicity_concept_id <> 0 AND ethnicity_concept_id NOT IN (SELECT concept_id FROM vocab.concept)",
        ),
        (
            "cdm.condition_occurrence.condition_concept_id.is_standard_valid_concept",
            "SELECT count(*) FROM cdm.condition_occurrence o JOIN vocab.concept c ON c.concept_id = o.condition_concept_id \
             WHERE o.condition_concept_id <> 0 AND (c.standard_concept IS NULL OR c.standard_concept <> 'S' OR c.invalid_reason IS NOT NULL)",
        ),
        (
            "cdm.condition_occurrence.condition_concept_id.fk_domain",
            "SELECT count(*) FROM cdm.condition_occurrence WHERE condition_concept_id IN \
             (SELECT concept_id FROM vocab.concept WHERE domain_id <> 'Condition' OR domain_id IS NULL)",
        ),
        (
            "cdm.drug_exposure.drug_concept_id.fk_domain",
            "SELECT count(*) FROM cdm.drug_exposure WHERE drug_concept_id IN \
             (SELECT concept_id FROM vocab.concept WHERE domain_id <> 'Drug' OR domain_id IS NULL)",
        ),
        (
            "cdm.procedure_occurrence.procedure_concept_id.fk_domain",
            "SELECT count(*) FROM cdm.procedure_occurrence WHERE procedure_concept_id IN \
             (SELECT concept_id FROM vocab.concept WHERE domain_id <> 'Procedure' OR domain_id IS NULL)",
        ),
        (
            "cdm.drug_exposure.drug_concept_id.standard_concept_record_completeness",
            "SELECT count(*) FROM cdm.drug_exposure WHERE drug_concept_id = 0",
        ),
        (
            "cdm.drug_exposure.days_supply.plausible_value_low",
            "SELECT count(*) FROM cdm.drug_exposure WHERE days_supply < 1",
        ),
        (
            "cdm.drug_exposure.days_supply.plausible_value_high",
            "SELECT count(*) FROM cdm.drug_exposure WHERE days_supply > 365",
        ),
        (
            "cdm.drug_exposure.quantity.plausible_value_low",
            "SELECT count(*) FROM cdm.drug_exposure WHERE NOT (quantity > 0)",
        ),
        (
            "cdm.person.year_of_birth.plausible_value_low",
            "SELECT count(*) FROM cdm.person WHERE year_of_birth < 1850",
        ),
        (
            "cdm.person.gender_concept_id.is_required",
            "SELECT count(*) - count(gender_concept_id) FROM cdm.person",
        ),
        (
            "cdm.visit_occurrence.visit_start_date.is_required",
            "SELECT count(*) - count(visit_start_date) FROM cdm.visit_occurrence",
        ),
        (
            "cdm.observation_period.measure_person_completeness",
            "SELECT count(*) FROM cdm.person WHERE person_id NOT IN (SELECT person_id FROM cdm.observation_period)",
        ),
    ];
    for (id, sql) in sql_refs {
        assert_eq!(violating(&r, id), count(&engine, sql).await, "{id}: {sql}");
    }
    // Some of these find something: the reference is not comparing zeros only.
    assert!(violating(&r, "cdm.drug_exposure.drug_exposure_id.is_primary_key") > 0);
    assert!(violating(&r, "cdm.observation_period.person_key.is_foreign_key") > 0);
    assert!(violating(&r, "cdm.drug_exposure.days_supply.plausible_value_low") > 0);

    // Reference 2: the temporal checks computed in Rust from the rows.
    let mut periods: HashMap<i64, Vec<(i32, i32)>> = HashMap::new();
    for (p, s, e) in spans(
        &engine,
        "cdm.observation_period",
        "observation_period_start_date",
        Some("observation_period_end_date"),
    )
    .await
    {
        periods
            .entry(p)
            .or_default()
            .push((s.unwrap_or(i32::MAX), e.unwrap_or(i32::MIN)));
    }
    let births: HashMap<i64, i32> = {
        let rows = query(
            &engine,
            "SELECT person_id, year_of_birth, coalesce(month_of_birth, 1), coalesce(day_of_birth, 1) FROM cdm.person",
        )
        .await;
        rows.iter()
            .map(|l| {
                let f: Vec<i64> = l.split('|').map(|x| x.parse().unwrap()).collect();
                let d = chrono::NaiveDate::from_ymd_opt(f[1] as i32, f[2] as u32, 1).unwrap()
                    + chrono::TimeDelta::days(f[3] - 1);
                let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
                (f[0], (d - epoch).num_days() as i32)
            })
            .collect()
    };
    let today = (chrono::Utc::now().date_naive()
        - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
    .num_days() as i32;
    let tables: &[(&str, &str, Option<&str>)] = &[
        (
            "visit_occurrence",
            "visit_start_date",
            Some("visit_end_date"),
        ),
        (
            "condition_occurrence",
            "condition_start_date",
            Some("condition_end_date"),
        ),
        (
            "drug_exposure",
            "drug_exposure_start_date",
            Some("drug_exposure_end_date"),
        ),
        ("procedure_occurrence", "procedure_date", None),
        ("measurement", "measurement_date", None),
        ("observation", "observation_date", None),
    ];
    let mut nonzero = 0;
    for (table, start, end) in tables {
        let rows = spans(&engine, &format!("cdm.{table}"), start, *end).await;
        let outside = rows
            .iter()
            .filter(|(p, s, _)| {
                s.is_some_and(|s| {
                    !periods
                        .get(p)
                        .is_some_and(|v| v.iter().any(|(a, b)| *a <= s && s <= *b))
                })
            })
            .count() as i64;
        let before_birth = rows
            .iter()
            .filter(|(p, s, _)| s.zip(births.get(p)).is_some_and(|(s, b)| s < *b))
            .count() as i64;
        let future = rows
            .iter()
            .filter(|(_, s, _)| s.is_some_and(|s| s > today))
            .count() as i64;
        let id = |field: &str, check: &str| format!("cdm.{table}.{field}.{check}");
        assert_eq!(
            violating(&r, &id(start, "plausible_within_observation")),
            outside,
            "{table} outside observation"
        );
        assert_eq!(
            violating(&r, &id(start, "plausible_after_birth")),
            before_birth,
            "{table} before birth"
        );
        assert_eq!(
            violating(&r, &id(start, "plausible_date_not_future")),
            future,
            "{table} in the future"
        );
        if let Some(end) = end {
            let reversed = rows
                .iter()
                .filter(|(_, s, e)| s.zip(*e).is_some_and(|(s, e)| e < s))
                .count() as i64;
            assert_eq!(
                violating(&r, &id(end, "plausible_start_before_end")),
                reversed,
                "{table} end before start"
            );
        }
        nonzero += outside + before_birth;
        // Records by calendar year (the characterization).
        let mut by_year: BTreeMap<i32, i64> = BTreeMap::new();
        for (_, s, _) in &rows {
            if let Some(s) = s {
                use chrono::Datelike;
                let d = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()
                    + chrono::TimeDelta::days(i64::from(*s));
                *by_year.entry(d.year()).or_default() += 1;
            }
        }
        let shown: BTreeMap<i32, i64> = query(
            &engine,
            &format!(
                "SELECT stratum_1, count_value FROM quality.characterization WHERE analysis_id = 10 AND table_name = '{table}' AND stratum_1 IS NOT NULL"
            ),
        )
        .await
        .iter()
        .map(|l| {
            let (y, n) = l.split_once('|').unwrap();
            (y.parse().unwrap(), n.parse().unwrap())
        })
        .collect();
        assert_eq!(shown, by_year, "{table} records by year");
    }
    assert!(nonzero > 0, "the temporal references compare something");
    // Overlapping periods of a key, in Rust.
    let mut overlapping = 0;
    for v in periods.values_mut() {
        v.sort_unstable();
        let mut latest = i32::MIN;
        for (i, (s, e)) in v.iter().enumerate() {
            if i > 0 && latest >= *s {
                overlapping += 1;
            }
            latest = latest.max(*e);
        }
    }
    assert_eq!(
        violating(
            &r,
            "cdm.observation_period.observation_period_start_date.plausible_no_overlapping_periods"
        ),
        overlapping
    );
    // Persons by gender.
    assert_eq!(
        query(
            &engine,
            "SELECT stratum_1, person_count FROM quality.characterization WHERE analysis_id = 2 ORDER BY 1"
        )
        .await,
        query(
            &engine,
            "SELECT CAST(gender_concept_id AS VARCHAR), count(*) FROM cdm.person GROUP BY 1 ORDER BY 1"
        )
        .await
    );
}

/// A minimal JSON Schema (2020-12) validator: the keywords the label's
/// schema uses (type, enum, required, properties, additionalProperties,
/// items, minimum, maximum, $ref to #/$defs).
fn validate(root: &Value, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/$defs/");
        return validate(root, &root["$defs"][name], v, at, errors);
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => false,
        });
        if !ok {
            errors.push(format!("{at}: {v} is not of type {t}"));
            return;
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        errors.push(format!("{at}: {v} not in {e:?}"));
    }
    if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), v.as_f64())
        && n < min
    {
        errors.push(format!("{at}: {n} < {min}"));
    }
    if let (Some(max), Some(n)) = (schema.get("maximum").and_then(Value::as_f64), v.as_f64())
        && n > max
    {
        errors.push(format!("{at}: {n} > {max}"));
    }
    if let Some(o) = v.as_object() {
        for req in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(k) = req.as_str()
                && !o.contains_key(k)
            {
                errors.push(format!("{at}: missing {k}"));
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, val) in o {
            match props.and_then(|p| p.get(k)) {
                Some(s) => validate(root, s, val, &format!("{at}.{k}"), errors),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => errors.push(format!("{at}: unexpected {k}")),
                    Some(s @ Value::Object(_)) => {
                        validate(root, s, val, &format!("{at}.{k}"), errors)
                    }
                    _ => {}
                },
            }
        }
    }
    if let (Some(a), Some(items)) = (v.as_array(), schema.get("items")) {
        for (i, item) in a.iter().enumerate() {
            validate(root, items, item, &format!("{at}[{i}]"), errors);
        }
    }
}

/// Every count of a released label: withheld (null), 0, or at least k and a multiple of the base.
fn released_counts_follow_the_policy(
    v: &Value,
    key: &str,
    k: u64,
    base: u64,
    bad: &mut Vec<String>,
) {
    const COUNTS: &[&str] = &[
        "persons",
        "records",
        "rows",
        "keys",
        "unlinked_keys",
        "violating_rows",
        "denominator_rows",
        "persons_from",
        "persons_in_both",
        "persons_in_this_source_only",
        "persons_in_one_source_only",
        "person_years",
    ];
    match v {
        Value::Object(o) => {
            for (k2, v2) in o {
                released_counts_follow_the_policy(v2, k2, k, base, bad);
            }
        }
        Value::Array(a) => a
            .iter()
            .for_each(|x| released_counts_follow_the_policy(x, key, k, base, bad)),
        Value::Number(n) if COUNTS.contains(&key) && key != "person_years" => {
            let n = n.as_u64().unwrap_or(u64::MAX);
            if n != 0 && (n < k || n % base != 0) {
                bad.push(format!("{key} = {n}"));
            }
        }
        _ => {}
    }
}

#[test]
fn the_label_follows_its_schema_and_the_release_rules_and_the_page_stands_alone() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("docs/quality-label.schema.json")).unwrap(),
    )
    .unwrap();
    for (store, exact) in [
        (synthetic().to_path_buf(), false),
        (synthetic().to_path_buf(), true),
        (eunomia(), false),
    ] {
        let out = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(tsunagu());
        cmd.args(["quality", "--store"])
            .arg(&store)
            .arg("--state")
            .arg(state_dir())
            .arg("--out")
            .arg(out.path());
        if exact {
            cmd.arg("--exact");
        }
        let run = cmd.output().expect("tsunagu runs");
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(stdout.contains(" failed, "), "{stdout}");
        assert!(stdout.contains(", 0 errors"), "{stdout}");
        let label: Value =
            serde_json::from_str(&std::fs::read_to_string(out.path().join("label.json")).unwrap())
                .unwrap();
        let mut errors = Vec::new();
        validate(&schema, &schema, &label, "$", &mut errors);
        assert!(errors.is_empty(), "{}: {errors:#?}", store.display());
        assert_eq!(label["release"]["exact"], exact);
        let mut bad = Vec::new();
        released_counts_follow_the_policy(&label, "", 10, 5, &mut bad);
        if exact {
            assert!(!bad.is_empty(), "the exact report has exact counts");
        } else {
            assert!(bad.is_empty(), "{}: {bad:?}", store.display());
        }
        // Strata backed by fewer than k persons are left out, not shown as withheld.
        for (list, value) in [
            ("observation_by_year", "persons"),
            ("records_by_year", "records"),
            ("age_sex", "persons"),
            ("sex", "persons"),
        ] {
            for row in label["coverage"][list].as_array().unwrap() {
                assert!(!row[value].is_null(), "{list}: {row}");
            }
        }
        let html = std::fs::read_to_string(out.path().join("label.html")).unwrap();
        assert!(html.starts_with("<!doctype html>"));
        assert!(html.contains("<svg"), "inline plots");
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "self-contained"
        );
        assert!(!html.contains("<script"), "no scripts");
        assert!(html.contains("Failing") || html.contains("failing checks"));
    }
}

#[tokio::test]
async fn analysts_read_the_quality_tables_released_as_in_the_label() {
    let engine = open(&synthetic()).await;
    let analyst = engine.session_as("ana", Role::Analyst).unwrap();
    let steward = engine.session_as("sam", Role::Steward).unwrap();
    let rows = |batches: &[datafusion::arrow::record_batch::RecordBatch]| -> Vec<(String, Option<i64>, Option<i64>)> {
        let mut out = Vec::new();
        for b in batches {
            let id = b.column(0).as_string::<i32>();
            let v = b.column(1).as_primitive::<Int64Type>();
            let p = b.column(2).as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                out.push((
                    id.value(i).to_owned(),
                    v.is_valid(i).then(|| v.value(i)),
                    p.is_valid(i).then(|| p.value(i)),
                ));
            }
        }
        out.sort();
        out
    };
    let sql =
        "SELECT check_id, violating_rows, violating_persons FROM quality.results ORDER BY check_id";
    let exact = rows(&steward.sql(sql).await.unwrap());
    let released = rows(&analyst.sql(sql).await.unwrap());
    assert_eq!(exact.len(), released.len());
    let mut withheld = 0;
    for ((id, v, p), (id2, rv, _)) in exact.iter().zip(&released) {
        assert_eq!(id, id2);
        match (v, rv) {
            (Some(0), r) => assert_eq!(*r, Some(0), "{id}"),
            // Withheld exactly when fewer than k persons (or, unknown, rows) stand behind it.
            (Some(v), None) => {
                assert!(
                    p.map_or(*v < 10, |p| p < 10),
                    "{id}: withheld with {v} rows, {p:?} persons"
                );
                withheld += 1;
            }
            (Some(v), Some(r)) => {
                assert!(
                    p.map_or(*v >= 10, |p| p >= 10),
                    "{id}: released with {p:?} persons"
                );
                assert_eq!(r % 5, 0, "{id}: rounded");
                assert!((r - v).abs() <= 2, "{id}: {r} for {v}");
            }
            (None, r) => assert_eq!(*r, None, "{id}"),
        }
    }
    // The synthetic store plants rare kinds: some counts rest on few persons.
    assert!(withheld > 0, "nothing withheld: {exact:?}");
    // And some are large enough to be released.
    assert!(
        released.iter().any(|(_, r, _)| r.is_some_and(|n| n > 0)),
        "nothing released: {released:?}"
    );
    // Characterization: no stratum under k persons, counts rounded.
    let batches = analyst
        .sql("SELECT person_count FROM quality.characterization WHERE person_count IS NOT NULL")
        .await
        .unwrap();
    for b in &batches {
        let p = b.column(0).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            assert!(p.value(i) >= 10 && p.value(i) % 5 == 0, "{}", p.value(i));
        }
    }
    // The steward reads them; the check list is known without running the checks.
    assert!(count(&engine, "SELECT count(*) FROM quality.checks").await > 100);
    assert_eq!(
        count(&engine, "SELECT count(*) FROM quality.checks").await,
        count(&engine, "SELECT count(*) FROM quality.results").await
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[tokio::test]
async fn delivery_lag_is_the_time_from_a_delivery_s_latest_record_to_its_file() {
    // Eunomia's visits delivered as a folder of two monthly files, the
    // second delivered later.
    let store = tempfile::tempdir().unwrap();
    copy_dir(&eunomia(), store.path());
    let folder = store.path().join("cdm/visit_occurrence");
    std::fs::create_dir(&folder).unwrap();
    std::fs::rename(
        store.path().join("cdm/visit_occurrence.parquet"),
        folder.join("2019-01.parquet"),
    )
    .unwrap();
    std::fs::copy(
        folder.join("2019-01.parquet"),
        folder.join("2019-02.parquet"),
    )
    .unwrap();
    let original = open(&eunomia()).await;
    let latest = query(
        &original,
        "SELECT CAST(max(visit_start_date) - DATE '1970-01-01' AS BIGINT) FROM cdm.visit_occurrence",
    )
    .await[0]
        .parse::<i64>()
        .unwrap();
    for (file, lag) in [("2019-01.parquet", 30), ("2019-02.parquet", 75)] {
        let at = std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(((latest + lag) * 86_400 + 43_200) as u64);
        std::fs::File::options()
            .write(true)
            .open(folder.join(file))
            .unwrap()
            .set_modified(at)
            .unwrap();
    }
    let engine = open(store.path()).await;
    assert_eq!(
        query(
            &engine,
            "SELECT stratum_1, count_value FROM quality.characterization WHERE analysis_id = 30 ORDER BY 1"
        )
        .await,
        vec![
            "cdm/visit_occurrence/2019-01.parquet|30",
            "cdm/visit_occurrence/2019-02.parquet|75"
        ]
    );
    let report = engine.quality_report().await.unwrap();
    let label =
        tsunagu_engine::quality::label::build(&report, engine.store(), engine.policy(), false);
    assert_eq!(
        label["coverage"]["deliveries"],
        serde_json::json!([{"source": "cdm", "table": "visit_occurrence", "deliveries": 2, "median_lag_days": 75, "max_lag_days": 75}])
    );
}

/// A headless browser draws the label's plots: every inline SVG has a
/// non-empty box and shapes with a size. Runs where `chromium` (or Chrome)
/// is installed, as `scripts/test` does; says so and passes elsewhere.
#[test]
fn the_label_page_renders_its_plots_in_a_browser() {
    let Some(browser) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
    else {
        eprintln!("no headless browser installed: the rendering check is skipped");
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let state = state_dir();
    let run = Command::new(tsunagu())
        .args(["quality", "--store"])
        .arg(synthetic())
        .arg("--state")
        .arg(&state)
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("tsunagu runs");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // The run is in the audit chain.
    let audit: String = std::fs::read_dir(state.join("audit"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect();
    assert!(
        audit.contains("QUALITY RUN (released counts"),
        "the run is audited"
    );
    // The page with a measuring script appended (the label itself has none).
    let html = std::fs::read_to_string(out.path().join("label.html")).unwrap();
    let probe = "<script>\
        const svgs = [...document.querySelectorAll('svg')];\
        const drawn = svgs.filter(s => { const b = s.getBoundingClientRect();\
          const shapes = [...s.querySelectorAll('rect,path,polyline,polygon,line,circle')];\
          return b.width > 0 && b.height > 0 && shapes.some(e => { const r = e.getBoundingClientRect(); return r.width > 0 || r.height > 0; }); });\
        const p = document.createElement('pre'); p.id = 'probe';\
        p.textContent = 'svgs=' + svgs.length + ' drawn=' + drawn.length; document.body.appendChild(p);\
        </script>";
    let page = out.path().join("probe.html");
    std::fs::write(&page, html.replace("</body>", &format!("{probe}</body>"))).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let dom = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,4000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("the browser runs");
    let dom = String::from_utf8_lossy(&dom.stdout);
    let line = dom
        .split("<pre id=\"probe\">")
        .nth(1)
        .and_then(|r| r.split("</pre>").next())
        .unwrap_or_else(|| panic!("the page did not load in {browser}: {dom}"));
    let number = |key: &str| -> usize {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let (svgs, drawn) = (number("svgs="), number("drawn="));
    assert!(svgs >= 3, "{line}");
    assert_eq!(drawn, svgs, "every plot draws: {line}");
    eprintln!("{browser}: {line}");
}

/// Coverage by prefecture: the label's persons per prefecture are the
/// steward's counts (from the delivered person file, read by a plain
/// DataFusion context) released under k and rounding, set against Japan's
/// population; the generator draws prefectures in proportion to it.
#[tokio::test]
async fn the_label_sets_persons_by_prefecture_against_japan() {
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(tsunagu())
        .args(["quality", "--store"])
        .arg(synthetic())
        .arg("--state")
        .arg(state_dir())
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("tsunagu runs");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let label: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("label.json")).unwrap())
            .unwrap();
    let rows = label["coverage"]["prefecture"].as_array().unwrap();
    assert_eq!(rows.len(), 47);
    let raw = datafusion::prelude::SessionContext::new();
    raw.register_parquet(
        "person",
        synthetic().join("ndb/person.parquet").to_str().unwrap(),
        Default::default(),
    )
    .await
    .unwrap();
    // Persons: distinct keys linked to one person are one person; the file
    // has keys, so count keys of the first insurer only (n = 0 pseudonyms)
    // through the label's own total instead: compare shares.
    let batches = raw
        .sql("SELECT location_id, count(*) AS n FROM person GROUP BY 1")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut keys: HashMap<i64, i64> = HashMap::new();
    for b in &batches {
        let l = b.column(0).as_primitive::<Int64Type>();
        let n = b.column(1).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            keys.insert(l.value(i), n.value(i));
        }
    }
    let total_keys: i64 = keys.values().sum();
    let mut reference = 0.0;
    for r in rows {
        let code = r["code"].as_i64().unwrap();
        reference += r["reference_share_pct"].as_f64().unwrap();
        let truth = keys.get(&code).copied().unwrap_or(0);
        match r["persons"].as_i64() {
            // Withheld: fewer than k persons (a person may hold two keys).
            None => assert!(truth < 10 * 2, "{code}: withheld with {truth} keys"),
            Some(n) => {
                assert_eq!(n % 5, 0, "{code}: rounded");
                // Persons are at most the keys, and few persons hold two.
                assert!(
                    n <= truth + 2 && n as f64 >= truth as f64 * 0.9 - 3.0,
                    "{code}: {n} vs {truth} keys"
                );
            }
        }
    }
    assert!((reference - 100.0).abs() < 0.1, "{reference}");
    // The largest prefectures are covered about as Japan is (the generator's
    // planted truth is the reference distribution).
    for code in [13, 14, 27] {
        let r = &rows[code - 1];
        let ratio = r["coverage_ratio"].as_f64().unwrap();
        assert!((0.7..1.3).contains(&ratio), "{code}: {ratio}");
        let share = 100.0 * keys[&(code as i64)] as f64 / total_keys as f64;
        assert!(
            (share - r["share_pct"].as_f64().unwrap()).abs() < 1.0,
            "{code}: {share} vs {}",
            r["share_pct"]
        );
    }
    let html = std::fs::read_to_string(out.path().join("label.html")).unwrap();
    assert!(
        html.contains("aria-label=\"prefectures\""),
        "the prefecture plot"
    );
    // Timeliness: the synthetic long-term-care services arrive as yearly
    // deliveries dated 9 February of the next year; the latest service month
    // of a year is 1 December, 70 days before.
    let deliveries = label["coverage"]["deliveries"].as_array().unwrap();
    let care = deliveries
        .iter()
        .find(|d| d["source"] == "kaigo" && d["table"] == "care_service")
        .unwrap_or_else(|| panic!("no deliveries of kaigo.care_service: {deliveries:?}"));
    assert!(care["deliveries"].as_i64().unwrap() >= 5, "{care}");
    assert_eq!(care["median_lag_days"], 70, "{care}");
    assert_eq!(care["max_lag_days"], 70, "{care}");
}
