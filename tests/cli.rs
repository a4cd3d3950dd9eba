//! The `tsunagu` command: generate, sql.

use std::process::Command;

use crate::common::{eunomia, state_dir, tsunagu};

fn sql(args: &[&str]) -> std::process::Output {
    let state = state_dir();
    Command::new(tsunagu())
        .arg("sql")
        .arg("--store")
        .arg(eunomia())
        .arg("--state")
        .arg(&state)
        .args(args)
        .output()
        .expect("tsunagu runs")
}

#[test]
fn sql_prints_a_table() {
    let out =
        sql(&["SELECT gender_concept_id, count(*) AS n FROM cdm.person GROUP BY 1 ORDER BY 1"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("| gender_concept_id | n    |"), "{stdout}");
    assert!(stdout.contains("| 8507              | 1321 |"), "{stdout}");
    assert!(stdout.contains("(2 rows)"), "{stdout}");
}

#[test]
fn sql_prints_csv_with_a_header() {
    let out = sql(&[
        "--csv",
        "SELECT person_key, year_of_birth, birth_datetime FROM cdm.person WHERE person_key IN ('6', '123') ORDER BY year_of_birth",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "person_key,year_of_birth,birth_datetime");
    assert_eq!(lines[1], "123,1950,1950-04-12T00:00:00");
    assert_eq!(lines[2], "6,1963,1963-12-31T00:00:00");
    assert_eq!(lines.len(), 3);
}

#[test]
fn sql_fails_with_status_and_stderr() {
    let out = sql(&["SELECT * FROM cdm.no_such_table"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no_such_table"), "{stderr}");
    assert!(out.stdout.is_empty());
    let out = sql(&["DROP TABLE cdm.person"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("read-only"));
}

#[test]
fn sql_refuses_a_malformed_store() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rwd.toml"), "[[source]]\nname = \"x\"\n").unwrap();
    let out = Command::new(tsunagu())
        .args(["sql", "--store"])
        .arg(dir.path())
        .arg("SELECT 1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rwd.toml") && stderr.contains("folder x does not exist"),
        "{stderr}"
    );
}

#[test]
fn generate_writes_a_store_that_opens() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("store");
    let out = Command::new(tsunagu())
        .args(["generate", "--persons", "400", "--seed", "5", "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state = state_dir();
    let out = Command::new(tsunagu())
        .args(["sql", "--csv", "--store"])
        .arg(&out_dir)
        .arg("--state")
        .arg(&state)
        .arg("SELECT count(DISTINCT person_id) AS persons FROM linked.person")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n: u64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(n >= 400, "{n}");
}

fn sql_on(store: &std::path::Path, state: &std::path::Path, query: &str) -> std::process::Output {
    Command::new(tsunagu())
        .args(["sql", "--csv", "--store"])
        .arg(store)
        .arg("--state")
        .arg(state)
        .arg(query)
        .output()
        .unwrap()
}

#[test]
fn cohorts_survive_a_restart_and_a_kill_mid_write() {
    let store = crate::common::synthetic();
    let state = state_dir();
    let out = sql_on(
        store,
        &state,
        "CREATE COHORT elderly AS SELECT person_id, DATE '2020-01-01' AS cohort_start_date FROM ndb.person WHERE year_of_birth < 1950",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "CREATE COHORT");
    // Another process sees it.
    let out = sql_on(
        store,
        &state,
        "SELECT name, size = (SELECT count(DISTINCT person_id) FROM ndb.person WHERE year_of_birth < 1950) AS ok FROM cohorts",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "name,ok\nelderly,true\n"
    );
    // Processes killed at random points of a write leave a whole cohort or none.
    for (i, delay) in [5u64, 40, 80, 120, 160, 220, 300, 450]
        .into_iter()
        .enumerate()
    {
        let mut child = Command::new(tsunagu())
            .args(["sql", "--store"])
            .arg(store)
            .arg("--state")
            .arg(&state)
            .arg(format!("CREATE COHORT killed_{i} AS SELECT person_id, drug_exposure_start_date AS cohort_start_date FROM ndb.drug_exposure"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
    }
    let out = sql_on(
        store,
        &state,
        "SELECT name, size FROM cohorts ORDER BY name",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    let expected_rows = String::from_utf8_lossy(
        &sql_on(store, &state, "SELECT count(*) FROM ndb.drug_exposure").stdout,
    )
    .lines()
    .nth(1)
    .unwrap()
    .to_owned();
    for line in listing.lines().skip(1) {
        let name = line.split(',').next().unwrap();
        let out = sql_on(
            store,
            &state,
            &format!("SELECT count(*) FROM cohort('{name}')"),
        );
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if name.starts_with("killed_") {
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap(),
                expected_rows,
                "{name} is whole"
            );
        }
    }
    assert!(listing.contains("elderly,"), "{listing}");
    // No half-written folder is left once the store is opened again.
    let leftovers: Vec<_> = std::fs::read_dir(state.join("cohorts"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
