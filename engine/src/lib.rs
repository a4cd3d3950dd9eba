//! Tsunagu's engine: open a linked, pseudonymized RWD store and query it
//! with SQL, with no server involved.
//!
//! ```no_run
//! # async fn demo() -> tsunagu_engine::Result<()> {
//! use tsunagu_engine::{Engine, EngineOptions};
//! let engine = Engine::open("path/to/store", EngineOptions::default()).await?;
//! let session = engine.session()?;
//! let batches = session
//!     .sql("SELECT source, count(DISTINCT person_id) AS persons FROM linked.person GROUP BY source")
//!     .await?;
//! println!("{}", datafusion::arrow::util::pretty::pretty_format_batches(&batches).unwrap());
//! # Ok(()) }
//! ```
//!
//! The path of a query, in a DataFusion `SessionContext` per [`Session`]
//! that shows the store's schemas (`tsunagu_catalog`) and the RWD functions
//! (`tsunagu_udfs`): `session::parse` → `session::plan` (DataFusion's
//! planner with `pg_dialect`) → `session::guard` (`privacy`, for analysts
//! and viewers) → `session::run` (DataFusion's optimizer with the planner
//! additions below, execution, `audit`). A wire server, a CLI or a
//! distributed runner sit on top; the engine knows none of them.

pub mod audit;
pub mod cohort_algebra;
pub mod cohorts;
pub mod current;
mod damaged;
pub mod designs;
pub mod error;
pub mod first_rows;
pub mod graph;
mod identity;
pub mod join_order;
pub mod join_orderings;
pub mod person_ranges;
pub mod person_sort;
pub mod pg_dialect;
pub mod plan_codec;
pub mod privacy;
pub mod projects;
pub mod quality;
mod query_memory;
pub mod repeated_subplans;
mod result_cache;
mod retry;
pub mod running_window;
pub mod session;
pub mod table_calls;
pub mod unranged;
mod vocabulary;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use tsunagu_catalog::{Store, StoreOptions};

pub use error::{DamagedFile, EngineError, Result};

/// The stack of the threads that plan and run statements. Plans are
/// walked recursively, and a statement's chains are bounded
/// (`session::parse::MAX_CHAIN`, `MAX_JOINS`); an embedding application's own runtime
/// should give its threads as much.
pub const STACK_SIZE: usize = 64 << 20;
pub use privacy::{Policy, Role};
pub use session::{Action, Prepared, Session, Statement, Statements};
pub use tsunagu_catalog as catalog;

/// The catalog name the store's schemas live in.
pub const CATALOG: &str = "tsunagu";

/// How to open a store.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Where derived state is kept (default: under the user's state directory).
    pub state_dir: Option<PathBuf>,
    /// How many person ranges the layout is cut into when the state is
    /// derived (default: one per core; see [`StoreOptions`]).
    pub person_ranges: Option<usize>,
    /// Memory limit for query execution in bytes (default: none).
    pub memory_limit: Option<usize>,
    /// Parallelism of query execution (default: the number of cores).
    pub target_partitions: Option<usize>,
    /// Disclosure policy (default: the manifest's `[privacy]`, else k = 10, rounding 5).
    pub policy: Option<Policy>,
    /// Where the audit log is kept (default: `audit/` in the store's state folder).
    pub audit_dir: Option<PathBuf>,
    /// Plans run on a cluster: applied to each session's state after
    /// Tsunagu's own planner and rules (see the `tsunagu-cluster` crate).
    /// Statements are parsed, checked and rewritten for privacy here, on the
    /// logical plan, before any of it is distributed.
    pub distribute: Option<Distribute>,
    /// Open without waiting for the person layout (see
    /// [`StoreOptions::defer_layout`]); [`current::Current::complete_layout`]
    /// writes it while the engine serves.
    pub defer_layout: bool,
}

/// A change to a session's state that makes its plans run elsewhere (a
/// distributed planner, with where its workers are).
#[derive(Clone)]
pub struct Distribute {
    /// Adds the distributed planner to a session's state.
    pub plan: Arc<dyn Fn(SessionStateBuilder) -> SessionStateBuilder + Send + Sync>,
    /// Tells when the machines plans run on change; a statement failing
    /// then is run again (see `retry`).
    pub membership: Option<Membership>,
}

/// Which machines a cluster's plans run on, as a number that changes
/// whenever one stops answering or comes back.
#[derive(Clone)]
pub struct Membership {
    /// The current number.
    pub generation: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// Asks every machine now whether it answers, and gives the number
    /// after.
    pub probe: Arc<dyn Fn() -> futures::future::BoxFuture<'static, u64> + Send + Sync>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("generation", &(self.generation)())
            .finish()
    }
}

impl std::fmt::Debug for Distribute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Distribute")
    }
}

/// The functions a store's sessions call, by kind: what a process running
/// plan fragments of those sessions registers (see [`Engine::functions`]).
pub struct Functions {
    pub scalar: Vec<Arc<datafusion::logical_expr::ScalarUDF>>,
    pub aggregate: Vec<Arc<datafusion::logical_expr::AggregateUDF>>,
    pub window: Vec<Arc<datafusion::logical_expr::WindowUDF>>,
}

/// The memory pool under a limit: spilling operators share it fairly, so
/// one large sort spills instead of starving the aggregate next to it.
pub fn memory_pool(limit: usize) -> Arc<dyn datafusion::execution::memory_pool::MemoryPool> {
    use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
    Arc::new(TrackConsumersPool::new(
        FairSpillPool::new(limit),
        std::num::NonZeroUsize::new(5).expect("non-zero"),
    ))
}

/// An opened store, ready to hand out sessions.
pub struct Engine {
    store: Arc<Store>,
    runtime: Arc<RuntimeEnv>,
    options: EngineOptions,
    vocabulary: Arc<tsunagu_udfs::vocab::VocabGraph>,
    cohorts: Arc<cohorts::CohortStore>,
    policy: Arc<Policy>,
    audit: Arc<audit::AuditLog>,
    quality: Arc<quality::tables::Quality>,
    graph: Arc<graph::KnowledgeGraph>,
    admin: Arc<projects::admin::Admin>,
    /// Answers of repeatable statements on this snapshot.
    results: Arc<result_cache::ResultCache>,
    /// The store's tables and the file tables behind them.
    store_tables: Arc<result_cache::StoreTables>,
}

/// The store's tables and the file tables behind them.
fn store_tables(store: &Store) -> Arc<result_cache::StoreTables> {
    Arc::new(result_cache::StoreTables::of(store))
}

impl Engine {
    /// Opens the store at `path` (see the data model), deriving or reusing its state.
    pub async fn open(path: impl AsRef<Path>, options: EngineOptions) -> Result<Engine> {
        let store = Store::open(
            path,
            StoreOptions {
                state_dir: options.state_dir.clone(),
                person_ranges: options.person_ranges,
                defer_layout: options.defer_layout,
            },
        )
        .await?;
        let mut runtime = RuntimeEnvBuilder::new();
        if let Some(limit) = options.memory_limit {
            runtime = runtime.with_memory_pool(memory_pool(limit));
        }
        let cohorts = Arc::new(cohorts::CohortStore::new(
            store.state_dir(),
            cohorts::Version::of(&store),
        ));
        let mut policy = store_policy(&options, &store)?;
        if policy.secret.is_none() {
            let key = privacy::NoiseKey::load_or_create(store.state_dir()).map_err(|e| {
                EngineError::Unsupported(format!(
                    "privacy key in {}: {e}",
                    store.state_dir().display()
                ))
            })?;
            policy.secret = Some(key);
        }
        let audit_dir = options
            .audit_dir
            .clone()
            .unwrap_or_else(|| store.state_dir().join("audit"));
        let audit = Arc::new(audit::AuditLog::open(&audit_dir)?);
        let quality_config = quality::QualityConfig::for_store(store.root())?;
        let store = Arc::new(store);
        let policy = Arc::new(policy);
        let runtime = runtime.build_arc()?;
        if let Some((url, client)) = store.object_store_client() {
            runtime.register_object_store(&url, client);
        }
        let graph = Arc::new(graph::KnowledgeGraph::new(
            store.clone(),
            session_config(&options),
            runtime.clone(),
            policy.clone(),
        ));
        let mut engine = Engine {
            graph,
            results: Arc::default(),
            store_tables: store_tables(&store),
            admin: Arc::new(projects::admin::Admin::new(store.clone(), policy.clone())),
            quality: Arc::new(quality::tables::Quality::new(store.clone(), quality_config)),
            policy,
            audit,
            cohorts,
            store,
            runtime,
            options,
            vocabulary: Arc::default(),
        };
        engine.vocabulary = Arc::new(
            vocabulary::load(engine.store(), engine.config(), engine.runtime.clone()).await?,
        );
        // Projects past their end date end now (workspace per their policy).
        for id in engine.admin.end_expired()? {
            log::info!("project {id} reached its end date and was closed");
        }
        Ok(engine)
    }

    /// True when the store's files are no longer those it was opened on (a
    /// delivery landed, or something else changed).
    pub fn store_changed(&self) -> Result<bool> {
        Ok(tsunagu_catalog::state::fingerprint(self.store.root())? != self.store.fingerprint())
    }

    /// Opens the store again after its files changed, taking new deliveries
    /// in without deriving everything again where it can (see
    /// [`tsunagu_catalog::Opened`]). The new engine shares this one's audit
    /// log, policy (and noise key) and memory pool; this one keeps serving
    /// what runs on it.
    pub async fn reopen(&self) -> Result<Engine> {
        let store = Store::open(
            self.store.location(),
            StoreOptions {
                state_dir: Some(self.store.state_dir().to_owned()),
                person_ranges: self.options.person_ranges,
                defer_layout: self.options.defer_layout,
            },
        )
        .await?;
        let cohorts = Arc::new(cohorts::CohortStore::new(
            store.state_dir(),
            cohorts::Version::of(&store),
        ));
        let quality_config = quality::QualityConfig::for_store(store.root())?;
        let store = Arc::new(store);
        let mut engine = Engine {
            graph: Arc::new(graph::KnowledgeGraph::new(
                store.clone(),
                session_config(&self.options),
                self.runtime.clone(),
                self.policy.clone(),
            )),
            results: Arc::default(),
            store_tables: store_tables(&store),
            admin: Arc::new(projects::admin::Admin::new(
                store.clone(),
                self.policy.clone(),
            )),
            quality: Arc::new(quality::tables::Quality::new(store.clone(), quality_config)),
            policy: self.policy.clone(),
            audit: self.audit.clone(),
            cohorts,
            store,
            runtime: self.runtime.clone(),
            options: self.options.clone(),
            vocabulary: Arc::default(),
        };
        engine.vocabulary = Arc::new(
            vocabulary::load(engine.store(), engine.config(), engine.runtime.clone()).await?,
        );
        Ok(engine)
    }

    /// The opened store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The session configuration Tsunagu uses.
    pub fn config(&self) -> SessionConfig {
        session_config(&self.options)
    }

    /// A bare DataFusion context with Tsunagu's configuration, memory pool,
    /// planner (repeated subplans computed once) and PostgreSQL's operators
    /// and functions; no store registered.
    pub fn context(&self) -> SessionContext {
        let state = datafusion::execution::session_state::SessionStateBuilder::new()
            .with_config(self.config())
            .with_runtime_env(self.runtime.clone())
            .with_default_features()
            .with_analyzer_rule(Arc::new(table_calls::NameTableFunctionCalls))
            .with_physical_optimizer_rules(physical_rules())
            .with_physical_optimizer_rule(Arc::new(running_window::RunningWindows))
            .with_physical_optimizer_rule(Arc::new(first_rows::FirstRows))
            .with_physical_optimizer_rule(Arc::new(person_sort::PersonSorts))
            .with_physical_optimizer_rule(Arc::new(person_ranges::KeepPersonRanges));
        let state = repeated_subplans::install(state)
            .with_optimizer_rule(Arc::new(join_order::LookupsThroughBridges))
            .with_optimizer_rule(Arc::new(cohort_algebra::CohortSetOperations))
            .with_optimizer_rule(Arc::new(tsunagu_udfs::graph::PathFilters));
        // Last: an analyst's expressions in their total forms.
        let mut state =
            pg_dialect::install(state).with_analyzer_rule(Arc::new(privacy::TotalExpressions));
        if let Some(distribute) = &self.options.distribute {
            let mut state_for_stages =
                state.with_physical_optimizer_rule(Arc::new(join_orderings::WithoutUnordered));
            if let Some(config) = state_for_stages.config().as_mut() {
                if let Some(membership) = &distribute.membership {
                    config.set_extension(Arc::new(membership.clone()));
                }
                // What the workers need to compute the keyed person hash.
                config.set_extension(Arc::new(privacy::PersonHashKey::of(
                    &self.policy.noise_key(),
                )));
            }
            state = (distribute.plan)(state_for_stages);
        }
        let ctx = SessionContext::new_with_state(state.build());
        pg_dialect::register(&ctx);
        ctx
    }

    /// Every function a session of this store can call: DataFusion's,
    /// PostgreSQL's and Tsunagu's, with the store's own (vocabulary, keys).
    pub fn functions(&self) -> Result<Functions> {
        let ctx = self.context();
        self.register(&ctx)?;
        let state = ctx.state();
        let scalar: Vec<_> = (state.scalar_functions().values().cloned())
            .chain(privacy::plan_scalar_functions())
            .collect();
        // The total forms an analyst's plans call (`privacy::TotalExpressions`).
        let total: Vec<_> = scalar
            .iter()
            .filter(|f| !f.name().starts_with("tsunagu_"))
            .map(|f| Arc::new(privacy::total_function(f.clone())))
            .collect();
        Ok(Functions {
            scalar: scalar.into_iter().chain(total).collect(),
            aggregate: (state.aggregate_functions().values().cloned())
                .chain(privacy::plan_functions())
                .collect(),
            window: state.window_functions().values().cloned().collect(),
        })
    }

    /// A steward session for the local user (whoever reads the files owns them).
    pub fn session(&self) -> Result<Session> {
        let user = std::env::var("USER").unwrap_or_else(|_| "tsunagu".into());
        self.session_as(&user, Role::Steward)
    }

    /// A new session for an authenticated user in a role, with its own
    /// settings, sharing the store and memory pool.
    pub fn session_as(&self, user: &str, role: Role) -> Result<Session> {
        let ctx = self.context();
        self.register(&ctx)?;
        let identity = Arc::new(std::sync::Mutex::new(session::Identity {
            user: user.to_owned(),
            login_role: role,
            role,
        }));
        identity::register(&ctx, identity.clone());
        // Analysts and viewers read the quality tables' counts released, as
        // in the label (viewers under their own numbers).
        let reader_identity = identity.clone();
        let release = quality::label::Release::new(&self.policy, false);
        let viewer_release =
            quality::label::Release::new(&self.policy.for_role(Role::Viewer), false);
        let reader = quality::tables::Reader(Arc::new(move || {
            let id = reader_identity.lock().unwrap_or_else(|p| p.into_inner());
            match id.role {
                Role::Steward => None,
                Role::Analyst => Some(release),
                Role::Viewer => Some(viewer_release),
            }
        }));
        // The graph's data-derived counts are released the same way.
        self.register_graph(&ctx, reader.clone())?;
        self.register_quality(&ctx, reader)?;
        // Analysts use only the cohorts they created.
        let viewer_identity = identity.clone();
        self.register_cohorts(
            &ctx,
            cohorts::Viewer::new(move || {
                let id = viewer_identity.lock().unwrap_or_else(|p| p.into_inner());
                (id.role != Role::Steward).then(|| id.user.clone())
            }),
        )?;
        if let Some(catalog) = ctx.catalog(CATALOG) {
            let schema = datafusion::catalog::MemorySchemaProvider::new();
            use datafusion::catalog::SchemaProvider;
            for (name, releases) in [("projects", false), ("releases", true)] {
                schema.register_table(
                    name.into(),
                    Arc::new(projects::admin::ListTable::new(self.projects(), releases)),
                )?;
            }
            catalog.register_schema(projects::admin::SCHEMA, Arc::new(schema))?;
        }
        let session = Session::new(
            ctx,
            self.cohorts.clone(),
            identity,
            self.policy.clone(),
            Some(self.audit.clone()),
            Arc::new(damaged::Roots {
                store: self.store.root().to_owned(),
                state: self.store.state_dir().to_owned(),
            }),
        );
        session.set_admin(self.admin.clone());
        Ok(session.with_reuse(self.results.clone(), self.store_tables.clone()))
    }

    /// The store's projects.
    pub fn projects(&self) -> projects::Projects {
        projects::Projects::new(self.store.state_dir())
    }

    /// The key behind the store's noise and the projects' pseudonyms.
    fn secret(&self) -> [u8; 32] {
        self.policy.secret.as_ref().map(|k| k.0).unwrap_or_default()
    }

    /// Approves a proposed project: checks its scope against the store and
    /// computes its population (a steward's query) into a person set.
    pub async fn approve_project(&self, id: &str, steward: &str) -> Result<projects::Project> {
        let session = self.session_as(steward, Role::Steward)?;
        self.admin.approve(&session, id).await
    }

    /// The steward's project operations.
    pub fn project_admin(&self) -> &projects::admin::Admin {
        &self.admin
    }

    /// Makes `session` work where a login names it: a project by its id, or
    /// the whole store by one of the store's own names (or the user's name,
    /// psql's default). Once a store has projects, analysts work inside one.
    /// Refusals carry SQLSTATE 28000 (not allowed) or 3D000 (no such name).
    pub fn enter_database(&self, session: &Session, database: &str) -> Result<()> {
        let user = session.user();
        let refused = |code, message| EngineError::Refused {
            code,
            rule: "project",
            message,
        };
        if database.is_empty() || database == user || projects::RESERVED.contains(&database) {
            let list = self.projects().list()?;
            // Viewers read only released aggregates of the whole store.
            if list.is_empty() || session.login_role() != Role::Analyst {
                return Ok(());
            }
            let open: Vec<&str> = list
                .iter()
                .filter(|p| p.refusal(&user, false, projects::today()).is_none())
                .map(|p| p.id.as_str())
                .collect();
            return Err(refused(
                "28000",
                if open.is_empty() {
                    format!(
                        "analysts work inside a project, and user \"{user}\" is a member of no open project"
                    )
                } else {
                    format!(
                        "analysts work inside a project: connect with the project as the database name ({})",
                        open.join(", ")
                    )
                },
            ));
        }
        match self.projects().find(database)? {
            Some(_) => self.enter_project(session, database),
            None => Err(refused(
                "3D000",
                format!(
                    "database \"{database}\" does not exist (name a project, or tsunagu for the whole store)"
                ),
            )),
        }
    }

    /// Makes `session` work in project `id`: only the project's scope, under
    /// its pseudonyms and policy, with its cohorts and results. Refused with
    /// the reason when the session's user may not work in it today.
    pub fn enter_project(&self, session: &Session, id: &str) -> Result<()> {
        if session.login_role() == Role::Viewer {
            return Err(EngineError::Refused {
                code: "28000",
                rule: "project",
                message: format!(
                    "project \"{id}\" is open to its members only; the viewer role reads the whole store's released aggregates"
                ),
            });
        }
        self.admin.end_expired()?;
        let list = self.projects();
        let project = list.load(id)?;
        let steward = session.login_role() == Role::Steward;
        if let Some(why) = project.refusal(&session.user(), steward, projects::today()) {
            return Err(EngineError::Refused {
                code: "28000",
                rule: "project",
                message: why,
            });
        }
        let dir = list.dir(id);
        if let Ok(bytes) = std::fs::read(dir.join("population.json")) {
            let numbers: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let text = |k: &str| numbers[k].as_str().unwrap_or_default().to_owned();
            let delivery = numbers["delivery"].as_u64().unwrap_or(0);
            if !cohorts::Version::of(&self.store).holds_numbers(
                &text("store"),
                &text("lineage"),
                delivery,
            ) {
                return Err(EngineError::Unsupported(format!(
                    "project \"{id}\": the store's persons were numbered anew since its \
                     population was computed (approve it again)"
                )));
            }
        }
        let population = match std::fs::read(dir.join("population.bitmap")) {
            Ok(bytes) => Some(Arc::new(
                tsunagu_udfs::bitmaps::from_bytes("population", &bytes).map_err(|e| {
                    EngineError::Unsupported(format!("project \"{id}\" population: {e}"))
                })?,
            )),
            Err(_) if project.scope.population.is_some() => {
                return Err(EngineError::Unsupported(format!(
                    "project \"{id}\": its population was not computed (approve it again)"
                )));
            }
            Err(_) => None,
        };
        let ctx = session.context();
        projects::scope::register(
            ctx,
            CATALOG,
            &self.store,
            &project.scope,
            project.pseudonym_key(&self.secret()),
            population,
        )?;
        let cohort_store = Arc::new(cohorts::CohortStore::new(
            &dir,
            cohorts::Version::of(&self.store),
        ));
        let identity = session.identity_handle();
        self.register_cohort_functions(
            ctx,
            cohort_store.clone(),
            cohorts::Viewer::new(move || {
                let id = identity.lock().unwrap_or_else(|p| p.into_inner());
                (id.role != Role::Steward).then(|| id.user.clone())
            }),
        )?;
        let active = Arc::new(projects::Active {
            id: id.to_owned(),
            projects: list,
            outputs: projects::outputs::Outputs::new(&dir),
        });
        active.show_results(ctx, steward)?;
        session.set_project(active, cohort_store, Arc::new(project.policy(&self.policy)));
        Ok(())
    }

    /// The store's disclosure policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The saved cohorts of the whole store (names, owners, sizes: exact,
    /// for the embedding application, never for analysts).
    pub fn saved_cohorts(&self) -> Result<Vec<cohorts::CohortMeta>> {
        self.cohorts.list()
    }

    /// The audit log.
    pub fn audit_log(&self) -> &audit::AuditLog {
        &self.audit
    }

    /// Registers the store's schemas and the RWD functions on any context.
    pub fn register(&self, ctx: &SessionContext) -> Result<()> {
        self.store.register(ctx, CATALOG)?;
        tsunagu_udfs::register(ctx);
        tsunagu_udfs::register_vocabulary(ctx, self.vocabulary.clone());
        self.register_quality(ctx, quality::tables::Reader::exact())?;
        self.register_graph(ctx, quality::tables::Reader::exact())?;
        self.register_cohorts(ctx, cohorts::Viewer::all())
    }

    /// The knowledge graph of the store.
    pub fn knowledge_graph(&self) -> &graph::KnowledgeGraph {
        &self.graph
    }

    /// Shows `graph.nodes` and `graph.edges`, unless a source already uses
    /// the schema name `graph`.
    fn register_graph(&self, ctx: &SessionContext, reader: quality::tables::Reader) -> Result<()> {
        use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
        let Some(catalog) = ctx.catalog(CATALOG) else {
            return Ok(());
        };
        if self
            .store
            .manifest()
            .sources
            .iter()
            .any(|s| s.name == graph::SCHEMA)
        {
            return Ok(());
        }
        let schema = Arc::new(MemorySchemaProvider::new());
        for kind in [
            graph::tables::TableKind::Nodes,
            graph::tables::TableKind::Edges,
        ] {
            schema.register_table(
                kind.name().into(),
                Arc::new(graph::tables::GraphTable {
                    kind,
                    graph: self.graph.clone(),
                    reader: reader.clone(),
                }),
            )?;
        }
        catalog.register_schema(graph::SCHEMA, schema)?;
        Ok(())
    }

    /// The data quality checks of the store (run once, on first use).
    pub fn quality(&self) -> &quality::tables::Quality {
        &self.quality
    }

    /// Runs the data quality checks (or returns their report, if they ran).
    pub async fn quality_report(&self) -> Result<Arc<quality::Report>> {
        let ctx = self.context();
        self.register(&ctx)?;
        self.quality.report(&ctx).await
    }

    /// Shows `quality.checks`, `quality.results` and `quality.characterization`,
    /// unless a source already uses the schema name `quality`.
    fn register_quality(
        &self,
        ctx: &SessionContext,
        reader: quality::tables::Reader,
    ) -> Result<()> {
        use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
        let Some(catalog) = ctx.catalog(CATALOG) else {
            return Ok(());
        };
        let schema = Arc::new(MemorySchemaProvider::new());
        for kind in [
            quality::tables::Kind::Checks,
            quality::tables::Kind::Results,
            quality::tables::Kind::Characterization,
        ] {
            schema.register_table(
                kind.name().into(),
                Arc::new(quality::tables::QualityTable {
                    kind,
                    quality: self.quality.clone(),
                    reader: reader.clone(),
                }),
            )?;
        }
        catalog.register_schema(quality::SCHEMA, schema)?;
        Ok(())
    }

    /// Registers the saved cohorts as the viewer may see them.
    fn register_cohorts(&self, ctx: &SessionContext, viewer: cohorts::Viewer) -> Result<()> {
        self.register_cohort_functions(ctx, self.cohorts.clone(), viewer)
    }

    fn register_cohort_functions(
        &self,
        ctx: &SessionContext,
        store: Arc<cohorts::CohortStore>,
        viewer: cohorts::Viewer,
    ) -> Result<()> {
        ctx.register_udtf(
            "cohort",
            Arc::new(cohorts::CohortFunction {
                store: store.clone(),
                viewer: viewer.clone(),
            }),
        );
        ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
            cohorts::CohortBitmap::new(store.clone(), viewer.clone()),
        ));
        if let Some(public) = ctx.catalog(CATALOG).and_then(|c| c.schema("public")) {
            public.deregister_table("cohorts")?;
            public.register_table(
                "cohorts".into(),
                Arc::new(cohorts::CohortsTable { store, viewer }),
            )?;
        }
        Ok(())
    }
}

/// The session configuration Tsunagu uses under `options`.
fn session_config(options: &EngineOptions) -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG, "public")
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(true)
        // Larger batches than DataFusion's 8,192 rows: sorts by person
        // merge fewer runs (a quarter faster on 20M-row window queries)
        // and per-batch costs weigh less; see docs/BENCHMARKS.md.
        .with_batch_size(32 * 1024)
        .with_option_extension(pg_dialect::arithmetic::ArithmeticOptions::default());
    if let Some(n) = options.target_partitions {
        config = config.with_target_partitions(n.max(1));
    }
    let opts = config.options_mut();
    opts.sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
    // `0.1` is a `numeric`, as in PostgreSQL (see pg_dialect::numeric_constants).
    opts.sql_parser.parse_float_as_decimal = true;
    // Data already hash-partitioned on a subset of the keys (person_id,
    // typically) is grouped and joined where it is, on any number of
    // cores; DataFusion's default does so from four partitions up.
    opts.optimizer.subset_repartition_threshold = 1;
    if let Some(limit) = options.memory_limit {
        // Room kept for merging spilled sorts: a sixteenth of a small pool.
        let reserve = &mut opts.execution.sort_spill_reservation_bytes;
        *reserve = (*reserve).min(limit / 16);
    }
    config
}

/// The disclosure policy of a store: the embedder's, else the manifest's
/// `[privacy]`, else the default; checked (the noise key is added by the caller).
fn store_policy(options: &EngineOptions, store: &Store) -> Result<Policy> {
    let policy = match (&options.policy, &store.manifest().privacy) {
        (Some(p), _) => p.clone(),
        (None, Some(table)) => {
            use serde::Deserialize;
            Policy::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
                EngineError::Unsupported(format!("rwd.toml [privacy]: {}", e.message()))
            })?
        }
        (None, None) => Policy::default(),
    };
    policy
        .validate()
        .map_err(|e| EngineError::Unsupported(format!("privacy policy: {e}")))?;
    Ok(policy)
}

/// Every RWD function, cohort functions included: (name, kind, documentation).
pub fn functions() -> Vec<(
    String,
    &'static str,
    datafusion::logical_expr::Documentation,
)> {
    tsunagu_udfs::documented(cohort_docs())
}

fn cohort_docs() -> Vec<(
    String,
    &'static str,
    datafusion::logical_expr::Documentation,
)> {
    use datafusion::logical_expr::ScalarUDFImpl;
    let store = Arc::new(cohorts::CohortStore::new(
        Path::new("/nonexistent"),
        cohorts::Version::fixed(""),
    ));
    let bitmap = cohorts::CohortBitmap::new(store, cohorts::Viewer::all());
    vec![
        (
            "cohort".into(),
            "table",
            cohorts::cohort_function_doc().clone(),
        ),
        (
            "cohort_bitmap".into(),
            "scalar",
            bitmap.documentation().expect("documented").clone(),
        ),
    ]
}

/// The Markdown reference of every RWD function, cohort functions included.
pub fn function_reference() -> String {
    tsunagu_udfs::reference_markdown(cohort_docs())
}

/// Compiles the README's examples as doc tests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// DataFusion's physical optimizer rules, with the one keeping join
/// orderings sound (see [`join_orderings`]) right after the choice of join
/// sides, so that later rules and the operators above a join see only
/// orderings that hold.
fn physical_rules()
-> Vec<Arc<dyn datafusion::physical_optimizer::PhysicalOptimizerRule + Send + Sync>> {
    let mut rules = datafusion::physical_optimizer::optimizer::PhysicalOptimizer::new().rules;
    let sides = rules
        .iter()
        .position(|r| r.name() == "join_selection")
        .map_or(0, |i| i + 1);
    rules.insert(sides, Arc::new(join_orderings::SoundJoinOrderings));
    rules
}
