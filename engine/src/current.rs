//! The engine new work uses: switched atomically when a delivery lands.
//!
//! A server holds one [`Current`]; each connection, page or statement takes
//! the engine it finds there and keeps it, so work already running finishes
//! on the store as it was, while new work sees the new files.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tsunagu_catalog::Opened;

use crate::{Engine, Result};

/// The current engine and a counter of switches.
pub struct Current {
    engine: RwLock<Arc<Engine>>,
    version: watch::Sender<u64>,
    /// One refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
}

impl Current {
    pub fn new(engine: Arc<Engine>) -> Arc<Current> {
        Arc::new(Current {
            engine: RwLock::new(engine),
            version: watch::channel(1).0,
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    /// The engine new work should use.
    pub fn get(&self) -> Arc<Engine> {
        self.engine
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The number of the current engine (1, then one more per switch), and
    /// a way to wait for the next.
    pub fn version(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Opens the store again when its files changed and switches to it:
    /// how the new state was obtained, or `None` when nothing changed.
    pub async fn refresh(&self) -> Result<Option<Opened>> {
        let _one = self.refreshing.lock().await;
        let engine = self.get();
        let check = engine.clone();
        let changed = tokio::task::spawn_blocking(move || check.store_changed())
            .await
            .map_err(|e| crate::EngineError::Unsupported(format!("refresh: {e}")))??;
        if !changed {
            return Ok(None);
        }
        let next = Arc::new(engine.reopen().await?);
        let opened = next.store().opened().clone();
        *self.engine.write().unwrap_or_else(|p| p.into_inner()) = next;
        self.version.send_modify(|v| *v += 1);
        Ok(Some(opened))
    }

    /// Writes the person layout the current store left pending (see
    /// [`crate::EngineOptions::defer_layout`]) in the background, then
    /// switches to the store opened again, reading it. Work already running
    /// finishes on the delivered files; nothing is written when no copy is
    /// pending.
    pub fn complete_layout(self: &Arc<Self>) {
        let engine = self.get();
        let pending = engine.store().pending_layout().len();
        if pending == 0 {
            return;
        }
        log::info!("writing the person layout of {pending} tables in the background");
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            if let Err(e) = engine.store().write_layout().await {
                log::warn!("the person layout could not be written: {e}");
                eprintln!("tsunagu: the person layout could not be written: {e}");
                return;
            }
            let Some(current) = weak.upgrade() else {
                return;
            };
            let _one = current.refreshing.lock().await;
            // A delivery taken in meanwhile has its own state (and its own
            // layout to complete).
            if current.get().store().fingerprint() != engine.store().fingerprint() {
                return;
            }
            match engine.reopen().await {
                Ok(next) => {
                    *current.engine.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
                    current.version.send_modify(|v| *v += 1);
                    log::info!("person layout written in {:.1?}", started.elapsed());
                    println!(
                        "tsunagu: person layout written in {:.1?}; queries read it from now on",
                        started.elapsed()
                    );
                }
                Err(e) => {
                    log::warn!("the store could not be opened with its layout: {e}");
                    eprintln!("tsunagu: the store could not be opened with its layout: {e}");
                }
            }
        });
    }

    /// Looks for changed files every `every` until `self` is dropped. A
    /// change is taken in once the files look the same twice in a row (a
    /// delivery still being copied is left alone); a change that could not
    /// be opened is logged and tried again only once the files change again.
    pub fn watch(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seen: Option<String> = None;
            let mut failed: Option<String> = None;
            loop {
                tick.tick().await;
                let Some(current) = weak.upgrade() else { break };
                let engine = current.get();
                let root = engine.store().root().to_owned();
                let now = match tokio::task::spawn_blocking(move || {
                    tsunagu_catalog::state::fingerprint(&root)
                })
                .await
                {
                    Ok(Ok(f)) => f,
                    _ => continue,
                };
                if now == engine.store().fingerprint() {
                    seen = None;
                    continue;
                }
                if seen.as_deref() != Some(now.as_str()) {
                    seen = Some(now);
                    continue;
                }
                if failed.as_deref() == Some(now.as_str()) {
                    continue;
                }
                match current.refresh().await {
                    Ok(Some(opened)) => {
                        log::info!("store changed: {}", describe(&opened));
                        current.complete_layout();
                    }
                    Ok(None) => {}
                    Err(e) => {
                        log::warn!("store changed but could not be opened again: {e}");
                        eprintln!("tsunagu: the store changed but could not be opened again: {e}");
                        failed = Some(now);
                    }
                }
            }
        });
    }
}

/// One line on how a store's state was obtained.
pub fn describe(opened: &Opened) -> String {
    match opened {
        Opened::Reused => "derived state reused".into(),
        Opened::Derived { reason: None } => "state derived".into(),
        Opened::Derived {
            reason: Some(reason),
        } => format!("state derived again from scratch: {reason}"),
        Opened::Extended { files, new_persons } => format!(
            "{} new file{} taken in ({} new person{}): {}",
            files.len(),
            if files.len() == 1 { "" } else { "s" },
            new_persons,
            if *new_persons == 1 { "" } else { "s" },
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
