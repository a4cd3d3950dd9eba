//! The per-connection Postgres handler: startup (SCRAM logins, throttled
//! and audited), simple and extended query protocols, limits per role,
//! cancellation. It only translates; the engine does the work.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use futures::{Sink, Stream, StreamExt, stream};
use pgwire::api::auth::{self, StartupHandler};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::data::DataRow;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio_util::sync::CancellationToken;
use tsunagu_engine::session::statement_text;
use tsunagu_engine::{Engine, Prepared, Session, Statements};

use crate::commands::{self, Command, Settings};
use crate::config::{Limits, LoginSettings};
use crate::encode;
use crate::errors::{from_datafusion, to_pg};
use crate::limits::{ConnectionSlot, Limiter, StatementSlot};
use crate::logins::LoginGuard;

/// A statement as parsed at Parse time: planned, so Describe matches Execute.
#[derive(Debug, Clone)]
pub enum Planned {
    Query(Arc<Query>),
    Command(Command),
}

/// A planned query, and what planning it again needs.
#[derive(Debug)]
pub struct Query {
    pub prepared: Arc<Prepared>,
    /// The SQL text as the client sent it.
    text: String,
    /// The session's plan epoch when it was planned.
    epoch: u64,
    /// Not run yet since it was planned.
    fresh: std::sync::atomic::AtomicBool,
}

impl Query {
    fn new(prepared: Arc<Prepared>, text: &str, epoch: u64) -> Arc<Query> {
        Arc::new(Query {
            prepared,
            text: text.to_owned(),
            epoch,
            fresh: std::sync::atomic::AtomicBool::new(true),
        })
    }
}

/// Cancels the running query of one connection.
#[derive(Debug, Default)]
pub struct QueryCancel {
    current: Mutex<CancellationToken>,
}

impl QueryCancel {
    /// A fresh token for the query about to run.
    fn begin(&self) -> CancellationToken {
        let token = CancellationToken::new();
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = token.clone();
        token
    }

    fn cancel(&self) {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cancel();
    }
}

/// Connections by (process id, secret key), for cancel requests.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    map: Mutex<HashMap<(i32, Bytes), Weak<QueryCancel>>>,
}

impl CancelRegistry {
    fn insert(&self, key: (i32, Bytes), cancel: &Arc<QueryCancel>) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        map.insert(key, Arc::downgrade(cancel));
    }
}

#[async_trait]
impl CancelHandler for CancelRegistry {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let key = (request.pid, request.secret_key.to_bytes());
        let target = self
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .and_then(Weak::upgrade);
        if let Some(cancel) = target {
            cancel.cancel();
        }
    }
}

/// How connections authenticate: SCRAM-SHA-256 against the configured
/// users, failed logins throttled and locked out.
pub struct Auth {
    users: Arc<crate::config::Users>,
    require_tls: bool,
    logins: LoginGuard,
    driver: auth::AuthDriver<auth::DefaultServerParameterProvider>,
    scram: Arc<dyn auth::mechanism::AuthMechanismFactory>,
}

impl Auth {
    /// SCRAM-SHA-256 for `users`; `require_tls` refuses plain connections.
    pub fn new(
        users: Arc<crate::config::Users>,
        require_tls: bool,
        logins: LoginSettings,
    ) -> Arc<Auth> {
        let mut params = auth::DefaultServerParameterProvider::default();
        params.server_version = format!(
            "{} (Tsunagu {})",
            commands::SERVER_VERSION,
            env!("CARGO_PKG_VERSION")
        );
        params.is_superuser = false;
        params.default_transaction_read_only = true;
        let source: Arc<dyn auth::AuthSource> = users.clone();
        Arc::new(Auth {
            users,
            require_tls,
            logins: LoginGuard::new(logins),
            driver: auth::AuthDriver::new(params),
            scram: Arc::new(auth::sasl::scram::ScramAuth::new(source)),
        })
    }
}

impl Auth {
    /// Checks a password given in the clear (the dashboard's login form)
    /// under the same throttling and lockout as wire logins: the role, or
    /// the reason (`locked`, `password`) and how long to wait before saying so.
    pub fn check_password(
        &self,
        user: &str,
        password: &str,
        address: std::net::IpAddr,
    ) -> Result<tsunagu_engine::Role, (&'static str, Duration)> {
        if self.logins.locked(user) {
            return Err(("locked", self.logins.refusal_delay(user, address)));
        }
        match self.users.check_password(user, password) {
            Some(role) if !self.logins.locked(user) => {
                self.logins.succeeded(user, address);
                Ok(role)
            }
            _ => {
                let failure = self.logins.failed(user, address);
                if failure.locked {
                    log::warn!(
                        "login: user {user:?} locked after repeated failed logins (last from {address})"
                    );
                }
                let reason = if self.logins.locked(user) && !failure.locked {
                    "locked"
                } else {
                    "password"
                };
                Err((reason, failure.delay))
            }
        }
    }
}

impl Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("require_tls", &self.require_tls)
            .finish()
    }
}

/// Everything one connection needs: its own engine session and settings.
pub struct Connection {
    session: Session,
    engine: Arc<Engine>,
    auth: Arc<Auth>,
    limiter: Arc<Limiter>,
    /// The login's place among its user's connections, and its role's limits.
    admitted: OnceLock<(ConnectionSlot, Limits)>,
    /// The slot of the statements in flight (shared by the statements of one simple query).
    running: Mutex<Weak<StatementSlot>>,
    settings: OnceLock<Arc<Settings>>,
    cancel: Arc<QueryCancel>,
    registry: Arc<CancelRegistry>,
    parser: Arc<Parser>,
}

impl Connection {
    /// A connection with a new session on `engine`.
    pub fn new(
        engine: &Arc<Engine>,
        registry: Arc<CancelRegistry>,
        auth: Arc<Auth>,
        limiter: Arc<Limiter>,
    ) -> tsunagu_engine::Result<Arc<Self>> {
        // Least rights until the user has authenticated.
        let session = engine.session_as("", tsunagu_engine::Role::Analyst)?;
        Ok(Arc::new(Connection {
            engine: engine.clone(),
            auth,
            limiter,
            admitted: OnceLock::new(),
            running: Mutex::default(),
            parser: Arc::new(Parser {
                session: session.clone(),
                plans: Mutex::default(),
            }),
            session,
            settings: OnceLock::new(),
            cancel: Arc::new(QueryCancel::default()),
            registry,
        }))
    }

    fn settings<C: ClientInfo>(&self, client: &C) -> Arc<Settings> {
        self.settings
            .get_or_init(|| {
                Arc::new(Settings::new(
                    client
                        .metadata()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone())),
                ))
            })
            .clone()
    }

    /// Runs a session command.
    fn command<C: ClientInfo>(&self, client: &C, command: &Command) -> PgWireResult<Response> {
        let result = self.answer(client, command);
        let refused = match &result {
            Err(PgWireError::UserError(info)) if info.code == "42501" => Some("role"),
            _ => None,
        };
        self.session
            .log_command(&command.text(), refused)
            .map_err(to_pg)?;
        result
    }

    fn answer<C: ClientInfo>(&self, client: &C, command: &Command) -> PgWireResult<Response> {
        let settings = self.settings(client);
        Ok(match command {
            Command::Begin => Response::TransactionStart(Tag::new("BEGIN")),
            Command::Commit => Response::TransactionEnd(Tag::new("COMMIT")),
            Command::Rollback => Response::TransactionEnd(Tag::new("ROLLBACK")),
            Command::Ack(tag) => Response::Execution(Tag::new(tag)),
            Command::SetRole(name) => {
                let role = match name.as_deref() {
                    None | Some("none") => self.session.login_role(),
                    Some(r) => r
                        .parse::<tsunagu_engine::Role>()
                        .map_err(|e| encode::user_error("22023", e))?,
                };
                self.session.set_role(role).map_err(to_pg)?;
                Response::Execution(Tag::new("SET"))
            }
            Command::Set { name, value } => {
                if name == "search_path" {
                    self.session.set_search_path(value);
                }
                settings.set(name, value);
                Response::Execution(Tag::new("SET"))
            }
            Command::Show { name } => {
                let Some(value) = settings.get(name) else {
                    return Err(encode::user_error(
                        "42704",
                        format!("unrecognized configuration parameter \"{name}\""),
                    ));
                };
                let fields = Arc::new(vec![FieldInfo::new(
                    name.clone(),
                    None,
                    None,
                    Type::TEXT,
                    FieldFormat::Text,
                )]);
                let mut enc = pgwire::api::results::DataRowEncoder::new(fields.clone());
                enc.encode_field(&value)?;
                let row = enc.take_row();
                Response::Query(QueryResponse::new(fields, stream::iter(vec![Ok(row)])))
            }
        })
    }

    /// Runs a planned query, streaming rows in the given formats.
    async fn query(
        &self,
        prepared: &Prepared,
        params: Vec<datafusion::common::ScalarValue>,
        format: &Format,
    ) -> PgWireResult<Response> {
        let slot = self.statement_slot()?;
        let deadline = self
            .limits()
            .statement_timeout
            .map(|t| tokio::time::Instant::now() + t);
        let token = self.cancel.begin();
        let session = self.session.clone();
        let owned = prepared.clone();
        let started = crate::executor::start(async move { session.execute(&owned, params).await });
        let stream = match deadline {
            Some(d) => tokio::time::timeout_at(d, started)
                .await
                .map_err(|_| timed_out())?,
            None => started.await,
        }
        .map_err(to_pg)?;
        if matches!(prepared.plan, LogicalPlan::Statement(_))
            || prepared.plan.schema().fields().is_empty()
        {
            let mut stream = stream;
            loop {
                let next = tokio::select! {
                    next = stream.next() => next,
                    _ = until(deadline) => return Err(timed_out()),
                };
                match next {
                    Some(b) => {
                        b.map_err(from_datafusion)?;
                    }
                    None => break,
                }
            }
            drop(slot);
            let tag = command_tag(prepared);
            return Ok(Response::Execution(Tag::new(tag)));
        }
        let fields = Arc::new(encode::fields(&prepared.schema(), format));
        Ok(Response::Query(QueryResponse::new(
            fields.clone(),
            rows(stream, fields, token, deadline, slot),
        )))
    }

    /// The limits of the logged-in user's role.
    fn limits(&self) -> Limits {
        self.admitted
            .get()
            .map(|(_, l)| *l)
            .unwrap_or_else(|| self.limiter.limits(tsunagu_engine::Role::Analyst))
    }

    /// A running-statement slot: the connection's current one, or a new one
    /// if the user is under the limit.
    fn statement_slot(&self) -> PgWireResult<Arc<StatementSlot>> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = running.upgrade() {
            return Ok(slot);
        }
        let slot = Arc::new(
            self.limiter
                .start_statement(&self.session.user(), self.session.login_role())?,
        );
        *running = Arc::downgrade(&slot);
        Ok(slot)
    }

    /// Works in the project the client names as its database; the store's
    /// own names (and the user's name, psql's default) mean the whole store.
    fn enter_database(&self, database: &str) -> Result<(), (&'static str, String)> {
        self.engine
            .enter_database(&self.session, database)
            .map_err(|e| match e {
                tsunagu_engine::EngineError::Refused { code, message, .. } => (code, message),
                e => ("XX000", e.to_string()),
            })
    }

    /// Audits a login attempt; a log that cannot be written refuses the login.
    fn audit_login(
        &self,
        user: &str,
        role: Option<tsunagu_engine::Role>,
        address: std::net::SocketAddr,
        refused: Option<&str>,
    ) -> PgWireResult<()> {
        self.session
            .log_login(user, role, &address.to_string(), refused)
            .map_err(to_pg)
    }

    /// Refuses a login after its delay, audited.
    async fn refuse_login(
        &self,
        user: &str,
        address: std::net::SocketAddr,
        reason: &str,
        delay: Duration,
        error: PgWireError,
    ) -> PgWireResult<()> {
        if let Err(e) = self.audit_login(user, None, address, Some(reason)) {
            log::error!("cannot audit a refused login: {e}");
        }
        tokio::time::sleep(delay).await;
        Err(error)
    }

    /// The plan to run a query with. A named prepared statement runs many
    /// times; as PostgreSQL does, it is planned again when what its plan
    /// depends on may have changed since: the role, the project or
    /// `search_path` changed (the plan epoch), or it reads more than the
    /// store's tables (cohorts, results, catalogs), which change between
    /// runs. A new plan must return the columns the client was told of.
    async fn current_plan(&self, query: &Query) -> PgWireResult<Arc<Prepared>> {
        let fresh = query
            .fresh
            .swap(false, std::sync::atomic::Ordering::Relaxed);
        if (fresh || query.prepared.reusable()) && query.epoch == self.session.plan_epoch() {
            return Ok(query.prepared.clone());
        }
        let Some(Planned::Query(new)) = self.parser.plan_one(&query.text).await? else {
            return Err(encode::user_error(
                "0A000",
                "cached plan must not change result type".into(),
            ));
        };
        let (old, now) = (query.prepared.schema(), new.prepared.schema());
        let same = old.fields().len() == now.fields().len()
            && old.fields().iter().zip(now.fields().iter()).all(|(a, b)| {
                a.name() == b.name()
                    && encode::pg_type(a.data_type()) == encode::pg_type(b.data_type())
            });
        if !same {
            return Err(encode::user_error(
                "0A000",
                "cached plan must not change result type".into(),
            ));
        }
        Ok(new.prepared.clone())
    }
}

fn locked() -> PgWireError {
    encode::user_error("28000", "too many failed logins; try again later".into())
}

/// The command tag of a statement that returns no rows: its command's
/// name (`CREATE COHORT`), `SET`, or `OK`.
fn command_tag(prepared: &Prepared) -> &'static str {
    match (&prepared.action, &prepared.plan) {
        (Some(action), _) => action.name(),
        (None, LogicalPlan::Statement(datafusion::logical_expr::Statement::SetVariable(_))) => {
            "SET"
        }
        _ => "OK",
    }
}

/// Encodes a record batch stream as data rows; a cancel request or the
/// statement timeout ends it with an error. The statement slot is held
/// until the stream ends.
fn rows(
    stream: SendableRecordBatchStream,
    fields: Arc<Vec<FieldInfo>>,
    token: CancellationToken,
    deadline: Option<tokio::time::Instant>,
    slot: Arc<StatementSlot>,
) -> impl Stream<Item = PgWireResult<DataRow>> + Send + 'static {
    let state = (stream, token, slot, false);
    stream::unfold(state, move |(mut s, token, slot, done)| {
        let fields = fields.clone();
        async move {
            if done {
                return None;
            }
            tokio::select! {
                biased;
                _ = token.cancelled() => Some((Err(canceled()), (s, token, slot, true))),
                _ = until(deadline) => Some((Err(timed_out()), (s, token, slot, true))),
                next = s.next() => match next {
                    None => None,
                    Some(Err(e)) => Some((Err(from_datafusion(e)), (s, token, slot, true))),
                    Some(Ok(batch)) => Some((encode::encode_batch(&batch, &fields), (s, token, slot, false))),
                },
            }
        }
    })
    .flat_map(|r| {
        stream::iter(match r {
            Ok(rows) => rows.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(e)],
        })
    })
}

fn canceled() -> PgWireError {
    encode::user_error("57014", "canceling statement due to user request".into())
}

fn timed_out() -> PgWireError {
    encode::user_error(
        "57014",
        "canceling statement due to statement timeout (the statement_timeout of your role)".into(),
    )
}

/// Waits until the deadline, or forever without one.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Plans statements at Parse time.
pub struct Parser {
    session: Session,
    /// Statements planned before, by SQL text, to run again without planning.
    plans: Mutex<Plans>,
}

/// Most statements a connection keeps planned.
const KEPT_PLANS: usize = 256;

/// The reusable statements a connection planned, and the session's plan
/// epoch they were planned in (see [`Session::plan_epoch`]). BI tools and
/// dashboards send the same text again and again, unnamed statements
/// included, and each Parse would otherwise plan it again.
#[derive(Default)]
struct Plans {
    epoch: u64,
    by_text: HashMap<String, Arc<Prepared>>,
}

impl Parser {
    /// The statement planned before for this text, if still valid.
    fn kept(&self, sql: &str) -> Option<Arc<Prepared>> {
        let plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        if plans.epoch != self.session.plan_epoch() {
            return None;
        }
        plans.by_text.get(sql).cloned()
    }

    /// Keeps a planned statement for its text, if it may run again.
    fn keep(&self, sql: &str, prepared: &Arc<Prepared>, epoch: u64) {
        if !prepared.reusable() {
            return;
        }
        let mut plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        if plans.epoch != epoch || plans.by_text.len() >= KEPT_PLANS {
            plans.by_text.clear();
            plans.epoch = epoch;
        }
        plans.by_text.insert(sql.to_owned(), prepared.clone());
    }

    /// Plans SQL text holding at most one statement (reusing a kept plan).
    async fn plan_one(&self, sql: &str) -> PgWireResult<Option<Planned>> {
        let epoch = self.session.plan_epoch();
        if let Some(p) = self.kept(sql) {
            return Ok(Some(Planned::Query(Query::new(p, sql, epoch))));
        }
        let mut statements = self.session.statements(sql).map_err(to_pg)?;
        if statements.len() > 1 {
            return Err(encode::user_error(
                "42601",
                "cannot insert multiple commands into a prepared statement".into(),
            ));
        }
        statements.rewrite(crate::pg_catalog::rewrite);
        let planned = self.plan_next(&mut statements, Some(sql)).await;
        if let Some(Ok(Planned::Query(q))) = &planned {
            self.keep(sql, &q.prepared, epoch);
        }
        planned.transpose()
    }

    /// Plans the next statement of a client's text: a session command the
    /// connection answers itself, or a query planned by the engine. `text`
    /// is the SQL as the client sent it, when it holds this statement only.
    async fn plan_next(
        &self,
        statements: &mut Statements<'_>,
        text: Option<&str>,
    ) -> Option<PgWireResult<Planned>> {
        if let Some(c) = statements.peek().and_then(commands::classify) {
            statements.take_next();
            return Some(Ok(Planned::Command(c)));
        }
        let epoch = self.session.plan_epoch();
        let text = match text {
            Some(t) => t.to_owned(),
            None => statement_text(statements.peek()?),
        };
        let prepared = statements.plan_next().await?;
        Some(
            prepared
                .map(|p| Planned::Query(Query::new(Arc::new(p), &text, epoch)))
                .map_err(to_pg),
        )
    }
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Planned;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Planned>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        self.plan_one(sql).await
    }

    fn get_parameter_types(&self, stmt: &Planned) -> PgWireResult<Vec<Type>> {
        Ok(match stmt {
            Planned::Query(q) => q
                .prepared
                .parameter_types
                .iter()
                .map(|t| t.as_ref().map(encode::pg_type).unwrap_or(Type::TEXT))
                .collect(),
            Planned::Command(_) => vec![],
        })
    }

    fn get_result_schema(
        &self,
        stmt: &Planned,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let format = format.cloned().unwrap_or(Format::UnifiedText);
        Ok(match stmt {
            Planned::Query(q) if !matches!(q.prepared.plan, LogicalPlan::Statement(_)) => {
                encode::fields(&q.prepared.schema(), &format)
            }
            Planned::Command(Command::Show { name }) => {
                vec![FieldInfo::new(
                    name.clone(),
                    None,
                    None,
                    Type::TEXT,
                    FieldFormat::Text,
                )]
            }
            _ => vec![],
        })
    }
}

#[async_trait]
impl StartupHandler for Connection {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                auth::protocol_negotiation(client, startup).await?;
                auth::save_startup_parameters_to_metadata(client, startup);
                let Some(user) = client.metadata().get(pgwire::api::METADATA_USER).cloned() else {
                    return Err(PgWireError::UserNameRequired);
                };
                let address = client.socket_addr();
                if self.auth.require_tls && !client.is_secure() {
                    let error = encode::user_error(
                        "28000",
                        "this server accepts TLS connections only (connect with sslmode=require)"
                            .into(),
                    );
                    return self
                        .refuse_login(&user, address, "tls-required", Duration::ZERO, error)
                        .await;
                }
                if self.auth.logins.locked(&user) {
                    let delay = self.auth.logins.refusal_delay(&user, address.ip());
                    return self
                        .refuse_login(&user, address, "locked", delay, locked())
                        .await;
                }
                self.auth
                    .driver
                    .begin_authentication(client, self.auth.scram.create())
                    .await?;
                Ok(())
            }
            PgWireFrontendMessage::PasswordMessageFamily(m) => {
                let user = client
                    .metadata()
                    .get(pgwire::api::METADATA_USER)
                    .cloned()
                    .unwrap_or_default();
                let address = client.socket_addr();
                let outcome = self.auth.driver.advance_authentication(client, m).await;
                let role = self.auth.users.role(&user);
                let (final_message, role) = match (outcome, role) {
                    (Ok(auth::driver::AuthOutcome::InProgress), _) => return Ok(()),
                    (
                        Ok(auth::driver::AuthOutcome::Authenticated { final_message, .. }),
                        Some(role),
                    ) if !self.auth.logins.locked(&user) => (final_message, role),
                    (outcome, _) => {
                        // A wrong password (or a malformed exchange), the same for unknown users.
                        let failure = self.auth.logins.failed(&user, address.ip());
                        let (reason, error) = match outcome {
                            _ if self.auth.logins.locked(&user) && !failure.locked => {
                                ("locked", locked())
                            }
                            Err(e) => ("password", e),
                            Ok(_) => ("password", PgWireError::InvalidPassword(user.clone())),
                        };
                        if failure.locked {
                            log::warn!(
                                "login: user {user:?} locked after repeated failed logins (last from {address})"
                            );
                        }
                        return self
                            .refuse_login(&user, address, reason, failure.delay, error)
                            .await;
                    }
                };
                self.auth.logins.succeeded(&user, address.ip());
                let slot = match self.limiter.connect(&user, role) {
                    Ok(slot) => slot,
                    Err(e) => {
                        self.audit_login(&user, Some(role), address, Some("connection-limit"))?;
                        return Err(e);
                    }
                };
                let limits = self.limiter.limits(role);
                let _ = self.admitted.set((slot, limits));
                self.session.authenticate(&user, role);
                let database = client
                    .metadata()
                    .get(pgwire::api::METADATA_DATABASE)
                    .cloned()
                    .unwrap_or_default();
                if let Err((code, message)) = self.enter_database(&database) {
                    self.audit_login(&user, Some(role), address, Some("database"))?;
                    return Err(encode::user_error(code, message));
                }
                self.session.set_query_memory_limit(limits.memory_per_query);
                self.audit_login(&user, Some(role), address, None)?;
                let settings = self.settings(client);
                let before: std::collections::HashSet<String> = self
                    .session
                    .context()
                    .state()
                    .scalar_functions()
                    .keys()
                    .cloned()
                    .collect();
                crate::pg_catalog::register(
                    self.session.context(),
                    self.auth.users.list(),
                    settings,
                )
                .await
                .map_err(from_datafusion)?;
                // The catalog functions answer from the catalog: total.
                let added: Vec<_> = self
                    .session
                    .context()
                    .state()
                    .scalar_functions()
                    .keys()
                    .filter(|k| !before.contains(*k))
                    .map(|k| (k.clone(), tsunagu_engine::privacy::Disclosure::Total))
                    .collect();
                self.session.classify_functions(added);
                self.auth
                    .driver
                    .complete_authentication(client, final_message)
                    .await?;
                let (pid, key) = client.pid_and_secret_key();
                self.registry.insert((pid, key.to_bytes()), &self.cancel);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for Connection {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(p) = self.parser.kept(query) {
            return match self.query(&p, vec![], &Format::UnifiedText).await {
                Ok(r) => Ok(vec![r]),
                Err(PgWireError::UserError(info)) => Ok(vec![Response::Error(info)]),
                Err(e) => Err(e),
            };
        }
        let epoch = self.session.plan_epoch();
        let mut statements = self.session.statements(query).map_err(to_pg)?;
        let single = statements.len() == 1;
        statements.rewrite(crate::pg_catalog::rewrite);
        let mut out = Vec::with_capacity(statements.len());
        while let Some(planned) = self.parser.plan_next(&mut statements, None).await {
            let result = match planned {
                Ok(Planned::Command(c)) => self.command(client, &c),
                Ok(Planned::Query(q)) => {
                    if single {
                        self.parser.keep(query, &q.prepared, epoch);
                    }
                    self.query(&q.prepared, vec![], &Format::UnifiedText).await
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(r) => out.push(r),
                Err(PgWireError::UserError(info)) => {
                    out.push(Response::Error(info));
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Connection {
    type Statement = Planned;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Planned>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match &portal.statement.statement {
            Planned::Command(c) => self.command(client, c),
            Planned::Query(q) => {
                let p = self.current_plan(q).await?;
                let params = encode::parameters(
                    portal,
                    &portal.statement.parameter_types,
                    &p.parameter_types,
                )?;
                self.query(&p, params, &portal.result_column_format).await
            }
        }
    }
}

/// The handlers of one connection.
pub struct Handlers {
    pub connection: Arc<Connection>,
    pub registry: Arc<CancelRegistry>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.connection.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.connection.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.connection.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.registry.clone()
    }
}
