//! The dashboards in a real headless browser (Chromium through Selenium and
//! chromedriver): login, charts drawn, released numbers checked against the
//! steward's exact ones, live updates, keyboard, Japanese, logout, audit.

use std::path::Path;

use tsunagu_engine::audit::{self, Decision, Event};

use crate::common::{client_check, state_dir, synthetic, temp_folder};
use crate::deliveries::split_store;
use crate::privacy::add_user;
use crate::wire::Server;

const FEASIBILITY: &str = r#"
title = "Feasibility"
title_ja = "実施可能性"

[[panel]]
title = "Persons at each step"
title_ja = "各段階の人数"
chart = "funnel"
x = "step"
y = "persons"
sql = """
SELECT '1 all' AS step, count(DISTINCT person_id) AS persons FROM ndb.person
UNION ALL
SELECT '2 born before 1960', count(DISTINCT person_id) FROM ndb.person WHERE year_of_birth < 1960
UNION ALL
SELECT '3 women born before 1960', count(DISTINCT person_id) FROM ndb.person
 WHERE year_of_birth < 1960 AND gender_concept_id = 8532
ORDER BY step
"""
"#;

fn serve(dir: &Path, store: &Path, state: &Path) -> Server {
    let config = dir.join("server.toml");
    add_user(&config, "ana", "analyst", "ana-secret");
    add_user(&config, "sam", "steward", "sam-secret");
    let boards = dir.join("dashboards");
    std::fs::create_dir_all(&boards).unwrap();
    std::fs::write(boards.join("feasibility.toml"), FEASIBILITY).unwrap();
    let s = |p: &Path| p.to_string_lossy().into_owned();
    Server::start_with(&[
        "--store",
        &s(store),
        "--state",
        &s(state),
        "--config",
        &s(&config),
        "--http",
        "127.0.0.1:0",
        "--dashboards",
        &s(&boards),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_in_a_browser_show_only_released_numbers_and_update_live() {
    let dir = temp_folder("tsunagu-dashboard-");
    // The store arrives in two deliveries; the second lands while a page is open.
    let (store, second) = (dir.join("store"), dir.join("second"));
    split_store(&store, &second).await;
    let state = state_dir();
    let server = serve(&dir, &store, &state);
    let url = server
        .http
        .clone()
        .expect("the server prints the dashboards' address");
    let conninfo = server.conninfo_as("ana", "ana-secret");
    let shot = dir.join("overview.png");
    client_check(
        "python3",
        "tests/clients/dashboard_check.py",
        &[
            &url,
            &conninfo,
            "ana",
            "ana-secret",
            "sam",
            "sam-secret",
            "10",
            &shot.to_string_lossy(),
            "feasibility",
            &store.to_string_lossy(),
            &second.to_string_lossy(),
        ],
        "dashboard check: ok",
    );
    drop(server);

    // Logins, page views and the panels' queries are in the audit chain.
    let records = audit::records(&state.join("audit")).unwrap();
    audit::verify(&state.join("audit")).unwrap();
    let http_login = |user: &str, refused: bool| {
        records.iter().any(|r| {
            r.event == Some(Event::Login)
                && r.user == user
                && r.address.as_deref().is_some_and(|a| a.starts_with("http "))
                && (r.decision == Decision::Refused) == refused
        })
    };
    assert!(http_login("ana", true), "the wrong password is not audited");
    assert!(http_login("ana", false) && http_login("sam", false));
    let by_ana = |sql: &str| {
        records
            .iter()
            .any(|r| r.user == "ana" && r.role == "analyst" && r.sql.contains(sql))
    };
    assert!(by_ana("VIEW DASHBOARD overview") && by_ana("VIEW DASHBOARD cohorts"));
    assert!(
        by_ana("count(DISTINCT person_id)"),
        "the panels' queries are not audited"
    );
    assert!(by_ana("CREATE COHORT dashboard_live"));
}

#[test]
fn dashboards_refuse_a_network_address_without_tls_and_bad_files() {
    let dir = temp_folder("tsunagu-dashboard-bad-");
    let config = dir.join("server.toml");
    add_user(&config, "ana", "analyst", "ana-secret");
    let boards = dir.join("dashboards");
    std::fs::create_dir_all(&boards).unwrap();
    std::fs::write(
        boards.join("broken.toml"),
        FEASIBILITY.replace("y = \"persons\"\n", ""),
    )
    .unwrap();
    let run = |http: &str| {
        std::process::Command::new(crate::common::tsunagu())
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--store"])
            .arg(synthetic())
            .arg("--state")
            .arg(state_dir())
            .arg("--config")
            .arg(&config)
            .args(["--http", http, "--dashboards"])
            .arg(&boards)
            .output()
            .unwrap()
    };
    let out = run("0.0.0.0:0");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("plain HTTP"), "{err}");
    let out = run("127.0.0.1:0");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("broken.toml") && err.contains("needs `y`"),
        "{err}"
    );
}
