//! An analyst's statement on a cluster: the privacy layer's release runs on
//! the coordinator, everything below it on the workers.
//!
//! The release functions (`tsunagu_keep`, `tsunagu_release`,
//! `tsunagu_release_set`) hold the statement's policy and count what it
//! released; workers do not have them. The keyed person hash that seeds the
//! noise runs on the workers, which are given its half of the store's key
//! with every fragment: the aggregation across persons runs there too, and
//! the coordinator receives each group's partial aggregates, not a row per
//! group and person. [`GatherForRelease`] gathers the
//! input of each node calling them into one partition, so the distributed
//! planner ends the workers' last stage below that node and the node runs
//! in the coordinator's own stage. [`on_workers`] checks a distributed plan
//! for any statement function left in a stage sent to workers.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_expr::ScalarFunctionExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::sanity_checker::SanityCheckPlan;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use datafusion_distributed::NetworkBoundaryExt;
use tsunagu_engine::privacy::{is_release_function, runs_only_where_planned};

/// Whether `node`'s own expressions call a function named as `which` accepts.
pub(crate) fn calls(node: &dyn ExecutionPlan, which: &dyn Fn(&str) -> bool) -> bool {
    let mut found = false;
    let _ = node.apply_expressions(&mut |root| {
        root.apply(|e| {
            if let Some(f) = e.downcast_ref::<ScalarFunctionExpr>()
                && which(f.name())
            {
                found = true;
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })
    });
    found
}

/// Whether `plan` or a node below it calls a release function.
fn releases_within(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.exists(|n| Ok(calls(n.as_ref(), &is_release_function)))
        .unwrap_or(true)
}

/// Gathers the input of the lowest nodes calling a release function into
/// one partition, in order if it is sorted (the rows of a release are
/// aggregates: few).
#[derive(Debug, Default)]
pub struct GatherForRelease;

impl PhysicalOptimizerRule for GatherForRelease {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !releases_within(&plan) {
            return Ok(plan);
        }
        // A plan that cannot be gathered is left as it was: `on_workers`
        // then finds its release below a network boundary and the
        // statement runs on the coordinator alone.
        Ok(gather(Arc::clone(&plan), config).unwrap_or(plan))
    }

    fn name(&self) -> &str {
        "gather_for_release"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

fn gather(plan: Arc<dyn ExecutionPlan>, config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
    let plan = plan
        .transform_up(|node| {
            if !calls(node.as_ref(), &is_release_function)
                || node.children().into_iter().any(releases_within)
            {
                return Ok(Transformed::no(node));
            }
            let children: Vec<Arc<dyn ExecutionPlan>> = node
                .children()
                .into_iter()
                .map(|c| -> Arc<dyn ExecutionPlan> {
                    if c.output_partitioning().partition_count() <= 1 {
                        return Arc::clone(c);
                    }
                    // Sorted partitions are merged in order (an ORDER BY
                    // above the release relies on it).
                    match c.output_ordering() {
                        Some(order) => {
                            Arc::new(SortPreservingMergeExec::new(order.clone(), Arc::clone(c)))
                        }
                        None => Arc::new(CoalescePartitionsExec::new(Arc::clone(c))),
                    }
                })
                .collect();
            replace_children_if_necessary(node, children).map(Transformed::yes)
        })?
        .data;
    // Partitions can each be in order without their union declaring it
    // (a UNION ALL of branches each with its own constant `step`): a
    // merge above relied on that, and the gathered partition needs a
    // sort of its own (of a few rows: released aggregates).
    let plan = plan
        .transform_up(|node| {
            // A merge of a single partition is the partition: removed,
            // so the release's stage can be the coordinator's own
            // (a merge starts a stage of its own on the cluster).
            if let Some(only) = single_input_merge(&node)? {
                return Ok(Transformed::yes(only));
            }
            // Above the release, the rows are few and in one partition:
            // cutting them into partitions again would start a stage of
            // its own on the cluster, which workers would run.
            if let Some(repartition) = node.downcast_ref::<RepartitionExec>()
                && repartition.input().output_partitioning().partition_count() == 1
                && releases_within(repartition.input())
                && !repartition.preserve_order()
            {
                return Ok(Transformed::yes(Arc::clone(repartition.input())));
            }
            let required = node.required_input_ordering();
            let mut sorted = false;
            let children = node
                .children()
                .into_iter()
                .zip(required)
                .map(|(child, required)| -> Result<Arc<dyn ExecutionPlan>> {
                    let Some(required) = required else {
                        return Ok(Arc::clone(child));
                    };
                    let required = required.into_single();
                    if child
                        .equivalence_properties()
                        .ordering_satisfy_requirement(required.iter().cloned())?
                    {
                        return Ok(Arc::clone(child));
                    }
                    sorted = true;
                    Ok(Arc::new(
                        SortExec::new(required.into(), Arc::clone(child))
                            .with_preserve_partitioning(true),
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            if !sorted {
                return Ok(Transformed::no(node));
            }
            replace_children_if_necessary(node, children).map(Transformed::yes)
        })?
        .data;
    SanityCheckPlan::new().optimize(plan, config)
}

/// What replaces a merge (without a limit) of a single partition: the
/// partition, sorted if the merge's order is not already its own.
fn single_input_merge(node: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if let Some(coalesce) = node.downcast_ref::<CoalescePartitionsExec>() {
        let input = coalesce.input();
        let single =
            coalesce.fetch().is_none() && input.output_partitioning().partition_count() == 1;
        return Ok(single.then(|| Arc::clone(input)));
    }
    let Some(merge) = node.downcast_ref::<SortPreservingMergeExec>() else {
        return Ok(None);
    };
    let input = merge.input();
    if merge.fetch().is_some() || input.output_partitioning().partition_count() != 1 {
        return Ok(None);
    }
    if input
        .equivalence_properties()
        .ordering_satisfy(merge.expr().clone())?
    {
        return Ok(Some(Arc::clone(input)));
    }
    Ok(Some(Arc::new(SortExec::new(
        merge.expr().clone(),
        Arc::clone(input),
    ))))
}

/// Whether a node of `plan` that runs on workers (below a network
/// boundary) calls a function holding state of the statement that only the
/// coordinator has.
pub fn on_workers(plan: &Arc<dyn ExecutionPlan>) -> bool {
    fn walk(node: &Arc<dyn ExecutionPlan>, remote: bool) -> bool {
        if remote && calls(node.as_ref(), &runs_only_where_planned) {
            return true;
        }
        let below = remote || node.is_network_boundary();
        node.children().into_iter().any(|c| walk(c, below))
    }
    walk(plan, false)
}
