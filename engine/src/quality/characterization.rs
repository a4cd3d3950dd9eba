//! Achilles-like characterization: persons by sex, birth decade and age
//! decile, observation time by calendar year, records by calendar year and
//! by concept, persons shared between sources.
//!
//! Rows are long-format, as Achilles' `achilles_results`: an analysis, its
//! strata as text, a count of records (or person-days) and of persons.

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::prelude::SessionContext;
use serde::Serialize;
use tsunagu_catalog::Store;
use tsunagu_catalog::tables::{ColumnSource, TableDef};

use super::{Linkage, first_i64, ident};
use crate::error::Result;

/// Persons per source.
pub const PERSONS: i64 = 1;
/// Persons by gender concept.
pub const PERSONS_BY_GENDER: i64 = 2;
/// Persons by decade of birth.
pub const PERSONS_BY_BIRTH_DECADE: i64 = 3;
/// Persons by age decile at the start of their first observation period, and gender.
pub const PERSONS_BY_AGE_DECILE: i64 = 4;
/// Person-days observed and persons observed, by calendar year.
pub const OBSERVATION_BY_YEAR: i64 = 5;
/// Persons by prefecture (`person.location_id`, JIS X 0401 code).
pub const PERSONS_BY_PREFECTURE: i64 = 6;
/// Records and persons by calendar year of the record's date, per table.
pub const RECORDS_BY_YEAR: i64 = 10;
/// Records and persons by the table's main concept.
pub const RECORDS_BY_CONCEPT: i64 = 11;
/// Persons of a source also seen in another source.
pub const PERSONS_IN_BOTH: i64 = 20;
/// Delivery lag: days from a delivered file's latest record to the file's
/// modification time, per file of a table delivered as a folder of files.
pub const DELIVERY_LAG: i64 = 30;

/// One count.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CharacterizationRow {
    pub analysis_id: i64,
    pub analysis: &'static str,
    pub schema_name: String,
    pub table_name: Option<String>,
    pub stratum_1: Option<String>,
    pub stratum_2: Option<String>,
    /// Records (person-days for [`OBSERVATION_BY_YEAR`]).
    pub count_value: Option<i64>,
    /// Distinct persons.
    pub person_count: Option<i64>,
}

/// The name of an analysis.
pub fn analysis_name(id: i64) -> &'static str {
    match id {
        PERSONS => "persons",
        PERSONS_BY_GENDER => "persons by gender concept",
        PERSONS_BY_BIRTH_DECADE => "persons by decade of birth",
        PERSONS_BY_AGE_DECILE => "persons by age decile at first observation, and gender concept",
        OBSERVATION_BY_YEAR => "person-days and persons observed, by calendar year",
        PERSONS_BY_PREFECTURE => "persons by prefecture",
        RECORDS_BY_YEAR => "records and persons by calendar year",
        RECORDS_BY_CONCEPT => "records and persons by concept",
        PERSONS_IN_BOTH => "persons also seen in another source",
        DELIVERY_LAG => "days from a delivery's latest record to its file's time",
        _ => "other",
    }
}

fn delivered(t: &TableDef, column: &str) -> bool {
    t.columns
        .iter()
        .any(|c| c.name == column && matches!(c.source, ColumnSource::File(_)))
}

/// The date a table's records are counted by: the CDM start date, else the
/// first delivered date column.
pub fn record_date(t: &TableDef) -> Option<String> {
    let cdm = super::checks::start_date(&t.name).filter(|d| delivered(t, d));
    cdm.map(str::to_owned).or_else(|| {
        t.columns
            .iter()
            .find(|c| c.data_type == DataType::Date32 && matches!(c.source, ColumnSource::File(_)))
            .map(|c| c.name.clone())
    })
}

/// The main concept of a CDM table (`condition_concept_id`, ...), if delivered.
pub fn main_concept(t: &TableDef) -> Option<String> {
    let name = match t.name.as_str() {
        "drug_exposure" | "drug_era" | "dose_era" => "drug_concept_id".to_string(),
        "device_exposure" => "device_concept_id".into(),
        "condition_occurrence" | "condition_era" => "condition_concept_id".into(),
        "visit_occurrence" => "visit_concept_id".into(),
        "procedure_occurrence" => "procedure_concept_id".into(),
        "measurement" => "measurement_concept_id".into(),
        "observation" => "observation_concept_id".into(),
        "death" => "cause_concept_id".into(),
        _ => return None,
    };
    Some(name).filter(|n| delivered(t, n))
}

/// (stratum_1, stratum_2, count_value, person_count) of one row.
type Stratum = (Option<String>, Option<String>, Option<i64>, Option<i64>);

/// Rows of (stratum_1, stratum_2, count_value, person_count) from a query's
/// columns `s1`, `s2`, `n`, `p` (each optional).
async fn strata(ctx: &SessionContext, sql: &str) -> Result<Vec<Stratum>> {
    let started = std::time::Instant::now();
    let batches: Vec<RecordBatch> = ctx.sql(sql).await?.collect().await?;
    log::info!(
        "characterization: {} ms: {sql}",
        started.elapsed().as_millis()
    );
    let mut out = Vec::new();
    for b in &batches {
        let text = |name: &str| -> Result<Option<datafusion::arrow::array::ArrayRef>> {
            Ok(match b.column_by_name(name) {
                Some(c) => Some(cast(c, &DataType::Utf8)?),
                None => None,
            })
        };
        let int = |name: &str| -> Result<Option<datafusion::arrow::array::ArrayRef>> {
            Ok(match b.column_by_name(name) {
                Some(c) => Some(cast(c, &DataType::Int64)?),
                None => None,
            })
        };
        let (s1, s2, n, p) = (text("s1")?, text("s2")?, int("n")?, int("p")?);
        for i in 0..b.num_rows() {
            let s = |a: &Option<datafusion::arrow::array::ArrayRef>| {
                a.as_ref().and_then(|a| {
                    let a = a.as_string::<i32>();
                    (!a.is_null(i)).then(|| a.value(i).to_owned())
                })
            };
            let v = |a: &Option<datafusion::arrow::array::ArrayRef>| {
                a.as_ref().and_then(|a| {
                    let a = a.as_primitive::<Int64Type>();
                    (!a.is_null(i)).then(|| a.value(i))
                })
            };
            out.push((s(&s1), s(&s2), v(&n), v(&p)));
        }
    }
    Ok(out)
}

/// Computes the characterization of every source.
pub async fn run(
    ctx: &SessionContext,
    store: &Store,
    linkage: &Linkage,
) -> Result<Vec<CharacterizationRow>> {
    let mut out = Vec::new();
    let mut push = |analysis_id: i64, source: &str, table: Option<&str>, rows: Vec<Stratum>| {
        for (s1, s2, n, p) in rows {
            out.push(CharacterizationRow {
                analysis_id,
                analysis: analysis_name(analysis_id),
                schema_name: source.to_owned(),
                table_name: table.map(str::to_owned),
                stratum_1: s1,
                stratum_2: s2,
                count_value: n,
                person_count: p,
            });
        }
    };
    for s in &linkage.sources {
        push(
            PERSONS,
            &s.source,
            None,
            vec![(None, None, None, Some(s.persons as i64))],
        );
    }
    for pair in &linkage.pairs {
        push(
            PERSONS_IN_BOTH,
            &pair.from,
            None,
            vec![(
                Some(pair.to.clone()),
                None,
                None,
                Some(pair.persons_in_both as i64),
            )],
        );
    }
    let find = |source: &str, table: &str| {
        store
            .tables()
            .iter()
            .find(|t| t.schema == source && t.name == table)
    };
    for spec in &store.manifest().sources {
        let source = spec.name.as_str();
        let src = ident(source);
        let person = find(source, "person");
        if let Some(p) = person {
            if delivered(p, "gender_concept_id") {
                let rows = strata(ctx, &format!(
                    "SELECT CAST(gender_concept_id AS VARCHAR) AS s1, count(DISTINCT person_id) AS p FROM {src}.\"person\" GROUP BY 1 ORDER BY 1"
                )).await?;
                push(PERSONS_BY_GENDER, source, Some("person"), rows);
            }
            if delivered(p, "year_of_birth") {
                let rows = strata(ctx, &format!(
                    "SELECT CAST(CAST(floor(year_of_birth / 10.0) AS BIGINT) * 10 AS VARCHAR) AS s1, count(DISTINCT person_id) AS p \
                     FROM {src}.\"person\" GROUP BY 1 ORDER BY 1"
                )).await?;
                push(PERSONS_BY_BIRTH_DECADE, source, Some("person"), rows);
            }
            if delivered(p, "location_id") {
                let rows = strata(ctx, &format!(
                    "SELECT CAST(location_id AS VARCHAR) AS s1, count(DISTINCT person_id) AS p FROM {src}.\"person\" \
                     WHERE location_id IS NOT NULL GROUP BY 1 ORDER BY 1"
                )).await?;
                push(PERSONS_BY_PREFECTURE, source, Some("person"), rows);
            }
        }
        let obs = find(source, "observation_period").filter(|o| {
            delivered(o, "observation_period_start_date")
                && delivered(o, "observation_period_end_date")
        });
        if let (Some(p), Some(_)) = (person, obs)
            && delivered(p, "year_of_birth")
            && delivered(p, "gender_concept_id")
        {
            let rows = strata(ctx, &format!(
                    "SELECT CAST(decile AS VARCHAR) AS s1, CAST(g AS VARCHAR) AS s2, count(*) AS p FROM \
                     (SELECT p.person_id, min(p.gender_concept_id) AS g, \
                      CAST(floor((CAST(date_part('year', min(o.observation_period_start_date)) AS BIGINT) - min(p.year_of_birth)) / 10.0) AS BIGINT) AS decile \
                      FROM {src}.\"person\" p JOIN {src}.\"observation_period\" o ON o.person_id = p.person_id GROUP BY p.person_id) \
                     GROUP BY 1, 2 ORDER BY 1, 2"
                )).await?;
            push(PERSONS_BY_AGE_DECILE, source, Some("person"), rows);
        }
        if obs.is_some() {
            let span: Vec<RecordBatch> = ctx
                .sql(&format!(
                    "SELECT CAST(date_part('year', min(observation_period_start_date)) AS BIGINT) AS lo, \
                     CAST(date_part('year', max(observation_period_end_date)) AS BIGINT) AS hi FROM {src}.\"observation_period\""
                ))
                .await?
                .collect()
                .await?;
            use chrono::Datelike;
            let this_year = i64::from(chrono::Utc::now().year());
            let lo = first_i64(&span, "lo").unwrap_or(0).max(1900);
            let hi = first_i64(&span, "hi").unwrap_or(0).min(this_year + 1);
            if lo <= hi {
                let years: Vec<String> =
                    (lo.max(hi - 150)..=hi).map(|y| format!("({y})")).collect();
                let rows = strata(ctx, &format!(
                    "SELECT CAST(y AS VARCHAR) AS s1, \
                     sum(overlap_days(o.observation_period_start_date, o.observation_period_end_date, make_date(CAST(y AS INT), 1, 1), make_date(CAST(y AS INT), 12, 31))) AS n, \
                     count(DISTINCT o.person_id) AS p \
                     FROM {src}.\"observation_period\" o CROSS JOIN (VALUES {}) AS years(y) \
                     WHERE o.observation_period_start_date <= make_date(CAST(y AS INT), 12, 31) AND o.observation_period_end_date >= make_date(CAST(y AS INT), 1, 1) \
                     GROUP BY y ORDER BY y",
                    years.join(", ")
                )).await?;
                push(
                    OBSERVATION_BY_YEAR,
                    source,
                    Some("observation_period"),
                    rows,
                );
            }
        }
        let mut tables: Vec<&TableDef> = store
            .tables()
            .iter()
            .filter(|t| t.schema == source && t.is_person_level() && t.name != "person")
            .collect();
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        for t in tables {
            let table = format!("{src}.{}", ident(&t.name));
            if let Some(date) = record_date(t) {
                let rows = strata(ctx, &format!(
                    "SELECT CAST(CAST(date_part('year', {d}) AS BIGINT) AS VARCHAR) AS s1, count(*) AS n, count(DISTINCT person_id) AS p \
                     FROM {table} GROUP BY 1 ORDER BY 1",
                    d = ident(&date)
                )).await?;
                push(RECORDS_BY_YEAR, source, Some(&t.name), rows);
            }
            if t.files.len() > 1 {
                push(
                    DELIVERY_LAG,
                    source,
                    Some(&t.name),
                    delivery_lags(ctx, store, t).await?,
                );
            }
            if let Some(concept) = main_concept(t) {
                let rows = strata(ctx, &format!(
                    "SELECT CAST({c} AS VARCHAR) AS s1, count(*) AS n, count(DISTINCT person_id) AS p FROM {table} GROUP BY {c} ORDER BY 2 DESC, 1",
                    c = ident(&concept)
                )).await?;
                push(RECORDS_BY_CONCEPT, source, Some(&t.name), rows);
            }
        }
    }
    Ok(out)
}

/// Per delivered file of a table delivered as a folder of files (Parquet in
/// the store, not CSV converted in the state folder): the file relative to
/// the store, its latest record date, and the days from that date to the
/// file's modification time, the delivery's lag.
async fn delivery_lags(ctx: &SessionContext, store: &Store, t: &TableDef) -> Result<Vec<Stratum>> {
    let Some(date) = record_date(t) else {
        return Ok(Vec::new());
    };
    let Some(file_column) = t.columns.iter().find_map(|c| match &c.source {
        ColumnSource::File(f) if c.name == date => Some(f.clone()),
        _ => None,
    }) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for file in &t.files {
        let Ok(relative) = file.strip_prefix(store.root()) else {
            continue;
        };
        let Some(modified) = std::fs::metadata(file).and_then(|m| m.modified()).ok() else {
            continue;
        };
        let delivered = chrono::DateTime::<chrono::Utc>::from(modified).date_naive();
        let read_from = store.read_from(file);
        let Some(path) = read_from.to_str() else {
            continue;
        };
        let df = ctx
            .read_parquet(path, datafusion::prelude::ParquetReadOptions::default())
            .await?;
        let batches = df
            .aggregate(
                vec![],
                vec![
                    datafusion::functions_aggregate::expr_fn::max(datafusion::prelude::cast(
                        datafusion::prelude::ident(&file_column),
                        DataType::Date32,
                    ))
                    .alias("latest"),
                ],
            )?
            .collect()
            .await?;
        let latest = batches.iter().find(|b| b.num_rows() > 0).and_then(|b| {
            let a = b
                .column(0)
                .as_primitive::<datafusion::arrow::datatypes::Date32Type>();
            (!a.is_null(0)).then(|| a.value(0))
        });
        let Some(latest) = latest else { continue };
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
        let latest_date = epoch + chrono::TimeDelta::days(i64::from(latest));
        out.push((
            Some(relative.display().to_string()),
            Some(latest_date.to_string()),
            Some((delivered - latest_date).num_days()),
            None,
        ));
    }
    Ok(out)
}
