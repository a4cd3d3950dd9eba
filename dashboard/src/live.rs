//! What the pages show is computed on a snapshot: the store as opened and
//! the saved cohorts as they are now. A watcher notices when the cohorts
//! change and tells open pages (server-sent events), which then reload
//! only the panels that read cohorts.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tsunagu_engine::Engine;

/// The versions a panel's answer depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Snapshot {
    /// Changes when the store's files change.
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
    /// Starts watching `engine`'s saved cohorts every `every`.
    pub fn watch(engine: Arc<Engine>, every: Duration) -> Live {
        let (tx, _) = watch::channel(Snapshot {
            store: 1,
            cohorts: 1,
        });
        let tx = Arc::new(tx);
        let weak = Arc::downgrade(&tx);
        tokio::spawn(async move {
            let mut last = cohorts_signature(&engine);
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(tx) = weak.upgrade() else { break };
                let e = engine.clone();
                let now = tokio::task::spawn_blocking(move || cohorts_signature(&e))
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

/// A digest of every saved cohort's name, owner, creation time and size.
fn cohorts_signature(engine: &Engine) -> String {
    let mut h = Sha256::new();
    match engine.saved_cohorts() {
        Ok(mut list) => {
            list.sort_by(|a, b| a.name.cmp(&b.name));
            for c in list {
                for part in [&c.name, &c.owner, &c.created_at, &c.size.to_string()] {
                    h.update(part.as_bytes());
                    h.update([0]);
                }
            }
        }
        Err(e) => h.update(e.to_string().as_bytes()),
    }
    hex::encode(h.finalize())
}
