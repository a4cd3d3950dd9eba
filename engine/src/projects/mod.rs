//! Projects: an approved study's members, data scope, dates and policy; its
//! prepared dataset (the scope, with its own pseudonyms), its workspace
//! (cohorts and saved results) and its releases (docs/PROJECTS.md).
//!
//! A project lives in `<state>/projects/<id>/`: `project.json`, the
//! population bitmap, `cohorts/`, `results/`, `releases/` and `outbox/`.
//! Every file is written whole (temporary file, fsync, rename).

pub mod admin;
pub mod outputs;
pub mod scope;

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::EngineError;
use crate::privacy::Policy;

pub use scope::Scope;

type Result<T> = std::result::Result<T, EngineError>;

/// Where a project is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Created, waiting for a steward's approval.
    Proposed,
    /// Approved: members may work in it between its start and end dates.
    Approved,
    /// Ended: no connections, workspace archived or deleted.
    Closed,
}

/// A project as a steward defined it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Project {
    pub id: String,
    pub title: String,
    pub purpose: String,
    pub members: Vec<String>,
    pub scope: Scope,
    #[serde(with = "ymd")]
    pub start: NaiveDate,
    #[serde(with = "ymd")]
    pub end: NaiveDate,
    /// Minimum persons per released cell: at least the store's.
    pub k: Option<u64>,
    /// Rounding base of released counts: at least the store's.
    pub rounding: Option<u64>,
    pub status: Status,
    pub created_by: String,
    pub created_at: String,
    #[serde(default)]
    pub approved_by: Option<String>,
    #[serde(default)]
    pub closed_at: Option<String>,
    /// Random per project: with the store's secret, it keys the pseudonyms.
    pub salt: String,
    /// Persons in the population (set at approval when a population is given).
    #[serde(default)]
    pub population_size: Option<u64>,
    /// At the end date the workspace is archived (default: deleted).
    #[serde(default)]
    pub archive_at_end: bool,
}

impl Project {
    /// The project's disclosure policy: the store's, made stricter.
    pub fn policy(&self, store: &Policy) -> Policy {
        let mut p = store.clone();
        p.k = p.k.max(self.k.unwrap_or(0));
        p.rounding = p.rounding.max(self.rounding.unwrap_or(0));
        p
    }

    /// Why `user` cannot work in the project today, if they cannot.
    pub fn refusal(&self, user: &str, steward: bool, today: NaiveDate) -> Option<String> {
        let id = &self.id;
        if !steward && !self.members.iter().any(|m| m == user) {
            return Some(format!(
                "user \"{user}\" is not a member of project \"{id}\""
            ));
        }
        match self.status {
            Status::Proposed => Some(format!("project \"{id}\" is not approved yet")),
            Status::Closed => Some(format!("project \"{id}\" is closed")),
            Status::Approved if today < self.start => Some(format!(
                "project \"{id}\" starts on {}",
                self.start.format("%Y-%m-%d")
            )),
            Status::Approved if today > self.end => Some(format!(
                "project \"{id}\" ended on {}",
                self.end.format("%Y-%m-%d")
            )),
            Status::Approved => None,
        }
    }

    /// The key of the project's pseudonyms: secret (the store's key) and
    /// different for every project.
    pub fn pseudonym_key(&self, secret: &[u8; 32]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"tsunagu project pseudonyms\0");
        h.update(secret);
        h.update(self.id.as_bytes());
        h.update([0]);
        h.update(self.salt.as_bytes());
        h.finalize().into()
    }
}

/// Checks a project id: it is also the database name clients connect to.
pub fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok && !RESERVED.contains(&id) {
        Ok(())
    } else {
        Err(EngineError::Unsupported(format!(
            "project id {id:?}: use lowercase letters, digits, '_' or '-' (at most 63, starting with a letter), not {}",
            RESERVED.join(", ")
        )))
    }
}

/// Database names that mean the whole store, never a project.
pub const RESERVED: [&str; 4] = ["tsunagu", "postgres", "template0", "template1"];

/// The projects of a store's state folder.
#[derive(Debug, Clone)]
pub struct Projects {
    dir: PathBuf,
}

impl Projects {
    pub fn new(state_dir: &Path) -> Projects {
        Projects {
            dir: state_dir.join("projects"),
        }
    }

    /// The folder of project `id`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Every project, by id.
    pub fn list(&self) -> Result<Vec<Project>> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(out);
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if check_id(&name).is_ok() && e.path().join("project.json").exists() {
                out.push(self.load(&name)?);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Project `id`, if it exists.
    pub fn find(&self, id: &str) -> Result<Option<Project>> {
        if check_id(id).is_err() || !self.dir(id).join("project.json").exists() {
            return Ok(None);
        }
        self.load(id).map(Some)
    }

    /// Project `id`; an error naming it when there is none.
    pub fn load(&self, id: &str) -> Result<Project> {
        check_id(id)?;
        let path = self.dir(id).join("project.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|_| EngineError::Unsupported(format!("project \"{id}\" does not exist")))?;
        serde_json::from_str(&text)
            .map_err(|e| EngineError::Unsupported(format!("{}: {e}", path.display())))
    }

    /// Writes a new project; an error if the id is taken.
    pub fn create(&self, project: &Project) -> Result<()> {
        check_id(&project.id)?;
        if self.dir(&project.id).join("project.json").exists() {
            return Err(EngineError::Unsupported(format!(
                "project \"{}\" already exists",
                project.id
            )));
        }
        self.save(project)
    }

    /// Writes a project's definition whole.
    pub fn save(&self, project: &Project) -> Result<()> {
        let text = serde_json::to_string_pretty(project)
            .map_err(|e| EngineError::Unsupported(e.to_string()))?;
        write_whole(&self.dir(&project.id).join("project.json"), text.as_bytes())
    }
}

/// The project a session works in.
#[derive(Debug)]
pub struct Active {
    pub id: String,
    pub projects: Projects,
    pub outputs: outputs::Outputs,
}

impl Active {
    /// An error when the project has closed or ended since the session
    /// entered it.
    pub fn check_open(&self, user: &str, steward: bool) -> Result<()> {
        let project = self.projects.load(&self.id)?;
        match project.refusal(user, steward, today()) {
            None => Ok(()),
            Some(why) => Err(EngineError::Refused {
                code: "42501",
                rule: "project",
                message: format!("{why} [rule: project]"),
            }),
        }
    }

    /// (Re)registers schema `results` of the session's catalog: one table per
    /// saved result, and `releases`, the project's requests. Results a
    /// steward computed without the release rules are shown to stewards only.
    pub fn show_results(
        &self,
        ctx: &datafusion::prelude::SessionContext,
        steward: bool,
    ) -> Result<()> {
        use datafusion::arrow::array::{RecordBatch, StringArray};
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
        let Some(catalog) = ctx.catalog(crate::CATALOG) else {
            return Ok(());
        };
        let schema = MemorySchemaProvider::new();
        for saved in self.outputs.results()? {
            if steward || saved.meta.released_by_rules {
                schema.register_table(saved.meta.name.clone(), outputs::table(&saved)?)?;
            }
        }
        let requests = self.outputs.requests()?;
        let column = |f: &dyn Fn(&outputs::Request) -> String| {
            std::sync::Arc::new(StringArray::from_iter_values(requests.iter().map(f)))
                as datafusion::arrow::array::ArrayRef
        };
        let fields = [
            "id",
            "result",
            "status",
            "requested_by",
            "requested_at",
            "failed_checks",
        ];
        let rows = RecordBatch::try_new(
            std::sync::Arc::new(Schema::new(
                fields
                    .iter()
                    .map(|n| Field::new(*n, DataType::Utf8, false))
                    .collect::<Vec<_>>(),
            )),
            vec![
                column(&|r| r.id.clone()),
                column(&|r| r.result.clone()),
                column(&|r| format!("{:?}", r.status).to_lowercase()),
                column(&|r| r.requested_by.clone()),
                column(&|r| r.requested_at.clone()),
                column(&|r| {
                    r.checks
                        .iter()
                        .filter(|c| !c.passed)
                        .map(|c| c.check.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                }),
            ],
        )?;
        schema.register_table(
            "releases".into(),
            std::sync::Arc::new(datafusion::datasource::MemTable::try_new(
                rows.schema(),
                vec![vec![rows]],
            )?),
        )?;
        catalog.register_schema("results", std::sync::Arc::new(schema))?;
        Ok(())
    }
}

/// A new random salt.
pub fn new_salt() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Writes a file whole: a temporary file beside it, synced, then renamed.
pub(crate) fn write_whole(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let io = |e: std::io::Error| EngineError::Unsupported(format!("{}: {e}", path.display()));
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Dates as `YYYY-MM-DD` in project files.
pub(crate) mod ymd {
    use chrono::NaiveDate;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&d.format("%Y-%m-%d").to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_date(&text).map_err(serde::de::Error::custom)
    }
}

/// A date written `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> std::result::Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| format!("{text:?} is not a date (YYYY-MM-DD)"))
}

/// Today's date (UTC).
pub fn today() -> NaiveDate {
    chrono::Utc::now().date_naive()
}

/// Now, as written in project files.
pub fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> Project {
        Project {
            id: "p1".into(),
            title: "t".into(),
            purpose: "p".into(),
            members: vec!["ana".into()],
            scope: Scope::default(),
            start: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            end: NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
            k: Some(20),
            rounding: None,
            status: Status::Approved,
            created_by: "s".into(),
            created_at: now(),
            approved_by: Some("s".into()),
            closed_at: None,
            salt: new_salt(),
            population_size: None,
            archive_at_end: false,
        }
    }

    #[test]
    fn a_project_is_never_looser_than_the_store() {
        let p = project();
        let store = Policy::default();
        assert_eq!(p.policy(&store).k, 20);
        assert_eq!(p.policy(&store).rounding, store.rounding);
        let strict = Policy {
            k: 50,
            ..Policy::default()
        };
        assert_eq!(p.policy(&strict).k, 50);
    }

    #[test]
    fn members_work_between_the_dates_of_an_approved_project() {
        let mut p = project();
        let d = |m, d| NaiveDate::from_ymd_opt(2026, m, d).unwrap();
        assert_eq!(p.refusal("ana", false, d(6, 1)), None);
        assert!(
            p.refusal("bob", false, d(6, 1))
                .unwrap()
                .contains("not a member")
        );
        assert!(p.refusal("ana", false, d(12, 31)).is_none());
        p.end = d(5, 31);
        assert!(p.refusal("ana", false, d(6, 1)).unwrap().contains("ended"));
        p.status = Status::Closed;
        assert!(p.refusal("ana", false, d(1, 2)).unwrap().contains("closed"));
        assert!(check_id("tsunagu").is_err() && check_id("Bad id").is_err());
        assert!(check_id("nsaid-2026").is_ok());
    }

    #[test]
    fn pseudonym_keys_differ_by_project() {
        let a = project();
        let mut b = project();
        b.id = "p2".into();
        assert_ne!(a.pseudonym_key(&[1; 32]), b.pseudonym_key(&[1; 32]));
        assert_ne!(a.pseudonym_key(&[1; 32]), a.pseudonym_key(&[2; 32]));
    }
}
