//! Where the workers are, and which of them answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use datafusion::error::DataFusionError;
use datafusion_distributed::WorkerResolver;
use url::Url;

use crate::ClusterError;

/// How often each worker's port is tried.
const PROBE_EVERY: Duration = Duration::from_millis(500);

/// A fixed list of workers, of which plans use those whose port accepted
/// a connection at the last probe: a stopped worker fails the statements
/// running on it (each is run again once, on the others), and the next
/// statements run on the others.
#[derive(Clone)]
pub struct Workers {
    all: Arc<Vec<Url>>,
    up: Arc<RwLock<Vec<Url>>>,
    /// Counts the changes of `up`.
    changes: Arc<AtomicU64>,
}

impl Workers {
    /// Workers at `addresses` (`host:port`, or with the scheme `http://`,
    /// or `https://` when `tls`), probed in the background from now on
    /// (needs a Tokio runtime).
    pub fn new(addresses: &[String], tls: bool) -> Result<Workers, ClusterError> {
        let scheme = if tls { "https" } else { "http" };
        let mut all = Vec::new();
        for a in addresses {
            let text = if a.contains("://") {
                a.clone()
            } else {
                format!("{scheme}://{a}")
            };
            let url =
                Url::parse(&text).map_err(|e| ClusterError::Address(a.clone(), e.to_string()))?;
            if url.scheme() != scheme {
                return Err(ClusterError::Address(
                    a.clone(),
                    if tls {
                        "the cluster uses TLS: give host:port or https://host:port".into()
                    } else {
                        "give host:port, or a CA certificate for https://host:port".into()
                    },
                ));
            }
            if url.host_str().is_none() || url.port().is_none() {
                return Err(ClusterError::Address(
                    a.clone(),
                    "expected host:port".into(),
                ));
            }
            all.push(url);
        }
        if all.is_empty() {
            return Err(ClusterError::Address(
                String::new(),
                "no workers given".into(),
            ));
        }
        let workers = Workers {
            up: Arc::new(RwLock::new(all.clone())),
            all: Arc::new(all),
            changes: Arc::new(AtomicU64::new(0)),
        };
        let probed = workers.clone();
        tokio::spawn(async move {
            loop {
                probed.probe().await;
                tokio::time::sleep(PROBE_EVERY).await;
            }
        });
        Ok(workers)
    }

    /// Tries every worker's port once and keeps those that accepted.
    pub async fn probe(&self) {
        let mut up = Vec::new();
        for url in self.all.iter() {
            let (Some(host), Some(port)) = (url.host_str(), url.port()) else {
                continue;
            };
            let connect = tokio::net::TcpStream::connect((host, port));
            if let Ok(Ok(_)) = tokio::time::timeout(PROBE_EVERY, connect).await {
                up.push(url.clone());
            }
        }
        let mut known = self.up.write().unwrap_or_else(|p| p.into_inner());
        if *known != up {
            log::info!("cluster: {} of {} workers answer", up.len(), self.all.len());
            self.changes.fetch_add(1, Ordering::Relaxed);
            *known = up;
        }
    }

    /// A number that changes whenever a worker stops answering or comes back.
    pub fn generation(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// Every worker given.
    pub fn all(&self) -> &[Url] {
        &self.all
    }
}

impl WorkerResolver for Workers {
    fn get_urls(&self) -> Result<Vec<Url>, DataFusionError> {
        let up = self.up.read().unwrap_or_else(|p| p.into_inner()).clone();
        if up.is_empty() {
            return Err(DataFusionError::Execution(format!(
                "none of the cluster's {} workers answers",
                self.all.len()
            )));
        }
        Ok(up)
    }
}
