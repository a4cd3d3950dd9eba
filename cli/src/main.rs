//! `tsunagu`: generate a synthetic store, serve a store over the Postgres
//! wire protocol, or run one query embedded.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use datafusion::arrow::record_batch::RecordBatch;
use futures::StreamExt;
use tsunagu_engine::{Engine, EngineOptions, Role};
use tsunagu_pgwire::config::{ServerConfig, Users, parse_size};
use tsunagu_pgwire::server;

mod demo;
mod project_commands;

#[derive(Parser)]
#[command(
    name = "tsunagu",
    version,
    about = "A SQL engine for pseudonymized, linked medical real-world data"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args, Clone)]
struct StoreArgs {
    /// The store folder (see the data model); default: the built-in demo store.
    #[arg(long)]
    store: Option<PathBuf>,
    /// Folder for derived state (default: under ~/.local/state/tsunagu).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Memory limit for query execution, e.g. 4G or 512M (default: none).
    #[arg(long, value_parser = parse_size)]
    memory_limit: Option<usize>,
    /// Person ranges the layout is cut into when the state is derived
    /// (default: one per core here; for a cluster, one per worker core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    person_ranges: Option<u32>,
}

#[derive(clap::Args, Clone)]
struct ClusterArgs {
    /// Run statements on these workers (`tsunagu worker`), comma-separated
    /// host:port; statements are still parsed, checked and rewritten for
    /// privacy here.
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',')]
    cluster: Vec<String>,
    /// File holding the cluster's shared secret (default: the
    /// TSUNAGU_CLUSTER_SECRET environment variable).
    #[arg(long, value_name = "FILE")]
    cluster_secret_file: Option<PathBuf>,
    /// Bytes of a scan's files one task reads, per core (default 16M): a
    /// smaller scan runs as one task, on one worker.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    cluster_task_bytes: Option<usize>,
    /// Certificate authority (PEM) the workers' certificates are checked
    /// against: the workers are then reached over TLS (`tsunagu worker
    /// --tls-cert`).
    #[arg(long, value_name = "FILE")]
    cluster_ca: Option<PathBuf>,
}

impl ClusterArgs {
    /// The engine option running plans on the workers given, if any.
    async fn distribute(&self) -> Result<Option<tsunagu_engine::Distribute>, String> {
        if self.cluster.is_empty() {
            return Ok(None);
        }
        let secret = cluster_secret(self.cluster_secret_file.as_deref())?;
        let tls = self
            .cluster_ca
            .as_deref()
            .map(tsunagu_cluster::ClientTls::from_ca_file)
            .transpose()
            .map_err(|e| e.to_string())?;
        let workers = tsunagu_cluster::Workers::new(&self.cluster, tls.is_some())
            .map_err(|e| e.to_string())?;
        workers.probe().await;
        let task_bytes = self
            .cluster_task_bytes
            .unwrap_or(tsunagu_cluster::TASK_BYTES);
        Ok(Some(tsunagu_cluster::coordinator(
            workers, secret, task_bytes, tls,
        )))
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a deterministic synthetic store.
    Generate {
        /// Number of persons.
        #[arg(long, default_value_t = 10_000)]
        persons: u64,
        /// Random seed: the same seed gives the same store.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Number the vocabulary's concepts differently (drawn by this seed),
        /// as another store would: same codes and data, other concept ids.
        #[arg(long, value_name = "SEED")]
        renumber_vocabulary: Option<u64>,
        /// Deliver the claims in receipt codes only (disease-name, receipt
        /// drug and procedure codes, concept ids 0), mapped by the manifest's
        /// `[source.codes]`; same persons and events.
        #[arg(long)]
        receipt_codes: bool,
    },
    /// Serve a store over the Postgres wire protocol.
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:5433")]
        listen: String,
        /// Server configuration (users, TLS, privacy policy); default: the demo logins.
        #[arg(long)]
        config: Option<PathBuf>,
        /// TLS certificate chain (PEM); overrides the configuration file.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Refuse connections that do not use TLS.
        #[arg(long)]
        require_tls: bool,
        /// Allow listening on a non-loopback address without TLS (results
        /// then cross the network unencrypted).
        #[arg(long)]
        allow_plaintext_on_network: bool,
        /// Also serve the dashboards over HTTP on this address (e.g. 127.0.0.1:8080).
        #[arg(long, value_name = "HOST:PORT")]
        http: Option<String>,
        /// A folder of dashboard files (`*.toml`) served beside the built-in ones.
        #[arg(long, requires = "http")]
        dashboards: Option<PathBuf>,
        /// On a store's first open, write the person layout before serving
        /// (by default the server answers at once from the delivered files
        /// and writes the layout in the background; a cluster always waits).
        #[arg(long)]
        wait_for_layout: bool,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Run plan fragments for `tsunagu serve --cluster` over the same store.
    Worker {
        #[command(flatten)]
        store: StoreArgs,
        /// Address to listen on (gRPC).
        #[arg(long, default_value = "127.0.0.1:50051")]
        listen: String,
        /// File holding the cluster's shared secret (default: the
        /// TSUNAGU_CLUSTER_SECRET environment variable).
        #[arg(long, value_name = "FILE")]
        cluster_secret_file: Option<PathBuf>,
        /// Serve over TLS with this certificate chain (PEM); the
        /// coordinator then needs `--cluster-ca`.
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The TLS certificate's private key (PEM).
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Certificate authority (PEM) the other workers' certificates are
        /// checked against when this one reads from them (default: the
        /// certificate of `--tls-cert`, for a cluster sharing one).
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        cluster_ca: Option<PathBuf>,
        /// Allow listening on a non-loopback address without TLS (plan
        /// fragments and rows then cross the network unencrypted).
        #[arg(long)]
        allow_plaintext_on_network: bool,
    },
    /// Projects: create, approve, add members, show, close, report.
    Project {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: ProjectCmd,
    },
    /// Release requests of a project: list, show, approve, reject.
    Release {
        #[command(flatten)]
        store: StoreArgs,
        /// The project.
        #[arg(long)]
        project: String,
        #[command(subcommand)]
        command: ReleaseCmd,
    },
    /// Manage the users of a server configuration file.
    User {
        #[command(subcommand)]
        command: UserCmd,
    },
    /// Check the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCmd,
    },
    /// Take in what was delivered since the store's state was derived: new
    /// Parquet files of tables (or linkage) delivered as folders grow the
    /// state without deriving it again; any other change derives it again,
    /// saying why. A running server does the same by itself.
    Refresh {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Run the data quality checks and write the store's data quality and
    /// utility label (label.json, label.html).
    Quality {
        #[command(flatten)]
        store: StoreArgs,
        /// Folder to write label.json and label.html to (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Check configuration (thresholds, severities, ranges); default: the
        /// store's quality.toml, else the built-in defaults.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Exact counts (the steward's report, not for release); default:
        /// counts released under the store's k and rounding.
        #[arg(long)]
        exact: bool,
    },
    /// Export the knowledge graph (graph.nodes, graph.edges) as a role
    /// reads it, for graph tools.
    Graph {
        #[command(flatten)]
        store: StoreArgs,
        /// `graphml` or `jsonld`.
        #[arg(long, default_value = "graphml")]
        format: String,
        /// Read as this role (analysts and viewers get released counts).
        #[arg(long, default_value = "analyst")]
        role: Role,
        /// Which edges: a SQL condition on graph.edges (default: all).
        #[arg(long, value_name = "CONDITION")]
        edges: Option<String>,
        /// File to write (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run one SQL query on a store and print the result.
    Sql {
        #[command(flatten)]
        store: StoreArgs,
        /// Print CSV with a header row instead of a table.
        #[arg(long)]
        csv: bool,
        /// Run as this role: `analyst` sees exactly what an analyst would.
        #[arg(long, default_value = "steward")]
        role: Role,
        /// Run the SQL this many times (for timing: each run computed, no
        /// kept answers; the last result is printed).
        #[arg(long, default_value_t = 1)]
        repeat: usize,
        /// Print the time of each run to stderr.
        #[arg(long)]
        timing: bool,
        /// Run as this user (default: the local user, as steward).
        #[arg(long)]
        user: Option<String>,
        /// Work in this project (its scope, pseudonyms, policy and workspace).
        #[arg(long)]
        project: Option<String>,
        /// Read the SQL from this file instead.
        #[arg(long, short = 'f', conflicts_with = "query")]
        file: Option<PathBuf>,
        /// The query.
        #[arg(allow_hyphen_values = true, required_unless_present = "file")]
        query: Option<String>,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per run
enum ProjectCmd {
    /// Propose a project (a steward approves it before anyone works in it).
    Create {
        id: String,
        #[arg(long)]
        title: String,
        #[arg(long)]
        purpose: String,
        /// A member (an existing user); repeat for more.
        #[arg(long = "member")]
        members: Vec<String>,
        /// A table in scope, `schema.table` or `schema.*`; repeat for more.
        #[arg(long = "table", required = true)]
        tables: Vec<String>,
        /// Only these columns of a table: `schema.table=col,col`; repeat.
        #[arg(long = "columns")]
        columns: Vec<String>,
        /// Events from this date (YYYY-MM-DD).
        #[arg(long)]
        period_start: Option<String>,
        /// Events to this date (YYYY-MM-DD).
        #[arg(long)]
        period_end: Option<String>,
        /// The population: a query returning person_id (run at approval).
        #[arg(long)]
        population: Option<String>,
        /// First day members may work (YYYY-MM-DD).
        #[arg(long)]
        start: String,
        /// Last day members may work (YYYY-MM-DD).
        #[arg(long)]
        end: String,
        /// Minimum persons per released cell (at least the store's).
        #[arg(long)]
        k: Option<u64>,
        /// Rounding base of released counts (at least the store's).
        #[arg(long)]
        rounding: Option<u64>,
        /// At the end date, archive the workspace (default: delete it).
        #[arg(long)]
        archive_at_end: bool,
    },
    /// Approve a proposed project (computes its population).
    Approve { id: String },
    /// Add a member.
    AddMember { id: String, user: String },
    /// Print a project's definition.
    Show { id: String },
    /// List the projects.
    List,
    /// End a project: refuse connections, delete (or archive) its workspace.
    Close {
        id: String,
        /// Keep the workspace in the project's archive folder.
        #[arg(long)]
        archive: bool,
    },
    /// What a project released, and when.
    Report { id: String },
}

#[derive(Subcommand)]
enum ReleaseCmd {
    /// The project's release requests.
    List,
    /// A request with its automatic checks.
    Show { request: String },
    /// Approve a request: its CSV and provenance go to the outbox.
    Approve { request: String },
    /// Reject a request.
    Reject {
        request: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Add (or replace) a user with a SCRAM-SHA-256 verifier; the password is
    /// read from the terminal, or from the first line of standard input.
    Add {
        /// User name.
        name: String,
        /// `analyst` (aggregate-only), `steward` (row-level, audited) or `viewer` (aggregate-only and read-only, under `[privacy.viewer]`).
        #[arg(long)]
        role: Role,
        /// The configuration file to write (created if missing).
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Verify the hash chain of the audit log: detects edits and truncation;
    /// with a checkpoint, also a log rewritten since the checkpoint.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// The audit folder itself (default: the store's state folder).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// A checkpoint written by `tsunagu audit checkpoint`.
        #[arg(long, requires = "public_key")]
        checkpoint: Option<PathBuf>,
        /// The public key the checkpoint must be signed with.
        #[arg(long, requires = "checkpoint")]
        public_key: Option<PathBuf>,
    },
    /// Sign the audit log's current head (sequence number, hash, time) with
    /// an Ed25519 key; keep the checkpoint away from the server.
    Checkpoint {
        #[command(flatten)]
        store: StoreArgs,
        /// The audit folder itself (default: the store's state folder).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The secret key written by `tsunagu audit keygen`.
        #[arg(long)]
        key: PathBuf,
        /// Where to write the checkpoint (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write a new Ed25519 key pair for checkpoints: the secret key (mode
    /// 0600) to FILE and the public key to FILE.pub.
    Keygen {
        /// The secret key file (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
}

/// The audit folder: given, or the store's.
async fn audit_dir(store: &StoreArgs, dir: Option<PathBuf>) -> Result<PathBuf, String> {
    match dir {
        Some(d) => Ok(d),
        None => {
            let (engine, _) = open(store, None).await?;
            Ok(engine.audit_log().dir().to_owned())
        }
    }
}

fn read_password() -> Result<String, String> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password: ");
        // Keep the password off the screen while it is typed.
        let _ = std::process::Command::new("stty").arg("-echo").status();
        let mut line = String::new();
        let r = stdin.lock().read_line(&mut line);
        let _ = std::process::Command::new("stty").arg("echo").status();
        eprintln!();
        r.map_err(|e| e.to_string())?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// glibc raises its mmap threshold each time a large block is freed; later
/// large blocks (a delivery's person index, query batches) then come from
/// the heap and stay resident once freed, so a server taking in month after
/// month grows. A fixed 4 MiB threshold hands blocks from 4 MiB up back to
/// the system when freed, at no measured cost to query speed
/// (docs/BENCHMARKS.md, "Deliveries and dashboards"). An operator's own
/// `MALLOC_MMAP_THRESHOLD_` wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_large_blocks() {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only sets an allocator parameter, under glibc's own lock.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_blocks() {}

fn main() -> ExitCode {
    return_large_blocks();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(tsunagu_engine::STACK_SIZE)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tsunagu: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tsunagu: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The cluster's shared secret, from `file` or else the environment.
fn cluster_secret(file: Option<&std::path::Path>) -> Result<tsunagu_cluster::Secret, String> {
    let text = match file {
        Some(f) => std::fs::read_to_string(f)
            .map_err(|e| format!("cannot read the cluster secret {}: {e}", f.display()))?,
        None => std::env::var("TSUNAGU_CLUSTER_SECRET").map_err(|_| {
            "a cluster needs a shared secret: --cluster-secret-file FILE or \
             TSUNAGU_CLUSTER_SECRET"
                .to_string()
        })?,
    };
    tsunagu_cluster::Secret::new(&text).map_err(|e| e.to_string())
}

async fn open(
    args: &StoreArgs,
    policy: Option<tsunagu_engine::Policy>,
) -> Result<(Engine, PathBuf), String> {
    open_distributed(args, policy, None, false).await
}

async fn open_distributed(
    args: &StoreArgs,
    policy: Option<tsunagu_engine::Policy>,
    distribute: Option<tsunagu_engine::Distribute>,
    defer_layout: bool,
) -> Result<(Engine, PathBuf), String> {
    let path = match &args.store {
        Some(p) => p.clone(),
        None => tokio::task::spawn_blocking(demo::demo_store)
            .await
            .map_err(|e| e.to_string())??,
    };
    let options = EngineOptions {
        state_dir: args.state.clone(),
        person_ranges: args.person_ranges.map(|n| n as usize),
        memory_limit: args.memory_limit,
        target_partitions: None,
        policy,
        distribute,
        defer_layout,
        ..Default::default()
    };
    let engine = Engine::open(&path, options)
        .await
        .map_err(|e| e.to_string())?;
    Ok((engine, path))
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Cmd::Generate {
            persons,
            seed,
            out,
            threads,
            renumber_vocabulary,
            receipt_codes,
        } => {
            let opts = tsunagu_generator::GenerateOptions {
                persons,
                seed,
                threads: threads.unwrap_or_else(|| {
                    std::thread::available_parallelism()
                        .map(|n| n.get())
                        .unwrap_or(2)
                }),
                renumber: renumber_vocabulary,
                codes: if receipt_codes {
                    tsunagu_generator::Codes::Receipt
                } else {
                    tsunagu_generator::Codes::Standard
                },
            };
            let bar = demo::progress_bar(persons);
            let started = std::time::Instant::now();
            tokio::task::spawn_blocking(move || {
                let result =
                    tsunagu_generator::generate(&opts, &out, &|done, _| bar.set_position(done));
                bar.finish_and_clear();
                result.map(|_| out)
            })
            .await
            .map_err(|e| e.to_string())?
            .map(|out| {
                eprintln!(
                    "tsunagu: wrote {persons} persons to {} in {:.1?}",
                    out.display(),
                    started.elapsed()
                );
            })
            .map_err(|e| e.to_string())
        }
        Cmd::User {
            command: UserCmd::Add { name, role, config },
        } => {
            let password = read_password()?;
            ServerConfig::add_user(&config, &name, role, &password)?;
            eprintln!(
                "tsunagu: user {name} ({role}) written to {}",
                config.display()
            );
            Ok(())
        }
        Cmd::Audit {
            command:
                AuditCmd::Verify {
                    store,
                    dir,
                    checkpoint,
                    public_key,
                },
        } => {
            use tsunagu_engine::audit::checkpoint as cp;
            let dir = audit_dir(&store, dir).await?;
            let (v, anchored) = match (checkpoint, public_key) {
                (Some(c), Some(k)) => {
                    let checkpoint = cp::Checkpoint::read(&c).map_err(|e| e.to_string())?;
                    let public = cp::read_public_key(&k).map_err(|e| e.to_string())?;
                    let v = cp::verify_checkpoint(&dir, &checkpoint, &public)
                        .map_err(|e| format!("{} against {}: {e}", dir.display(), c.display()))?;
                    (
                        v,
                        format!(
                            "; holds record {} as checkpointed at {}",
                            checkpoint.seq, checkpoint.time
                        ),
                    )
                }
                _ => (
                    tsunagu_engine::audit::verify(&dir).map_err(|e| e.to_string())?,
                    String::new(),
                ),
            };
            println!(
                "audit log {}: {} records in {} segment(s), chain intact{anchored}{}",
                dir.display(),
                v.records,
                v.segments,
                if v.torn_tail {
                    "; the last record was cut short by a crash and is removed at the next start"
                } else {
                    ""
                }
            );
            Ok(())
        }
        Cmd::Audit {
            command:
                AuditCmd::Checkpoint {
                    store,
                    dir,
                    key,
                    out,
                },
        } => {
            use tsunagu_engine::audit::checkpoint as cp;
            let key = cp::read_signing_key(&key).map_err(|e| e.to_string())?;
            let dir = audit_dir(&store, dir).await?;
            let checkpoint = cp::checkpoint(&dir, &key).map_err(|e| e.to_string())?;
            let text = format!("{}\n", checkpoint.to_json());
            match out {
                Some(path) => {
                    std::fs::write(&path, text)
                        .map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
                    eprintln!(
                        "tsunagu: checkpoint of record {} written to {}",
                        checkpoint.seq,
                        path.display()
                    );
                }
                None => print!("{text}"),
            }
            Ok(())
        }
        Cmd::Audit {
            command: AuditCmd::Keygen { out },
        } => {
            use tsunagu_engine::audit::checkpoint as cp;
            let public = cp::keygen(&out).map_err(|e| e.to_string())?;
            println!("{public}");
            eprintln!(
                "tsunagu: secret key written to {} (keep it off the server); public key to {}",
                out.display(),
                cp::public_key_path(&out).display()
            );
            Ok(())
        }
        Cmd::Worker {
            store,
            listen,
            cluster_secret_file,
            tls_cert,
            tls_key,
            cluster_ca,
            allow_plaintext_on_network,
        } => {
            let secret = cluster_secret(cluster_secret_file.as_deref())?;
            let addr: std::net::SocketAddr = listen
                .parse()
                .map_err(|e| format!("worker address {listen}: {e}"))?;
            let tls = match (&tls_cert, &tls_key) {
                (Some(cert), Some(key)) => Some(
                    tsunagu_cluster::WorkerTls::from_files(cert, key, cluster_ca.as_deref())
                        .map_err(|e| e.to_string())?,
                ),
                _ => None,
            };
            if !addr.ip().is_loopback() && tls.is_none() && !allow_plaintext_on_network {
                return Err(format!(
                    "{listen} is reachable from the network, and plan fragments and rows \
                     would cross it unencrypted: serve with --tls-cert and --tls-key, listen \
                     on 127.0.0.1, or allow it explicitly with --allow-plaintext-on-network"
                ));
            }
            let (engine, path) = open(&store, None).await?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            println!("tsunagu: worker for {} on {addr}", path.display());
            tsunagu_cluster::serve_worker(engine, listener, secret, tls)
                .await
                .map_err(|e| e.to_string())
        }
        Cmd::Serve {
            store,
            listen,
            config,
            tls_cert,
            tls_key,
            require_tls,
            allow_plaintext_on_network,
            http,
            dashboards,
            wait_for_layout,
            cluster,
        } => {
            let distribute = cluster.distribute().await?;
            // Workers read the layout the coordinator plans on: a cluster waits.
            let defer_layout = !wait_for_layout && distribute.is_none();
            let config = match &config {
                Some(p) => ServerConfig::load(p)?,
                None => ServerConfig::default(),
            };
            // Fail closed: the demo logins exist only on the demo store.
            if store.store.is_some() && config.users.is_empty() {
                return Err(
                    "no users are configured, and the demo logins serve only the demo store. \
                     Add a user with `tsunagu user add NAME --role analyst --config server.toml` \
                     (it asks for the password), then serve with `--config server.toml`"
                        .into(),
                );
            }
            let cert = tls_cert.or(config.server.tls_cert.clone());
            let key = tls_key.or(config.server.tls_key.clone());
            let require_tls = require_tls || config.server.require_tls;
            let tls = match (&cert, &key) {
                (Some(c), Some(k)) => Some(tsunagu_pgwire::config::tls_acceptor(c, k)?),
                (None, None) if require_tls => {
                    return Err(
                        "require_tls is set but no TLS certificate and key are configured".into(),
                    );
                }
                (None, None) => None,
                _ => return Err("TLS needs both a certificate and a key".into()),
            };
            let loopback = server::is_loopback(&listen)
                .await
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            if !loopback
                && tls.is_none()
                && !(allow_plaintext_on_network || config.server.allow_plaintext_on_network)
            {
                return Err(format!(
                    "{listen} is reachable from the network, and without TLS results and \
                     statements would cross it unencrypted: configure tls_cert and tls_key \
                     (or --tls-cert/--tls-key), listen on 127.0.0.1, or allow it explicitly \
                     with `[server] allow_plaintext_on_network = true` or \
                     --allow-plaintext-on-network"
                ));
            }
            let limiter = tsunagu_pgwire::limits::Limiter::new(&config.limits)?;
            let demo_login = config.users.is_empty();
            let users = if demo_login {
                Users::demo()
            } else {
                Users::from_config(&config)
            };
            let allow_plaintext =
                allow_plaintext_on_network || config.server.allow_plaintext_on_network;
            if let Some(http) = &http {
                // The dashboard speaks plain HTTP: passwords and numbers would
                // cross the network unencrypted.
                let loopback = server::is_loopback(http)
                    .await
                    .map_err(|e| format!("cannot serve dashboards on {http}: {e}"))?;
                if !loopback && !allow_plaintext {
                    return Err(format!(
                        "{http} is reachable from the network, and the dashboards are served over \
                         plain HTTP: listen on 127.0.0.1 behind a TLS proxy, or allow it explicitly \
                         with `[server] allow_plaintext_on_network = true`"
                    ));
                }
            }
            let (engine, path) =
                open_distributed(&store, config.privacy.clone(), distribute, defer_layout).await?;
            let engine = Arc::new(engine);
            // New deliveries are taken in while serving.
            let current = tsunagu_engine::current::Current::new(engine.clone());
            current.watch(std::time::Duration::from_secs(2));
            current.complete_layout();
            let dashboard_list = match &http {
                Some(_) => Some(
                    tsunagu_dashboard::load(&engine, dashboards.as_deref())
                        .map_err(|e| e.to_string())?,
                ),
                None => None,
            };
            let (listener, addr) = server::bind(&listen)
                .await
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            let http_listener = match (&http, dashboard_list) {
                (Some(http), Some(list)) => {
                    let l = tokio::net::TcpListener::bind(http)
                        .await
                        .map_err(|e| format!("cannot serve dashboards on {http}: {e}"))?;
                    let addr = l.local_addr().map_err(|e| e.to_string())?;
                    println!(
                        "tsunagu: dashboards ({}) on http://{addr}/",
                        list.iter()
                            .map(|d| d.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    Some((l, list))
                }
                _ => None,
            };
            println!(
                "tsunagu: {}",
                tsunagu_engine::current::describe(engine.store().opened())
            );
            let persons = engine.store().persons().persons();
            println!(
                "tsunagu: serving store {:?} ({} persons) from {}",
                engine.store().name(),
                persons,
                path.display()
            );
            println!(
                "tsunagu: listening on {addr}{}; connect with:",
                if tls.is_some() { " (TLS)" } else { "" }
            );
            let ssl = if tls.is_some() {
                " sslmode=require"
            } else {
                ""
            };
            if demo_login {
                println!(
                    "  psql \"host={} port={} dbname=tsunagu user=analyst password={}{ssl}\"",
                    addr.ip(),
                    addr.port(),
                    tsunagu_pgwire::config::DEMO_PASSWORD
                );
                println!(
                    "tsunagu: demo logins: analyst (aggregate-only) and steward (row-level), password {:?}; \
                     use --config with `tsunagu user add` for real users",
                    tsunagu_pgwire::config::DEMO_PASSWORD
                );
            } else {
                println!(
                    "  psql \"host={} port={} dbname=tsunagu user=<name>{ssl}\"",
                    addr.ip(),
                    addr.port()
                );
            }
            for role in [Role::Analyst, Role::Steward, Role::Viewer] {
                println!(
                    "tsunagu: limits of the {role} role: {}",
                    limiter.limits(role)
                );
            }
            let auth = tsunagu_pgwire::handler::Auth::new(
                users,
                require_tls,
                config.server.logins.clone(),
            );
            if let Some((http_listener, list)) = http_listener {
                let access = Arc::new(DashboardAccess {
                    auth: auth.clone(),
                    limiter: limiter.clone(),
                });
                let current = current.clone();
                let options = tsunagu_dashboard::Options {
                    dashboards: list,
                    poll: std::time::Duration::from_secs(1),
                };
                tokio::spawn(async move {
                    if let Err(e) =
                        tsunagu_dashboard::serve(current, http_listener, access, options).await
                    {
                        log::error!("{e}");
                        eprintln!("tsunagu: {e}");
                    }
                });
            }
            server::serve(current, listener, auth, limiter, tls)
                .await
                .map_err(|e| e.to_string())
        }
        Cmd::Refresh { store } => {
            let started = std::time::Instant::now();
            let (engine, path) = open(&store, None).await?;
            println!(
                "tsunagu: {} ({}; {} persons; {:.1} s)",
                tsunagu_engine::current::describe(engine.store().opened()),
                path.display(),
                engine.store().persons().persons(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Cmd::Quality {
            store,
            out,
            config,
            exact,
        } => {
            use tsunagu_engine::quality;
            let (engine, _) = open(&store, None).await?;
            let report = match config {
                Some(path) => {
                    let config = quality::QualityConfig::load(&path).map_err(|e| e.to_string())?;
                    let ctx = engine.context();
                    engine.register(&ctx).map_err(|e| e.to_string())?;
                    std::sync::Arc::new(
                        quality::run(&ctx, engine.store(), &config)
                            .await
                            .map_err(|e| e.to_string())?,
                    )
                }
                None => engine.quality_report().await.map_err(|e| e.to_string())?,
            };
            let label = quality::label::build(&report, engine.store(), engine.policy(), exact);
            quality::html::write(&label, &out).map_err(|e| format!("{}: {e}", out.display()))?;
            engine
                .session()
                .and_then(|s| {
                    s.log_command(
                        &format!(
                            "QUALITY RUN ({} counts, label written to {})",
                            if exact { "exact" } else { "released" },
                            out.display()
                        ),
                        None,
                    )
                })
                .map_err(|e| e.to_string())?;
            let count =
                |s: quality::Status| report.results.iter().filter(|r| r.status == s).count();
            println!(
                "{} checks: {} passed, {} failed, {} not applicable, {} errors ({} ms)",
                report.results.len(),
                count(quality::Status::Passed),
                count(quality::Status::Failed),
                count(quality::Status::NotApplicable),
                count(quality::Status::Error),
                report.elapsed_ms
            );
            println!(
                "wrote {} and {}",
                out.join("label.json").display(),
                out.join("label.html").display()
            );
            Ok(())
        }
        Cmd::Project { store, command } => {
            let (engine, _) = open(&store, None).await?;
            project_commands::run(&engine, command).await
        }
        Cmd::Release {
            store,
            project,
            command,
        } => {
            let (engine, _) = open(&store, None).await?;
            project_commands::release(&engine, &project, command)
        }
        Cmd::Graph {
            store,
            format,
            role,
            edges,
            out,
        } => {
            use tsunagu_engine::graph::export;
            let format: export::Format = format.parse()?;
            let (engine, _) = open(&store, None).await?;
            let session = engine.session().map_err(|e| e.to_string())?;
            session.set_role(role).map_err(|e| e.to_string())?;
            let text = export::export(&session, format, edges.as_deref())
                .await
                .map_err(|e| e.to_string())?;
            match out {
                Some(path) => {
                    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?
                }
                None => print!("{text}"),
            }
            Ok(())
        }
        Cmd::Sql {
            store,
            csv,
            role,
            repeat,
            timing,
            user,
            project,
            file,
            query,
            cluster,
        } => {
            let query = match (file, query) {
                (Some(f), _) => {
                    std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?
                }
                (None, Some(q)) => q,
                (None, None) => return Err("no query given".into()),
            };
            let (engine, _) =
                open_distributed(&store, None, cluster.distribute().await?, false).await?;
            let session = match &user {
                Some(u) => engine.session_as(u, role),
                None => engine.session(),
            }
            .map_err(|e| e.to_string())?;
            // Timed runs compute every time (no kept answers).
            let session = if repeat > 1 {
                session.without_kept_answers()
            } else {
                session
            };
            session.set_role(role).map_err(|e| e.to_string())?;
            if let Some(p) = &project {
                engine
                    .enter_project(&session, p)
                    .map_err(|e| e.to_string())?;
            }
            let mut batches: Vec<RecordBatch> = Vec::new();
            let mut schema = None;
            for run in 1..=repeat.max(1) {
                let started = std::time::Instant::now();
                let mut statements = session.statements(&query).map_err(|e| e.to_string())?;
                while let Some(next) = statements.next().await {
                    let (prepared, mut stream) = next.map_err(|e| e.client_message())?;
                    schema = Some(prepared.schema());
                    if let Some(action) = &prepared.action {
                        println!("{}", action.name());
                        schema = None;
                    }
                    batches.clear();
                    while let Some(b) = stream.next().await {
                        batches.push(
                            b.map_err(|e| tsunagu_engine::EngineError::from(e).client_message())?,
                        );
                    }
                }
                if timing {
                    eprintln!(
                        "tsunagu: run {run}: {:.1} ms",
                        started.elapsed().as_secs_f64() * 1e3
                    );
                }
            }
            let Some(schema) = schema else { return Ok(()) };
            if csv {
                let mut out = Vec::new();
                {
                    let mut w = datafusion::arrow::csv::WriterBuilder::new()
                        .with_header(true)
                        .build(&mut out);
                    if batches.is_empty() {
                        w.write(&RecordBatch::new_empty(schema))
                            .map_err(|e| e.to_string())?;
                    }
                    for b in &batches {
                        w.write(b).map_err(|e| e.to_string())?;
                    }
                }
                print!("{}", String::from_utf8_lossy(&out));
            } else {
                let table = if batches.is_empty() {
                    datafusion::arrow::util::pretty::pretty_format_batches(&[
                        RecordBatch::new_empty(schema),
                    ])
                } else {
                    datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                }
                .map_err(|e| e.to_string())?;
                println!("{table}");
                let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
                println!("({rows} row{})", if rows == 1 { "" } else { "s" });
            }
            Ok(())
        }
    }
}

/// The dashboard's logins: the server's users and their verifiers, with the
/// same throttling and lockout as wire logins, and the same limits.
struct DashboardAccess {
    auth: Arc<tsunagu_pgwire::handler::Auth>,
    limiter: Arc<tsunagu_pgwire::limits::Limiter>,
}

impl tsunagu_dashboard::Access for DashboardAccess {
    fn login(
        &self,
        user: &str,
        password: &str,
        address: std::net::IpAddr,
    ) -> tsunagu_dashboard::Login {
        match self.auth.check_password(user, password, address) {
            Ok(role) => tsunagu_dashboard::Login::Allowed(role),
            Err((reason, delay)) => tsunagu_dashboard::Login::Refused { delay, reason },
        }
    }

    fn memory_per_query(&self, role: Role) -> Option<usize> {
        self.limiter.limits(role).memory_per_query
    }

    fn statement_timeout(&self, role: Role) -> Option<std::time::Duration> {
        self.limiter.limits(role).statement_timeout
    }
}
