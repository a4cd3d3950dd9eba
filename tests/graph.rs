//! The knowledge graph (`graph.nodes`, `graph.edges`, `concept_path`,
//! export), checked against the generator's planted effects, counts
//! computed here in plain SQL from the records, the delivered
//! `concept_ancestor`, and paths traced by hand through the vocabulary.

use tsunagu_engine::{Engine, Role};

use crate::common::{lines, open, query};
use crate::studies::{demo_sized, receipt_coded};

async fn as_role(engine: &Engine, role: Role, sql: &str) -> Vec<String> {
    let session = engine.session_as("graph-tester", role).expect("session");
    lines(
        &session
            .sql(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}")),
    )
}

fn concept(vocabulary: &str, code: &str) -> String {
    format!(
        "(SELECT concept_id FROM vocab.concept WHERE vocabulary_id = '{vocabulary}' AND concept_code = '{code}')"
    )
}

/// The five targets with the strongest `followed by` edge (by the lower
/// 95% bound, the better window) from a concept, as `vocabulary|code`.
async fn strongest(engine: &Engine, role: Role, vocabulary: &str, code: &str) -> Vec<String> {
    let sql = format!(
        "SELECT n.vocabulary_id, n.concept_code FROM ( \
           SELECT concept_id_2, max(lower_95) AS best FROM graph.edges \
           WHERE provenance = 'data' AND relationship_id = 'followed by' AND concept_id_1 = {} \
           GROUP BY concept_id_2) t \
         JOIN graph.nodes n ON n.concept_id = t.concept_id_2 \
         WHERE best IS NOT NULL ORDER BY best DESC, n.concept_code LIMIT 5",
        concept(vocabulary, code)
    );
    as_role(engine, role, &sql).await
}

#[tokio::test]
async fn the_planted_effects_are_among_the_strongest_data_derived_edges() {
    let engine = open(demo_sized()).await;
    for role in [Role::Steward, Role::Analyst] {
        for nsaid in ["ING-M01AE01", "ING-M01AB05", "ING-M01AH01"] {
            let top = strongest(&engine, role, "JP Drug", nsaid).await;
            assert!(
                top.contains(&"ICD10|K92.2".to_owned()),
                "{role:?} {nsaid}: {top:?}"
            );
        }
        let top = strongest(&engine, role, "JP Drug", "ING-N02BE01").await;
        assert!(
            !top.contains(&"ICD10|K92.2".to_owned()),
            "{role:?} acetaminophen: {top:?}"
        );
        let top = strongest(&engine, role, "JP Drug", "ING-C08CA01").await;
        assert!(
            top[..2].contains(&"JP Drug|ING-C03CA01".to_owned()),
            "{role:?} amlodipine: {top:?}"
        );
        let top = strongest(&engine, role, "ICD10", "S72.0").await;
        assert!(
            top.iter()
                .any(|t| t.starts_with("JP Care Level|") || t.starts_with("JP Care Service|")),
            "{role:?} hip fracture: {top:?}"
        );
    }
    // Every care level the generator certifies after a fracture follows it.
    let levels = query(
        &engine,
        &format!(
            "SELECT n.concept_code, e.lower_95 FROM graph.edges e JOIN vocab.concept n ON n.concept_id = e.concept_id_2 \
             WHERE e.relationship_id = 'followed by' AND e.window_days = 365 AND e.concept_id_1 = {} \
               AND n.vocabulary_id = 'JP Care Level' AND n.concept_code IN ('21', '22', '23', '24') ORDER BY 1",
            concept("ICD10", "S72.0")
        ),
    )
    .await;
    assert_eq!(levels.len(), 4, "{levels:?}");
    for l in &levels {
        let bound: f64 = l.split('|').nth(1).unwrap().parse().unwrap();
        assert!(bound > 2.0, "{levels:?}");
    }
    // The negative control: no sign of GI bleeding within 30 days of acetaminophen.
    let control = query(
        &engine,
        &format!(
            "SELECT lower_95 FROM graph.edges WHERE relationship_id = 'followed by' AND window_days = 30 \
             AND concept_id_1 = {} AND concept_id_2 = {}",
            concept("JP Drug", "ING-N02BE01"),
            concept("ICD10", "K92.2")
        ),
    )
    .await;
    assert_eq!(control.len(), 1, "the negative control's edge is there");
    assert!(control[0].parse::<f64>().unwrap() < 1.0, "{control:?}");
}

/// (forward, reverse) counts of amlodipine then furosemide within 365 days,
/// computed here from the dispensings.
async fn cascade_counts(engine: &Engine) -> (u64, u64) {
    let sql = "WITH ing AS (SELECT concept_id, concept_code FROM vocab.concept \
                            WHERE vocabulary_id = 'JP Drug' AND concept_code IN ('ING-C08CA01', 'ING-C03CA01')), \
               f AS (SELECT d.person_id, ing.concept_code AS code, min(d.drug_exposure_start_date) AS first \
                     FROM ndb.drug_exposure d \
                     JOIN vocab.concept_ancestor a ON a.descendant_concept_id = d.drug_concept_id \
                     JOIN ing ON ing.concept_id = a.ancestor_concept_id GROUP BY 1, 2), \
               p AS (SELECT a.first AS amlo, b.first AS furo FROM f a JOIN f b \
                     ON a.person_id = b.person_id AND a.code = 'ING-C08CA01' AND b.code = 'ING-C03CA01') \
               SELECT count(*) FILTER (WHERE furo - amlo BETWEEN 1 AND 365), \
                      count(*) FILTER (WHERE amlo - furo BETWEEN 1 AND 365) FROM p";
    let row = query(engine, sql).await;
    let n: Vec<u64> = row[0].split('|').map(|x| x.parse().unwrap()).collect();
    (n[0], n[1])
}

#[tokio::test]
async fn edges_hold_the_counts_of_the_records_and_analysts_read_them_released() {
    let engine = open(demo_sized()).await;
    let (forward, reverse) = cascade_counts(&engine).await;
    assert!(forward > 100 && reverse > 0, "{forward} {reverse}");
    let edge = format!(
        "SELECT persons, value FROM graph.edges WHERE relationship_id = 'followed by' AND window_days = 365 \
         AND concept_id_1 = {} AND concept_id_2 = {}",
        concept("JP Drug", "ING-C08CA01"),
        concept("JP Drug", "ING-C03CA01")
    );
    let exact = query(&engine, &edge).await;
    let parts: Vec<&str> = exact[0].split('|').collect();
    assert_eq!(parts[0], (forward + reverse).to_string());
    let value: f64 = parts[1].parse().unwrap();
    assert!(
        (value - forward as f64 / reverse as f64).abs() < 1e-9,
        "{exact:?}"
    );
    // Analysts: rounded to 5; the ratio of the rounded counts (two
    // decimals) when both orders have at least k = 10 persons, else no
    // ratio and a bound computed from the released total alone.
    let released = as_role(
        &engine,
        Role::Analyst,
        &edge.replace("SELECT persons, value", "SELECT persons, value, lower_95"),
    )
    .await;
    let parts: Vec<&str> = released[0].split('|').collect();
    let round = |n: u64| ((n + 2) / 5 * 5).max(5);
    let two = |x: f64| (x * 100.0).round() / 100.0;
    assert_eq!(parts[0], round(forward + reverse).to_string());
    if reverse >= 10 {
        let got: f64 = parts[1].parse().unwrap();
        assert_eq!(
            got,
            two(round(forward) as f64 / round(reverse) as f64),
            "{released:?}"
        );
    } else {
        assert_eq!(parts[1], "", "{released:?}: a ratio over {reverse} persons");
        let total = round(forward + reverse) as f64;
        let (a, b) = (total - 10.0, 10.0f64);
        let bound = (a / b) * (-1.96 * (1.0 / a + 1.0 / b).sqrt()).exp();
        let got: f64 = parts[2].parse().unwrap();
        assert_eq!(got, two(bound), "{released:?}");
    }
    // The curated part is the delivered relationships, valid and not to themselves.
    let curated = query(
        &engine,
        "SELECT count(*) FROM graph.edges WHERE provenance IN ('vocabulary', 'mapping')",
    )
    .await;
    let delivered = query(
        &engine,
        "SELECT count(*) FROM vocab.concept_relationship WHERE concept_id_1 <> concept_id_2 \
         AND (invalid_reason IS NULL OR invalid_reason = '')",
    )
    .await;
    assert_eq!(curated, delivered);
}

#[tokio::test]
async fn receipt_coded_claims_give_the_same_data_derived_edges() {
    let edges = "SELECT concept_id_1, concept_id_2, relationship_id, window_days, persons, value \
                 FROM graph.edges WHERE provenance = 'data' ORDER BY 1, 2, 3, 4";
    let standard = query(&open(demo_sized()).await, edges).await;
    let receipt = query(&open(receipt_coded()).await, edges).await;
    assert!(standard.len() > 1000, "{}", standard.len());
    assert_eq!(standard, receipt);
}

#[tokio::test]
async fn paths_and_recursive_queries_walk_the_curated_graph() {
    let engine = open(demo_sized()).await;
    // A receipt drug code to its ATC level-2 class, traced by hand: the code
    // maps to the product, which is an amlodipine product, under ATC C08CA01,
    // C08CA, C08C, C08.
    let path = query(
        &engine,
        &format!(
            "SELECT c.vocabulary_id, c.concept_code FROM unnest(concept_path({}, {})) AS p(id) \
             JOIN vocab.concept c ON c.concept_id = p.id",
            "(SELECT min(concept_id) FROM vocab.concept WHERE vocabulary_id = 'JP Receipt Drug' \
              AND invalid_reason IS NULL AND concept_id IN (SELECT concept_id_1 FROM vocab.concept_relationship \
              WHERE relationship_id = 'Concept replaces'))",
            concept("ATC", "C08")
        ),
    )
    .await;
    let mut codes: Vec<&str> = path.iter().map(String::as_str).collect();
    codes.sort();
    assert_eq!(
        codes,
        vec![
            "ATC|C08",
            "ATC|C08C",
            "ATC|C08CA",
            "ATC|C08CA01",
            "JP Drug|C08CA01-1",
            "JP Drug|ING-C08CA01",
            "JP Receipt Drug|620001170",
        ],
        "{path:?}"
    );
    let order = query(
        &engine,
        &format!(
            "SELECT array_length(concept_path(a, b)), concept_path(a, b, 5) IS NULL, \
             concept_path(a, b)[1] = a, concept_path(a, b)[7] = b FROM (SELECT {} AS a, {} AS b)",
            concept("JP Receipt Drug", "620001170"),
            concept("ATC", "C08")
        ),
    )
    .await;
    assert_eq!(order, vec!["7|true|true|true".to_owned()]);
    // Disease-name code to ICD-10 chapter, and nothing to an unconnected concept.
    let disease = query(
        &engine,
        &format!(
            "SELECT array_length(concept_path({}, {})), concept_path({}, {}) IS NULL",
            concept("JP Disease", "8840132"),
            concept("ICD10", "Chapter XIX"),
            concept("JP Disease", "0000999"),
            concept("ICD10", "S72.0")
        ),
    )
    .await;
    // 8840132 -> S72.0 -> S72 -> S70-S79 -> Chapter XIX.
    assert_eq!(disease, vec!["5|true".to_owned()]);
    // Per row against one concept (a constant): every K92.2 diagnosis is two
    // concepts from K92 ([K92.2, K92]), every other diagnosis (leaf codes of
    // other categories) more than two steps away.
    let id = |v: &'static str, c: &'static str| {
        let engine = &engine;
        async move {
            query(engine, &format!("SELECT {}", concept(v, c))).await[0]
                .parse::<i64>()
                .unwrap()
        }
    };
    let (k92, k922) = (id("ICD10", "K92").await, id("ICD10", "K92.2").await);
    let rows = query(
        &engine,
        &format!(
            "SELECT count(*) FILTER (WHERE p IS NOT NULL), count(*) FILTER (WHERE condition_concept_id = {k922}), \
                    count(*) FILTER (WHERE p = make_array({k922}, {k92})) \
             FROM (SELECT condition_concept_id, concept_path(condition_concept_id, {k92}, 2) AS p FROM ndb.condition_occurrence)"
        ),
    )
    .await;
    let n: Vec<i64> = rows[0].split('|').map(|x| x.parse().unwrap()).collect();
    assert!(n[0] > 100 && n[0] == n[1] && n[1] == n[2], "{rows:?}");
    // WITH RECURSIVE over the edges finds the delivered ancestors.
    let recursive = query(
        &engine,
        &format!(
            "WITH RECURSIVE up(id) AS (SELECT {k} UNION ALL \
               SELECT e.concept_id_2 FROM graph.edges e JOIN up ON e.concept_id_1 = up.id \
               WHERE e.relationship_id = 'Is a') \
             SELECT DISTINCT id FROM up ORDER BY id",
            k = concept("ICD10", "K92.2")
        ),
    )
    .await;
    let delivered = query(
        &engine,
        &format!(
            "SELECT ancestor_concept_id FROM vocab.concept_ancestor WHERE descendant_concept_id = {} ORDER BY 1",
            concept("ICD10", "K92.2")
        ),
    )
    .await;
    assert_eq!(recursive, delivered);
    assert_eq!(delivered.len(), 4);
    // Japanese names.
    let ja = query(
        &engine,
        "SELECT concept_name_ja FROM graph.nodes WHERE vocabulary_id = 'JP Disease' AND concept_code = '8840132'",
    )
    .await;
    assert_eq!(ja, vec!["大腿骨頚部骨折".to_owned()]);
}

#[tokio::test]
async fn the_export_holds_what_the_role_reads() {
    let engine = open(demo_sized()).await;
    let session = engine.session_as("graph-tester", Role::Analyst).unwrap();
    let filter = format!("concept_id_1 = {}", concept("JP Drug", "ING-C08CA01"));
    let edges = as_role(
        &engine,
        Role::Analyst,
        &format!("SELECT persons FROM graph.edges WHERE {filter}"),
    )
    .await;
    use tsunagu_engine::graph::export::{Format, export};
    let xml = export(&session, Format::GraphMl, Some(&filter))
        .await
        .unwrap();
    assert_eq!(xml.matches("<edge ").count(), edges.len());
    assert!(xml.starts_with("<?xml") && xml.trim_end().ends_with("</graphml>"));
    let json = export(&session, Format::JsonLd, Some(&filter))
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let graph = doc["@graph"].as_array().unwrap();
    let exported: Vec<&serde_json::Value> = graph.iter().filter(|o| o["@type"] == "Edge").collect();
    assert_eq!(exported.len(), edges.len());
    let nodes = graph.iter().filter(|o| o["@type"] == "Concept").count();
    assert_eq!(xml.matches("<node ").count(), nodes);
    for e in exported.iter().filter(|e| e["provenance"] == "data") {
        let p = e["persons"].as_u64().unwrap();
        assert!(p >= 10 && p % 5 == 0, "{e}");
    }
}

type EdgeKey = (i64, i64, String, String);

/// Data-derived edges as a session reads them: key -> (persons, value).
async fn data_edges(
    engine: &Engine,
    role: Role,
) -> std::collections::HashMap<EdgeKey, (u64, Option<f64>)> {
    as_role(
        engine,
        role,
        "SELECT concept_id_1, concept_id_2, relationship_id, coalesce(CAST(window_days AS VARCHAR), ''), persons, value \
         FROM graph.edges WHERE provenance = 'data'",
    )
    .await
    .into_iter()
    .map(|l| {
        let f: Vec<&str> = l.split('|').collect();
        (
            (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2].to_owned(), f[3].to_owned()),
            (f[4].parse().unwrap(), f[5].parse().ok()),
        )
    })
    .collect()
}

#[tokio::test]
async fn no_released_edge_rests_on_fewer_than_k_persons_or_differs_from_another_by_fewer() {
    use tsunagu_engine::privacy::{Policy, Stricter};
    let policy = Policy {
        viewer: Some(Stricter {
            k: Some(20),
            rounding: Some(10),
        }),
        ..Default::default()
    };
    let engine = Engine::open(
        demo_sized(),
        tsunagu_engine::EngineOptions {
            state_dir: Some(crate::common::state_dir()),
            policy: Some(policy),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let truth = data_edges(&engine, Role::Steward).await;
    for (role, k, base) in [(Role::Analyst, 10u64, 5u64), (Role::Viewer, 20, 10)] {
        let seen = data_edges(&engine, role).await;
        assert!(seen.len() > 500, "{role:?}: {}", seen.len());
        for (key, (persons, value)) in &seen {
            let (exact, exact_value) = truth[key];
            assert!(
                exact >= k && persons % base == 0,
                "{role:?} {key:?}: {persons} for {exact}"
            );
            // Rounded to the base (the viewer's: the analysts' 5, then 10).
            assert!(
                persons.abs_diff(exact) <= base,
                "{role:?} {key:?}: {persons} for {exact}"
            );
            // A shown ratio rests on at least k persons in each order (from
            // the steward's total and ratio: forward = total x r / (1 + r)).
            if key.2 == "followed by" && value.is_some() {
                let r = exact_value.unwrap();
                let forward = exact as f64 * r / (1.0 + r);
                let reverse = exact as f64 - forward;
                assert!(
                    forward.round() >= k as f64 && reverse.round() >= k as f64,
                    "{role:?} {key:?}"
                );
            }
            // A 30-day ratio: each order nests the same order within 365 days.
            if key.2 == "followed by" && key.3 == "30" && value.is_some() {
                let year = (key.0, key.1, key.2.clone(), "365".to_owned());
                let orders = |(total, v): (u64, Option<f64>)| {
                    let v = v.unwrap();
                    let forward = (total as f64 * v / (1.0 + v)).round() as u64;
                    (forward, total - forward)
                };
                let (f30, r30) = orders(truth[key]);
                let (f365, r365) = orders(truth[&year]);
                for gap in [f365 - f30, r365 - r30] {
                    assert!(
                        gap == 0 || gap >= k,
                        "{role:?} {key:?}: orders differ by {gap}"
                    );
                }
            }
            // Nested counts: the enclosing one is shown and differs by 0 or at least k.
            let (a, b) = (key.0, key.1);
            let enclosing = match (key.2.as_str(), key.3.as_str()) {
                ("followed by", "30") => Some((a, b, "followed by".to_owned(), "365".to_owned())),
                ("followed by", "365") | ("co-prescribed with", _) => {
                    Some((a, b, "co-occurs with".to_owned(), String::new()))
                }
                _ => None,
            };
            if let Some(outer) = enclosing {
                assert!(
                    seen.contains_key(&outer),
                    "{role:?} {key:?} without {outer:?}"
                );
                let gap = truth[&outer].0 - exact;
                assert!(
                    gap == 0 || gap >= k,
                    "{role:?} {key:?}: {gap} persons between nested counts"
                );
            }
        }
        // Everything the viewer sees, an analyst sees too.
        if role == Role::Viewer {
            let analyst = data_edges(&engine, Role::Analyst).await;
            assert!(seen.keys().all(|key| analyst.contains_key(key)));
        }
    }
    // Co-occurrence against a count made here: persons with ibuprofen and GI bleeding.
    let ibu: i64 = query(
        &engine,
        &format!("SELECT {}", concept("JP Drug", "ING-M01AE01")),
    )
    .await[0]
        .parse()
        .unwrap();
    let gi: i64 = query(&engine, &format!("SELECT {}", concept("ICD10", "K92.2"))).await[0]
        .parse()
        .unwrap();
    let both = query(
        &engine,
        &format!(
            "SELECT count(*) FROM (SELECT DISTINCT d.person_id FROM ndb.drug_exposure d \
               JOIN vocab.concept_ancestor a ON a.descendant_concept_id = d.drug_concept_id AND a.ancestor_concept_id = {ibu} \
             INTERSECT SELECT DISTINCT person_id FROM linked.condition_occurrence WHERE condition_concept_id = {gi})"
        ),
    )
    .await;
    let key = (
        ibu.min(gi),
        ibu.max(gi),
        "co-occurs with".to_owned(),
        String::new(),
    );
    assert_eq!(truth[&key].0.to_string(), both[0]);
}

/// The demo store under a policy hiding `tables` (`schema.table` or `schema.*`).
async fn hiding(tables: &str) -> Engine {
    use tsunagu_engine::privacy::{Policy, TableRole};
    let tables = std::collections::BTreeMap::from([(tables.to_owned(), TableRole::Hidden)]);
    Engine::open(
        demo_sized(),
        tsunagu_engine::EngineOptions {
            state_dir: Some(crate::common::state_dir()),
            policy: Some(Policy {
                tables,
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn tables_the_policy_hides_feed_no_edge() {
    let engine = hiding("kaigo.*").await;
    let care = "SELECT count(*) FROM graph.edges e JOIN vocab.concept c ON c.concept_id IN (e.concept_id_1, e.concept_id_2) \
                WHERE e.provenance = 'data' AND c.vocabulary_id IN ('JP Care Level', 'JP Care Service')";
    assert_eq!(query(&engine, care).await, vec!["0".to_owned()]);
    // With the default policy, long-term care is in the graph.
    let open_store = open(demo_sized()).await;
    assert_ne!(query(&open_store, care).await, vec!["0".to_owned()]);
}

#[tokio::test]
async fn a_concepts_edges_read_by_its_id_are_those_a_full_read_holds() {
    let engine = open(demo_sized()).await;
    let id = |vocabulary: &str, code: &str| {
        let engine = &engine;
        let sql = format!("SELECT {}", concept(vocabulary, code));
        async move { query(engine, &sql).await.remove(0) }
    };
    let ids = [
        id("JP Drug", "ING-C08CA01").await,
        id("ICD10", "K92").await,
        id("ATC", "M01A").await,
        id("ICD10", "S72.0").await,
    ];
    let columns = "concept_id_1, concept_id_2, relationship_id, provenance, window_days, persons, value, lower_95";
    let order = "ORDER BY 1, 2, 3, 5";
    for c in &ids {
        // Pinned by a constant (a slice of the sorted rows) against a
        // condition the scan cannot use (every row read, then filtered).
        let pinned = query(
            &engine,
            &format!("SELECT {columns} FROM graph.edges WHERE concept_id_1 = {c} {order}"),
        )
        .await;
        let scanned = query(
            &engine,
            &format!("SELECT {columns} FROM graph.edges WHERE concept_id_1 + 0 = {c} {order}"),
        )
        .await;
        assert!(!pinned.is_empty(), "concept {c} has edges");
        assert_eq!(pinned, scanned, "concept {c}");
        // The curated part against the delivered relationships.
        let curated = query(
            &engine,
            &format!(
                "SELECT concept_id_2, relationship_id FROM graph.edges \
                 WHERE concept_id_1 = {c} AND provenance <> 'data' ORDER BY 1, 2"
            ),
        )
        .await;
        let delivered = query(
            &engine,
            &format!(
                "SELECT concept_id_2, relationship_id FROM vocab.concept_relationship \
                 WHERE concept_id_1 = {c} AND concept_id_1 <> concept_id_2 \
                 AND (invalid_reason IS NULL OR invalid_reason = '') ORDER BY 1, 2"
            ),
        )
        .await;
        assert_eq!(curated, delivered, "concept {c}");
    }
    // A list of concepts, and data-derived edges only.
    // A concept named twice is read once.
    let list = format!("{}, {}", ids.join(", "), ids[0]);
    let pinned = query(
        &engine,
        &format!(
            "SELECT {columns} FROM graph.edges WHERE concept_id_1 IN ({list}) AND provenance = 'data' {order}"
        ),
    )
    .await;
    let scanned = query(
        &engine,
        &format!(
            "SELECT {columns} FROM graph.edges WHERE concept_id_1 + 0 IN ({list}) AND provenance || '' = 'data' {order}"
        ),
    )
    .await;
    assert!(pinned.len() > 10, "{}", pinned.len());
    assert_eq!(pinned, scanned);
    // A limit stops the rows early and still gives that many.
    let limited = query(
        &engine,
        "SELECT count(*) FROM (SELECT * FROM graph.edges LIMIT 7)",
    )
    .await;
    assert_eq!(limited, vec!["7".to_owned()]);
}

#[tokio::test]
async fn a_hidden_relationship_table_gives_analysts_no_curated_edge() {
    let engine = hiding("vocab.concept_relationship").await;
    let kinds = "SELECT provenance, count(*) > 0 FROM graph.edges GROUP BY 1 ORDER BY 1";
    assert_eq!(
        as_role(&engine, Role::Analyst, kinds).await,
        vec!["data|true"]
    );
    let steward = as_role(&engine, Role::Steward, kinds).await;
    assert_eq!(
        steward,
        vec!["data|true", "mapping|true", "vocabulary|true"]
    );
}

#[tokio::test]
async fn a_filter_on_a_paths_existence_reads_reach_only_and_agrees_with_the_paths() {
    let engine = open(demo_sized()).await;
    let k92 = query(&engine, &format!("SELECT {}", concept("ICD10", "K92")))
        .await
        .remove(0);
    let count = |condition: String| {
        let engine = &engine;
        async move {
            query(
                engine,
                &format!("SELECT count(*) FROM ndb.condition_occurrence WHERE {condition}"),
            )
            .await
            .remove(0)
        }
    };
    for steps in [1, 2, 3] {
        let path = format!("concept_path(condition_concept_id, {k92}, {steps})");
        // The paths themselves, counted without asking only for existence.
        let listed = count(format!("coalesce(cardinality({path}), 0) > 0")).await;
        let unlisted = count(format!("coalesce(cardinality({path}), 0) = 0")).await;
        assert_ne!(listed, "0", "{steps} steps reach some diagnoses");
        assert_eq!(
            count(format!("{path} IS NOT NULL")).await,
            listed,
            "{steps}"
        );
        assert_eq!(count(format!("{path} IS NULL")).await, unlisted, "{steps}");
        assert_eq!(
            count(format!(
                "concept_reachable(condition_concept_id, {k92}, {steps})"
            ))
            .await,
            listed
        );
    }
    // The filter is planned as the reach test.
    let plan = query(
        &engine,
        &format!(
            "EXPLAIN SELECT count(*) FROM ndb.condition_occurrence \
             WHERE concept_path(condition_concept_id, {k92}, 2) IS NOT NULL"
        ),
    )
    .await
    .join("\n");
    assert!(plan.contains("concept_reachable"), "{plan}");
    // Analysts may use it: an aggregate of it is released.
    let released = as_role(
        &engine,
        Role::Analyst,
        &format!(
            "SELECT count(DISTINCT person_id) > 0 FROM ndb.condition_occurrence \
             WHERE concept_path(condition_concept_id, {k92}, 2) IS NOT NULL"
        ),
    )
    .await;
    assert_eq!(released, vec!["true".to_owned()]);
}
