//! Shared subplans on a cluster.
//!
//! On one machine, every occurrence of a shared subplan (a CTE used several
//! times) reads one run of it ([`SharedExec`]). On a cluster, a plan is cut
//! into stages run by tasks on several machines. A shared subplan that
//! runs within one stage — scans, filters, joins and aggregates within
//! person ranges — keeps being shared: the occurrences of it that one task
//! runs read one run of it, on that task's ranges (the worker side is
//! `plan_codec`'s). One whose inside would be cut into stages (a shuffle, a
//! merge of partitions, a broadcast table) cannot be: each of its
//! occurrences would become stages of their own, of which the run would
//! execute only one. [`ShareWithinStages`] has each such occurrence compute
//! its own rows.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::physical_expr::Partitioning;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::joins::{
    CrossJoinExec, HashJoinExec, NestedLoopJoinExec, PartitionMode,
};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::union::{InterleaveExec, UnionExec};
use tsunagu_engine::repeated_subplans::SharedExec;

/// Replaces each occurrence of a shared subplan whose inside a cluster
/// would cut into stages by its own subplan (see the module's documentation).
#[derive(Debug)]
pub struct ShareWithinStages;

impl PhysicalOptimizerRule for ShareWithinStages {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(shared) = node.downcast_ref::<SharedExec>() else {
                return Ok(Transformed::no(node));
            };
            if shared.input().exists(|n| Ok(cut_into_stages(n)))? {
                return Ok(Transformed::yes(Arc::clone(shared.input())));
            }
            Ok(Transformed::no(node))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "share_within_stages"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Whether the cluster's planner puts a stage boundary at or below `node`'s
/// inputs: a hash shuffle, a merge of partitions, a table broadcast to a
/// join, or a union whose inputs may run as tasks of their own.
fn cut_into_stages(node: &Arc<dyn ExecutionPlan>) -> bool {
    if let Some(r) = node.downcast_ref::<RepartitionExec>() {
        return matches!(r.partitioning(), Partitioning::Hash(..));
    }
    if let Some(join) = node.downcast_ref::<HashJoinExec>() {
        return join.mode == PartitionMode::CollectLeft;
    }
    node.is::<CoalescePartitionsExec>()
        || node.is::<SortPreservingMergeExec>()
        || node.is::<NestedLoopJoinExec>()
        || node.is::<CrossJoinExec>()
        || node.is::<UnionExec>()
        || node.is::<InterleaveExec>()
}
