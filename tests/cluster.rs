//! `tsunagu serve --cluster` over `tsunagu worker` processes on 127.0.0.1,
//! with the store on an S3-compatible server (moto, started here), against
//! `tsunagu serve` alone on the same store: every study, as steward and as
//! analyst, and every case of the adversarial corpus must give the single
//! machine's answer [oracle: the single-node server, itself checked against
//! DuckDB and the planted truth elsewhere; its steward answers are also
//! checked against the same store read from a local folder]; a stopped
//! worker fails only the statements it was running.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{repo, state_dir, tsunagu};
use crate::studies::STUDIES;
use crate::wire::{DEMO_PASSWORD, Server, dirs};

const SECRET: &str = "a-test-cluster-secret-0123456789";

/// A running `tsunagu worker`, stopped when dropped.
struct Worker {
    child: Child,
    addr: String,
}

impl Worker {
    /// A worker on the demo store.
    fn start(secret: &str) -> Worker {
        let (cache, state) = dirs();
        Worker::start_with(
            secret,
            &[],
            &[("TSUNAGU_CACHE_DIR", cache), ("TSUNAGU_STATE_DIR", state)],
        )
    }

    fn start_with(secret: &str, args: &[&str], env: &[(&str, &Path)]) -> Worker {
        let listen: &[&str] = if args.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let mut child = Command::new(tsunagu())
            .arg("worker")
            .args(listen)
            .args(args)
            .envs(env.iter().copied())
            .env("TSUNAGU_CLUSTER_SECRET", secret)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("tsunagu worker starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| {
                l.strip_prefix("tsunagu: worker for ")
                    .and_then(|rest| rest.rsplit_once(" on "))
                    .map(|(_, addr)| addr.trim().to_owned())
            })
            .expect("the worker prints its address")
            // Listening on every interface: reached on loopback.
            .replace("0.0.0.0:", "127.0.0.1:");
        std::thread::spawn(move || for _ in lines {});
        Worker { child, addr }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An S3-compatible server (moto in server mode) on 127.0.0.1, stopped when
/// dropped.
struct S3Server {
    child: Child,
    endpoint: String,
}

impl S3Server {
    fn start() -> S3Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs (scripts/test installs moto[server])");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the S3 server (moto) did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The environment a client of this server needs.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "tsunagu-test".into()),
            ("AWS_SECRET_ACCESS_KEY", "tsunagu-test-secret".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ]
    }

    /// Runs Python with boto3 against this server; `s3` is the client.
    fn python(&self, script: &str) -> String {
        let program = format!(
            "import boto3, os, sys\n\
             s3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', \
             aws_access_key_id='tsunagu-test', aws_secret_access_key='tsunagu-test-secret')\n{script}",
            self.endpoint
        );
        let out = Command::new("python3")
            .args(["-c", &program])
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates `bucket` (unless it is there) and copies the folder `dir`
    /// under `prefix`.
    fn upload(&self, dir: &Path, bucket: &str, prefix: &str) {
        self.python(&format!(
            "try:\n\
             \x20   s3.create_bucket(Bucket='{bucket}')\n\
             except s3.exceptions.BucketAlreadyOwnedByYou:\n\
             \x20   pass\n\
             root = {root:?}\n\
             for d, _, files in os.walk(root):\n\
             \x20   for f in files:\n\
             \x20       p = os.path.join(d, f)\n\
             \x20       s3.upload_file(p, '{bucket}', '{prefix}/' + os.path.relpath(p, root))\n",
            root = dir.to_string_lossy()
        ));
    }

    /// The keys under `prefix` in `bucket`, one per line.
    fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        self.python(&format!(
            "pages = s3.get_paginator('list_objects_v2').paginate(Bucket='{bucket}', Prefix='{prefix}')\n\
             for page in pages:\n\
             \x20   for o in page.get('Contents', []):\n\
             \x20       print(o['Key'])\n"
        ))
        .lines()
        .map(str::to_owned)
        .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The demo store's folder (generated by [`dirs`]).
fn demo_folder() -> PathBuf {
    let (cache, _) = dirs();
    std::fs::read_dir(cache)
        .expect("the cache folder")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("demo-"))
                && p.join("rwd.toml").is_file()
        })
        .expect("the demo store was generated")
}

/// The bytes the files under `dir` take on disk, and their sizes.
fn disk_bytes(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut total = (0, 0);
    for entry in std::fs::read_dir(dir).expect("a folder") {
        let path = entry.expect("an entry").path();
        let meta = std::fs::metadata(&path).expect("metadata");
        let (stored, apparent) = if meta.is_dir() {
            disk_bytes(&path)
        } else {
            (meta.blocks() * 512, meta.len())
        };
        total = (total.0 + stored, total.1 + apparent);
    }
    total
}

/// The one folder in `dir`.
fn only_folder(dir: &Path) -> PathBuf {
    let folders: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("a folder")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(folders.len(), 1, "{folders:?}");
    folders.into_iter().next().expect("one folder")
}

/// A server planning on `workers` with `secret`.
fn coordinator(workers: &[&Worker], secret: &str) -> Server {
    coordinator_with(workers, secret, &[], &[])
}

/// A server planning on `workers`, with more arguments and environment.
fn coordinator_with(
    workers: &[&Worker],
    secret: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Server {
    let list = workers
        .iter()
        .map(|w| w.addr.as_str())
        .collect::<Vec<_>>()
        .join(",");
    // Tasks of 1 KiB: the demo store's scans are split across the workers.
    let mut all = vec!["--cluster", &list, "--cluster-task-bytes", "1K"];
    all.extend_from_slice(args);
    let mut env = env.to_vec();
    env.push(("TSUNAGU_CLUSTER_SECRET", secret));
    Server::start_with_env(&all, &env)
}

/// Runs SQL text (one or more statements) with psql, statements on stdin;
/// gives up after `limit`.
fn psql(server: &Server, user: &str, sql: &str, limit: Duration) -> (bool, String, String) {
    let mut child = Command::new("psql")
        .args([
            server.conninfo_as(user, DEMO_PASSWORD).as_str(),
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql is installed");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(sql.as_bytes())
        .expect("statements written");
    // Read while psql runs: an answer larger than a pipe's buffer would
    // otherwise stop psql before it exits.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let started = Instant::now();
    while child.try_wait().expect("psql runs").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("no answer within {limit:?} to {sql}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = child.wait().expect("psql ends");
    (
        status.success(),
        stdout.join().expect("stdout").trim().to_string(),
        stderr.join().expect("stderr"),
    )
}

fn study(name: &str) -> String {
    let path = repo().join(format!("sql/studies/{name}.sql"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const LIMIT: Duration = Duration::from_secs(300);

/// Each case of the adversarial corpus as `(expectation, SQL)`.
fn adversarial_cases() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("tests/privacy/adversarial.txt"))
        .expect("the adversarial corpus");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(" | "))
        .map(|(e, q)| (e.trim().to_owned(), q.trim().to_owned()))
        .collect()
}

/// Marks the end of a case's output in [`corpus_outcomes`].
const END_OF_CASE: &str = "-- end of case --";

/// The outcome of each case, run in one analyst session: its rows in sorted
/// order (the corpus has no ORDER BY) and its error, if any.
fn corpus_outcomes(server: &Server, cases: &[(String, String)]) -> Vec<String> {
    let mut input = String::new();
    for (_, sql) in cases {
        let sql = sql.trim_end_matches(';');
        input.push_str(&format!("{sql};\n\\echo '{END_OF_CASE}'\n"));
    }
    let mut child = Command::new("sh")
        .args(["-c", "psql \"$1\" -X -A -t -f - 2>&1", "psql"])
        .arg(server.conninfo_as("analyst", DEMO_PASSWORD))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("psql is installed");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("psql output");
    writer.join().expect("writer").expect("statements written");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut outcomes: Vec<String> = text
        .split(END_OF_CASE)
        .map(|block| {
            let mut lines: Vec<&str> = block.lines().filter(|l| !l.is_empty()).collect();
            lines.sort_unstable();
            lines.join("\n")
        })
        .collect();
    // After the last marker: nothing.
    assert_eq!(outcomes.pop().as_deref(), Some(""), "{text}");
    assert_eq!(outcomes.len(), cases.len(), "{text}");
    outcomes
}

#[test]
fn studies_on_a_cluster_over_object_storage_answer_as_on_one_machine_and_a_stopped_worker_fails_only_its_statement()
 {
    let s3 = S3Server::start();
    s3.upload(&demo_folder(), "rwd", "stores/demo");
    let url = "s3://rwd/stores/demo";
    let env_owned = s3.env();
    let mut env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // The servers on object storage share a state folder (and so a noise
    // key) of their own, apart from the one other tests look into.
    let s3_state = state_dir().to_string_lossy().into_owned();
    env.push(("TSUNAGU_STATE_DIR", &s3_state));
    // A prefix holding no store is refused, naming the URL.
    let out = Command::new(tsunagu())
        .args(["sql", "--store", "s3://rwd/stores/none", "SELECT 1"])
        .envs(env.iter().copied())
        .env("TSUNAGU_STATE_DIR", state_dir())
        .output()
        .expect("tsunagu runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("s3://rwd/stores/none/"),
        "{err}"
    );
    assert!(err.contains("no rwd.toml"), "{err}");
    let users = tempfile::tempdir().expect("a temporary folder");
    let config = users.path().join("server.toml");
    crate::privacy::add_user(&config, "steward", "steward", DEMO_PASSWORD);
    crate::privacy::add_user(&config, "analyst", "analyst", DEMO_PASSWORD);
    let config = config.to_string_lossy().into_owned();
    let store = ["--store", url, "--config", config.as_str()];

    // The same store from its local folder, and from object storage.
    let local = Server::start();
    let alone = Server::start_with_env(&store, &env);
    let derived = s3.keys("rwd", "stores/demo/_tsunagu/derived/");
    assert!(
        derived.iter().any(|k| k.ends_with("/complete.json")),
        "the derived state is not beside the store: {derived:?}"
    );
    // Workers with state folders of their own: they share nothing with the
    // coordinator but the object store.
    let worker_env = |state: &Path| {
        let mut e: Vec<(&str, PathBuf)> = env_owned
            .iter()
            .map(|(k, v)| (*k, PathBuf::from(v)))
            .collect();
        e.push(("TSUNAGU_STATE_DIR", state.to_path_buf()));
        e
    };
    let (state1, state2) = (state_dir(), state_dir());
    let start_worker = |state: &Path| {
        let env = worker_env(state);
        let env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();
        Worker::start_with(SECRET, &["--store", url], &env)
    };
    let w1 = start_worker(&state1);
    let mut w2 = start_worker(&state2);
    let cluster = coordinator_with(&[&w1, &w2], SECRET, &store, &env);
    // One derived state on object storage: the workers fetched it.
    assert_eq!(
        s3.keys("rwd", "stores/demo/_tsunagu/derived/"),
        derived,
        "a worker derived and wrote its own state"
    );
    // And they keep no copy of the data: of the store's files the footers
    // (and the vocabulary) [hand bound: the demo's footers and vocabulary
    // are under 5% of its files], of the layout nothing but footers.
    let store_bytes = disk_bytes(&demo_folder()).1;
    for state in [&state1, &state2] {
        let store_state = only_folder(state);
        assert!(
            !store_state.join("objects").exists() && !store_state.join("derived").exists(),
            "a worker copied the store whole"
        );
        let outline = store_state.join("outline");
        let (stored, apparent) = disk_bytes(&outline.join("objects"));
        assert_eq!(apparent, store_bytes, "the outline keeps every file's size");
        assert!(
            stored * 20 < store_bytes,
            "{stored} of {store_bytes} bytes kept"
        );
        let layout = only_folder(&outline.join("derived")).join("layout");
        let (stored, apparent) = disk_bytes(&layout);
        assert!(
            stored * 20 < apparent,
            "{stored} of {apparent} layout bytes kept"
        );
    }

    // The plans are distributed: stages are cut and run by two tasks, and
    // the person layout is read from object storage.
    let (ok, plan, err) = psql(
        &cluster,
        "steward",
        "EXPLAIN ANALYZE SELECT gender_concept_id, count(*) FROM ndb.person GROUP BY 1",
        LIMIT,
    );
    assert!(ok, "{err}");
    assert!(plan.contains("Stage 1 ── tasks=2"), "{plan}");
    assert!(plan.contains("stores/demo/_tsunagu/derived/"), "{plan}");

    for user in ["steward", "analyst"] {
        for name in STUDIES {
            let sql = study(name);
            let (ok_alone, rows_alone, err_alone) = psql(&alone, user, &sql, LIMIT);
            assert!(ok_alone, "{name} as {user} on one machine: {err_alone}");
            assert!(!rows_alone.is_empty(), "{name} as {user}: no rows");
            if user == "steward" {
                // Exact answers: the same as from the local folder.
                let (ok, rows, err) = psql(&local, user, &sql, LIMIT);
                assert!(ok, "{name} from a folder: {err}");
                assert_eq!(
                    rows, rows_alone,
                    "{name}: object storage and folder disagree"
                );
            }
            let (ok, rows, err) = psql(&cluster, user, &sql, LIMIT);
            assert!(ok, "{name} as {user} on the cluster: {err}");
            assert_eq!(rows, rows_alone, "{name} as {user}: the cluster disagrees");
        }
    }
    // Rows of persons, as a steward lists them: plans that end partitioned
    // by person ranges, or merge such partitions, which the stage
    // boundaries take only without the ranges declared.
    for sql in [
        "SELECT person_id, count(*) FROM ndb.drug_exposure WHERE person_id < 500 GROUP BY person_id",
        "SELECT person_id, count(*) FROM ndb.drug_exposure GROUP BY person_id ORDER BY 2 DESC, 1 LIMIT 5",
        "SELECT person_id, drug_exposure_start_date FROM ndb.drug_exposure WHERE person_id < 40 ORDER BY 1, 2",
    ] {
        let (ok_alone, rows_alone, err_alone) = psql(&alone, "steward", sql, LIMIT);
        assert!(ok_alone, "{sql} on one machine: {err_alone}");
        let (ok, rows, err) = psql(&cluster, "steward", sql, LIMIT);
        assert!(ok, "{sql} on the cluster: {err}");
        let sorted = |rows: &str| {
            let mut lines: Vec<&str> = rows.lines().collect();
            if !sql.contains("ORDER BY") {
                lines.sort_unstable();
            }
            lines.join("\n")
        };
        assert!(rows_alone.lines().count() >= 5, "{sql}: {rows_alone}");
        assert_eq!(
            sorted(&rows),
            sorted(&rows_alone),
            "{sql}: the cluster disagrees"
        );
    }
    // Joins on (visit, person) and on the person, partitioned: each task
    // joins whole person ranges, and no row crosses between workers but
    // the answer's.
    let set = "SET datafusion.optimizer.hash_join_single_partition_threshold = 0; \
               SET datafusion.optimizer.hash_join_single_partition_threshold_rows = 0;";
    let partitioned = format!("{set} {}", crate::stores::WITHIN_PERSONS);
    let (ok_alone, rows_alone, err_alone) = psql(&alone, "steward", &partitioned, LIMIT);
    assert!(ok_alone, "on one machine: {err_alone}");
    assert!(rows_alone.lines().count() >= 20, "{rows_alone}");
    let (ok, rows, err) = psql(&cluster, "steward", &partitioned, LIMIT);
    assert!(ok, "on the cluster: {err}");
    assert_eq!(
        rows, rows_alone,
        "joins within person ranges: the cluster disagrees"
    );
    let explain = format!("{set} EXPLAIN ANALYZE {}", crate::stores::WITHIN_PERSONS);
    let (ok, plan, err) = psql(&cluster, "steward", &explain, LIMIT);
    assert!(ok, "{err}");
    assert!(plan.contains("within person ranges"), "{plan}");
    assert!(plan.contains("tasks=2"), "{plan}");
    assert!(!plan.contains("NetworkShuffleExec"), "{plan}");
    // The cohorts the self-controlled case series uses several times run
    // within one stage: they stay shared, computed once per task (a plan
    // expectation written here).
    let sccs = study("sccs_nsaid_gi_bleed");
    let explain = format!("EXPLAIN ANALYZE {}", sccs.trim().trim_end_matches(';'));
    let (ok, plan, err) = psql(&cluster, "steward", &explain, LIMIT);
    assert!(ok, "{err}");
    assert!(
        plan.contains("SharedExec") && plan.contains("tasks=2"),
        "{plan}"
    );

    // Every case of the adversarial corpus has the same outcome: released
    // numbers, refusals and their messages.
    let cases = adversarial_cases();
    assert!(cases.len() > 100, "{} cases", cases.len());
    let one = corpus_outcomes(&alone, &cases);
    let many = corpus_outcomes(&cluster, &cases);
    assert!(
        one.iter().any(|o| o.contains("ERROR")),
        "no case refused: {one:?}"
    );
    for (((expected, sql), one), many) in cases.iter().zip(&one).zip(&many) {
        assert_eq!(many, one, "{expected} | {sql}");
    }

    // A worker stopped while a statement runs on it: the statement is run
    // again on the worker left and answers as one machine (it does not
    // hang, and the server stays up); the next statements run there too.
    let long = "SELECT count(*) FROM ndb.drug_exposure a JOIN ndb.drug_exposure b \
                ON a.person_id = b.person_id AND a.drug_concept_id <> b.drug_concept_id";
    let conninfo = cluster.conninfo_as("steward", DEMO_PASSWORD);
    let running = std::thread::spawn(move || {
        Command::new("psql")
            .args([conninfo.as_str(), "-X", "-A", "-t", "-c", long])
            .output()
            .expect("psql is installed")
    });
    std::thread::sleep(Duration::from_millis(700));
    let _ = w2.child.kill();
    let _ = w2.child.wait();
    let out = running.join().expect("psql thread");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = Command::new("psql")
        .args([
            alone.conninfo_as("steward", DEMO_PASSWORD).as_str(),
            "-X",
            "-A",
            "-t",
            "-c",
            long,
        ])
        .output()
        .expect("psql is installed");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&want.stdout),
        "the statement run again on the worker left"
    );
    std::thread::sleep(Duration::from_secs(2));
    for name in ["feasibility_funnel", "nsaid_gi_bleed_new_users"] {
        let sql = study(name);
        let (_, rows_alone, _) = psql(&alone, "steward", &sql, LIMIT);
        let (ok, rows, err) = psql(&cluster, "steward", &sql, LIMIT);
        assert!(ok, "{name} after a worker stopped: {err}");
        assert_eq!(rows, rows_alone, "{name} after a worker stopped");
    }
    // An analyst's statement runs on the workers too (its release on the
    // coordinator): with the last worker stopped, it fails (run on the
    // coordinator alone, it would answer).
    let sql = study("feasibility_funnel");
    let (_, rows_alone, _) = psql(&alone, "analyst", &sql, LIMIT);
    let (ok, rows, err) = psql(&cluster, "analyst", &sql, LIMIT);
    assert!(ok, "as analyst after a worker stopped: {err}");
    assert_eq!(rows, rows_alone, "as analyst after a worker stopped");
    let mut w1 = w1;
    let _ = w1.child.kill();
    let _ = w1.child.wait();
    std::thread::sleep(Duration::from_secs(2));
    let (ok, _, err) = psql(&cluster, "analyst", &sql, LIMIT);
    assert!(!ok && err.contains("ERROR"), "{err}");
}

#[test]
fn workers_take_plans_only_from_a_coordinator_holding_the_cluster_secret() {
    // Two workers, so that the plan is cut into stages run by them.
    let (w1, w2) = (Worker::start(SECRET), Worker::start(SECRET));
    let intruder = coordinator(&[&w1, &w2], "another-secret-0123456789abcdef");
    let sql = study("feasibility_funnel");
    let (ok, _, err) = psql(&intruder, "steward", &sql, LIMIT);
    assert!(!ok, "a plan without the cluster's secret ran");
    assert!(
        err.contains("not a member of this Tsunagu cluster"),
        "{err}"
    );
    assert!(!err.contains(SECRET), "{err}");
    // The worker is still up and serves its own cluster.
    let cluster = coordinator(&[&w1, &w2], SECRET);
    let (ok, rows, err) = psql(&cluster, "steward", &sql, LIMIT);
    assert!(ok, "{err}");
    assert!(!rows.is_empty());
}

/// Writes a certificate authority and a worker certificate it signs, for
/// `localhost` and 127.0.0.1, into `dir`: (authority, certificate, key).
fn cluster_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = |args: &[&str]| crate::common::openssl(dir, args);
    std::fs::write(
        dir.join("worker.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n",
    )
    .expect("extensions written");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=tsunagu test cluster CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "worker.key",
        "-out",
        "worker.csr",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "worker.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "worker.ext",
        "-out",
        "worker.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("worker.pem"),
        dir.join("worker.key"),
    )
}

#[test]
fn workers_over_tls_answer_as_one_machine_and_take_no_plaintext() {
    let dir = state_dir();
    let (ca, cert, key) = cluster_certificates(&dir);
    let (ca, cert, key) = (
        ca.to_string_lossy().into_owned(),
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    );
    let (cache, state) = dirs();
    let env = [
        ("TSUNAGU_CACHE_DIR", cache.as_path()),
        ("TSUNAGU_STATE_DIR", state.as_path()),
    ];
    let tls = [
        "--tls-cert",
        cert.as_str(),
        "--tls-key",
        key.as_str(),
        "--cluster-ca",
        ca.as_str(),
    ];
    // Reachable from the network without --allow-plaintext-on-network:
    // it serves TLS only.
    let mut args = tls.to_vec();
    args.extend(["--listen", "0.0.0.0:0"]);
    let w1 = Worker::start_with(SECRET, &args, &env);
    let w2 = Worker::start_with(SECRET, &tls, &env);
    let alone = Server::start_with(&[]);
    let cluster = coordinator_with(&[&w1, &w2], SECRET, &["--cluster-ca", &ca], &[]);
    for name in ["feasibility_funnel", "hip_fracture_long_term_care"] {
        let sql = study(name);
        let (ok, want, err) = psql(&alone, "steward", &sql, LIMIT);
        assert!(ok && !want.is_empty(), "{name} alone: {err}");
        let (ok, got, err) = psql(&cluster, "steward", &sql, LIMIT);
        assert!(ok, "{name} over TLS: {err}");
        assert_eq!(got, want, "{name}");
    }
    // The plan was cut into stages run by the workers, over TLS.
    let (ok, plan, err) = psql(
        &cluster,
        "steward",
        "EXPLAIN ANALYZE SELECT gender_concept_id, count(*) FROM ndb.person GROUP BY 1",
        LIMIT,
    );
    assert!(ok, "{err}");
    assert!(
        plan.contains("Stage 1") && plan.contains("tasks=2"),
        "{plan}"
    );
    // A coordinator without the authority speaks plaintext to them: refused.
    let plain = coordinator(&[&w1, &w2], SECRET);
    let (ok, _, err) = psql(&plain, "steward", &study("feasibility_funnel"), LIMIT);
    assert!(!ok, "a plaintext coordinator ran a plan on TLS workers");
    assert!(!err.contains(SECRET), "{err}");
    // And one trusting another authority does not accept their certificate.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (other_ca, _, _) = cluster_certificates(&other);
    let stranger = coordinator_with(
        &[&w1, &w2],
        SECRET,
        &["--cluster-ca", &other_ca.to_string_lossy()],
        &[],
    );
    let (ok, _, err) = psql(&stranger, "steward", &study("feasibility_funnel"), LIMIT);
    assert!(!ok, "a certificate of another authority was accepted");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

/// `tsunagu <args> --store <store>` with `state` and the S3 server's
/// environment; its standard output.
fn tsunagu_on(s3: &S3Server, state: &Path, store: &str, args: &[&str]) -> String {
    let out = Command::new(tsunagu())
        .args(args)
        .args(["--store", store])
        .envs(s3.env())
        .env("TSUNAGU_STATE_DIR", state)
        .output()
        .expect("tsunagu runs");
    assert!(
        out.status.success(),
        "tsunagu {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_keeping_an_outline_takes_in_a_delivery_on_object_storage_without_renumbering() {
    let dir = crate::common::temp_folder("tsunagu-s3-deliveries-");
    let (store, second) = (dir.join("store"), dir.join("second"));
    crate::deliveries::split_store(&store, &second).await;
    let s3 = S3Server::start();
    s3.upload(&store, "rwd", "grown");
    let url = "s3://rwd/grown";
    let (first, joining) = (state_dir(), state_dir());
    let refresh = |state: &Path| tsunagu_on(&s3, state, url, &["refresh"]);
    let numbers = |state: &Path| {
        tsunagu_on(
            &s3,
            state,
            url,
            &[
                "sql",
                "--csv",
                "SELECT source, person_key, person_id FROM linked.person ORDER BY 1, 2",
            ],
        )
    };

    // The first machine derives the state; the second keeps an outline.
    assert!(refresh(&first).contains("state derived"), "first open");
    assert!(refresh(&joining).contains("derived state reused"));
    let store_state = only_folder(&joining);
    assert!(store_state.join("outline").is_dir() && !store_state.join("objects").exists());
    let before = numbers(&joining);

    // A delivery lands on object storage: the machine with the outline
    // takes it in, growing the earlier state (fetched whole) so that every
    // person keeps their number, and publishes it; the first machine then
    // reuses it.
    s3.upload(&second, "rwd", "grown");
    let grown = refresh(&joining);
    assert!(grown.contains("new files taken in"), "{grown}");
    assert!(refresh(&first).contains("derived state reused"));
    let after = numbers(&first);
    let after_lines: std::collections::HashSet<&str> = after.lines().collect();
    for line in before.lines() {
        assert!(after_lines.contains(line), "renumbered: {line}");
    }
    assert!(after.lines().count() > before.lines().count());
    // [oracle: the same two deliveries read from a local folder]
    let local = dir.join("local");
    std::fs::create_dir_all(&local).expect("a folder");
    for from in [&store, &second] {
        let copied = Command::new("cp")
            .args([
                "-r",
                &format!("{}/.", from.display()),
                &local.to_string_lossy(),
            ])
            .status()
            .expect("cp runs");
        assert!(copied.success());
    }
    let sql = "SELECT count(*), count(DISTINCT person_id) FROM kaigo.care_service";
    let on_s3 = tsunagu_on(&s3, &joining, url, &["sql", "--csv", sql]);
    let out = Command::new(tsunagu())
        .args(["sql", "--csv", "--store", &local.to_string_lossy(), sql])
        .env("TSUNAGU_STATE_DIR", state_dir())
        .output()
        .expect("tsunagu runs");
    assert_eq!(on_s3, String::from_utf8_lossy(&out.stdout));
}
