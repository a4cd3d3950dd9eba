//! Roles and the per-store disclosure policy.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use datafusion::common::{DFSchema, TableReference};
use serde::{Deserialize, Serialize};

/// What a session may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Row-level access; every statement is audited.
    Steward,
    /// Aggregate-only: every query goes through the privacy rewrite.
    Analyst,
}

impl Role {
    /// The role's name as written in configuration and shown in SQL.
    pub fn name(&self) -> &'static str {
        match self {
            Role::Steward => "steward",
            Role::Analyst => "analyst",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "steward" => Ok(Role::Steward),
            "analyst" => Ok(Role::Analyst),
            other => Err(format!(
                "unknown role {other:?}: expected steward or analyst"
            )),
        }
    }
}

/// How the privacy layer treats a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableRole {
    /// Rows about persons: only aggregates over at least k persons leave.
    Person,
    /// Reference data (vocabulary, code lists): analysts read it freely.
    Public,
    /// Not shown to analysts at all.
    Hidden,
}

/// The disclosure policy of a store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Minimum number of distinct persons behind every released row and number.
    #[serde(default = "default_k")]
    pub k: u64,
    /// Counts are rounded to a multiple of this base (1: no rounding).
    #[serde(default = "default_rounding")]
    pub rounding: u64,
    /// Role of tables by `schema.table` or `schema.*`; others follow the defaults
    /// (vocabulary and catalog schemas public, tables with `person_id` person-level).
    #[serde(default)]
    pub tables: BTreeMap<String, TableRole>,
}

fn default_k() -> u64 {
    10
}

fn default_rounding() -> u64 {
    5
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            k: default_k(),
            rounding: default_rounding(),
            tables: BTreeMap::new(),
        }
    }
}

/// Schemas whose tables are reference data by default.
const PUBLIC_SCHEMAS: &[&str] = &["vocab", "information_schema", "pg_catalog"];

impl Policy {
    /// Checks the values make sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.k < 2 {
            return Err(format!("privacy.k must be at least 2, got {}", self.k));
        }
        if self.rounding == 0 {
            return Err("privacy.rounding must be at least 1".into());
        }
        Ok(())
    }

    /// The role of a scanned table with the given columns.
    pub fn table_role(&self, table: &TableReference, schema: &DFSchema) -> TableRole {
        let name = table.table().to_ascii_lowercase();
        let schema_name = table.schema().unwrap_or("public").to_ascii_lowercase();
        for key in [format!("{schema_name}.{name}"), format!("{schema_name}.*")] {
            if let Some(role) = self.tables.get(&key) {
                return *role;
            }
        }
        if PUBLIC_SCHEMAS.contains(&schema_name.as_str()) {
            return TableRole::Public;
        }
        if schema.fields().iter().any(|f| f.name() == super::PERSON_ID) {
            TableRole::Person
        } else {
            TableRole::Public
        }
    }
}
