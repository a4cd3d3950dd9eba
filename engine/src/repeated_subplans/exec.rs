//! The execution of a shared subplan: run once, read by every occurrence.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::utils::memory::get_record_batch_memory_size;
use datafusion::common::{DataFusionError, Result, Statistics, internal_err};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryLimit, MemoryReservation};
use datafusion::execution::spill_file::SpillFile;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{LexOrdering, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricsSet, SpillMetrics};
use datafusion::physical_plan::spill::SpillManager;
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, ReplaceChildrenOptions,
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

/// A computed shared result, kept per partition of the input that computed
/// it: batches in memory, then (past the memory share) one spill file.
struct Materialized {
    /// The input that was run: its occurrence reads the result whatever it holds.
    source: Arc<dyn ExecutionPlan>,
    partitions: Vec<Part>,
    partitioning: Partitioning,
    ordering: Option<LexOrdering>,
    spill: SpillManager,
    _reservation: Arc<MemoryReservation>,
}

/// One partition of a shared result, in the order its input produced it.
#[derive(Default)]
struct Part {
    memory: Vec<RecordBatch>,
    spilled: Option<Arc<dyn SpillFile>>,
}

impl fmt::Debug for Materialized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Materialized")
            .field("partitions", &self.partitions.len())
            .field(
                "spill_files",
                &self
                    .partitions
                    .iter()
                    .filter(|p| p.spilled.is_some())
                    .count(),
            )
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
        // Each partition of the result holds the rows of the same input
        // partition, in their order: the input's partitioning and orderings
        // hold for the result.
        let input_properties = input.properties();
        let properties = PlanProperties::new(
            input_properties.equivalence_properties().clone(),
            input_properties.output_partitioning().clone(),
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

    /// The subplan this occurrence runs when it is the first read.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
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
        let properties = self.properties.clone();
        let schema = self.schema();
        let out_schema = schema.clone();
        let batches = async move {
            let done = run
                .result
                .get_or_try_init(|| materialize(&run, input.clone(), context.clone()))
                .await?;
            // Occurrences are planned alike; should another one's input have
            // come out partitioned or ordered differently, this one runs its
            // own input (never run before: only one input is ever materialized).
            if !Arc::ptr_eq(&done.source, &input)
                && (!same_partitioning(&done.partitioning, properties.output_partitioning())
                    || done.ordering.as_ref() != properties.output_ordering())
            {
                return input.execute(partition, context);
            }
            let Some(part) = done.partitions.get(partition) else {
                return internal_err!("SharedExec has no partition {partition}");
            };
            let memory: Vec<Result<RecordBatch>> =
                part.memory.iter().map(|b| Ok(b.clone())).collect();
            let in_memory: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(
                schema.clone(),
                stream::iter(memory),
            ));
            let Some(file) = &part.spilled else {
                return Ok(in_memory);
            };
            let on_disk = done.spill.read_spill_as_stream(file.clone(), None)?;
            Ok(Box::pin(RecordBatchStreamAdapter::new(
                schema,
                in_memory.chain(on_disk),
            )))
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            out_schema,
            stream::once(batches).try_flatten(),
        )))
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

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.run.metrics.clone_inner())
    }
}

/// Runs every partition of `input` to the end, each in its own task,
/// keeping batches in memory while the pool (and this result's share of it)
/// allows, and spilling the rest of a partition to its own file.
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
    let reservation =
        Arc::new(MemoryConsumer::new(format!("SharedExec[{}]", run.id)).register(&pool));
    let spill = SpillManager::new(
        context.runtime_env(),
        SpillMetrics::new(&run.metrics, 0),
        input.schema(),
    );
    let mut tasks = Vec::new();
    for p in 0..input.output_partitioning().partition_count() {
        let batches = input.execute(p, context.clone())?;
        let reservation = reservation.clone();
        let spill = spill.clone();
        tasks.push(SpawnedTask::spawn(async move {
            keep_partition(batches, &reservation, cap, &spill).await
        }));
    }
    let mut partitions = Vec::with_capacity(tasks.len());
    for task in tasks {
        let part = task
            .join_unwind()
            .await
            .map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))??;
        partitions.push(part);
    }
    Ok(Materialized {
        source: input.clone(),
        partitions,
        partitioning: input.output_partitioning().clone(),
        ordering: input.output_ordering().cloned(),
        spill,
        _reservation: reservation,
    })
}

/// Whether two partitionings place every row in the same partition.
/// (`Partitioning`'s own equality never holds between unknown ones.)
fn same_partitioning(a: &Partitioning, b: &Partitioning) -> bool {
    match (a, b) {
        (Partitioning::UnknownPartitioning(n), Partitioning::UnknownPartitioning(m)) => n == m,
        _ => a == b,
    }
}

/// Keeps one partition's batches: in memory while the reservation stays
/// under `cap`, then the rest, in order, in one spill file.
async fn keep_partition(
    mut batches: SendableRecordBatchStream,
    reservation: &MemoryReservation,
    cap: usize,
    spill: &SpillManager,
) -> Result<Part> {
    let mut part = Part::default();
    let mut writer = None;
    while let Some(batch) = batches.next().await {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        let size = get_record_batch_memory_size(&batch);
        if writer.is_none()
            && reservation.size() + size <= cap
            && reservation.try_grow(size).is_ok()
        {
            part.memory.push(batch);
            continue;
        }
        let file = match &mut writer {
            Some(file) => file,
            None => writer.insert(spill.create_in_progress_file("shared subplan")?),
        };
        file.append_batch(&batch)?;
    }
    if let Some(mut file) = writer {
        part.spilled = file.finish()?;
    }
    Ok(part)
}
