//! Statements that fail before producing a row are run again when a second
//! run can succeed.
//!
//! - **Out of memory.** Hash joins keep their build side in memory; under a
//!   memory limit a large build side fails the query. The plan is then
//!   rebuilt with sort-merge joins (whose sorts spill to disk) and run
//!   again, so the analyst gets the answer later instead of an error.
//! - **A cluster's workers changed.** A statement running on a worker that
//!   stops fails. The workers are then probed at once
//!   ([`Membership::probe`]); when those answering have changed since the
//!   statement started, it is planned again, on the workers left, and run
//!   once more. Any other failure is reported as soon as the probe is done.
//!
//! Either retry happens once, and only before the first batch reaches the
//! client.

use std::sync::Arc;

use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::DataFrame;
use futures::{StreamExt, stream};

use crate::Membership;

/// True when `e` is (or wraps) the memory pool refusing a reservation.
pub fn out_of_memory(e: &DataFusionError) -> bool {
    matches!(e.find_root(), DataFusionError::ResourcesExhausted(_))
}

enum State {
    /// Nothing emitted yet: an error can still be retried.
    First(
        SendableRecordBatchStream,
        Box<(SessionState, LogicalPlan, OnCluster)>,
    ),
    /// Rows went out, or the retry is running: errors are final.
    Final(SendableRecordBatchStream),
    Done,
}

/// The cluster a statement runs on, and its membership when it started.
pub type OnCluster = Option<(Arc<Membership>, u64)>;

/// Wraps the stream of `plan`, retrying it once with spilling joins if it
/// runs out of memory before its first batch, and once as it is if it fails
/// before its first batch while the workers of `cluster` change.
pub fn with_retry(
    first: SendableRecordBatchStream,
    state: SessionState,
    plan: LogicalPlan,
    cluster: OnCluster,
) -> SendableRecordBatchStream {
    let schema = first.schema();
    let batches = stream::unfold(
        State::First(first, Box::new((state, plan, cluster))),
        |state| async move {
            match state {
                State::First(mut s, retry) => match s.next().await {
                    Some(Err(e)) if out_of_memory(&e) => {
                        drop(s);
                        log::info!(
                            "query out of memory before its first row; planning with spilling joins"
                        );
                        let (state, plan, _) = *retry;
                        match spilling(state, plan).await {
                            Ok(mut retry) => {
                                let next = retry.next().await?;
                                Some((next, State::Final(retry)))
                            }
                            Err(_) => Some((Err(e), State::Done)),
                        }
                    }
                    Some(Err(e)) => {
                        drop(s);
                        let (state, plan, cluster) = *retry;
                        let Some((membership, before)) = cluster else {
                            return Some((Err(e), State::Done));
                        };
                        if (membership.probe)().await == before {
                            return Some((Err(e), State::Done));
                        }
                        log::info!(
                            "the cluster's workers changed while a statement ran; running it again"
                        );
                        match DataFrame::new(state, plan).execute_stream().await {
                            Ok(mut again) => {
                                let next = again.next().await?;
                                Some((next, State::Final(again)))
                            }
                            Err(_) => Some((Err(e), State::Done)),
                        }
                    }
                    Some(Ok(b)) => Some((Ok(b), State::Final(s))),
                    None => None,
                },
                State::Final(mut s) => {
                    let next = s.next().await?;
                    let done = next.is_err();
                    Some((next, if done { State::Done } else { State::Final(s) }))
                }
                State::Done => None,
            }
        },
    );
    Box::pin(RecordBatchStreamAdapter::new(schema, batches))
}

async fn spilling(
    mut state: SessionState,
    plan: LogicalPlan,
) -> datafusion::error::Result<SendableRecordBatchStream> {
    state.config_mut().options_mut().optimizer.prefer_hash_join = false;
    DataFrame::new(state, plan).execute_stream().await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::physical_plan::common::collect;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::{out_of_memory, with_retry};
    use datafusion::error::DataFusionError;
    use datafusion::execution::SendableRecordBatchStream;
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

    /// `rows` rows of (k, v) in batches of 8192, k repeating every `keys`.
    fn table(rows: i64, keys: i64) -> Arc<MemTable> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
        ]));
        let batches = (0..rows)
            .step_by(8192)
            .map(|start| {
                let v: Vec<i64> = (start..(start + 8192).min(rows)).collect();
                let k: Vec<i64> = v.iter().map(|x| x % keys).collect();
                RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(Int64Array::from(k)), Arc::new(Int64Array::from(v))],
                )
                .unwrap()
            })
            .collect();
        Arc::new(MemTable::try_new(schema, vec![batches]).unwrap())
    }

    fn context(limit: usize) -> SessionContext {
        let mut config = SessionConfig::new().with_target_partitions(2);
        config.options_mut().execution.sort_spill_reservation_bytes = 256 * 1024;
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(crate::memory_pool(limit))
            .build_arc()
            .unwrap();
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        ctx.register_table("a", table(400_000, 400_000)).unwrap();
        ctx.register_table("b", table(400_000, 400_000)).unwrap();
        ctx
    }

    const JOIN: &str = "SELECT count(*), sum(a.v + b.v) FROM a JOIN b ON a.k = b.k";

    #[tokio::test]
    async fn a_join_too_big_for_memory_is_retried_with_spilling_joins() {
        // 400,000 matches; each pair sums 2 * v over v = 0..399,999.
        let answer = "| 400000   | 159999600000 ";
        let mut rescued = Vec::new();
        for mb in [4usize, 6, 8, 12, 16, 24, 32] {
            let ctx = context(mb << 20);
            let plain = ctx.sql(JOIN).await.unwrap().collect().await;
            let df = ctx.sql(JOIN).await.unwrap();
            let plan = df.logical_plan().clone();
            let stream = with_retry(df.execute_stream().await.unwrap(), ctx.state(), plan, None);
            match collect(stream).await {
                Ok(batches) => {
                    let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                        .unwrap()
                        .to_string();
                    assert!(text.contains(answer), "{mb} MB: {text}");
                    if let Err(e) = plain {
                        assert!(out_of_memory(&e), "{e}");
                        rescued.push(mb);
                    }
                }
                // Too little memory even to spill: the error says so.
                Err(e) => assert!(out_of_memory(&e), "{mb} MB: {e}"),
            }
        }
        // Some limit fails the hash join but not the retried plan.
        assert!(!rescued.is_empty());
    }

    /// A stream failing at once, as a statement whose worker stopped.
    fn failing(schema: datafusion::arrow::datatypes::SchemaRef) -> SendableRecordBatchStream {
        let error = DataFusionError::Execution("worker gone".into());
        Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::iter([Err(error)]),
        ))
    }

    #[tokio::test]
    async fn a_statement_failing_while_the_workers_change_runs_again() {
        let ctx = context(64 << 20);
        let changes = Arc::new(std::sync::atomic::AtomicU64::new(7));
        let seen = Arc::clone(&changes);
        let (seen, probed) = (seen.clone(), seen);
        let membership = Arc::new(crate::Membership {
            generation: Arc::new(move || seen.load(std::sync::atomic::Ordering::Relaxed)),
            probe: Arc::new(move || {
                let now = probed.load(std::sync::atomic::Ordering::Relaxed);
                Box::pin(async move { now })
            }),
        });
        let run = |cluster: super::OnCluster| {
            let ctx = ctx.clone();
            async move {
                let df = ctx.sql(JOIN).await.unwrap();
                let plan = df.logical_plan().clone();
                let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
                collect(with_retry(failing(schema), ctx.state(), plan, cluster)).await
            }
        };
        // The same workers: the error stands.
        let e = run(Some((Arc::clone(&membership), 7))).await.unwrap_err();
        assert!(e.to_string().contains("worker gone"), "{e}");
        // Not on a cluster: the error stands.
        assert!(run(None).await.is_err());
        // A worker stopped since the statement started: it runs again, and
        // gives the join's answer.
        changes.store(8, std::sync::atomic::Ordering::Relaxed);
        let batches = run(Some((Arc::clone(&membership), 7))).await.unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert!(text.contains("| 400000   | 159999600000 "), "{text}");
    }
}
