//! Answers of repeatable statements, kept for the snapshot they were
//! computed on.
//!
//! An engine serves one snapshot of a store: its tables never change while
//! it runs (a delivery opens a new engine). A statement that reads only
//! those tables and calls only immutable functions therefore gets the same
//! answer every time it runs with the same plan, parameters, role, user and
//! settings; analysts' answers too, since the release is deterministic
//! (sticky noise, fixed rounding). Dashboards and BI tools send the same
//! small statements over and over; the second and later runs are answered
//! from here without planning or reading anything. Every run is still
//! audited as the statement it is.
//!
//! Only small answers are kept (a mebibyte each, 64 MiB in all, oldest
//! dropped first).

use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::source_as_provider;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use futures::Stream;

use crate::privacy::{ReleaseStats, Role};

/// Largest answer kept.
const MAX_ENTRY_BYTES: usize = 1 << 20;
/// Answers kept in all.
const MAX_TOTAL_BYTES: usize = 64 << 20;

/// What a statement's answer depends on besides the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    /// The plan as run (privacy rewrite applied, parameters bound).
    pub plan: LogicalPlan,
    pub user: String,
    pub role: Role,
    /// Where unqualified table names are looked up.
    pub default_schema: String,
    /// The session's settings: 0 while at their defaults.
    pub settings: u64,
}

/// A kept answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub batches: Vec<RecordBatch>,
    /// Cells the release withheld when it was computed.
    pub cells: u64,
    bytes: usize,
}

#[derive(Default)]
struct Inner {
    answers: HashMap<Key, Arc<Answer>>,
    order: VecDeque<Key>,
    bytes: usize,
}

/// The answers kept for one snapshot.
#[derive(Default)]
pub(crate) struct ResultCache {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for ResultCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResultCache")
    }
}

impl ResultCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &Key) -> Option<Arc<Answer>> {
        self.lock().answers.get(key).cloned()
    }

    fn insert(&self, key: Key, answer: Answer) {
        let mut inner = self.lock();
        if inner.answers.contains_key(&key) {
            return;
        }
        inner.bytes += answer.bytes;
        inner.order.push_back(key.clone());
        inner.answers.insert(key, Arc::new(answer));
        while inner.bytes > MAX_TOTAL_BYTES {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some(a) = inner.answers.remove(&oldest) {
                inner.bytes -= a.bytes;
            }
        }
    }

    /// Passes `input` through, keeping its answer once it has ended (if small).
    pub fn fill(
        self: &Arc<Self>,
        key: Key,
        input: SendableRecordBatchStream,
        release: Option<Arc<ReleaseStats>>,
    ) -> SendableRecordBatchStream {
        let cells_before = release.as_ref().map_or(0, |r| r.cells());
        Box::pin(Filling {
            input,
            cache: self.clone(),
            key: Some(key),
            batches: Vec::new(),
            bytes: 0,
            release,
            cells_before,
        })
    }
}

/// The file tables behind the store's tables: the tables every plan of a
/// store table reads once its views are inlined (planning inlines them), a
/// project's tables included. Nothing else a plan can scan stays the same
/// while the engine runs. Known by identity, not by name: a name can mean
/// another table in another session or under another `search_path`, and a
/// table function's scan carries only the function's name.
#[derive(Debug, Default)]
pub(crate) struct StoreTables {
    providers: HashSet<usize>,
    /// Held, so that no other table can take one of their addresses.
    _held: Vec<Arc<dyn TableProvider>>,
}

/// The identity of a table object.
fn address(p: &Arc<dyn TableProvider>) -> usize {
    Arc::as_ptr(p) as *const () as usize
}

impl StoreTables {
    pub fn of(store: &tsunagu_catalog::Store) -> StoreTables {
        let mut held = Vec::new();
        for t in store.shown_tables() {
            let _ = t.plan.apply_with_subqueries(|p| {
                if let LogicalPlan::TableScan(scan) = p
                    && let Ok(provider) = source_as_provider(&scan.source)
                {
                    held.push(provider);
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        StoreTables {
            providers: held.iter().map(address).collect(),
            _held: held,
        }
    }

    /// Whether `plan` reads only the store's tables, so that it stays valid
    /// while the engine runs and computes the same rows each time: no
    /// session tables (cohorts, results, the quality tables, `pg_catalog`),
    /// table functions, or statements with side effects.
    pub fn read_only_by(&self, plan: &LogicalPlan) -> bool {
        let mut only = true;
        let _ = plan.apply_with_subqueries(|p| {
            match p {
                LogicalPlan::TableScan(scan) => {
                    only = source_as_provider(&scan.source)
                        .is_ok_and(|p| self.providers.contains(&address(&p)));
                    if !only {
                        log::debug!("not kept: reads {}", scan.table_name);
                    }
                }
                LogicalPlan::Statement(_)
                | LogicalPlan::Dml(_)
                | LogicalPlan::Ddl(_)
                | LogicalPlan::Copy(_)
                | LogicalPlan::Explain(_)
                | LogicalPlan::Analyze(_)
                | LogicalPlan::DescribeTable(_) => only = false,
                _ => {}
            }
            Ok(if only {
                TreeNodeRecursion::Continue
            } else {
                TreeNodeRecursion::Stop
            })
        });
        only
    }
}

/// Whether every function `plan` calls gives the same result for the same
/// arguments (no `now()`, `random()`, `current_user`).
pub(crate) fn calls_only_immutable(plan: &LogicalPlan) -> bool {
    let mut immutable = true;
    let _ = plan.apply_with_subqueries(|p| {
        p.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::ScalarFunction(f) = e
                    && f.func.signature().volatility != Volatility::Immutable
                {
                    log::debug!("not kept: calls {}", f.func.name());
                    immutable = false;
                }
                Ok(if immutable {
                    TreeNodeRecursion::Continue
                } else {
                    TreeNodeRecursion::Stop
                })
            })
        })
    });
    immutable
}

/// A kept answer as a stream.
pub(crate) fn replay(answer: &Answer, schema: SchemaRef) -> SendableRecordBatchStream {
    let batches: Vec<datafusion::error::Result<RecordBatch>> =
        answer.batches.iter().cloned().map(Ok).collect();
    Box::pin(
        datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
            schema,
            futures::stream::iter(batches),
        ),
    )
}

/// A stream that keeps a copy of its batches and, at its end, its answer.
struct Filling {
    input: SendableRecordBatchStream,
    cache: Arc<ResultCache>,
    /// `None` once the answer is too large or failed.
    key: Option<Key>,
    batches: Vec<RecordBatch>,
    bytes: usize,
    release: Option<Arc<ReleaseStats>>,
    cells_before: u64,
}

impl Stream for Filling {
    type Item = datafusion::error::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let next = this.input.as_mut().poll_next(cx);
        match &next {
            Poll::Ready(Some(Ok(batch))) if this.key.is_some() => {
                this.bytes += batch.get_array_memory_size();
                if this.bytes > MAX_ENTRY_BYTES {
                    this.key = None;
                    this.batches.clear();
                } else {
                    this.batches.push(batch.clone());
                }
            }
            Poll::Ready(Some(Err(_))) => {
                this.key = None;
                this.batches.clear();
            }
            Poll::Ready(None) => {
                if let Some(key) = this.key.take() {
                    let cells = this
                        .release
                        .as_ref()
                        .map_or(0, |r| r.cells().saturating_sub(this.cells_before));
                    this.cache.insert(
                        key,
                        Answer {
                            batches: std::mem::take(&mut this.batches),
                            cells,
                            bytes: this.bytes,
                        },
                    );
                }
            }
            _ => {}
        }
        next
    }
}

impl datafusion::physical_plan::RecordBatchStream for Filling {
    fn schema(&self) -> SchemaRef {
        self.input.schema()
    }
}
