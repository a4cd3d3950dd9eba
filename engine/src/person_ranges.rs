//! Work kept within person ranges: hash repartitions that only re-split
//! rows the person layout has already split by person are removed.
//!
//! The layout declares each table's partitions as the same ranges of
//! `person_id`. DataFusion keeps that declaration for a `GROUP BY
//! person_id` or a window `PARTITION BY person_id`, but a partitioned join
//! must be partitioned on *all* its keys (`ON v.visit_occurrence_id =
//! c.visit_occurrence_id AND v.person_id = c.person_id`), so both sides are
//! hash-repartitioned on the pair, and everything above (the aggregate by
//! person, the next join on `person_id`) is repartitioned again. In one
//! process that costs a copy of every row; on a cluster each repartition is
//! a shuffle over the network.
//!
//! [`KeepPersonRanges`] removes a hash repartition when what it feeds is
//! already satisfied by the range partitioning below it:
//!
//! - a partitioned hash join, when both sides are split by the same person
//!   ranges and one of the join's key pairs is those two person columns:
//!   rows that can match have the same person, so they are in partitions of
//!   the same number on both sides;
//! - any other operator asking for rows partitioned on some keys
//!   (aggregates, windows), when the person column is one of them (not for
//!   grouping sets, whose groups span persons).
//!
//! A hash join collecting a merge of person ranges as its build side, its
//! probe side split by the same ranges and its keys including both person
//! columns, is run within the ranges too (`collected_within_ranges`).
//!
//! DataFusion asks a partitioned join for partitions hashed on exactly its
//! keys, which the ranges are not, although they place matching rows
//! together; such a join is therefore wrapped in a [`PersonRangeJoinExec`],
//! which asks its inputs for matching ranges of the person columns only.

use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, Statistics, internal_err};
use datafusion::config::ConfigOptions;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{
    Distribution, OrderingRequirements, Partitioning, PhysicalExpr, PhysicalExprRef,
};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::distribution_requirements::{
    ChildSatisfactionOptions, InputDistributionRequirements,
};
use datafusion::physical_plan::execution_plan::CardinalityEffect;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    PlanProperties, ReplaceChildrenOptions,
};

/// The physical optimizer rule keeping person-level work within ranges.
#[derive(Debug, Default)]
pub struct KeepPersonRanges;

impl PhysicalOptimizerRule for KeepPersonRanges {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let cores = config.execution.target_partitions;
        plan.transform_up(|node| keep_ranges(node, cores))
            .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "keep_person_ranges"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Whether `plan`'s partitions are ranges, at least `cores` of them.
fn ranged(plan: &Arc<dyn ExecutionPlan>, cores: usize) -> bool {
    match plan.output_partitioning() {
        Partitioning::Range(range) => range.partition_count() >= cores,
        _ => false,
    }
}

/// A hash join collecting its build side into one partition, as a join
/// within person ranges, when the build side is a merge of the same person
/// ranges as the probe side and the join's keys include the two person
/// columns: each range's build rows are joined with that range's probe
/// rows, no partition waits for the whole build side, and the join's output
/// keeps the ranges (on a cluster, the build side is not gathered and sent
/// to every task). Not for a join asked for a few rows or one treating
/// NULLs as `NOT IN` does, which needs every probe row.
fn collected_within_ranges(
    node: &Arc<dyn ExecutionPlan>,
    cores: usize,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(join) = node.downcast_ref::<HashJoinExec>() else {
        return Ok(None);
    };
    if join.mode != PartitionMode::CollectLeft || join.null_aware || join.fetch().is_some() {
        return Ok(None);
    }
    let Some(merge) = join.left.downcast_ref::<CoalescePartitionsExec>() else {
        return Ok(None);
    };
    let (build, probe) = (merge.input(), &join.right);
    if merge.fetch().is_some() || !ranged(build, cores) || !ranged(probe, cores) {
        return Ok(None);
    }
    let Some(persons) = same_persons(join, build, probe) else {
        return Ok(None);
    };
    let within = join
        .builder()
        .with_partition_mode(PartitionMode::Partitioned)
        .with_new_children(vec![Arc::clone(build), Arc::clone(probe)])?
        .recompute_properties()
        .reset_state()
        .build_exec()?;
    // What the operators above were planned on stays true.
    if let Some(order) = node.output_ordering()
        && !within
            .equivalence_properties()
            .ordering_satisfy(order.clone())?
    {
        return Ok(None);
    }
    Ok(Some(Arc::new(PersonRangeJoinExec::new(within, persons)?)))
}

/// `node` with the hash repartitions below it removed, when the ranges
/// beneath them serve it as well (see the module's documentation). Ranges
/// fewer than `cores` are repartitioned as before, for parallelism.
fn keep_ranges(
    node: Arc<dyn ExecutionPlan>,
    cores: usize,
) -> Result<Transformed<Arc<dyn ExecutionPlan>>> {
    if let Some(within) = collected_within_ranges(&node, cores)? {
        return Ok(Transformed::yes(within));
    }
    let children = node.children();
    let ranged = |plan: &Arc<dyn ExecutionPlan>| ranged(plan, cores);
    let mut removed = Vec::with_capacity(children.len());
    let mut candidate: Vec<Arc<dyn ExecutionPlan>> = Vec::with_capacity(children.len());
    for child in &children {
        match child.downcast_ref::<RepartitionExec>() {
            Some(r)
                if matches!(r.partitioning(), Partitioning::Hash(..))
                    && r.fetch().is_none()
                    && ranged(r.input()) =>
            {
                candidate.push(Arc::clone(r.input()));
                removed.push(true);
            }
            _ => {
                candidate.push(Arc::clone(child));
                removed.push(false);
            }
        }
    }
    if !removed.contains(&true) {
        return Ok(Transformed::no(node));
    }
    if let Some(join) = node.downcast_ref::<HashJoinExec>() {
        let [left, right] = &candidate[..] else {
            return Ok(Transformed::no(node));
        };
        let Some(persons) = same_persons(join, left, right) else {
            return Ok(Transformed::no(node));
        };
        if join.mode != PartitionMode::Partitioned || !orderings_kept(&node, &candidate)? {
            return Ok(Transformed::no(node));
        }
        let join = Arc::clone(&node).replace_children(candidate, recompute())?;
        return Ok(Transformed::yes(Arc::new(PersonRangeJoinExec::new(
            join, persons,
        )?)));
    }
    if !served_within_ranges(&node, &candidate, &removed)? || !orderings_kept(&node, &candidate)? {
        return Ok(Transformed::no(node));
    }
    node.replace_children(candidate, recompute())
        .map(Transformed::yes)
}

fn recompute() -> ReplaceChildrenOptions {
    ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute)
}

/// The pair of the join's keys that are the columns `left` and `right` are
/// split by, when both are split by the same ranges of one column.
fn same_persons(
    join: &HashJoinExec,
    left: &Arc<dyn ExecutionPlan>,
    right: &Arc<dyn ExecutionPlan>,
) -> Option<(PhysicalExprRef, PhysicalExprRef)> {
    let (Partitioning::Range(l), Partitioning::Range(r)) =
        (left.output_partitioning(), right.output_partitioning())
    else {
        return None;
    };
    let ([l_key], [r_key]) = (&l.ordering()[..], &r.ordering()[..]) else {
        return None;
    };
    if l.split_points() != r.split_points() || l_key.options != r_key.options {
        return None;
    }
    let (l_eq, r_eq) = (
        left.equivalence_properties().eq_group(),
        right.equivalence_properties().eq_group(),
    );
    let (l_key, r_key) = (
        l_eq.normalize_expr(Arc::clone(&l_key.expr)),
        r_eq.normalize_expr(Arc::clone(&r_key.expr)),
    );
    join.on()
        .iter()
        .find(|(a, b)| {
            l_eq.normalize_expr(Arc::clone(a)).as_ref() == l_key.as_ref()
                && r_eq.normalize_expr(Arc::clone(b)).as_ref() == r_key.as_ref()
        })
        .cloned()
}

/// Whether every child of `node` in `children` satisfies what `node` asks
/// of it, a partitioning on keys being satisfied by ranges of one of them,
/// and `node` asks for such a partitioning of each child whose repartition
/// is `removed` (a repartition under an operator asking nothing, such as a
/// sort below a window, serves an operator further up). Operators asking
/// several children for matching partitions are left as they are (only
/// hash joins are known to be served, above).
#[expect(
    deprecated,
    reason = "operators may still ask for HashPartitioned, KeyPartitioned's former name"
)]
fn served_within_ranges(
    node: &Arc<dyn ExecutionPlan>,
    children: &[Arc<dyn ExecutionPlan>],
    removed: &[bool],
) -> Result<bool> {
    let required = node.input_distribution_requirements();
    if children.len() > 1 {
        let shown: Vec<&dyn ExecutionPlan> = children.iter().map(|c| c.as_ref()).collect();
        if !required
            .unsatisfied_co_partitioned_children(node.name(), &shown)?
            .is_empty()
        {
            return Ok(false);
        }
    }
    for (i, child) in children.iter().enumerate() {
        match required.child_distribution(i) {
            Some(Distribution::HashPartitioned(keys) | Distribution::KeyPartitioned(keys))
                if keys.iter().any(names_grouping_id) =>
            {
                return Ok(false);
            }
            Some(Distribution::HashPartitioned(_) | Distribution::KeyPartitioned(_)) => {}
            _ if removed.get(i) == Some(&true) => return Ok(false),
            _ => {}
        }
        let satisfied = required
            .child_satisfaction(
                i,
                child.as_ref(),
                ChildSatisfactionOptions::new().with_allow_subset(true),
            )?
            .is_satisfied();
        if !satisfied {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether `expr` is the column grouping sets number their sets with.
fn names_grouping_id(expr: &Arc<dyn PhysicalExpr>) -> bool {
    expr.downcast_ref::<Column>()
        .is_some_and(|c| c.name() == datafusion::logical_expr::Aggregate::INTERNAL_GROUPING_ID)
}

/// Whether `children` still give `node` the orderings it requires.
fn orderings_kept(
    node: &Arc<dyn ExecutionPlan>,
    children: &[Arc<dyn ExecutionPlan>],
) -> Result<bool> {
    for (required, child) in node.required_input_ordering().into_iter().zip(children) {
        if let Some(required) = required
            && !child
                .equivalence_properties()
                .ordering_satisfy_requirement(required.into_single())?
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A partitioned [`HashJoinExec`] whose inputs are split by the same person
/// ranges, one of its key pairs being the two person columns: partition
/// *i* of one side can only match partition *i* of the other. It runs the
/// join as it is, and asks its inputs only for matching ranges of the person
/// columns (the join itself asks for partitions hashed on all its keys).
#[derive(Debug)]
pub struct PersonRangeJoinExec {
    join: Arc<dyn ExecutionPlan>,
    persons: (PhysicalExprRef, PhysicalExprRef),
}

impl PersonRangeJoinExec {
    /// Wraps `join`, a [`HashJoinExec`], joining on the person columns
    /// `persons` (left, right) among others.
    pub fn new(
        join: Arc<dyn ExecutionPlan>,
        persons: (PhysicalExprRef, PhysicalExprRef),
    ) -> Result<PersonRangeJoinExec> {
        if !join.is::<HashJoinExec>() {
            return internal_err!("a person-range join wraps a hash join, not {}", join.name());
        }
        Ok(PersonRangeJoinExec { join, persons })
    }

    /// The hash join run.
    pub fn join(&self) -> &Arc<dyn ExecutionPlan> {
        &self.join
    }

    /// The person columns of the left and right inputs.
    pub fn persons(&self) -> &(PhysicalExprRef, PhysicalExprRef) {
        &self.persons
    }
}

impl DisplayAs for PersonRangeJoinExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match self.join.downcast_ref::<HashJoinExec>() {
            Some(join) => join.fmt_as(t, f)?,
            None => write!(f, "HashJoinExec")?,
        }
        write!(f, ", within person ranges")
    }
}

impl ExecutionPlan for PersonRangeJoinExec {
    fn name(&self) -> &str {
        "PersonRangeJoinExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.join.properties()
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        let (left, right) = &self.persons;
        InputDistributionRequirements::co_partitioned(vec![
            Distribution::KeyPartitioned(vec![Arc::clone(left)]),
            Distribution::KeyPartitioned(vec![Arc::clone(right)]),
        ])
    }

    fn required_input_ordering(&self) -> Vec<Option<OrderingRequirements>> {
        self.join.required_input_ordering()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        self.join.maintains_input_order()
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        self.join.benefits_from_input_partitioning()
    }

    fn dynamic_expressions_produced(&self) -> Vec<Arc<dyn PhysicalExpr>> {
        self.join.dynamic_expressions_produced()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.join.children()
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.join.apply_expressions(f)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let join = Arc::clone(&self.join).replace_children(children, options)?;
        Ok(Arc::new(PersonRangeJoinExec::new(
            join,
            self.persons.clone(),
        )?))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, recompute())
    }

    fn reset_state(self: Arc<Self>) -> Result<Arc<dyn ExecutionPlan>> {
        let join = Arc::clone(&self.join).reset_state()?;
        Ok(Arc::new(PersonRangeJoinExec::new(
            join,
            self.persons.clone(),
        )?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.join.execute(partition, context)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        self.join.metrics()
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        self.join.child_stats_requests(partition)
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        self.join.statistics_from_inputs(input_stats, args)
    }

    fn cardinality_effect(&self) -> CardinalityEffect {
        self.join.cardinality_effect()
    }
}
