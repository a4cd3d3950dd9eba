//! [`Unranged`]: a plan's partitions shown without the person ranges they
//! hold, for a cluster's stage boundaries.
//!
//! The person layout declares its partitions as ranges of `person_id`, and
//! a plan keeps that declaration up to a merge of its partitions (rows of
//! persons: `GROUP BY person_id`, a list of person-level rows). The
//! boundary datafusion-distributed puts below such a merge cannot take
//! range-partitioned stages (its issue 628: the ranges of several tasks are
//! not one range partitioning), and planning fails. [`unrange_merges`]
//! puts an [`Unranged`] below each merge of range-partitioned input: the
//! same rows, in the same order, in partitions of no declared kind, which
//! is all a merge needs.

use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, Statistics};
use datafusion::config::ConfigOptions;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{Partitioning, PhysicalExpr};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::CardinalityEffect;
use datafusion::physical_plan::filter_pushdown::{FilterDescription, FilterPushdownPhase};
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    PlanProperties, ReplaceChildrenOptions,
};

/// Puts an [`Unranged`] below every merge of partitions (`CoalescePartitionsExec`,
/// `SortPreservingMergeExec`) whose input is range-partitioned, and above
/// a plan that ends range-partitioned (its partitions are merged as they
/// are sent).
pub fn unrange_merges(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    let plan = plan
        .transform_up(|node| {
            if !(node.is::<CoalescePartitionsExec>() || node.is::<SortPreservingMergeExec>()) {
                return Ok(Transformed::no(node));
            }
            let [input] = node.children()[..] else {
                return Ok(Transformed::no(node));
            };
            if !matches!(input.output_partitioning(), Partitioning::Range(..)) {
                return Ok(Transformed::no(node));
            }
            let input: Arc<dyn ExecutionPlan> = Arc::new(Unranged::new(Arc::clone(input)));
            datafusion::physical_plan::execution_plan::replace_children_if_necessary(
                node,
                vec![input],
            )
            .map(Transformed::yes)
        })?
        .data;
    if matches!(plan.output_partitioning(), Partitioning::Range(..)) {
        return Ok(Arc::new(Unranged::new(plan)));
    }
    Ok(plan)
}

/// Passes its input through, declaring its partitions of no kind (the same
/// number) and keeping its orderings and equivalences.
#[derive(Debug)]
pub struct Unranged {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl Unranged {
    pub fn new(input: Arc<dyn ExecutionPlan>) -> Unranged {
        let shown = input.properties();
        let properties = PlanProperties::new(
            shown.equivalence_properties().clone(),
            Partitioning::UnknownPartitioning(shown.output_partitioning().partition_count()),
            shown.emission_type,
            shown.boundedness,
        );
        Unranged {
            input,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for Unranged {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Unranged")
    }
}

impl ExecutionPlan for Unranged {
    fn name(&self) -> &str {
        "Unranged"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match children.pop() {
            Some(input) if children.is_empty() => Ok(Arc::new(Unranged::new(input))),
            _ => datafusion::common::internal_err!("Unranged takes exactly one input"),
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        vec![ChildStats::At(partition)]
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        match input_stats.first() {
            Some(stats) => Ok(stats.clone()),
            None => Ok(Arc::new(Statistics::new_unknown(&self.schema()))),
        }
    }

    fn gather_filters_for_pushdown(
        &self,
        _phase: FilterPushdownPhase,
        parent_filters: Vec<Arc<dyn PhysicalExpr>>,
        _config: &ConfigOptions,
    ) -> Result<FilterDescription> {
        FilterDescription::from_children(parent_filters, &self.children())
    }

    fn supports_limit_pushdown(&self) -> bool {
        true
    }

    fn cardinality_effect(&self) -> CardinalityEffect {
        CardinalityEffect::Equal
    }
}
