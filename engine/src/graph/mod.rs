//! The knowledge graph: the vocabulary's curated relationships and the
//! associations the data shows, as tables in schema `graph`.
//!
//! - `graph.nodes`: every concept of the vocabulary, with its Japanese name
//!   where `vocab.concept_synonym` has one;
//! - `graph.edges`: `concept_id_1 -> concept_id_2` under a `relationship_id`,
//!   with its `provenance`: `vocabulary` (hierarchy and other curated
//!   relationships), `mapping` (`Maps to` / `Mapped from`) or `data`
//!   ([`derived`]: computed from the store's records, with the statistic, its
//!   lower 95% bound, the persons behind it, the computation and the
//!   delivery it came from).
//!
//! The data-derived edges are computed the first time `graph.edges` is read
//! and kept for the engine's life; a delivery reopens the engine, so they
//! are recomputed per delivery. Pairs with fewer than k persons (the store's
//! policy) are not kept at all. Analysts and viewers read every count
//! released as in the quality label (withheld under their k, rounded), and
//! the statistic recomputed from the released counts, a count under k
//! standing as k; stewards read exact counts.
//!
//! `concept_path` (in `tsunagu_udfs::graph`) walks the curated relationships;
//! [`export`] writes what a session may read as GraphML or JSON-LD.

pub mod curated;
pub mod derived;
pub mod export;
pub mod tables;

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::{SessionConfig, SessionContext};
use tsunagu_catalog::Store;

use crate::privacy::Policy;
use crate::quality::label::Release;
use crate::{CATALOG, Result};

/// The schema the graph is shown in.
pub const SCHEMA: &str = "graph";

/// The graph of one opened store.
#[derive(Debug)]
pub struct KnowledgeGraph {
    store: Arc<Store>,
    config: SessionConfig,
    runtime: Arc<RuntimeEnv>,
    /// The store's policy: hidden tables, and k (pairs with fewer persons are not kept).
    policy: Arc<Policy>,
    derived: tokio::sync::OnceCell<Arc<derived::Derived>>,
    curated: tokio::sync::OnceCell<Arc<curated::Curated>>,
    /// The edges' rows per release (`None`: exact), made once each.
    batches: std::sync::Mutex<Vec<(Option<(u64, u64, u64)>, RecordBatch)>>,
}

impl KnowledgeGraph {
    /// The graph of `store`; nothing is computed yet.
    pub fn new(
        store: Arc<Store>,
        config: SessionConfig,
        runtime: Arc<RuntimeEnv>,
        policy: Arc<Policy>,
    ) -> KnowledgeGraph {
        KnowledgeGraph {
            store,
            config,
            runtime,
            policy,
            derived: tokio::sync::OnceCell::new(),
            curated: tokio::sync::OnceCell::new(),
            batches: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Pairs with fewer persons are not kept: the store's k.
    fn min_persons(&self) -> u64 {
        self.policy.k.max(1)
    }

    /// The data-derived rows of `graph.edges` under `release`.
    pub async fn edges_batch(&self, release: Option<Release>) -> Result<RecordBatch> {
        let key = release.map(|r| (r.k, r.rounding, r.coarser));
        if let Some((_, b)) = self
            .batches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(k, _)| *k == key)
        {
            return Ok(b.clone());
        }
        let derived = self.derived().await?;
        let batch =
            tables::derived_batch(&derived, release, self.min_persons(), &self.derived_from())?;
        self.batches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((key, batch.clone()));
        Ok(batch)
    }

    /// The data-derived edges, computed on first use.
    pub async fn derived(&self) -> Result<Arc<derived::Derived>> {
        self.derived
            .get_or_try_init(|| async {
                let ctx =
                    SessionContext::new_with_config_rt(self.config.clone(), self.runtime.clone());
                self.store.register(&ctx, CATALOG)?;
                let started = std::time::Instant::now();
                let d = derived::compute(
                    &ctx,
                    &self.store,
                    &self.policy,
                    &self.runtime.memory_pool,
                    self.min_persons(),
                )
                .await?;
                log::info!(
                    "knowledge graph: {} pairs of concepts over {} concepts and {} persons in {:.1} s",
                    d.pairs.len(),
                    d.concepts,
                    d.persons,
                    started.elapsed().as_secs_f64()
                );
                Ok(Arc::new(d))
            })
            .await
            .cloned()
    }

    /// The vocabulary's curated relationships, read on first use.
    pub async fn curated(&self) -> Result<Arc<curated::Curated>> {
        self.curated
            .get_or_try_init(|| async {
                let ctx =
                    SessionContext::new_with_config_rt(self.config.clone(), self.runtime.clone());
                self.store.register(&ctx, CATALOG)?;
                Ok(Arc::new(curated::Curated::load(&ctx).await?))
            })
            .await
            .cloned()
    }

    /// The store's policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Where the data-derived edges come from, in words.
    pub fn derived_from(&self) -> String {
        let fingerprint: String = self.store.fingerprint().chars().take(12).collect();
        format!(
            "store {} delivery {} ({fingerprint})",
            self.store.name(),
            self.store.generation()
        )
    }

    /// The opened store.
    pub fn store(&self) -> &Store {
        &self.store
    }
}
