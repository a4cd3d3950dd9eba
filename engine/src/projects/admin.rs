//! A steward's project operations, the same from the CLI and over SQL:
//! propose, approve, add a member, close, decide a release; and the
//! `steward.projects` / `steward.releases` tables that list them.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session as CatalogSession, TableProvider};
use datafusion::common::{Result as DfResult, exec_datafusion_err};
use datafusion::datasource::{MemTable, TableType};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use tsunagu_catalog::Store;

use super::outputs::{Outputs, Request};
use super::{EngineError, Project, Projects, Result, Status, now, parse_date};
use crate::privacy::Policy;
use crate::session::Session;

/// The schema of the steward's project tables (hidden from analysts).
pub const SCHEMA: &str = "steward";

/// The project operations of one store.
#[derive(Debug)]
pub struct Admin {
    store: Arc<Store>,
    policy: Arc<Policy>,
}

impl Admin {
    pub fn new(store: Arc<Store>, policy: Arc<Policy>) -> Admin {
        Admin { store, policy }
    }

    /// The store's projects.
    pub fn projects(&self) -> Projects {
        Projects::new(self.store.state_dir())
    }

    /// Proposes a project: its scope must exist in the store.
    pub fn propose(&self, project: &Project) -> Result<()> {
        project.scope.check(&self.store)?;
        if project.end < project.start {
            return Err(EngineError::Unsupported(format!(
                "project \"{}\": the end date is before the start date",
                project.id
            )));
        }
        self.projects().create(project)
    }

    /// Approves a proposed project, computing its population with `session`
    /// (a steward's).
    pub async fn approve(&self, session: &Session, id: &str) -> Result<Project> {
        if session.project().is_some() {
            // The population names the store's persons, not a project's pseudonyms.
            return Err(EngineError::Unsupported(format!(
                "approve project \"{id}\" on the whole store (database tsunagu), not inside a project"
            )));
        }
        let list = self.projects();
        let mut project = list.load(id)?;
        if project.status != Status::Proposed {
            return Err(EngineError::Unsupported(format!(
                "project \"{id}\" is not waiting for approval"
            )));
        }
        project.scope.check(&self.store)?;
        if let Some(sql) = &project.scope.population {
            use datafusion::arrow::array::AsArray;
            // Boxed: the session may be running this as its own command.
            let batches = Box::pin(session.sql(sql)).await?;
            let schema = batches
                .first()
                .map(|b| b.schema())
                .unwrap_or_else(|| Arc::new(Schema::empty()));
            let (rows, size) = crate::cohorts::cohort_rows(&schema, &batches).map_err(|e| {
                EngineError::Unsupported(format!("project \"{id}\" population: {e}"))
            })?;
            let bitmap: roaring::RoaringBitmap = rows
                .column(0)
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                .iter()
                .flatten()
                .map(|p| p as u32)
                .collect();
            super::write_whole(
                &list.dir(id).join("population.bitmap"),
                &tsunagu_udfs::bitmaps::to_bytes(&bitmap),
            )?;
            // Which numbering the population's person numbers belong to.
            let numbers = serde_json::json!({
                "store": self.store.fingerprint(),
                "lineage": self.store.lineage(),
                "delivery": self.store.generation(),
            });
            super::write_whole(
                &list.dir(id).join("population.json"),
                numbers.to_string().as_bytes(),
            )?;
            project.population_size = Some(size);
        }
        project.status = Status::Approved;
        project.approved_by = Some(session.user());
        list.save(&project)?;
        Ok(project)
    }

    /// Adds a member (an open project's).
    pub fn add_member(&self, id: &str, user: &str) -> Result<Project> {
        let list = self.projects();
        let mut p = list.load(id)?;
        if p.status == Status::Closed {
            return Err(EngineError::Unsupported(format!(
                "project \"{id}\" is closed"
            )));
        }
        if !p.members.iter().any(|m| m == user) {
            p.members.push(user.to_owned());
        }
        list.save(&p)?;
        Ok(p)
    }

    /// Ends a project: its definition says closed first (no new statement
    /// runs), then the workspace is deleted or archived.
    pub fn close(&self, id: &str, archive: bool) -> Result<Project> {
        let list = self.projects();
        let mut p = list.load(id)?;
        if p.status != Status::Closed {
            p.status = Status::Closed;
            p.closed_at = Some(now());
            list.save(&p)?;
        }
        Outputs::new(&list.dir(id)).end(archive)?;
        Ok(p)
    }

    /// Closes the approved projects whose end date has passed, their
    /// workspace deleted or archived as each one says; returns their ids.
    pub fn end_expired(&self) -> Result<Vec<String>> {
        let today = super::today();
        let mut ended = Vec::new();
        for p in self.projects().list()? {
            if p.status == Status::Approved && today > p.end {
                self.close(&p.id, p.archive_at_end)?;
                ended.push(p.id);
            }
        }
        Ok(ended)
    }

    /// Approves a pending release request into the project's outbox.
    pub fn approve_release(&self, id: &str, request: &str, reviewer: &str) -> Result<Request> {
        let list = self.projects();
        let p = list.load(id)?;
        let policy = p.policy(&self.policy);
        let provenance = serde_json::json!({
            "project": p.id,
            "project_title": p.title,
            "store": self.store.name(),
            "store_fingerprint": self.store.fingerprint(),
            "policy": { "k": policy.k, "rounding": policy.rounding, "noise": policy.noise },
        });
        Outputs::new(&list.dir(id)).approve(request, reviewer, provenance)
    }

    /// Rejects a release request.
    pub fn reject_release(
        &self,
        id: &str,
        request: &str,
        reviewer: &str,
        reason: &str,
    ) -> Result<Request> {
        let list = self.projects();
        list.load(id)?;
        Outputs::new(&list.dir(id)).reject(request, reviewer, reason)
    }
}

/// A project operation written as SQL (stewards only).
#[derive(Debug, Clone)]
pub enum Command {
    /// `CREATE PROJECT id (title '...', purpose '...', members 'a,b', tables
    /// 'ndb.person,...', columns 'ndb.person=a,b;...', period_start '...',
    /// period_end '...', population '...', start '...', end '...', k 20,
    /// rounding 5, at_end 'delete'|'archive')`
    Create(Box<Project>),
    /// `APPROVE PROJECT id`
    Approve(String),
    /// `ALTER PROJECT id ADD MEMBER user`
    AddMember { id: String, user: String },
    /// `CLOSE PROJECT id [ARCHIVE]`
    Close { id: String, archive: bool },
    /// `APPROVE RELEASE r OF PROJECT id`
    ApproveRelease { id: String, request: String },
    /// `REJECT RELEASE r OF PROJECT id REASON '...'`
    RejectRelease {
        id: String,
        request: String,
        reason: String,
    },
}

impl Command {
    /// The command's name, as messages (and the wire's command tags) say it.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Create(_) => "CREATE PROJECT",
            Command::Approve(_) => "APPROVE PROJECT",
            Command::AddMember { .. } => "ALTER PROJECT",
            Command::Close { .. } => "CLOSE PROJECT",
            Command::ApproveRelease { .. } => "APPROVE RELEASE",
            Command::RejectRelease { .. } => "REJECT RELEASE",
        }
    }

    /// Runs the command as `session`'s user.
    pub async fn run(&self, admin: &Admin, session: &Session) -> Result<()> {
        let user = session.user();
        match self {
            Command::Create(p) => {
                let mut p = (**p).clone();
                p.created_by = user;
                admin.propose(&p)
            }
            Command::Approve(id) => admin.approve(session, id).await.map(|_| ()),
            Command::AddMember { id, user } => admin.add_member(id, user).map(|_| ()),
            Command::Close { id, archive } => admin.close(id, *archive).map(|_| ()),
            Command::ApproveRelease { id, request } => {
                admin.approve_release(id, request, &user).map(|_| ())
            }
            Command::RejectRelease {
                id,
                request,
                reason,
            } => admin.reject_release(id, request, &user, reason).map(|_| ()),
        }
    }
}

/// Recognizes a project command; `None` for other SQL.
pub fn parse(sql: &str) -> Result<Option<Command>> {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let text = sql.trim().trim_end_matches(';');
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, text).tokenize() else {
        return Ok(None);
    };
    let tokens: Vec<Token> = tokens
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let word = |i: usize| match tokens.get(i) {
        Some(Token::Word(w)) => Some(w.value.to_ascii_lowercase()),
        _ => None,
    };
    let (Some(verb), Some(noun)) = (word(0), word(1)) else {
        return Ok(None);
    };
    let bad = |usage: &str| EngineError::Unsupported(format!("expected {usage}"));
    let end = |i: usize| tokens.len() == i;
    match (verb.as_str(), noun.as_str()) {
        ("approve", "project") => match word(2) {
            Some(id) if end(3) => Ok(Some(Command::Approve(id))),
            _ => Err(bad("APPROVE PROJECT id")),
        },
        ("close", "project") => match (word(2), word(3)) {
            (Some(id), None) if end(3) => Ok(Some(Command::Close { id, archive: false })),
            (Some(id), Some(a)) if a == "archive" && end(4) => {
                Ok(Some(Command::Close { id, archive: true }))
            }
            _ => Err(bad("CLOSE PROJECT id [ARCHIVE]")),
        },
        ("alter", "project") => match (word(2), word(3), word(4), word(5)) {
            (Some(id), Some(a), Some(m), Some(user)) if a == "add" && m == "member" && end(6) => {
                Ok(Some(Command::AddMember { id, user }))
            }
            _ => Err(bad("ALTER PROJECT id ADD MEMBER user")),
        },
        ("approve", "release") | ("reject", "release") => {
            let usage =
                "APPROVE RELEASE r OF PROJECT id, or REJECT RELEASE r OF PROJECT id REASON 'text'";
            let (Some(request), Some(of), Some(p), Some(id)) = (word(2), word(3), word(4), word(5))
            else {
                return Err(bad(usage));
            };
            if of != "of" || p != "project" {
                return Err(bad(usage));
            }
            if verb == "approve" {
                return if end(6) {
                    Ok(Some(Command::ApproveRelease { id, request }))
                } else {
                    Err(bad(usage))
                };
            }
            match (word(6), tokens.get(7)) {
                (Some(r), Some(Token::SingleQuotedString(reason))) if r == "reason" && end(8) => {
                    Ok(Some(Command::RejectRelease {
                        id,
                        request,
                        reason: reason.clone(),
                    }))
                }
                _ => Err(bad(usage)),
            }
        }
        ("create", "project") => {
            let usage = "CREATE PROJECT id (title '...', purpose '...', tables '...', start 'YYYY-MM-DD', end 'YYYY-MM-DD', ...)";
            let Some(id) = word(2) else {
                return Err(bad(usage));
            };
            if tokens.get(3) != Some(&Token::LParen) || tokens.last() != Some(&Token::RParen) {
                return Err(bad(usage));
            }
            let mut options = std::collections::BTreeMap::new();
            let body = &tokens[4..tokens.len() - 1];
            for item in body.split(|t| *t == Token::Comma) {
                let value = match item {
                    [Token::Word(k), Token::SingleQuotedString(v)] => (k, v.clone()),
                    [Token::Word(k), Token::Number(v, _)] => (k, v.clone()),
                    _ => return Err(bad(usage)),
                };
                options.insert(value.0.value.to_ascii_lowercase(), value.1);
            }
            Ok(Some(Command::Create(Box::new(project_from(id, options)?))))
        }
        _ => Ok(None),
    }
}

/// A proposed project from `CREATE PROJECT` options.
fn project_from(id: String, mut o: std::collections::BTreeMap<String, String>) -> Result<Project> {
    let mut take = |k: &str| o.remove(k);
    let need = |v: Option<String>, k: &str| {
        v.ok_or_else(|| EngineError::Unsupported(format!("CREATE PROJECT: option {k} is required")))
    };
    let list = |v: Option<String>, sep: char| -> Vec<String> {
        v.map(|v| {
            v.split(sep)
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
    };
    let date = |v: String| parse_date(&v).map_err(EngineError::Unsupported);
    let number = |v: Option<String>, k: &str| -> Result<Option<u64>> {
        v.map(|v| {
            v.parse::<u64>().map_err(|_| {
                EngineError::Unsupported(format!("CREATE PROJECT: {k} must be a whole number"))
            })
        })
        .transpose()
    };
    let title = need(take("title"), "title")?;
    let purpose = need(take("purpose"), "purpose")?;
    let members = list(take("members"), ',');
    let tables = list(take("tables"), ',');
    let mut columns = std::collections::BTreeMap::new();
    for c in list(take("columns"), ';') {
        let Some((t, cols)) = c.split_once('=') else {
            return Err(EngineError::Unsupported(
                "CREATE PROJECT: columns is 'schema.table=a,b; schema.table=c'".into(),
            ));
        };
        columns.insert(t.trim().to_owned(), list(Some(cols.to_owned()), ','));
    }
    let period_start = take("period_start").map(date).transpose()?;
    let period_end = take("period_end").map(date).transpose()?;
    let population = take("population");
    let start = date(need(take("start"), "start")?)?;
    let end = date(need(take("end"), "end")?)?;
    let k = number(take("k"), "k")?;
    let rounding = number(take("rounding"), "rounding")?;
    let archive_at_end = match take("at_end").as_deref() {
        None | Some("delete") => false,
        Some("archive") => true,
        Some(_) => {
            return Err(EngineError::Unsupported(
                "CREATE PROJECT: at_end is 'delete' or 'archive'".into(),
            ));
        }
    };
    if let Some(unknown) = o.keys().next() {
        return Err(EngineError::Unsupported(format!(
            "CREATE PROJECT: unknown option {unknown}"
        )));
    }
    Ok(Project {
        id,
        title,
        purpose,
        members,
        scope: super::Scope {
            tables,
            columns,
            period_start,
            period_end,
            population,
        },
        start,
        end,
        k,
        rounding,
        status: Status::Proposed,
        created_by: String::new(),
        created_at: now(),
        approved_by: None,
        closed_at: None,
        salt: super::new_salt(),
        population_size: None,
        archive_at_end,
    })
}

/// `steward.projects` or `steward.releases`, read from the files at each scan.
#[derive(Debug)]
pub struct ListTable {
    projects: Projects,
    releases: bool,
}

impl ListTable {
    pub fn new(projects: Projects, releases: bool) -> Self {
        ListTable { projects, releases }
    }

    fn names(&self) -> &'static [&'static str] {
        if self.releases {
            &[
                "project",
                "id",
                "result",
                "status",
                "requested_by",
                "requested_at",
                "failed_checks",
                "reviewer",
            ]
        } else {
            &[
                "id",
                "title",
                "status",
                "start_date",
                "end_date",
                "members",
                "tables",
                "created_by",
                "approved_by",
            ]
        }
    }

    fn rows(&self) -> Result<Vec<Vec<String>>> {
        let mut rows = Vec::new();
        for p in self.projects.list()? {
            if !self.releases {
                rows.push(vec![
                    p.id.clone(),
                    p.title.clone(),
                    format!("{:?}", p.status).to_lowercase(),
                    p.start.format("%Y-%m-%d").to_string(),
                    p.end.format("%Y-%m-%d").to_string(),
                    p.members.join(","),
                    p.scope.tables.join(","),
                    p.created_by.clone(),
                    p.approved_by.clone().unwrap_or_default(),
                ]);
                continue;
            }
            for r in Outputs::new(&self.projects.dir(&p.id)).requests()? {
                rows.push(vec![
                    p.id.clone(),
                    r.id.clone(),
                    r.result.clone(),
                    format!("{:?}", r.status).to_lowercase(),
                    r.requested_by.clone(),
                    r.requested_at.clone(),
                    r.checks
                        .iter()
                        .filter(|c| !c.passed)
                        .map(|c| c.check.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    r.reviewer.clone().unwrap_or_default(),
                ]);
            }
        }
        Ok(rows)
    }
}

#[async_trait]
impl TableProvider for ListTable {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.names()
                .iter()
                .map(|n| Field::new(*n, DataType::Utf8, false))
                .collect::<Vec<_>>(),
        ))
    }
    fn table_type(&self) -> TableType {
        TableType::View
    }
    async fn scan(
        &self,
        state: &dyn CatalogSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let rows = self.rows().map_err(|e| exec_datafusion_err!("{e}"))?;
        let columns: Vec<ArrayRef> = (0..self.names().len())
            .map(|i| {
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r[i].as_str()),
                )) as ArrayRef
            })
            .collect();
        let batch = RecordBatch::try_new(self.schema(), columns)?;
        MemTable::try_new(self.schema(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_commands_parse() {
        let c = parse(
            "CREATE PROJECT nsaid (title 'NSAIDs', purpose 'safety', members 'ana, bob', \
             tables 'ndb.person,ndb.drug_exposure', columns 'ndb.person=person_id,year_of_birth', \
             period_start '2018-01-01', start '2026-01-01', end '2026-12-31', k 20);",
        )
        .unwrap();
        let Some(Command::Create(p)) = c else {
            panic!("{c:?}")
        };
        assert_eq!(p.members, ["ana", "bob"]);
        assert_eq!(p.scope.tables, ["ndb.person", "ndb.drug_exposure"]);
        assert_eq!(
            p.scope.columns["ndb.person"],
            ["person_id", "year_of_birth"]
        );
        assert_eq!(p.k, Some(20));
        assert!(
            matches!(parse("approve project nsaid").unwrap(), Some(Command::Approve(id)) if id == "nsaid")
        );
        assert!(matches!(
            parse("ALTER PROJECT nsaid ADD MEMBER carol").unwrap(),
            Some(Command::AddMember { user, .. }) if user == "carol"
        ));
        assert!(matches!(
            parse("CLOSE PROJECT nsaid ARCHIVE").unwrap(),
            Some(Command::Close { archive: true, .. })
        ));
        assert!(matches!(
            parse("REJECT RELEASE r2 OF PROJECT nsaid REASON 'too fine'").unwrap(),
            Some(Command::RejectRelease { reason, .. }) if reason == "too fine"
        ));
        assert!(parse("SELECT 1").unwrap().is_none());
        assert!(parse("CREATE PROJECT x (title 'a')").is_err());
        assert!(parse("CREATE PROJECT x (title 'a', purpose 'b', start '2026-01-01', end '2026-02-01', colour 'red')").is_err());
        assert!(parse("CLOSE PROJECT").is_err());
    }
}
