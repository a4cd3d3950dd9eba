//! Join output orderings that hold.
//!
//! DataFusion 55 declares the output of an inner hash join ordered by the
//! probe side's ordering followed by the build side's (and of a sort-merge
//! join by its left ordering followed by its right one). That holds only
//! when the streamed side never repeats its ordering key: a person's two
//! probe rows each emit that person's build rows again, so after
//! `events ⋈ starts ON person_id` rows ordered by `(person_id, day)` on the
//! build side come out as `day 1, day 2, day 1, day 2`. An aggregate
//! `GROUP BY person_id, day` over it then streams as if sorted and emits a
//! group twice; a sort the claim made look unneeded is dropped. Upstream:
//! apache/datafusion#25052.
//!
//! The person layout's files are sorted by person and date, so these claims
//! now meet analysts' SQL. [`SoundJoinOrderings`], run right after
//! DataFusion has chosen each join's sides, puts an [`Unordered`] node over
//! the side whose order the join does not keep: the build side of a hash
//! join shows no ordering, the buffered side of a sort-merge join only its
//! join keys (which the join needs, and which equal the streamed side's
//! keys row by row). The node keeps doing so whatever later rules do below
//! it, so what the join declares is the streamed side's ordering, which it
//! keeps.

use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{JoinType, Result, Statistics};
use datafusion::config::ConfigOptions;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{LexOrdering, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::CardinalityEffect;
use datafusion::physical_plan::filter_pushdown::{FilterDescription, FilterPushdownPhase};
use datafusion::physical_plan::joins::{
    CrossJoinExec, HashJoinExec, NestedLoopJoinExec, PartitionMode, SortMergeJoinExec,
};
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties,
    ReplaceChildrenOptions,
};

/// The physical optimizer rule hiding the orderings joins do not keep.
#[derive(Debug, Default)]
pub struct SoundJoinOrderings;

impl PhysicalOptimizerRule for SoundJoinOrderings {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if let Some(join) = node.downcast_ref::<HashJoinExec>() {
                if !matches!(join.join_type(), JoinType::Inner | JoinType::Right) {
                    return Ok(Transformed::no(node));
                }
                let Some(left) = hide(join.left(), &[])? else {
                    return Ok(Transformed::no(node));
                };
                let right = join.right().clone();
                return Ok(Transformed::yes(rebuilt(node, vec![left, right])?));
            }
            if let Some(join) = node.downcast_ref::<SortMergeJoinExec>() {
                let (left, right) = (join.left().clone(), join.right().clone());
                let children = match join.join_type() {
                    JoinType::Inner | JoinType::Left => {
                        let keys: Vec<_> = join.on().iter().map(|(_, r)| r.clone()).collect();
                        hide(&right, &keys)?.map(|right| vec![left, right])
                    }
                    JoinType::Right => {
                        let keys: Vec<_> = join.on().iter().map(|(l, _)| l.clone()).collect();
                        hide(&left, &keys)?.map(|left| vec![left, right])
                    }
                    _ => None,
                };
                return match children {
                    Some(children) => Ok(Transformed::yes(rebuilt(node, children)?)),
                    None => Ok(Transformed::no(node)),
                };
            }
            Ok(Transformed::no(node))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "sound_join_orderings"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Takes the [`Unordered`] nodes off the collected build sides of a
/// finished plan's joins, each join keeping the properties it was planned
/// with. Plans cut into stages for a cluster need this: the distributed
/// planner finds a join's collected build side (to broadcast it) directly
/// under the join. A collected build side merges its partitions, so shows
/// no ordering to hide. The other nodes stay: the distributed planner
/// computes every operator's properties again from its inputs, and a join
/// would claim again the orderings it does not keep. Run it last.
#[derive(Debug, Default)]
pub struct WithoutUnordered;

impl PhysicalOptimizerRule for WithoutUnordered {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let collects = match node.downcast_ref::<HashJoinExec>() {
                Some(join) => join.mode == PartitionMode::CollectLeft,
                None => node.is::<NestedLoopJoinExec>() || node.is::<CrossJoinExec>(),
            };
            let children = node.children();
            if !collects || !children.iter().any(|c| c.is::<Unordered>()) {
                return Ok(Transformed::no(node));
            }
            let inputs = children
                .into_iter()
                .map(|c| match c.downcast_ref::<Unordered>() {
                    Some(u) => Arc::clone(&u.input),
                    None => Arc::clone(c),
                })
                .collect();
            let kept = ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep);
            Ok(Transformed::yes(node.replace_children(inputs, kept)?))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "without_unordered"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `join` over new children, its properties computed from them.
fn rebuilt(
    join: Arc<dyn ExecutionPlan>,
    children: Vec<Arc<dyn ExecutionPlan>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    join.replace_children(
        children,
        ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
    )
}

/// `side` under an [`Unordered`] node keeping only the orderings' prefixes
/// made of `keys`; `None` when it is under one already.
fn hide(
    side: &Arc<dyn ExecutionPlan>,
    keys: &[Arc<dyn PhysicalExpr>],
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if side.downcast_ref::<Unordered>().is_some() {
        return Ok(None);
    }
    Ok(Some(Arc::new(Unordered::new(side.clone(), keys.to_vec()))))
}

/// Passes its input through, declaring of the input's orderings only their
/// prefixes made of the given expressions (none when there are none), as
/// the input stands now and after any rewrite below it.
#[derive(Debug)]
pub struct Unordered {
    input: Arc<dyn ExecutionPlan>,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    properties: Arc<PlanProperties>,
}

impl Unordered {
    /// `input`, declaring of its orderings only their prefixes made of `keys`.
    pub fn new(input: Arc<dyn ExecutionPlan>, keys: Vec<Arc<dyn PhysicalExpr>>) -> Unordered {
        let shown = input.properties();
        let kept = shown
            .equivalence_properties()
            .oeq_class()
            .iter()
            .filter_map(|ordering| {
                let prefix: Vec<_> = ordering
                    .iter()
                    .take_while(|s| keys.iter().any(|k| k.as_ref() == s.expr.as_ref()))
                    .cloned()
                    .collect();
                LexOrdering::new(prefix)
            });
        // Equal columns and constants hold in any order; only the
        // orderings go.
        let mut equivalences = shown.equivalence_properties().clone();
        equivalences.clear_orderings();
        equivalences.add_orderings(kept);
        let properties = PlanProperties::new(
            equivalences,
            shown.output_partitioning().clone(),
            shown.emission_type,
            shown.boundedness,
        );
        Unordered {
            input,
            keys,
            properties: Arc::new(properties),
        }
    }
}

impl Unordered {
    /// The expressions whose orderings are kept.
    pub fn keys(&self) -> &[Arc<dyn PhysicalExpr>] {
        &self.keys
    }
}

impl DisplayAs for Unordered {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Unordered: keys={}", self.keys.len())
    }
}

impl ExecutionPlan for Unordered {
    fn name(&self) -> &str {
        "Unordered"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
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
            Some(input) if children.is_empty() => {
                Ok(Arc::new(Unordered::new(input, self.keys.clone())))
            }
            _ => datafusion::common::internal_err!("Unordered takes exactly one input"),
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::prelude::{SessionConfig, SessionContext, col};

    /// A table of (k, v) rows in the given order, declared sorted by `by`.
    fn table(rows: &[(i64, i64)], by: &[&str]) -> Arc<MemTable> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .unwrap();
        let order = vec![by.iter().map(|c| col(*c).sort(true, false)).collect()];
        Arc::new(
            MemTable::try_new(schema, vec![vec![batch]])
                .unwrap()
                .with_sort_order(order),
        )
    }

    /// Each key of the probe side repeats; the build side is sorted by
    /// (k, v). Grouping by (k, build v) must give one row per pair: counted
    /// by hand, keys 1..=50 with ten probe rows each and three build values
    /// each, so 150 groups of 10 rows.
    #[tokio::test]
    async fn a_group_over_a_join_with_repeated_probe_keys_is_counted_once() {
        let probe: Vec<(i64, i64)> = (1..=50)
            .flat_map(|k| (0..10).map(move |i| (k, i)))
            .collect();
        let build: Vec<(i64, i64)> = (1..=50).flat_map(|k| [(k, 10), (k, 20), (k, 30)]).collect();
        // One partition (no repartition between the join and the
        // aggregate) and small batches (a group seen again in a later batch).
        let config = SessionConfig::new()
            .with_target_partitions(1)
            .with_batch_size(8);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_physical_optimizer_rules(super::super::physical_rules())
            .build();
        let ctx = SessionContext::new_with_state(state);
        ctx.register_table("p", table(&probe, &["k"])).unwrap();
        ctx.register_table("b", table(&build, &["k", "v"])).unwrap();
        for (join, sql) in [
            ("hash", "SET datafusion.optimizer.prefer_hash_join = true"),
            (
                "sort-merge",
                "SET datafusion.optimizer.prefer_hash_join = false",
            ),
        ] {
            ctx.sql(sql).await.unwrap().collect().await.unwrap();
            let groups = ctx
                .sql(
                    "SELECT count(*) AS groups, sum(n) AS rows, max(n) AS most FROM (
                       SELECT p.k, b.v, count(*) AS n FROM p JOIN b ON p.k = b.k GROUP BY p.k, b.v)",
                )
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            let text = datafusion::arrow::util::pretty::pretty_format_batches(&groups)
                .unwrap()
                .to_string();
            assert!(
                text.contains("| 150    | 1500 | 10   |"),
                "{join} join: {text}"
            );
        }
    }
}
