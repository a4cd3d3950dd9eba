//! Dashboards as files: a title, optional parameters, and panels, each a
//! SQL query with a small chart spec.
//!
//! ```toml
//! title = "Drug safety"
//! title_ja = "医薬品安全性"
//!
//! [[param]]
//! name = "drug"
//! label = "Drug (ATC code)"
//! default = "M01A"
//!
//! [[panel]]
//! title = "New users per month"
//! chart = "line"          # line, bar, pyramid, map, funnel, table, number
//! x = "month"             # the category (or prefecture, age band, step)
//! y = "persons"           # the value
//! series = "arm"          # optional: one line or bar per value
//! sql = "SELECT ... WHERE code = {{drug}} ..."
//! ```
//!
//! `{{name}}` stands for the parameter's value as an SQL string literal;
//! values are codes (letters, digits, `.`, `_`, `-`, `:`; at most 64).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{DashboardError, Result};

/// How a panel draws its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Chart {
    /// Lines over `x` (time), one per `series`.
    Line,
    /// Bars by `x`, grouped by `series`.
    Bar,
    /// A population pyramid: `x` age bands, `series` sex (two values), `y` persons.
    Pyramid,
    /// A tile map of Japan's 47 prefectures: `x` JIS X 0401 code, `y` value.
    Map,
    /// A funnel: `x` steps in row order, `y` persons.
    Funnel,
    /// The rows as a table.
    Table,
    /// The first row's `y`, large.
    Number,
    /// A network: an edge per row from `x` to `series` (node names),
    /// weighted by `y` where it is not NULL.
    Graph,
}

/// A parameter the viewer may change.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    pub name: String,
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_ja: Option<String>,
    pub default: String,
}

/// One chart or table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Panel {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title_ja: Option<String>,
    pub chart: Chart,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<String>,
    /// A sentence under the chart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note_ja: Option<String>,
    pub sql: String,
}

/// A dashboard: what a page shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dashboard {
    /// The page's address (`/#/<id>`); from the file name when read from a file.
    #[serde(default)]
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title_ja: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description_ja: Option<String>,
    #[serde(default, rename = "param", skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Param>,
    #[serde(default, rename = "panel")]
    pub panels: Vec<Panel>,
}

impl Dashboard {
    /// Parses a dashboard from TOML text; `origin` names it in errors.
    pub fn parse(id: &str, text: &str, origin: &str) -> Result<Dashboard> {
        let mut d: Dashboard = toml::from_str(text).map_err(|e| DashboardError::Spec {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        d.id = id.to_owned();
        d.validate().map_err(|message| DashboardError::Spec {
            origin: origin.to_owned(),
            message,
        })?;
        Ok(d)
    }

    /// Reads every `*.toml` file of a folder, in name order.
    pub fn read_dir(dir: &Path) -> Result<Vec<Dashboard>> {
        let entries = std::fs::read_dir(dir).map_err(|e| DashboardError::Io {
            path: dir.to_owned(),
            source: e,
        })?;
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p).map_err(|e| DashboardError::Io {
                    path: p.clone(),
                    source: e,
                })?;
                let id = p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Dashboard::parse(&id, &text, &p.display().to_string())
            })
            .collect()
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if !valid_id(&self.id) {
            return Err(format!(
                "dashboard id {:?}: use letters, digits, '-' and '_' (at most 64)",
                self.id
            ));
        }
        if self.panels.is_empty() {
            return Err("a dashboard needs at least one [[panel]]".into());
        }
        for p in &self.params {
            if !valid_id(&p.name) {
                return Err(format!("parameter {:?}: not a valid name", p.name));
            }
            if !valid_value(&p.default) {
                return Err(format!("parameter {:?}: default is not a code", p.name));
            }
        }
        for (i, p) in self.panels.iter().enumerate() {
            let needs: &[(&str, &Option<String>)] = match p.chart {
                Chart::Table => &[],
                Chart::Number => &[("y", &p.y)],
                Chart::Pyramid | Chart::Graph => &[("x", &p.x), ("y", &p.y), ("series", &p.series)],
                _ => &[("x", &p.x), ("y", &p.y)],
            };
            for (field, value) in needs {
                if value.is_none() {
                    return Err(format!(
                        "panel {} ({:?}): a {:?} chart needs `{field}`",
                        i + 1,
                        p.title,
                        p.chart
                    ));
                }
            }
            for name in placeholders(&p.sql) {
                if !self.params.iter().any(|q| q.name == name) {
                    return Err(format!(
                        "panel {} ({:?}): {{{{{name}}}}} is not a declared [[param]]",
                        i + 1,
                        p.title
                    ));
                }
            }
        }
        Ok(())
    }

    /// The parameter values to use: the defaults, overridden by `given`
    /// (unknown names and values that are not codes are refused).
    pub fn values(&self, given: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
        let mut values: BTreeMap<_, _> = self
            .params
            .iter()
            .map(|p| (p.name.clone(), p.default.clone()))
            .collect();
        for (k, v) in given {
            if !values.contains_key(k) {
                return Err(DashboardError::BadRequest(format!(
                    "dashboard {:?} has no parameter {k:?}",
                    self.id
                )));
            }
            if !valid_value(v) {
                return Err(DashboardError::BadRequest(format!(
                    "parameter {k:?}: use letters, digits, '.', '_', '-' and ':' (at most 64)"
                )));
            }
            values.insert(k.clone(), v.clone());
        }
        Ok(values)
    }
}

impl Panel {
    /// The panel's SQL with parameters replaced by string literals.
    pub fn sql_with(&self, values: &BTreeMap<String, String>) -> String {
        let mut sql = self.sql.clone();
        for (k, v) in values {
            // Values are codes (checked), so quoting cannot be escaped from.
            sql = sql.replace(&format!("{{{{{k}}}}}"), &format!("'{v}'"));
        }
        sql
    }
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn valid_value(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
}

/// The `{{name}}` placeholders of a text.
fn placeholders(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = sql;
    while let Some(start) = rest.find("{{") {
        rest = &rest[start + 2..];
        match rest.find("}}") {
            Some(end) => {
                out.push(rest[..end].to_owned());
                rest = &rest[end + 2..];
            }
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
title = "Drug safety"
[[param]]
name = "drug"
label = "Drug"
default = "M01A"
[[panel]]
title = "New users"
chart = "line"
x = "month"
y = "persons"
sql = "SELECT 1 WHERE code = {{drug}}"
"#;

    #[test]
    fn parameters_become_literals_and_only_codes_are_accepted() {
        let d = Dashboard::parse("safety", TEXT, "safety.toml").unwrap();
        let values = d.values(&BTreeMap::new()).unwrap();
        assert_eq!(
            d.panels[0].sql_with(&values),
            "SELECT 1 WHERE code = 'M01A'"
        );
        let given = BTreeMap::from([("drug".to_string(), "N02BE01".to_string())]);
        let values = d.values(&given).unwrap();
        assert_eq!(
            d.panels[0].sql_with(&values),
            "SELECT 1 WHERE code = 'N02BE01'"
        );
        for bad in ["x' OR '1'='1", "", "a b", &"A".repeat(65)] {
            let given = BTreeMap::from([("drug".to_string(), bad.to_string())]);
            assert!(d.values(&given).is_err(), "{bad:?} accepted");
        }
        let given = BTreeMap::from([("other".to_string(), "A".to_string())]);
        assert!(d.values(&given).is_err());
    }

    #[test]
    fn bad_files_are_named_with_what_is_wrong() {
        let undeclared = TEXT.replace("{{drug}}", "{{outcome}}");
        let e = Dashboard::parse("s", &undeclared, "s.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("s.toml") && e.contains("{{outcome}}"), "{e}");
        let no_y = TEXT.replace("y = \"persons\"\n", "");
        let e = Dashboard::parse("s", &no_y, "s.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs `y`"), "{e}");
        let unknown = TEXT.replace("chart = \"line\"", "chart = \"pie\"");
        let e = Dashboard::parse("s", &unknown, "s.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("s.toml") && e.contains("pie"), "{e}");
        assert!(Dashboard::parse("a/b", TEXT, "x").is_err());
    }
}
