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

pub mod derived;
pub mod export;
pub mod tables;

use std::sync::Arc;

use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::{SessionConfig, SessionContext};
use tsunagu_catalog::Store;

use crate::{CATALOG, Result};

/// The schema the graph is shown in.
pub const SCHEMA: &str = "graph";

/// The graph of one opened store.
#[derive(Debug)]
pub struct KnowledgeGraph {
    store: Arc<Store>,
    config: SessionConfig,
    runtime: Arc<RuntimeEnv>,
    /// Pairs with fewer persons are not kept.
    min_persons: u64,
    derived: tokio::sync::OnceCell<Arc<derived::Derived>>,
}

impl KnowledgeGraph {
    /// The graph of `store`; nothing is computed yet.
    pub fn new(
        store: Arc<Store>,
        config: SessionConfig,
        runtime: Arc<RuntimeEnv>,
        min_persons: u64,
    ) -> KnowledgeGraph {
        KnowledgeGraph {
            store,
            config,
            runtime,
            min_persons: min_persons.max(1),
            derived: tokio::sync::OnceCell::new(),
        }
    }

    /// The data-derived edges, computed on first use.
    pub async fn derived(&self) -> Result<Arc<derived::Derived>> {
        self.derived
            .get_or_try_init(|| async {
                let ctx =
                    SessionContext::new_with_config_rt(self.config.clone(), self.runtime.clone());
                self.store.register(&ctx, CATALOG)?;
                let started = std::time::Instant::now();
                let d = derived::compute(&ctx, &self.store, self.min_persons).await?;
                log::info!(
                    "knowledge graph: {} data-derived edges over {} concepts and {} persons in {:.1} s",
                    d.edges.len(),
                    d.concepts,
                    d.persons,
                    started.elapsed().as_secs_f64()
                );
                Ok(Arc::new(d))
            })
            .await
            .cloned()
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
