//! Tsunagu on a cluster, on [`datafusion_distributed`]: `tsunagu serve
//! --cluster` plans each statement as on one machine — parsed, checked and
//! rewritten for privacy on the logical plan — and the physical plan is then
//! cut into stages that run on workers (`tsunagu worker`) and stream rows to
//! each other over Arrow Flight.
//!
//! - [`coordinator`] gives the engine option that distributes each
//!   session's plans over a list of workers, skipping those not answering.
//! - [`serve_worker`] runs a worker over an opened store: it registers the
//!   store's functions and Tsunagu's plan nodes ([`PlanCodec`]), and takes
//!   plan fragments only from callers holding the cluster's secret.

mod ranges;
mod release;
mod shared;
mod tls;
mod workers;

use std::sync::Arc;

use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_distributed::{DistributedExt, SessionStateBuilderExt, Worker, WorkerQueryContext};
use http::{HeaderMap, HeaderValue};
use tsunagu_engine::plan_codec::PlanCodec;
use tsunagu_engine::privacy::PersonHashKey;
use tsunagu_engine::repeated_subplans::FragmentRuns;
use tsunagu_engine::{Distribute, Engine, Membership};

pub use tls::{ClientTls, WorkerTls};
pub use workers::Workers;

/// The request header carrying the cluster's secret.
pub const SECRET_HEADER: &str = "x-tsunagu-cluster-secret";

/// The request header carrying the keyed person hash's half of the store's
/// key (see [`tsunagu_engine::privacy::PERSON_HASH`]), in hexadecimal.
const PERSON_HASH_HEADER: &str = "x-tsunagu-person-hash-key";

/// The headers a fragment is sent with: the secret, and the person hash's
/// key when the sender has it.
fn fragment_headers(secret: &Secret, key: Option<&PersonHashKey>) -> HeaderMap {
    let mut headers = secret.headers();
    if let Some(mut value) = key.and_then(|k| HeaderValue::from_str(&k.to_hex()).ok()) {
        value.set_sensitive(true);
        headers.insert(PERSON_HASH_HEADER, value);
    }
    headers
}

/// The person hash's key `headers` carry.
fn person_hash_key(headers: &HeaderMap) -> Option<PersonHashKey> {
    headers
        .get(PERSON_HASH_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(PersonHashKey::from_hex)
}

/// Errors of the cluster's own setup (a worker's address, its secret).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("worker address {0:?}: {1}")]
    Address(String, String),
    #[error("cluster secret: {0}")]
    Secret(String),
    #[error("worker: {0}")]
    Serve(String),
    #[error("cluster TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    Engine(#[from] tsunagu_engine::EngineError),
}

/// A cluster's shared secret: at least 16 characters, sent by the
/// coordinator with every plan fragment and checked by every worker.
#[derive(Clone)]
pub struct Secret(HeaderValue);

impl Secret {
    pub fn new(text: &str) -> Result<Secret, ClusterError> {
        let text = text.trim();
        if text.chars().count() < 16 {
            return Err(ClusterError::Secret(
                "must have at least 16 characters".into(),
            ));
        }
        let mut value = HeaderValue::from_str(text).map_err(|_| {
            ClusterError::Secret("must be printable ASCII without line breaks".into())
        })?;
        value.set_sensitive(true);
        Ok(Secret(value))
    }

    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(SECRET_HEADER, self.0.clone());
        headers
    }

    /// Whether `headers` carry this secret (compared in constant time).
    fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers.get(SECRET_HEADER) else {
            return false;
        };
        let (a, b) = (given.as_bytes(), self.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
    }
}

/// How many bytes of a scan's files one task reads, unless given (a scan
/// of fewer bytes than this per core runs as one task).
pub const TASK_BYTES: usize = 16 * 1024 * 1024;

/// The engine option that runs each session's plans on `workers`, a scan
/// split in tasks of about `task_bytes` per core; over TLS with `tls`
/// (the workers then given as `https://` addresses).
pub fn coordinator(
    workers: Workers,
    secret: Secret,
    task_bytes: usize,
    tls: Option<ClientTls>,
) -> Distribute {
    let generation = {
        let workers = workers.clone();
        Arc::new(move || workers.generation())
    };
    // A statement failing on the cluster probes the workers at once: a
    // stopped one refuses the connection.
    let probe = {
        let workers = workers.clone();
        Arc::new(move || {
            let workers = workers.clone();
            Box::pin(async move {
                workers.probe().await;
                workers.generation()
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = u64> + Send>>
        })
    };
    let plan = Arc::new(
        move |mut builder: datafusion::execution::SessionStateBuilder| {
            let local = builder.query_planner().clone();
            if let Some(tls) = &tls {
                builder = builder.with_distributed_channel_resolver(tls.clone());
            }
            let mut builder = builder
                .with_physical_optimizer_rule(Arc::new(release::GatherForRelease))
                .with_physical_optimizer_rule(Arc::new(UnrangeMerges))
                .with_physical_optimizer_rule(Arc::new(shared::ShareWithinStages))
                .with_distributed_worker_resolver(workers.clone())
                .with_distributed_user_codec(PlanCodec)
                .with_distributed_planner()
                .with_distributed_desired_task_count_handler(ranges::range_tasks(task_bytes.max(1)))
                .with_distributed_scale_up_leaf_node_handler(ranges::scale_up_ranges);
            // None of these can fail: the header's name is not a reserved one,
            // and the options are a flag (EXPLAIN ANALYZE shows bytes moved) and
            // a positive number.
            let key = builder
                .config()
                .as_ref()
                .and_then(|c| c.get_extension::<PersonHashKey>());
            let headers = fragment_headers(&secret, key.as_deref());
            let builder = match builder.with_distributed_passthrough_headers(headers) {
                Ok(b) => b,
                Err(e) => panic!("the cluster secret header is refused: {e}"),
            };
            let builder = match builder.with_distributed_metrics_collection(true) {
                Ok(b) => b,
                Err(e) => panic!("metrics collection is refused: {e}"),
            };
            let mut builder = match builder
                .with_distributed_file_scan_config_bytes_per_partition(task_bytes.max(1))
            {
                Ok(b) => b,
                Err(e) => panic!("the bytes per task are refused: {e}"),
            };
            match (local, builder.query_planner().clone()) {
                (Some(local), Some(distributed)) => {
                    builder.with_query_planner(Arc::new(Choose { local, distributed }))
                }
                _ => builder,
            }
        },
    );
    Distribute {
        plan,
        membership: Some(Membership { generation, probe }),
    }
}

/// Shows merges of person-range partitions their input without the ranges
/// (see [`tsunagu_engine::unranged`]): the stage boundary below a merge
/// cannot take range-partitioned stages.
#[derive(Debug)]
struct UnrangeMerges;

impl datafusion::physical_optimizer::PhysicalOptimizerRule for UnrangeMerges {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &datafusion::config::ConfigOptions,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        tsunagu_engine::unranged::unrange_merges(plan)
    }

    fn name(&self) -> &str {
        "unrange_merges"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Plans a statement on the cluster. An analyst's statement runs there too,
/// its release on the coordinator (see [`release`]); a statement holding a
/// project's state, or one whose release would land on a worker, runs on
/// the coordinator alone.
#[derive(Debug)]
struct Choose {
    local: Arc<dyn QueryPlanner + Send + Sync>,
    distributed: Arc<dyn QueryPlanner + Send + Sync>,
}

#[async_trait::async_trait]
impl QueryPlanner for Choose {
    async fn create_physical_plan(
        &self,
        plan: &LogicalPlan,
        state: &dyn datafusion::catalog::Session,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        use tsunagu_engine::privacy;
        if privacy::holds_state_beyond_release(plan) {
            return self.local.create_physical_plan(plan, state).await;
        }
        // DataFusion 55's join dynamic filters wait for every probe partition
        // of a CollectLeft join. A range-partitioned scan cut into tasks has
        // empty partitions; a join above that skips its probe side for them
        // never lets those report, and the statement hangs. Plans for the
        // cluster are made without them.
        let distributed = match state.as_any().downcast_ref::<SessionState>() {
            None => self.distributed.create_physical_plan(plan, state).await?,
            Some(session) => {
                let mut session = session.clone();
                session
                    .config_mut()
                    .options_mut()
                    .optimizer
                    .enable_join_dynamic_filter_pushdown = false;
                self.distributed
                    .create_physical_plan(plan, &session)
                    .await?
            }
        };
        if release::on_workers(&distributed) {
            return self.local.create_physical_plan(plan, state).await;
        }
        Ok(distributed)
    }
}

/// Serves plan fragments of `engine`'s store on `listener` until the
/// process ends. Fragments are taken only with `secret`; the worker passes it on to
/// the workers it reads from. With `tls`, it serves over TLS and reads from
/// the other workers over TLS.
pub async fn serve_worker(
    engine: Engine,
    listener: tokio::net::TcpListener,
    secret: Secret,
    tls: Option<WorkerTls>,
) -> Result<(), ClusterError> {
    let peers = tls.as_ref().map(|t| t.client.clone());
    let functions = Arc::new(engine.functions()?);
    // Fragments of a store on object storage read its files from there.
    let client = engine.store().object_store_client();
    let forwarded = secret.clone();
    let worker = Worker::from_session_builder(move |ctx: WorkerQueryContext| {
        let functions = functions.clone();
        let forwarded = forwarded.clone();
        let client = client.clone();
        let peers = peers.clone();
        async move {
            if !forwarded.admits(&ctx.headers) {
                return Err(DataFusionError::Plan(
                    "plan fragment refused: it does not carry the cluster's secret".into(),
                ));
            }
            // Fragments of an analyst's statement compute the keyed person
            // hash: with the key the coordinator sent, passed on to the
            // workers this one reads from.
            let key = person_hash_key(&ctx.headers);
            let person_hash = key.map(|k| Arc::new(tsunagu_engine::privacy::person_hash_udf(k)));
            let mut builder = ctx.builder;
            // A session per task: the occurrences of a shared subplan in
            // the task's fragment read one run.
            if let Some(config) = builder.config().as_mut() {
                config.set_extension(Arc::new(FragmentRuns::default()));
            }
            if let Some((url, store)) = client {
                builder = builder.with_object_store(&url, store);
            }
            if let Some(peers) = peers {
                builder = builder.with_distributed_channel_resolver(peers);
            }
            let builder = builder
                .with_scalar_functions(
                    functions
                        .scalar
                        .iter()
                        .cloned()
                        .chain(person_hash)
                        .collect(),
                )
                .with_aggregate_functions(functions.aggregate.clone())
                .with_window_functions(functions.window.clone())
                .with_distributed_user_codec(PlanCodec)
                .with_distributed_passthrough_headers(fragment_headers(&forwarded, key.as_ref()))?;
            Ok::<SessionState, DataFusionError>(builder.build())
        }
    });
    let gate = secret.clone();
    let service = tonic::service::interceptor::InterceptedService::new(
        worker.into_worker_server(),
        move |request: tonic::Request<()>| {
            let headers = request.metadata().clone().into_headers();
            if gate.admits(&headers) {
                Ok(request)
            } else {
                Err(tonic::Status::unauthenticated(
                    "not a member of this Tsunagu cluster",
                ))
            }
        },
    );
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server
            .tls_config(tls.server)
            .map_err(|e| ClusterError::Tls(e.to_string()))?;
    }
    server
        .add_service(service)
        .serve_with_incoming(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
        )
        .await
        .map_err(|e| ClusterError::Serve(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_long_enough_and_admits_only_itself() {
        assert!(Secret::new("short").is_err());
        assert!(Secret::new("sixteen chars ok\nno").is_err());
        let secret = Secret::new("  a-secret-of-24-characters \n").unwrap();
        assert!(secret.admits(&secret.headers()));
        let mut other = HeaderMap::new();
        other.insert(
            SECRET_HEADER,
            HeaderValue::from_static("a-secret-of-24-characterZ"),
        );
        assert!(!secret.admits(&other));
        other.insert(
            SECRET_HEADER,
            HeaderValue::from_static("a-secret-of-24-character"),
        );
        assert!(!secret.admits(&other));
        assert!(!secret.admits(&HeaderMap::new()));
    }

    /// The nodes of `plan` the coordinator runs itself: those above every
    /// network boundary.
    use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};

    fn coordinators_nodes(plan: &Arc<dyn ExecutionPlan>, out: &mut Vec<Arc<dyn ExecutionPlan>>) {
        use datafusion_distributed::NetworkBoundaryExt;
        out.push(Arc::clone(plan));
        if !plan.is_network_boundary() {
            for c in plan.children() {
                coordinators_nodes(c, out);
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_analysts_aggregate_across_persons_runs_on_the_workers() {
        let store = tempfile::tempdir().unwrap();
        let opts = tsunagu_generator::GenerateOptions {
            persons: 500,
            seed: 3,
            threads: 2,
            renumber: None,
            codes: tsunagu_generator::Codes::Standard,
        };
        tsunagu_generator::generate(&opts, store.path(), &|_, _| {}).unwrap();
        let state = tempfile::tempdir().unwrap();
        // Planning names the workers, and sends them nothing: two ports
        // that accept connections stand for them.
        let ports: Vec<std::net::TcpListener> = (0..2)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let addresses: Vec<String> = ports
            .iter()
            .map(|p| p.local_addr().unwrap().to_string())
            .collect();
        let workers = Workers::new(&addresses, false).unwrap();
        let secret = Secret::new("a-secret-of-24-characters").unwrap();
        let engine = Engine::open(
            store.path(),
            tsunagu_engine::EngineOptions {
                state_dir: Some(state.path().to_path_buf()),
                person_ranges: Some(4),
                distribute: Some(coordinator(workers, secret, 1, None)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let session = engine
            .session_as("ann", tsunagu_engine::privacy::Role::Analyst)
            .unwrap();
        let sql = "SELECT gender_concept_id, count(*), avg(year_of_birth) \
                   FROM ndb.person GROUP BY 1";
        let statement = session.parse(sql).unwrap().remove(0);
        let prepared = session.plan_statement(statement).await.unwrap();
        let plan = session
            .context()
            .state()
            .create_physical_plan(&prepared.plan)
            .await
            .unwrap();
        let shown = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string();
        assert!(!release::on_workers(&plan), "{shown}");
        let mut mine = Vec::new();
        coordinators_nodes(&plan, &mut mine);
        let names: Vec<&str> = mine.iter().map(|n| n.name()).collect();
        // The statement is distributed, its release on the coordinator ...
        assert!(names.iter().any(|n| n.starts_with("Network")), "{shown}");
        assert!(
            mine.iter()
                .any(|n| release::calls(n.as_ref(), &|f| f == "tsunagu_keep")),
            "{shown}"
        );
        // ... and the keyed person hash, with the aggregation per person
        // and across persons, on the workers: what reaches the coordinator
        // is the groups' partial aggregates.
        for node in &mine {
            assert!(
                !release::calls(node.as_ref(), &|f| f
                    == tsunagu_engine::privacy::PERSON_HASH),
                "the person hash runs on the coordinator: {shown}"
            );
        }
        for node in &mine {
            if let Some(agg) = node.downcast_ref::<AggregateExec>() {
                let per_person = agg
                    .group_expr()
                    .expr()
                    .iter()
                    .any(|(_, name)| name.starts_with("__tsunagu_p"));
                assert!(
                    !per_person,
                    "persons are aggregated on the coordinator: {shown}"
                );
                assert!(
                    matches!(
                        agg.mode(),
                        AggregateMode::Final | AggregateMode::FinalPartitioned
                    ),
                    "rows reach the coordinator unaggregated: {shown}"
                );
            }
        }
    }

    #[test]
    fn the_person_hash_key_travels_only_with_the_secret_headers() {
        let secret = Secret::new("a-secret-of-24-characters").unwrap();
        let key = PersonHashKey::of(&[5; 32]);
        let headers = fragment_headers(&secret, Some(&key));
        assert!(secret.admits(&headers));
        assert_eq!(person_hash_key(&headers), Some(key));
        assert!(headers.get(PERSON_HASH_HEADER).unwrap().is_sensitive());
        assert_eq!(person_hash_key(&fragment_headers(&secret, None)), None);
    }

    #[tokio::test]
    async fn worker_addresses_are_host_and_port() {
        let workers =
            Workers::new(&["127.0.0.1:1".into(), "http://localhost:2".into()], false).unwrap();
        let urls: Vec<String> = workers.all().iter().map(|u| u.to_string()).collect();
        assert_eq!(urls, ["http://127.0.0.1:1/", "http://localhost:2/"]);
        let tls =
            Workers::new(&["127.0.0.1:1".into(), "https://localhost:2".into()], true).unwrap();
        let urls: Vec<String> = tls.all().iter().map(|u| u.to_string()).collect();
        assert_eq!(urls, ["https://127.0.0.1:1/", "https://localhost:2/"]);
        for bad in ["127.0.0.1", "https://h:1", "not an address:x"] {
            let e = Workers::new(&[bad.to_string()], false)
                .err()
                .expect(bad)
                .to_string();
            assert!(e.contains("worker address"), "{e}");
        }
        // Over TLS, a plain http:// address is refused, not downgraded.
        let e = Workers::new(&["http://h:1".into()], true)
            .err()
            .expect("http over TLS");
        assert!(e.to_string().contains("uses TLS"), "{e}");
        assert!(Workers::new(&[], false).is_err());
        // Nothing listens on port 1: after a probe, no worker is offered.
        let down = Workers::new(&["127.0.0.1:1".into()], false).unwrap();
        down.probe().await;
        let e = datafusion_distributed::WorkerResolver::get_urls(&down).unwrap_err();
        assert!(
            e.to_string().contains("none of the cluster's 1 workers"),
            "{e}"
        );
    }
}
