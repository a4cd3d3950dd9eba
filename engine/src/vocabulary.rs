//! Builds the vocabulary graph the RWD functions use from the store's
//! `vocab` tables.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use std::sync::Arc;

use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::{SessionConfig, SessionContext};
use tsunagu_catalog::{Store, VOCAB_SCHEMA};
use tsunagu_udfs::vocab::VocabGraph;

use crate::{CATALOG, Result};

/// Rows of a query as tuples of i64 columns and one optional text column.
async fn rows(ctx: &SessionContext, sql: &str) -> Result<Vec<(Vec<i64>, Option<String>)>> {
    let batches = ctx.sql(sql).await?.collect().await?;
    let mut out = Vec::new();
    for b in batches {
        let cols: Vec<_> = b.columns().to_vec();
        for row in 0..b.num_rows() {
            let mut ints = Vec::new();
            let mut text = None;
            let mut null = false;
            for c in &cols {
                if c.is_null(row) {
                    null = true;
                    break;
                }
                match c.data_type() {
                    DataType::Utf8 => text = Some(c.as_string::<i32>().value(row).to_owned()),
                    _ => ints.push(c.as_primitive::<Int64Type>().value(row)),
                }
            }
            if !null {
                out.push((ints, text));
            }
        }
    }
    Ok(out)
}

/// Loads `concept_ancestor`, `concept_relationship` and the concept ids of
/// `store`, when present, reading with `config` and `runtime`.
pub async fn load(
    store: &Store,
    config: SessionConfig,
    runtime: Arc<RuntimeEnv>,
) -> Result<VocabGraph> {
    let has = |name: &str| {
        store
            .shown_tables()
            .iter()
            .any(|t| t.schema == VOCAB_SCHEMA && t.name == name)
    };
    if !has("concept_ancestor") && !has("concept_relationship") && !has("concept") {
        return Ok(VocabGraph::default());
    }
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    store.register(&ctx, CATALOG)?;
    let codes = if has("concept") {
        codes(&ctx).await?
    } else {
        Vec::new()
    };
    let ancestors = if has("concept_ancestor") {
        rows(&ctx, "SELECT ancestor_concept_id, descendant_concept_id, coalesce(min_levels_of_separation, 0) FROM vocab.concept_ancestor").await?
            .into_iter()
            .map(|(v, _)| (v[0], v[1], v[2]))
            .collect()
    } else {
        Vec::new()
    };
    let relationships = if has("concept_relationship") {
        rows(&ctx, "SELECT concept_id_1, concept_id_2, relationship_id FROM vocab.concept_relationship WHERE invalid_reason IS NULL OR invalid_reason = ''").await?
            .into_iter()
            .filter_map(|(v, t)| Some((v[0], v[1], t?)))
            .collect()
    } else {
        Vec::new()
    };
    let concepts: Vec<i64> = if has("concept") && ancestors.is_empty() {
        rows(&ctx, "SELECT concept_id FROM vocab.concept")
            .await?
            .into_iter()
            .map(|(v, _)| v[0])
            .collect()
    } else {
        Vec::new()
    };
    Ok(VocabGraph::new(ancestors, relationships, &concepts).with_codes(codes))
}

/// (concept_id, vocabulary_id, concept_code) of every concept with a code,
/// valid concepts last so that a code reused by a deprecated one names the
/// valid one.
async fn codes(ctx: &SessionContext) -> Result<Vec<(i64, String, String)>> {
    let sql = "SELECT CAST(concept_id AS BIGINT), CAST(vocabulary_id AS VARCHAR), CAST(concept_code AS VARCHAR) \
               FROM vocab.concept WHERE concept_id IS NOT NULL AND vocabulary_id IS NOT NULL AND concept_code IS NOT NULL \
               ORDER BY CASE WHEN invalid_reason IS NULL OR invalid_reason = '' THEN 1 ELSE 0 END";
    let mut out = Vec::new();
    for b in ctx.sql(sql).await?.collect().await? {
        let ids = datafusion::arrow::compute::cast(b.column(0), &DataType::Int64)?;
        let vocabularies = datafusion::arrow::compute::cast(b.column(1), &DataType::Utf8)?;
        let concept_codes = datafusion::arrow::compute::cast(b.column(2), &DataType::Utf8)?;
        let (ids, vocabularies, concept_codes) = (
            ids.as_primitive::<Int64Type>(),
            vocabularies.as_string::<i32>(),
            concept_codes.as_string::<i32>(),
        );
        for row in 0..b.num_rows() {
            out.push((
                ids.value(row),
                vocabularies.value(row).to_owned(),
                concept_codes.value(row).to_owned(),
            ));
        }
    }
    Ok(out)
}
