//! Person ranges cut into tasks.
//!
//! A scan of the person layout has one partition per person range, and
//! operators above it (joins within person ranges, aggregates by person)
//! take partition *i* of every such scan to hold the same persons. A stage
//! over these scans runs as several tasks, each scanning some of the ranges:
//! [`scale_up_ranges`] gives task *t* the ranges *t*, *t + T*, *t + 2T*, …
//! (for *T* tasks) in its partitions 0, 1, 2, …, the same for every scan of
//! the stage, so matching ranges stay in the same task and partition.
//! Partitions beyond the last range are empty. [`range_tasks`] asks for no
//! more tasks than there are ranges.

use std::sync::Arc;

use datafusion::catalog::memory::DataSourceExec;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig};
use datafusion::error::Result;
use datafusion::physical_expr::Partitioning;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_distributed::{
    DesiredTaskCountEvent, DesiredTaskCountEventResponse, DistributedLeafExec,
    ScaleUpLeafNodeEvent, ScaleUpLeafNodeEventResponse,
};

/// The file scan of person ranges in `plan`, if it is one.
fn range_scan(plan: &Arc<dyn ExecutionPlan>) -> Option<&FileScanConfig> {
    let scan = plan
        .downcast_ref::<DataSourceExec>()?
        .data_source()
        .downcast_ref::<FileScanConfig>()?;
    matches!(scan.output_partitioning, Some(Partitioning::Range(_))).then_some(scan)
}

/// Splits a scan of person ranges into tasks, whole ranges to a task, in
/// the same order for every scan (see the module's documentation).
pub fn scale_up_ranges(ev: ScaleUpLeafNodeEvent) -> Option<Result<ScaleUpLeafNodeEventResponse>> {
    let scan = range_scan(ev.plan)?;
    let tasks = ev.task_count.max(1);
    let ranges = scan.file_groups.len();
    let variants = (0..tasks).map(|task| {
        let mut part = scan.clone();
        part.file_groups = (0..ranges)
            .map(|slot| {
                scan.file_groups
                    .get(slot * tasks + task)
                    .cloned()
                    .unwrap_or_else(|| FileGroup::new(Vec::new()))
            })
            .collect();
        DataSourceExec::from_data_source(part) as Arc<dyn ExecutionPlan>
    });
    Some(
        DistributedLeafExec::try_new(Arc::clone(ev.plan), variants)
            .map(|leaf| ScaleUpLeafNodeEventResponse::new(Arc::new(leaf))),
    )
}

/// How many tasks a scan of person ranges asks for: one per `task_bytes`
/// per core of its files, and no more than its ranges.
pub fn range_tasks(
    task_bytes: usize,
) -> impl Fn(DesiredTaskCountEvent) -> Option<Result<DesiredTaskCountEventResponse>> + Send + Sync {
    move |ev| {
        let scan = range_scan(ev.plan)?;
        let bytes: u64 = scan
            .file_groups
            .iter()
            .flat_map(|g| g.iter())
            .map(|f| f.effective_size())
            .sum();
        let cores = ev.session_config.target_partitions().max(1);
        let wanted = (bytes as usize)
            .div_ceil(task_bytes.max(1))
            .div_ceil(cores)
            .max(1);
        let ranges = scan.file_groups.len().max(1);
        Some(Ok(DesiredTaskCountEventResponse::desired(
            wanted.min(ranges),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::listing::PartitionedFile;
    use datafusion::datasource::physical_plan::{FileScanConfigBuilder, ParquetSource};
    use datafusion::execution::object_store::ObjectStoreUrl;
    use datafusion::physical_expr::expressions::Column;
    use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr, RangePartitioning, SplitPoint};
    use datafusion::prelude::SessionConfig;

    /// A scan of `files` person ranges, range `i` in file `r{i}` (or none
    /// for the ranges in `empty`).
    fn ranges_scan(files: usize, empty: &[usize]) -> Arc<dyn ExecutionPlan> {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "person_id",
            DataType::Int64,
            false,
        )]));
        let ordering = LexOrdering::new(vec![PhysicalSortExpr::new_default(Arc::new(
            Column::new("person_id", 0),
        ))])
        .unwrap();
        let splits = (1..files)
            .map(|i| {
                SplitPoint::new(vec![datafusion::common::ScalarValue::Int64(Some(
                    i as i64 * 10,
                ))])
            })
            .collect();
        let range = RangePartitioning::try_new(ordering, splits).unwrap();
        let groups = (0..files)
            .map(|i| {
                let files = if empty.contains(&i) {
                    vec![]
                } else {
                    vec![PartitionedFile::new(format!("r{i}"), 100)]
                };
                FileGroup::new(files)
            })
            .collect();
        let config = FileScanConfigBuilder::new(
            ObjectStoreUrl::local_filesystem(),
            Arc::new(ParquetSource::new(schema)),
        )
        .with_file_groups(groups)
        .with_output_partitioning(Some(Partitioning::Range(range)))
        .build();
        DataSourceExec::from_data_source(config)
    }

    /// The files of each task's partitions.
    fn tasks_of(leaf: &Arc<dyn ExecutionPlan>) -> Vec<Vec<Vec<String>>> {
        let leaf = leaf.downcast_ref::<DistributedLeafExec>().unwrap();
        leaf.variants()
            .iter()
            .map(|v| {
                range_scan(v)
                    .unwrap()
                    .file_groups
                    .iter()
                    .map(|g| g.iter().map(|f| f.path().to_string()).collect())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn each_task_scans_whole_ranges_in_the_same_partitions_for_every_scan() {
        let config = SessionConfig::new();
        let scale = |plan: &Arc<dyn ExecutionPlan>, tasks| {
            let ev = ScaleUpLeafNodeEvent {
                plan,
                task_count: tasks,
                session_config: &config,
            };
            scale_up_ranges(ev).unwrap().unwrap().plan
        };
        let full = ranges_scan(5, &[]);
        assert_eq!(
            tasks_of(&scale(&full, 2)),
            [
                vec![vec!["r0"], vec!["r2"], vec!["r4"], vec![], vec![]],
                vec![vec!["r1"], vec!["r3"], vec![], vec![], vec![]],
            ]
        );
        // A scan with empty ranges keeps every other range where a full
        // scan has it: partition by partition, the same persons.
        let sparse = ranges_scan(5, &[0, 3]);
        let (full, sparse) = (tasks_of(&scale(&full, 3)), tasks_of(&scale(&sparse, 3)));
        for (f, s) in full.iter().flatten().zip(sparse.iter().flatten()) {
            assert!(s.is_empty() || s == f, "{full:?} against {sparse:?}");
        }
        assert_eq!(sparse.iter().flatten().filter(|g| !g.is_empty()).count(), 3);
    }

    #[test]
    fn a_scan_asks_for_no_more_tasks_than_ranges() {
        let config = SessionConfig::new().with_target_partitions(1);
        let plan = ranges_scan(3, &[]);
        let ask = |bytes| {
            let ev = DesiredTaskCountEvent {
                plan: &plan,
                session_config: &config,
            };
            range_tasks(bytes)(ev).unwrap().unwrap().task_count
        };
        assert!(matches!(
            ask(1),
            datafusion_distributed::TaskCountAnnotation::Desired(3)
        ));
        assert!(matches!(
            ask(150),
            datafusion_distributed::TaskCountAnnotation::Desired(2)
        ));
        assert!(matches!(
            ask(1 << 20),
            datafusion_distributed::TaskCountAnnotation::Desired(1)
        ));
    }
}
