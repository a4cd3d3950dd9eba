//! What the pages show is computed on a snapshot: the current engine (a new
//! one when a delivery lands) and the saved cohorts as they are now. A
//! watcher notices either change and tells open pages (server-sent events),
//! which then reload what it touches: every panel for a delivery, only the
//! panels that read cohorts for a cohort.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tsunagu_engine::current::Current;

/// The versions a panel's answer depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Snapshot {
    /// The number of the current engine: changes when a delivery lands.
    pub store: u64,
    /// Changes whenever a cohort is saved, replaced or dropped.
    pub cohorts: u64,
}

/// The current snapshot, and a way to wait for the next one.
#[derive(Clone)]
pub struct Live {
    tx: Arc<watch::Sender<Snapshot>>,
}

impl Live {
    /// Follows the current engine (a new one when a delivery lands) and
    /// looks at the saved cohorts (the store's and the projects') every `every`.
    pub fn watch(current: Arc<Current>, every: Duration) -> Live {
        let mut engines = current.version();
        let first = *engines.borrow_and_update();
        let (tx, _) = watch::channel(Snapshot {
            store: first,
            cohorts: 1,
        });
        let tx = Arc::new(tx);
        let weak = Arc::downgrade(&tx);
        tokio::spawn(async move {
            let state = current.get().store().state_dir().to_owned();
            let mut last = cohorts_signature(&state);
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    changed = engines.changed() => {
                        if changed.is_err() {
                            break;
                        }
                    }
                }
                let Some(tx) = weak.upgrade() else { break };
                let store = *engines.borrow_and_update();
                if store != tx.borrow().store {
                    tx.send_modify(|s| s.store = store);
                }
                let dir = state.clone();
                let now = tokio::task::spawn_blocking(move || cohorts_signature(&dir))
                    .await
                    .unwrap_or_default();
                if now != last {
                    last = now;
                    tx.send_modify(|s| s.cohorts += 1);
                }
            }
        });
        Live { tx }
    }

    /// The snapshot new answers are computed on.
    pub fn current(&self) -> Snapshot {
        *self.tx.borrow()
    }

    /// A receiver that wakes when the snapshot changes.
    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.tx.subscribe()
    }
}

/// A digest of the saved cohorts of the store and of every project: their
/// names and when their descriptions were written.
fn cohorts_signature(state: &Path) -> String {
    let mut folders = vec![state.join("cohorts")];
    if let Ok(projects) = std::fs::read_dir(state.join("projects")) {
        let mut p: Vec<_> = projects
            .flatten()
            .map(|e| e.path().join("cohorts"))
            .collect();
        p.sort();
        folders.extend(p);
    }
    let mut h = Sha256::new();
    for folder in folders {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        let mut lines: Vec<String> = entries
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| {
                let modified = std::fs::metadata(e.path().join("meta.json"))
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                format!(
                    "{}\t{}\t{modified}",
                    folder.display(),
                    e.file_name().to_string_lossy()
                )
            })
            .collect();
        lines.sort();
        for l in lines {
            h.update(l.as_bytes());
            h.update([0]);
        }
    }
    hex::encode(h.finalize())
}
