//! Data quality checks and the data quality and utility label of a store.
//!
//! The checks follow the OHDSI Data Quality Dashboard: parameterised check
//! types in the Kahn framework (conformance, completeness, plausibility),
//! at table, field and concept level, each with a threshold on the
//! percentage of violating rows and a status (`Passed`, `Failed`,
//! `Not applicable`, `Error`). They are SQL over the engine, generated from
//! what the store holds ([`checks`]), so any store that follows the data
//! model is checked; the field-level checks of a table share one scan. To
//! those linked national data adds linkage checks, computed from the person
//! index. [`characterization`] counts persons and records the way OHDSI
//! Achilles does (by concept, calendar year, sex and age decile, person-time).
//!
//! A [`Report`] holds all of it; [`tables`] shows it as `quality.checks`,
//! `quality.results` and `quality.characterization` (steward only: the
//! privacy layer hides the `quality` schema from analysts, because its
//! counts are exact), and [`label`] turns it into the label (`label.json`,
//! organised by the six elements of the EHDS data quality and utility label,
//! and `label.html`), with counts released under the store's k and rounding.

pub mod characterization;
pub mod checks;
pub mod html;
pub mod label;
pub mod tables;

use std::collections::BTreeMap;
use std::path::Path;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

pub use characterization::CharacterizationRow;
pub use checks::{CheckDef, CheckResult, Status};

/// The schema the quality tables are shown in.
pub const SCHEMA: &str = "quality";

/// How the checks are parameterised: thresholds, severities and plausible
/// ranges, DQD-like by default; read from `quality.toml` in the store's root
/// when it has one, or from a file given to `tsunagu quality --config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityConfig {
    /// Threshold (percent of violating rows) by check type, or by check id.
    #[serde(default)]
    pub thresholds: BTreeMap<String, f64>,
    /// Severity (`fatal`, `convention`, `characterization`) by check type, or by check id.
    #[serde(default)]
    pub severity: BTreeMap<String, String>,
    /// Plausible ranges of values, added to the defaults.
    #[serde(default, rename = "range")]
    pub ranges: Vec<Range>,
    /// Days after death that records may still carry (DQD: 60).
    #[serde(default = "default_death_grace")]
    pub death_grace_days: i64,
}

fn default_death_grace() -> i64 {
    60
}

impl Default for QualityConfig {
    fn default() -> Self {
        QualityConfig {
            thresholds: BTreeMap::new(),
            severity: BTreeMap::new(),
            ranges: Vec::new(),
            death_grace_days: default_death_grace(),
        }
    }
}

/// A plausible range of a field, for every row or for the rows of one concept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// CDM table name (in every source that has it).
    pub table: String,
    /// The numeric field.
    pub field: String,
    /// Only the rows whose concept (the table's main concept field) is this.
    #[serde(default)]
    pub concept_id: Option<i64>,
    /// Values below are implausible.
    #[serde(default)]
    pub low: Option<f64>,
    /// Values above are implausible.
    #[serde(default)]
    pub high: Option<f64>,
}

impl QualityConfig {
    /// Reads a configuration file.
    pub fn load(path: &Path) -> Result<QualityConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| EngineError::Unsupported(format!("{}: {e}", path.display())))?;
        toml::from_str(&text)
            .map_err(|e| EngineError::Unsupported(format!("{}: {}", path.display(), e.message())))
    }

    /// The configuration of a store: its `quality.toml`, else the defaults.
    pub fn for_store(root: &Path) -> Result<QualityConfig> {
        let path = root.join("quality.toml");
        if path.is_file() {
            Self::load(&path)
        } else {
            Ok(QualityConfig::default())
        }
    }

    /// The threshold of a check: by its id, else its type, else the DQD-like default.
    pub fn threshold(&self, id: &str, check_type: &str, default: f64) -> f64 {
        self.thresholds
            .get(id)
            .or_else(|| self.thresholds.get(check_type))
            .copied()
            .unwrap_or(default)
    }

    /// The severity of a check: by its id, else its type, else the default.
    pub fn severity(&self, id: &str, check_type: &str, default: &str) -> String {
        self.severity
            .get(id)
            .or_else(|| self.severity.get(check_type))
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    }
}

/// Linkage between the sources of a store, from its person index.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Linkage {
    /// Whether the store has a linkage table.
    pub has_linkage: bool,
    /// Per source: keys, persons, keys without a link row, persons seen in this source only.
    pub sources: Vec<SourceLinkage>,
    /// Per ordered pair of sources: persons of the first also seen in the second.
    pub pairs: Vec<PairLinkage>,
    /// Persons seen in exactly one source.
    pub single_source_persons: u64,
    /// All persons.
    pub persons: u64,
}

/// The linkage of one source.
#[derive(Debug, Clone, Serialize)]
pub struct SourceLinkage {
    pub source: String,
    pub keys: u64,
    pub persons: u64,
    pub unlinked_keys: u64,
    pub only_here_persons: u64,
}

/// Persons of `from` also seen in `to`.
#[derive(Debug, Clone, Serialize)]
pub struct PairLinkage {
    pub from: String,
    pub to: String,
    pub persons_from: u64,
    pub persons_in_both: u64,
}

/// Everything the checks and the characterization found in a store.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The store's name.
    pub store: String,
    /// When the checks ran (UTC, RFC 3339).
    pub generated_at: String,
    /// The configuration the checks ran with.
    pub config: QualityConfig,
    /// Every check, with its result, in definition order.
    pub results: Vec<CheckResult>,
    /// Achilles-like counts.
    pub characterization: Vec<CharacterizationRow>,
    /// Linkage between sources.
    pub linkage: Linkage,
    /// How long the checks took, in milliseconds.
    pub elapsed_ms: u64,
}

/// Runs every check and the characterization on a context where the store
/// is registered (a steward's view: nothing is released here).
pub async fn run(
    ctx: &SessionContext,
    store: &tsunagu_catalog::Store,
    config: &QualityConfig,
) -> Result<Report> {
    let started = std::time::Instant::now();
    let plan = checks::plan(store, config);
    let linkage = linkage(store);
    let mut results = checks::execute(ctx, &plan).await;
    results.extend(checks::linkage_results(&linkage, config));
    let characterization = characterization::run(ctx, store, &linkage).await?;
    Ok(Report {
        store: store.name().to_owned(),
        generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        config: config.clone(),
        results,
        characterization,
        linkage,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

/// The linkage figures, from the person index: which persons each source holds.
pub fn linkage(store: &tsunagu_catalog::Store) -> Linkage {
    let index = store.persons();
    let mut sets = Vec::new();
    let mut sources = Vec::new();
    for spec in &store.manifest().sources {
        let Some(keys) = index.source(&spec.name) else {
            continue;
        };
        let mut set = roaring::RoaringBitmap::new();
        let mut unlinked = 0u64;
        for pos in 0..keys.len() {
            if let Some(id) = keys.id_at(pos) {
                set.insert(id);
                if !index.is_linked(id) {
                    unlinked += 1;
                }
            }
        }
        sources.push(SourceLinkage {
            source: spec.name.clone(),
            keys: keys.len() as u64,
            persons: set.len(),
            unlinked_keys: unlinked,
            only_here_persons: 0,
        });
        sets.push(set);
    }
    let mut pairs = Vec::new();
    for (i, a) in sets.iter().enumerate() {
        let others = sets
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .fold(roaring::RoaringBitmap::new(), |acc, (_, b)| acc | b);
        sources[i].only_here_persons = (a - &others).len();
        for (j, b) in sets.iter().enumerate() {
            if i != j {
                pairs.push(PairLinkage {
                    from: sources[i].source.clone(),
                    to: sources[j].source.clone(),
                    persons_from: a.len(),
                    persons_in_both: a.intersection_len(b),
                });
            }
        }
    }
    Linkage {
        has_linkage: store.manifest().linkage.is_some(),
        single_source_persons: sources.iter().map(|s| s.only_here_persons).sum(),
        persons: index.persons(),
        sources,
        pairs,
    }
}

/// The integer in column `name` of the first row (0 when NULL or absent).
pub(crate) fn first_i64(batches: &[RecordBatch], name: &str) -> Option<i64> {
    let b = batches.iter().find(|b| b.num_rows() > 0)?;
    let col = b.column_by_name(name)?;
    let col = datafusion::arrow::compute::cast(col, &datafusion::arrow::datatypes::DataType::Int64)
        .ok()?;
    let a = col.as_primitive::<Int64Type>();
    Some(if a.is_null(0) { 0 } else { a.value(0) })
}

/// Quotes an identifier for SQL.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
