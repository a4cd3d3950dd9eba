//! Real Postgres clients against `tsunagu serve` on the built-in demo store.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::{repo, tsunagu};

/// Cache and state folders shared by every server of the test run.
pub fn dirs() -> &'static (PathBuf, PathBuf) {
    static DIRS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    DIRS.get_or_init(|| {
        let cache = crate::common::state_dir();
        let state = crate::common::state_dir();
        // The first use generates the demo store; `sql` without --store uses it.
        let out = Command::new(tsunagu())
            .args(["sql", "--csv", "SELECT count(*) AS n FROM ndb.person"])
            .env("TSUNAGU_CACHE_DIR", &cache)
            .env("TSUNAGU_STATE_DIR", &state)
            .output()
            .expect("tsunagu runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (cache, state)
    })
}

/// A running `tsunagu serve`, stopped when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
    /// The dashboards' address, when served with `--http`.
    pub http: Option<String>,
}

/// The password of the demo logins.
pub const DEMO_PASSWORD: &str = "tsunagu";

impl Server {
    /// The demo store with its demo logins.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// The demo store (or `--store`), with extra `serve` arguments (listening
    /// on a free loopback port unless `--listen` is among them).
    pub fn start_with(extra: &[&str]) -> Server {
        Server::start_with_env(extra, &[])
    }

    /// As [`Server::start_with`], with extra environment variables.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Server {
        let (cache, state) = dirs();
        let listen: &[&str] = if extra.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let mut child = Command::new(tsunagu())
            .arg("serve")
            .args(listen)
            .args(extra)
            .env("TSUNAGU_CACHE_DIR", cache)
            .env("TSUNAGU_STATE_DIR", state)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("tsunagu serve starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut port = None;
        let mut http = None;
        let mut psql_line = None;
        for line in lines.by_ref() {
            let line = line.expect("server output");
            if line.starts_with("tsunagu: dashboards (")
                && let Some((_, url)) = line.split_once(" on ")
            {
                http = Some(url.trim().to_owned());
            }
            if let Some(rest) = line.strip_prefix("tsunagu: listening on ") {
                let addr = rest.split([';', ' ']).next().unwrap();
                port = Some(addr.rsplit(':').next().unwrap().parse().unwrap());
            }
            if line.trim_start().starts_with("psql ") {
                psql_line = Some(line);
                break;
            }
        }
        let port = port.expect("the server prints its address");
        assert!(
            psql_line
                .unwrap()
                .contains(&format!("port={port} dbname=tsunagu user="))
        );
        std::thread::spawn(move || for _ in lines {});
        Server { child, port, http }
    }

    /// The steward demo login.
    pub fn conninfo(&self) -> String {
        self.conninfo_as("steward", DEMO_PASSWORD)
    }

    /// A login by name and password.
    pub fn conninfo_as(&self, user: &str, password: &str) -> String {
        format!(
            "host=127.0.0.1 port={} dbname=tsunagu user={user} password={password} sslmode=disable",
            self.port
        )
    }

    /// Runs SQL with psql as the steward demo login.
    pub fn psql(&self, sql: &str) -> (bool, String, String) {
        self.psql_as(&self.conninfo(), sql)
    }

    /// Runs SQL with psql over a connection string.
    pub fn psql_as(&self, conninfo: &str, sql: &str) -> (bool, String, String) {
        let out = Command::new("psql")
            .args([
                conninfo,
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .expect("psql is installed");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn psql_queries_linked_person_and_every_source_schema() {
    let server = Server::start();
    for table in [
        "linked.person",
        "ndb.person",
        "ndb.drug_exposure",
        "dpc.visit_occurrence",
        "kaigo.care_service",
        "vocab.concept",
    ] {
        let (ok, out, err) = server.psql(&format!("SELECT count(*) FROM {table}"));
        assert!(ok, "{table}: {err}");
        assert!(out.parse::<u64>().unwrap() > 0, "{table}: {out}");
    }
    let (ok, out, _) = server.psql("SELECT source, count(DISTINCT person_id) FROM linked.person GROUP BY source ORDER BY source");
    assert!(ok);
    let sources: Vec<&str> = out.lines().map(|l| l.split('|').next().unwrap()).collect();
    assert_eq!(sources, vec!["dpc", "kaigo", "ndb"]);
    // Every study of the use-case library runs as a psql script on the demo
    // store, as the analyst: the privacy layer releases what studies need.
    let mut studies: Vec<_> = std::fs::read_dir(repo().join("sql/studies"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    studies.sort();
    assert!(studies.len() >= 12, "{studies:?}");
    for study in studies {
        let out = Command::new("psql")
            .args([
                server.conninfo_as("analyst", DEMO_PASSWORD).as_str(),
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-f",
            ])
            .arg(&study)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            study.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stdout.is_empty(), "{}", study.display());
        if study.ends_with("feasibility_funnel.sql") {
            assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 5);
        }
    }
    // Dates, numbers and text come back in Postgres' text forms.
    let (ok, out, err) =
        server.psql("SELECT DATE '2020-01-02', CAST(1.5 AS DOUBLE), true, 'x', CAST(7 AS BIGINT)");
    assert!(ok, "{err}");
    assert_eq!(out, "2020-01-02|1.5|t|x|7");
    // Timestamps and times as PostgreSQL 15 prints them (`psql -At` against
    // a real server): no fraction when there is none, trailing zeros dropped.
    let (ok, out, err) = server.psql(
        "SELECT TIMESTAMP '1936-10-15 00:00:00', TIMESTAMP '2011-01-05 12:00:00.5', \
         DATE '1936-10-01' + 14 * INTERVAL '1 day', CAST('05:35:38.8' AS TIME)",
    );
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "1936-10-15 00:00:00|2011-01-05 12:00:00.5|1936-10-15 00:00:00|05:35:38.8"
    );
}

/// One statement through psql with verbose errors (the SQLSTATE shown).
fn psql_verbose(server: &Server, sql: &str) -> std::process::Output {
    Command::new("psql")
        .args([
            server.conninfo().as_str(),
            "-X",
            "-v",
            "VERBOSITY=verbose",
            "-c",
            sql,
        ])
        .output()
        .unwrap()
}

#[test]
fn psql_sees_errors_with_sqlstate() {
    let server = Server::start();
    let out = psql_verbose(&server, "SELECT * FROM ndb.no_such_table");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("42P01"), "{err}");
    let (ok, _, err) = server.psql("SELEC 1");
    assert!(!ok && err.contains("ERROR"), "{err}");
    // The connection stays usable after an error, and session statements are accepted.
    let (ok, out, err) = server.psql(
        "BEGIN; SET search_path TO ndb; SHOW search_path; SELECT count(*) > 0 FROM person; COMMIT",
    );
    assert!(ok, "{err}");
    assert!(out.ends_with('t') || out.contains("\nt"), "{out}");
}

/// Integer overflow is PostgreSQL's error for the steward (PostgreSQL
/// 15.18's answers, recorded with `psql -v VERBOSITY=verbose`), with no
/// value in its message; results within range are unchanged.
#[test]
fn integer_overflow_is_postgresqls_error() {
    let server = Server::start();
    for (sql, message) in [
        (
            "SELECT CAST(2147483647 AS INT) + CAST(1 AS INT)",
            "22003: integer out of range",
        ),
        (
            "SELECT 9223372036854775807 + 1",
            "22003: bigint out of range",
        ),
        (
            "SELECT CAST(-9223372036854775807 AS BIGINT) * 2",
            "22003: bigint out of range",
        ),
        (
            "SELECT CAST(32767 AS SMALLINT) + CAST(1 AS SMALLINT)",
            "22003: smallint out of range",
        ),
        (
            "SELECT CAST(3000000000 AS INT)",
            "22003: integer out of range",
        ),
        (
            "SELECT year_of_birth * 9223372036854775 FROM ndb.person",
            "22003: bigint out of range",
        ),
    ] {
        let out = psql_verbose(&server, sql);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{sql}");
        assert!(err.contains(&format!("ERROR:  {message}")), "{sql}: {err}");
    }
    let (ok, out, err) = server.psql(
        "SELECT CAST(2147483646 AS INT) + CAST(1 AS INT), 9223372036854775806 + 1, \
         CAST(-3037000499 AS BIGINT) * 3037000499",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "2147483647|9223372036854775807|-9223372030926249001");
}

/// Long chains (thousands of `UNION ALL` branches, `+` terms or tables in
/// `FROM`) are parsed into trees as deep as the chain: past the limit they
/// are refused with 54001 instead of exhausting a stack (or holding a core
/// for minutes) and the server keeps serving; at the limit they answer
/// (hand-computed counts and sums).
#[test]
fn statements_too_long_to_plan_are_refused_and_the_server_stays_up() {
    let server = Server::start();
    let union = |n: usize| {
        let branches: Vec<String> = (0..n).map(|i| format!("SELECT {i} AS x")).collect();
        format!(
            "SELECT count(*), sum(x) FROM ({}) t",
            branches.join(" UNION ALL ")
        )
    };
    let plus = |n: usize| format!("SELECT {}", vec!["1"; n].join(" + "));
    // Tables joined by commas: planning time grows faster than the square
    // of their number, so past 250 they are refused before planning.
    let commas = |n: usize| {
        let tables: Vec<String> = (1..n).map(|i| format!("(VALUES (1)) t{i}(x)")).collect();
        format!(
            "SELECT count(*) FROM (VALUES (1), (2)) t0(x), {}",
            tables.join(", ")
        )
    };
    for sql in [union(5000), plus(20000), commas(3000)] {
        // Longer than one command-line argument may be: sent on stdin.
        let mut child = Command::new("psql")
            .args([
                server.conninfo().as_str(),
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-v",
                "VERBOSITY=verbose",
                "-f",
                "-",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(sql.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("54001"), "{err}");
    }
    // The limit is 1000 in a row: 1000 branches are 999 set operations.
    let (ok, out, err) = server.psql(&union(1000));
    assert!(ok, "{err}");
    assert_eq!(out, "1000|499500");
    let (ok, out, err) = server.psql(&plus(1000));
    assert!(ok, "{err}");
    assert_eq!(out, "1000");
    // 251 relations are 250 joins: 2 rows times 1 row, 250 times.
    let (ok, out, err) = server.psql(&commas(251));
    assert!(ok, "{err}");
    assert_eq!(out, "2");
}

#[test]
fn psycopg_text_binary_parameters_types_errors_concurrency_cancel() {
    let server = Server::start();
    let out = Command::new("python3")
        .arg(repo().join("tests/clients/psycopg_check.py"))
        .arg(server.conninfo())
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "psycopg checks failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

#[test]
fn statements_run_again_answer_as_computed_afresh_and_are_each_audited() {
    let server = Server::start();
    let runs = 40;
    crate::common::client_check(
        "python3",
        "tests/clients/reuse_check.py",
        &[&server.conninfo(), &runs.to_string()],
        " passed, 0 failed",
    );
    // Kept plans and answers still leave one record per run.
    let (_, state) = dirs();
    let dirs = crate::privacy::audit_dirs(state);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    tsunagu_engine::audit::verify(&dirs[0]).unwrap();
    let marked: Vec<_> = tsunagu_engine::audit::records(&dirs[0])
        .unwrap()
        .into_iter()
        .filter(|r| r.sql.contains("reuse_marker"))
        .collect();
    // Three protocols, then three as steward, six as analyst, one as steward.
    assert_eq!(marked.len(), 3 * runs + 10, "{marked:#?}");
    assert!(marked.iter().all(|r| r.user == "steward"
        && r.decision == tsunagu_engine::audit::Decision::Allowed
        && r.rows == Some(2)));
    assert_eq!(marked.iter().filter(|r| r.role == "analyst").count(), 6);
}

#[test]
fn sigterm_shuts_the_server_down_cleanly() {
    let mut server = Server::start();
    let (ok, _, err) = server.psql("SELECT 1");
    assert!(ok, "{err}");
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the server did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
