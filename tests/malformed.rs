//! Malformed stores are refused with a message naming file, column, line
//! and problem; implausible data opens as delivered.

use std::path::Path;

use crate::common::{count, query, state_dir};
use tsunagu_engine::{Engine, EngineOptions};

const MANIFEST: &str = "[store]\nname = \"t\"\n\n[[source]]\nname = \"ndb\"\npath = \"ndb\"\nperson_key = \"person_key\"\n\n[[source]]\nname = \"kaigo\"\npath = \"kaigo\"\nperson_key = \"person_key\"\n\n[linkage]\npath = \"linkage/person_link.csv\"\n";

const PERSON: &str =
    "person_key,gender_concept_id,year_of_birth\na1,8507,1950\na2,8532,1960\na3,8532,1970\n";
const DRUGS: &str = "drug_exposure_id,person_key,drug_concept_id,drug_exposure_start_date,drug_exposure_end_date,days_supply\n\
1,a1,3100001,2020-01-01,2020-01-28,28\n2,a2,3100001,2020-02-01,2020-01-15,14\n3,a9,0,2031-05-01,2031-05-02,1\n";
const KAIGO: &str = "person_key,year_of_birth\nk1,1950\nk2,1940\n";
const LINKS: &str = "source,person_key,link_key\nndb,a1,L1\nkaigo,k1,L1\nkaigo,k2,L0\nndb,zz,L9\n";

/// Writes a store of CSV files: (relative path, content).
fn store(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

fn valid() -> Vec<(&'static str, &'static str)> {
    vec![
        ("rwd.toml", MANIFEST),
        ("ndb/person.csv", PERSON),
        ("ndb/drug_exposure.csv", DRUGS),
        ("kaigo/person.csv", KAIGO),
        ("linkage/person_link.csv", LINKS),
    ]
}

fn with(replace: (&'static str, &'static str)) -> Vec<(&'static str, &'static str)> {
    let mut files: Vec<_> = valid()
        .into_iter()
        .filter(|(p, _)| *p != replace.0)
        .collect();
    files.push(replace);
    files
}

async fn open(dir: &Path) -> Result<Engine, String> {
    Engine::open(
        dir,
        EngineOptions {
            state_dir: Some(state_dir()),
            ..Default::default()
        },
    )
    .await
    .map_err(|e| e.to_string())
}

async fn refused(files: Vec<(&'static str, &'static str)>) -> String {
    let dir = store(&files);
    let state = state_dir();
    let e = match Engine::open(
        dir.path(),
        EngineOptions {
            state_dir: Some(state.clone()),
            ..Default::default()
        },
    )
    .await
    {
        Ok(_) => panic!("the store was opened"),
        Err(e) => e.to_string(),
    };
    // Nothing half-derived is left behind.
    let derived = state.join("derived");
    let left: Vec<_> = std::fs::read_dir(&derived)
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in the state folder: {left:?}");
    e
}

#[tokio::test]
async fn a_valid_csv_store_opens_with_implausible_rows_visible() {
    let dir = store(&valid());
    let engine = open(dir.path()).await.unwrap();
    // Keys: ndb a1 a2 a3 a9, kaigo k1 k2; links: L0 (k2), L1 (a1, k1); zz appears nowhere.
    let p = engine.store().persons();
    assert_eq!((p.persons(), p.linked_persons()), (5, 2));
    assert_eq!(
        query(
            &engine,
            "SELECT person_key, person_id FROM kaigo.person ORDER BY person_key"
        )
        .await,
        vec!["k1|1", "k2|0"]
    );
    assert_eq!(
        query(
            &engine,
            "SELECT person_key, person_id FROM ndb.person ORDER BY person_key"
        )
        .await,
        vec!["a1|1", "a2|2", "a3|3"]
    );
    // End before start, a key with no person row, a future date, concept 0: all shown as delivered.
    assert_eq!(count(&engine, "SELECT count(*) FROM ndb.drug_exposure WHERE drug_exposure_end_date < drug_exposure_start_date").await, 1);
    assert_eq!(
        query(
            &engine,
            "SELECT person_id, drug_concept_id FROM ndb.drug_exposure WHERE person_key = 'a9'"
        )
        .await,
        vec!["4|0"]
    );
    // CSV columns of CDM tables take CDM types; missing CDM columns are typed NULLs.
    assert_eq!(
        query(&engine, "SELECT arrow_typeof(days_supply), arrow_typeof(drug_exposure_start_date), arrow_typeof(quantity), count(quantity) FROM ndb.drug_exposure GROUP BY 1, 2, 3").await,
        vec!["Int64|Date32|Float64|0"]
    );
    assert_eq!(
        count(&engine, "SELECT count(*) FROM linked.person").await,
        5
    );
}

#[tokio::test]
async fn manifest_errors_name_the_manifest() {
    let e = refused(with(("rwd.toml", "[[source]\nname = 1"))).await;
    assert!(e.contains("rwd.toml"), "{e}");
    let e = refused(with((
        "rwd.toml",
        "[[source]]\nname = \"ndb\"\npath = \"nowhere\"\n",
    )))
    .await;
    assert!(
        e.contains("rwd.toml") && e.contains("nowhere") && e.contains("does not exist"),
        "{e}"
    );
    let e = refused(vec![("ndb/person.csv", PERSON)]).await;
    assert!(e.contains("rwd.toml") && e.contains("cannot read"), "{e}");
}

#[tokio::test]
async fn a_bad_date_names_file_line_and_column_but_not_the_value() {
    let bad = "drug_exposure_id,person_key,drug_concept_id,drug_exposure_start_date\n1,a1,5,2020-01-01\n2,a1,5,2020-02-30\n";
    let e = refused(with(("ndb/drug_exposure.csv", bad))).await;
    assert!(
        e.contains("ndb/drug_exposure.csv, line 3, column drug_exposure_start_date"),
        "{e}"
    );
    assert!(e.contains("not a date"), "{e}");
    assert!(!e.contains("2020-02-30"), "values are not echoed: {e}");
}

#[tokio::test]
async fn a_wrong_type_is_refused() {
    let bad = "drug_exposure_id,person_key,drug_concept_id,days_supply\n1,a1,5,30\n2,a2,5,thirty\n";
    let e = refused(with(("ndb/drug_exposure.csv", bad))).await;
    assert!(
        e.contains("ndb/drug_exposure.csv, line 3, column days_supply")
            && e.contains("not an integer"),
        "{e}"
    );
    // The same in Parquet: a text column where the CDM has a date.
    let dir = store(&valid());
    let ctx = datafusion::prelude::SessionContext::new();
    let path = dir.path().join("ndb/condition_occurrence.parquet");
    ctx.sql(&format!(
        "COPY (SELECT 'a1' AS person_key, 1 AS condition_concept_id, '2020-01-01' AS condition_start_date) TO '{}' STORED AS PARQUET",
        path.display()
    ))
    .await
    .unwrap()
    .collect()
    .await
    .unwrap();
    let e = open(dir.path()).await.err().expect("refused");
    assert!(
        e.contains("ndb/condition_occurrence.parquet, column condition_start_date")
            && e.contains("expected DATE"),
        "{e}"
    );
}

#[tokio::test]
async fn a_missing_key_column_is_refused() {
    let bad = "gender_concept_id,year_of_birth\n8507,1950\n";
    let e = refused(with(("ndb/person.csv", bad))).await;
    assert!(
        e.contains("ndb/person.csv")
            && e.contains("column person_key")
            && e.contains("lacks its person-key column"),
        "{e}"
    );
}

#[tokio::test]
async fn an_unknown_source_in_the_linkage_is_refused() {
    let bad = "source,person_key,link_key\nndb,a1,L1\nclaims,a2,L2\n";
    let e = refused(with(("linkage/person_link.csv", bad))).await;
    assert!(
        e.contains("linkage/person_link.csv, line 3, column source")
            && e.contains("does not declare"),
        "{e}"
    );
    let bad = "source,person_key\nndb,a1\n";
    let e = refused(with(("linkage/person_link.csv", bad))).await;
    assert!(e.contains("column link_key") && e.contains("lacks"), "{e}");
}

#[tokio::test]
async fn an_unreadable_parquet_file_is_refused() {
    let e = refused(with(("ndb/measurement.parquet", "this is not parquet"))).await;
    assert!(
        e.contains("ndb/measurement.parquet") && e.contains("not a readable Parquet file"),
        "{e}"
    );
}

#[tokio::test]
async fn ragged_csv_rows_are_refused() {
    let bad = "person_key,year_of_birth\nk1,1950\nk2,1940,extra\n";
    let e = refused(with(("kaigo/person.csv", bad))).await;
    assert!(
        e.contains("kaigo/person.csv") && e.contains("not valid CSV"),
        "{e}"
    );
}

#[tokio::test]
async fn a_folder_of_parquet_files_is_one_table() {
    let dir = store(&valid());
    let ctx = datafusion::prelude::SessionContext::new();
    let folder = dir.path().join("ndb/measurement");
    std::fs::create_dir_all(&folder).unwrap();
    for (i, (key, value, width)) in [("a1", 120, "INT"), ("a3", 135, "BIGINT")]
        .into_iter()
        .enumerate()
    {
        let sql = format!(
            "COPY (SELECT '{key}' AS person_key, CAST({value} AS {width}) AS measurement_concept_id, DATE '2021-0{}-01' AS measurement_date) TO '{}' STORED AS PARQUET",
            i + 1,
            folder.join(format!("part-{i}.parquet")).display()
        );
        ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    }
    let engine = open(dir.path()).await.unwrap();
    assert_eq!(
        query(&engine, "SELECT person_id, measurement_concept_id, measurement_date FROM ndb.measurement ORDER BY measurement_date").await,
        vec!["1|120|2021-01-01", "3|135|2021-02-01"]
    );
}

#[tokio::test]
async fn without_concept_ancestor_the_hierarchy_comes_from_is_a() {
    let concepts = "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,standard_concept,concept_code\n\
1,Chapter,Condition,ICD10,Chapter,,I\n2,Block,Condition,ICD10,Block,,I1\n3,Code,Condition,ICD10,Code,S,I10\n4,Other,Condition,ICD10,Code,S,J10\n";
    let rels = "concept_id_1,concept_id_2,relationship_id\n3,2,Is a\n2,1,Is a\n1,2,Subsumes\n4,3,Maps to\n";
    let mut files = valid();
    let manifest = format!("{MANIFEST}\n[vocabulary]\npath = \"vocab\"\n");
    let manifest: &'static str = Box::leak(manifest.into_boxed_str());
    files.retain(|(p, _)| *p != "rwd.toml");
    files.extend([
        ("rwd.toml", manifest),
        ("vocab/concept.csv", concepts),
        ("vocab/concept_relationship.csv", rels),
    ]);
    let dir = store(&files);
    let engine = open(dir.path()).await.unwrap();
    assert_eq!(
        query(
            &engine,
            "SELECT concept_id, levels FROM descendants(1) ORDER BY levels"
        )
        .await,
        vec!["1|0", "2|1", "3|2"]
    );
    assert_eq!(
        query(
            &engine,
            "SELECT concept_id FROM ancestors(3) ORDER BY levels DESC"
        )
        .await,
        vec!["1", "2", "3"]
    );
    assert_eq!(
        query(&engine, "SELECT is_a(3, 1), is_a(4, 1), is_a(1, 3)").await,
        vec!["true|false|false"]
    );
    assert_eq!(
        query(&engine, "SELECT concept_id FROM related(4, 'Maps to')").await,
        vec!["3"]
    );
}

/// Damages a Parquet file in the middle, as a failing disk or a broken copy
/// would: the column chunks of `column` are overwritten from just after
/// their start, the footer is left intact.
fn damage(path: &Path, column: &str) {
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    let mut damaged = 0;
    for rg in reader.metadata().row_groups() {
        for c in rg.columns() {
            if c.column_path().string() == column {
                let (start, len) = c.byte_range();
                let (from, to) = (
                    start as usize + 2,
                    (start + len / 2).max(start + 8) as usize,
                );
                for (i, b) in bytes[from..to].iter_mut().enumerate() {
                    *b = (i as u8).wrapping_mul(37) ^ 0xA5;
                }
                damaged += 1;
            }
        }
    }
    assert!(damaged > 0, "{} has no column {column}", path.display());
    std::fs::write(path, bytes).unwrap();
}

fn parquet_files_under(dir: &Path, part: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet")
                && p.to_string_lossy().contains(part)
            {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn a_file_damaged_after_opening_is_named_when_a_query_reads_it() {
    // A copy of Eunomia, opened, then damaged on disk.
    let store = tempfile::tempdir().unwrap();
    let src = crate::common::eunomia();
    for sub in ["", "cdm", "vocab"] {
        std::fs::create_dir_all(store.path().join(sub)).unwrap();
        for e in std::fs::read_dir(src.join(sub)).unwrap().flatten() {
            if e.path().is_file() {
                std::fs::copy(e.path(), store.path().join(sub).join(e.file_name())).unwrap();
            }
        }
    }
    let state = state_dir();
    let engine = Engine::open(
        store.path(),
        EngineOptions {
            state_dir: Some(state.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let fails = |sql: &'static str| {
        let session = engine.session().unwrap();
        async move { session.sql(sql).await.unwrap_err() }
    };
    // A delivered vocabulary file: named relative to the store.
    damage(&store.path().join("vocab/concept.parquet"), "concept_name");
    let e = fails("SELECT max(length(concept_name)), count(concept_code) FROM vocab.concept").await;
    let message = e.to_string();
    assert!(
        message.starts_with("vocab/concept.parquet: the Parquet file is damaged")
            && message.contains("restore it from the delivery"),
        "{message}"
    );
    match &e {
        tsunagu_engine::EngineError::DataFusion(d) => {
            assert!(tsunagu_engine::DamagedFile::find(d).is_some())
        }
        other => panic!("{other:?}"),
    }
    // The person-layout copy in the state folder: named as derived state.
    let copies = parquet_files_under(&state, "layout/cdm/person/");
    assert!(!copies.is_empty());
    for c in &copies {
        damage(c, "year_of_birth");
    }
    let message = fails("SELECT sum(year_of_birth), max(gender_concept_id) FROM cdm.person")
        .await
        .to_string();
    assert!(
        message.contains("layout/cdm/person/")
            && message.contains("(state folder): the Parquet file is damaged")
            && message.contains("delete the state folder"),
        "{message}"
    );
    // Other tables still answer.
    assert!(count(&engine, "SELECT count(*) FROM cdm.visit_occurrence").await > 0);
}

const CODED_MANIFEST: &str = "[store]\nname = \"coded\"\n\n[[source]]\nname = \"ndb\"\npath = \"ndb\"\nperson_key = \"person_key\"\n\n[source.codes]\ncondition_occurrence = \"JP Disease\"\n\n[vocabulary]\npath = \"vocab\"\n";

/// A claims table delivered in disease-name codes, with every case the
/// mapping distinguishes, and a hand-written vocabulary.
fn coded(manifest: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("rwd.toml", manifest),
        ("ndb/person.csv", PERSON),
        (
            "ndb/condition_occurrence.csv",
            "condition_occurrence_id,person_key,condition_concept_id,condition_start_date,condition_source_value\n\
             1,a1,0,2020-01-01,8840132\n\
             2,a1,555,2020-01-02,8840132\n\
             3,a2,,2020-01-03,8840132\n\
             4,a2,0,2020-01-04,0000999\n\
             5,a3,0,2020-01-05,9999999\n\
             6,a3,0,2020-01-06,\n\
             7,a3,0,2020-01-07,DUP\n",
        ),
        (
            "vocab/concept.csv",
            "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,standard_concept,concept_code,valid_start_date,valid_end_date,invalid_reason\n\
             101,Fracture of neck of femur,Condition,ICD10,ICD10 code,S,S72.0,1970-01-01,2099-12-31,\n\
             102,Other,Condition,ICD10,ICD10 code,S,X1,1970-01-01,2099-12-31,\n\
             103,Third,Condition,ICD10,ICD10 code,S,X2,1970-01-01,2099-12-31,\n\
             7001,Neck fracture,Condition,JP Disease,Disease name,,8840132,1970-01-01,2099-12-31,\n\
             7002,Uncoded,Condition,JP Disease,Disease name,,0000999,1970-01-01,2099-12-31,\n\
             7003,Old,Condition,JP Disease,Disease name,,DUP,1970-01-01,2010-12-31,D\n\
             7004,New,Condition,JP Disease,Disease name,,DUP,2011-01-01,2099-12-31,\n",
        ),
        (
            "vocab/concept_relationship.csv",
            "concept_id_1,concept_id_2,relationship_id,valid_start_date,valid_end_date,invalid_reason\n\
             7001,103,Maps to,1970-01-01,2099-12-31,\n\
             7001,101,Maps to,1970-01-01,2099-12-31,\n\
             7001,100,Maps to,1970-01-01,2010-12-31,D\n\
             7003,101,Maps to,1970-01-01,2099-12-31,\n\
             7004,102,Maps to,1970-01-01,2099-12-31,\n",
        ),
    ]
}

#[tokio::test]
async fn source_codes_fill_the_concepts_as_the_data_model_says() {
    let dir = store(&coded(CODED_MANIFEST));
    let engine = open(dir.path()).await.unwrap();
    // By hand from the files: the smallest valid target; a delivered concept
    // kept; NULL taken as missing; the uncoded name and an unknown code map
    // to 0; no code leaves the row as delivered; a code shared with a
    // deprecated concept names the valid one.
    let rows = query(
        &engine,
        "SELECT condition_occurrence_id, condition_concept_id, condition_source_concept_id \
         FROM ndb.condition_occurrence ORDER BY 1",
    )
    .await;
    assert_eq!(
        rows,
        vec![
            "1|101|7001",
            "2|555|7001",
            "3|101|7001",
            "4|0|7002",
            "5|0|0",
            "6|0|",
            "7|102|7004"
        ]
    );
    // Without [source.codes], the same files show what was delivered.
    let plain = CODED_MANIFEST.replace(
        "[source.codes]\ncondition_occurrence = \"JP Disease\"\n",
        "",
    );
    let plain: &'static str = Box::leak(plain.into_boxed_str());
    let dir = store(&coded(plain));
    let engine = open(dir.path()).await.unwrap();
    assert_eq!(
        count(
            &engine,
            "SELECT count(*) FROM ndb.condition_occurrence WHERE condition_concept_id = 0"
        )
        .await,
        5
    );
}

#[tokio::test]
async fn source_codes_naming_what_is_not_there_are_refused() {
    for (codes, words) in [
        (
            "condition_occurrence = \"No Such Vocabulary\"",
            &["No Such Vocabulary", "no concepts"][..],
        ),
        (
            "drug_exposure = \"JP Disease\"",
            &["drug_exposure", "not among the source's tables"][..],
        ),
        ("person = \"JP Disease\"", &["person", "_source_value"][..]),
    ] {
        let manifest = CODED_MANIFEST.replace("condition_occurrence = \"JP Disease\"", codes);
        let manifest: &'static str = Box::leak(manifest.into_boxed_str());
        let e = refused(coded(manifest)).await;
        assert!(
            e.contains("rwd.toml") && e.contains("[source.codes]"),
            "{e}"
        );
        for w in words {
            assert!(e.contains(w), "{codes}: {e}");
        }
    }
}
