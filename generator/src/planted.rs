//! The implausible records the generator plants, counted as they are
//! written, so that the data quality checks have an exact answer.
//!
//! The counts are written to `planted.json` at the store's root; the
//! ranges the checks should apply to the health-check values are written to
//! `quality.toml`, as a data holder would document its local codes.

use serde::Serialize;

/// Share of dispensings whose days supply is keyed as 0.
pub const DAYS_SUPPLY_ZERO: f64 = 0.0005;
/// Share of health-check values keyed with a misplaced decimal point (ten times the value).
pub const VALUE_TIMES_TEN: f64 = 0.001;
/// Share of claims keys whose observation period is delivered twice, overlapping.
pub const OVERLAPPING_PERIOD: f64 = 0.002;
/// Share of case-mix person rows whose birth year is keyed as 1800.
pub const BIRTH_YEAR_1800: f64 = 0.003;

/// Plausible ranges of the health-check values: (concept id, name, low, high).
pub const MEASUREMENT_RANGES: &[(i64, &str, f64, f64)] = &[
    (5_000_001, "Body mass index", 5.0, 100.0),
    (5_000_002, "Systolic blood pressure", 40.0, 300.0),
    (5_000_003, "Hemoglobin A1c (NGSP)", 2.0, 20.0),
    (5_000_004, "LDL cholesterol", -1000.0, 1000.0),
];

/// True when a health-check value lies inside its documented range.
pub fn plausible_measurement(concept: i64, value: f64) -> bool {
    MEASUREMENT_RANGES
        .iter()
        .find(|(c, ..)| *c == concept)
        .is_none_or(|(_, _, low, high)| value >= *low && value <= *high)
}

/// Counts of planted implausible records, by the table they are in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Planted {
    /// `ndb.observation_period` rows overlapping an earlier period of the same key.
    pub ndb_overlapping_periods: u64,
    /// `ndb.drug_exposure` rows whose end date is before their start.
    pub ndb_drug_end_before_start: u64,
    /// `ndb.drug_exposure` rows with `days_supply = 0`.
    pub ndb_days_supply_zero: u64,
    /// `ndb.condition_occurrence` rows with `condition_concept_id = 0`.
    pub ndb_unmapped_conditions: u64,
    /// `ndb.visit_occurrence` rows outside every observation period of the person.
    pub ndb_visits_outside_observation: u64,
    /// `ndb.condition_occurrence` rows outside every observation period of the person.
    pub ndb_conditions_outside_observation: u64,
    /// `ndb` visit and condition rows dated before the person's birth.
    pub ndb_events_before_birth: u64,
    /// `ndb.measurement` rows dated in 2031 (in the future, outside observation).
    pub ndb_future_measurements: u64,
    /// `ndb.measurement` values outside [`MEASUREMENT_RANGES`].
    pub ndb_implausible_measurements: u64,
    /// `dpc.person` rows with `year_of_birth = 1800`.
    pub dpc_birth_year_1800: u64,
    /// `dpc.visit_occurrence` rows whose key has no `dpc.person` row.
    pub dpc_visits_without_person: u64,
    /// `dpc.condition_occurrence` rows whose key has no `dpc.person` row.
    pub dpc_conditions_without_person: u64,
    /// `dpc.procedure_occurrence` rows whose key has no `dpc.person` row.
    pub dpc_procedures_without_person: u64,
}

impl Planted {
    /// Adds another chunk's counts.
    pub fn add(&mut self, o: &Planted) {
        self.ndb_overlapping_periods += o.ndb_overlapping_periods;
        self.ndb_drug_end_before_start += o.ndb_drug_end_before_start;
        self.ndb_days_supply_zero += o.ndb_days_supply_zero;
        self.ndb_unmapped_conditions += o.ndb_unmapped_conditions;
        self.ndb_visits_outside_observation += o.ndb_visits_outside_observation;
        self.ndb_conditions_outside_observation += o.ndb_conditions_outside_observation;
        self.ndb_events_before_birth += o.ndb_events_before_birth;
        self.ndb_future_measurements += o.ndb_future_measurements;
        self.ndb_implausible_measurements += o.ndb_implausible_measurements;
        self.dpc_birth_year_1800 += o.dpc_birth_year_1800;
        self.dpc_visits_without_person += o.dpc_visits_without_person;
        self.dpc_conditions_without_person += o.dpc_conditions_without_person;
        self.dpc_procedures_without_person += o.dpc_procedures_without_person;
    }
}

/// The `quality.toml` of a generated store: the ranges of its local codes.
pub fn quality_toml() -> String {
    let mut out = String::from(
        "# Plausible ranges of the health-check values (JP Health Check codes),\n# read by `tsunagu quality`.\n",
    );
    for (concept, name, low, high) in MEASUREMENT_RANGES {
        out.push_str(&format!(
            "\n[[range]]\n# {name}\ntable = \"measurement\"\nfield = \"value_as_number\"\nconcept_id = {concept}\nlow = {low:?}\nhigh = {high:?}\n"
        ));
    }
    out
}
