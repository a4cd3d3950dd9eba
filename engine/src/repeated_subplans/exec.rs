//! The execution of a shared subplan: run once, read by every occurrence.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::Result;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::utils::memory::get_record_batch_memory_size;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryLimit, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricsSet, SpillMetrics};
use datafusion::physical_plan::spill::SpillManager;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, ReplaceChildrenOptions, execute_stream,
};
use futures::{StreamExt, TryStreamExt, stream};

/// The share of a finite memory pool one shared result may hold before the
/// rest of it goes to disk, leaving room for the operators that read it.
const MEMORY_SHARE: usize = 4;

/// The state of one shared subplan in one query, common to its occurrences.
#[derive(Debug)]
pub struct SharedRun {
    id: u64,
    result: tokio::sync::OnceCell<Materialized>,
    metrics: ExecutionPlanMetricsSet,
}

impl SharedRun {
    pub(super) fn new(id: u64) -> SharedRun {
        SharedRun {
            id,
            result: tokio::sync::OnceCell::new(),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

/// A computed shared result: batches in memory, the rest in spill files.
struct Materialized {
    memory: Vec<RecordBatch>,
    spilled: Vec<Arc<dyn datafusion::execution::spill_file::SpillFile>>,
    spill: SpillManager,
    _reservation: MemoryReservation,
}

impl fmt::Debug for Materialized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Materialized")
            .field("memory_batches", &self.memory.len())
            .field("spill_files", &self.spilled.len())
            .finish()
    }
}

/// One occurrence of a shared subplan. The first occurrence to be read runs
/// its input to the end; every occurrence then reads the stored result.
#[derive(Debug)]
pub struct SharedExec {
    input: Arc<dyn ExecutionPlan>,
    run: Arc<SharedRun>,
    properties: Arc<PlanProperties>,
}

impl SharedExec {
    pub(super) fn new(input: Arc<dyn ExecutionPlan>, run: Arc<SharedRun>) -> SharedExec {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(input.schema()),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        SharedExec {
            input,
            run,
            properties: Arc::new(properties),
        }
    }

    /// Identifies the shared subplan this occurrence reads.
    pub fn id(&self) -> u64 {
        self.run.id
    }
}

impl DisplayAs for SharedExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SharedExec: id={}", self.run.id)
    }
}

impl ExecutionPlan for SharedExec {
    fn name(&self) -> &str {
        "SharedExec"
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
                Ok(Arc::new(SharedExec::new(input, self.run.clone())))
            }
            _ => datafusion::common::internal_err!("SharedExec takes exactly one input"),
        }
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
        let run = self.run.clone();
        let input = self.input.clone();
        let partitions = self.properties.partitioning.partition_count().max(1);
        let schema = self.schema();
        let out_schema = schema.clone();
        let batches = async move {
            let done = run
                .result
                .get_or_try_init(|| materialize(&run, input, context))
                .await?;
            let memory: Vec<Result<RecordBatch>> = done
                .memory
                .iter()
                .skip(partition)
                .step_by(partitions)
                .map(|b| Ok(b.clone()))
                .collect();
            let mut parts: Vec<SendableRecordBatchStream> = vec![Box::pin(
                RecordBatchStreamAdapter::new(schema.clone(), stream::iter(memory)),
            )];
            for file in done.spilled.iter().skip(partition).step_by(partitions) {
                parts.push(done.spill.read_spill_as_stream(file.clone(), None)?);
            }
            Ok::<_, datafusion::error::DataFusionError>(stream::iter(parts).flatten())
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            out_schema,
            stream::once(batches).try_flatten(),
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.run.metrics.clone_inner())
    }
}

/// Runs `input` to the end, keeping its batches in memory while the pool
/// (and this result's share of it) allows, and spilling the rest.
async fn materialize(
    run: &SharedRun,
    input: Arc<dyn ExecutionPlan>,
    context: Arc<TaskContext>,
) -> Result<Materialized> {
    let pool = context.memory_pool().clone();
    let cap = match pool.memory_limit() {
        MemoryLimit::Finite(limit) => limit / MEMORY_SHARE,
        _ => usize::MAX,
    };
    let reservation = MemoryConsumer::new(format!("SharedExec[{}]", run.id)).register(&pool);
    let spill = SpillManager::new(
        context.runtime_env(),
        SpillMetrics::new(&run.metrics, 0),
        input.schema(),
    );
    let files = input.output_partitioning().partition_count().max(1);
    let mut memory = Vec::new();
    let mut writers = Vec::new();
    let mut spilled_batches = 0usize;
    let mut batches = execute_stream(input, context)?;
    while let Some(batch) = batches.next().await {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        let size = get_record_batch_memory_size(&batch);
        if writers.is_empty()
            && reservation.size() + size <= cap
            && reservation.try_grow(size).is_ok()
        {
            memory.push(batch);
            continue;
        }
        if writers.is_empty() {
            for _ in 0..files {
                writers.push(spill.create_in_progress_file("shared subplan")?);
            }
        }
        writers[spilled_batches % files].append_batch(&batch)?;
        spilled_batches += 1;
    }
    let mut spilled = Vec::new();
    for mut w in writers {
        if let Some(file) = w.finish()? {
            spilled.push(file);
        }
    }
    Ok(Materialized {
        memory,
        spilled,
        spill,
        _reservation: reservation,
    })
}
