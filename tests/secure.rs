//! Secure by default in a shared environment: the server refuses to start
//! open, failed logins are slowed down, audited and locked out, each role
//! has limits, and the audit log can be anchored by signed checkpoints.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tsunagu_engine::audit::{self, AuditLog, Decision, Entry, Event};

use crate::common::{eunomia, state_dir, tsunagu};
use crate::privacy::{add_user, audit_dirs};
use crate::wire::Server;

/// A configuration with users ana, bob (analysts) and sam, sue (stewards),
/// password `<name>-secret`, and `extra` appended.
fn config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("server.toml");
    for (name, role) in [
        ("ana", "analyst"),
        ("bob", "analyst"),
        ("sam", "steward"),
        ("sue", "steward"),
    ] {
        add_user(&path, name, role, &format!("{name}-secret"));
    }
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(extra);
    std::fs::write(&path, text).unwrap();
    path
}

/// Serves the Eunomia store with a configuration and a fresh state folder.
fn serve(config: &Path, state: &Path, extra: &[&str]) -> Server {
    let store = eunomia().to_string_lossy().into_owned();
    let config = config.to_string_lossy().into_owned();
    let state = state.to_string_lossy().into_owned();
    let mut args = vec!["--store", &store, "--state", &state, "--config", &config];
    args.extend_from_slice(extra);
    Server::start_with(&args)
}

struct Psql {
    ok: bool,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

fn conninfo(port: u16, user: &str, password: &str) -> String {
    format!(
        "host=127.0.0.1 port={port} dbname=tsunagu user={user} password={password} sslmode=disable"
    )
}

fn psql_command(port: u16, user: &str, password: &str, sql: &str) -> Command {
    let mut cmd = Command::new("psql");
    cmd.args([
        conninfo(port, user, password).as_str(),
        "-X",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-v",
        "VERBOSITY=verbose",
        "-c",
        sql,
    ]);
    cmd
}

fn done(out: Output, started: Instant) -> Psql {
    Psql {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// Runs SQL with psql, timed.
fn psql(port: u16, user: &str, password: &str, sql: &str) -> Psql {
    let started = Instant::now();
    let out = psql_command(port, user, password, sql)
        .output()
        .expect("psql is installed");
    done(out, started)
}

/// An open connection (psycopg) that stays open until dropped.
struct Held(Child);

impl Held {
    fn open(port: u16, user: &str, password: &str) -> Held {
        let mut child = Command::new("python3")
            .args([
                "-c",
                "import psycopg, sys\n\
                 c = psycopg.connect(sys.argv[1], autocommit=True)\n\
                 print('connected', flush=True)\n\
                 sys.stdin.read()\n",
                &conninfo(port, user, password),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "connected", "{user} could not connect");
        Held(child)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_store_is_never_served_without_configured_users_or_openly_on_the_network() {
    // A real store without users: refused, with how to add one.
    let out = Command::new(tsunagu())
        .args(["serve", "--listen", "127.0.0.1:0", "--store"])
        .arg(eunomia())
        .arg("--state")
        .arg(state_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tsunagu user add NAME --role analyst --config server.toml")
            && err.contains("--config server.toml"),
        "{err}"
    );
    // Beyond loopback without TLS: refused unless allowed explicitly.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let state = state_dir();
    let out = Command::new(tsunagu())
        .args(["serve", "--listen", "0.0.0.0:0", "--store"])
        .arg(eunomia())
        .arg("--state")
        .arg(&state)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("allow_plaintext_on_network") && err.contains("TLS"),
        "{err}"
    );
    let server = serve(
        &cfg,
        &state,
        &["--listen", "0.0.0.0:0", "--allow-plaintext-on-network"],
    );
    let r = psql(server.port, "sam", "sam-secret", "SELECT current_user");
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(r.stdout, "sam");
    // The demo logins do not exist on a real store.
    let r = psql(server.port, "steward", "tsunagu", "SELECT 1");
    assert!(!r.ok);
    drop(server);
    // The same consent, given in the configuration file.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace(
            "[server]\n",
            "[server]\nallow_plaintext_on_network = true\n",
        ),
    )
    .unwrap();
    let server = serve(&cfg, &state, &["--listen", "0.0.0.0:0"]);
    let r = psql(server.port, "sue", "sue-secret", "SELECT current_user");
    assert!(r.ok, "{}", r.stderr);
}

#[test]
fn failed_logins_slow_down_lock_the_user_and_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "\n[server.logins]\nmax_failures = 4\nlockout_seconds = 60\nbase_delay_ms = 200\nmax_delay_ms = 1600\n",
    );
    let state = state_dir();
    let server = serve(&cfg, &state, &[]);
    let port = server.port;
    let r = psql(port, "ana", "ana-secret", "SELECT current_user");
    assert!(r.ok, "{}", r.stderr);
    // Wrong passwords: 200, 400, 800, 1600 ms; the fourth locks ana.
    let mut elapsed = Vec::new();
    for i in 0..4 {
        let r = psql(port, "ana", &format!("guess-{i}"), "SELECT 1");
        assert!(
            !r.ok && r.stderr.contains("authentication failed"),
            "{}",
            r.stderr
        );
        elapsed.push(r.elapsed);
    }
    // Each answer waits at least its delay (an upper bound would measure the machine).
    for (took, delay) in elapsed.iter().zip([200, 400, 800, 1600]) {
        assert!(*took >= Duration::from_millis(delay), "{elapsed:?}");
    }
    // Locked: the right password is refused too.
    let r = psql(port, "ana", "ana-secret", "SELECT 1");
    assert!(
        !r.ok && r.stderr.contains("too many failed logins; try again later"),
        "{}",
        r.stderr
    );
    // An unknown user fails the same way, slowed down by the address's failures.
    let r = psql(port, "nobody", "guess", "SELECT 1");
    assert!(
        !r.ok && r.stderr.contains("authentication failed"),
        "{}",
        r.stderr
    );
    assert!(r.elapsed >= Duration::from_millis(1600), "{:?}", r.elapsed);
    // Other users still log in.
    let r = psql(port, "bob", "bob-secret", "SELECT current_user");
    assert!(r.ok, "{}", r.stderr);
    drop(server);

    let dir = audit_dirs(&state).pop().expect("an audit folder");
    let logins: Vec<_> = audit::records(&dir)
        .unwrap()
        .into_iter()
        .filter(|r| r.event == Some(Event::Login))
        .map(|r| {
            assert!(
                r.address
                    .as_deref()
                    .is_some_and(|a| a.starts_with("127.0.0.1:")),
                "{r:?}"
            );
            (r.user, r.decision, r.rule.unwrap_or_default())
        })
        .collect();
    let refused = |user: &str, rule: &str| (user.to_owned(), Decision::Refused, rule.to_owned());
    let allowed = |user: &str| (user.to_owned(), Decision::Allowed, String::new());
    assert_eq!(
        logins,
        [
            allowed("ana"),
            refused("ana", "password"),
            refused("ana", "password"),
            refused("ana", "password"),
            refused("ana", "password"),
            refused("ana", "locked"),
            refused("nobody", "password"),
            allowed("bob"),
        ]
    );
    assert!(audit::verify(&dir).is_ok());
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        assert!(
            !text.contains("secret") && !text.contains("guess"),
            "a password is in {}",
            e.path().display()
        );
    }
}

/// A statement that runs for hours on Eunomia, in little memory: the
/// 67,707 drug exposures paired with themselves and with 1,037 visits, row
/// by row.
const HEAVY: &str = "SELECT count(*) FROM cdm.drug_exposure a CROSS JOIN cdm.drug_exposure b \
                     CROSS JOIN cdm.visit_occurrence v \
                     WHERE a.drug_exposure_id + b.drug_exposure_id + v.visit_occurrence_id = 7";

#[test]
fn limits_per_role_refuse_the_user_over_them_and_no_one_else() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "\n[limits.analyst]\nmax_connections_per_user = 2\n\
         \n[limits.steward]\nstatement_timeout = \"8s\"\nmax_concurrent_statements_per_user = 1\n",
    );
    let state = state_dir();
    let server = serve(&cfg, &state, &[]);
    let port = server.port;
    // Two stewards start heavy statements.
    let started = Instant::now();
    let mut heavy: Vec<Child> = ["sam", "sue"]
        .into_iter()
        .map(|user| {
            psql_command(port, user, &format!("{user}-secret"), HEAVY)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1000));
    // sam's second statement at once is refused.
    let r = psql(port, "sam", "sam-secret", HEAVY);
    assert!(
        !r.ok && r.stderr.contains("53400") && r.stderr.contains("too many statements running"),
        "{}",
        r.stderr
    );
    // A third user's small queries keep answering meanwhile.
    for _ in 0..3 {
        let r = psql(
            port,
            "bob",
            "bob-secret",
            "SELECT count(*) > 0 FROM vocab.concept",
        );
        assert!(r.ok, "{}", r.stderr);
        assert_eq!(r.stdout, "t");
        assert!(r.elapsed < Duration::from_secs(4), "{:?}", r.elapsed);
    }
    for h in heavy.iter_mut() {
        assert!(
            h.try_wait().unwrap().is_none(),
            "the small queries did not overlap the heavy ones"
        );
    }
    // ana may hold two connections, not three; bob still connects.
    let held = [
        Held::open(port, "ana", "ana-secret"),
        Held::open(port, "ana", "ana-secret"),
    ];
    let r = psql(port, "ana", "ana-secret", "SELECT 1");
    assert!(
        // (psql shows no SQLSTATE for a refused connection; it is 53300)
        !r.ok
            && r.stderr
                .contains("too many connections for user \"ana\": at most 2"),
        "{}",
        r.stderr
    );
    let r = psql(port, "bob", "bob-secret", "SELECT 1");
    assert!(r.ok, "{}", r.stderr);
    drop(held);
    // Their slots are given back when the server sees the connections close.
    let freed = Instant::now();
    loop {
        let r = psql(port, "ana", "ana-secret", "SELECT 1");
        if r.ok {
            break;
        }
        assert!(freed.elapsed() < Duration::from_secs(5), "{}", r.stderr);
        std::thread::sleep(Duration::from_millis(200));
    }
    // The heavy statements end at their role's timeout.
    for child in heavy {
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains("57014") && err.contains("statement timeout"),
            "{err}"
        );
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(8) && elapsed < Duration::from_secs(20),
        "{elapsed:?}"
    );
    // And sam runs statements again afterwards.
    let r = psql(port, "sam", "sam-secret", "SELECT 1");
    assert!(r.ok, "{}", r.stderr);
}

/// Rewrites a whole audit log, as someone with write access to its folder
/// could: record `seq`'s SQL replaced, every hash and `HEAD` recomputed.
fn rewrite_log(dir: &Path, seq: u64, sql: &str) {
    use sha2::{Digest, Sha256};
    let mut prev = "0".repeat(64);
    let mut lines = String::new();
    let mut head = String::new();
    for mut r in audit::records(dir).unwrap() {
        if r.seq == seq {
            r.sql = sql.to_owned();
        }
        r.prev = prev.clone();
        let hash: String = Sha256::digest(serde_json::to_vec(&r).unwrap())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut line = serde_json::to_value(&r).unwrap();
        line["hash"] = hash.clone().into();
        lines.push_str(&format!("{line}\n"));
        head = serde_json::json!({"seq": r.seq, "hash": hash}).to_string();
        prev = hash;
    }
    std::fs::write(dir.join("audit-000001.jsonl"), lines).unwrap();
    std::fs::write(dir.join("HEAD"), head).unwrap();
}

#[test]
fn a_signed_checkpoint_detects_a_log_rewritten_wholesale() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("audit");
    let log = AuditLog::open(&log_dir).unwrap();
    for sql in ["SELECT 1", "SELECT person_id FROM cdm.person", "SELECT 3"] {
        log.append(Entry::statement(
            "sam",
            "steward",
            sql,
            Decision::Allowed,
            None,
        ))
        .unwrap();
    }
    let run = |args: &[&str]| {
        Command::new(tsunagu())
            .arg("audit")
            .args(args)
            .output()
            .unwrap()
    };
    let text = |p: &Path| p.to_string_lossy().into_owned();
    let key = dir.path().join("audit.key");
    let out = run(&["keygen", "--out", &text(&key)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = dir.path().join("audit.key.pub");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        std::fs::read_to_string(&public).unwrap().trim()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the secret key is readable by others");
    }
    let checkpoint = dir.path().join("checkpoint.json");
    let out = run(&[
        "checkpoint",
        "--key",
        &text(&key),
        "--dir",
        &text(&log_dir),
        "--out",
        &text(&checkpoint),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verify = |checkpoint: &Path| {
        run(&[
            "verify",
            "--dir",
            &text(&log_dir),
            "--checkpoint",
            &text(checkpoint),
            "--public-key",
            &text(&public),
        ])
    };
    // Later records keep the checkpoint valid.
    log.append(Entry::statement(
        "sam",
        "steward",
        "SELECT 4",
        Decision::Allowed,
        None,
    ))
    .unwrap();
    let out = verify(&checkpoint);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("holds record 3 as checkpointed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Rewritten wholesale: the chain verifies on its own, not against the checkpoint.
    rewrite_log(&log_dir, 2, "SELECT count(*) FROM cdm.person");
    let out = run(&["verify", "--dir", &text(&log_dir)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = verify(&checkpoint);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("record 3") && err.contains("rewritten"),
        "{err}"
    );
    // A tampered checkpoint is refused for its signature.
    let mut cp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&checkpoint).unwrap()).unwrap();
    cp["seq"] = 1.into();
    let forged = dir.path().join("forged.json");
    std::fs::write(&forged, cp.to_string()).unwrap();
    let out = verify(&forged);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("signature"), "{err}");
    let _ = std::io::stdout().flush();
}

#[tokio::test]
async fn a_query_over_its_memory_limit_fails_and_the_session_goes_on() {
    let engine = crate::common::open(&eunomia()).await;
    let session = engine.session().unwrap();
    let sql = "SELECT gender_concept_id, count(DISTINCT year_of_birth) FROM cdm.person GROUP BY 1 ORDER BY 1";
    session.set_query_memory_limit(Some(1024));
    let e = session.sql(sql).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("more memory than its limit of 0 MiB"),
        "{e}"
    );
    match &e {
        tsunagu_engine::EngineError::DataFusion(d) => assert!(matches!(
            d.find_root(),
            datafusion::error::DataFusionError::ResourcesExhausted(_)
        )),
        other => panic!("{other:?}"),
    }
    // Other sessions, and this one with room again, are not affected.
    let other = engine.session().unwrap();
    let unlimited = other.sql(sql).await.unwrap();
    assert!(!unlimited.is_empty());
    session.set_query_memory_limit(Some(64 << 20));
    assert_eq!(session.sql(sql).await.unwrap(), unlimited);
    // Once computed, the same statement on the same snapshot is answered
    // from the kept answer: nothing runs, so no memory is needed.
    session.set_query_memory_limit(Some(1024));
    assert_eq!(session.sql(sql).await.unwrap(), unlimited);
}

#[test]
fn a_query_over_its_roles_memory_fails_with_53200_and_the_session_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "\n[limits.analyst]\nmemory_per_query = \"1K\"\n",
    );
    let state = state_dir();
    let server = serve(&cfg, &state, &[]);
    let sql = "SELECT gender_concept_id, count(*) FROM cdm.person GROUP BY 1 ORDER BY 1";
    let r = psql(server.port, "bob", "bob-secret", sql);
    assert!(
        !r.ok && r.stderr.contains("53200") && r.stderr.contains("more memory than its limit"),
        "{}",
        r.stderr
    );
    // A steward has no limit of its own; bob's next statements run.
    let r = psql(server.port, "sam", "sam-secret", sql);
    assert!(r.ok, "{}", r.stderr);
    let r = psql(server.port, "bob", "bob-secret", "SELECT 1");
    assert!(r.ok, "{}", r.stderr);
}

/// The server's resident memory in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[test]
fn under_load_a_third_user_keeps_answering_and_memory_stays_under_its_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "\n[limits.analyst]\nmax_connections_per_user = 3\nmemory_per_query = \"64M\"\n",
    );
    let state = state_dir();
    let server = serve(&cfg, &state, &["--memory-limit", "256M"]);
    let (port, pid) = (server.port, server.child.id());
    // ana: a memory-hungry legitimate query (a within-person self-join,
    // grouped), in a loop; each run answers or fails with 53200.
    let hungry = "SELECT a.drug_concept_id, count(*) AS n, count(DISTINCT a.person_id) AS persons \
                  FROM cdm.drug_exposure a JOIN cdm.drug_exposure b ON a.person_id = b.person_id \
                  JOIN cdm.condition_occurrence c ON c.person_id = a.person_id GROUP BY 1";
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loop_stop = stop.clone();
    let looping = std::thread::spawn(move || {
        let mut runs = 0;
        while !loop_stop.load(std::sync::atomic::Ordering::Relaxed) && runs < 30 {
            // A different statement each time: a kept answer would not load the server.
            let hungry = hungry.replace(
                " GROUP BY 1",
                &format!(" WHERE a.drug_concept_id <> -{runs} GROUP BY 1"),
            );
            let r = psql(port, "ana", "ana-secret", &hungry);
            assert!(r.ok || r.stderr.contains("53200"), "{}", r.stderr);
            runs += 1;
        }
        runs
    });
    // bob opens connections until refused.
    let mut held = Vec::new();
    let refused = loop {
        if held.len() == 3 {
            let r = psql(port, "bob", "bob-secret", "SELECT 1");
            break r;
        }
        held.push(Held::open(port, "bob", "bob-secret"));
    };
    assert!(
        !refused.ok && refused.stderr.contains("too many connections"),
        "{}",
        refused.stderr
    );
    // sue's small queries keep answering within a bounded latency, and the
    // server stays under its memory ceiling.
    let ceiling = 256 * 1024 * 1024 + 768 * 1024 * 1024;
    let mut peak = 0;
    for _ in 0..10 {
        let r = psql(port, "sue", "sue-secret", "SELECT count(*) FROM cdm.person");
        assert!(r.ok, "{}", r.stderr);
        assert!(r.elapsed < Duration::from_secs(5), "{:?}", r.elapsed);
        peak = peak.max(rss(pid));
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let runs = looping.join().unwrap();
    peak = peak.max(rss(pid));
    assert!(runs >= 1);
    assert!(peak > 0 && peak < ceiling, "peak RSS {peak} over {ceiling}");
    drop(held);
}

/// The first open of a served store answers from the delivered files while
/// the person layout is written behind; once it is in place, the same
/// statements give the same answers as a server that waited for it.
#[test]
fn a_server_answers_at_once_and_writes_the_person_layout_behind() {
    let dir = crate::common::temp_folder("tsunagu-layout-serve-");
    let config = config(&dir, "");
    let sql = "SELECT count(*), count(DISTINCT person_id), min(condition_start_date), \
               max(person_id) FROM cdm.condition_occurrence; \
               SELECT gender_concept_id, count(*) FROM cdm.person GROUP BY 1 ORDER BY 1";
    let state = state_dir();
    let server = serve(&config, &state, &[]);
    let early = psql(server.port, "sam", "sam-secret", sql);
    assert!(early.ok, "{}", early.stderr);
    // Every person-level table's copy lands in the state folder.
    let derived = std::fs::read_dir(state.join("derived"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("complete.json").is_file())
        .expect("the state is derived");
    let copies = [
        "condition_occurrence",
        "drug_exposure",
        "person",
        "visit_occurrence",
    ]
    .map(|t| {
        derived
            .join("layout/cdm")
            .join(t)
            .join("range-00000.parquet")
    });
    let started = Instant::now();
    while !copies.iter().all(|c| c.is_file()) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the person layout is not written: {copies:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!state.join("layout-work").exists());
    std::thread::sleep(Duration::from_millis(500));
    let late = psql(server.port, "sam", "sam-secret", sql);
    assert!(late.ok, "{}", late.stderr);
    assert_eq!(early.stdout, late.stdout);

    let waited = serve(&config, &state_dir(), &["--wait-for-layout"]);
    let expected = psql(waited.port, "sam", "sam-secret", sql);
    assert!(expected.ok, "{}", expected.stderr);
    assert_eq!(early.stdout, expected.stdout);
    assert!(expected.stdout.lines().count() >= 3, "{}", expected.stdout);
}
