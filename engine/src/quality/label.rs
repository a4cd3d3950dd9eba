//! The data quality and utility label of a store (`label.json`), organised
//! by the six elements of the EHDS label (Regulation (EU) 2025/327, Art. 78):
//! documentation, technical quality, quality management, coverage, access
//! and provision, enrichments and links. Its schema is in docs/QUALITY.md.
//!
//! Counts meant for data users follow the store's disclosure policy: a
//! count below k is withheld (`null`), others are rounded to the policy's
//! base, and shares are computed from released counts. The steward's report
//! (`exact`) carries the exact counts.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};
use tsunagu_catalog::Store;

use super::characterization::{
    DELIVERY_LAG, OBSERVATION_BY_YEAR, PERSONS_BY_AGE_DECILE, PERSONS_BY_GENDER,
    PERSONS_BY_PREFECTURE, RECORDS_BY_YEAR,
};
use super::{Report, Status};
use crate::privacy::Policy;

/// The version of the label's schema.
pub const LABEL_VERSION: &str = "1.0";

/// How counts are released in a label.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Release {
    /// Exact counts (the steward's report), or released ones.
    pub exact: bool,
    /// Counts below k are withheld.
    pub k: u64,
    /// Released counts are rounded to a multiple of this.
    pub rounding: u64,
    /// And then to a multiple of this (a viewer's), when larger.
    #[serde(skip)]
    pub coarser: u64,
}

impl Release {
    /// The release rules of a policy; `exact` for the steward's report.
    pub fn new(policy: &Policy, exact: bool) -> Release {
        Release {
            exact,
            k: policy.k,
            rounding: policy.rounding.max(1),
            coarser: policy.coarser_rounding,
        }
    }

    /// A count as released: withheld below k (0 is shown), else rounded.
    pub fn count(&self, n: u64) -> Option<u64> {
        if self.exact || n == 0 {
            return Some(n);
        }
        if n < self.k {
            return None;
        }
        let round = |n: u64, r: u64| ((n + r / 2) / r * r).max(r);
        let n = round(n, self.rounding);
        Some(if self.coarser > self.rounding {
            round(n, self.coarser)
        } else {
            n
        })
    }

    /// A check's violating rows as released: withheld when fewer than k
    /// persons stand behind them (where persons are counted), else as a count.
    pub fn violating(&self, r: &super::CheckResult) -> Option<u64> {
        r.violating_rows.and_then(|v| match r.violating_persons {
            Some(p) if v > 0 => self.backed(v, p),
            _ => self.count(v),
        })
    }

    /// A count of persons, or of records backed by `persons` persons: withheld
    /// when fewer than k persons are behind it.
    pub fn backed(&self, n: u64, persons: u64) -> Option<u64> {
        if !self.exact && persons < self.k {
            return None;
        }
        self.count(n)
    }
}

/// A percentage with one decimal, from released counts.
pub(super) fn pct(num: Option<u64>, den: Option<u64>) -> Option<f64> {
    match (num, den) {
        (Some(n), Some(d)) if d > 0 => Some((1000.0 * n as f64 / d as f64).round() / 10.0),
        _ => None,
    }
}

/// The name of a gender concept, where it is one of OMOP's two.
pub fn gender_name(concept: &str) -> &str {
    match concept {
        "8507" => "male",
        "8532" => "female",
        "0" => "unknown",
        other => other,
    }
}

/// Builds `label.json`.
pub fn build(report: &Report, store: &Store, policy: &Policy, exact: bool) -> Value {
    let rel = Release::new(policy, exact);
    let ch = &report.characterization;
    let count_of = |v: Option<i64>| v.unwrap_or(0).max(0) as u64;

    // Documentation: sources and their tables.
    let sources: Vec<Value> = store
        .manifest()
        .sources
        .iter()
        .map(|s| {
            let tables: Vec<Value> = store
                .tables()
                .iter()
                .filter(|t| t.schema == s.name)
                .map(|t| {
                    json!({
                        "name": t.name,
                        "rows": rel.count(t.rows),
                        "cdm_table": tsunagu_catalog::cdm::table(&t.name).is_some(),
                        "person_level": t.is_person_level(),
                        "columns": t.columns.iter().filter(|c| matches!(c.source, tsunagu_catalog::tables::ColumnSource::File(_))).count(),
                    })
                })
                .collect();
            json!({ "name": s.name, "tables": tables })
        })
        .collect();
    let has_vocab = store.tables().iter().any(|t| t.schema == "vocab");

    // Technical quality: checks by status and category, the failing ones.
    let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_category: BTreeMap<String, BTreeMap<&str, u64>> = BTreeMap::new();
    for r in &report.results {
        *by_status.entry(r.status.as_str()).or_default() += 1;
        *by_category
            .entry(r.check.category.clone())
            .or_default()
            .entry(r.status.as_str())
            .or_default() += 1;
    }
    let status_counts = |m: &BTreeMap<&str, u64>| {
        json!({
            "passed": m.get("Passed").copied().unwrap_or(0),
            "failed": m.get("Failed").copied().unwrap_or(0),
            "not_applicable": m.get("Not applicable").copied().unwrap_or(0),
            "error": m.get("Error").copied().unwrap_or(0),
        })
    };
    let failing: Vec<Value> = report
        .results
        .iter()
        .filter(|r| matches!(r.status, Status::Failed | Status::Error))
        .map(|r| {
            let v = rel.violating(r);
            let d = r.denominator_rows.and_then(|d| rel.count(d));
            json!({
                "check_id": r.check.check_id,
                "check_type": r.check.check_type,
                "category": r.check.category,
                "subcategory": r.check.subcategory,
                "level": r.check.level,
                "schema_name": r.check.schema_name,
                "table_name": r.check.table_name,
                "field_name": r.check.field_name,
                "concept_id": r.check.concept_id,
                "severity": r.check.severity,
                "description": r.check.description,
                "status": r.status.as_str(),
                "threshold_pct": r.check.threshold_pct,
                "violating_rows": v,
                "denominator_rows": d,
                "pct_violating": if exact { r.pct_violating } else { pct(v, d) },
            })
        })
        .collect();

    // Coverage.
    let persons_by_source: Vec<Value> = report
        .linkage
        .sources
        .iter()
        .map(|s| {
            let years: Vec<i64> = ch
                .iter()
                .filter(|r| r.analysis_id == RECORDS_BY_YEAR && r.schema_name == s.source)
                .filter(|r| count_of(r.person_count) >= rel.k || rel.exact)
                .filter_map(|r| r.stratum_1.as_deref()?.parse().ok())
                .collect();
            json!({
                "source": s.source,
                "persons": rel.count(s.persons),
                "first_year": years.iter().min(),
                "last_year": years.iter().max(),
            })
        })
        .collect();
    let mut observed: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
    for r in ch.iter().filter(|r| r.analysis_id == OBSERVATION_BY_YEAR) {
        if let Some(y) = r.stratum_1.as_deref().and_then(|s| s.parse().ok()) {
            let e = observed.entry(y).or_default();
            e.0 += count_of(r.count_value);
            e.1 += count_of(r.person_count);
        }
    }
    let person_days: u64 = observed.values().map(|(d, _)| d).sum();
    // A stratum backed by fewer than k persons is left out, label and all,
    // as the privacy layer removes such a row from an analyst's result.
    let shown = |persons: u64| rel.exact || persons >= rel.k;
    let observation_by_year: Vec<Value> = observed
        .iter()
        .filter(|(_, (_, persons))| shown(*persons))
        .map(|(y, (days, persons))| {
            json!({
                "year": y,
                "persons": rel.backed(*persons, *persons),
                "person_years": rel.backed(*days, *persons).map(|d| (d as f64 / 365.25).round() as u64),
            })
        })
        .collect();
    let mut records: BTreeMap<(String, i64), (u64, u64)> = BTreeMap::new();
    for r in ch.iter().filter(|r| r.analysis_id == RECORDS_BY_YEAR) {
        if let Some(y) = r.stratum_1.as_deref().and_then(|s| s.parse().ok()) {
            let e = records.entry((r.schema_name.clone(), y)).or_default();
            e.0 += count_of(r.count_value);
            // Persons behind the source's records that year: at least the largest table's.
            e.1 = e.1.max(count_of(r.person_count));
        }
    }
    let records_by_year: Vec<Value> = records
        .iter()
        .filter(|(_, (_, p))| shown(*p))
        .map(|((source, y), (n, p))| {
            json!({ "source": source, "year": y, "records": rel.backed(*n, *p) })
        })
        .collect();
    let mut age_sex: BTreeMap<(i64, String), u64> = BTreeMap::new();
    for r in ch.iter().filter(|r| r.analysis_id == PERSONS_BY_AGE_DECILE) {
        if let (Some(d), Some(g)) = (
            r.stratum_1.as_deref().and_then(|s| s.parse::<i64>().ok()),
            r.stratum_2.as_deref(),
        ) {
            *age_sex.entry((d, g.to_owned())).or_default() += count_of(r.person_count);
        }
    }
    let age_sex: Vec<Value> = age_sex
        .iter()
        .filter(|(_, n)| shown(**n))
        .map(|((d, g), n)| {
            json!({
                "age_decile": d,
                "ages": format!("{}-{}", d * 10, d * 10 + 9),
                "gender_concept_id": g.parse::<i64>().ok(),
                "gender": gender_name(g),
                "persons": rel.backed(*n, *n),
            })
        })
        .collect();
    let mut sex: BTreeMap<String, u64> = BTreeMap::new();
    for r in ch.iter().filter(|r| r.analysis_id == PERSONS_BY_GENDER) {
        if let Some(g) = r.stratum_1.as_deref() {
            *sex.entry(g.to_owned()).or_default() += count_of(r.person_count);
        }
    }
    let sex: Vec<Value> = sex
        .iter()
        .filter(|(_, n)| shown(**n))
        .map(|(g, n)| {
            json!({ "gender_concept_id": g.parse::<i64>().ok(), "gender": gender_name(g), "persons": rel.backed(*n, *n) })
        })
        .collect();
    // Prefecture: persons by the insurer's or institution's prefecture,
    // against Japan's population by prefecture.
    let mut by_prefecture: BTreeMap<u8, u64> = BTreeMap::new();
    for r in ch.iter().filter(|r| r.analysis_id == PERSONS_BY_PREFECTURE) {
        if let Some(code) = r.stratum_1.as_deref().and_then(|s| s.parse::<u8>().ok()) {
            *by_prefecture.entry(code).or_default() += count_of(r.person_count);
        }
    }
    let prefecture: Vec<Value> = if by_prefecture.is_empty() {
        Vec::new()
    } else {
        use tsunagu_catalog::prefectures::{PREFECTURES, total};
        let released: Vec<(u8, Option<u64>)> = PREFECTURES
            .iter()
            .map(|p| {
                (
                    p.0,
                    by_prefecture.get(&p.0).and_then(|n| rel.backed(*n, *n)),
                )
            })
            .collect();
        let sum: u64 = released.iter().filter_map(|(_, n)| *n).sum();
        PREFECTURES
            .iter()
            .zip(&released)
            .map(|((code, name, name_ja, pop), (_, n))| {
                let reference = 100.0 * f64::from(*pop) / f64::from(total());
                let share = n.filter(|_| sum > 0).map(|n| 100.0 * n as f64 / sum as f64);
                json!({
                    "code": code,
                    "prefecture": name,
                    "prefecture_ja": name_ja,
                    "persons": n,
                    "share_pct": share.map(|s| (s * 100.0).round() / 100.0),
                    "reference_share_pct": (reference * 100.0).round() / 100.0,
                    "coverage_ratio": share.map(|s| (s / reference * 100.0).round() / 100.0),
                })
            })
            .collect()
    };
    let all_years: Vec<i64> = records
        .iter()
        .filter(|(_, (_, p))| rel.exact || *p >= rel.k)
        .map(|((_, y), _)| *y)
        .chain(
            observed
                .iter()
                .filter(|(_, (_, p))| shown(*p))
                .map(|(y, _)| *y),
        )
        .collect();

    // Timeliness: per table delivered as a folder of files, the lag of its deliveries.
    let mut lags: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
    for r in ch.iter().filter(|r| r.analysis_id == DELIVERY_LAG) {
        if let (Some(t), Some(days)) = (&r.table_name, r.count_value) {
            lags.entry((r.schema_name.clone(), t.clone()))
                .or_default()
                .push(days);
        }
    }
    let deliveries: Vec<Value> = lags
        .into_iter()
        .map(|((source, table), mut days)| {
            days.sort_unstable();
            json!({
                "source": source,
                "table": table,
                "deliveries": days.len(),
                "median_lag_days": days[days.len() / 2],
                "max_lag_days": days.last(),
            })
        })
        .collect();

    // Enrichments and links.
    let link = &report.linkage;
    let link_sources: Vec<Value> = link
        .sources
        .iter()
        .map(|s| {
            let keys = rel.count(s.keys);
            let unlinked = rel.count(s.unlinked_keys);
            json!({
                "source": s.source,
                "keys": keys,
                "persons": rel.count(s.persons),
                "unlinked_keys": unlinked,
                "pct_unlinked_keys": pct(unlinked, keys),
                "persons_in_this_source_only": rel.count(s.only_here_persons),
            })
        })
        .collect();
    let pairs: Vec<Value> = link
        .pairs
        .iter()
        .map(|p| {
            let from = rel.count(p.persons_from);
            let both = rel.count(p.persons_in_both);
            json!({
                "from": p.from,
                "to": p.to,
                "persons_from": from,
                "persons_in_both": both,
                "linkage_rate_pct": pct(both, from),
            })
        })
        .collect();

    json!({
        "label_version": LABEL_VERSION,
        "store": report.store,
        "generated_at": report.generated_at,
        "release": {
            "exact": rel.exact,
            "k": rel.k,
            "rounding": rel.rounding,
            "rule": if rel.exact {
                "exact counts: the steward's report, not for release".to_string()
            } else {
                format!("counts below {} are withheld (null); others are rounded to a multiple of {}; shares are computed from released counts", rel.k, rel.rounding)
            },
        },
        "documentation": {
            "data_model": "Tsunagu data model: OMOP CDM v5.4 tables per delivered source, pseudonymized person keys, cross-source linkage",
            "quality_documentation": "docs/QUALITY.md",
            "vocabulary": has_vocab,
            "sources": sources,
        },
        "technical_quality": {
            "framework": "OHDSI Data Quality Dashboard 2.8 check types in the Kahn framework (conformance, completeness, plausibility)",
            "checks": report.results.len(),
            "by_status": status_counts(&by_status),
            "by_category": by_category.iter().map(|(c, m)| (c.clone(), status_counts(m))).collect::<serde_json::Map<String, Value>>(),
            "failing": failing,
        },
        "quality_management": {
            "tool": format!("tsunagu {}", env!("CARGO_PKG_VERSION")),
            "checked_at": report.generated_at,
            "elapsed_ms": report.elapsed_ms,
            "thresholds": "DQD-like defaults per check type, overridable per check type or check id in quality.toml",
            "config": report.config,
            "process": "the checks are generated from the store's tables and run on every delivery with `tsunagu quality`; results are queryable by the steward as quality.results",
        },
        "coverage": {
            "persons": rel.count(link.persons),
            "sources": persons_by_source,
            "calendar_years": {
                "first": all_years.iter().min(),
                "last": all_years.iter().max(),
            },
            "person_years": rel.count((person_days as f64 / 365.25).round() as u64),
            "observation_by_year": observation_by_year,
            "records_by_year": records_by_year,
            "sex": sex,
            "age_sex": age_sex,
            "prefecture": prefecture,
            "deliveries": deliveries,
        },
        "access_and_provision": {
            "interface": "SQL (PostgreSQL dialect) over the PostgreSQL wire protocol, or embedded",
            "roles": {
                "steward": "row-level access, audited",
                "analyst": "aggregate-only: every result released under the store's privacy policy",
            },
            "privacy": { "k": policy.k, "rounding": policy.rounding },
            "format": "Parquet or CSV files per source and table (docs/DATA_MODEL.md)",
        },
        "enrichments_and_links": {
            "linkage": link.has_linkage,
            "sources": link_sources,
            "pairs": pairs,
            "persons_in_one_source_only": rel.count(link.single_source_persons),
            "vocabulary": has_vocab,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_counts_are_withheld_below_k_and_rounded() {
        let policy = Policy::default();
        let rel = Release::new(&policy, false);
        assert_eq!(rel.count(0), Some(0));
        assert_eq!(rel.count(1), None);
        assert_eq!(rel.count(policy.k - 1), None);
        assert_eq!(rel.count(12), Some(10));
        assert_eq!(rel.count(13), Some(15));
        assert_eq!(rel.backed(1000, 3), None, "records of fewer than k persons");
        let exact = Release::new(&policy, true);
        assert_eq!(exact.count(3), Some(3));
        assert_eq!(exact.backed(7, 1), Some(7));
    }

    #[test]
    fn the_steward_project_schema_is_hidden_from_analysts_whatever_the_policy_says() {
        use crate::privacy::TableRole;
        use datafusion::common::{DFSchema, TableReference};
        let mut policy = Policy::default();
        policy.tables.insert("steward.*".into(), TableRole::Public);
        let t = TableReference::partial(crate::projects::admin::SCHEMA, "projects");
        assert_eq!(policy.table_role(&t, &DFSchema::empty()), TableRole::Hidden);
        // The quality tables are reference data: they release their own counts.
        let t = TableReference::partial(super::super::SCHEMA, "results");
        assert_eq!(policy.table_role(&t, &DFSchema::empty()), TableRole::Public);
    }
}
