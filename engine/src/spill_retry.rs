//! Queries that run out of memory before producing a row are planned again
//! with operators that spill.
//!
//! Hash joins keep their build side in memory; under a memory limit a large
//! build side fails the query. When that happens before the first batch
//! reaches the client, the plan is rebuilt with sort-merge joins (whose
//! sorts spill to disk) and run again, so the analyst gets the answer later
//! instead of an error.

use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::{DataFrame, SessionContext};
use futures::{StreamExt, stream};

/// True when `e` is (or wraps) the memory pool refusing a reservation.
pub fn out_of_memory(e: &DataFusionError) -> bool {
    matches!(e.find_root(), DataFusionError::ResourcesExhausted(_))
}

enum State {
    /// Nothing emitted yet: a memory error can still be retried.
    First(SendableRecordBatchStream, SessionContext, LogicalPlan),
    /// Rows went out, or the retry is running: errors are final.
    Final(SendableRecordBatchStream),
    Done,
}

/// Wraps the stream of `plan`, retrying it once with spilling joins if it
/// runs out of memory before its first batch.
pub fn with_retry(
    first: SendableRecordBatchStream,
    ctx: SessionContext,
    plan: LogicalPlan,
) -> SendableRecordBatchStream {
    let schema = first.schema();
    let batches = stream::unfold(State::First(first, ctx, plan), |state| async move {
        match state {
            State::First(mut s, ctx, plan) => match s.next().await {
                Some(Err(e)) if out_of_memory(&e) => {
                    drop(s);
                    log::info!(
                        "query out of memory before its first row; planning with spilling joins"
                    );
                    match spilling(&ctx, plan).await {
                        Ok(mut retry) => {
                            let next = retry.next().await?;
                            Some((next, State::Final(retry)))
                        }
                        Err(_) => Some((Err(e), State::Done)),
                    }
                }
                Some(Ok(b)) => Some((Ok(b), State::Final(s))),
                Some(Err(e)) => Some((Err(e), State::Done)),
                None => None,
            },
            State::Final(mut s) => {
                let next = s.next().await?;
                let done = next.is_err();
                Some((next, if done { State::Done } else { State::Final(s) }))
            }
            State::Done => None,
        }
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, batches))
}

async fn spilling(
    ctx: &SessionContext,
    plan: LogicalPlan,
) -> datafusion::error::Result<SendableRecordBatchStream> {
    let mut state = ctx.state();
    state.config_mut().options_mut().optimizer.prefer_hash_join = false;
    DataFrame::new(state, plan).execute_stream().await
}
