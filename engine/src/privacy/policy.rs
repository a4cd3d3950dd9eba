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
    /// Aggregate-only and read-only (public dashboards, BI viewers): the
    /// analysts' release under the policy's `viewer` numbers, which may be
    /// stricter; no cohorts, results or projects of its own.
    Viewer,
}

impl Role {
    /// The role's name as written in configuration and shown in SQL.
    pub fn name(&self) -> &'static str {
        match self {
            Role::Steward => "steward",
            Role::Analyst => "analyst",
            Role::Viewer => "viewer",
        }
    }

    /// How much the role may see: a session may lower its role, never raise it.
    pub fn rank(&self) -> u8 {
        match self {
            Role::Steward => 2,
            Role::Analyst => 1,
            Role::Viewer => 0,
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
            "viewer" => Ok(Role::Viewer),
            other => Err(format!(
                "unknown role {other:?}: expected steward, analyst or viewer"
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
    /// Noise added to released numbers, as a multiple of the largest single
    /// person's contribution (1: one person's worth; 0: none).
    #[serde(default = "default_noise")]
    pub noise: f64,
    /// Spread of the sticky margin added to k before a set of persons is
    /// released (0: a sharp threshold at k).
    #[serde(default = "default_threshold_noise")]
    pub threshold_noise: f64,
    /// Role of tables by `schema.table` or `schema.*`; others follow the defaults
    /// (vocabulary and catalog schemas public, tables with `person_id` person-level).
    #[serde(default)]
    pub tables: BTreeMap<String, TableRole>,
    /// Further identifier columns of person-level tables (record keys of
    /// sources outside the CDM): `column`, `table.column` or `schema.table.column`.
    #[serde(default)]
    pub identifiers: Vec<String>,
    /// The secret that seeds the noise (kept in the state folder, never in
    /// configuration); without one, a key for this process.
    #[serde(skip)]
    pub secret: Option<NoiseKey>,
    /// Disclosure classes of functions a server adds (its catalog functions).
    #[serde(skip)]
    pub functions: BTreeMap<String, tsunagu_udfs::Disclosure>,
    /// Stricter numbers for the `viewer` role (`[privacy.viewer]`); unset
    /// ones are the analysts'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub viewer: Option<Stricter>,
    /// A coarser base that released values, once rounded to `rounding`, are
    /// rounded to again (a viewer's); 0 for none.
    #[serde(skip)]
    pub coarser_rounding: u64,
}

/// The numbers of a stricter release (`[privacy.viewer]`): each at least
/// the analysts'. The noise stays the analysts' (two scales of the same
/// sticky draw would let the draw be solved for), and a coarser rounding
/// rounds the analysts' released value, so a viewer's answer is a function
/// of the analyst's and tells nothing more.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stricter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounding: Option<u64>,
}

/// The secret noise key of a store.
#[derive(Clone, PartialEq)]
pub struct NoiseKey(pub [u8; 32]);

impl fmt::Debug for NoiseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NoiseKey(..)")
    }
}

impl NoiseKey {
    /// The store's key from `dir/privacy.key`, created (mode 0600) when missing.
    pub fn load_or_create(dir: &std::path::Path) -> std::io::Result<NoiseKey> {
        let path = dir.join("privacy.key");
        if let Ok(bytes) = std::fs::read(&path)
            && let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice())
        {
            return Ok(NoiseKey(key));
        }
        std::fs::create_dir_all(dir)?;
        let key = NoiseKey::random();
        let tmp = dir.join(format!("privacy.key.{}", std::process::id()));
        {
            use std::io::Write;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp)?;
            f.write_all(&key.0)?;
            f.sync_all()?;
        }
        // Another process may have created it first: keep theirs.
        if std::fs::hard_link(&tmp, &path).is_err() {
            let _ = std::fs::remove_file(&tmp);
            let bytes = std::fs::read(&path)?;
            return <[u8; 32]>::try_from(bytes.as_slice())
                .map(NoiseKey)
                .map_err(|_| std::io::Error::other("privacy.key is not 32 bytes"));
        }
        let _ = std::fs::remove_file(&tmp);
        Ok(key)
    }

    /// A fresh random key.
    pub fn random() -> NoiseKey {
        use rand::RngCore;
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        NoiseKey(key)
    }
}

fn default_noise() -> f64 {
    1.0
}

fn default_threshold_noise() -> f64 {
    1.0
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
            noise: default_noise(),
            threshold_noise: default_threshold_noise(),
            tables: BTreeMap::new(),
            identifiers: Vec::new(),
            secret: None,
            functions: BTreeMap::new(),
            viewer: None,
            coarser_rounding: 0,
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
        if !(0.0..=100.0).contains(&self.noise) || !(0.0..=100.0).contains(&self.threshold_noise) {
            return Err(
                "privacy.noise and privacy.threshold_noise must be between 0 and 100".into(),
            );
        }
        if let Some(v) = &self.viewer {
            let weaker = |name: &str, theirs: String, ours: String| {
                Err(format!(
                    "privacy.viewer.{name} is {theirs}, below the analysts' {ours}: a viewer's release can only be stricter"
                ))
            };
            if let Some(k) = v.k.filter(|&k| k < self.k) {
                return weaker("k", k.to_string(), self.k.to_string());
            }
            if let Some(r) = v.rounding.filter(|&r| r < self.rounding) {
                return weaker("rounding", r.to_string(), self.rounding.to_string());
            }
        }
        Ok(())
    }

    /// The policy a role's release follows: for viewers, this one made
    /// stricter by the viewer's numbers (never looser: inside a project
    /// whose numbers are stricter still, those stand); this policy for
    /// everyone else.
    pub fn for_role(&self, role: Role) -> Policy {
        let mut p = self.clone();
        if role == Role::Viewer
            && let Some(v) = p.viewer.take()
        {
            p.k = p.k.max(v.k.unwrap_or(0));
            let coarser = v.rounding.unwrap_or(0).max(p.coarser_rounding);
            if coarser > p.rounding {
                p.coarser_rounding = coarser;
            }
        }
        p.viewer = None;
        p
    }

    /// The key that seeds the noise: the store's, else one for this process.
    pub fn noise_key(&self) -> [u8; 32] {
        static PROCESS: std::sync::OnceLock<NoiseKey> = std::sync::OnceLock::new();
        match &self.secret {
            Some(k) => k.0,
            None => PROCESS.get_or_init(NoiseKey::random).0,
        }
    }

    /// Whether a column of a person-level table identifies a record: a CDM
    /// record identifier or one the policy names.
    pub fn is_identifier(&self, table: &TableReference, column: &str) -> bool {
        if tsunagu_catalog::cdm::is_record_id(column) {
            return true;
        }
        let t = table.table().to_ascii_lowercase();
        let s = table.schema().unwrap_or("public").to_ascii_lowercase();
        let c = column.to_ascii_lowercase();
        let names = [c.clone(), format!("{t}.{c}"), format!("{s}.{t}.{c}")];
        self.identifiers
            .iter()
            .any(|i| names.contains(&i.to_ascii_lowercase()))
    }

    /// The role of a scanned table with the given columns.
    pub fn table_role(&self, table: &TableReference, schema: &DFSchema) -> TableRole {
        let name = table.table().to_ascii_lowercase();
        let schema_name = table.schema().unwrap_or("public").to_ascii_lowercase();
        // The steward's project tables are not shown to analysts, whatever
        // the policy says. (The quality tables release their counts to
        // analysts themselves, as the label does.)
        if schema_name == crate::projects::admin::SCHEMA {
            return TableRole::Hidden;
        }
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
