//! Deliveries taken in incrementally: a store delivered in two parts gives,
//! after the second part is taken in, the same answers as the same files
//! opened from scratch, and every person numbered before keeps their number.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use tsunagu_engine::catalog::Opened;
use tsunagu_engine::{Engine, EngineOptions};

use crate::common::{query, state_dir, synthetic, temp_folder};

const SOURCES: [&str; 3] = ["ndb", "dpc", "kaigo"];

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Splits the synthetic store into a first delivery (`first`, a complete
/// store whose person-level tables and linkage are folders) and a second
/// (`second`, files at the same relative paths): one person in sixteen
/// (by link key) arrives only in the second, with all their rows and link
/// rows, and so do the 2023 dispensings of everyone.
pub(crate) async fn split_store(first: &Path, second: &Path) {
    let full = synthetic();
    let ctx = SessionContext::new();
    ctx.register_parquet(
        "link",
        full.join("linkage/person_link.parquet").to_str().unwrap(),
        ParquetReadOptions::default(),
    )
    .await
    .unwrap();
    let write = |sql: String, to: PathBuf| {
        let ctx = ctx.clone();
        async move {
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            ctx.sql(&sql)
                .await
                .unwrap()
                .write_parquet(
                    to.to_str().unwrap(),
                    DataFrameWriteOptions::new().with_single_file_output(true),
                    None,
                )
                .await
                .unwrap();
        }
    };
    let later = "substr(link_key, 1, 1) = '0'";
    write(
        format!("SELECT * FROM link WHERE NOT ({later})"),
        first.join("linkage/d1.parquet"),
    )
    .await;
    write(
        format!("SELECT * FROM link WHERE {later}"),
        second.join("linkage/d2.parquet"),
    )
    .await;
    for e in std::fs::read_dir(full).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "linkage" || SOURCES.contains(&name.as_str()) {
            continue;
        }
        if e.path().is_dir() {
            copy_tree(&e.path(), &first.join(&name));
        } else if name == "rwd.toml" {
            let text = std::fs::read_to_string(e.path()).unwrap();
            let text = text.replace(
                "path = \"linkage/person_link.parquet\"",
                "path = \"linkage\"",
            );
            std::fs::write(first.join(&name), text).unwrap();
        } else {
            std::fs::copy(e.path(), first.join(&name)).unwrap();
        }
    }
    for source in SOURCES {
        for e in std::fs::read_dir(full.join(source)).unwrap().flatten() {
            let path = e.path();
            let table = path.file_stem().unwrap().to_string_lossy().into_owned();
            let name = format!("{source}_{table}");
            ctx.register_parquet(&name, path.to_str().unwrap(), ParquetReadOptions::default())
                .await
                .unwrap();
            let in_second = format!(
                "person_key IN (SELECT person_key FROM link WHERE source = '{source}' AND {later}){}",
                if name == "ndb_drug_exposure" {
                    " OR drug_exposure_start_date >= DATE '2023-01-01'"
                } else {
                    ""
                }
            );
            write(
                format!("SELECT * FROM {name} WHERE NOT ({in_second})"),
                first.join(source).join(&table).join("d1.parquet"),
            )
            .await;
            write(
                format!("SELECT * FROM {name} WHERE {in_second}"),
                second.join(source).join(&table).join("d2.parquet"),
            )
            .await;
        }
    }
}

async fn open(store: &Path, state: &Path) -> Engine {
    Engine::open(
        store,
        EngineOptions {
            state_dir: Some(state.to_owned()),
            ..Default::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{} does not open: {e}", store.display()))
}

/// Every (source, key) and its person number.
async fn numbers(engine: &Engine) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for source in SOURCES {
        for line in query(
            engine,
            &format!("SELECT person_key, person_id FROM {source}.person"),
        )
        .await
        {
            let (key, id) = line.split_once('|').unwrap();
            out.insert(format!("{source}:{key}"), id.to_owned());
        }
    }
    out
}

/// Answers that do not depend on how persons are numbered.
const QUERIES: &[&str] = &[
    "SELECT count(*), count(DISTINCT person_id) FROM ndb.drug_exposure",
    "SELECT count(*), count(DISTINCT person_id) FROM ndb.person",
    "SELECT count(*), count(DISTINCT person_id) FROM dpc.condition_occurrence",
    "SELECT count(*), count(DISTINCT person_id) FROM kaigo.care_service",
    "SELECT source, count(*), count(DISTINCT person_id) FROM linked.person GROUP BY source ORDER BY source",
    // The persons as the linkage groups keys: the same groups whatever their numbers.
    "SELECT k, n FROM (SELECT min(source || ':' || person_key) AS k, count(*) AS n FROM linked.person GROUP BY person_id) ORDER BY k",
    // Records joined across sources through person_id.
    "SELECT count(*) FROM ndb.drug_exposure d JOIN dpc.condition_occurrence c ON d.person_id = c.person_id",
    "SELECT count(*) FROM (SELECT person_id FROM ndb.person INTERSECT SELECT person_id FROM kaigo.person)",
    "SELECT year_of_birth, count(DISTINCT person_id) FROM linked.person GROUP BY 1 ORDER BY 1",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_taken_in_without_renumbering_and_answers_as_a_rebuild() {
    let dir = temp_folder("tsunagu-deliveries-");
    let (store, second) = (dir.join("store"), dir.join("second"));
    split_store(&store, &second).await;
    let state = state_dir();

    let before = open(&store, &state).await;
    assert!(matches!(
        before.store().opened(),
        Opened::Derived { reason: None }
    ));
    let numbered = numbers(&before).await;
    let session = before.session().unwrap();
    session
        .sql("CREATE COHORT older AS SELECT person_id FROM ndb.person WHERE year_of_birth < 1950")
        .await
        .unwrap();
    let older = query(&before, "SELECT person_id FROM cohort('older') ORDER BY 1").await;
    assert!(older.len() > 100, "{}", older.len());
    let persons_before = before.store().persons().persons();

    // The second delivery lands beside the first.
    copy_tree(&second, &store);
    assert!(before.store_changed().unwrap());
    let after = before.reopen().await.unwrap();
    let Opened::Extended { files, new_persons } = after.store().opened().clone() else {
        panic!("not taken in incrementally: {:?}", after.store().opened());
    };
    assert_eq!(files.len(), 16, "{files:?}");
    assert_eq!(after.store().generation(), 1);
    assert_eq!(after.store().lineage(), before.store().lineage());
    assert_eq!(
        after.store().persons().persons(),
        persons_before + new_persons
    );
    assert!(new_persons > 50, "{new_persons}");
    // Everyone numbered before keeps their number; newcomers come after.
    let renumbered = numbers(&after).await;
    for (key, id) in &numbered {
        assert_eq!(renumbered.get(key), Some(id), "{key}");
    }
    for (key, id) in &renumbered {
        if !numbered.contains_key(key) {
            assert!(
                id.parse::<u64>().unwrap() >= persons_before,
                "{key} -> {id}"
            );
        }
    }
    // The cohort saved before the delivery is still valid, with the same persons.
    assert_eq!(
        query(&after, "SELECT person_id FROM cohort('older') ORDER BY 1").await,
        older
    );

    // The same files opened from scratch give the same answers.
    let rebuilt = open(&store, &state_dir()).await;
    assert!(matches!(
        rebuilt.store().opened(),
        Opened::Derived { reason: None }
    ));
    assert_eq!(
        rebuilt.store().persons().persons(),
        after.store().persons().persons()
    );
    for sql in QUERIES {
        let (a, b) = (query(&after, sql).await, query(&rebuilt, sql).await);
        assert!(!a.is_empty(), "{sql}");
        assert_eq!(a, b, "{sql}");
    }
    let study = std::fs::read_to_string(
        crate::common::repo().join("sql/studies/nsaid_gi_bleed_new_users.sql"),
    )
    .unwrap();
    assert_eq!(query(&after, &study).await, query(&rebuilt, &study).await);
    // Reopened, the grown state is reused as it is.
    let again = open(&store, &state).await;
    assert_eq!(again.store().opened(), &Opened::Reused);
    assert_eq!(numbers(&again).await, renumbered);

    // A changed file derives the state again, and says why; the cohort of
    // the old numbering is then refused rather than read as other persons.
    let person = store.join("ndb/person/d1.parquet");
    let bytes = std::fs::read(&person).unwrap();
    std::fs::write(&person, bytes).unwrap();
    let changed = again.reopen().await.unwrap();
    match changed.store().opened() {
        Opened::Derived { reason: Some(r) } => {
            assert!(r.contains("ndb/person/d1.parquet was changed"), "{r}")
        }
        other => panic!("{other:?}"),
    }
    let err = changed
        .session()
        .unwrap()
        .sql("SELECT count(*) FROM cohort('older')")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("numbered differently"), "{err}");
}

/// Every study of `sql/studies/` and its plain twin.
fn studies() -> Vec<(String, String)> {
    let dir = crate::common::repo().join("sql/studies");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    out.sort();
    assert!(out.len() >= 14, "{out:?}");
    out
}

async fn open_deferred(store: &Path, state: &Path) -> Engine {
    Engine::open(
        store,
        EngineOptions {
            state_dir: Some(state.to_owned()),
            defer_layout: true,
            ..Default::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{} does not open: {e}", store.display()))
}

/// Steward answers to every study and query, and an analyst's released
/// answers to the studies.
async fn answers(engine: &Engine) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for sql in QUERIES {
        out.push((sql.to_string(), query(engine, sql).await));
    }
    let analyst = engine
        .session_as("layout-tester", tsunagu_engine::Role::Analyst)
        .unwrap();
    for (name, sql) in studies() {
        out.push((name.clone(), query(engine, &sql).await));
        let released = match analyst.sql(&sql).await {
            Ok(batches) => crate::common::lines(&batches),
            Err(e) => vec![format!("refused: {e}")],
        };
        out.push((format!("{name} as analyst"), released));
    }
    out
}

/// A store opened with its layout left for later answers at once, from the
/// delivered files, exactly as with the layout: before the layout is
/// written, after a delivery taken in meanwhile, and once written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_answers_before_its_layout_is_written_and_the_same_after() {
    let dir = temp_folder("tsunagu-deferred-");
    let (store, second) = (dir.join("store"), dir.join("second"));
    split_store(&store, &second).await;
    let state = state_dir();

    let deferred = open_deferred(&store, &state).await;
    let pending = deferred.store().pending_layout().len();
    // Every person-level table of the three sources.
    assert!(pending >= 15, "{pending}");
    let layout = state
        .join("derived")
        .join(deferred.store().fingerprint())
        .join("layout");
    assert!(!layout.join("ndb").exists(), "no copy is written yet");
    let with_layout = open(&store, &state_dir()).await;
    assert!(with_layout.store().pending_layout().is_empty());
    let expected = answers(&with_layout).await;
    let found = answers(&deferred).await;
    for ((what, a), (_, b)) in expected.iter().zip(&found) {
        if !what.ends_with("as analyst") {
            assert_eq!(a, b, "{what}");
        }
    }
    assert!(
        expected.iter().filter(|(_, rows)| !rows.is_empty()).count() > 20,
        "{expected:?}"
    );

    // A delivery lands while the layout is pending: taken in, still pending.
    copy_tree(&second, &store);
    let grown = deferred.reopen().await.unwrap();
    assert!(matches!(grown.store().opened(), Opened::Extended { .. }));
    assert!(!grown.store().pending_layout().is_empty());
    let rebuilt = open(&store, &state_dir()).await;
    let expected = answers(&rebuilt).await;
    let found = answers(&grown).await;
    for ((what, a), (_, b)) in expected.iter().zip(&found) {
        if !what.ends_with("as analyst") {
            assert_eq!(a, b, "{what}");
        }
    }

    // Written in the background, then switched to: the same answers (the
    // analyst's too: same state, same key, same persons), nothing left over.
    let current = tsunagu_engine::current::Current::new(std::sync::Arc::new(grown));
    let mut version = current.version();
    current.complete_layout();
    tokio::time::timeout(std::time::Duration::from_secs(300), version.changed())
        .await
        .expect("the layout is written within 5 minutes")
        .unwrap();
    let complete = current.get();
    assert!(complete.store().pending_layout().is_empty());
    assert_eq!(
        complete.store().fingerprint(),
        rebuilt.store().fingerprint()
    );
    assert_eq!(answers(&complete).await, found);
    assert!(!state.join("layout-work").exists());
    let copies = state
        .join("derived")
        .join(complete.store().fingerprint())
        .join("layout/ndb/drug_exposure");
    assert!(copies.is_dir(), "{}", copies.display());

    // State left pending is completed by an open that does not defer.
    let other = state_dir();
    drop(open_deferred(&store, &other).await);
    let completed = open(&store, &other).await;
    assert!(completed.store().pending_layout().is_empty());
    let found = answers(&completed).await;
    for ((what, a), (_, b)) in expected.iter().zip(&found) {
        if !what.ends_with("as analyst") {
            assert_eq!(a, b, "{what}");
        }
    }
}
