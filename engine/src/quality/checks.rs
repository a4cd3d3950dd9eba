//! The checks: which apply to a store, the SQL that counts their violating
//! rows, and their results.
//!
//! Each check is one DQD check type applied to a table, a field or a
//! concept. A check counts violating rows over a denominator of rows; it
//! fails when the percentage of violating rows exceeds its threshold. The
//! field- and concept-level checks of a table are gathered into one query,
//! one scan of the table: each is a `count(CASE WHEN ... THEN 1 END)` over
//! the table joined to small per-person and per-concept tables (the person
//! keys, birth and death dates of the source, the vocabulary). What needs
//! another shape runs as its own query: primary-key uniqueness (a grouping
//! by the key), records within observation (an anti-join on the person's
//! periods), overlapping observation periods (a window per key).

use datafusion::prelude::SessionContext;
use serde::Serialize;
use tsunagu_catalog::Store;
use tsunagu_catalog::tables::{ColumnSource, TableDef};

use super::{Linkage, QualityConfig, first_i64, ident};

/// The outcome of a check, as DQD names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Status {
    /// At most the threshold's percentage of rows violate the check.
    Passed,
    /// More than the threshold's percentage of rows violate the check.
    Failed,
    /// The store lacks what the check is about (a field, a table, rows).
    #[serde(rename = "Not applicable")]
    NotApplicable,
    /// The check's query failed.
    Error,
}

impl Status {
    /// The status as DQD writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "Passed",
            Status::Failed => "Failed",
            Status::NotApplicable => "Not applicable",
            Status::Error => "Error",
        }
    }
}

/// One check: a check type applied to a table, field or concept.
#[derive(Debug, Clone, Serialize)]
pub struct CheckDef {
    /// `source.table[.field][.concept].check_type`.
    pub check_id: String,
    /// The DQD check type (`is_required`, `plausible_start_before_end`, ...).
    pub check_type: String,
    /// Kahn category: Conformance, Completeness or Plausibility.
    pub category: String,
    /// Kahn subcategory: Value, Relational, Computational, Atemporal, Temporal.
    pub subcategory: String,
    /// `table`, `field` or `concept`.
    pub level: String,
    /// The source (SQL schema).
    pub schema_name: String,
    pub table_name: String,
    pub field_name: Option<String>,
    pub concept_id: Option<i64>,
    /// The check fails when more than this percentage of rows violate it.
    pub threshold_pct: f64,
    /// `fatal`, `convention` or `characterization` (as DQD).
    pub severity: String,
    /// What a violating row is.
    pub description: String,
}

/// A check and what it found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    #[serde(flatten)]
    pub check: CheckDef,
    pub status: Status,
    /// Rows (or keys, or persons) that violate the check.
    pub violating_rows: Option<u64>,
    /// Rows the check looked at.
    pub denominator_rows: Option<u64>,
    /// Distinct persons behind the violating rows (person-level row checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violating_persons: Option<u64>,
    /// `100 * violating / denominator`.
    pub pct_violating: Option<f64>,
    /// Why the check is not applicable or failed to run (never a data value).
    pub note: Option<String>,
}

impl CheckResult {
    fn counted(check: CheckDef, violating: u64, denominator: u64) -> CheckResult {
        if denominator == 0 {
            return CheckResult {
                check,
                status: Status::NotApplicable,
                violating_rows: Some(violating),
                denominator_rows: Some(0),
                violating_persons: None,
                pct_violating: None,
                note: Some("no rows to check".into()),
            };
        }
        let pct = 100.0 * violating as f64 / denominator as f64;
        let status = if pct > check.threshold_pct {
            Status::Failed
        } else {
            Status::Passed
        };
        CheckResult {
            check,
            status,
            violating_rows: Some(violating),
            denominator_rows: Some(denominator),
            violating_persons: None,
            pct_violating: Some(pct),
            note: None,
        }
    }

    fn not_applicable(check: CheckDef, why: &str) -> CheckResult {
        CheckResult {
            check,
            status: Status::NotApplicable,
            violating_rows: None,
            denominator_rows: None,
            violating_persons: None,
            pct_violating: None,
            note: Some(why.to_owned()),
        }
    }
}

/// The date, end date and primary key of the CDM tables the checks know.
const SHAPES: &[(&str, &str, Option<&str>)] = &[
    (
        "observation_period",
        "observation_period_start_date",
        Some("observation_period_end_date"),
    ),
    (
        "visit_occurrence",
        "visit_start_date",
        Some("visit_end_date"),
    ),
    (
        "visit_detail",
        "visit_detail_start_date",
        Some("visit_detail_end_date"),
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
    (
        "procedure_occurrence",
        "procedure_date",
        Some("procedure_end_date"),
    ),
    (
        "device_exposure",
        "device_exposure_start_date",
        Some("device_exposure_end_date"),
    ),
    ("measurement", "measurement_date", None),
    ("observation", "observation_date", None),
    ("note", "note_date", None),
    ("specimen", "specimen_date", None),
    ("death", "death_date", None),
    ("drug_era", "drug_era_start_date", Some("drug_era_end_date")),
    (
        "condition_era",
        "condition_era_start_date",
        Some("condition_era_end_date"),
    ),
    ("dose_era", "dose_era_start_date", Some("dose_era_end_date")),
    (
        "payer_plan_period",
        "payer_plan_period_start_date",
        Some("payer_plan_period_end_date"),
    ),
];

/// The date a CDM table's records are dated by.
pub fn start_date(table: &str) -> Option<&'static str> {
    SHAPES
        .iter()
        .find(|(n, ..)| *n == table)
        .map(|(_, d, _)| *d)
}

/// Fields every row must have (DQD `isRequired`, the core of the CDM's list).
const REQUIRED: &[(&str, &str)] = &[
    ("person", "gender_concept_id"),
    ("person", "year_of_birth"),
    ("observation_period", "observation_period_start_date"),
    ("observation_period", "observation_period_end_date"),
    ("visit_occurrence", "visit_concept_id"),
    ("visit_occurrence", "visit_start_date"),
    ("condition_occurrence", "condition_concept_id"),
    ("condition_occurrence", "condition_start_date"),
    ("drug_exposure", "drug_concept_id"),
    ("drug_exposure", "drug_exposure_start_date"),
    ("procedure_occurrence", "procedure_concept_id"),
    ("procedure_occurrence", "procedure_date"),
    ("measurement", "measurement_concept_id"),
    ("measurement", "measurement_date"),
    ("observation", "observation_concept_id"),
    ("observation", "observation_date"),
    ("death", "death_date"),
];

/// The default plausible ranges (DQD's field-level values; the year of
/// birth's upper bound is next year).
fn default_ranges() -> Vec<super::Range> {
    use chrono::Datelike;
    let next_year = f64::from(chrono::Utc::now().year() + 1);
    let r = |table: &str, field: &str, low: Option<f64>, high: Option<f64>| super::Range {
        table: table.into(),
        field: field.into(),
        concept_id: None,
        low,
        high,
    };
    vec![
        r("person", "year_of_birth", Some(1850.0), Some(next_year)),
        r("person", "month_of_birth", Some(1.0), Some(12.0)),
        r("person", "day_of_birth", Some(1.0), Some(31.0)),
        r("drug_exposure", "days_supply", Some(1.0), Some(365.0)),
        r("drug_exposure", "refills", Some(0.0), Some(24.0)),
        r("drug_exposure", "quantity", Some(0.0000001), None),
    ]
}

/// A planned query: its SQL and the checks whose counts it returns as
/// `v_<i>` (violating) and `d_<i>` (denominator).
#[derive(Debug, Clone)]
pub struct Query {
    pub sql: String,
    pub checks: Vec<CheckDef>,
}

/// What the checks of a store are and how they are computed.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub queries: Vec<Query>,
    /// Checks that do not apply, with the reason.
    pub not_applicable: Vec<(CheckDef, String)>,
    /// Checks answered from the delivered schema, without a query.
    pub computed: Vec<CheckResult>,
}

impl Plan {
    /// Every check, in order.
    pub fn checks(&self) -> Vec<CheckDef> {
        let mut out: Vec<CheckDef> = self
            .queries
            .iter()
            .flat_map(|q| q.checks.iter().cloned())
            .collect();
        out.extend(self.computed.iter().map(|r| r.check.clone()));
        out.extend(self.not_applicable.iter().map(|(c, _)| c.clone()));
        out
    }
}

struct Builder<'a> {
    config: &'a QualityConfig,
}

impl Builder<'_> {
    #[allow(clippy::too_many_arguments)]
    fn def(
        &self,
        check_type: &str,
        source: &str,
        table: &str,
        field: Option<&str>,
        concept: Option<i64>,
        description: String,
    ) -> CheckDef {
        let (category, subcategory, threshold, severity) = defaults(check_type);
        let mut id = format!("{source}.{table}");
        if let Some(f) = field {
            id.push('.');
            id.push_str(f);
        }
        if let Some(c) = concept {
            id.push_str(&format!(".{c}"));
        }
        id.push('.');
        id.push_str(check_type);
        let level = if concept.is_some() {
            "concept"
        } else if field.is_some() {
            "field"
        } else {
            "table"
        };
        CheckDef {
            threshold_pct: self.config.threshold(&id, check_type, threshold),
            severity: self.config.severity(&id, check_type, severity),
            check_id: id,
            check_type: check_type.into(),
            category: category.into(),
            subcategory: subcategory.into(),
            level: level.into(),
            schema_name: source.into(),
            table_name: table.into(),
            field_name: field.map(str::to_owned),
            concept_id: concept,
            description,
        }
    }
}

/// Kahn category and subcategory, DQD-like default threshold (percent) and severity.
fn defaults(check_type: &str) -> (&'static str, &'static str, f64, &'static str) {
    match check_type {
        "is_required" => ("Conformance", "Relational", 0.0, "fatal"),
        "is_primary_key" => ("Conformance", "Relational", 0.0, "fatal"),
        "is_foreign_key" => ("Conformance", "Relational", 0.0, "fatal"),
        "fk_concept_exists" => ("Conformance", "Relational", 0.0, "fatal"),
        "fk_domain" => ("Conformance", "Value", 0.0, "convention"),
        "fk_class" => ("Conformance", "Computational", 0.0, "convention"),
        "cdm_field" => ("Conformance", "Relational", 0.0, "fatal"),
        "cdm_datatype" => ("Conformance", "Value", 0.0, "fatal"),
        "is_standard_valid_concept" => ("Conformance", "Value", 0.0, "convention"),
        "standard_concept_record_completeness" => ("Completeness", "", 5.0, "convention"),
        "measure_person_completeness" => ("Completeness", "", 0.0, "characterization"),
        "unlinked_keys" => ("Completeness", "Linkage", 10.0, "characterization"),
        "plausible_value_low" | "plausible_value_high" => {
            ("Plausibility", "Atemporal", 1.0, "characterization")
        }
        "plausible_date_not_future" => ("Plausibility", "Temporal", 0.0, "characterization"),
        "plausible_start_before_end" => ("Plausibility", "Temporal", 1.0, "characterization"),
        "plausible_after_birth" | "plausible_before_death" => {
            ("Plausibility", "Temporal", 1.0, "characterization")
        }
        "plausible_within_observation" => ("Plausibility", "Temporal", 5.0, "characterization"),
        "plausible_no_overlapping_periods" => ("Plausibility", "Temporal", 0.0, "characterization"),
        _ => ("Plausibility", "", 0.0, "characterization"),
    }
}

/// The domain a concept field's concepts belong to (DQD `fkDomain`).
fn expected_domain(table: &str, field: &str) -> Option<&'static str> {
    if field.ends_with("_type_concept_id") {
        return Some("Type Concept");
    }
    Some(match (table, field) {
        (_, "gender_concept_id") => "Gender",
        (_, "visit_concept_id") | (_, "visit_detail_concept_id") => "Visit",
        (_, "condition_concept_id") => "Condition",
        (_, "drug_concept_id") => "Drug",
        (_, "procedure_concept_id") => "Procedure",
        (_, "measurement_concept_id") => "Measurement",
        (_, "observation_concept_id") => "Observation",
        (_, "device_concept_id") => "Device",
        (_, "specimen_concept_id") => "Specimen",
        (_, "unit_concept_id") => "Unit",
        _ => return None,
    })
}

/// The concept class a field's concepts must have (DQD `fkClass`: eras are
/// of ingredients).
fn expected_class(table: &str, field: &str) -> Option<&'static str> {
    match (table, field) {
        ("drug_era" | "dose_era", "drug_concept_id") => Some("Ingredient"),
        _ => None,
    }
}

/// Whether the table shows a column with values from its files.
fn delivered(t: &TableDef, column: &str) -> bool {
    t.columns
        .iter()
        .any(|c| c.name == column && matches!(c.source, ColumnSource::File(_)))
}

fn shown(t: &TableDef, column: &str) -> bool {
    t.columns.iter().any(|c| c.name == column)
}

fn find<'a>(store: &'a Store, source: &str, table: &str) -> Option<&'a TableDef> {
    store
        .tables()
        .iter()
        .find(|t| t.schema == source && t.name == table)
}

/// One row-level check of the main query: its definition, the condition of
/// a violating row, and the rows it counts over.
struct RowCheck {
    def: CheckDef,
    violating: String,
    denominator: String,
}

/// The checks that apply to the store and their queries.
pub fn plan(store: &Store, config: &QualityConfig) -> Plan {
    let b = Builder { config };
    let mut plan = Plan::default();
    let vocab = store
        .tables()
        .iter()
        .find(|t| t.schema == "vocab" && t.name == "concept");
    let has_vocab = vocab.is_some();
    let has_domains = vocab.is_some_and(|v| delivered(v, "domain_id"));
    let has_classes = vocab.is_some_and(|v| delivered(v, "concept_class_id"));
    let mut ranges = default_ranges();
    ranges.extend(config.ranges.iter().cloned());
    let grace = config.death_grace_days;
    for spec in &store.manifest().sources {
        let source = spec.name.as_str();
        let person = find(store, source, "person");
        let death = find(store, source, "death").filter(|d| delivered(d, "death_date"));
        let obs = find(store, source, "observation_period").filter(|o| {
            delivered(o, "observation_period_start_date")
                && delivered(o, "observation_period_end_date")
        });
        let mut tables: Vec<&TableDef> = store
            .tables()
            .iter()
            .filter(|t| t.schema == source)
            .collect();
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        for t in tables {
            let name = t.name.as_str();
            let table_sql = format!("{}.{}", ident(source), ident(name));
            let cdm = tsunagu_catalog::cdm::table(name).is_some();
            let shape = SHAPES.iter().find(|(n, ..)| *n == name);
            let mut rows: Vec<RowCheck> = Vec::new();
            let mut joins: Vec<String> = Vec::new();
            let all = "TRUE".to_string();
            if let Some(spec) = tsunagu_catalog::cdm::table(name) {
                let required: Vec<&str> = REQUIRED
                    .iter()
                    .filter(|(tn, _)| *tn == name)
                    .map(|(_, f)| *f)
                    .collect();
                let missing = required.iter().filter(|f| !delivered(t, f)).count();
                plan.computed.push(CheckResult::counted(
                    b.def(
                        "cdm_field",
                        source,
                        name,
                        None,
                        None,
                        "a field the data model requires is not delivered".into(),
                    ),
                    missing as u64,
                    required.len() as u64,
                ));
                let integers: Vec<&str> = spec
                    .columns
                    .iter()
                    .filter(|(c, ty)| {
                        *ty == tsunagu_catalog::cdm::CdmType::Integer && delivered(t, c)
                    })
                    .map(|(c, _)| *c)
                    .collect();
                let wrong = integers
                    .iter()
                    .filter(|c| {
                        t.file_schema
                            .field_with_name(c)
                            .is_ok_and(|f| !f.data_type().is_integer())
                    })
                    .count();
                plan.computed.push(CheckResult::counted(
                    b.def(
                        "cdm_datatype",
                        source,
                        name,
                        None,
                        None,
                        "an integer field of the data model is delivered as another type".into(),
                    ),
                    wrong as u64,
                    integers.len() as u64,
                ));
            }
            // Required fields; the person key of every person-level table.
            if t.is_person_level() {
                rows.push(RowCheck {
                    def: b.def(
                        "is_required",
                        source,
                        name,
                        Some("person_key"),
                        None,
                        "the person key is missing".into(),
                    ),
                    violating: "t.person_key IS NULL".into(),
                    denominator: all.clone(),
                });
            }
            for (_, field) in REQUIRED.iter().filter(|(tn, _)| *tn == name) {
                if !shown(t, field) {
                    continue;
                }
                rows.push(RowCheck {
                    def: b.def(
                        "is_required",
                        source,
                        name,
                        Some(field),
                        None,
                        format!("{field} is missing (NULL)"),
                    ),
                    violating: format!("t.{} IS NULL", ident(field)),
                    denominator: all.clone(),
                });
            }
            // Foreign key to the source's person table.
            if t.is_person_level() && name != "person" {
                let def = b.def(
                    "is_foreign_key",
                    source,
                    name,
                    Some("person_key"),
                    None,
                    format!("the person key has no row in {source}.person"),
                );
                if person.is_some() {
                    joins.push(format!(
                        "LEFT JOIN (SELECT DISTINCT person_key AS k FROM {}.\"person\") pk ON t.person_key = pk.k",
                        ident(source)
                    ));
                    rows.push(RowCheck {
                        def,
                        violating: "t.person_key IS NOT NULL AND pk.k IS NULL".into(),
                        denominator: all.clone(),
                    });
                } else {
                    plan.not_applicable
                        .push((def, "the source has no person table".into()));
                }
            }
            // Concepts: in the vocabulary, standard and valid, mapped (not 0).
            if cdm {
                let concept_fields: Vec<&str> = t
                    .columns
                    .iter()
                    .filter(|c| {
                        c.name.ends_with("_concept_id")
                            && !c.name.ends_with("_source_concept_id")
                            && matches!(c.source, ColumnSource::File(_))
                    })
                    .map(|c| c.name.as_str())
                    .collect();
                let main = super::characterization::main_concept(t);
                for (i, field) in concept_fields.iter().enumerate() {
                    let col = format!("t.{}", ident(field));
                    // Optional concept fields hold 0 by convention when unused.
                    let mapped_required =
                        main.as_deref() == Some(*field) || *field == "gender_concept_id";
                    if mapped_required {
                        rows.push(RowCheck {
                            def: b.def(
                                "standard_concept_record_completeness",
                                source,
                                name,
                                Some(field),
                                None,
                                format!("{field} is 0 (no standard concept mapped)"),
                            ),
                            violating: format!("{col} = 0"),
                            denominator: all.clone(),
                        });
                    }
                    let fk = b.def(
                        "fk_concept_exists",
                        source,
                        name,
                        Some(field),
                        None,
                        format!("{field} is not in vocab.concept"),
                    );
                    let standard = b.def(
                        "is_standard_valid_concept",
                        source,
                        name,
                        Some(field),
                        None,
                        format!("{field} is not a standard, valid concept"),
                    );
                    if has_vocab {
                        let alias = format!("c{i}");
                        joins.push(format!(
                            "LEFT JOIN concepts {alias} ON {col} = {alias}.concept_id"
                        ));
                        rows.push(RowCheck {
                            def: fk,
                            violating: format!(
                                "{col} IS NOT NULL AND {col} <> 0 AND {alias}.concept_id IS NULL"
                            ),
                            denominator: all.clone(),
                        });
                        rows.push(RowCheck {
                            def: standard,
                            violating: format!(
                                "{col} IS NOT NULL AND {col} <> 0 AND {alias}.concept_id IS NOT NULL \
                                 AND (coalesce({alias}.standard_concept, '') <> 'S' OR {alias}.invalid_reason IS NOT NULL)"
                            ),
                            denominator: all.clone(),
                        });
                        // The concept's domain and class, where the field prescribes one.
                        for (check, attribute, expected, available, missing) in [
                            (
                                "fk_domain",
                                "domain_id",
                                expected_domain(name, field),
                                has_domains,
                                "domains",
                            ),
                            (
                                "fk_class",
                                "concept_class_id",
                                expected_class(name, field),
                                has_classes,
                                "concept classes",
                            ),
                        ] {
                            let Some(expected) = expected else { continue };
                            let what = attribute.trim_end_matches("_id").replace('_', " ");
                            let def = b.def(
                                check,
                                source,
                                name,
                                Some(field),
                                None,
                                format!("{field} is a concept of another {what} than {expected}"),
                            );
                            if available {
                                rows.push(RowCheck {
                                    def,
                                    violating: format!(
                                        "{col} IS NOT NULL AND {col} <> 0 AND {alias}.concept_id IS NOT NULL \
                                         AND coalesce({alias}.{attribute}, '') <> '{expected}'"
                                    ),
                                    denominator: all.clone(),
                                });
                            } else {
                                plan.not_applicable
                                    .push((def, format!("the vocabulary has no {missing}")));
                            }
                        }
                    } else {
                        plan.not_applicable
                            .push((fk, "the store has no vocabulary".into()));
                        plan.not_applicable
                            .push((standard, "the store has no vocabulary".into()));
                    }
                }
            }
            // Plausible values.
            let main_concept = format!("{}_concept_id", name.trim_end_matches("_occurrence"))
                .replace("drug_exposure_concept_id", "drug_concept_id")
                .replace("device_exposure_concept_id", "device_concept_id");
            for r in ranges.iter().filter(|r| r.table == name) {
                for (kind, bound, op) in [
                    ("plausible_value_low", r.low, "<"),
                    ("plausible_value_high", r.high, ">"),
                ] {
                    let Some(bound) = bound else { continue };
                    let def = b.def(
                        kind,
                        source,
                        name,
                        Some(&r.field),
                        r.concept_id,
                        format!(
                            "{} is {} {bound}",
                            r.field,
                            if op == "<" { "below" } else { "above" }
                        ),
                    );
                    if !delivered(t, &r.field)
                        || (r.concept_id.is_some() && !delivered(t, &main_concept))
                    {
                        plan.not_applicable
                            .push((def, "the field is not delivered".into()));
                        continue;
                    }
                    let col = format!("t.{}", ident(&r.field));
                    let denominator = match r.concept_id {
                        Some(c) => format!("t.{} = {c}", ident(&main_concept)),
                        None => all.clone(),
                    };
                    rows.push(RowCheck {
                        def,
                        violating: format!(
                            "({denominator}) AND CAST({col} AS DOUBLE) {op} {bound:?}"
                        ),
                        denominator,
                    });
                }
            }
            // Dates: not in the future, start before end, after birth, before death.
            if let Some((_, date, end)) = shape.filter(|(_, d, _)| delivered(t, d)) {
                let d = format!("t.{}", ident(date));
                rows.push(RowCheck {
                    def: b.def(
                        "plausible_date_not_future",
                        source,
                        name,
                        Some(date),
                        None,
                        format!("{date} is after the day the checks ran"),
                    ),
                    violating: format!("{d} > current_date"),
                    denominator: all.clone(),
                });
                if let Some(end) = end.filter(|e| delivered(t, e)) {
                    let e = format!("t.{}", ident(end));
                    rows.push(RowCheck {
                        def: b.def(
                            "plausible_start_before_end",
                            source,
                            name,
                            Some(end),
                            None,
                            format!("{end} is before {date}"),
                        ),
                        violating: format!("{e} < {d}"),
                        denominator: all.clone(),
                    });
                }
                if t.is_person_level() && name != "person" {
                    let after_birth = b.def(
                        "plausible_after_birth",
                        source,
                        name,
                        Some(date),
                        None,
                        format!("{date} is before the person's birth"),
                    );
                    match person.filter(|p| delivered(p, "year_of_birth")) {
                        Some(p) => {
                            let month = if delivered(p, "month_of_birth") {
                                "CASE WHEN month_of_birth BETWEEN 1 AND 12 THEN month_of_birth ELSE 1 END"
                            } else {
                                "1"
                            };
                            let day = if delivered(p, "day_of_birth") {
                                "CASE WHEN day_of_birth BETWEEN 1 AND 31 THEN day_of_birth - 1 ELSE 0 END"
                            } else {
                                "0"
                            };
                            joins.push(format!(
                                "LEFT JOIN (SELECT person_id AS pid, min(make_date(CAST(year_of_birth AS INT), CAST({month} AS INT), 1) + CAST({day} AS INT)) AS birth \
                                 FROM {}.\"person\" WHERE year_of_birth BETWEEN 1 AND 9999 GROUP BY person_id) pb ON t.person_id = pb.pid",
                                ident(source)
                            ));
                            rows.push(RowCheck {
                                def: after_birth,
                                violating: format!("{d} < pb.birth"),
                                denominator: all.clone(),
                            });
                        }
                        None => plan
                            .not_applicable
                            .push((after_birth, "the source has no year of birth".into())),
                    }
                    if name != "death" {
                        let before_death = b.def(
                            "plausible_before_death",
                            source,
                            name,
                            Some(date),
                            None,
                            format!("{date} is more than {grace} days after death"),
                        );
                        if death.is_some() {
                            joins.push(format!(
                                "LEFT JOIN (SELECT person_id AS pid, min(death_date) AS death FROM {}.\"death\" GROUP BY person_id) pd ON t.person_id = pd.pid",
                                ident(source)
                            ));
                            rows.push(RowCheck {
                                def: before_death,
                                violating: format!("{d} > pd.death + {grace}"),
                                denominator: all.clone(),
                            });
                        } else {
                            plan.not_applicable
                                .push((before_death, "the source has no death table".into()));
                        }
                    }
                }
            }
            if !rows.is_empty() {
                let mut select = vec![];
                for (i, r) in rows.iter().enumerate() {
                    select.push(format!(
                        "count(CASE WHEN {} THEN 1 END) AS v_{i}, count(CASE WHEN {} THEN 1 END) AS d_{i}",
                        r.violating, r.denominator
                    ));
                    // The persons behind the violating rows, as a person set.
                    if t.is_person_level() && shown(t, "person_id") {
                        select.push(format!(
                            "rb_cardinality(rb_build_agg(CASE WHEN {} THEN t.person_id END)) AS p_{i}",
                            r.violating
                        ));
                    }
                }
                let with = if joins.iter().any(|j| j.contains("concepts")) {
                    "WITH concepts AS (SELECT concept_id, max(standard_concept) AS standard_concept, max(invalid_reason) AS invalid_reason, \
                     max(domain_id) AS domain_id, max(concept_class_id) AS concept_class_id FROM vocab.concept GROUP BY concept_id) "
                } else {
                    ""
                };
                plan.queries.push(Query {
                    sql: format!(
                        "{with}SELECT {} FROM {}",
                        select.join(", "),
                        lookups_first(&format!("{table_sql} t"), &joins)
                    ),
                    checks: rows.into_iter().map(|r| r.def).collect(),
                });
            }
            // Primary key: the record id is unique (the person key, in person).
            let pk = if name == "person" {
                Some("person_key".to_string())
            } else if cdm {
                Some(format!("{name}_id")).filter(|c| delivered(t, c))
            } else {
                None
            };
            if let Some(pk) = pk {
                plan.queries.push(Query {
                    sql: format!(
                        "SELECT coalesce(sum(CASE WHEN c > 1 THEN c ELSE 0 END), 0) AS v_0, coalesce(sum(c), 0) AS d_0 \
                         FROM (SELECT count(*) AS c FROM {table_sql} WHERE {} IS NOT NULL GROUP BY {})",
                        ident(&pk),
                        ident(&pk)
                    ),
                    checks: vec![b.def(
                        "is_primary_key",
                        source,
                        name,
                        Some(&pk),
                        None,
                        format!("{pk} is not unique (rows sharing a value)"),
                    )],
                });
            }
            // Within an observation period of the person.
            if let Some((_, date, _)) = shape.filter(|(n, d, _)| {
                t.is_person_level() && *n != "observation_period" && delivered(t, d)
            }) {
                let def = b.def(
                    "plausible_within_observation",
                    source,
                    name,
                    Some(date),
                    None,
                    format!("{date} is outside every observation period of the person"),
                );
                if obs.is_some() {
                    plan.queries.push(Query {
                        sql: format!(
                            "SELECT (SELECT count(*) FROM {table_sql} t WHERE t.{d} IS NOT NULL AND NOT EXISTS \
                             (SELECT 1 FROM {}.\"observation_period\" o WHERE o.person_id = t.person_id \
                             AND t.{d} >= o.observation_period_start_date AND t.{d} <= o.observation_period_end_date)) AS v_0, \
                             (SELECT count(*) FROM {table_sql}) AS d_0",
                            ident(source),
                            d = ident(date)
                        ),
                        checks: vec![def],
                    });
                } else {
                    plan.not_applicable
                        .push((def, "the source has no observation periods".into()));
                }
            }
        }
        // Observation periods: every person has one; periods of a key do not overlap.
        if obs.is_some() {
            let src = ident(source);
            if person.is_some() {
                plan.queries.push(Query {
                    sql: format!(
                        "SELECT (SELECT count(*) FROM (SELECT DISTINCT person_id FROM {src}.\"person\") p WHERE NOT EXISTS \
                         (SELECT 1 FROM {src}.\"observation_period\" o WHERE o.person_id = p.person_id)) AS v_0, \
                         (SELECT count(DISTINCT person_id) FROM {src}.\"person\") AS d_0"
                    ),
                    checks: vec![b.def(
                        "measure_person_completeness",
                        source,
                        "observation_period",
                        None,
                        None,
                        format!("a person of {source}.person has no observation period"),
                    )],
                });
            }
            plan.queries.push(Query {
                sql: format!(
                    "SELECT count(CASE WHEN prev_end >= s THEN 1 END) AS v_0, count(*) AS d_0 FROM \
                     (SELECT s, max(e) OVER (PARTITION BY person_key ORDER BY s, e ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end \
                      FROM (SELECT person_key, observation_period_start_date AS s, observation_period_end_date AS e FROM {src}.\"observation_period\"))"
                ),
                checks: vec![b.def(
                    "plausible_no_overlapping_periods",
                    source,
                    "observation_period",
                    Some("observation_period_start_date"),
                    None,
                    "the period starts on or before the end of an earlier period of the same key"
                        .into(),
                )],
            });
        }
    }
    plan
}

/// Runs the planned queries; a query that fails marks its checks `Error`.
/// The table's rows joined to its lookups (`LEFT JOIN rel ON cond` each),
/// written with every lookup on the left of a RIGHT JOIN: run without join
/// repartitioning (see [`execute`]), each lookup is the hash table and the
/// table's rows stream through all of them where they are.
fn lookups_first(table: &str, joins: &[String]) -> String {
    let mut from = table.to_owned();
    for (i, j) in joins.iter().enumerate() {
        let j = j.strip_prefix("LEFT JOIN ").unwrap_or(j);
        let Some((rel, cond)) = j.rsplit_once(" ON ") else {
            from = format!("{from} LEFT JOIN {j}");
            continue;
        };
        from = if i == 0 {
            format!("{rel} RIGHT JOIN {from} ON {cond}")
        } else {
            format!("{rel} RIGHT JOIN ({from}) ON {cond}")
        };
    }
    from
}

/// Runs the checks' queries. Joins are not repartitioned: the lookups are
/// small and the table's rows are many (one pass each, no shuffle).
pub async fn execute(ctx: &SessionContext, plan: &Plan) -> Vec<CheckResult> {
    let mut state = ctx.state();
    state.config_mut().options_mut().optimizer.repartition_joins = false;
    let ctx = &SessionContext::new_with_state(state);
    let mut out = Vec::new();
    for q in &plan.queries {
        let started = std::time::Instant::now();
        let batches = match ctx.sql(&q.sql).await {
            Ok(df) => df.collect().await,
            Err(e) => Err(e),
        };
        log::info!(
            "quality checks: {} ms: {}",
            started.elapsed().as_millis(),
            q.sql
        );
        match batches {
            Ok(batches) => {
                for (i, def) in q.checks.iter().enumerate() {
                    let v = first_i64(&batches, &format!("v_{i}")).unwrap_or(0).max(0) as u64;
                    let d = first_i64(&batches, &format!("d_{i}")).unwrap_or(0).max(0) as u64;
                    let mut r = CheckResult::counted(def.clone(), v, d);
                    r.violating_persons =
                        first_i64(&batches, &format!("p_{i}")).map(|p| p.max(0) as u64);
                    out.push(r);
                }
            }
            Err(e) => {
                log::warn!("quality check query failed: {e}");
                for def in &q.checks {
                    out.push(CheckResult {
                        check: def.clone(),
                        status: Status::Error,
                        violating_rows: None,
                        denominator_rows: None,
                        violating_persons: None,
                        pct_violating: None,
                        note: Some("the check's query failed".into()),
                    });
                }
            }
        }
    }
    out.extend(plan.computed.iter().cloned());
    for (def, why) in &plan.not_applicable {
        out.push(CheckResult::not_applicable(def.clone(), why));
    }
    out
}

/// The linkage checks: keys of each source that have no link row.
pub fn linkage_results(linkage: &Linkage, config: &QualityConfig) -> Vec<CheckResult> {
    let b = Builder { config };
    linkage
        .sources
        .iter()
        .map(|s| {
            let def = b.def(
                "unlinked_keys",
                &s.source,
                "person_link",
                Some("person_key"),
                None,
                format!(
                    "a person key of {} has no row in the linkage table",
                    s.source
                ),
            );
            if linkage.has_linkage {
                CheckResult::counted(def, s.unlinked_keys, s.keys)
            } else {
                CheckResult::not_applicable(def, "the store has no linkage table")
            }
        })
        .collect()
}
