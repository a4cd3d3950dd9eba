//! A project from application to end of use, over the wire with psql and
//! psycopg: create, approve, connect as a member, build a cohort, save a
//! result, a release that fails its checks, the fixed one approved into the
//! outbox, close, and refusals before, after and for non-members. Oracles:
//! the steward's whole-store answers (scope, population, pseudonyms) and
//! hand-checked files (outbox CSV hash, audit chain).

use std::path::Path;
use std::process::Command;

use crate::common::{open, query, synthetic, temp_folder, tsunagu};
use crate::privacy::add_user;
use crate::wire::Server;

fn cli(store: &Path, state: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(tsunagu())
        .arg(args[0])
        .arg("--store")
        .arg(store)
        .arg("--state")
        .arg(state)
        .args(&args[1..])
        .output()
        .expect("tsunagu runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn conninfo(port: u16, user: &str, db: &str) -> String {
    format!(
        "host=127.0.0.1 port={port} dbname={db} user={user} password={user}-secret sslmode=disable"
    )
}

/// psql `-c sql` as `user` on database `db`: (success, stdout + stderr).
fn psql(port: u16, user: &str, db: &str, sql: &str) -> (bool, String) {
    let out = Command::new("psql")
        .args([
            conninfo(port, user, db).as_str(),
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
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Runs statements with psycopg, one per line of `sql`; prints `ok` and the
/// rows, or `error: SQLSTATE message`, per statement.
fn psycopg(port: u16, user: &str, db: &str, statements: &[&str]) -> Vec<String> {
    let script = "import psycopg, sys, json\n\
        c = psycopg.connect(sys.argv[1], autocommit=True)\n\
        for s in json.loads(sys.argv[2]):\n\
        \x20   try:\n\
        \x20       cur = c.execute(s)\n\
        \x20       rows = cur.fetchall() if cur.description else []\n\
        \x20       print(json.dumps(['ok', [[str(v) for v in r] for r in rows]]))\n\
        \x20   except psycopg.Error as e:\n\
        \x20       print(json.dumps(['error', (e.sqlstate or '') + ' ' + str(e)]))\n";
    let out = Command::new("python3")
        .args([
            "-c",
            script,
            &conninfo(port, user, db),
            &serde_json::to_string(statements).unwrap(),
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Every `person_id` a steward sees in `ndb.person` of database `db`.
fn person_ids(port: u16, db: &str) -> std::collections::HashSet<i64> {
    let (ok, out) = psql(port, "sam", db, "SELECT person_id FROM ndb.person");
    assert!(ok, "{out}");
    out.lines()
        .map(|l| l.trim().parse::<i64>().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_project_from_application_to_end_of_use() {
    let store = synthetic();
    let state = temp_folder("tsunagu-projects-");
    let config = state.join("server.toml");
    for (name, role) in [("ana", "analyst"), ("bob", "analyst"), ("sam", "steward")] {
        add_user(&config, name, role, &format!("{name}-secret"));
    }
    // The steward's truth on the whole store.
    let engine = open(store).await;
    let rare_year = query(
        &engine,
        "SELECT year_of_birth FROM ndb.person GROUP BY year_of_birth HAVING count(*) BETWEEN 1 AND 4 ORDER BY year_of_birth LIMIT 1",
    )
    .await[0]
        .clone();
    let in_period = query(
        &engine,
        "SELECT count(*) FROM ndb.drug_exposure WHERE drug_exposure_start_date <= DATE '2019-12-31' AND drug_exposure_end_date >= DATE '2018-01-01'",
    )
    .await[0]
        .clone();
    let care_in_period = query(
        &engine,
        "SELECT count(*) FROM kaigo.care_service WHERE service_month BETWEEN DATE '2018-01-01' AND DATE '2019-12-31'",
    )
    .await[0]
        .clone();
    let born_before_1950 = query(
        &engine,
        "SELECT count(DISTINCT person_id) FROM ndb.person WHERE year_of_birth < 1950",
    )
    .await[0]
        .clone();
    drop(engine);

    let create = |id: &str| {
        cli(
            store,
            &state,
            &[
                "project",
                "create",
                id,
                "--title",
                "NSAIDs and GI bleeding",
                "--purpose",
                "post-marketing safety",
                "--member",
                "ana",
                "--table",
                "ndb.person",
                "--table",
                "ndb.drug_exposure",
                "--columns",
                "ndb.person=person_id,year_of_birth,gender_concept_id",
                "--period-start",
                "2018-01-01",
                "--period-end",
                "2019-12-31",
                "--start",
                "2020-01-01",
                "--end",
                "2099-12-31",
                "--k",
                "11",
            ],
        )
    };
    let (ok, out) = create("nsaid");
    assert!(ok, "{out}");
    let (ok, out) = create("nsaid");
    assert!(!ok && out.contains("already exists"), "{out}");

    let config_s = config.to_string_lossy().into_owned();
    let (store_s, state_s) = (
        store.to_string_lossy().into_owned(),
        state.to_string_lossy().into_owned(),
    );
    let server = Server::start_with(&[
        "--store", &store_s, "--state", &state_s, "--config", &config_s,
    ]);
    let port = server.port;

    // Proposed, not approved: refused at login with the reason.
    let (ok, out) = psql(port, "ana", "nsaid", "SELECT 1");
    assert!(!ok && out.contains("not approved yet"), "{out}");
    let (ok, out) = cli(store, &state, &["project", "approve", "nsaid"]);
    assert!(ok, "{out}");

    // Once the store has projects, analysts work inside one: the whole
    // store is refused, naming the member's projects; stewards still reach it.
    let (ok, out) = psql(port, "ana", "tsunagu", "SELECT 1");
    assert!(
        !ok && out.contains("inside a project") && out.contains("(nsaid)"),
        "{out}"
    );
    let (ok, out) = psql(port, "bob", "tsunagu", "SELECT 1");
    assert!(!ok && out.contains("member of no open project"), "{out}");
    let (ok, out) = psql(port, "sam", "tsunagu", "SELECT 1");
    assert!(ok, "{out}");
    // A non-member is refused; an unknown database is named as such.
    let (ok, out) = psql(port, "bob", "nsaid", "SELECT 1");
    assert!(
        !ok && out.contains("not a member of project \"nsaid\""),
        "{out}"
    );
    let (ok, out) = psql(port, "ana", "nosuch", "SELECT 1");
    assert!(!ok && out.contains("does not exist"), "{out}");

    // Scope: only its tables and columns, in catalogs and queries.
    let (ok, out) = psql(
        port,
        "ana",
        "nsaid",
        "SELECT table_schema || '.' || table_name FROM information_schema.tables WHERE table_schema IN ('ndb','dpc','kaigo','linked') ORDER BY 1",
    );
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "ndb.drug_exposure\nndb.person", "{out}");
    let (ok, out) = psql(
        port,
        "ana",
        "nsaid",
        "SELECT count(*) FROM ndb.visit_occurrence",
    );
    assert!(!ok && out.contains("not found"), "{out}");
    // The knowledge graph is the whole store's (its data-derived edges count
    // persons outside the project's population): not shown inside a project.
    for table in ["graph.edges", "graph.nodes"] {
        let (ok, out) = psql(
            port,
            "ana",
            "nsaid",
            &format!("SELECT count(*) FROM {table}"),
        );
        assert!(!ok && out.contains("not found"), "{table}: {out}");
    }
    let (ok, out) = psql(
        port,
        "ana",
        "nsaid",
        "SELECT count(*) FROM ndb.person WHERE month_of_birth = 1",
    );
    assert!(!ok && out.contains("month_of_birth"), "{out}");
    // The period: a steward member counts exactly the spans overlapping it.
    let (ok, out) = psql(
        port,
        "sam",
        "nsaid",
        "SELECT count(*) FROM ndb.drug_exposure",
    );
    assert!(ok, "{out}");
    assert_eq!(out.trim(), in_period);

    // Pseudonyms: another project over the same persons shares no person_id
    // with this one or with the store, beyond chance.
    let (ok, out) = create("other");
    assert!(ok, "{out}");
    assert!(cli(store, &state, &["project", "approve", "other"]).0);
    let (a, b, whole) = (
        person_ids(port, "nsaid"),
        person_ids(port, "other"),
        person_ids(port, "tsunagu"),
    );
    assert_eq!(a.len(), whole.len());
    assert_eq!(b.len(), whole.len());
    assert!(a.intersection(&b).count() <= 1, "projects share person_ids");
    assert!(
        a.intersection(&whole).count() <= 1,
        "a project shows store person_ids"
    );

    // A population: only its persons, in every person-level table.
    let (ok, out) = cli(
        store,
        &state,
        &[
            "project",
            "create",
            "elderly",
            "--title",
            "t",
            "--purpose",
            "p",
            "--member",
            "ana",
            "--table",
            "ndb.*",
            "--population",
            "SELECT person_id FROM ndb.person WHERE year_of_birth < 1950",
            "--start",
            "2020-01-01",
            "--end",
            "2099-12-31",
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = cli(store, &state, &["project", "approve", "elderly"]);
    assert!(
        ok && out.contains(&format!("population of {born_before_1950} persons")),
        "{out}"
    );
    let (ok, out) = psql(
        port,
        "sam",
        "elderly",
        "SELECT count(DISTINCT person_id), (SELECT count(*) FROM (SELECT person_id FROM ndb.person GROUP BY person_id HAVING min(year_of_birth) >= 1950) x) FROM ndb.person",
    );
    assert!(ok, "{out}");
    assert_eq!(out.trim(), format!("{born_before_1950}|0"));
    let (ok, out) = psql(
        port,
        "sam",
        "elderly",
        "SELECT count(*) FROM ndb.condition_occurrence c LEFT JOIN ndb.person p ON p.person_id = c.person_id WHERE p.person_id IS NULL",
    );
    assert!(ok, "{out}");
    assert_eq!(
        out.trim(),
        "0",
        "conditions of persons outside the population"
    );
    // A table dated by another column (`service_month`) keeps its period too.
    let (ok, out) = cli(
        store,
        &state,
        &[
            "project",
            "create",
            "care",
            "--title",
            "t",
            "--purpose",
            "p",
            "--member",
            "ana",
            "--table",
            "kaigo.care_service",
            "--period-start",
            "2018-01-01",
            "--period-end",
            "2019-12-31",
            "--start",
            "2020-01-01",
            "--end",
            "2099-12-31",
        ],
    );
    assert!(ok, "{out}");
    assert!(cli(store, &state, &["project", "approve", "care"]).0);
    let (ok, out) = psql(
        port,
        "sam",
        "care",
        "SELECT count(*) FROM kaigo.care_service",
    );
    assert!(ok, "{out}");
    assert_eq!(out.trim(), care_in_period);
    // A steward inside a project cannot approve one (populations name the
    // store's persons, not a project's pseudonyms).
    let (ok, out) = psql(port, "sam", "care", "APPROVE PROJECT elderly");
    assert!(!ok && out.contains("whole store"), "{out}");
    // A steward's exact result is not shown to the project's analysts.
    let (ok, out) = psql(
        port,
        "sam",
        "care",
        "CREATE RESULT exact AS SELECT service_type, count(*) AS n FROM kaigo.care_service GROUP BY 1",
    );
    assert!(ok, "{out}");
    let (ok, out) = psql(port, "sam", "care", "SELECT count(*) FROM results.exact");
    assert!(ok, "{out}");
    let (ok, out) = psql(port, "ana", "care", "SELECT count(*) FROM results.exact");
    assert!(!ok && out.contains("not found"), "{out}");

    // A cohort cannot reach outside the scope either.
    let (ok, out) = psql(
        port,
        "ana",
        "nsaid",
        "CREATE COHORT visits AS SELECT DISTINCT person_id FROM ndb.visit_occurrence",
    );
    assert!(!ok && out.contains("not found"), "{out}");

    // The analyst's workspace: a cohort, results, a release that fails its
    // checks (a total beside withheld cells), then the fixed one.
    let withheld = format!("sum(CASE WHEN year_of_birth = {rare_year} THEN 1 ELSE 0 END)");
    let out = psycopg(
        port,
        "ana",
        "nsaid",
        &[
            "CREATE COHORT users AS SELECT DISTINCT person_id FROM ndb.drug_exposure",
            "SELECT name FROM cohorts",
            &format!(
                "CREATE RESULT with_total AS SELECT CAST(gender_concept_id AS VARCHAR) AS sex, count(*) AS persons, {withheld} AS rare \
                 FROM ndb.person GROUP BY gender_concept_id \
                 UNION ALL SELECT 'total', count(*), {withheld} FROM ndb.person"
            ),
            "RELEASE RESULT with_total WITH PURPOSE 'table 1'",
            "CREATE RESULT by_sex AS SELECT CAST(gender_concept_id AS VARCHAR) AS sex, count(*) AS persons \
             FROM ndb.person WHERE person_id IN (SELECT person_id FROM cohort('users')) GROUP BY gender_concept_id ORDER BY sex",
            "SELECT * FROM results.by_sex ORDER BY sex",
            "RELEASE RESULT by_sex WITH PURPOSE 'table 1, fixed'",
            "SELECT id, result, status, failed_checks FROM results.releases ORDER BY id",
        ],
    );
    assert_eq!(out.len(), 8, "{out:?}");
    assert!(out[0].starts_with("[\"ok\""), "{out:?}");
    assert!(out[1].contains("users"), "{out:?}");
    assert!(out[2].starts_with("[\"ok\""), "{out:?}");
    assert!(
        out[3].contains("42501") && out[3].contains("secondary suppression"),
        "{out:?}"
    );
    assert!(out[4].starts_with("[\"ok\""), "{out:?}");
    let released_rows: Vec<Vec<String>> =
        serde_json::from_str::<(String, Vec<Vec<String>>)>(&out[5])
            .unwrap()
            .1;
    assert_eq!(released_rows.len(), 2, "{out:?}");
    for r in &released_rows {
        let n: i64 = r[1].parse().unwrap();
        assert!(n >= 11, "a released count under the project's k: {out:?}");
    }
    assert!(out[6].starts_with("[\"ok\""), "{out:?}");
    assert!(
        out[7].contains("[\"r1\", \"with_total\", \"failed\", \"secondary suppression\"]"),
        "{out:?}"
    );
    assert!(
        out[7].contains("[\"r2\", \"by_sex\", \"pending\", \"\"]"),
        "{out:?}"
    );

    // The steward reviews: a failed request cannot be approved; the fixed one is.
    let (ok, out) = cli(
        store,
        &state,
        &["release", "--project", "nsaid", "approve", "r1"],
    );
    assert!(!ok && out.contains("failed its automatic checks"), "{out}");
    let (ok, out) = cli(
        store,
        &state,
        &["release", "--project", "nsaid", "approve", "r2"],
    );
    assert!(ok, "{out}");
    let outbox = state.join("projects/nsaid/outbox/r2");
    let csv = std::fs::read(outbox.join("by_sex.csv")).unwrap();
    let provenance: serde_json::Value =
        serde_json::from_slice(&std::fs::read(outbox.join("provenance.json")).unwrap()).unwrap();
    let sha = {
        use sha2::Digest;
        sha2::Sha256::digest(&csv)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    assert_eq!(provenance["sha256"], sha.as_str());
    assert_eq!(provenance["project"], "nsaid");
    assert_eq!(provenance["requested_by"], "ana");
    assert_eq!(provenance["policy"]["k"], 11);
    let text = String::from_utf8(csv).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.remove(0), "sex,persons");
    let shown: Vec<String> = released_rows.iter().map(|r| r.join(",")).collect();
    assert_eq!(lines, shown);

    // A project past its end date ends by itself: refused, workspace archived.
    let out = psycopg(
        port,
        "sam",
        "tsunagu",
        &[
            "CREATE PROJECT past (title 't', purpose 'p', members 'ana', tables 'ndb.person', start '2020-01-01', end '2020-12-31', at_end 'archive')",
        ],
    );
    assert!(out[0].starts_with("[\"ok\""), "{out:?}");
    let project = state.join("projects/past/project.json");
    let text = std::fs::read_to_string(&project).unwrap();
    std::fs::write(&project, text.replace("\"proposed\"", "\"approved\"")).unwrap();
    std::fs::create_dir_all(state.join("projects/past/results")).unwrap();
    let (ok, out) = psql(port, "ana", "past", "SELECT 1");
    assert!(!ok && out.contains("is closed"), "{out}");
    assert!(state.join("projects/past/archive/results").exists());
    assert!(!state.join("projects/past/results").exists());

    // The same operations over SQL, for stewards only.
    let out = psycopg(
        port,
        "sam",
        "tsunagu",
        &[
            "CREATE PROJECT viasql (title 'over SQL', purpose 'p', members 'ana', tables 'ndb.person', start '2020-01-01', end '2099-12-31')",
            "APPROVE PROJECT viasql",
            "ALTER PROJECT viasql ADD MEMBER bob",
            "SELECT id, status, members FROM steward.projects WHERE id = 'viasql'",
            "SELECT project, id, result, status FROM steward.releases WHERE project = 'nsaid' ORDER BY id",
            "REJECT RELEASE r1 OF PROJECT nsaid REASON 'totals beside withheld cells'",
            "SELECT status, reviewer FROM steward.releases WHERE project = 'nsaid' AND id = 'r1'",
        ],
    );
    assert!(out[..3].iter().all(|l| l.starts_with("[\"ok\"")), "{out:?}");
    assert!(
        out[3].contains("[\"viasql\", \"approved\", \"ana,bob\"]"),
        "{out:?}"
    );
    assert!(
        out[4].contains("[\"nsaid\", \"r1\", \"with_total\", \"failed\"]"),
        "{out:?}"
    );
    assert!(
        out[4].contains("[\"nsaid\", \"r2\", \"by_sex\", \"approved\"]"),
        "{out:?}"
    );
    assert!(out[6].contains("[\"rejected\", \"sam\"]"), "{out:?}");
    let (ok, out) = psql(port, "bob", "viasql", "SELECT count(*) FROM ndb.person");
    assert!(ok, "{out}");
    let out = psycopg(
        port,
        "ana",
        "viasql",
        &[
            "APPROVE PROJECT viasql",
            "SELECT count(*) FROM steward.projects",
            "CLOSE PROJECT viasql",
        ],
    );
    assert!(
        out[0].contains("42501") && out[2].contains("42501"),
        "{out:?}"
    );
    assert!(out[1].contains("not found"), "{out:?}");
    let out = psycopg(port, "sam", "tsunagu", &["CLOSE PROJECT viasql"]);
    assert!(out[0].starts_with("[\"ok\""), "{out:?}");
    let (ok, out) = psql(port, "bob", "viasql", "SELECT 1");
    assert!(!ok && out.contains("is closed"), "{out}");

    // End of use: closed, refused, workspace gone, outputs and report kept.
    let (ok, out) = cli(store, &state, &["project", "close", "nsaid"]);
    assert!(ok, "{out}");
    let (ok, out) = psql(port, "ana", "nsaid", "SELECT 1");
    assert!(!ok && out.contains("is closed"), "{out}");
    let (ok, out) = psql(port, "bob", "nsaid", "SELECT 1");
    assert!(!ok, "{out}");
    assert!(!state.join("projects/nsaid/results").exists());
    assert!(!state.join("projects/nsaid/cohorts").exists());
    assert!(outbox.join("by_sex.csv").exists());
    let (ok, out) = cli(store, &state, &["project", "report", "nsaid"]);
    assert!(ok && out.contains("r2\tby_sex\tApproved"), "{out}");
    drop(server);

    // Every step is in the audit chain, which verifies.
    let verified = Command::new(tsunagu())
        .args(["audit", "verify", "--store"])
        .arg(store)
        .arg("--state")
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let mut audit_text = String::new();
    for e in walk(&state.join("audit")) {
        audit_text.push_str(&String::from_utf8_lossy(&std::fs::read(e).unwrap()));
    }
    for step in [
        "PROJECT CREATE nsaid",
        "PROJECT APPROVE nsaid",
        "CREATE RESULT by_sex",
        "RELEASE RESULT by_sex",
        &format!("RELEASE APPROVE nsaid r2 sha256={sha}"),
        "PROJECT CLOSE nsaid",
        "APPROVE PROJECT viasql",
        "REJECT RELEASE r1 OF PROJECT nsaid",
    ] {
        assert!(audit_text.contains(step), "audit lacks {step}");
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// A release approval killed (SIGKILL) at any moment leaves the request and
/// the outbox whole or absent; approving again completes it.
#[tokio::test(flavor = "multi_thread")]
async fn a_release_survives_being_killed_at_any_point() {
    let store = synthetic();
    let state = temp_folder("tsunagu-projects-kill-");
    let (ok, out) = cli(
        store,
        &state,
        &[
            "project",
            "create",
            "k9",
            "--title",
            "t",
            "--purpose",
            "p",
            "--member",
            "ana",
            "--table",
            "ndb.person",
            "--start",
            "2020-01-01",
            "--end",
            "2099-12-31",
        ],
    );
    assert!(ok, "{out}");
    assert!(cli(store, &state, &["project", "approve", "k9"]).0);
    let analyst = |sql: &str| {
        cli(
            store,
            &state,
            &[
                "sql",
                "--project",
                "k9",
                "--user",
                "ana",
                "--role",
                "analyst",
                sql,
            ],
        )
    };
    let (ok, out) = analyst(
        "CREATE RESULT births AS SELECT year_of_birth / 10 * 10 AS decade, count(*) AS persons FROM ndb.person GROUP BY 1",
    );
    assert!(ok, "{out}");
    let (ok, out) = analyst("RELEASE RESULT births");
    assert!(ok, "{out}");
    let dir = state.join("projects/k9");
    let check = |dir: &Path| {
        let request: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("releases/r1.json")).unwrap())
                .expect("the request is whole");
        let outbox = dir.join("outbox/r1");
        if outbox.exists() {
            let csv = std::fs::read(outbox.join("births.csv")).expect("the CSV is there");
            let provenance: serde_json::Value =
                serde_json::from_slice(&std::fs::read(outbox.join("provenance.json")).unwrap())
                    .expect("the provenance is whole");
            let sha: String = {
                use sha2::Digest;
                sha2::Sha256::digest(&csv)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            };
            assert_eq!(provenance["sha256"], sha.as_str());
        } else {
            assert_eq!(request["status"], "pending", "approved without an outbox");
        }
        request["status"].as_str().unwrap().to_owned()
    };
    let mut approved_seen = false;
    for step in 0..24u64 {
        let mut child = Command::new(tsunagu())
            .args(["release", "--store"])
            .arg(store)
            .arg("--state")
            .arg(&state)
            .args(["--project", "k9", "approve", "r1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(step * 25));
        let _ = child.kill();
        let _ = child.wait();
        let status = check(&dir);
        approved_seen |= status == "approved";
        if approved_seen {
            break;
        }
    }
    // Approving again completes (or reports it is done); the outbox is whole.
    let (_, out) = cli(
        store,
        &state,
        &["release", "--project", "k9", "approve", "r1"],
    );
    assert_eq!(check(&dir), "approved", "{out}");
    assert!(dir.join("outbox/r1/births.csv").exists());
}
