//! Edges the data says: how concepts go together in persons.
//!
//! Each person contributes the first date of every concept they have: a
//! condition, procedure or observation as recorded, a drug as its
//! ingredient(s), and the concept of any other dated person-level table with
//! one concept column (a long-term-care level, a care service). From those:
//!
//! - `co-occurs with`: persons with both concepts, against the persons
//!   expected if they were independent (observed / expected);
//! - `followed by` within 30 and within 365 days: the sequence ratio of the
//!   persons whose first A came 1..window days before their first B over
//!   those with B before A (OHDSI's sequence symmetry analysis, crude;
//!   0.5 added to both when one is 0);
//!   persons are those with both firsts within the window, either order;
//! - `co-prescribed with`: ingredients dispensed on the same day, as the
//!   share of the persons given both who were given them together.
//!
//! Every edge keeps the counts its statistic comes from, so that a release
//! can recompute the statistic from released counts; pairs with fewer than
//! `min_persons` persons are not kept.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Date32Type, Int64Type};
use datafusion::prelude::SessionContext;
use tsunagu_catalog::{Store, VOCAB_SCHEMA};

use crate::Result;

/// The windows of `followed by`, in days.
pub const WINDOWS: [i32; 2] = [30, 365];

/// What an edge's statistic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    CoOccurrence,
    Sequence { window: i32 },
    CoPrescription,
}

impl Kind {
    /// The relationship the edge is shown under.
    pub fn relationship(self) -> &'static str {
        match self {
            Kind::CoOccurrence => "co-occurs with",
            Kind::Sequence { .. } => "followed by",
            Kind::CoPrescription => "co-prescribed with",
        }
    }

    /// The statistic's name.
    pub fn statistic(self) -> &'static str {
        match self {
            Kind::CoOccurrence => "observed/expected",
            Kind::Sequence { .. } => "sequence ratio",
            Kind::CoPrescription => "same-day share",
        }
    }

    /// How the edge was computed, in words.
    pub fn computation(self) -> String {
        match self {
            Kind::CoOccurrence => "persons with both concepts x all persons / (persons with the first x persons with the second)".into(),
            Kind::Sequence { window } => format!(
                "first dates per person; persons whose first occurrence of the first concept came 1-{window} days before the second's / persons with the reverse order (crude sequence symmetry)"
            ),
            Kind::CoPrescription => "persons dispensed both ingredients on one day / persons dispensed both ever".into(),
        }
    }
}

/// One data-derived edge with the counts behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    pub from: i64,
    pub to: i64,
    pub kind: Kind,
    /// The persons behind the edge.
    pub persons: u64,
    /// Numerator and denominator counts of the statistic (see [`Edge::statistic`]).
    pub a: u64,
    pub b: u64,
    /// For co-occurrence: all persons counted.
    pub all: u64,
}

impl Edge {
    /// The statistic and its lower 95% bound, from counts (a, b, all) as
    /// given: exact ones, or released ones.
    pub fn statistic(
        kind: Kind,
        persons: f64,
        a: f64,
        b: f64,
        all: f64,
    ) -> (Option<f64>, Option<f64>) {
        match kind {
            Kind::CoOccurrence => {
                // persons with both; a, b: persons with each.
                if a <= 0.0 || b <= 0.0 || persons <= 0.0 {
                    return (None, None);
                }
                let ratio = persons * all / (a * b);
                let se = (1.0 / persons).sqrt();
                (Some(ratio), Some(ratio * (-1.96 * se).exp()))
            }
            Kind::Sequence { .. } => {
                // a: forward order, b: reverse order; 0.5 added to both
                // when one is 0 (Haldane), so that the ratio is finite.
                let (a0, b0) = if a == 0.0 || b == 0.0 {
                    (a + 0.5, b + 0.5)
                } else {
                    (a, b)
                };
                let se = (1.0 / a0 + 1.0 / b0).sqrt();
                (Some(a0 / b0), Some((a0 / b0) * (-1.96 * se).exp()))
            }
            Kind::CoPrescription => {
                // a: same day, b: both ever. Wilson's lower bound of a / b.
                if b <= 0.0 {
                    return (None, None);
                }
                let p = (a / b).min(1.0);
                let z = 1.96f64;
                let lower = (p + z * z / (2.0 * b)
                    - z * ((p * (1.0 - p) + z * z / (4.0 * b)) / b).sqrt())
                    / (1.0 + z * z / b);
                (Some(p), Some(lower.max(0.0)))
            }
        }
    }
}

/// The data-derived edges of a store.
#[derive(Debug, Default)]
pub struct Derived {
    pub edges: Vec<Edge>,
    /// Persons with at least one concept counted.
    pub persons: u64,
    /// Concepts counted.
    pub concepts: usize,
}

/// Each table's contribution: SQL giving (person_id, concept, day), and
/// whether it is dispensings (drugs as their ingredients when `ingredients`).
fn event_selects(store: &Store, ingredients: bool) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let sources: Vec<&str> = store
        .manifest()
        .sources
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    for t in store.tables() {
        if !sources.contains(&t.schema.as_str()) || !t.is_person_level() {
            continue;
        }
        let has = |c: &str| t.columns.iter().any(|x| x.name == c);
        let q = |c: &str| format!("\"{}\"", c.replace('"', "\"\""));
        let table = format!("{}.{}", q(&t.schema), q(&t.name));
        let pick = match t.name.as_str() {
            "condition_occurrence" => Some(("condition_concept_id", "condition_start_date")),
            "procedure_occurrence" => Some(("procedure_concept_id", "procedure_date")),
            "observation" => Some(("observation_concept_id", "observation_date")),
            "drug_exposure" => {
                if has("drug_concept_id") && has("drug_exposure_start_date") {
                    out.push((if ingredients {
                        format!(
                            "SELECT d.person_id, i.ingredient AS concept, d.drug_exposure_start_date AS day \
                             FROM {table} d JOIN ingredients i ON i.drug = d.drug_concept_id"
                        )
                    } else {
                        format!(
                            "SELECT person_id, drug_concept_id AS concept, drug_exposure_start_date AS day FROM {table}"
                        )
                    }, true));
                }
                None
            }
            name if tsunagu_catalog::cdm::table(name).is_none() => {
                let concepts: Vec<&str> = t
                    .columns
                    .iter()
                    .filter(|c| {
                        c.name.ends_with("_concept_id")
                            && !c.name.ends_with("_type_concept_id")
                            && c.data_type.is_integer()
                    })
                    .map(|c| c.name.as_str())
                    .collect();
                let date = t
                    .columns
                    .iter()
                    .find(|c| c.data_type == DataType::Date32)
                    .map(|c| c.name.as_str());
                match (concepts.as_slice(), date) {
                    ([concept], Some(date)) => Some((*concept, date)),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some((concept, date)) = pick
            && has(concept)
            && has(date)
        {
            out.push((
                format!(
                    "SELECT person_id, CAST({} AS BIGINT) AS concept, CAST({} AS DATE) AS day FROM {table}",
                    q(concept),
                    q(date)
                ),
                false,
            ));
        }
    }
    out
}

/// True when drugs can be taken to their ingredients (classes `Ingredient`
/// among their ancestors); else each drug concept counts as itself.
fn has_ingredients(store: &Store) -> bool {
    let has = |name: &str| {
        store
            .tables()
            .iter()
            .any(|t| t.schema == VOCAB_SCHEMA && t.name == name)
    };
    has("concept_ancestor") && has("concept")
}

/// The `WITH` list holding `events` (and `ingredients` when used).
fn with_events(store: &Store, drugs_only: bool) -> Option<String> {
    let ingredients = has_ingredients(store);
    let selects: Vec<String> = event_selects(store, ingredients)
        .into_iter()
        .filter(|(_, drug)| !drugs_only || *drug)
        .map(|(sql, _)| sql)
        .collect();
    if selects.is_empty() {
        return None;
    }
    let mut with = String::from("WITH ");
    if ingredients {
        with.push_str(
            "ingredients AS (SELECT DISTINCT CAST(a.descendant_concept_id AS BIGINT) AS drug, \
             CAST(a.ancestor_concept_id AS BIGINT) AS ingredient \
             FROM vocab.concept_ancestor a JOIN vocab.concept c ON c.concept_id = a.ancestor_concept_id \
             WHERE c.concept_class_id = 'Ingredient'), ",
        );
    }
    with.push_str(&format!("events AS ({})", selects.join(" UNION ALL ")));
    Some(with)
}

/// Counts of concept pairs: a dense matrix for up to [`DENSE`] concepts.
enum Pairs {
    Dense { n: usize, counts: Vec<u32> },
    Sparse(HashMap<(u32, u32), u32>),
}

const DENSE: usize = 4096;

impl Pairs {
    fn new(n: usize) -> Pairs {
        if n <= DENSE {
            Pairs::Dense {
                n,
                counts: vec![0; n * n],
            }
        } else {
            Pairs::Sparse(HashMap::new())
        }
    }
    #[inline]
    fn add(&mut self, i: u32, j: u32) {
        match self {
            Pairs::Dense { n, counts } => counts[i as usize * *n + j as usize] += 1,
            Pairs::Sparse(m) => *m.entry((i, j)).or_default() += 1,
        }
    }
    #[inline]
    fn get(&self, i: u32, j: u32) -> u32 {
        match self {
            Pairs::Dense { n, counts } => counts[i as usize * *n + j as usize],
            Pairs::Sparse(m) => m.get(&(i, j)).copied().unwrap_or(0),
        }
    }
    /// Every pair with a count, in no particular order.
    fn nonzero(&self) -> Vec<(u32, u32, u32)> {
        match self {
            Pairs::Dense { n, counts } => counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(k, c)| ((k / n) as u32, (k % n) as u32, *c))
                .collect(),
            Pairs::Sparse(m) => m.iter().map(|(&(i, j), &c)| (i, j, c)).collect(),
        }
    }
}

/// Computes the data-derived edges of the store shown on `ctx`.
pub async fn compute(ctx: &SessionContext, store: &Store, min_persons: u64) -> Result<Derived> {
    let Some(with) = with_events(store, false) else {
        return Ok(Derived::default());
    };
    let sql = format!(
        "{with} SELECT person_id, concept, min(day) AS first FROM events \
         WHERE person_id IS NOT NULL AND concept IS NOT NULL AND concept <> 0 AND day IS NOT NULL \
         GROUP BY person_id, concept"
    );
    let mut rows: Vec<(i64, i64, i32)> = Vec::new();
    for b in ctx.sql(&sql).await?.collect().await? {
        let (p, c, d) = (
            b.column(0).as_primitive::<Int64Type>(),
            b.column(1).as_primitive::<Int64Type>(),
            b.column(2).as_primitive::<Date32Type>(),
        );
        for r in 0..b.num_rows() {
            rows.push((p.value(r), c.value(r), d.value(r)));
        }
    }
    rows.sort_unstable();
    // Dense concept numbers.
    let mut concepts: Vec<i64> = rows.iter().map(|r| r.1).collect();
    concepts.sort_unstable();
    concepts.dedup();
    let number: HashMap<i64, u32> = concepts
        .iter()
        .enumerate()
        .map(|(i, c)| (*c, i as u32))
        .collect();
    let n = concepts.len();
    let mut single = vec![0u64; n];
    let mut both = Pairs::new(n);
    let mut order: Vec<Pairs> = WINDOWS.iter().map(|_| Pairs::new(n)).collect();
    let mut persons = 0u64;
    let mut person: Vec<(u32, i32)> = Vec::new();
    let mut k = 0;
    while k < rows.len() {
        let p = rows[k].0;
        person.clear();
        while k < rows.len() && rows[k].0 == p {
            person.push((number[&rows[k].1], rows[k].2));
            k += 1;
        }
        persons += 1;
        for (x, &(i, di)) in person.iter().enumerate() {
            single[i as usize] += 1;
            for &(j, dj) in &person[x + 1..] {
                both.add(i.min(j), i.max(j));
                let gap = dj - di;
                for (w, counts) in WINDOWS.iter().zip(order.iter_mut()) {
                    if (1..=*w).contains(&gap) {
                        counts.add(i, j);
                    } else if (1..=*w).contains(&-gap) {
                        counts.add(j, i);
                    }
                }
            }
        }
    }
    let mut edges = Vec::new();
    for (i, j, c) in both.nonzero() {
        let c = c as u64;
        if c < min_persons || i == j {
            continue;
        }
        for (from, to) in [(i, j), (j, i)] {
            edges.push(Edge {
                from: concepts[from as usize],
                to: concepts[to as usize],
                kind: Kind::CoOccurrence,
                persons: c,
                a: single[from as usize],
                b: single[to as usize],
                all: persons,
            });
        }
    }
    for (w, counts) in WINDOWS.iter().zip(&order) {
        for (i, j, forward) in counts.nonzero() {
            let reverse = counts.get(j, i) as u64;
            let total = forward as u64 + reverse;
            if total < min_persons {
                continue;
            }
            edges.push(Edge {
                from: concepts[i as usize],
                to: concepts[j as usize],
                kind: Kind::Sequence { window: *w },
                persons: total,
                a: forward as u64,
                b: reverse,
                all: persons,
            });
        }
    }
    edges.extend(
        co_prescriptions(ctx, store, &number, &concepts, &both, min_persons, persons).await?,
    );
    Ok(Derived {
        edges,
        persons,
        concepts: n,
    })
}

/// `co-prescribed with` edges: ingredients dispensed to a person on one day.
async fn co_prescriptions(
    ctx: &SessionContext,
    store: &Store,
    number: &HashMap<i64, u32>,
    concepts: &[i64],
    both: &Pairs,
    min_persons: u64,
    all: u64,
) -> Result<Vec<Edge>> {
    let Some(with) = with_events(store, true) else {
        return Ok(Vec::new());
    };
    let sql = format!(
        "{with}, d AS (SELECT DISTINCT person_id, day, concept FROM events \
         WHERE person_id IS NOT NULL AND day IS NOT NULL AND concept IS NOT NULL AND concept <> 0) \
         SELECT person_id, array_agg(concept) FROM d GROUP BY person_id, day HAVING count(*) > 1"
    );
    let mut days: Vec<(i64, Vec<u32>)> = Vec::new();
    for b in ctx.sql(&sql).await?.collect().await? {
        let p = b.column(0).as_primitive::<Int64Type>();
        let lists = b.column(1).as_list::<i32>();
        for r in 0..b.num_rows() {
            let items = lists.value(r);
            let items = items.as_primitive::<Int64Type>();
            let mut ids: Vec<u32> = (0..items.len())
                .filter(|&x| items.is_valid(x))
                .filter_map(|x| number.get(&items.value(x)).copied())
                .collect();
            ids.sort_unstable();
            days.push((p.value(r), ids));
        }
    }
    days.sort_unstable();
    let mut same_day: HashMap<(u32, u32), u64> = HashMap::new();
    let mut k = 0;
    let mut pairs: Vec<(u32, u32)> = Vec::new();
    while k < days.len() {
        let p = days[k].0;
        pairs.clear();
        while k < days.len() && days[k].0 == p {
            let ids = &days[k].1;
            for (x, &i) in ids.iter().enumerate() {
                for &j in &ids[x + 1..] {
                    pairs.push((i, j));
                }
            }
            k += 1;
        }
        pairs.sort_unstable();
        pairs.dedup();
        for pair in &pairs {
            *same_day.entry(*pair).or_default() += 1;
        }
    }
    let mut out = Vec::new();
    for ((i, j), s) in same_day {
        if s < min_persons || i == j {
            continue;
        }
        let ever = both.get(i.min(j), i.max(j)) as u64;
        for (from, to) in [(i, j), (j, i)] {
            out.push(Edge {
                from: concepts[from as usize],
                to: concepts[to as usize],
                kind: Kind::CoPrescription,
                persons: s,
                a: s,
                b: ever,
                all,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_by_hand() {
        // 40 persons with both of 1,000; 100 and 200 with each: 40 x 1000 / 20000 = 2.
        let (v, l) = Edge::statistic(Kind::CoOccurrence, 40.0, 100.0, 200.0, 1000.0);
        assert!((v.unwrap() - 2.0).abs() < 1e-12);
        let l = l.unwrap();
        assert!((l - 2.0 * (-1.96 * (1.0f64 / 40.0).sqrt()).exp()).abs() < 1e-12 && l < 2.0);
        // 30 forward, 10 reverse: 3, bound exp(ln 3 - 1.96 sqrt(1/30 + 1/10)).
        let (v, l) = Edge::statistic(Kind::Sequence { window: 30 }, 40.0, 30.0, 10.0, 0.0);
        assert_eq!(v, Some(3.0));
        let want = (3.0f64.ln() - 1.96 * (1.0f64 / 30.0 + 0.1).sqrt()).exp();
        assert!((l.unwrap() - want).abs() < 1e-12);
        // No reverse order: 12.5 / 0.5 = 25.
        let (v, _) = Edge::statistic(Kind::Sequence { window: 30 }, 12.0, 12.0, 0.0, 0.0);
        assert_eq!(v, Some(25.0));
        // Same day for 20 of 80 given both: 0.25, Wilson's bound below it.
        let (v, l) = Edge::statistic(Kind::CoPrescription, 20.0, 20.0, 80.0, 0.0);
        assert_eq!(v, Some(0.25));
        let l = l.unwrap();
        assert!(l > 0.15 && l < 0.25, "{l}");
    }
}
