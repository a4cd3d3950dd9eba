//! The running window operator: one pass over sorted batches.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::{concat_batches, partition};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{OrderingRequirements, PhysicalExpr};
use datafusion::physical_plan::distribution_requirements::InputDistributionRequirements;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::windows::BoundedWindowAggExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, InputOrderMode, PlanProperties,
    ReplaceChildrenOptions,
};
use futures::{StreamExt, stream};

use super::functions::{Carried, Function, Starts};

/// Window functions computed in one pass over input sorted by the window's
/// partition and order keys, in place of a `BoundedWindowAggExec` (whose
/// properties, requirements and output it keeps).
#[derive(Debug)]
pub struct RunningWindowExec {
    /// The operator replaced.
    window: Arc<dyn ExecutionPlan>,
    input: Arc<dyn ExecutionPlan>,
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    order_by: Vec<Arc<dyn PhysicalExpr>>,
    functions: Arc<Vec<Function>>,
    names: Vec<String>,
    metrics: ExecutionPlanMetricsSet,
}

impl RunningWindowExec {
    /// The running form of a window operator, when its input arrives sorted
    /// and every function of it is a running one.
    pub fn of(window: &Arc<dyn ExecutionPlan>) -> Result<Option<RunningWindowExec>> {
        let Some(w) = window.downcast_ref::<BoundedWindowAggExec>() else {
            return Ok(None);
        };
        if w.input_order_mode != InputOrderMode::Sorted || w.window_expr().is_empty() {
            return Ok(None);
        }
        let first = &w.window_expr()[0];
        let same_window = w.window_expr().iter().all(|e| {
            e.partition_by().len() == first.partition_by().len()
                && e.partition_by()
                    .iter()
                    .zip(first.partition_by())
                    .all(|(a, b)| a.eq(b))
                && e.order_by() == first.order_by()
        });
        if !same_window {
            return Ok(None);
        }
        let input_schema = w.input().schema();
        let mut functions = Vec::new();
        for e in w.window_expr() {
            match Function::of(e, &input_schema)? {
                Some(f) => functions.push(f),
                None => return Ok(None),
            }
        }
        Ok(Some(RunningWindowExec {
            window: Arc::clone(window),
            input: Arc::clone(w.input()),
            partition_by: first.partition_by().to_vec(),
            order_by: first
                .order_by()
                .iter()
                .map(|s| Arc::clone(&s.expr))
                .collect(),
            functions: Arc::new(functions),
            names: w
                .window_expr()
                .iter()
                .map(|e| e.name().to_owned())
                .collect(),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }
}

impl RunningWindowExec {
    /// The window operator this one stands in for.
    pub fn replaced(&self) -> &Arc<dyn ExecutionPlan> {
        &self.window
    }
}

impl DisplayAs for RunningWindowExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "RunningWindowExec: wdw=[{}]", self.names.join(", "))
    }
}

impl ExecutionPlan for RunningWindowExec {
    fn name(&self) -> &str {
        "RunningWindowExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.window.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        self.window.input_distribution_requirements()
    }

    fn required_input_ordering(&self) -> Vec<Option<OrderingRequirements>> {
        self.window.required_input_ordering()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        self.window.benefits_from_input_partitioning()
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.window.apply_expressions(f)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let window = Arc::clone(&self.window).replace_children(children, options)?;
        Ok(match RunningWindowExec::of(&window)? {
            Some(running) => Arc::new(running),
            None => window,
        })
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(
                datafusion::physical_plan::ChildrenPropertiesMode::Recompute,
            ),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let schema = self.schema();
        let state = Running {
            schema: Arc::clone(&schema),
            partition_by: self.partition_by.clone(),
            order_by: self.order_by.clone(),
            carried: self.functions.iter().map(Function::start).collect(),
            functions: Arc::clone(&self.functions),
            holds_peers: self.functions.iter().any(Function::needs_peers),
            last: None,
            pending: Vec::new(),
            pending_keys: Vec::new(),
            metrics: BaselineMetrics::new(&self.metrics, partition),
        };
        let out = stream::unfold((input, Some(state)), |(mut input, state)| async move {
            let mut state = state?;
            loop {
                match input.next().await {
                    Some(Ok(batch)) => match state.push(batch) {
                        Ok(Some(out)) => return Some((Ok(out), (input, Some(state)))),
                        Ok(None) => continue,
                        Err(e) => return Some((Err(e), (input, None))),
                    },
                    Some(Err(e)) => return Some((Err(e), (input, None))),
                    None => {
                        return match state.finish() {
                            Ok(Some(out)) => Some((Ok(out), (input, None))),
                            Ok(None) => None,
                            Err(e) => Some((Err(e), (input, None))),
                        };
                    }
                }
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, out)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// The state of one output partition.
struct Running {
    schema: SchemaRef,
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    order_by: Vec<Arc<dyn PhysicalExpr>>,
    functions: Arc<Vec<Function>>,
    carried: Vec<Carried>,
    /// Whether a chunk must end with a whole peer group.
    holds_peers: bool,
    /// The partition and order keys of the last row computed.
    last: Option<(Vec<ScalarValue>, Vec<ScalarValue>)>,
    /// Rows held back: the last peer group seen, possibly unfinished.
    pending: Vec<RecordBatch>,
    pending_keys: Vec<ScalarValue>,
    metrics: BaselineMetrics,
}

fn evaluate_all(exprs: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
    exprs
        .iter()
        .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
        .collect()
}

fn row_of(arrays: &[ArrayRef], i: usize) -> Result<Vec<ScalarValue>> {
    arrays
        .iter()
        .map(|a| ScalarValue::try_from_array(a, i))
        .collect()
}

/// The ranges of consecutive equal rows (one range when there are no keys).
fn ranges(arrays: &[ArrayRef], n: usize) -> Result<Vec<std::ops::Range<usize>>> {
    if arrays.is_empty() {
        return Ok(vec![0..n]);
    }
    Ok(partition(arrays)?.ranges())
}

impl Running {
    /// Takes a batch; returns the rows now computed, if any.
    fn push(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(None);
        }
        if !self.holds_peers {
            return self.compute(batch).map(Some);
        }
        let _timer = self.metrics.elapsed_compute().timer();
        let mut keys = evaluate_all(&self.partition_by, &batch)?;
        keys.extend(evaluate_all(&self.order_by, &batch)?);
        let cut = ranges(&keys, n)?.last().map_or(0, |r| r.start);
        let tail_keys = row_of(&keys, n - 1)?;
        drop(_timer);
        if cut == 0 {
            // The batch is one peer group: it continues the held one or
            // closes it.
            if !self.pending.is_empty() && row_of(&keys, 0)? == self.pending_keys {
                self.pending.push(batch);
                return Ok(None);
            }
            let done = self.take_pending()?;
            self.pending = vec![batch];
            self.pending_keys = tail_keys;
            return match done {
                Some(chunk) => self.compute(chunk).map(Some),
                None => Ok(None),
            };
        }
        let mut parts = std::mem::take(&mut self.pending);
        parts.push(batch.slice(0, cut));
        self.pending = vec![batch.slice(cut, n - cut)];
        self.pending_keys = tail_keys;
        let chunk = concat_batches(&batch.schema(), &parts)?;
        self.compute(chunk).map(Some)
    }

    /// The rows held back, at the end of the input.
    fn finish(&mut self) -> Result<Option<RecordBatch>> {
        match self.take_pending()? {
            Some(chunk) => self.compute(chunk).map(Some),
            None => Ok(None),
        }
    }

    fn take_pending(&mut self) -> Result<Option<RecordBatch>> {
        let parts = std::mem::take(&mut self.pending);
        match parts.first() {
            None => Ok(None),
            Some(first) if parts.len() == 1 => Ok(Some(first.clone())),
            Some(first) => Ok(Some(concat_batches(&first.schema(), &parts)?)),
        }
    }

    /// The window columns of a chunk whose last peer group is complete.
    fn compute(&mut self, batch: RecordBatch) -> Result<RecordBatch> {
        let _timer = self.metrics.elapsed_compute().timer();
        let n = batch.num_rows();
        let part_keys = evaluate_all(&self.partition_by, &batch)?;
        let order_keys = evaluate_all(&self.order_by, &batch)?;
        let mut partition_start = vec![false; n];
        for r in ranges(&part_keys, n)? {
            partition_start[r.start] = true;
        }
        let mut all_keys = part_keys.clone();
        all_keys.extend(order_keys.iter().cloned());
        let mut peer_start = vec![false; n];
        for r in ranges(&all_keys, n)? {
            peer_start[r.start] = true;
        }
        let first = (row_of(&part_keys, 0)?, row_of(&order_keys, 0)?);
        match &self.last {
            Some((p, o)) if *p == first.0 => {
                partition_start[0] = false;
                peer_start[0] = *o != first.1;
            }
            _ => {
                partition_start[0] = true;
                peer_start[0] = true;
            }
        }
        self.last = Some((row_of(&part_keys, n - 1)?, row_of(&order_keys, n - 1)?));
        let starts = Starts {
            partition: partition_start,
            peers: peer_start,
        };
        let mut columns = batch.columns().to_vec();
        for (f, carried) in self.functions.iter().zip(self.carried.iter_mut()) {
            columns.push(f.evaluate(&batch, &starts, carried)?);
        }
        if columns.len() != self.schema.fields().len() {
            return internal_err!("running window: output columns do not match the schema");
        }
        let out = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        self.metrics.record_output(out.num_rows());
        Ok(out)
    }
}
