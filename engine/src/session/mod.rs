//! One session over an opened store: a DataFusion `SessionContext` with the
//! store's schemas, the RWD functions and Tsunagu's settings, the user and
//! role, and the path of each statement through it:
//!
//! - [`parse`]: SQL text into statements, with Tsunagu's commands;
//! - [`plan`]: a statement into a prepared plan (PostgreSQL's names and
//!   types), refused or failing statements audited;
//! - [`guard`]: the privacy layer's call for analysts and viewers
//!   (`crate::privacy`: the rewrite, and the release of each number);
//! - [`run`]: execution as an audited stream (`crate::audit`);
//! - [`actions`]: the side effects of commands (cohorts, project results).
//!
//! Encoding rows for a client is the wire server's (`tsunagu_pgwire`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::physical_plan::EmptyRecordBatchStream;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParser, Statement as SqlStatement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;

use crate::audit::{AuditLog, Decision, Entry};
use crate::cohorts::{self, CohortMeta, CohortStore};
use crate::error::{EngineError, Result};
use crate::pg_dialect::{self, result_schema, rewrite, rewrite::OutputNames};
use crate::privacy::{self, Policy, ReleaseStats, Role};

mod actions;
mod guard;
mod lookup;
mod parse;
mod plan;
mod run;

use guard::guard;
pub use parse::statement_text;
pub use run::Statements;

/// One statement of SQL text: plain SQL, or a Tsunagu command.
#[derive(Debug, Clone)]
pub enum Statement {
    /// SQL that DataFusion plans.
    Sql(SqlStatement),
    /// `CREATE COHORT name AS query`.
    CreateCohort { name: String, query: String },
    /// `DROP COHORT [IF EXISTS] name`.
    DropCohort { name: String, if_exists: bool },
    /// `CREATE RESULT name AS query` (inside a project).
    CreateResult { name: String, query: String },
    /// `RELEASE RESULT name [WITH PURPOSE '...']` (inside a project).
    ReleaseResult { name: String, purpose: String },
    /// A steward's project command (`CREATE PROJECT`, `APPROVE PROJECT`, ...).
    Project {
        command: crate::projects::admin::Command,
        text: String,
    },
}

/// A side effect a prepared statement performs when executed.
#[derive(Debug, Clone)]
pub enum Action {
    CreateCohort {
        name: String,
        definition: String,
        query: LogicalPlan,
    },
    DropCohort {
        name: String,
        if_exists: bool,
    },
    CreateResult {
        name: String,
        definition: String,
        query: LogicalPlan,
        by_rules: bool,
    },
    ReleaseResult {
        name: String,
        purpose: String,
    },
    Project(crate::projects::admin::Command),
}

impl Action {
    /// The command's name, as messages (and the wire's command tags) say it.
    pub fn name(&self) -> &'static str {
        match self {
            Action::CreateCohort { .. } => "CREATE COHORT",
            Action::DropCohort { .. } => "DROP COHORT",
            Action::CreateResult { .. } => "CREATE RESULT",
            Action::ReleaseResult { .. } => "RELEASE RESULT",
            Action::Project(c) => c.name(),
        }
    }
}

/// A planned statement: what it returns and which parameters it takes.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The logical plan, with `$n` placeholders still in it.
    pub plan: LogicalPlan,
    /// Types of `$1`, `$2`, ... as inferred from the query (`None` when unknown).
    pub parameter_types: Vec<Option<DataType>>,
    /// What the statement does besides returning rows.
    pub action: Option<Action>,
    /// The statement as the audit log records it.
    pub sql: String,
    /// What the privacy layer withholds while it runs (analysts only).
    pub release: Option<Arc<ReleaseStats>>,
    /// Names of result columns the plan cannot carry (repeated names).
    names: OutputNames,
    /// The plan reads only the store's tables and does nothing else, so it
    /// stays valid while the session's [`Session::plan_epoch`] is unchanged.
    reusable: bool,
    /// Also, every function it calls is immutable: the same run gives the
    /// same answer on this snapshot.
    repeatable: bool,
    /// The result's schema, as announced before execution and sent.
    result_schema: SchemaRef,
}

impl Prepared {
    fn new(plan: LogicalPlan, sql: String, action: Option<Action>) -> Prepared {
        let result_schema = Arc::new(plan.schema().as_arrow().clone());
        Prepared {
            plan,
            parameter_types: vec![],
            action,
            sql,
            release: None,
            names: OutputNames::default(),
            result_schema,
            reusable: false,
            repeatable: false,
        }
    }

    /// The Arrow schema of the rows the statement returns: the types the
    /// plan has once analyzed (what execution produces), and PostgreSQL's
    /// column names.
    pub fn schema(&self) -> SchemaRef {
        self.result_schema.clone()
    }

    /// True when the statement may be kept and run again in the same
    /// session for the same SQL text while [`Session::plan_epoch`] is
    /// unchanged: it reads only the store's tables (which stay the same
    /// while its engine runs) and has no side effect.
    pub fn reusable(&self) -> bool {
        self.reusable
    }
}

/// Who a session runs for.
#[derive(Debug)]
pub(crate) struct Identity {
    pub user: String,
    /// The role the user logged in with: the most the session may do.
    pub login_role: Role,
    /// The role in effect (`SET ROLE` may lower it).
    pub role: Role,
}

/// One session over an opened store.
#[derive(Clone)]
pub struct Session {
    ctx: SessionContext,
    cohorts: Shared<Arc<CohortStore>>,
    identity: Arc<std::sync::Mutex<Identity>>,
    policy: Shared<Arc<Policy>>,
    /// The project the session works in, if any.
    project: Shared<Option<Arc<crate::projects::Active>>>,
    /// The store's project operations (for stewards' commands).
    admin: Shared<Option<Arc<crate::projects::admin::Admin>>>,
    /// Disclosure classes of functions registered on this session by its
    /// embedder (a server's catalog functions).
    functions: Arc<std::sync::Mutex<std::collections::BTreeMap<String, tsunagu_udfs::Disclosure>>>,
    audit: Option<Arc<AuditLog>>,
    /// Memory one query may hold, in bytes (0: no limit of its own).
    query_memory: Arc<std::sync::atomic::AtomicUsize>,
    /// Where the store's files are, to name a damaged one.
    roots: Arc<crate::damaged::Roots>,
    /// Answers of repeatable statements on this snapshot (shared by the
    /// engine's sessions).
    results: Option<Arc<crate::result_cache::ResultCache>>,
    /// The store's tables, whose plans stay valid while the engine runs.
    store_tables: Arc<crate::result_cache::StoreTables>,
    /// Changes whenever something plans depend on changes.
    epoch: Arc<AtomicU64>,
    /// 0 while the session's DataFusion settings are the defaults.
    settings: Arc<AtomicU64>,
}

/// Source of new plan epochs and settings marks.
static EPOCHS: AtomicU64 = AtomicU64::new(1);

fn next_epoch() -> u64 {
    EPOCHS.fetch_add(1, Ordering::Relaxed)
}

impl Session {
    pub(crate) fn new(
        ctx: SessionContext,
        cohorts: Arc<CohortStore>,
        identity: Arc<std::sync::Mutex<Identity>>,
        policy: Arc<Policy>,
        audit: Option<Arc<AuditLog>>,
        roots: Arc<crate::damaged::Roots>,
    ) -> Self {
        let session = Session {
            ctx,
            cohorts: Arc::new(std::sync::RwLock::new(cohorts)),
            identity,
            policy: Arc::new(std::sync::RwLock::new(policy)),
            project: Arc::default(),
            admin: Arc::default(),
            functions: Arc::default(),
            audit,
            query_memory: Arc::default(),
            roots,
            results: None,
            store_tables: Arc::default(),
            epoch: Arc::new(AtomicU64::new(next_epoch())),
            settings: Arc::default(),
        };
        session.apply_role();
        session
    }

    /// Integer arithmetic as the role computes it: PostgreSQL's error on
    /// overflow for a steward, NULL under the privacy rules (no statement
    /// of an analyst or viewer fails on data).
    fn apply_role(&self) {
        let total = self.role() != Role::Steward;
        let state = self.ctx.state_ref();
        let mut state = state.write();
        let options = state.config_mut().options_mut();
        if let Some(o) = options
            .extensions
            .get_mut::<crate::pg_dialect::arithmetic::ArithmeticOptions>()
        {
            o.total = total;
        }
    }

    pub(crate) fn with_reuse(
        mut self,
        results: Arc<crate::result_cache::ResultCache>,
        store_tables: Arc<crate::result_cache::StoreTables>,
    ) -> Session {
        self.results = Some(results);
        self.store_tables = store_tables;
        self
    }

    /// The session without kept answers: every statement is computed, as a
    /// timing needs.
    pub fn without_kept_answers(mut self) -> Session {
        self.results = None;
        self
    }

    /// A number that changes whenever something plans depend on changes:
    /// the user or role, the project, a setting. A [`Prepared::reusable`]
    /// statement planned under one epoch may run again under the same.
    pub fn plan_epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// Declares that the session's catalog settings changed (as
    /// [`Session::set_search_path`] does, or an embedder editing the
    /// context): statements planned before are planned again.
    pub fn settings_changed(&self) {
        self.epoch.store(next_epoch(), Ordering::Relaxed);
    }

    /// Declares the disclosure class of functions the embedder registered on
    /// this session's context; analysts may call no other unclassified function.
    pub fn classify_functions(
        &self,
        functions: impl IntoIterator<Item = (String, tsunagu_udfs::Disclosure)>,
    ) {
        self.functions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(functions);
    }

    /// Limits the memory each query of the session may hold (`None`: only
    /// the engine's memory limit, shared by all queries). A query over it
    /// fails with `ResourcesExhausted` (after spilling what can spill).
    pub fn set_query_memory_limit(&self, limit: Option<usize>) {
        self.query_memory
            .store(limit.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn identity_handle(&self) -> Arc<std::sync::Mutex<Identity>> {
        self.identity.clone()
    }

    fn identity(&self) -> std::sync::MutexGuard<'_, Identity> {
        self.identity.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The user the session runs for (owner of the cohorts it creates).
    pub fn user(&self) -> String {
        self.identity().user.clone()
    }

    /// Sets the session's user (the embedding application authenticated it).
    pub fn set_user(&self, user: &str) {
        self.identity().user = user.to_owned();
        self.settings_changed();
    }

    /// Binds the session to an authenticated user and the role they logged in with.
    pub fn authenticate(&self, user: &str, role: Role) {
        let mut id = self.identity();
        id.user = user.to_owned();
        id.login_role = role;
        id.role = role;
        drop(id);
        self.apply_role();
        self.settings_changed();
    }

    /// The role the session logged in with.
    pub fn login_role(&self) -> Role {
        self.identity().login_role
    }

    /// The role in effect.
    pub fn role(&self) -> Role {
        self.identity().role
    }

    /// Switches the role in effect: never above the role the session logged in with.
    pub fn set_role(&self, role: Role) -> Result<()> {
        let mut id = self.identity();
        if role.rank() > id.login_role.rank() {
            return Err(EngineError::Refused {
                code: "42501",
                rule: "role",
                message: format!(
                    "permission denied to set role {role}: user {} logged in as {} [rule: role]",
                    id.user, id.login_role
                ),
            });
        }
        id.role = role;
        drop(id);
        self.apply_role();
        self.settings_changed();
        Ok(())
    }

    /// Logs a statement the embedding layer answered itself (`SET`, `BEGIN`, ...):
    /// `refused` names the rule that refused it.
    pub fn log_command(&self, sql: &str, refused: Option<&str>) -> Result<()> {
        let decision = if refused.is_some() {
            Decision::Refused
        } else {
            Decision::Allowed
        };
        self.log(sql, decision, refused.map(str::to_owned), None, 0)
    }

    /// Logs a login attempt of `user` from `address`: `refused` gives the
    /// reason a login was refused (never the password).
    pub fn log_login(
        &self,
        user: &str,
        role: Option<Role>,
        address: &str,
        refused: Option<&str>,
    ) -> Result<()> {
        let Some(audit) = &self.audit else {
            return Ok(());
        };
        let role = role.map(|r| r.to_string());
        audit.append(Entry::login(user, role.as_deref(), address, refused))?;
        Ok(())
    }

    /// The disclosure policy in effect: the store's, or the project's.
    pub fn policy(&self) -> Arc<Policy> {
        read(&self.policy).clone()
    }

    fn cohort_store(&self) -> Arc<CohortStore> {
        read(&self.cohorts).clone()
    }

    /// Lets the session's stewards run project commands.
    pub(crate) fn set_admin(&self, admin: Arc<crate::projects::admin::Admin>) {
        *write(&self.admin) = Some(admin);
    }

    /// The project the session works in.
    pub fn project(&self) -> Option<Arc<crate::projects::Active>> {
        read(&self.project).clone()
    }

    /// Makes the session work in a project: its cohorts and policy (the
    /// engine has registered its dataset on the context).
    pub(crate) fn set_project(
        &self,
        project: Arc<crate::projects::Active>,
        cohorts: Arc<CohortStore>,
        policy: Arc<Policy>,
    ) {
        *write(&self.cohorts) = cohorts;
        *write(&self.policy) = policy;
        *write(&self.project) = Some(project);
        self.settings_changed();
    }

    /// The session's project, still open; an error otherwise.
    fn open_project(&self, what: &str) -> Result<Arc<crate::projects::Active>> {
        let Some(p) = self.project() else {
            return Err(EngineError::Unsupported(format!(
                "{what} works inside a project: connect with the project as the database name"
            )));
        };
        p.check_open(&self.user(), self.login_role() == Role::Steward)?;
        Ok(p)
    }

    /// Logs one statement; a log that cannot be written stops the statement.
    fn log(
        &self,
        sql: &str,
        decision: Decision,
        rule: Option<String>,
        rows: Option<u64>,
        cells: u64,
    ) -> Result<()> {
        let Some(audit) = &self.audit else {
            return Ok(());
        };
        let (user, role) = {
            let id = self.identity();
            (id.user.clone(), id.role.to_string())
        };
        audit.append(Entry {
            rows,
            suppressed_cells: cells,
            ..Entry::statement(&user, &role, sql, decision, rule)
        })?;
        Ok(())
    }

    /// `SET search_path`: the first schema of the list (comma-separated,
    /// quotes allowed) the store shows becomes the one unqualified table
    /// names are looked up in; none shown leaves it as it is.
    pub fn set_search_path(&self, value: &str) {
        let catalog = self.ctx.catalog(crate::CATALOG);
        let schema = value
            .split(',')
            .map(|s| s.trim().trim_matches('"').to_owned())
            .find(|s| catalog.as_ref().is_some_and(|c| c.schema(s).is_some()));
        self.settings_changed();
        if let Some(schema) = schema {
            self.ctx
                .state_ref()
                .write()
                .config_mut()
                .options_mut()
                .catalog
                .default_schema = schema;
        }
    }

    /// The DataFusion context behind the session.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }
}

/// The end of an executed statement is logged with the session's user and role.
impl crate::audit::StatementEnd for Session {
    fn end(
        &self,
        sql: &str,
        decision: Decision,
        rows: u64,
        cells: u64,
        rule: Option<String>,
    ) -> Result<()> {
        self.log(sql, decision, rule, Some(rows), cells)
    }
}

type Shared<T> = Arc<std::sync::RwLock<T>>;

fn read<T>(l: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &std::sync::RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}
