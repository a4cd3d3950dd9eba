//! The first row of each window partition, found by hashing instead of
//! sorting every row.
//!
//! Analysts find first events the way SQL written for any engine does:
//!
//! ```sql
//! SELECT * FROM (
//!   SELECT d.*, row_number() OVER (PARTITION BY person_id, drug_concept_id
//!                                  ORDER BY drug_exposure_start_date) AS rn
//!     FROM drug_exposure d) t
//! WHERE rn = 1
//! ```
//!
//! DataFusion sorts every row by person, concept and date to number them,
//! then keeps the first of each partition. [`FirstRows`] replaces the sort
//! and the numbering, under a filter keeping `rn = 1` (or `rn <= 1`,
//! `rn < 2`), by [`FirstRowExec`]: one pass keeping, per partition key, the
//! row that comes first in the window's order, and `rn` = 1 for each. Rows
//! tied in that order may be numbered in any order by `row_number()`, so
//! any of them is a correct first row. When an operator above relies on the
//! window's output order, the first rows alone are sorted in that order.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::config::ConfigOptions;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::split_conjunction;
use datafusion::physical_expr::{EquivalenceProperties, LexOrdering, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::distribution_requirements::InputDistributionRequirements;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::expressions::{BinaryExpr, Column, Literal};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::windows::BoundedWindowAggExec;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    PlanProperties, ReplaceChildrenOptions,
};
use futures::{StreamExt, stream};
use std::hash::BuildHasher;

use hashbrown::HashTable;

fn hasher() -> &'static hashbrown::DefaultHashBuilder {
    static H: std::sync::OnceLock<hashbrown::DefaultHashBuilder> = std::sync::OnceLock::new();
    H.get_or_init(hashbrown::DefaultHashBuilder::default)
}

use crate::running_window::{RunningWindowExec, is_row_number};

/// The physical optimizer rule planting [`FirstRowExec`].
#[derive(Debug, Default)]
pub struct FirstRows;

impl PhysicalOptimizerRule for FirstRows {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // The client reads the root's rows in order.
        rewrite(plan, true)
    }

    fn name(&self) -> &str {
        "first_rows"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Rewrites `plan` and its inputs; `ordered` when an operator above relies
/// on its output order.
fn rewrite(plan: Arc<dyn ExecutionPlan>, ordered: bool) -> Result<Arc<dyn ExecutionPlan>> {
    if let Some(first) = first_rows_below(&plan, ordered)? {
        return Ok(first);
    }
    let required = plan.required_input_ordering();
    let keeps = plan.maintains_input_order();
    let children: Vec<Arc<dyn ExecutionPlan>> = plan
        .children()
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            // A limit keeps the rows that come first.
            let needs = required.get(i).is_some_and(|r| r.is_some())
                || plan.fetch().is_some()
                || (ordered && keeps.get(i).copied().unwrap_or(false));
            rewrite(Arc::clone(c), needs)
        })
        .collect::<Result<_>>()?;
    let same = children
        .iter()
        .zip(plan.children())
        .all(|(a, b)| Arc::ptr_eq(a, b));
    if same {
        Ok(plan)
    } else {
        with_children(plan, children)
    }
}

/// `plan` over new inputs, its properties recomputed.
fn with_children(
    plan: Arc<dyn ExecutionPlan>,
    children: Vec<Arc<dyn ExecutionPlan>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.replace_children(
        children,
        ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
    )
}

/// `plan` with the window under it replaced, when `plan` is a filter
/// keeping the first row of each partition.
fn first_rows_below(
    plan: &Arc<dyn ExecutionPlan>,
    ordered: bool,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(filter) = plan.downcast_ref::<FilterExec>() else {
        return Ok(None);
    };
    // A filter with a limit keeps the rows that come first.
    let ordered = ordered || plan.fetch().is_some();
    for conjunct in split_conjunction(filter.predicate()) {
        let Some(column) = first_row_test(conjunct) else {
            continue;
        };
        let Some(input) = replaced(filter.input(), column, ordered)? else {
            continue;
        };
        let input = rewrite_inputs(input)?;
        return Ok(Some(with_children(Arc::clone(plan), vec![input])?));
    }
    Ok(None)
}

/// The inputs of a new first-row operator, themselves rewritten.
fn rewrite_inputs(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    let children: Vec<Arc<dyn ExecutionPlan>> = plan
        .children()
        .into_iter()
        .map(|c| rewrite(Arc::clone(c), false))
        .collect::<Result<_>>()?;
    with_children(plan, children)
}

/// The column a predicate tests for being 1 (`c = 1`, `1 = c`, `c <= 1`,
/// `c < 2`).
fn first_row_test(e: &Arc<dyn PhysicalExpr>) -> Option<usize> {
    let b = e.downcast_ref::<BinaryExpr>()?;
    let int = |e: &Arc<dyn PhysicalExpr>| -> Option<i128> {
        match e.downcast_ref::<Literal>()?.value() {
            ScalarValue::UInt64(Some(v)) => Some(*v as i128),
            ScalarValue::Int64(Some(v)) => Some(*v as i128),
            ScalarValue::Int32(Some(v)) => Some(*v as i128),
            ScalarValue::UInt32(Some(v)) => Some(*v as i128),
            _ => None,
        }
    };
    let column = |e: &Arc<dyn PhysicalExpr>| e.downcast_ref::<Column>().map(Column::index);
    match (b.op(), column(b.left()), int(b.right())) {
        (Operator::Eq, Some(c), Some(1))
        | (Operator::LtEq, Some(c), Some(1))
        | (Operator::Lt, Some(c), Some(2)) => return Some(c),
        _ => {}
    }
    match (b.op(), int(b.left()), column(b.right())) {
        (Operator::Eq, Some(1), Some(c))
        | (Operator::GtEq, Some(1), Some(c))
        | (Operator::Gt, Some(2), Some(c)) => Some(c),
        _ => None,
    }
}

/// `plan` (projections over a window) with the window numbering rows by
/// `row_number()` into output column `column` replaced by a first-row
/// operator.
fn replaced(
    plan: &Arc<dyn ExecutionPlan>,
    column: usize,
    ordered: bool,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if let Some(p) = plan.downcast_ref::<ProjectionExec>() {
        let Some(inner) = p
            .expr()
            .get(column)
            .and_then(|e| e.expr.downcast_ref::<Column>())
        else {
            return Ok(None);
        };
        let keeps = ordered;
        return match replaced(p.input(), inner.index(), keeps)? {
            Some(input) => Ok(Some(with_children(Arc::clone(plan), vec![input])?)),
            None => Ok(None),
        };
    }
    let window = match plan.downcast_ref::<RunningWindowExec>() {
        Some(running) => running.replaced(),
        None => plan,
    };
    let Some(w) = window.downcast_ref::<BoundedWindowAggExec>() else {
        return Ok(None);
    };
    let [expr] = w.window_expr() else {
        return Ok(None);
    };
    let input_schema = w.input().schema();
    if column != input_schema.fields().len()
        || expr.partition_by().is_empty()
        || expr.order_by().is_empty()
        || !is_row_number(expr, &input_schema)?
    {
        return Ok(None);
    }
    // The window's input: sorted partitions, perhaps merged into one.
    let (sort, merged) = match w.input().downcast_ref::<SortPreservingMergeExec>() {
        Some(m) if m.fetch().is_none() => (m.input().downcast_ref::<SortExec>(), true),
        Some(_) => (None, true),
        None => (w.input().downcast_ref::<SortExec>(), false),
    };
    let Some(sort) = sort.filter(|s| s.fetch().is_none()) else {
        return Ok(None);
    };
    let input = if merged {
        Arc::new(CoalescePartitionsExec::new(Arc::clone(sort.input()))) as Arc<dyn ExecutionPlan>
    } else {
        Arc::clone(sort.input())
    };
    let first = Arc::new(FirstRowExec::over(input, Arc::clone(plan))?) as Arc<dyn ExecutionPlan>;
    if !ordered {
        return Ok(Some(first));
    }
    // Operators above read the window's order: sort the first rows into it.
    let sorted = SortExec::new(sort.expr().clone(), first)
        .with_preserve_partitioning(!merged && sort.preserve_partitioning());
    Ok(Some(Arc::new(sorted)))
}

/// The first row of each partition key in an order, with its row number 1;
/// in place of a sort and a `row_number()` window (see the module docs).
#[derive(Debug)]
pub struct FirstRowExec {
    input: Arc<dyn ExecutionPlan>,
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    order_by: Vec<datafusion::physical_expr::PhysicalSortExpr>,
    /// The window replaced, whose schema and input distribution this keeps.
    window: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl FirstRowExec {
    /// The first rows of `input` in each partition of `window`, a
    /// `row_number()` window (or its running form) over `input`'s rows.
    pub(crate) fn over(
        input: Arc<dyn ExecutionPlan>,
        window: Arc<dyn ExecutionPlan>,
    ) -> Result<FirstRowExec> {
        let numbering = match window.downcast_ref::<RunningWindowExec>() {
            Some(running) => running.replaced(),
            None => &window,
        };
        let Some(w) = numbering.downcast_ref::<BoundedWindowAggExec>() else {
            return internal_err!("first rows of a window, not of {}", numbering.name());
        };
        let [expr] = w.window_expr() else {
            return internal_err!("first rows of a window with one function");
        };
        let partition_by = expr.partition_by().to_vec();
        let order_by = expr.order_by().to_vec();
        FirstRowExec::new(input, partition_by, order_by, window)
    }

    /// The window operator this one stands in for.
    pub(crate) fn replaced(&self) -> &Arc<dyn ExecutionPlan> {
        &self.window
    }

    fn new(
        input: Arc<dyn ExecutionPlan>,
        partition_by: Vec<Arc<dyn PhysicalExpr>>,
        order_by: Vec<datafusion::physical_expr::PhysicalSortExpr>,
        window: Arc<dyn ExecutionPlan>,
    ) -> Result<FirstRowExec> {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(window.schema()),
            input.output_partitioning().clone(),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Ok(FirstRowExec {
            input,
            partition_by,
            order_by,
            window,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

impl DisplayAs for FirstRowExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let keys: Vec<String> = self.partition_by.iter().map(|e| e.to_string()).collect();
        let order = LexOrdering::new(self.order_by.clone())
            .map(|o| o.to_string())
            .unwrap_or_default();
        write!(
            f,
            "FirstRowExec: partition_by=[{}], order_by=[{order}]",
            keys.join(", ")
        )
    }
}

impl ExecutionPlan for FirstRowExec {
    fn name(&self) -> &str {
        "FirstRowExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        self.window.input_distribution_requirements()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![true]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        for e in self
            .partition_by
            .iter()
            .chain(self.order_by.iter().map(|s| &s.expr))
        {
            if f(e)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match children.pop() {
            Some(input) if children.is_empty() => Ok(Arc::new(FirstRowExec::new(
                input,
                self.partition_by.clone(),
                self.order_by.clone(),
                Arc::clone(&self.window),
            )?)),
            _ => internal_err!("FirstRowExec takes exactly one input"),
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        with_children(self, children)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, Arc::clone(&context))?;
        let schema = self.schema();
        let input_schema = self.input.schema();
        let keys = RowConverter::new(
            self.partition_by
                .iter()
                .map(|e| Ok(SortField::new(e.data_type(&input_schema)?)))
                .collect::<Result<_>>()?,
        )?;
        let order = RowConverter::new(
            self.order_by
                .iter()
                .map(|s| {
                    Ok(SortField::new_with_options(
                        s.expr.data_type(&input_schema)?,
                        s.options,
                    ))
                })
                .collect::<Result<_>>()?,
        )?;
        let reservation = MemoryConsumer::new(format!("FirstRowExec[{partition}]"))
            .register(context.memory_pool());
        let state = Firsts {
            reservation,
            partition_by: self.partition_by.clone(),
            order_by: self.order_by.iter().map(|s| Arc::clone(&s.expr)).collect(),
            keys,
            order,
            groups: HashTable::new(),
            key_at: Vec::new(),
            key_bytes: Vec::new(),
            order_at: Vec::new(),
            order_bytes: Vec::new(),
            row_at: Vec::new(),
            batches: Vec::new(),
            held_rows: 0,
            held_bytes: 0,
        };
        let metrics = BaselineMetrics::new(&self.metrics, partition);
        let batch_size = context.session_config().batch_size();
        let out_schema = Arc::clone(&schema);
        let out = stream::once(async move {
            let mut state = state;
            let mut input = input;
            while let Some(batch) = input.next().await {
                let batch = batch?;
                let _timer = metrics.elapsed_compute().timer();
                state.push(batch)?;
            }
            let _timer = metrics.elapsed_compute().timer();
            let out = state.finish(&out_schema, batch_size)?;
            metrics.record_output(out.iter().map(RecordBatch::num_rows).sum());
            Ok::<_, datafusion::error::DataFusionError>(stream::iter(out.into_iter().map(Ok)))
        })
        .map(|r| match r {
            Ok(s) => s.boxed(),
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        })
        .flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, out)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// Input rows held before first rows are compacted into one batch.
#[cfg(not(test))]
const MIN_HELD: usize = 1 << 20;
#[cfg(test)]
const MIN_HELD: usize = 500;

/// The rows first so far of each partition key.
struct Firsts {
    /// What is held, counted against the memory pool.
    reservation: MemoryReservation,
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    order_by: Vec<Arc<dyn PhysicalExpr>>,
    keys: RowConverter,
    order: RowConverter,
    /// Group numbers, found by the hash of their partition key.
    groups: HashTable<usize>,
    /// Per group: where its partition key lies in `key_bytes`.
    key_at: Vec<(usize, usize)>,
    key_bytes: Vec<u8>,
    /// Per group: where its first row's order key lies in `order_bytes`
    /// (replaced in place when of the same length, else appended).
    order_at: Vec<(usize, usize)>,
    order_bytes: Vec<u8>,
    /// Per group: its first row so far (batch, row).
    row_at: Vec<(usize, usize)>,
    /// The input batches rows of `row_at` point into.
    batches: Vec<RecordBatch>,
    /// Rows in `batches`.
    held_rows: usize,
    /// Memory of `batches`.
    held_bytes: usize,
}

impl Firsts {
    fn evaluate(exprs: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        exprs
            .iter()
            .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
            .collect()
    }

    fn push(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let keys: Rows = self
            .keys
            .convert_columns(&Self::evaluate(&self.partition_by, &batch)?)?;
        let order: Rows = self
            .order
            .convert_columns(&Self::evaluate(&self.order_by, &batch)?)?;
        let b = self.batches.len();
        let mut used = false;
        let hasher = hasher();
        for row in 0..batch.num_rows() {
            let k = keys.row(row);
            let k = k.as_ref();
            let o = order.row(row);
            let o = o.as_ref();
            let hash = hasher.hash_one(k);
            let (key_at, key_bytes) = (&self.key_at, &self.key_bytes);
            let found = self.groups.find(hash, |&g| {
                let (start, len) = key_at[g];
                &key_bytes[start..start + len] == k
            });
            match found {
                Some(&g) => {
                    let (start, len) = self.order_at[g];
                    if o < &self.order_bytes[start..start + len] {
                        if o.len() == len {
                            self.order_bytes[start..start + len].copy_from_slice(o);
                        } else {
                            self.order_at[g] = (self.order_bytes.len(), o.len());
                            self.order_bytes.extend_from_slice(o);
                        }
                        self.row_at[g] = (b, row);
                        used = true;
                    }
                }
                None => {
                    let g = self.row_at.len();
                    self.key_at.push((self.key_bytes.len(), k.len()));
                    self.key_bytes.extend_from_slice(k);
                    self.order_at.push((self.order_bytes.len(), o.len()));
                    self.order_bytes.extend_from_slice(o);
                    self.row_at.push((b, row));
                    let (key_at, key_bytes) = (&self.key_at, &self.key_bytes);
                    self.groups.insert_unique(hash, g, |&g| {
                        let (start, len) = key_at[g];
                        hasher.hash_one(&key_bytes[start..start + len])
                    });
                    used = true;
                }
            }
        }
        if used {
            self.held_rows += batch.num_rows();
            self.held_bytes += batch.get_array_memory_size();
            self.batches.push(batch);
        }
        // Held rows are bounded by a multiple of the groups: compact.
        if self.held_rows > (4 * self.row_at.len()).max(MIN_HELD) {
            self.compact()?;
        }
        self.account()
    }

    /// Grows or shrinks the reservation to what is held; an error when the
    /// pool cannot hold it.
    fn account(&mut self) -> Result<()> {
        let words = std::mem::size_of::<(usize, usize)>();
        let size = self.held_bytes
            + self.key_bytes.capacity()
            + self.order_bytes.capacity()
            + (self.key_at.capacity() + self.order_at.capacity() + self.row_at.capacity()) * words
            + self.groups.capacity() * std::mem::size_of::<usize>();
        self.reservation.try_resize(size)
    }

    /// The current first rows, in one batch.
    fn gathered(&self) -> Result<Option<RecordBatch>> {
        if self.row_at.is_empty() {
            return Ok(None);
        }
        let refs: Vec<&RecordBatch> = self.batches.iter().collect();
        Ok(Some(interleave_record_batch(&refs, &self.row_at)?))
    }

    /// Keeps only the rows that are first so far.
    fn compact(&mut self) -> Result<()> {
        let Some(batch) = self.gathered()? else {
            return Ok(());
        };
        for (g, at) in self.row_at.iter_mut().enumerate() {
            *at = (0, g);
        }
        // Order keys replaced by ones of another length left gaps.
        let mut order_bytes = Vec::with_capacity(self.order_at.len());
        for at in self.order_at.iter_mut() {
            let (start, len) = *at;
            *at = (order_bytes.len(), len);
            order_bytes.extend_from_slice(&self.order_bytes[start..start + len]);
        }
        self.order_bytes = order_bytes;
        self.held_rows = batch.num_rows();
        self.held_bytes = batch.get_array_memory_size();
        self.batches = vec![batch];
        Ok(())
    }

    /// The first rows with their row number 1, in batches.
    fn finish(self, schema: &SchemaRef, batch_size: usize) -> Result<Vec<RecordBatch>> {
        let Some(rows) = self.gathered()? else {
            return Ok(Vec::new());
        };
        let mut columns = rows.columns().to_vec();
        columns.push(Arc::new(UInt64Array::from(vec![1u64; rows.num_rows()])));
        let all = RecordBatch::try_new(Arc::clone(schema), columns)?;
        let size = batch_size.max(1);
        Ok((0..all.num_rows())
            .step_by(size)
            .map(|start| all.slice(start, size.min(all.num_rows() - start)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Date32Array, Int32Array, Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::physical_plan::{collect, displayable};
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::FirstRows;
    use crate::running_window::RunningWindows;

    /// 20,000 rows of 300 persons and 4 concepts (some null), dates with
    /// ties and nulls, in batches of 97 rows over two partitions.
    fn table() -> MemTable {
        let schema = Arc::new(Schema::new(vec![
            Field::new("p", DataType::Int64, false),
            Field::new("c", DataType::Int32, true),
            Field::new("s", DataType::Date32, true),
            Field::new("id", DataType::Int64, false),
        ]));
        let mut seed: u64 = 11;
        let mut next = |m: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % m
        };
        let mut batches = Vec::new();
        let mut id = 0i64;
        while id < 20_000 {
            let n = 97.min(20_000 - id as usize);
            let (mut p, mut c, mut s, mut ids) = (vec![], vec![], vec![], vec![]);
            for _ in 0..n {
                p.push(next(300) as i64);
                c.push((next(9) > 0).then(|| next(4) as i32));
                s.push((next(12) > 0).then(|| 18000 + next(50) as i32));
                ids.push(id);
                id += 1;
            }
            batches.push(
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(Int64Array::from(p)),
                        Arc::new(Int32Array::from(c)),
                        Arc::new(Date32Array::from(s)),
                        Arc::new(Int64Array::from(ids)),
                    ],
                )
                .unwrap(),
            );
        }
        let half = batches.len() / 2;
        let (a, b) = batches.split_at(half);
        MemTable::try_new(schema, vec![a.to_vec(), b.to_vec()]).unwrap()
    }

    fn context(first: bool, partitions: usize) -> SessionContext {
        let config = SessionConfig::new()
            .with_target_partitions(partitions)
            .with_batch_size(64);
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(RunningWindows));
        if first {
            state = state.with_physical_optimizer_rule(Arc::new(FirstRows));
        }
        let ctx = SessionContext::new_with_state(state.build());
        ctx.register_table("t", Arc::new(table())).unwrap();
        ctx
    }

    /// The rows in output order, and whether the first-row operator ran.
    async fn run(ctx: &SessionContext, sql: &str) -> (String, bool) {
        let plan = ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let shown = displayable(plan.as_ref()).indent(false).to_string();
        let batches = collect(plan, ctx.task_ctx()).await.unwrap();
        (
            pretty_format_batches(&batches).unwrap().to_string(),
            shown.contains("FirstRowExec"),
        )
    }

    /// Each answer is DataFusion's (a sort and `row_number()`); ordered
    /// queries in the same order. Selected columns do not depend on which
    /// of tied rows is first (the order keys make rows unique, or only
    /// keys and order values are shown).
    #[tokio::test]
    async fn first_rows_are_the_rows_numbered_one() {
        let ranked = |order: &str| {
            format!(
                "(SELECT p, c, s, id, row_number() OVER (PARTITION BY p, c ORDER BY {order}) AS rn FROM t) r"
            )
        };
        let cases = [
            (
                format!(
                    "SELECT p, c, s FROM {} WHERE rn = 1 ORDER BY p, c",
                    ranked("s")
                ),
                true,
            ),
            (
                format!(
                    "SELECT p, c, s, id, rn FROM {} WHERE rn = 1 ORDER BY p, c",
                    ranked("s DESC NULLS FIRST, id")
                ),
                true,
            ),
            (
                format!(
                    "SELECT p, c, s, id FROM {} WHERE 1 = rn ORDER BY id",
                    ranked("s, id DESC")
                ),
                true,
            ),
            (
                format!(
                    "SELECT p, c, s, id FROM {} WHERE rn <= 1 AND s > DATE '2019-04-01' ORDER BY id",
                    ranked("s, id")
                ),
                true,
            ),
            (
                format!(
                    "SELECT count(*), sum(id), min(s) FROM {} WHERE rn < 2",
                    ranked("s NULLS FIRST, id")
                ),
                true,
            ),
            (
                format!(
                    "SELECT extract(year FROM s) AS y, count(*) FROM {} WHERE rn = 1 GROUP BY 1 ORDER BY 1",
                    ranked("s, id")
                ),
                true,
            ),
            // Order of the window's output relied on above, without ORDER BY.
            (
                format!(
                    "SELECT p, c, s, id, sum(id) OVER (PARTITION BY p, c ORDER BY s, id) AS run FROM {} WHERE rn = 1",
                    ranked("s, id")
                ),
                true,
            ),
            // The order relied on through a projection dropping the key, and
            // by a limit below an aggregate.
            (format!("SELECT s, id FROM {} WHERE rn = 1 ORDER BY p, c", ranked("s, id")), true),
            (format!("SELECT count(*), sum(id) FROM (SELECT * FROM {} WHERE rn = 1 ORDER BY p, c LIMIT 7) x", ranked("s, id")), true),
            // No order: any row is first; left to DataFusion.
            (
                "SELECT count(*) FROM (SELECT p, row_number() OVER (PARTITION BY p) AS rn FROM t) r WHERE rn = 1".into(),
                false,
            ),
            // Not the first row: DataFusion's plan.
            (
                format!(
                    "SELECT p, c, s, id FROM {} WHERE rn = 2 ORDER BY id",
                    ranked("s, id")
                ),
                false,
            ),
            (
                format!(
                    "SELECT p, c, s, id FROM {} WHERE rn >= 1 ORDER BY id",
                    ranked("s, id")
                ),
                false,
            ),
        ];
        for partitions in [1, 2] {
            let (with, without) = (context(true, partitions), context(false, partitions));
            for (sql, applies) in cases.clone() {
                let (expected, used) = run(&without, &sql).await;
                assert!(!used);
                let (rows, used) = run(&with, &sql).await;
                assert_eq!(used, applies, "{sql}");
                // Without ORDER BY, partitions may be read in any order.
                let lines = |t: &str| {
                    let mut l: Vec<String> = t.lines().map(str::to_owned).collect();
                    if !sql.contains(" ORDER BY p, c")
                        && !sql.contains(" ORDER BY id")
                        && !sql.contains(" ORDER BY 1")
                    {
                        l.sort();
                    }
                    l
                };
                assert!(lines(&rows) == lines(&expected), "{sql}");
                assert!(expected.lines().count() > 4, "{sql}: {expected}");
            }
        }
    }
}
