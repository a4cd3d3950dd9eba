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
//! The counts are kept per unordered pair of concepts ([`Pair`]), and a
//! pair with fewer than `min_persons` persons having both is not kept.
//! [`edges`] turns a pair into the rows of `graph.edges`, exact or released:
//! the release decides per pair, so that no count under k shows through a
//! ratio, a difference of nested counts, or the presence of a row.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Date32Type, Int64Type};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool};
use datafusion::prelude::SessionContext;
use tsunagu_catalog::{Store, VOCAB_SCHEMA};

use crate::Result;
use crate::privacy::{Policy, TableRole};
use crate::quality::label::Release;

/// The windows of `followed by`, in days, widest first.
pub const WINDOWS: [i32; 2] = [365, 30];

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
    pub fn computation(self) -> &'static str {
        match self {
            Kind::CoOccurrence => {
                "persons with both concepts x all persons / (persons with the first x persons with the second)"
            }
            Kind::Sequence { window: 30 } => {
                "first dates per person; persons whose first occurrence of the first concept came 1-30 days before the second's / persons with the reverse order (crude sequence symmetry)"
            }
            Kind::Sequence { .. } => {
                "first dates per person; persons whose first occurrence of the first concept came 1-365 days before the second's / persons with the reverse order (crude sequence symmetry)"
            }
            Kind::CoPrescription => {
                "persons dispensed both ingredients on one day / persons dispensed both ever"
            }
        }
    }

    /// The statistic and its lower 95% bound from counts: (persons, a, b, all).
    pub fn statistic_of(
        self,
        persons: f64,
        a: f64,
        b: f64,
        all: f64,
    ) -> (Option<f64>, Option<f64>) {
        match self {
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
                let (a0, b0) = if a <= 0.0 || b <= 0.0 {
                    (a.max(0.0) + 0.5, b.max(0.0) + 0.5)
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

/// The counts of one unordered pair of concepts (`a < b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub a: i64,
    pub b: i64,
    /// Persons with both.
    pub both: u64,
    /// Persons with `a`, with `b`.
    pub single: [u64; 2],
    /// Per window of [`WINDOWS`]: persons with `a` first, with `b` first.
    pub order: [[u64; 2]; 2],
    /// Persons dispensed both on one day (ingredients only).
    pub same_day: u64,
}

/// One row of `graph.edges` from data.
#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    pub from: i64,
    pub to: i64,
    pub kind: Kind,
    pub persons: u64,
    pub value: Option<f64>,
    pub lower: Option<f64>,
}

/// The data-derived counts of a store.
#[derive(Debug, Default)]
pub struct Derived {
    pub pairs: Vec<Pair>,
    /// Persons with at least one concept counted.
    pub persons: u64,
    /// Concepts counted.
    pub concepts: usize,
}

/// The rows of `graph.edges` a pair gives: exact (`release` = `None`, every
/// count of at least `min_persons`) or released.
///
/// Released: nothing under k; every count rounded; a count nested in
/// another (persons within 30 days within those within 365 within those
/// with both; same-day within both) only when the enclosing count is shown
/// and they differ by 0 or by at least k; both directions of a
/// sequence always shown together, and when either order has fewer than k
/// persons no ratio is shown, only a lower bound computed from the
/// released total as if k persons had the other order.
pub fn edges(p: &Pair, all: u64, release: Option<Release>, min_persons: u64) -> Vec<Edge> {
    let mut out = Vec::new();
    let two = |x: Option<f64>| x.map(|x| (x * 100.0).round() / 100.0);
    let both_ways = |out: &mut Vec<Edge>,
                     kind,
                     persons,
                     forward: (Option<f64>, Option<f64>),
                     reverse: (Option<f64>, Option<f64>)| {
        out.push(Edge {
            from: p.a,
            to: p.b,
            kind,
            persons,
            value: forward.0,
            lower: forward.1,
        });
        out.push(Edge {
            from: p.b,
            to: p.a,
            kind,
            persons,
            value: reverse.0,
            lower: reverse.1,
        });
    };
    let Some(r) = release else {
        if p.both < min_persons {
            return out;
        }
        let f = |x: u64| x as f64;
        let co = Kind::CoOccurrence.statistic_of(f(p.both), f(p.single[0]), f(p.single[1]), f(all));
        both_ways(&mut out, Kind::CoOccurrence, p.both, co, co);
        for (w, [ab, ba]) in WINDOWS.iter().zip(p.order) {
            let kind = Kind::Sequence { window: *w };
            if ab + ba >= min_persons {
                both_ways(
                    &mut out,
                    kind,
                    ab + ba,
                    kind.statistic_of(f(ab + ba), f(ab), f(ba), 0.0),
                    kind.statistic_of(f(ab + ba), f(ba), f(ab), 0.0),
                );
            }
        }
        if p.same_day >= min_persons {
            let s = Kind::CoPrescription.statistic_of(f(p.same_day), f(p.same_day), f(p.both), 0.0);
            both_ways(&mut out, Kind::CoPrescription, p.same_day, s, s);
        }
        return out;
    };
    let k = r.k.max(min_persons).max(1);
    let round = |n: u64| r.count(n).unwrap_or(0) as f64;
    if p.both < k {
        return out;
    }
    // A nested count is shown when it is at least k and differs from the
    // count enclosing it by 0 or by at least k.
    let nested = |inner: u64, outer: u64| {
        inner >= k && outer.checked_sub(inner).is_some_and(|d| d == 0 || d >= k)
    };
    // The ratio uses each concept's count: shown only when each nests the
    // pair's as any nested count must.
    let co = if nested(p.both, p.single[0]) && nested(p.both, p.single[1]) {
        let co = Kind::CoOccurrence.statistic_of(
            round(p.both),
            round(p.single[0]),
            round(p.single[1]),
            round(all),
        );
        (two(co.0), two(co.1))
    } else {
        (None, None)
    };
    both_ways(&mut out, Kind::CoOccurrence, round(p.both) as u64, co, co);
    // Each window's count is checked against the next wider one (the
    // widest against `both`), and shown only when that one is: so what a
    // larger k shows is always a part of what a smaller k shows.
    // The orders nest too (A then B within 30 days within 365): a window's
    // ratio shows its orders' counts, so it is shown only when each order
    // nests the wider window's same order.
    let (mut parent, mut parent_shown) = (p.both, true);
    let mut parent_orders: Option<[u64; 2]> = None;
    for (w, [ab, ba]) in WINDOWS.iter().zip(p.order) {
        let total = ab + ba;
        let shown = parent_shown && nested(total, parent);
        let orders_nest = parent_orders.is_none_or(|[pab, pba]| nested(ab, pab) && nested(ba, pba));
        (parent, parent_shown, parent_orders) = (total, shown, Some([ab, ba]));
        if !shown {
            continue;
        }
        let kind = Kind::Sequence { window: *w };
        let persons = round(total);
        if ab >= k && ba >= k && orders_nest {
            let (x, y) = (round(ab), round(ba));
            let forward = kind.statistic_of(persons, x, y, 0.0);
            let reverse = kind.statistic_of(persons, y, x, 0.0);
            both_ways(
                &mut out,
                kind,
                persons as u64,
                (two(forward.0), two(forward.1)),
                (two(reverse.0), two(reverse.1)),
            );
        } else {
            // An order under k, or not nesting: a bound from the total only.
            let bound = two(kind
                .statistic_of(persons, (persons - k as f64).max(0.0), k as f64, 0.0)
                .1);
            let (forward, reverse) = if ab >= ba {
                ((None, bound), (None, None))
            } else {
                ((None, None), (None, bound))
            };
            both_ways(&mut out, kind, persons as u64, forward, reverse);
        }
    }
    if nested(p.same_day, p.both) {
        let s = Kind::CoPrescription.statistic_of(
            round(p.same_day),
            round(p.same_day),
            round(p.both),
            0.0,
        );
        both_ways(
            &mut out,
            Kind::CoPrescription,
            round(p.same_day) as u64,
            (two(s.0), two(s.1)),
            (two(s.0), two(s.1)),
        );
    }
    out
}

/// Each table's contribution: SQL giving (person_id, concept, day), and
/// whether it is dispensings (drugs as their ingredients when `ingredients`).
fn event_selects(store: &Store, policy: &Policy, ingredients: bool) -> Vec<(String, bool)> {
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
        // Tables the policy hides from analysts do not feed what they read.
        let shown = store
            .shown_tables()
            .iter()
            .find(|s| s.schema == t.schema && s.name == t.name);
        if shown.is_none_or(|s| {
            policy.table_role(
                &datafusion::common::TableReference::partial(t.schema.as_str(), t.name.as_str()),
                s.plan.schema(),
            ) == TableRole::Hidden
        }) {
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
                            "SELECT d.person_id, coalesce(i.ingredient, CAST(d.drug_concept_id AS BIGINT)) AS concept, \
                             d.drug_exposure_start_date AS day \
                             FROM {table} d LEFT JOIN ingredients i ON i.drug = d.drug_concept_id"
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
/// among their ancestors); else (and for a drug without one) each drug
/// concept counts as itself.
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
fn with_events(store: &Store, policy: &Policy, drugs_only: bool) -> Option<String> {
    let ingredients = has_ingredients(store);
    let selects: Vec<String> = event_selects(store, policy, ingredients)
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

const DENSE: usize = 2048;

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

/// Counts per pair from (person, concept number, first day) rows sorted by
/// person, over `n` concepts: persons with both, per window the persons
/// with each order, persons per concept, persons in all.
pub(crate) fn tally(rows: &[(u32, u32, i32)], n: usize, dense: bool) -> Tally {
    let new = |n: usize| {
        if dense {
            Pairs::new(n)
        } else {
            Pairs::Sparse(HashMap::new())
        }
    };
    let mut t = Tally {
        single: vec![0; n],
        both: new(n),
        order: [new(n), new(n)],
        persons: 0,
    };
    let mut k = 0;
    while k < rows.len() {
        let p = rows[k].0;
        let start = k;
        while k < rows.len() && rows[k].0 == p {
            k += 1;
        }
        let person = &rows[start..k];
        t.persons += 1;
        for (x, &(_, i, di)) in person.iter().enumerate() {
            t.single[i as usize] += 1;
            for &(_, j, dj) in &person[x + 1..] {
                if i == j {
                    continue;
                }
                t.both.add(i.min(j), i.max(j));
                let gap = dj as i64 - di as i64;
                for (w, counts) in WINDOWS.iter().zip(t.order.iter_mut()) {
                    let w = *w as i64;
                    if (1..=w).contains(&gap) {
                        counts.add(i, j);
                    } else if (1..=w).contains(&-gap) {
                        counts.add(j, i);
                    }
                }
            }
        }
    }
    t
}

/// What [`tally`] counts.
pub(crate) struct Tally {
    single: Vec<u64>,
    both: Pairs,
    order: [Pairs; 2],
    persons: u64,
}

/// Computes the data-derived counts of the store shown on `ctx`, from the
/// tables `policy` does not hide; their memory is taken from `pool`.
pub async fn compute(
    ctx: &SessionContext,
    store: &Store,
    policy: &Policy,
    pool: &Arc<dyn MemoryPool>,
    min_persons: u64,
) -> Result<Derived> {
    let Some(with) = with_events(store, policy, false) else {
        return Ok(Derived::default());
    };
    let sql = format!(
        "{with} SELECT person_id, concept, min(day) AS first FROM events \
         WHERE person_id IS NOT NULL AND concept IS NOT NULL AND concept <> 0 AND day IS NOT NULL \
         GROUP BY person_id, concept"
    );
    let mut memory = MemoryConsumer::new("knowledge graph").register(pool);
    let mut number: HashMap<i64, u32> = HashMap::new();
    let mut concepts: Vec<i64> = Vec::new();
    let mut rows: Vec<(u32, u32, i32)> = Vec::new();
    // Streamed: only the compact rows are held, not the batches.
    let mut stream = ctx.sql(&sql).await?.execute_stream().await?;
    while let Some(b) = futures::StreamExt::next(&mut stream).await {
        let b = b?;
        let (p, c, d) = (
            b.column(0).as_primitive::<Int64Type>(),
            b.column(1).as_primitive::<Int64Type>(),
            b.column(2).as_primitive::<Date32Type>(),
        );
        memory.try_grow(b.num_rows() * std::mem::size_of::<(u32, u32, i32)>())?;
        for r in 0..b.num_rows() {
            let concept = c.value(r);
            let i = *number.entry(concept).or_insert_with(|| {
                concepts.push(concept);
                concepts.len() as u32 - 1
            });
            // person_id is a dense number below 2^32 (docs/DATA_MODEL.md).
            rows.push((p.value(r) as u32, i, d.value(r)));
        }
    }
    let n = concepts.len();
    let dense = n <= DENSE;
    if dense {
        memory.try_grow(3 * n * n * std::mem::size_of::<u32>())?;
    }
    // The counting is CPU work: off the async threads.
    let (tally, rows) = tokio::task::spawn_blocking(move || {
        rows.sort_unstable();
        let t = tally(&rows, n, dense);
        (t, rows)
    })
    .await
    .map_err(|e| crate::EngineError::Unsupported(format!("knowledge graph: {e}")))?;
    drop(rows);
    // Pair maps (many concepts) are counted once built.
    for pairs in std::iter::once(&tally.both).chain(&tally.order) {
        if let Pairs::Sparse(m) = pairs {
            memory.try_grow(m.capacity() * 16)?;
        }
    }
    let same_day = co_prescriptions(ctx, store, policy, &number, &mut memory).await?;
    memory.try_grow(same_day.capacity() * 24)?;
    let mut pairs = Vec::new();
    for (i, j, both) in tally.both.nonzero() {
        let both = both as u64;
        if both < min_persons {
            continue;
        }
        let order = [0, 1].map(|w| {
            [
                tally.order[w].get(i, j) as u64,
                tally.order[w].get(j, i) as u64,
            ]
        });
        pairs.push(Pair {
            a: concepts[i as usize],
            b: concepts[j as usize],
            both,
            single: [tally.single[i as usize], tally.single[j as usize]],
            order,
            same_day: same_day.get(&(i, j)).copied().unwrap_or(0),
        });
    }
    // Concept numbers follow the rows' order: sort for a stable table.
    for p in &mut pairs {
        if p.a > p.b {
            std::mem::swap(&mut p.a, &mut p.b);
            p.single.swap(0, 1);
            for o in &mut p.order {
                o.swap(0, 1);
            }
        }
    }
    pairs.sort_unstable_by_key(|p| (p.a, p.b));
    Ok(Derived {
        pairs,
        persons: tally.persons,
        concepts: n,
    })
}

/// Persons dispensed two ingredients on one day, per pair of concept
/// numbers (smaller first).
async fn co_prescriptions(
    ctx: &SessionContext,
    store: &Store,
    policy: &Policy,
    number: &HashMap<i64, u32>,
    memory: &mut datafusion::execution::memory_pool::MemoryReservation,
) -> Result<HashMap<(u32, u32), u64>> {
    let Some(with) = with_events(store, policy, true) else {
        return Ok(HashMap::new());
    };
    let sql = format!(
        "{with}, d AS (SELECT DISTINCT person_id, day, concept FROM events \
         WHERE person_id IS NOT NULL AND day IS NOT NULL AND concept IS NOT NULL AND concept <> 0) \
         SELECT person_id, array_agg(concept) FROM d GROUP BY person_id, day HAVING count(*) > 1"
    );
    let mut days: Vec<(u32, Vec<u32>)> = Vec::new();
    let mut stream = ctx.sql(&sql).await?.execute_stream().await?;
    while let Some(b) = futures::StreamExt::next(&mut stream).await {
        let b = b?;
        let p = b.column(0).as_primitive::<Int64Type>();
        let lists = b.column(1).as_list::<i32>();
        memory.try_grow(lists.values().len() * 4 + b.num_rows() * 32)?;
        for r in 0..b.num_rows() {
            let items = lists.value(r);
            let items = items.as_primitive::<Int64Type>();
            let mut ids: Vec<u32> = (0..items.len())
                .filter(|&x| items.is_valid(x))
                .filter_map(|x| number.get(&items.value(x)).copied())
                .collect();
            ids.sort_unstable();
            days.push((p.value(r) as u32, ids));
        }
    }
    tokio::task::spawn_blocking(move || {
        days.sort_unstable();
        let mut same_day: HashMap<(u32, u32), u64> = HashMap::new();
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        let mut k = 0;
        while k < days.len() {
            let p = days[k].0;
            pairs.clear();
            while k < days.len() && days[k].0 == p {
                let ids = &days[k].1;
                for (x, &i) in ids.iter().enumerate() {
                    for &j in &ids[x + 1..] {
                        if i != j {
                            pairs.push((i.min(j), i.max(j)));
                        }
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
        same_day
    })
    .await
    .map_err(|e| crate::EngineError::Unsupported(format!("knowledge graph: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_by_hand() {
        // 40 persons with both of 1,000; 100 and 200 with each: 40 x 1000 / 20000 = 2.
        let (v, l) = Kind::CoOccurrence.statistic_of(40.0, 100.0, 200.0, 1000.0);
        assert!((v.unwrap() - 2.0).abs() < 1e-12);
        let l = l.unwrap();
        assert!((l - 2.0 * (-1.96 * (1.0f64 / 40.0).sqrt()).exp()).abs() < 1e-12 && l < 2.0);
        // 30 forward, 10 reverse: 3, bound exp(ln 3 - 1.96 sqrt(1/30 + 1/10)).
        let seq = Kind::Sequence { window: 30 };
        let (v, l) = seq.statistic_of(40.0, 30.0, 10.0, 0.0);
        assert_eq!(v, Some(3.0));
        let want = (3.0f64.ln() - 1.96 * (1.0f64 / 30.0 + 0.1).sqrt()).exp();
        assert!((l.unwrap() - want).abs() < 1e-12);
        // No reverse order: 12.5 / 0.5 = 25.
        assert_eq!(seq.statistic_of(12.0, 12.0, 0.0, 0.0).0, Some(25.0));
        // Same day for 20 of 80 given both: 0.25, Wilson's bound below it.
        let (v, l) = Kind::CoPrescription.statistic_of(20.0, 20.0, 80.0, 0.0);
        assert_eq!(v, Some(0.25));
        let l = l.unwrap();
        assert!(l > 0.15 && l < 0.25, "{l}");
    }

    /// Persons 0..: (person, concept, day).
    fn rows() -> Vec<(u32, u32, i32)> {
        vec![
            // Concept 1 then 0 the same day: both, no order.
            (0, 0, 100),
            (0, 1, 100),
            // 0 then 1 after 30 days (both windows), 0 then 2 after 31 (365 only).
            (1, 0, 100),
            (1, 1, 130),
            (1, 2, 131),
            // 1 then 0 after 365 days (365 only); 2 a day after 0 (both
            // windows) and 366 days after 1 (neither).
            (2, 1, 0),
            (2, 0, 365),
            (2, 2, 366),
            // Only concept 2.
            (3, 2, 5),
        ]
    }

    #[test]
    fn tally_counts_by_hand_dense_and_sparse() {
        for dense in [true, false] {
            let t = tally(&rows(), 3, dense);
            assert_eq!(t.persons, 4);
            assert_eq!(t.single, vec![3, 3, 3]);
            assert_eq!(
                (t.both.get(0, 1), t.both.get(0, 2), t.both.get(1, 2)),
                (3, 2, 2)
            );
            // Window 365 (index 0): 0->1 person 1; 1->0 person 2; 0->2 persons 1 and 2; 1->2 person 1.
            let w = &t.order[0];
            assert_eq!(
                (w.get(0, 1), w.get(1, 0), w.get(0, 2), w.get(2, 0)),
                (1, 1, 2, 0)
            );
            assert_eq!((w.get(1, 2), w.get(2, 1)), (1, 0));
            // Window 30: 0->1 after 30 days (person 1), not 1->0 after 365;
            // 0->2 a day apart (person 2), not 31; 1->2 a day apart (person 1).
            let w = &t.order[1];
            assert_eq!(
                (w.get(0, 1), w.get(1, 0), w.get(0, 2), w.get(1, 2)),
                (1, 0, 1, 1)
            );
        }
    }

    fn release(k: u64, rounding: u64) -> Option<Release> {
        Some(Release {
            exact: false,
            k,
            rounding,
            coarser: 0,
        })
    }

    fn pair(both: u64, order: [[u64; 2]; 2], same_day: u64) -> Pair {
        Pair {
            a: 1,
            b: 2,
            both,
            single: [500, 600],
            order,
            same_day,
        }
    }

    #[test]
    fn a_small_order_shows_no_ratio_and_rows_come_in_both_directions() {
        // 14 then, 2 the other way: the analyst must not get 2 back.
        let p = pair(100, [[14, 2], [0, 0]], 0);
        let e = edges(&p, 10_000, release(10, 1), 10);
        let seq: Vec<&Edge> = e
            .iter()
            .filter(|e| e.kind == Kind::Sequence { window: 365 })
            .collect();
        assert_eq!(seq.len(), 2);
        assert!(seq.iter().all(|e| e.value.is_none() && e.persons == 16));
        assert_eq!(seq[0].from, 1);
        // The bound comes from the total alone: (16 - 10) / 10.
        let want = Kind::Sequence { window: 365 }
            .statistic_of(16.0, 6.0, 10.0, 0.0)
            .1
            .map(|x| (x * 100.0).round() / 100.0);
        assert_eq!(seq[0].lower, want);
        assert_eq!(seq[1].lower, None);
        // Exact for the steward.
        let e = edges(&p, 10_000, None, 10);
        let seq: Vec<&Edge> = e
            .iter()
            .filter(|e| e.kind == Kind::Sequence { window: 365 })
            .collect();
        assert_eq!(seq[0].value, Some(7.0));
    }

    #[test]
    fn nested_counts_differing_by_fewer_than_k_are_withheld() {
        // Both 100; within 365: 95 (5 fewer: withheld); within 30: 40, not
        // shown either (its enclosing count is not).
        let p = pair(100, [[50, 45], [20, 20]], 95);
        let e = edges(&p, 10_000, release(10, 5), 10);
        let first: Vec<Kind> = e.iter().map(|e| e.kind).collect();
        assert!(!first.contains(&Kind::Sequence { window: 365 }));
        assert!(!first.contains(&Kind::Sequence { window: 30 }));
        // Same day 95 of 100: 5 never together, fewer than k: withheld.
        assert!(!first.contains(&Kind::CoPrescription));
        // Within 365: 80, within 30: 75 (5 fewer): only the 365 one.
        let kinds: Vec<Kind> = edges(
            &pair(100, [[40, 40], [40, 35]], 0),
            10_000,
            release(10, 5),
            10,
        )
        .iter()
        .map(|e| e.kind)
        .collect();
        assert!(kinds.contains(&Kind::Sequence { window: 365 }));
        assert!(!kinds.contains(&Kind::Sequence { window: 30 }));
        // A larger k shows a part of what a smaller one shows.
        for both in [60u64, 75, 90, 120] {
            for t365 in [0u64, 20, 41, 55, 60] {
                for t30 in [0u64, 12, 25, 40] {
                    let t365 = t365.min(both);
                    let t30 = t30.min(t365);
                    let p = pair(
                        both,
                        [[t365 / 2, t365 - t365 / 2], [t30 / 2, t30 - t30 / 2]],
                        t30,
                    );
                    let key = |e: &Edge| {
                        (
                            e.from,
                            e.to,
                            e.kind.relationship(),
                            match e.kind {
                                Kind::Sequence { window } => window,
                                _ => 0,
                            },
                        )
                    };
                    let small: Vec<_> = edges(&p, 10_000, release(10, 5), 10)
                        .iter()
                        .map(key)
                        .collect();
                    for e in edges(&p, 10_000, release(20, 5), 10) {
                        assert!(small.contains(&key(&e)), "{p:?} {e:?}");
                    }
                }
            }
        }
        // Same day 95 of 100: 5 never together, fewer than k: withheld.
        assert!(!kinds.contains(&Kind::CoPrescription));
        // Equal counts differ by 0: shown.
        let p = pair(100, [[60, 40], [60, 40]], 100);
        let kinds: Vec<Kind> = edges(&p, 10_000, release(10, 5), 10)
            .iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds.len(), 8);
        // Under k with both: nothing at all.
        assert!(edges(&pair(9, [[5, 4], [0, 0]], 9), 10_000, release(10, 5), 1).is_empty());
        // Orders nest across windows: 60/40 within 365, 57/20 within 30: the
        // first orders differ by 3, so the 30-day ratio is not shown.
        let e = edges(
            &pair(200, [[60, 40], [57, 20]], 0),
            10_000,
            release(10, 5),
            10,
        );
        let thirty: Vec<&Edge> = e
            .iter()
            .filter(|e| e.kind == Kind::Sequence { window: 30 })
            .collect();
        assert_eq!(thirty.len(), 2);
        assert!(thirty.iter().all(|e| e.value.is_none()), "{thirty:?}");
        let year: Vec<&Edge> = e
            .iter()
            .filter(|e| e.kind == Kind::Sequence { window: 365 })
            .collect();
        assert!(year.iter().all(|e| e.value.is_some()), "{year:?}");
        // A concept whose persons nearly all have the other: no ratio.
        let mut p = pair(100, [[0, 0], [0, 0]], 0);
        p.single = [105, 600];
        let co: Vec<Edge> = edges(&p, 10_000, release(10, 5), 10);
        assert!(
            co.iter()
                .all(|e| e.kind == Kind::CoOccurrence && e.value.is_none() && e.persons == 100)
        );
        // Every released persons value is rounded and at least k.
        for e in edges(
            &pair(123, [[57, 41], [13, 12]], 33),
            10_000,
            release(10, 5),
            10,
        ) {
            assert!(e.persons >= 10 && e.persons % 5 == 0, "{e:?}");
        }
    }
}
