//! Tsunagu's execution plan nodes as bytes, so plan fragments holding them
//! can run on another process (a cluster worker).
//!
//! DataFusion's own nodes are written by `datafusion-proto`; this codec adds
//! the four Tsunagu puts into plans:
//!
//! - [`Unordered`] and [`Unranged`] pass their input's rows through
//!   unchanged (they only change what the planner is told about orderings
//!   and partitions). An `Unordered` is written with its keys' column
//!   numbers, so the worker's operators see the same orderings; a worker
//!   runs an `Unranged` as a plain pass-through node.
//! - [`SharedExec`] is written with the number of its shared subplan. A
//!   worker's occurrences of one shared subplan in one fragment read one
//!   run ([`FragmentRuns`]); elsewhere each runs its input.
//! - [`RunningWindowExec`] and [`FirstRowExec`] are written as the window
//!   operator they stand in for (its input left out) and rebuilt from it.
//!   A running window that cannot be rebuilt runs as that window operator,
//!   which gives the same rows.
//! - [`PersonRangeJoinExec`] is written as the hash join it runs (its
//!   inputs left out) and the position of the person columns among its keys.
//! - DataFusion's `PartialSortExec` (a sort of input already sorted on a
//!   prefix of the keys, which `datafusion-proto` 55 does not write) is
//!   written as the full sort with the prefix's length.

use std::sync::Arc;

use datafusion::common::{Result, internal_err};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::sorts::partial_sort::PartialSortExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::{ChildrenPropertiesMode, ExecutionPlan, ReplaceChildrenOptions};
use datafusion_proto::physical_plan::{
    AsExecutionPlan, PhysicalExtensionCodec, PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf::PhysicalPlanNode;
use prost::Message;

use crate::first_rows::FirstRowExec;
use crate::join_orderings::Unordered;
use crate::person_ranges::PersonRangeJoinExec;
use crate::repeated_subplans::{FragmentRuns, SharedExec};
use crate::running_window::RunningWindowExec;
use crate::unranged::Unranged;

/// Encodes and decodes Tsunagu's plan nodes (see the module docs). Register
/// it wherever plans are written or read.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlanCodec;

/// The first byte of an encoded node: which node it is.
const PASS_THROUGH: u8 = 1;
const RUNNING_WINDOW: u8 = 2;
const FIRST_ROWS: u8 = 3;
const PARTIAL_SORT: u8 = 4;
const PERSON_RANGE_JOIN: u8 = 5;
const SHARED: u8 = 6;
const UNORDERED: u8 = 7;

fn recompute() -> ReplaceChildrenOptions {
    ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute)
}

impl PlanCodec {
    /// `window` (or another operator) with its inputs replaced by empty ones
    /// of the same schema, written with this codec.
    fn window_bytes(&self, window: &Arc<dyn ExecutionPlan>, buf: &mut Vec<u8>) -> Result<()> {
        let inputs = window
            .children()
            .into_iter()
            .map(|c| Arc::new(EmptyExec::new(c.schema())) as Arc<dyn ExecutionPlan>)
            .collect();
        let bare = Arc::clone(window).replace_children(inputs, recompute())?;
        let node = PhysicalPlanNode::try_from_physical_plan(bare, self)?;
        node.encode(buf)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
    }

    fn window_of(&self, bytes: &[u8], ctx: &TaskContext) -> Result<Arc<dyn ExecutionPlan>> {
        let node = PhysicalPlanNode::decode(bytes)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        node.try_into_physical_plan(ctx, self)
    }
}

impl PhysicalExtensionCodec for PlanCodec {
    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        if let Some(shared) = node.downcast_ref::<SharedExec>() {
            buf.push(SHARED);
            buf.extend_from_slice(&shared.id().to_le_bytes());
            return Ok(());
        }
        if let Some(unordered) = node.downcast_ref::<Unordered>() {
            // The keys by their column numbers; a key of another kind is
            // left out, which hides more orderings (never one that does not hold).
            buf.push(UNORDERED);
            for key in unordered.keys() {
                if let Some(column) = key.downcast_ref::<Column>() {
                    buf.extend_from_slice(&(column.index() as u64).to_le_bytes());
                }
            }
            return Ok(());
        }
        if node.is::<Unranged>() {
            buf.push(PASS_THROUGH);
            return Ok(());
        }
        if let Some(running) = node.downcast_ref::<RunningWindowExec>() {
            buf.push(RUNNING_WINDOW);
            return self.window_bytes(running.replaced(), buf);
        }
        if let Some(first) = node.downcast_ref::<FirstRowExec>() {
            buf.push(FIRST_ROWS);
            return self.window_bytes(first.replaced(), buf);
        }
        if let Some(sort) = node.downcast_ref::<PartialSortExec>() {
            buf.push(PARTIAL_SORT);
            buf.extend_from_slice(&(sort.common_prefix_length() as u64).to_le_bytes());
            let full = SortExec::new(sort.expr().clone(), Arc::clone(sort.input()))
                .with_preserve_partitioning(sort.preserve_partitioning())
                .with_fetch(sort.fetch());
            return self.window_bytes(&(Arc::new(full) as Arc<dyn ExecutionPlan>), buf);
        }
        if let Some(join) = node.downcast_ref::<PersonRangeJoinExec>() {
            let Some(hash) = join.join().downcast_ref::<HashJoinExec>() else {
                return internal_err!("a person-range join of {}", join.join().name());
            };
            let (left, right) = join.persons();
            let Some(at) = hash
                .on()
                .iter()
                .position(|(l, r)| l.as_ref() == left.as_ref() && r.as_ref() == right.as_ref())
            else {
                return internal_err!(
                    "a person-range join's person columns are not among its keys"
                );
            };
            buf.push(PERSON_RANGE_JOIN);
            buf.extend_from_slice(&(at as u64).to_le_bytes());
            return self.window_bytes(join.join(), buf);
        }
        internal_err!("no codec writes the plan node {}", node.name())
    }

    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        _converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if let (Some((&PERSON_RANGE_JOIN, rest)), [_, _]) = (buf.split_first(), inputs)
            && rest.len() >= 8
        {
            let (at, join) = rest.split_at(8);
            let at = u64::from_le_bytes(at.try_into().unwrap_or_default()) as usize;
            let join = self
                .window_of(join, ctx)?
                .replace_children(inputs.to_vec(), recompute())?;
            let Some(persons) = join
                .downcast_ref::<HashJoinExec>()
                .and_then(|j| j.on().get(at).cloned())
            else {
                return internal_err!("a person-range join written without its person columns");
            };
            return Ok(Arc::new(PersonRangeJoinExec::new(join, persons)?));
        }
        let [input] = inputs else {
            return internal_err!("a Tsunagu plan node has one input, not {}", inputs.len());
        };
        match buf.split_first() {
            // A pass-through node in their place keeps the fragment's shape
            // the coordinator's: EXPLAIN ANALYZE matches the workers'
            // metrics to the coordinator's plan node by node.
            Some((&PASS_THROUGH, _)) => Ok(Arc::new(Unranged::new(Arc::clone(input)))),
            // A worker's operators above it must see the orderings hidden
            // as the coordinator's did (an aggregate streams by them).
            Some((&UNORDERED, rest)) => {
                let schema = input.schema();
                let keys = rest
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()) as usize)
                    .filter(|&i| i < schema.fields().len())
                    .map(|i| Arc::new(Column::new(schema.field(i).name(), i)) as _)
                    .collect();
                Ok(Arc::new(Unordered::new(Arc::clone(input), keys)))
            }
            // The fragment's occurrences of a shared subplan read one run
            // when the session holds the fragment's runs (a worker's does).
            Some((&SHARED, rest)) if rest.len() >= 8 => {
                let id = u64::from_le_bytes(rest[..8].try_into().unwrap_or_default());
                let input = Arc::clone(input);
                match ctx.session_config().get_extension::<FragmentRuns>() {
                    Some(runs) => Ok(Arc::new(runs.occurrence(id, input)?)),
                    None => Ok(Arc::new(Unranged::new(input))),
                }
            }
            Some((&RUNNING_WINDOW, rest)) => {
                let window = self
                    .window_of(rest, ctx)?
                    .replace_children(vec![Arc::clone(input)], recompute())?;
                Ok(match RunningWindowExec::of(&window)? {
                    Some(running) => Arc::new(running),
                    None => window,
                })
            }
            Some((&FIRST_ROWS, rest)) => {
                let window = self.window_of(rest, ctx)?;
                Ok(Arc::new(FirstRowExec::over(Arc::clone(input), window)?))
            }
            Some((&PARTIAL_SORT, rest)) if rest.len() >= 8 => {
                let (prefix, sort) = rest.split_at(8);
                let prefix = u64::from_le_bytes(prefix.try_into().unwrap_or_default()) as usize;
                let full = self.window_of(sort, ctx)?;
                let Some(full) = full.downcast_ref::<SortExec>() else {
                    return internal_err!("a partial sort written as {}", full.name());
                };
                Ok(Arc::new(
                    PartialSortExec::new(full.expr().clone(), Arc::clone(input), prefix.max(1))
                        .with_preserve_partitioning(full.preserve_partitioning())
                        .with_fetch(full.fetch()),
                ))
            }
            _ => internal_err!("an encoded plan node of unknown kind"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::physical_plan::ExecutionPlanProperties;
    use datafusion::prelude::{SessionConfig, SessionContext};

    fn rules_context() -> SessionContext {
        let state = SessionStateBuilder::new()
            .with_config(SessionConfig::new().with_target_partitions(2))
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(crate::running_window::RunningWindows))
            .with_physical_optimizer_rule(Arc::new(crate::first_rows::FirstRows));
        SessionContext::new_with_state(state.build())
    }

    /// Plans `sql` on a context with Tsunagu's rules, writes the plan to
    /// bytes and reads it back, and runs both: the rows must agree, and
    /// `node` must have been in the plan written.
    async fn round_trip(sql: &str, node: &str) {
        let ctx = rules_context();
        ctx.sql(
            "CREATE TABLE t AS SELECT * FROM (VALUES \
             (1, DATE '2020-01-03', 5), (1, DATE '2020-01-01', 7), (2, DATE '2020-02-01', 1), \
             (2, DATE '2020-01-09', 4), (3, DATE '2021-01-01', 2)) v(person_id, d, x)",
        )
        .await
        .unwrap();
        let plan = ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let shown = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(false)
            .to_string();
        assert!(shown.contains(node), "{node} not in\n{shown}");
        let read = read_back(&plan);
        assert_eq!(orderings(&plan), orderings(&read));
        let rows = |p: Arc<dyn ExecutionPlan>| async {
            let batches = datafusion::physical_plan::collect(p, ctx.task_ctx())
                .await
                .unwrap();
            let mut lines: Vec<String> =
                datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                    .unwrap()
                    .to_string()
                    .lines()
                    .map(str::to_owned)
                    .collect();
            lines.sort();
            lines
        };
        let before = rows(plan).await;
        assert!(before.len() > 4, "{before:?}");
        assert_eq!(before, rows(read).await);
    }

    /// `plan` written with the codec and read back.
    fn read_back(plan: &Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
        let node_bytes = PhysicalPlanNode::try_from_physical_plan(plan.clone(), &PlanCodec)
            .unwrap()
            .encode_to_vec();
        PhysicalPlanNode::decode(node_bytes.as_slice())
            .unwrap()
            .try_into_physical_plan(&SessionContext::new().task_ctx(), &PlanCodec)
            .unwrap()
    }

    /// The ordering each node of `plan` declares, in pre-order.
    fn orderings(plan: &Arc<dyn ExecutionPlan>) -> Vec<Option<String>> {
        let mut out = vec![plan.output_ordering().map(|o| o.to_string())];
        for child in plan.children() {
            out.extend(orderings(child));
        }
        out
    }

    #[tokio::test]
    async fn hidden_orderings_stay_hidden_when_read_back() {
        let ctx = rules_context();
        ctx.sql("CREATE TABLE t AS SELECT * FROM (VALUES (2, 5), (1, 7), (1, 3)) v(person_id, d)")
            .await
            .unwrap();
        let sorted = ctx
            .sql("SELECT * FROM t ORDER BY person_id, d")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let person: Arc<dyn datafusion::physical_expr::PhysicalExpr> =
            Arc::new(Column::new("person_id", 0));
        for (keys, shown) in [(vec![], None), (vec![person], Some("person_id@0 ASC"))] {
            let plan: Arc<dyn ExecutionPlan> = Arc::new(Unordered::new(sorted.clone(), keys));
            let read = read_back(&plan);
            // What operators above it are told of the order is what the
            // coordinator planned them with: an aggregate streams by it.
            assert_eq!(orderings(&plan), orderings(&read));
            let declared = read.output_ordering().map(|o| o.to_string());
            match shown {
                None => assert_eq!(declared, None),
                Some(prefix) => assert!(declared.is_some_and(|d| d.starts_with(prefix))),
            }
            assert!(sorted.output_ordering().is_some());
        }
    }

    #[tokio::test]
    async fn running_windows_are_read_back_and_give_the_same_rows() {
        round_trip(
            "SELECT person_id, d, sum(x) OVER (PARTITION BY person_id ORDER BY d \
             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS s FROM t",
            "RunningWindowExec",
        )
        .await;
    }

    #[tokio::test]
    async fn first_rows_are_read_back_and_give_the_same_rows() {
        round_trip(
            "SELECT person_id, d FROM (SELECT person_id, d, row_number() OVER \
             (PARTITION BY person_id ORDER BY d) AS rn FROM t) WHERE rn = 1",
            "FirstRowExec",
        )
        .await;
    }
}
