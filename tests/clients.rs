//! The tools analysts already use, against `tsunagu serve` on the demo
//! store, as the analyst and as the steward: psql meta-commands, Python
//! drivers (asyncpg, SQLAlchemy with pandas), node-postgres, and replays of
//! what BI tools send when they connect.

use std::process::Command;

use crate::common::repo;
use crate::wire::{DEMO_PASSWORD, Server};

const ROLES: [&str; 2] = ["analyst", "steward"];

fn psql_lines(server: &Server, user: &str, command: &str) -> String {
    let (ok, out, err) = server.psql_as(&server.conninfo_as(user, DEMO_PASSWORD), command);
    assert!(ok, "{user}: {command}: {err}");
    out
}

#[test]
fn psql_meta_commands_describe_the_store() {
    let server = Server::start();
    for user in ROLES {
        let tables = psql_lines(&server, user, "\\dt");
        for t in [
            "ndb|person|table",
            "kaigo|care_certification|table",
            "vocab|concept|table",
            "linked|person|table",
        ] {
            assert!(tables.contains(t), "{user} \\dt lacks {t}:\n{tables}");
        }
        let schemas = psql_lines(&server, user, "\\dn");
        for s in ["dpc|", "kaigo|", "linked|", "ndb|", "vocab|"] {
            assert!(schemas.contains(s), "{user} \\dn:\n{schemas}");
        }
        let person = psql_lines(&server, user, "\\d ndb.person");
        assert!(person.contains("person_id|bigint"), "{person}");
        assert!(person.contains("year_of_birth|bigint"), "{person}");
        let functions = psql_lines(&server, user, "\\df");
        for f in [
            "episodes|episode[]",
            "in_window|boolean",
            "rb_cardinality|bigint",
            "descendants|TABLE",
        ] {
            assert!(functions.contains(f), "{user} \\df lacks {f}:\n{functions}");
        }
        let described = psql_lines(&server, user, "\\df+ episodes");
        assert!(
            described.contains("OHDSI"),
            "\\df+ shows the description:\n{described}"
        );
        let roles = psql_lines(&server, user, "\\du");
        assert!(
            roles.contains("analyst") && roles.contains("steward"),
            "{roles}"
        );
        let databases = psql_lines(&server, user, "\\l");
        assert!(databases.contains("tsunagu|tsunagu|UTF8"), "{databases}");
        let info = psql_lines(&server, user, "\\conninfo");
        assert!(info.contains(&format!("as user \"{user}\"")), "{info}");
        let values = psql_lines(
            &server,
            user,
            "SELECT current_setting('server_version'), current_schema(), has_table_privilege('ndb.person', 'SELECT'), format_type(1082, NULL), pg_get_userbyid(10), version() LIKE 'PostgreSQL 16%'",
        );
        assert_eq!(values, "16.6|public|t|date|tsunagu|t");
        let discovered = psql_lines(
            &server,
            user,
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'ndb'",
        );
        assert_eq!(discovered, "8");
    }
}

#[test]
fn python_drivers_psycopg_asyncpg_and_sqlalchemy_with_pandas() {
    let server = Server::start();
    let port = server.port.to_string();
    crate::common::client_check(
        "python3",
        "tests/clients/drivers_check.py",
        &["127.0.0.1", &port],
        "6 passed, 0 failed",
    );
}

#[test]
fn node_postgres_with_parameters() {
    let server = Server::start();
    let port = server.port.to_string();
    crate::common::client_check(
        "node",
        "tests/clients/node_check.js",
        &["127.0.0.1", &port],
        "2 passed, 0 failed",
    );
}

#[test]
fn bi_tools_startup_and_introspection_replays() {
    let server = Server::start();
    let mut replays: Vec<_> = std::fs::read_dir(repo().join("tests/clients/bi"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    replays.sort();
    assert_eq!(replays.len(), 5, "{replays:?}");
    for replay in &replays {
        for user in ROLES {
            let out = Command::new("psql")
                .args([
                    server.conninfo_as(user, DEMO_PASSWORD).as_str(),
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-f",
                ])
                .arg(replay)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{} as {user}: {}",
                replay.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!out.stdout.is_empty(), "{}", replay.display());
        }
    }
}
