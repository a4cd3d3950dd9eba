//! The visiting analysis environment: the analyst's privacy layer, logins,
//! TLS, roles and the audit log, through the binary and real clients.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tsunagu_engine::audit::{self, Decision};
use tsunagu_engine::{Engine, EngineOptions, Policy, Role};

use crate::common::{repo, state_dir, tsunagu};
use crate::wire::{DEMO_PASSWORD, Server};

/// Every audit folder under a state folder.
pub(crate) fn audit_dirs(state: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if state.join("audit").is_dir() {
        out.push(state.join("audit"));
    }
    for e in std::fs::read_dir(state).into_iter().flatten().flatten() {
        let a = e.path().join("audit");
        if a.is_dir() {
            out.push(a);
        }
    }
    out
}

#[test]
fn adversarial_queries_as_the_analyst_over_the_wire() {
    let server = Server::start();
    let conninfo = server.conninfo_as("analyst", DEMO_PASSWORD);
    let cases = repo().join("tests/privacy/adversarial.txt");
    crate::common::client_check(
        "python3",
        "tests/clients/privacy_check.py",
        &[&conninfo, &cases.to_string_lossy()],
        " passed, 0 failed",
    );

    // Every statement was audited: refusals with their rule, suppressions counted.
    let (_, state) = crate::wire::dirs();
    let dirs = audit_dirs(state);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let records = audit::records(&dirs[0]).unwrap();
    let analyst: Vec<_> = records.iter().filter(|r| r.user == "analyst").collect();
    assert!(analyst.iter().any(|r| r.decision == Decision::Refused
        && r.rule.as_deref() == Some("row-level output")
        && r.sql == "SELECT * FROM ndb.person"));
    assert!(analyst.iter().any(|r| r.decision == Decision::Refused
        && r.rule.as_deref() == Some("role")
        && r.sql == "SET ROLE steward"));
    assert!(analyst.iter().any(|r| r.decision == Decision::Allowed
        && r.suppressed_cells > 0
        && r.sql.contains("month_of_birth = 3")));
    assert!(analyst.iter().all(|r| r.role == "analyst"));
    let verified = Command::new(tsunagu())
        .args(["audit", "verify", "--dir"])
        .arg(&dirs[0])
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
}

/// Numbers as text; NULL as None.
fn cells(rows: &[String]) -> Vec<Vec<Option<f64>>> {
    rows.iter()
        .map(|r| r.split('|').map(|v| v.parse().ok()).collect())
        .collect()
}

async fn rows_as(engine: &Engine, role: Role, sql: &str) -> Vec<String> {
    let session = engine.session_as("tester", role).unwrap();
    let batches = session
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{role}: {e}\n{sql}"));
    crate::common::lines(&batches)
}

#[tokio::test]
async fn studies_released_to_the_analyst_agree_with_the_steward_within_rounding() {
    let engine = crate::common::open(crate::studies::demo_sized()).await;
    // (study, columns holding counts with the largest contribution of one
    // person to each, released cells summed into each: the prevalence study
    // adds up the 8 released sex x age-band strata of a year). The SCCS
    // study's event counts hold up to 2 and 3 events of one case.
    for (study, counts, summed) in [
        ("feasibility_funnel", vec![(2, 1.0)], 1.0),
        ("hip_fracture_long_term_care", vec![(1, 1.0), (2, 1.0)], 1.0),
        (
            "nsaid_gi_bleed_new_users",
            vec![(2, 1.0), (3, 1.0), (4, 1.0)],
            1.0,
        ),
        (
            "sccs_nsaid_gi_bleed",
            vec![(1, 1.0), (2, 2.0), (4, 3.0)],
            1.0,
        ),
        ("ssa_amlodipine_furosemide", vec![(0, 1.0), (1, 1.0)], 1.0),
        (
            "prevalence_incidence_hypertension",
            vec![(1, 1.0), (2, 1.0), (5, 1.0), (6, 1.0)],
            8.0,
        ),
    ] {
        let sql = std::fs::read_to_string(repo().join(format!("sql/studies/{study}.sql"))).unwrap();
        let steward = cells(&rows_as(&engine, Role::Steward, &sql).await);
        let analyst = cells(&rows_as(&engine, Role::Analyst, &sql).await);
        assert_eq!(steward.len(), analyst.len(), "{study}");
        for (s, a) in steward.iter().zip(&analyst) {
            for &(c, largest) in &counts {
                let (Some(s), a) = (s[c], a[c]) else { continue };
                match a {
                    // Suppressed: too few persons behind it.
                    // The noisy threshold withholds some cells just above k.
                    None => assert!(s < 14.0, "{study}: {s} withheld"),
                    Some(a) => {
                        // Rounding to 5 (2.5) and five standard deviations of
                        // the noise, one largest contribution. Person-time
                        // totals: noise of the largest person's share.
                        let tolerance =
                            summed * f64::max(2.5 + 5.0 * largest, 0.02 * s.abs() / summed);
                        assert!((a - s).abs() <= tolerance, "{study}: released {a} for {s}");
                        assert_eq!(a % 5.0, 0.0, "{study}: {a} is not rounded");
                    }
                }
            }
        }
    }
    // The planted effect survives the release.
    let sql =
        std::fs::read_to_string(repo().join("sql/studies/nsaid_gi_bleed_new_users.sql")).unwrap();
    let rows = cells(&rows_as(&engine, Role::Analyst, &sql).await);
    let rr = rows.iter().filter_map(|r| r[6]).fold(0.0f64, f64::max);
    assert!((2.0..4.5).contains(&rr), "risk ratio {rr}");
}

/// `year|count` rows as (year, count); `None` for a withheld number.
fn year_counts(rows: &[String]) -> Vec<(String, Option<i64>)> {
    rows.iter()
        .map(|r| {
            let (y, n) = r.rsplit_once('|').unwrap();
            (y.to_owned(), n.parse().ok())
        })
        .collect()
}

#[tokio::test]
async fn the_viewer_role_reads_under_stricter_numbers_and_only_reads() {
    let policy = Policy {
        viewer: Some(tsunagu_engine::privacy::Stricter {
            k: Some(25),
            rounding: Some(10),
        }),
        secret: Some(tsunagu_engine::privacy::NoiseKey([7; 32])),
        ..Default::default()
    };
    policy.validate().unwrap();
    let engine = Engine::open(
        crate::common::synthetic(),
        EngineOptions {
            state_dir: Some(state_dir()),
            policy: Some(policy.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let sql = "SELECT year_of_birth, count(DISTINCT person_id) AS n FROM ndb.person GROUP BY 1";
    let truth = year_counts(&rows_as(&engine, Role::Steward, sql).await);
    let analyst = year_counts(&rows_as(&engine, Role::Analyst, sql).await);
    let viewer = year_counts(&rows_as(&engine, Role::Viewer, sql).await);
    let true_count = |y: &str| {
        truth
            .iter()
            .find(|(t, _)| t == y)
            .and_then(|(_, n)| *n)
            .unwrap()
    };
    // Against the steward's truth: no viewer row rests on fewer than 25
    // persons, every viewer count is rounded to 10 and near the truth (the
    // analyst's noise of about one person, rounded to 5 and then to 10).
    for (y, n) in &viewer {
        let t = true_count(y);
        assert!(t >= 25, "year {y} of {t} persons released to the viewer");
        if let Some(n) = n {
            assert!(n % 10 == 0 && (n - t).abs() <= 12, "{n} released for {t}");
        }
    }
    assert!(
        viewer.iter().filter(|(_, n)| n.is_some()).count() >= 10,
        "{viewer:?}"
    );
    // A viewer's number is the analyst's rounded again to 10 (the same
    // noise), so the two together tell nothing more than the analyst's.
    for (y, n) in &viewer {
        let a = analyst.iter().find(|(a, _)| a == y).and_then(|(_, n)| *n);
        if let (Some(n), Some(a)) = (n, a) {
            assert_eq!(*n, ((a as f64 / 10.0).round() * 10.0) as i64, "year {y}");
        }
    }
    for (y, n) in &analyst {
        let t = true_count(y);
        assert!(t >= 10, "year {y} of {t} persons released to the analyst");
        assert!(
            n.is_none_or(|n| n % 5 == 0),
            "{n:?} released to the analyst for {t}"
        );
    }
    // Years of 14-24 persons reach the analyst but not the viewer; large
    // years reach both (a legitimate question is answered).
    let between: Vec<&String> = truth
        .iter()
        .filter(|(_, t)| t.is_some_and(|t| (14..=24).contains(&t)))
        .map(|(y, _)| y)
        .collect();
    assert!(
        !between.is_empty(),
        "the store has no year of 14-24 persons: {truth:?}"
    );
    for y in between {
        assert!(
            analyst.iter().any(|(a, _)| a == y),
            "year {y} withheld from the analyst"
        );
        assert!(
            !viewer.iter().any(|(v, _)| v == y),
            "year {y} released to the viewer"
        );
    }
    for (y, t) in &truth {
        if t.is_some_and(|t| t >= 40) {
            assert!(
                viewer.iter().any(|(v, _)| v == y),
                "year {y} of {t:?} withheld from the viewer"
            );
        }
    }
    // A steward lowering its role to viewer gets the viewer's answer.
    let steward = engine.session_as("sam", Role::Steward).unwrap();
    steward.set_role(Role::Viewer).unwrap();
    let lowered = year_counts(&crate::common::lines(&steward.sql(sql).await.unwrap()));
    let mut a = lowered.clone();
    let mut b = viewer.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    // Read-only: no cohorts, no raising the role.
    let session = engine.session_as("vic", Role::Viewer).unwrap();
    for statement in [
        "CREATE COHORT mine AS SELECT person_id FROM ndb.person",
        "DROP COHORT IF EXISTS mine",
    ] {
        match session.sql(statement).await {
            Err(tsunagu_engine::EngineError::Refused { code, rule, .. }) => {
                assert_eq!((code, rule), ("42501", "read-only role"), "{statement}")
            }
            other => panic!("{statement}: {other:?}"),
        }
    }
    assert!(session.set_role(Role::Analyst).is_err());
    assert!(
        engine
            .saved_cohorts()
            .unwrap()
            .iter()
            .all(|c| c.name != "mine")
    );
    // A viewer's numbers weaker than the analysts' are refused.
    let weaker = Policy {
        viewer: Some(tsunagu_engine::privacy::Stricter {
            k: Some(5),
            ..Default::default()
        }),
        ..Default::default()
    };
    let e = weaker.validate().unwrap_err();
    assert!(
        e.contains("privacy.viewer.k is 5, below the analysts' 10"),
        "{e}"
    );
}

#[tokio::test]
async fn policy_sets_k_rounding_and_table_roles() {
    let store = crate::common::synthetic();
    let mut policy = Policy {
        k: 200,
        rounding: 1,
        ..Default::default()
    };
    policy
        .tables
        .insert("dpc.*".into(), tsunagu_engine::privacy::TableRole::Hidden);
    let engine = Engine::open(
        store,
        EngineOptions {
            state_dir: Some(state_dir()),
            policy: Some(policy),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let sql = "SELECT gender_concept_id, count(*) AS n FROM ndb.person GROUP BY 1 ORDER BY 1";
    let steward = rows_as(&engine, Role::Steward, sql).await;
    let analyst = rows_as(&engine, Role::Analyst, sql).await;
    // k = 200 keeps only big groups; rounding base 1 leaves the noise of the
    // largest contribution (a person with several claims keys has several
    // rows: standard deviation = that person's rows) on each count.
    let most = rows_as(
        &engine,
        Role::Steward,
        "SELECT max(n) FROM (SELECT person_id, count(*) AS n FROM ndb.person GROUP BY 1) c",
    )
    .await;
    let most: i64 = most[0].trim().parse().unwrap();
    let truth: Vec<(String, i64)> = steward
        .iter()
        .map(|r| {
            let (g, n) = r.rsplit_once('|').unwrap();
            (g.to_owned(), n.parse().unwrap())
        })
        .collect();
    for row in &analyst {
        let (g, n) = row.rsplit_once('|').unwrap();
        let n: i64 = n.parse().unwrap();
        let (_, t) = truth.iter().find(|(tg, _)| tg == g).unwrap();
        assert!(*t >= 200, "group {g} of {t} persons released");
        assert!(
            (n - t).abs() <= 5 * most,
            "{n} released for {t} (largest contribution {most})"
        );
    }
    for (g, t) in &truth {
        if *t >= 210 {
            assert!(
                analyst.iter().any(|r| r.starts_with(&format!("{g}|"))),
                "group {g} of {t} withheld"
            );
        }
    }
    let session = engine.session_as("tester", Role::Analyst).unwrap();
    let e = session
        .sql("SELECT count(*) FROM dpc.person")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not available to analysts"), "{e}");
    // Stewards see hidden tables.
    assert_eq!(
        rows_as(
            &engine,
            Role::Steward,
            "SELECT count(*) > 0 FROM dpc.person"
        )
        .await,
        ["true"]
    );
}

#[tokio::test]
async fn manifest_privacy_section_is_the_store_policy() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("eunomia");
    let status = Command::new("cp")
        .arg("-r")
        .arg(crate::common::eunomia())
        .arg(&store)
        .status()
        .unwrap();
    assert!(status.success());
    let manifest = store.join("rwd.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str("\n[privacy]\nk = 25\nrounding = 10\n");
    std::fs::write(&manifest, text).unwrap();
    let engine = crate::common::open(&store).await;
    assert_eq!((engine.policy().k, engine.policy().rounding), (25, 10));
    let rows = rows_as(&engine, Role::Analyst, "SELECT count(*) FROM cdm.person").await;
    let n: i64 = rows[0].parse().unwrap();
    // 2694 persons: noise of one person, rounded to 10.
    assert!(n % 10 == 0 && (n - 2694).abs() <= 10, "{n}");
}

#[tokio::test]
async fn analyst_cohorts_are_person_sets_measured_under_the_rules() {
    let engine = crate::common::open(crate::common::synthetic()).await;
    let analyst = engine.session_as("ana", Role::Analyst).unwrap();
    analyst
        .sql("CREATE COHORT ana_t2d AS SELECT person_id FROM ndb.condition_occurrence WHERE condition_concept_id = 1000024")
        .await
        .unwrap();
    let size = crate::common::lines(
        &analyst
            .sql("SELECT size FROM cohorts WHERE name = 'ana_t2d'")
            .await
            .unwrap(),
    );
    let exact = rows_as(
        &engine,
        Role::Steward,
        "SELECT size FROM cohorts WHERE name = 'ana_t2d'",
    )
    .await;
    let (size, exact): (i64, i64) = (size[0].parse().unwrap(), exact[0].parse().unwrap());
    assert!(
        (size - exact).abs() <= 7 && size % 5 == 0,
        "{size} for {exact}"
    );
    // The same set measured another way gets the same (sticky) noise.
    let card = crate::common::lines(
        &analyst
            .sql("SELECT rb_cardinality(cohort_bitmap('ana_t2d'))")
            .await
            .unwrap(),
    );
    assert_eq!(card, [size.to_string()]);
    // Another analyst neither sees nor uses it; a steward sees it.
    let other = engine.session_as("bob", Role::Analyst).unwrap();
    let listed = other.sql("SELECT count(*) FROM cohorts").await.unwrap();
    assert_eq!(crate::common::lines(&listed), ["0"]);
    for sql in [
        "SELECT rb_cardinality(cohort_bitmap('ana_t2d'))",
        "SELECT count(*) FROM cohort('ana_t2d')",
        "DROP COHORT ana_t2d",
    ] {
        let e = other.sql(sql).await.unwrap_err().to_string();
        assert!(
            e.contains("another user") || e.contains("does not exist"),
            "{sql}: {e}"
        );
    }
    let steward = engine.session_as("sam", Role::Steward).unwrap();
    let listed = steward
        .sql("SELECT owner FROM cohorts WHERE name = 'ana_t2d'")
        .await
        .unwrap();
    assert_eq!(crate::common::lines(&listed), ["ana"]);
    let e = analyst
        .sql("SELECT * FROM cohort('ana_t2d')")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("row-level output"), "{e}");
    let e = analyst
        .sql("CREATE COHORT bad AS SELECT year_of_birth FROM ndb.person")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("person_id"), "{e}");
}

/// Writes a self-signed certificate and key into `dir`.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    crate::common::openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.crt",
        ],
    );
    (dir.join("server.crt"), dir.join("server.key"))
}

pub(crate) fn add_user(config: &Path, name: &str, role: &str, password: &str) {
    let mut child = Command::new(tsunagu())
        .args(["user", "add", name, "--role", role, "--config"])
        .arg(config)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn scram_logins_roles_and_required_tls_from_a_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    add_user(&config, "ana", "analyst", "ana-secret");
    add_user(&config, "sam", "steward", "sam-secret");
    add_user(&config, "ana", "analyst", "ana-secret-2");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        !text.contains("ana-secret") && text.contains("SCRAM-SHA-256$4096:"),
        "{text}"
    );
    assert_eq!(text.matches("name = \"ana\"").count(), 1, "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the config file is readable by others");
    }
    let (cert, key) = certificate(dir.path());
    let mut extra = std::fs::read_to_string(&config).unwrap();
    extra = extra.replace(
        "[server]\nrequire_tls = false",
        &format!("[server]\nrequire_tls = true\ntls_cert = {cert:?}\ntls_key = {key:?}"),
    );
    std::fs::write(&config, extra).unwrap();
    let config_arg = config.to_string_lossy().into_owned();
    let server = Server::start_with(&["--config", &config_arg]);
    let tls = |user: &str, password: &str| {
        format!(
            "host=127.0.0.1 port={} dbname=tsunagu user={user} password={password} sslmode=require",
            server.port
        )
    };
    let (ok, out, err) = server.psql_as(
        &tls("ana", "ana-secret-2"),
        "SELECT current_user, session_user",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "ana|ana");
    let (ok, _, err) = server.psql_as(
        &tls("ana", "ana-secret-2"),
        "SELECT person_id FROM ndb.person",
    );
    assert!(!ok && err.contains("row-level output"), "{err}");
    let (ok, _, err) = server.psql_as(&tls("ana", "ana-secret-2"), "SET ROLE steward");
    assert!(!ok && err.contains("permission denied"), "{err}");
    // The old password was replaced; unknown users and wrong passwords fail alike.
    for (user, password) in [("ana", "ana-secret"), ("nobody", "x"), ("sam", "wrong")] {
        let (ok, _, err) = server.psql_as(&tls(user, password), "SELECT 1");
        assert!(
            !ok && err.contains("authentication failed"),
            "{user}: {err}"
        );
    }
    // Plain connections are refused when TLS is required.
    let (ok, _, err) = server.psql_as(&server.conninfo_as("sam", "sam-secret"), "SELECT 1");
    assert!(!ok && err.contains("TLS"), "{err}");
    // The steward reads rows, and may lower its role.
    let (ok, out, err) = server.psql_as(
        &tls("sam", "sam-secret"),
        "SELECT count(*) FROM (SELECT person_id FROM ndb.person LIMIT 3) t",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "3");
    let (ok, _, err) = server.psql_as(
        &tls("sam", "sam-secret"),
        "SET ROLE analyst; SELECT person_id FROM ndb.person",
    );
    assert!(!ok && err.contains("row-level output"), "{err}");
}

#[test]
fn a_server_whose_tls_does_not_load_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let (cache, state) = crate::wire::dirs();
    let out = Command::new(tsunagu())
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&missing)
        .arg("--tls-key")
        .arg(&missing)
        .env("TSUNAGU_CACHE_DIR", cache)
        .env("TSUNAGU_STATE_DIR", state)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TLS certificate"), "{err}");
    let out = Command::new(tsunagu())
        .args(["serve", "--listen", "127.0.0.1:0", "--require-tls"])
        .env("TSUNAGU_CACHE_DIR", cache)
        .env("TSUNAGU_STATE_DIR", state)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn audit_verify_detects_an_edited_log() {
    let state = state_dir();
    let store = crate::common::eunomia();
    for (role, sql) in [
        ("steward", "SELECT count(*) FROM cdm.person"),
        ("analyst", "SELECT person_id FROM cdm.person"),
        (
            "analyst",
            "SELECT gender_concept_id, count(*) FROM cdm.person GROUP BY 1",
        ),
    ] {
        let _ = Command::new(tsunagu())
            .args(["sql", "--role", role, "--store"])
            .arg(&store)
            .arg("--state")
            .arg(&state)
            .arg(sql)
            .output()
            .unwrap();
    }
    let verify = || {
        Command::new(tsunagu())
            .args(["audit", "verify", "--store"])
            .arg(&store)
            .arg("--state")
            .arg(&state)
            .output()
            .unwrap()
    };
    let out = verify();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 records"));
    let dir = audit_dirs(&state).pop().unwrap();
    let records = audit::records(&dir).unwrap();
    assert_eq!(
        records
            .iter()
            .map(|r| (r.role.as_str(), r.decision))
            .collect::<Vec<_>>(),
        [
            ("steward", Decision::Allowed),
            ("analyst", Decision::Refused),
            ("analyst", Decision::Allowed)
        ]
    );
    let segment = dir.join("audit-000001.jsonl");
    let text = std::fs::read_to_string(&segment).unwrap();
    std::fs::write(
        &segment,
        text.replace("\"role\":\"analyst\"", "\"role\":\"steward\""),
    )
    .unwrap();
    let out = verify();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("altered"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every study's planted effect is found by the analyst too (the oracle is
/// the generator's planted truth, as in tests/studies.rs).
#[tokio::test]
async fn every_planted_effect_survives_the_analysts_release() {
    let engine = crate::common::open(crate::studies::demo_sized()).await;
    let study = |name: &str| {
        std::fs::read_to_string(repo().join(format!("sql/studies/{name}.sql"))).unwrap()
    };
    let rows = |lines: Vec<String>| -> Vec<Vec<String>> {
        lines
            .into_iter()
            .map(|r| r.split('|').map(str::to_owned).collect())
            .collect()
    };
    let num = |v: &str| -> f64 { v.parse().unwrap_or_else(|_| panic!("withheld: {v:?}")) };

    let sccs = rows(rows_as(&engine, Role::Analyst, &study("sccs_nsaid_gi_bleed")).await);
    let irr = num(&sccs[0][6]);
    assert!((2.0..4.5).contains(&irr), "rate ratio {irr}, planted 3");

    let hip = rows(
        rows_as(
            &engine,
            Role::Analyst,
            &study("hip_fracture_long_term_care"),
        )
        .await,
    );
    let share = |d: &str| {
        num(&hip
            .iter()
            .find(|r| r[0] == d)
            .unwrap_or_else(|| panic!("{d}: {hip:?}"))[3])
    };
    assert!(
        (0.5..0.72).contains(&share("S72.0")),
        "planted 0.6: {hip:?}"
    );

    let ssa = rows(rows_as(&engine, Role::Analyst, &study("ssa_amlodipine_furosemide")).await);
    let (first, reverse) = (num(&ssa[0][0]), ssa[0][1].parse::<f64>().unwrap_or(0.0));
    assert!(first > 50.0 && first > 3.0 * reverse.max(1.0), "{ssa:?}");

    let funnel = rows(rows_as(&engine, Role::Analyst, &study("feasibility_funnel")).await);
    let counts: Vec<f64> = funnel.iter().map(|r| num(&r[2])).collect();
    // Each step's true count is at most the one before; two steps a few
    // persons apart can swap by one rounding step (5) under their own noise.
    assert!(counts.windows(2).all(|w| w[1] <= w[0] + 5.0), "{counts:?}");
    assert!(counts[0] > 4.0 * counts[counts.len() - 1], "{counts:?}");

    let prevalence = rows(
        rows_as(
            &engine,
            Role::Analyst,
            &study("prevalence_incidence_hypertension"),
        )
        .await,
    );
    assert_eq!(prevalence.len(), 8);
    let (a, b) = (&prevalence[0], &prevalence[7]);
    let crude = num(&b[3]) - num(&a[3]);
    let standardized = (num(&b[4]) - num(&a[4])).abs();
    assert!(
        crude > 0.005 && standardized < crude / 2.0,
        "{prevalence:?}"
    );
}

/// An analyst's statement fails on no data: arithmetic that would overflow
/// or move a date beyond its range for some persons' rows, or a padding,
/// series or replacement of gigabytes, gives NULL for those rows, so whether such a row
/// exists cannot be read from an error. The oracle is the steward's exact
/// count of the rows that do not overflow.
#[tokio::test]
async fn overflows_on_some_rows_are_no_error_oracle() {
    let engine = crate::common::open(crate::studies::demo_sized()).await;
    let analyst = engine.session_as("tester", Role::Analyst).unwrap();
    let steward = |sql: String| {
        let engine = &engine;
        async move {
            rows_as(engine, Role::Steward, &sql).await[0]
                .parse::<f64>()
                .unwrap()
        }
    };
    let overflowing = [
        // i64::MIN / -1
        "(CASE WHEN {c} THEN CAST(-9223372036854775808 AS BIGINT) ELSE 1 END) / -1 < 0",
        // a decimal product past 128 bits
        "(CASE WHEN {c} THEN CAST(10000000000000000000000000000000000000 AS DECIMAL(38, 0)) \
         ELSE CAST(1 AS DECIMAL(38, 0)) END) * 100 > 0",
        // a bigint sum that wraps around
        "(CASE WHEN {c} THEN 9223372036854775807 ELSE 1 END) + 1 > 0",
        // a date a hundred million years away
        "DATE '2020-01-01' + (CASE WHEN {c} THEN INTERVAL '100000000 years' ELSE INTERVAL '1 day' END) \
         > DATE '2000-01-01'",
        // a padding of two gigabytes per row
        "length(lpad('a', CASE WHEN {c} THEN 2000000000 ELSE 1 END)) > 0",
        // a series of twenty million numbers per row, and one of step zero
        "cardinality(range(0, CASE WHEN {c} THEN 20000000 ELSE 1 END)) > 0",
        "cardinality(range(1, 5, CASE WHEN {c} THEN 0 ELSE 1 END)) > 0",
        // a replacement of ten billion characters per row
        "length(replace(lpad('', 100000, 'a'), 'a', lpad('', CASE WHEN {c} THEN 100000 ELSE 1 END, 'b'))) > 0",
    ];
    for test in overflowing {
        for condition in ["year_of_birth = 1950", "year_of_birth = 1800"] {
            let sql = format!(
                "SELECT count(*) FROM ndb.person WHERE {}",
                test.replace("{c}", condition)
            );
            let batches = analyst
                .sql(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let released: f64 = crate::common::lines(&batches)[0].parse().unwrap();
            let exact = steward(format!(
                "SELECT count(*) FROM ndb.person WHERE NOT ({condition})"
            ))
            .await;
            // Rounding and five standard deviations of a row count's noise.
            assert!(
                (released - exact).abs() <= 12.5 + 0.02 * exact,
                "{sql}: released {released}, {exact} rows do not overflow"
            );
        }
    }
}
