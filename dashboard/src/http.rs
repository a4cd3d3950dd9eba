//! The HTTP side: pages, login, the dashboards' JSON and server-sent events.
//!
//! Viewers log in with the server's users (the password is checked against
//! the stored SCRAM verifier by the embedder's [`Access`]); the browser then
//! holds only a random session token in an `HttpOnly`, `SameSite=Strict`
//! cookie. Every panel runs in the viewer's engine session.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tsunagu_engine::audit::Entry;
use tsunagu_engine::current::Current;
use tsunagu_engine::{Engine, Role, Session};

use crate::error::DashboardError;
use crate::live::Live;
use crate::panels::{Cache, Key, PanelData, reads_cohorts};
use crate::spec::Dashboard;
use crate::{Access, Login};

const COOKIE: &str = "tsunagu_session";
/// A session unused for this long ends.
const IDLE: Duration = Duration::from_secs(8 * 3600);
/// Sessions held at most; the least recently used ends first.
const MAX_SESSIONS: usize = 1000;

static INDEX_HTML: &str = include_str!("../assets/index.html");
static APP_JS: &str = include_str!("../assets/app.js");
static APP_CSS: &str = include_str!("../assets/app.css");
static ECHARTS_JS: &str = include_str!("../assets/echarts.min.js");

struct Viewer {
    user: String,
    role: Role,
    database: String,
    /// The session, on the engine of this number (see [`Current::version`]).
    session: Session,
    engine: u64,
    last_used: Instant,
}

/// A logged-in viewer, as a request sees it.
struct Seen {
    user: String,
    role: Role,
    database: String,
    session: Session,
    /// The number of the engine the session works on.
    engine: u64,
}

pub(crate) struct App {
    pub current: Arc<Current>,
    pub dashboards: Vec<Dashboard>,
    pub access: Arc<dyn Access>,
    pub live: Live,
    pub cache: Cache,
    /// Queries of all viewers running at once, at most.
    pub running: tokio::sync::Semaphore,
    /// Sessions by the SHA-256 of their token.
    viewers: Mutex<HashMap<[u8; 32], Arc<Mutex<Viewer>>>>,
}

impl App {
    pub fn new(
        current: Arc<Current>,
        dashboards: Vec<Dashboard>,
        access: Arc<dyn Access>,
        live: Live,
    ) -> App {
        App {
            current,
            dashboards,
            access,
            live,
            cache: Cache::default(),
            running: tokio::sync::Semaphore::new(4),
            viewers: Mutex::default(),
        }
    }

    fn viewers(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<Mutex<Viewer>>>> {
        self.viewers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A session for a viewer on the current engine, working where they logged in.
    fn open_session(
        &self,
        engine: &Engine,
        user: &str,
        role: Role,
        database: &str,
    ) -> Result<Session, String> {
        let session = engine.session_as(user, role).map_err(|e| e.to_string())?;
        engine
            .enter_database(&session, database)
            .map_err(|e| e.to_string())?;
        session.set_query_memory_limit(self.access.memory_per_query(role));
        Ok(session)
    }

    /// The viewer a request's cookie names, if its session is alive; the
    /// session moves to the current engine once a delivery has landed.
    fn viewer(&self, headers: &HeaderMap) -> Option<Seen> {
        let token = cookie(headers, COOKIE)?;
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let entry = self.viewers().get(&key)?.clone();
        let mut v = entry.lock().unwrap_or_else(|p| p.into_inner());
        if v.last_used.elapsed() > IDLE {
            drop(v);
            self.viewers().remove(&key);
            return None;
        }
        v.last_used = Instant::now();
        let version = *self.current.version().borrow();
        if v.engine != version {
            let engine = self.current.get();
            match self.open_session(&engine, &v.user, v.role, &v.database) {
                Ok(session) => {
                    v.session = session;
                    v.engine = version;
                }
                Err(e) => {
                    // Their project ended or they left it: the session ends.
                    log::info!("dashboard session of {} ended: {e}", v.user);
                    drop(v);
                    self.viewers().remove(&key);
                    return None;
                }
            }
        }
        Some(Seen {
            user: v.user.clone(),
            role: v.role,
            database: v.database.clone(),
            session: v.session.clone(),
            engine: v.engine,
        })
    }

    fn audit_login(&self, user: &str, role: Option<Role>, address: IpAddr, refused: Option<&str>) {
        let role = role.map(|r| r.to_string());
        let entry = Entry::login(user, role.as_deref(), &format!("http {address}"), refused);
        if let Err(e) = self.current.get().audit_log().append(entry) {
            log::error!("cannot audit a dashboard login: {e}");
        }
    }
}

/// The router of the dashboard server.
pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(index))
        .route(
            "/assets/app.js",
            get(|| asset(APP_JS, "text/javascript; charset=utf-8")),
        )
        .route(
            "/assets/app.css",
            get(|| asset(APP_CSS, "text/css; charset=utf-8")),
        )
        .route(
            "/assets/echarts.min.js",
            get(|| asset(ECHARTS_JS, "text/javascript; charset=utf-8")),
        )
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/me", get(me))
        .route("/api/prefectures", get(prefectures))
        .route("/api/dashboards", get(list))
        .route("/api/dashboards/{id}", get(dashboard))
        .route("/api/dashboards/{id}/panels/{index}", get(panel))
        .route("/api/events", get(events))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such page".into()) })
        .layer(axum::middleware::map_response(secure_headers))
        .with_state(app)
}

async fn secure_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
             form-action 'self'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

fn asset(body: &'static str, kind: &'static str) -> impl std::future::Future<Output = Response> {
    async move {
        (
            [
                (header::CONTENT_TYPE, kind),
                (header::CACHE_CONTROL, "private, max-age=3600"),
            ],
            body,
        )
            .into_response()
    }
}

async fn index() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        INDEX_HTML,
    )
        .into_response()
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(ErrorBody { error: message })).into_response()
}

impl IntoResponse for DashboardError {
    fn into_response(self) -> Response {
        let status = match &self {
            DashboardError::BadRequest(_) => StatusCode::BAD_REQUEST,
            DashboardError::NotFound(_) => StatusCode::NOT_FOUND,
            DashboardError::Query(_) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        error(status, self.to_string())
    }
}

fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, "log in first".into())
}

/// A cookie's value from the request headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
    password: String,
    /// A project, or empty for the whole store.
    #[serde(default)]
    database: String,
}

#[derive(Serialize)]
struct Me {
    user: String,
    role: Role,
    database: String,
    store: String,
}

async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(form): Json<LoginForm>,
) -> Response {
    let address = peer.ip();
    let refused = |reason: &'static str, delay: Duration, message: String| {
        let app = app.clone();
        let user = form.user.clone();
        async move {
            app.audit_login(&user, None, address, Some(reason));
            tokio::time::sleep(delay).await;
            error(StatusCode::UNAUTHORIZED, message)
        }
    };
    let access = app.access.clone();
    let (user, password) = (form.user.clone(), form.password.clone());
    let outcome = tokio::task::spawn_blocking(move || access.login(&user, &password, address))
        .await
        .unwrap_or(Login::Refused {
            delay: Duration::ZERO,
            reason: "internal",
        });
    let role = match outcome {
        Login::Allowed(role) => role,
        Login::Refused { delay, reason } => {
            let message = if reason == "locked" {
                "too many failed logins: this user is locked for a while".to_string()
            } else {
                "wrong user name or password".to_string()
            };
            return refused(reason, delay, message).await;
        }
    };
    let version = *app.current.version().borrow();
    let engine = app.current.get();
    let session = match app.open_session(&engine, &form.user, role, form.database.trim()) {
        Ok(s) => s,
        Err(e) => {
            app.audit_login(&form.user, Some(role), address, Some("database"));
            return error(StatusCode::FORBIDDEN, e);
        }
    };
    app.audit_login(&form.user, Some(role), address, None);
    let token = hex::encode(rand::random::<[u8; 32]>());
    let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    {
        let mut viewers = app.viewers();
        viewers.retain(|_, v| {
            v.lock()
                .map(|v| v.last_used.elapsed() <= IDLE)
                .unwrap_or(false)
        });
        if viewers.len() >= MAX_SESSIONS {
            let oldest = viewers
                .iter()
                .min_by_key(|(_, v)| {
                    v.lock()
                        .map(|v| v.last_used)
                        .unwrap_or_else(|_| Instant::now())
                })
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                viewers.remove(&k);
            }
        }
        viewers.insert(
            key,
            Arc::new(Mutex::new(Viewer {
                user: form.user.clone(),
                role,
                database: form.database.trim().to_owned(),
                session,
                engine: version,
                last_used: Instant::now(),
            })),
        );
    }
    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
    (
        [(header::SET_COOKIE, cookie)],
        Json(Me {
            user: form.user,
            role,
            database: form.database.trim().to_owned(),
            store: engine.store().name().to_owned(),
        }),
    )
        .into_response()
}

async fn logout(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(token) = cookie(&headers, COOKIE) {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        app.viewers().remove(&key);
    }
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        StatusCode::NO_CONTENT,
    )
        .into_response()
}

async fn me(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    match app.viewer(&headers) {
        Some(v) => Json(Me {
            user: v.user,
            role: v.role,
            database: v.database,
            store: app.current.get().store().name().to_owned(),
        })
        .into_response(),
        None => unauthorized(),
    }
}

async fn prefectures() -> Response {
    Json(crate::tiles::tiles()).into_response()
}

#[derive(Serialize)]
struct Summary<'a> {
    id: &'a str,
    title: &'a str,
    title_ja: Option<&'a str>,
    description: Option<&'a str>,
    description_ja: Option<&'a str>,
}

async fn list(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if app.viewer(&headers).is_none() {
        return unauthorized();
    }
    let list: Vec<Summary> = app
        .dashboards
        .iter()
        .map(|d| Summary {
            id: &d.id,
            title: &d.title,
            title_ja: d.title_ja.as_deref(),
            description: d.description.as_deref(),
            description_ja: d.description_ja.as_deref(),
        })
        .collect();
    Json(list).into_response()
}

#[derive(Serialize)]
struct PanelView<'a> {
    #[serde(flatten)]
    panel: &'a crate::spec::Panel,
    reads_cohorts: bool,
}

#[derive(Serialize)]
struct DashboardView<'a> {
    #[serde(flatten)]
    dashboard: &'a Dashboard,
    panels: Vec<PanelView<'a>>,
    snapshot: crate::live::Snapshot,
}

async fn dashboard(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(Seen { session, .. }) = app.viewer(&headers) else {
        return unauthorized();
    };
    let Some(d) = app.dashboards.iter().find(|d| d.id == id) else {
        return DashboardError::NotFound(format!("no dashboard {id:?}")).into_response();
    };
    // The page view itself is audited; each query it runs is audited as it runs.
    if let Err(e) = session.log_command(&format!("VIEW DASHBOARD {id}"), None) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    let mut view = DashboardView {
        dashboard: d,
        panels: d
            .panels
            .iter()
            .map(|p| PanelView {
                panel: p,
                reads_cohorts: reads_cohorts(p),
            })
            .collect(),
        snapshot: app.live.current(),
    };
    // `panels` is written from the views (flatten would write it twice).
    let mut value = match serde_json::to_value(&view) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    if let Some(o) = value.as_object_mut() {
        match serde_json::to_value(std::mem::take(&mut view.panels)) {
            Ok(p) => {
                o.insert("panels".into(), p);
            }
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
    Json(value).into_response()
}

async fn panel(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((id, index)): Path<(String, usize)>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let Some(viewer) = app.viewer(&headers) else {
        return unauthorized();
    };
    let Some(d) = app.dashboards.iter().find(|d| d.id == id) else {
        return DashboardError::NotFound(format!("no dashboard {id:?}")).into_response();
    };
    let Some(p) = d.panels.get(index) else {
        return DashboardError::NotFound(format!("dashboard {id:?} has no panel {index}"))
            .into_response();
    };
    let values = match d.values(&params) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    // The engine the session works on, not one that landed since.
    let snapshot = crate::live::Snapshot {
        store: viewer.engine,
        cohorts: app.live.current().cohorts,
    };
    let key = Key::new(
        snapshot,
        &viewer.session,
        &viewer.database,
        &id,
        index,
        p,
        &values,
    );
    let reply = |data: &PanelData, cached: bool| {
        (
            [(
                header::HeaderName::from_static("x-tsunagu-cache"),
                if cached { "hit" } else { "miss" },
            )],
            Json(data),
        )
            .into_response()
    };
    if let Some(data) = app.cache.get(&key) {
        return reply(&data, true);
    }
    let Ok(_permit) = app.running.acquire().await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down".into());
    };
    let work = app
        .cache
        .compute(key, snapshot, &viewer.session, p, &values);
    let answer = match app.access.statement_timeout(viewer.role) {
        Some(limit) => match tokio::time::timeout(limit, work).await {
            Ok(answer) => answer,
            Err(_) => Err(DashboardError::Query(format!(
                "the panel's query ran longer than the {limit:?} a statement may take"
            ))),
        },
        None => work.await,
    };
    match answer {
        Ok(data) => reply(&data, false),
        Err(e) => e.into_response(),
    }
}

async fn events(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if app.viewer(&headers).is_none() {
        return unauthorized();
    }
    let rx = app.live.subscribe();
    let first = Some(*rx.borrow());
    let stream = futures::stream::unfold((rx, first), |(mut rx, first)| async move {
        let snapshot = match first {
            Some(s) => s,
            None => {
                rx.changed().await.ok()?;
                *rx.borrow_and_update()
            }
        };
        let event = Event::default()
            .event("snapshot")
            .json_data(snapshot)
            .unwrap_or_default();
        Some((Ok::<_, std::convert::Infallible>(event), (rx, None)))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
