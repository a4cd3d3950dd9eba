//! One analyst session: a DataFusion `SessionContext` with the store's
//! schemas, the RWD functions and Tsunagu's settings.

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
    /// The command tag a Postgres client expects.
    pub fn tag(&self) -> &'static str {
        match self {
            Action::CreateCohort { .. } => "CREATE COHORT",
            Action::DropCohort { .. } => "DROP COHORT",
            Action::CreateResult { .. } => "CREATE RESULT",
            Action::ReleaseResult { .. } => "RELEASE RESULT",
            Action::Project(c) => c.tag(),
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
        Session {
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

    /// Declares that the session's catalog settings changed outside the
    /// engine (an embedder's `SET search_path`): statements planned before
    /// are planned again.
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

    /// The policy with this session's function classes.
    fn analyst_policy(&self) -> Policy {
        let mut policy = self.policy().for_role(self.role());
        policy.functions.extend(
            self.functions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(k, v)| (k.clone(), *v)),
        );
        policy
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

    /// The DataFusion context behind the session.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Splits SQL text into statements (PostgreSQL dialect). A cohort
    /// command (`CREATE COHORT`, `DROP COHORT`) is the whole text.
    /// Text that does not parse is audited here, as it was sent.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>> {
        let parsed = (|| {
            if let Some(c) = cohort_command(sql)? {
                return Ok(vec![c]);
            }
            if let Some(c) = result_command(sql)? {
                return Ok(vec![c]);
            }
            if let Some(command) = crate::projects::admin::parse(sql)? {
                return Ok(vec![Statement::Project {
                    command,
                    text: sql.trim().to_owned(),
                }]);
            }
            Ok(
                DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {})?
                    .into_iter()
                    .map(Statement::Sql)
                    .collect(),
            )
        })();
        if let Err(e) = &parsed {
            self.log(sql.trim(), Decision::Error, Some(error_class(e)), None, 0)?;
        }
        parsed
    }

    /// Plans one parsed statement; for analysts, through the privacy layer.
    /// A refused or failing statement is audited here.
    pub async fn plan_statement(&self, statement: Statement) -> Result<Prepared> {
        let sql = statement_text(&statement);
        match self.plan_checked(statement, sql.clone()).await {
            Ok(p) => Ok(p),
            Err(e) => {
                let (decision, rule) = match &e {
                    EngineError::Refused { rule, .. } => {
                        (Decision::Refused, Some(rule.to_string()))
                    }
                    other => (Decision::Error, Some(error_class(other))),
                };
                self.log(&sql, decision, rule, None, 0)?;
                Err(e)
            }
        }
    }

    async fn plan_checked(&self, statement: Statement, sql: String) -> Result<Prepared> {
        let analyst = self.role() != Role::Steward;
        if self.role() == Role::Viewer
            && let Some(what) = match &statement {
                Statement::CreateCohort { .. } => Some("CREATE COHORT"),
                Statement::DropCohort { .. } => Some("DROP COHORT"),
                Statement::CreateResult { .. } => Some("CREATE RESULT"),
                Statement::ReleaseResult { .. } => Some("RELEASE RESULT"),
                _ => None,
            }
        {
            return Err(EngineError::Refused {
                code: "42501",
                rule: "read-only role",
                message: format!(
                    "{what} is refused to the viewer role, which only reads [rule: read-only role]"
                ),
            });
        }
        if self.project().is_some() {
            self.open_project("a statement")?;
        }
        let statement = match statement {
            Statement::Sql(s) => s,
            Statement::Project { command, .. } => {
                if self.role() != Role::Steward {
                    return Err(EngineError::Refused {
                        code: "42501",
                        rule: "steward command",
                        message: format!(
                            "{} is a steward's command [rule: steward command]",
                            command.tag()
                        ),
                    });
                }
                return Ok(Prepared::new(
                    LogicalPlanBuilder::empty(false).build()?,
                    sql,
                    Some(Action::Project(command)),
                ));
            }
            Statement::CreateResult { name, query } => {
                cohorts::check_name(&name)?;
                self.open_project("CREATE RESULT")?;
                let mut inner = self.parse(&query)?;
                let Some(Statement::Sql(inner)) = inner.pop().filter(|_| inner.is_empty()) else {
                    return Err(EngineError::Unsupported(
                        "CREATE RESULT: the definition must be one query".into(),
                    ));
                };
                let inner = self.plan_raw(inner).await?;
                if inner.action.is_some() || !inner.parameter_types.is_empty() {
                    return Err(EngineError::Unsupported(
                        "CREATE RESULT: the definition must be a query without parameters".into(),
                    ));
                }
                let plan = if analyst {
                    guard(|| privacy::guard(&inner.plan, &self.analyst_policy()))?.plan
                } else {
                    inner.plan.clone()
                };
                return Ok(Prepared::new(
                    LogicalPlanBuilder::empty(false).build()?,
                    sql,
                    Some(Action::CreateResult {
                        name,
                        definition: query.trim().to_owned(),
                        query: plan,
                        by_rules: analyst,
                    }),
                ));
            }
            Statement::ReleaseResult { name, purpose } => {
                cohorts::check_name(&name)?;
                self.open_project("RELEASE RESULT")?;
                return Ok(Prepared::new(
                    LogicalPlanBuilder::empty(false).build()?,
                    sql,
                    Some(Action::ReleaseResult { name, purpose }),
                ));
            }
            Statement::CreateCohort { name, query } => {
                cohorts::check_name(&name)?;
                let mut inner = self.parse(&query)?;
                let Some(Statement::Sql(inner)) = inner.pop().filter(|_| inner.is_empty()) else {
                    return Err(EngineError::Unsupported(
                        "CREATE COHORT: the definition must be one query".into(),
                    ));
                };
                let inner = self.plan_raw(inner).await?;
                let inner_plan = if analyst {
                    guard(|| privacy::guard_cohort(&inner.plan, &self.analyst_policy()))?
                } else {
                    inner.plan.clone()
                };
                if inner.action.is_some() {
                    return Err(EngineError::Unsupported(
                        "CREATE COHORT: the definition must be a query".into(),
                    ));
                }
                if !inner.parameter_types.is_empty() {
                    return Err(EngineError::Unsupported(
                        "CREATE COHORT: the query cannot take parameters".into(),
                    ));
                }
                let schema = inner.schema();
                cohorts::cohort_rows(&schema, &[])?;
                return Ok(Prepared::new(
                    LogicalPlanBuilder::empty(false).build()?,
                    sql,
                    Some(Action::CreateCohort {
                        name,
                        definition: query.trim().to_owned(),
                        query: inner_plan,
                    }),
                ));
            }
            Statement::DropCohort { name, if_exists } => {
                cohorts::check_name(&name)?;
                return Ok(Prepared::new(
                    LogicalPlanBuilder::empty(false).build()?,
                    sql,
                    Some(Action::DropCohort { name, if_exists }),
                ));
            }
        };
        let mut prepared = self.plan_raw(statement).await?;
        prepared.sql = sql;
        if analyst {
            let guarded = guard(|| privacy::guard(&prepared.plan, &self.analyst_policy()))?;
            prepared.plan = guarded.plan;
            prepared.release = Some(guarded.stats);
            prepared.result_schema =
                result_schema::announced(&self.ctx.state(), &prepared.plan, &prepared.names);
        }
        if self.results.is_some() {
            prepared.reusable = self.store_tables.read_only_by(&prepared.plan);
            // Answers are kept for the whole store only.
            prepared.repeatable = prepared.reusable
                && self.project().is_none()
                && crate::result_cache::calls_only_immutable(&prepared.plan);
        }
        Ok(prepared)
    }

    /// The schema unqualified table names are looked up in.
    fn default_schema(&self) -> String {
        self.ctx
            .state_ref()
            .read()
            .config()
            .options()
            .catalog
            .default_schema
            .clone()
    }

    /// Plans SQL as written, with no privacy rewrite.
    async fn plan_raw(&self, mut statement: SqlStatement) -> Result<Prepared> {
        let state = self.ctx.state();
        crate::designs::expand(&mut statement)?;
        pg_dialect::rewrite::rewrite(&mut statement);
        let postgres = pg_dialect::column_names::postgres_names(&statement);
        let mut retry = statement.clone();
        let mut names = rewrite::repeated_names(&mut statement, false);
        let plan = match state.statement_to_plan(statement).await {
            Err(e) if rewrite::is_repeated_name(&e) => {
                names = rewrite::repeated_names(&mut retry, true);
                state.statement_to_plan(retry).await?
            }
            plan => plan?,
        };
        let mut names = names.with_postgres_names(postgres);
        names.resolve(&plan);
        check_read_only(&plan)?;
        let types = plan.get_parameter_types()?;
        let mut parameter_types = Vec::new();
        for n in 1..=types.len() {
            parameter_types.push(types.get(&format!("${n}")).cloned().flatten());
        }
        let result_schema = result_schema::announced(&state, &plan, &names);
        Ok(Prepared {
            plan,
            parameter_types,
            action: None,
            sql: String::new(),
            release: None,
            names,
            result_schema,
            reusable: false,
            repeatable: false,
        })
    }

    /// Performs a statement's side effect.
    async fn act(&self, action: &Action) -> Result<()> {
        if self.role() == Role::Viewer && !matches!(action, Action::Project(_)) {
            // Prepared before the session lowered its role to viewer.
            return Err(EngineError::Refused {
                code: "42501",
                rule: "read-only role",
                message: format!(
                    "{} is refused to the viewer role, which only reads [rule: read-only role]",
                    action.tag()
                ),
            });
        }
        match action {
            Action::Project(command) => {
                let Some(admin) = read(&self.admin).clone() else {
                    return Err(EngineError::Unsupported(format!(
                        "{} is not available in this session",
                        command.tag()
                    )));
                };
                command.run(&admin, self).await
            }
            Action::CreateResult {
                name,
                definition,
                query,
                by_rules,
            } => {
                let project = self.open_project("CREATE RESULT")?;
                let measures = crate::projects::outputs::measures(query);
                let df = self.ctx.execute_logical_plan(query.clone()).await?;
                let schema = Arc::new(df.schema().as_arrow().clone());
                let batches = df.collect().await?;
                let meta = crate::projects::outputs::ResultMeta {
                    name: name.clone(),
                    query: definition.clone(),
                    user: self.user(),
                    created_at: crate::projects::now(),
                    released_by_rules: *by_rules,
                    measures,
                };
                project.outputs.save_result(&meta, schema, &batches)?;
                project.show_results(&self.ctx, self.login_role() == Role::Steward)
            }
            Action::ReleaseResult { name, purpose } => {
                let project = self.open_project("RELEASE RESULT")?;
                let policy = self.policy();
                let request = project.outputs.request_release(
                    &project.id,
                    name,
                    purpose,
                    &self.user(),
                    policy.k,
                    policy.rounding,
                )?;
                project.show_results(&self.ctx, self.login_role() == Role::Steward)?;
                let failed: Vec<String> = request
                    .checks
                    .iter()
                    .filter(|c| !c.passed)
                    .map(|c| format!("{}: {}", c.check, c.detail))
                    .collect();
                if failed.is_empty() {
                    return Ok(());
                }
                Err(EngineError::Refused {
                    code: "42501",
                    rule: "output check",
                    message: format!(
                        "release request {} for result \"{name}\" failed its checks and was not filed for review: {} [rule: output check]",
                        request.id,
                        failed.join("; ")
                    ),
                })
            }
            Action::CreateCohort {
                name,
                definition,
                query,
            } => {
                let df = self.ctx.execute_logical_plan(query.clone()).await?;
                let schema = Arc::new(df.schema().as_arrow().clone());
                let batches = df.collect().await?;
                let (rows, size) = cohorts::cohort_rows(&schema, &batches)?;
                let meta = CohortMeta {
                    name: name.clone(),
                    owner: self.user(),
                    created_at: chrono::Utc::now()
                        .format("%Y-%m-%d %H:%M:%S UTC")
                        .to_string(),
                    definition: definition.clone(),
                    size,
                    store: String::new(),
                    lineage: String::new(),
                    delivery: 0,
                };
                self.cohort_store().save(meta, rows)?;
                Ok(())
            }
            Action::DropCohort { name, if_exists } => {
                let owner = self
                    .cohort_store()
                    .list()?
                    .into_iter()
                    .find(|m| &m.name == name);
                if self.role() != Role::Steward && owner.is_some_and(|m| m.owner != self.user()) {
                    return Err(EngineError::Refused {
                        code: "42501",
                        rule: "cohort owner",
                        message: format!(
                            "cohort {name:?} belongs to another user; analysts drop only their own cohorts [rule: cohort owner]"
                        ),
                    });
                }
                if !self.cohort_store().drop_cohort(name)? && !if_exists {
                    return Err(EngineError::Unsupported(format!(
                        "cohort {name:?} does not exist"
                    )));
                }
                Ok(())
            }
        }
    }

    /// Plans SQL text holding exactly one statement.
    pub async fn prepare(&self, sql: &str) -> Result<Prepared> {
        let mut statements = self.parse(sql)?;
        if statements.len() != 1 {
            return Err(EngineError::Unsupported(format!(
                "expected one SQL statement, found {}",
                statements.len()
            )));
        }
        self.plan_statement(statements.remove(0)).await
    }

    /// Runs a prepared statement with parameter values, streaming its rows.
    pub async fn execute(
        &self,
        prepared: &Prepared,
        params: Vec<ScalarValue>,
    ) -> Result<SendableRecordBatchStream> {
        let key = match self.answer_key(prepared, &params) {
            Ok(key) => key,
            Err(e) => return Err(self.failed(prepared, e)),
        };
        if let Some((cache, key)) = &key
            && let Some(answer) = cache.get(key)
        {
            let stream = crate::result_cache::replay(&answer, prepared.schema());
            return Ok(Box::pin(crate::audit::Audited::known(
                stream,
                self.clone(),
                prepared.sql.clone(),
                answer.cells,
            )));
        }
        let started = self.start(prepared, params).await;
        match started {
            Ok(stream) => {
                let stream = match key {
                    Some((cache, key)) => cache.fill(key, stream, prepared.release.clone()),
                    None => stream,
                };
                Ok(Box::pin(crate::audit::Audited::new(
                    stream,
                    self.clone(),
                    prepared.sql.clone(),
                    prepared.release.clone(),
                )))
            }
            Err(e) => Err(self.failed(prepared, e)),
        }
    }

    /// Audits a statement that failed to start; what the client is told.
    fn failed(&self, prepared: &Prepared, e: EngineError) -> EngineError {
        let class = error_class(&e);
        if let Err(a) = self.log(&prepared.sql, Decision::Error, Some(class.clone()), None, 0) {
            return a;
        }
        if (prepared.release.is_some() || self.role() != Role::Steward) && class == "execution" {
            // An analyst learns nothing from why a statement failed on the data.
            return EngineError::DataFusion(datafusion::error::DataFusionError::Execution(
                "the query failed while reading the data (details are withheld from analysts)"
                    .into(),
            ));
        }
        e
    }

    /// Where a repeatable statement's answer is kept, and under which key;
    /// `None` for other statements.
    fn answer_key(
        &self,
        prepared: &Prepared,
        params: &[ScalarValue],
    ) -> Result<
        Option<(
            Arc<crate::result_cache::ResultCache>,
            crate::result_cache::Key,
        )>,
    > {
        let Some(cache) = &self.results else {
            return Ok(None);
        };
        if !prepared.repeatable || prepared.action.is_some() || self.project().is_some() {
            return Ok(None);
        }
        let plan = bound(prepared, params.to_vec())?;
        let (user, role) = {
            let id = self.identity();
            (id.user.clone(), id.role)
        };
        Ok(Some((
            cache.clone(),
            crate::result_cache::Key {
                plan,
                user,
                role,
                default_schema: self.default_schema(),
                settings: self.settings.load(Ordering::Relaxed),
            },
        )))
    }

    async fn start(
        &self,
        prepared: &Prepared,
        params: Vec<ScalarValue>,
    ) -> Result<SendableRecordBatchStream> {
        if self.project().is_some() {
            // A statement prepared before its project closed does not run after.
            self.open_project("a statement")?;
        }
        if let Some(action) = &prepared.action {
            self.act(action).await?;
            return Ok(Box::pin(EmptyRecordBatchStream::new(prepared.schema())));
        }
        let plan = bound(prepared, params)?;
        let (stream, state) = if matches!(plan, LogicalPlan::Statement(_)) {
            // Session statements (`SET`, SQL-level `EXECUTE`) act on the context.
            self.settings.store(next_epoch(), Ordering::Relaxed);
            self.settings_changed();
            let df = self.ctx.execute_logical_plan(plan.clone()).await?;
            (df.execute_stream().await?, self.ctx.state())
        } else {
            let state = self.query_state();
            let df = datafusion::prelude::DataFrame::new(state.clone(), plan.clone());
            (df.execute_stream().await?, state)
        };
        let stream = crate::spill_retry::with_retry(stream, state, plan.clone());
        let stream = crate::damaged::name_damaged_files(stream, plan, self.roots.clone());
        Ok(result_schema::conformed(stream, prepared.schema()))
    }

    /// The state a query runs in: the session's, with a memory pool of its
    /// own (drawing on the shared one) when the session limits each query.
    fn query_state(&self) -> datafusion::execution::SessionState {
        let state = self.ctx.state();
        let limit = self.query_memory.load(std::sync::atomic::Ordering::Relaxed);
        if limit == 0 {
            return state;
        }
        let mut runtime = state.runtime_env().as_ref().clone();
        runtime.memory_pool = Arc::new(crate::query_memory::QueryPool::new(
            limit,
            runtime.memory_pool.clone(),
        ));
        datafusion::execution::session_state::SessionStateBuilder::new_from_existing(state)
            .with_runtime_env(Arc::new(runtime))
            .build()
    }

    /// Logs the end of an executed statement.
    pub(crate) fn log_end(
        &self,
        sql: &str,
        decision: Decision,
        rows: u64,
        cells: u64,
        rule: Option<String>,
    ) -> Result<()> {
        self.log(sql, decision, rule, Some(rows), cells)
    }

    /// Runs SQL text (one or more statements) and collects the last statement's rows.
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let mut last = Vec::new();
        for statement in self.parse(sql)? {
            let prepared = self.plan_statement(statement).await?;
            let stream = self.execute(&prepared, vec![]).await?;
            last = datafusion::physical_plan::common::collect(stream).await?;
        }
        Ok(last)
    }
}

/// Runs the privacy rewrite; a defect in it refuses the statement instead of
/// taking the process down.
/// A prepared statement's plan with its parameters' values in place.
fn bound(prepared: &Prepared, params: Vec<ScalarValue>) -> Result<LogicalPlan> {
    if params.is_empty() && prepared.parameter_types.is_empty() {
        return Ok(prepared.plan.clone());
    }
    Ok(prepared
        .plan
        .clone()
        .with_param_values(ParamValues::from(params))?)
}

fn guard<T>(f: impl FnOnce() -> std::result::Result<T, privacy::Refusal>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => Ok(r?),
        Err(_) => Err(EngineError::Refused {
            code: "XX000",
            rule: "internal",
            message: "the privacy layer could not check this statement, so it is refused [rule: internal]".into(),
        }),
    }
}

/// The statement as the audit log records it.
pub fn statement_text(statement: &Statement) -> String {
    match statement {
        Statement::Sql(s) => s.to_string(),
        Statement::CreateCohort { name, query } => {
            let query = DFParser::parse_sql_with_dialect(query, &PostgreSqlDialect {})
                .ok()
                .and_then(|mut v| v.pop_back())
                .map(|q| q.to_string())
                .unwrap_or_else(|| query.split_whitespace().collect::<Vec<_>>().join(" "));
            format!("CREATE COHORT {name} AS {query}")
        }
        Statement::Project { text, .. } => text.clone(),
        Statement::CreateResult { name, query } => format!("CREATE RESULT {name} AS {query}"),
        Statement::ReleaseResult { name, purpose } => {
            if purpose.is_empty() {
                format!("RELEASE RESULT {name}")
            } else {
                format!(
                    "RELEASE RESULT {name} WITH PURPOSE '{}'",
                    purpose.replace('\'', "''")
                )
            }
        }
        Statement::DropCohort { name, if_exists } => {
            format!(
                "DROP COHORT {}{name}",
                if *if_exists { "IF EXISTS " } else { "" }
            )
        }
    }
}

/// A short class of an error for the audit log (never its message: it may hold values).
pub(crate) fn error_class(e: &EngineError) -> String {
    match e {
        EngineError::Catalog(_) => "store".into(),
        EngineError::DataFusion(d) if crate::DamagedFile::find(d).is_some() => {
            "damaged-file".into()
        }
        EngineError::DataFusion(d) => match d.find_root() {
            datafusion::error::DataFusionError::SQL(..) => "syntax".into(),
            datafusion::error::DataFusionError::Plan(_)
            | datafusion::error::DataFusionError::SchemaError(..) => "planning".into(),
            datafusion::error::DataFusionError::ResourcesExhausted(_) => "resources".into(),
            _ => "execution".into(),
        },
        EngineError::Unsupported(_) => "unsupported".into(),
        EngineError::Refused { rule, .. } => rule.to_string(),
        EngineError::Audit(_) => "audit".into(),
    }
}

/// The store is read-only: refuse plans that would write or create anything.
fn check_read_only(plan: &LogicalPlan) -> Result<()> {
    let what = match plan {
        LogicalPlan::Dml(d) => Some(d.op.to_string()),
        LogicalPlan::Ddl(d) => Some(d.name().to_string()),
        LogicalPlan::Copy(_) => Some("COPY".to_string()),
        _ => None,
    };
    match what {
        Some(w) => Err(EngineError::Refused {
            code: "0A000",
            rule: "read-only",
            message: format!(
                "{w} is not supported: a Tsunagu store is read-only [rule: read-only]"
            ),
        }),
        None => Ok(()),
    }
}

/// Recognizes `CREATE COHORT name AS query` and `DROP COHORT [IF EXISTS] name`.
fn cohort_command(sql: &str) -> Result<Option<Statement>> {
    let text = sql.trim().trim_end_matches(';').trim();
    let mut words = text.split_whitespace();
    let (Some(verb), Some(noun)) = (words.next(), words.next()) else {
        return Ok(None);
    };
    if !noun.eq_ignore_ascii_case("cohort") {
        return Ok(None);
    }
    let rest = |n: usize| -> &str {
        let mut t = text;
        for _ in 0..n {
            t = t.trim_start();
            t = &t[t.find(char::is_whitespace).unwrap_or(t.len())..];
        }
        t.trim()
    };
    if verb.eq_ignore_ascii_case("create") {
        let tail = rest(2);
        let name_end = tail.find(char::is_whitespace).unwrap_or(tail.len());
        let name = tail[..name_end].trim_matches('"').to_ascii_lowercase();
        let after = tail[name_end..].trim_start();
        if after.len() < 2
            || !after[..2].eq_ignore_ascii_case("as")
            || after[2..]
                .chars()
                .next()
                .is_some_and(|c| !c.is_whitespace() && c != '(')
        {
            return Err(EngineError::Unsupported(
                "expected CREATE COHORT name AS <query returning person_id>".into(),
            ));
        }
        return Ok(Some(Statement::CreateCohort {
            name,
            query: after[2..].trim().to_owned(),
        }));
    }
    if verb.eq_ignore_ascii_case("drop") {
        let tail = rest(2);
        let (if_exists, name) = match tail.to_ascii_lowercase().strip_prefix("if exists") {
            Some(n) => (true, n.trim().to_owned()),
            None => (false, tail.to_ascii_lowercase()),
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(EngineError::Unsupported(
                "expected DROP COHORT [IF EXISTS] name".into(),
            ));
        }
        return Ok(Some(Statement::DropCohort {
            name: name.trim_matches('"').to_owned(),
            if_exists,
        }));
    }
    Ok(None)
}

type Shared<T> = Arc<std::sync::RwLock<T>>;

fn read<T>(l: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &std::sync::RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// Recognizes `CREATE RESULT name AS query` and
/// `RELEASE RESULT name [WITH PURPOSE 'text']`.
fn result_command(sql: &str) -> Result<Option<Statement>> {
    let text = sql.trim().trim_end_matches(';').trim();
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() < 2 || !words[1].eq_ignore_ascii_case("result") {
        return Ok(None);
    }
    let verb = words[0].to_ascii_lowercase();
    if verb != "create" && verb != "release" {
        return Ok(None);
    }
    let after_noun = {
        let t = text[words[0].len()..].trim_start();
        t[words[1].len()..].trim_start()
    };
    let name_end = after_noun
        .find(char::is_whitespace)
        .unwrap_or(after_noun.len());
    let name = after_noun[..name_end]
        .trim_matches('"')
        .to_ascii_lowercase();
    let rest = after_noun[name_end..].trim();
    if verb == "create" {
        let ok = rest.len() >= 2
            && rest[..2].eq_ignore_ascii_case("as")
            && rest[2..]
                .chars()
                .next()
                .is_some_and(|c| c.is_whitespace() || c == '(');
        if !ok || name.is_empty() {
            return Err(EngineError::Unsupported(
                "expected CREATE RESULT name AS <query>".into(),
            ));
        }
        return Ok(Some(Statement::CreateResult {
            name,
            query: rest[2..].trim().to_owned(),
        }));
    }
    let purpose = if rest.is_empty() {
        String::new()
    } else {
        let lower = rest.to_ascii_lowercase();
        let quoted = lower
            .strip_prefix("with")
            .map(str::trim_start)
            .and_then(|r| r.strip_prefix("purpose"))
            .map(|_| rest[rest.to_ascii_lowercase().find("purpose").unwrap_or(0) + 7..].trim());
        match quoted {
            Some(q) if q.len() >= 2 && q.starts_with('\'') && q.ends_with('\'') => {
                q[1..q.len() - 1].replace("''", "'")
            }
            _ => {
                return Err(EngineError::Unsupported(
                    "expected RELEASE RESULT name [WITH PURPOSE 'text']".into(),
                ));
            }
        }
    };
    if name.is_empty() {
        return Err(EngineError::Unsupported(
            "expected RELEASE RESULT name [WITH PURPOSE 'text']".into(),
        ));
    }
    Ok(Some(Statement::ReleaseResult { name, purpose }))
}
