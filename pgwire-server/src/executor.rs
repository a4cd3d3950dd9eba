//! Query execution off the network threads.
//!
//! Operators such as a large nested-loop join can compute for seconds
//! without yielding. Results are therefore produced on a runtime of their
//! own, so the server keeps accepting connections, cancel requests and
//! messages while queries run. That runtime has several threads per core:
//! a task that does not yield holds its thread, not the others, and the
//! operating system shares the cores between threads, so one user's heavy
//! query slows the small queries of others down instead of stopping them.

use std::sync::OnceLock;

use datafusion::arrow::array::RecordBatch;
use datafusion::error::Result;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{StreamExt, stream};
use tokio::runtime::Runtime;

/// Batches buffered between the query and the connection.
const BUFFER: usize = 2;

/// Query threads per core.
const THREADS_PER_CORE: usize = 4;

fn runtime() -> Option<&'static Runtime> {
    static RUNTIME: OnceLock<Option<Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads((cores * THREADS_PER_CORE).max(8))
                .thread_name("tsunagu-query")
                .thread_stack_size(tsunagu_engine::STACK_SIZE)
                .enable_all()
                .build()
                .map_err(|e| log::warn!("no query runtime, queries share the network threads: {e}"))
                .ok()
        })
        .as_ref()
}

/// Starts a query on the query runtime (operators spawn their tasks where
/// they are started) and polls it there; the returned stream yields its
/// batches. Dropping the returned stream stops the query.
pub async fn start<F, E>(start: F) -> std::result::Result<SendableRecordBatchStream, E>
where
    F: std::future::Future<Output = std::result::Result<SendableRecordBatchStream, E>>
        + Send
        + 'static,
    E: Send + 'static,
{
    let Some(rt) = runtime() else {
        return start.await;
    };
    let mut handle = AbortOnDrop(rt.spawn(async move { start.await.map(offload) }));
    match (&mut handle.0).await {
        Ok(started) => started,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Polls `input` on the query runtime; the returned stream yields its
/// batches. Dropping the returned stream stops the query.
fn offload(input: SendableRecordBatchStream) -> SendableRecordBatchStream {
    let Some(rt) = runtime() else {
        return input;
    };
    let schema = input.schema();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(BUFFER);
    let task = rt.spawn(async move {
        let mut input = input;
        while let Some(batch) = input.next().await {
            if tx.send(batch).await.is_err() {
                break;
            }
        }
    });
    let abort = AbortOnDrop(task);
    let batches = stream::unfold((rx, abort), |(mut rx, abort)| async move {
        rx.recv().await.map(|b| (b, (rx, abort)))
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, batches))
}

/// Stops the task when the waiting side goes away.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
