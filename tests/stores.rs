//! Real stores open, show the data model, and link persons as specified.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::{count, eunomia, open, query, state_dir, synthetic};
use tsunagu_engine::{Engine, EngineOptions};

#[tokio::test]
async fn eunomia_row_counts_match_its_readme() {
    let engine = open(&eunomia()).await;
    let expected = [
        ("cdm.person", 2694),
        ("cdm.observation_period", 5343),
        ("cdm.visit_occurrence", 1037),
        ("cdm.condition_occurrence", 65332),
        ("cdm.drug_exposure", 67707),
        ("cdm.procedure_occurrence", 37409),
        ("cdm.measurement", 44053),
        ("cdm.observation", 1477),
        ("cdm.death", 0),
        ("cdm.drug_era", 52508),
        ("cdm.condition_era", 65719),
        ("vocab.concept", 444),
        ("vocab.concept_ancestor", 65690),
    ];
    for (table, rows) in expected {
        assert_eq!(
            count(&engine, &format!("SELECT count(*) FROM {table}")).await,
            rows,
            "{table}"
        );
    }
}

#[tokio::test]
async fn eunomia_persons_are_numbered_densely_by_key() {
    let engine = open(&eunomia()).await;
    // Persons are the keys seen in any person-level table: observation_period
    // has 2,649 rows for keys absent from person.
    let all = "SELECT person_id, person_key FROM cdm.person UNION ALL SELECT person_id, person_key FROM cdm.observation_period \
               UNION ALL SELECT person_id, person_key FROM cdm.drug_exposure UNION ALL SELECT person_id, person_key FROM cdm.condition_occurrence \
               UNION ALL SELECT person_id, person_key FROM cdm.visit_occurrence UNION ALL SELECT person_id, person_key FROM cdm.measurement \
               UNION ALL SELECT person_id, person_key FROM cdm.procedure_occurrence UNION ALL SELECT person_id, person_key FROM cdm.observation \
               UNION ALL SELECT person_id, person_key FROM cdm.drug_era UNION ALL SELECT person_id, person_key FROM cdm.condition_era";
    let persons = engine.store().persons().persons() as i64;
    assert!(
        persons > 2694,
        "observation_period keys count as persons: {persons}"
    );
    assert_eq!(
        count(
            &engine,
            &format!("SELECT count(DISTINCT person_id) FROM ({all})")
        )
        .await,
        persons
    );
    assert_eq!(
        count(&engine, &format!("SELECT max(person_id) + 1 FROM ({all})")).await,
        persons
    );
    // One key, one number; numbers follow the keys' byte order (no linkage).
    assert_eq!(count(&engine, &format!("SELECT count(*) FROM (SELECT person_key FROM ({all}) GROUP BY person_key HAVING count(DISTINCT person_id) <> 1)")).await, 0);
    let ordered = query(&engine, &format!(
        "SELECT count(*) FROM (SELECT person_id, row_number() OVER (ORDER BY person_key) - 1 AS expected FROM (SELECT DISTINCT person_id, person_key FROM ({all}))) WHERE person_id <> expected"
    )).await;
    assert_eq!(ordered, vec!["0"]);
    // The original key of an OMOP export is what person_key holds.
    let rows = query(
        &engine,
        "SELECT person_key, year_of_birth FROM cdm.person WHERE person_key = '6'",
    )
    .await;
    assert_eq!(rows, vec!["6|1963"]);
    // A CDM column the files lack is NULL of its type.
    let rows = query(&engine, "SELECT arrow_typeof(person_id), arrow_typeof(person_key), arrow_typeof(drug_exposure_start_date) FROM cdm.drug_exposure LIMIT 1").await;
    assert_eq!(rows, vec!["Int64|Utf8|Date32"]);
}

#[tokio::test]
async fn synthetic_store_shows_every_schema() {
    let engine = open(synthetic()).await;
    for table in [
        "ndb.person",
        "ndb.observation_period",
        "ndb.drug_exposure",
        "ndb.condition_occurrence",
        "ndb.measurement",
        "dpc.visit_occurrence",
        "kaigo.care_certification",
        "kaigo.care_service",
        "vocab.concept",
        "vocab.concept_ancestor",
        "linked.person",
        "linked.visit_occurrence",
    ] {
        assert!(
            count(&engine, &format!("SELECT count(*) FROM {table}")).await > 0,
            "{table} is empty"
        );
    }
    // linked.person is the union of person across the three sources.
    let per_source = query(
        &engine,
        "SELECT source, count(*) FROM linked.person GROUP BY source ORDER BY source",
    )
    .await;
    let ndb = count(&engine, "SELECT count(*) FROM ndb.person").await;
    let dpc = count(&engine, "SELECT count(*) FROM dpc.person").await;
    let kaigo = count(&engine, "SELECT count(*) FROM kaigo.person").await;
    assert_eq!(
        per_source,
        vec![
            format!("dpc|{dpc}"),
            format!("kaigo|{kaigo}"),
            format!("ndb|{ndb}")
        ]
    );
    // A column only one source has is NULL for the others.
    assert_eq!(
        count(
            &engine,
            "SELECT count(month_of_birth) FROM linked.person WHERE source <> 'ndb'"
        )
        .await,
        0
    );
    // Extra columns keep their delivered types; dpc_code is text.
    assert!(count(&engine, "SELECT count(*) FROM linked.visit_occurrence WHERE dpc_code IS NOT NULL AND source = 'dpc'").await > 0);
}

/// Registers the linkage file of the synthetic store as table `links`.
async fn with_links(engine: &Engine, store: &Path) -> tsunagu_engine::Session {
    let session = engine.session().unwrap();
    session
        .context()
        .register_parquet(
            "links",
            store.join("linkage/person_link.parquet").to_str().unwrap(),
            Default::default(),
        )
        .await
        .unwrap();
    session
}

#[tokio::test]
async fn linked_persons_share_one_number_across_sources() {
    let store = synthetic();
    let engine = open(store).await;
    let session = with_links(&engine, store).await;
    let keys = "SELECT 'ndb' AS source, person_key, person_id FROM ndb.observation_period \
                UNION ALL SELECT 'dpc', person_key, person_id FROM dpc.visit_occurrence \
                UNION ALL SELECT 'kaigo', person_key, person_id FROM kaigo.person";
    let run = |sql: String| {
        let session = session.clone();
        async move {
            let b = session
                .sql(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            datafusion::arrow::util::pretty::pretty_format_batches(&b)
                .unwrap()
                .to_string()
        }
    };
    let summary = run(format!(
        "SELECT count(*) AS link_keys, sum(CASE WHEN n <> 1 THEN 1 ELSE 0 END) AS split, sum(CASE WHEN sources > 1 THEN 1 ELSE 0 END) AS multi, \
         sum(CASE WHEN ndb_keys > 1 THEN 1 ELSE 0 END) AS insurer_changes \
         FROM (SELECT l.link_key, count(DISTINCT k.person_id) AS n, count(DISTINCT k.source) AS sources, \
               count(DISTINCT CASE WHEN k.source = 'ndb' THEN k.person_key END) AS ndb_keys \
               FROM links l JOIN ({keys}) k ON l.source = k.source AND l.person_key = k.person_key GROUP BY l.link_key)"
    ))
    .await;
    let values: Vec<i64> = summary
        .lines()
        .nth(3)
        .unwrap()
        .split('|')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let [link_keys, split, multi, changes] = values[..] else {
        panic!("{summary}")
    };
    assert_eq!(split, 0, "every link key maps to one person_id:\n{summary}");
    assert!(multi > 0 && changes > 0 && link_keys > 1000, "{summary}");
    // Linked persons come first, numbered in link-key order.
    let order = run(format!(
        "SELECT count(*) AS misplaced FROM (SELECT link_key, min(k.person_id) AS id, row_number() OVER (ORDER BY link_key) - 1 AS expected \
         FROM links l JOIN ({keys}) k ON l.source = k.source AND l.person_key = k.person_key GROUP BY link_key) WHERE id <> expected"
    ))
    .await;
    assert!(order.contains("| 0 "), "{order}");
    // Unlinked keys follow, one number per (source, key).
    let linked = engine.store().persons().linked_persons() as i64;
    let unlinked = run(format!(
        "SELECT count(*) AS misnumbered FROM ({keys}) k WHERE person_id < {linked} AND NOT EXISTS (SELECT 1 FROM links l WHERE l.source = k.source AND l.person_key = k.person_key)"
    ))
    .await;
    assert!(unlinked.contains("| 0 "), "{unlinked}");
    let unlinked = run(format!(
        "SELECT count(*) AS unlinked FROM ({keys}) k WHERE person_id >= {linked} AND NOT EXISTS (SELECT 1 FROM links l WHERE l.source = k.source AND l.person_key = k.person_key)"
    ))
    .await;
    assert!(
        !unlinked.contains("| 0 "),
        "some keys are unlinked: {unlinked}"
    );
}

/// Every file of a folder with its size and modification time.
fn listing(dir: &Path) -> BTreeMap<String, (u64, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().display().to_string(),
                    (m.len(), m.modified().unwrap()),
                );
            }
        }
    }
    out
}

#[tokio::test]
async fn derived_state_is_reused_and_the_store_never_written() {
    let store = tempfile::tempdir().unwrap();
    let opts = tsunagu_generator::GenerateOptions {
        persons: 300,
        seed: 11,
        threads: 1,
        renumber: None,
        codes: tsunagu_generator::Codes::Standard,
    };
    tsunagu_generator::generate(&opts, store.path(), &|_, _| {}).unwrap();
    let before = listing(store.path());
    let state = state_dir();
    let options = || EngineOptions {
        state_dir: Some(state.clone()),
        ..Default::default()
    };
    let first = Engine::open(store.path(), options()).await.unwrap();
    let derived = listing(&state);
    assert!(
        derived.keys().any(|k| k.ends_with("complete.json")),
        "{derived:?}"
    );
    let persons = first.store().persons().persons();
    let second = Engine::open(store.path(), options()).await.unwrap();
    assert_eq!(
        listing(&state),
        derived,
        "a second open reuses the derived state untouched"
    );
    assert_eq!(second.store().persons().persons(), persons);
    assert_eq!(
        query(
            &first,
            "SELECT person_id, person_key FROM ndb.person ORDER BY person_id LIMIT 5"
        )
        .await,
        query(
            &second,
            "SELECT person_id, person_key FROM ndb.person ORDER BY person_id LIMIT 5"
        )
        .await
    );
    assert_eq!(
        listing(store.path()),
        before,
        "nothing is written into the store"
    );
    // A changed store derives afresh; the state it replaces is kept for
    // work still running on it, and dropped at the next change.
    let completed = |l: &BTreeMap<String, (u64, std::time::SystemTime)>| {
        let mut v: Vec<String> = l
            .keys()
            .filter(|k| k.ends_with("complete.json"))
            .cloned()
            .collect();
        v.sort();
        v
    };
    let first_state = completed(&derived);
    std::fs::write(store.path().join("README.md"), "changed").unwrap();
    let third = Engine::open(store.path(), options()).await.unwrap();
    assert_eq!(third.store().persons().persons(), persons);
    let after = listing(&state);
    assert_ne!(after, derived);
    assert_eq!(completed(&after).len(), 2, "{:?}", completed(&after));
    assert!(completed(&after).contains(&first_state[0]));
    std::fs::write(store.path().join("README.md"), "changed again").unwrap();
    let fourth = Engine::open(store.path(), options()).await.unwrap();
    assert_eq!(fourth.store().persons().persons(), persons);
    let last = completed(&listing(&state));
    assert_eq!(last.len(), 2, "{last:?}");
    assert!(!last.contains(&first_state[0]), "{last:?}");
}

/// Every row of a delivered table, read with plain DataFusion.
async fn delivered(file: &Path, sql: &str) -> Vec<String> {
    delivered_with_numbers(file, &[], sql).await
}

#[tokio::test]
async fn person_level_tables_are_read_from_the_person_layout_with_keys_intact() {
    let store = synthetic();
    let engine = open(store).await;
    // The scan reads the copy in the state folder, not the delivered file.
    let plan = query(
        &engine,
        "EXPLAIN SELECT sum(quantity) FROM ndb.drug_exposure",
    )
    .await
    .join("\n");
    assert!(plan.contains("/layout/ndb/drug_exposure/"), "{plan}");
    assert!(!plan.contains("ndb/drug_exposure.parquet"), "{plan}");
    // Row for row, every column and the key read back are as delivered.
    let shown = query(
        &engine,
        "SELECT drug_exposure_id, person_key, drug_concept_id, drug_exposure_start_date, quantity
           FROM ndb.drug_exposure ORDER BY drug_exposure_id",
    )
    .await;
    let raw = delivered(
        &store.join("ndb/drug_exposure.parquet"),
        "SELECT drug_exposure_id, person_key, drug_concept_id, drug_exposure_start_date, quantity
           FROM delivered ORDER BY drug_exposure_id",
    )
    .await;
    assert!(shown.len() > 1000);
    assert_eq!(shown, raw);
    // person_id is the number of the row's key: one number per key, and the
    // numbers agree with the person table's.
    assert_eq!(
        count(
            &engine,
            "SELECT count(*) FROM (SELECT person_key FROM ndb.drug_exposure
               GROUP BY person_key HAVING count(DISTINCT person_id) <> 1)"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &engine,
            "SELECT count(*) FROM ndb.drug_exposure d JOIN ndb.person p ON p.person_key = d.person_key
              WHERE p.person_id <> d.person_id"
        )
        .await,
        0
    );
}

/// The rows of one Parquet file, in file order: (person number, event date).
async fn file_rows(file: &Path, date: &str) -> Vec<(Option<i64>, Option<i32>)> {
    use datafusion::arrow::array::{Array, AsArray, RecordBatch};
    use datafusion::arrow::datatypes::{Date32Type, Int64Type};
    // One partition: the rows come back in the file's order.
    let config = datafusion::prelude::SessionConfig::new().with_target_partitions(1);
    let ctx = datafusion::prelude::SessionContext::new_with_config(config);
    ctx.register_parquet(
        "copy",
        file.to_string_lossy().as_ref(),
        datafusion::prelude::ParquetReadOptions::default(),
    )
    .await
    .expect("registers");
    let batches: Vec<RecordBatch> = ctx
        .sql(&format!("SELECT __tsunagu_person_id, {date} FROM copy"))
        .await
        .expect("plans")
        .collect()
        .await
        .expect("runs");
    let mut rows = Vec::new();
    for b in &batches {
        let ids = b.column(0).as_primitive::<Int64Type>();
        let dates = b.column(1).as_primitive::<Date32Type>();
        for i in 0..b.num_rows() {
            rows.push((
                ids.is_valid(i).then(|| ids.value(i)),
                dates.is_valid(i).then(|| dates.value(i)),
            ));
        }
    }
    rows
}

/// Like [`delivered`], with a table `numbers` (person_key, person_id) of `key|id` lines.
async fn delivered_with_numbers(file: &Path, numbers: &[String], sql: &str) -> Vec<String> {
    delivered_tables(&[("delivered", file.to_path_buf())], numbers, sql).await
}

/// Joins on a visit and its person, aggregates by person and a left join
/// on the person; run with every join partitioned (no table broadcast).
pub(crate) const WITHIN_PERSONS: &str = "
    SELECT p.person_id, p.conditions, d.drugs
      FROM (SELECT c.person_id, count(*) AS conditions
              FROM ndb.condition_occurrence c
              JOIN ndb.visit_occurrence v
                ON c.visit_occurrence_id = v.visit_occurrence_id AND c.person_id = v.person_id
             WHERE v.visit_concept_id = 9201
             GROUP BY c.person_id) p
      LEFT JOIN (SELECT person_id, count(*) AS drugs FROM ndb.drug_exposure GROUP BY person_id) d
        ON p.person_id = d.person_id
     ORDER BY p.person_id";

#[tokio::test]
async fn joins_on_a_visit_and_its_person_run_within_person_ranges() {
    let store = synthetic();
    let engine = open(store).await;
    let session = engine.session().expect("session");
    for option in [
        "hash_join_single_partition_threshold",
        "hash_join_single_partition_threshold_rows",
    ] {
        session
            .sql(&format!("SET datafusion.optimizer.{option} = 0"))
            .await
            .expect("sets");
    }
    let ranges = person_ranges(&engine, "visit_occurrence");
    let plan = explained(&session, WITHIN_PERSONS).await;
    // The layout's person ranges serve the join on (visit, person), the
    // aggregate by person and the left join on the person as they are: no
    // row is repartitioned (a plan expectation written here).
    assert!(!plan.contains("RepartitionExec"), "{plan}");
    if ranges > 1 {
        assert!(plan.contains("within person ranges"), "{plan}");
    }
    let ours = crate::common::lines(&session.sql(WITHIN_PERSONS).await.expect("runs"));

    // The same study in plain DataFusion on the delivered files, each
    // source's person keys mapped to the engine's person numbers.
    let numbers = query(
        &engine,
        "SELECT DISTINCT person_key, person_id FROM ndb.condition_occurrence
         UNION SELECT DISTINCT person_key, person_id FROM ndb.visit_occurrence
         UNION SELECT DISTINCT person_key, person_id FROM ndb.drug_exposure",
    )
    .await;
    let tables: Vec<(&str, std::path::PathBuf)> =
        ["condition_occurrence", "visit_occurrence", "drug_exposure"]
            .into_iter()
            .map(|name| (name, store.join(format!("ndb/{name}.parquet"))))
            .collect();
    let theirs = delivered_tables(
        &tables,
        &numbers,
        "SELECT p.person_id, p.conditions, d.drugs
           FROM (SELECT nc.person_id, count(*) AS conditions
                   FROM condition_occurrence c
                   JOIN numbers nc ON nc.person_key = c.person_key
                   JOIN visit_occurrence v ON c.visit_occurrence_id = v.visit_occurrence_id
                   JOIN numbers nv ON nv.person_key = v.person_key AND nv.person_id = nc.person_id
                  WHERE v.visit_concept_id = 9201
                  GROUP BY nc.person_id) p
           LEFT JOIN (SELECT n.person_id, count(*) AS drugs
                        FROM drug_exposure e JOIN numbers n ON n.person_key = e.person_key
                       GROUP BY n.person_id) d
             ON p.person_id = d.person_id
          ORDER BY p.person_id",
    )
    .await;
    assert!(ours.len() > 100, "{} persons", ours.len());
    assert!(
        ours.iter().any(|l| l.ends_with('|')),
        "some person has no drug"
    );
    assert_eq!(ours.len(), theirs.len());
    if let Some(i) = (0..ours.len()).find(|&i| ours[i] != theirs[i]) {
        panic!("row {i}: {} against {}", ours[i], theirs[i]);
    }
}

#[tokio::test]
async fn a_join_collecting_a_cohort_of_persons_runs_within_person_ranges() {
    let store = synthetic();
    let engine = open(store).await;
    let session = engine.session().expect("session");
    // Each person's first dispensing, kept when a condition began within 30
    // days: DataFusion plans the semi join collecting the (small) cohort of
    // first dispensings, merged from the person ranges, as its build side.
    let sql = "SELECT f.person_id, f.first_day
                 FROM (SELECT person_id, min(drug_exposure_start_date) AS first_day
                         FROM ndb.drug_exposure GROUP BY person_id) f
                WHERE EXISTS (SELECT 1 FROM ndb.condition_occurrence c
                               WHERE c.person_id = f.person_id
                                 AND c.condition_start_date BETWEEN f.first_day
                                     AND f.first_day + INTERVAL '30' DAY)
                ORDER BY f.person_id";
    let ranges = person_ranges(&engine, "drug_exposure");
    let plan = explained(&session, sql).await;
    // The cohort is joined range by range, not merged and collected (a plan
    // expectation written here).
    if ranges > 1 {
        assert!(plan.contains("within person ranges"), "{plan}");
        assert!(!plan.contains("CollectLeft"), "{plan}");
    }
    let ours = crate::common::lines(&session.sql(sql).await.expect("runs"));

    // [oracle: plain DataFusion on the delivered files, each person key
    // mapped to the engine's person number]
    let numbers = query(
        &engine,
        "SELECT DISTINCT person_key, person_id FROM ndb.condition_occurrence
         UNION SELECT DISTINCT person_key, person_id FROM ndb.drug_exposure",
    )
    .await;
    let tables: Vec<(&str, std::path::PathBuf)> = ["condition_occurrence", "drug_exposure"]
        .into_iter()
        .map(|name| (name, store.join(format!("ndb/{name}.parquet"))))
        .collect();
    let theirs = delivered_tables(
        &tables,
        &numbers,
        "SELECT f.person_id, f.first_day
           FROM (SELECT n.person_id, min(e.drug_exposure_start_date) AS first_day
                   FROM drug_exposure e JOIN numbers n ON n.person_key = e.person_key
                  GROUP BY n.person_id) f
          WHERE EXISTS (SELECT 1 FROM condition_occurrence c
                          JOIN numbers nc ON nc.person_key = c.person_key
                         WHERE nc.person_id = f.person_id
                           AND c.condition_start_date BETWEEN f.first_day
                               AND f.first_day + INTERVAL '30' DAY)
          ORDER BY f.person_id",
    )
    .await;
    assert!(ours.len() > 50, "{} persons", ours.len());
    assert_eq!(ours.len(), theirs.len());
    if let Some(i) = (0..ours.len()).find(|&i| ours[i] != theirs[i]) {
        panic!("row {i}: {} against {}", ours[i], theirs[i]);
    }
}

/// How many person ranges the layout of `ndb.<table>` has.
fn person_ranges(engine: &Engine, table: &str) -> usize {
    engine
        .store()
        .tables()
        .iter()
        .find(|t| t.schema == "ndb" && t.name == table)
        .and_then(|t| t.person_ranges.as_ref())
        .expect("a person layout")
        .count
}

/// The plan `EXPLAIN` shows for `sql`, as one text.
async fn explained(session: &tsunagu_engine::Session, sql: &str) -> String {
    crate::common::lines(
        &session
            .sql(&format!("EXPLAIN {sql}"))
            .await
            .expect("explains"),
    )
    .join("\n")
}

/// `sql` in plain DataFusion over the Parquet files `tables` (name, file),
/// with a table `numbers` (person_key, person_id) of `key|id` lines.
async fn delivered_tables(
    tables: &[(&str, std::path::PathBuf)],
    numbers: &[String],
    sql: &str,
) -> Vec<String> {
    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let ctx = datafusion::prelude::SessionContext::new();
    for (name, file) in tables {
        ctx.register_parquet(
            *name,
            file.to_string_lossy().as_ref(),
            datafusion::prelude::ParquetReadOptions::default(),
        )
        .await
        .expect("registers");
    }
    let (keys, ids): (Vec<&str>, Vec<i64>) = numbers
        .iter()
        .map(|l| {
            let (k, i) = l.split_once('|').expect("key|id");
            (k, i.parse::<i64>().expect("a number"))
        })
        .unzip();
    let schema = std::sync::Arc::new(Schema::new(vec![
        Field::new("person_key", DataType::Utf8, false),
        Field::new("person_id", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            std::sync::Arc::new(StringArray::from(keys)),
            std::sync::Arc::new(Int64Array::from(ids)),
        ],
    )
    .expect("a batch");
    ctx.register_batch("numbers", batch).expect("registers");
    let batches = ctx
        .sql(sql)
        .await
        .expect("plans")
        .collect()
        .await
        .expect("runs");
    crate::common::lines(&batches)
}

#[tokio::test]
async fn the_person_layout_is_split_into_person_ranges_each_sorted_by_person_and_date() {
    let store = synthetic();
    let engine = open(store).await;
    let persons = engine.store().persons().persons();
    let derived = engine
        .store()
        .tables()
        .iter()
        .find(|t| t.schema == "ndb" && t.name == "drug_exposure")
        .expect("ndb.drug_exposure")
        .clone();
    let ranges = derived.person_ranges.expect("a person layout");
    let files = &derived.person_files;
    // One file per range, in range order; every range holds the numbers of
    // its slice of persons, sorted by (person, start date).
    assert_eq!(files.len(), ranges.count);
    assert_eq!(
        ranges.count,
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    assert_eq!(ranges.width, persons.div_ceil(ranges.count as u64));
    let mut total = 0;
    for (r, file) in files.iter().enumerate() {
        let rows = file_rows(file, "drug_exposure_start_date").await;
        total += rows.len();
        let low = r as i64 * ranges.width as i64;
        let high = if r + 1 == ranges.count {
            i64::MAX
        } else {
            low + ranges.width as i64
        };
        for (id, _) in &rows {
            let id = id.expect("every drug exposure has a person");
            assert!(low <= id && id < high, "range {r} holds person {id}");
        }
        let mut sorted = rows.clone();
        sorted.sort_by_key(|&(id, date)| (id, date.is_none(), date));
        assert_eq!(rows, sorted, "range {r} is in (person, date) order");
    }
    // Every delivered row is in the copy once.
    let delivered_rows = delivered(
        &store.join("ndb/drug_exposure.parquet"),
        "SELECT count(*) FROM delivered",
    )
    .await;
    assert_eq!(delivered_rows, vec![total.to_string()]);

    // The ranges and the order are declared to DataFusion: a window over a
    // person's rows in date order and an aggregate by person read the
    // ranges as they are, with no shuffle and no sort (a plan expectation
    // written here, guarding against a regression).
    let plan = query(
        &engine,
        "EXPLAIN SELECT person_id, drug_concept_id,
                row_number() OVER (PARTITION BY person_id ORDER BY drug_exposure_start_date) AS n
           FROM ndb.drug_exposure",
    )
    .await
    .join("\n");
    assert!(!plan.contains("RepartitionExec"), "{plan}");
    assert!(!plan.contains("SortExec"), "{plan}");
    let plan = query(
        &engine,
        "EXPLAIN SELECT person_id, count(*) FROM ndb.condition_occurrence GROUP BY person_id",
    )
    .await
    .join("\n");
    assert!(!plan.contains("RepartitionExec"), "{plan}");
    // The window's answers against plain DataFusion on the delivered file.
    // A person may hold several keys of one source (linked), so the oracle
    // partitions by the person number of each key, read from the engine.
    let ours = query(
        &engine,
        "SELECT drug_exposure_id,
                row_number() OVER (PARTITION BY person_id
                                   ORDER BY drug_exposure_start_date, drug_exposure_id) AS n
           FROM ndb.drug_exposure ORDER BY drug_exposure_id",
    )
    .await;
    let numbers = query(
        &engine,
        "SELECT DISTINCT person_key, person_id FROM ndb.drug_exposure",
    )
    .await;
    let theirs = delivered_with_numbers(
        &store.join("ndb/drug_exposure.parquet"),
        &numbers,
        "SELECT drug_exposure_id,
                row_number() OVER (PARTITION BY n.person_id
                                   ORDER BY drug_exposure_start_date, drug_exposure_id) AS n
           FROM delivered d JOIN numbers n ON n.person_key = d.person_key
          ORDER BY drug_exposure_id",
    )
    .await;
    assert!(
        numbers.len()
            > count(
                &engine,
                "SELECT count(DISTINCT person_id) FROM ndb.drug_exposure"
            )
            .await as usize,
        "some person holds two keys, so partitions by key and by person differ"
    );
    assert!(ours.len() > 1000);
    assert_eq!(ours.len(), theirs.len());
    if let Some(i) = (0..ours.len()).find(|&i| ours[i] != theirs[i]) {
        panic!("row {i}: {} against {}", ours[i], theirs[i]);
    }
}
