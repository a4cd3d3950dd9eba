//! Live dashboards over a store, in the same binary as the SQL server.
//!
//! Dashboards are files (SQL plus a small chart spec, [`spec`]) or built in
//! for every store ([`builtin`]: overview, a study template, saved cohorts,
//! data quality). [`panels`] runs each panel in the viewer's engine session
//! (the same release and audit as their SQL) and caches answers per
//! snapshot; [`live`] notices changes and open pages reload what changed;
//! [`http`] serves the pages, login and JSON. The charts are drawn in the
//! browser by Apache ECharts (Apache-2.0), bundled into the binary.

pub mod builtin;
pub mod error;
mod http;
pub mod live;
pub mod panels;
pub mod spec;
pub mod tiles;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

pub use error::{DashboardError, Result};
use tsunagu_engine::current::Current;
use tsunagu_engine::{Engine, Role};

/// The outcome of a login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    Allowed(Role),
    /// Refused: answer after `delay`; `reason` goes to the audit log
    /// (`password`, `locked`).
    Refused {
        delay: Duration,
        reason: &'static str,
    },
}

/// Who may view, as the embedding server decides it (its users, their
/// SCRAM verifiers, its throttling of failed logins, its limits).
pub trait Access: Send + Sync + 'static {
    /// Checks a user's password (may block: verifiers are slow on purpose).
    fn login(&self, user: &str, password: &str, address: IpAddr) -> Login;
    /// The memory one query of a role may hold.
    fn memory_per_query(&self, role: Role) -> Option<usize>;
    /// How long one query of a role may run.
    fn statement_timeout(&self, role: Role) -> Option<Duration>;
}

/// What to serve.
pub struct Options {
    /// The dashboards ([`load`]).
    pub dashboards: Vec<spec::Dashboard>,
    /// How often to look for changed cohorts.
    pub poll: Duration,
}

/// The dashboards to serve: built in, then the folder's (a file may replace
/// a built-in one by using its id as its name).
pub fn load(engine: &Engine, dir: Option<&std::path::Path>) -> Result<Vec<spec::Dashboard>> {
    let mut all = builtin::dashboards(engine.store());
    if let Some(dir) = dir {
        for d in spec::Dashboard::read_dir(dir)? {
            match all.iter_mut().find(|b| b.id == d.id) {
                Some(b) => *b = d,
                None => all.push(d),
            }
        }
    }
    Ok(all)
}

/// Serves the dashboards of the current engine on `listener` until the process ends.
pub async fn serve(
    current: Arc<Current>,
    listener: tokio::net::TcpListener,
    access: Arc<dyn Access>,
    options: Options,
) -> Result<()> {
    let live = live::Live::watch(current.clone(), options.poll);
    let app = Arc::new(http::App::new(current, options.dashboards, access, live));
    axum::serve(
        listener,
        http::router(app).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await
    .map_err(|e| DashboardError::Internal(format!("dashboard server: {e}")))
}
