//! The vocabulary graph: `descendants`, `ancestors`, `is_a`, `related`.
//!
//! The engine hands the functions a [`VocabGraph`] built from the store's
//! `concept_ancestor` (or, when the store has none, the transitive closure
//! of its `Is a` relationships). `is_a` tests membership in a bitmap of the
//! ancestor's descendants, so a filter over many rows is a lookup per row,
//! not a join.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use roaring::RoaringTreemap;

use crate::docs;

/// Concept hierarchy and relationships, ready for lookups.
#[derive(Debug, Default)]
pub struct VocabGraph {
    /// ancestor -> (descendant, min levels), the ancestor itself included at level 0.
    down: HashMap<i64, Vec<(i64, i64)>>,
    /// descendant -> (ancestor, min levels).
    up: HashMap<i64, Vec<(i64, i64)>>,
    /// ancestor -> its descendants, for `is_a`.
    below: HashMap<i64, RoaringTreemap>,
    /// (concept, relationship) -> related concepts.
    related: HashMap<(i64, String), Vec<i64>>,
    /// (vocabulary_id in lower case, concept_code) -> concept_id.
    codes: HashMap<(String, String), i64>,
    /// The vocabulary ids of `codes`, in lower case.
    vocabularies: std::collections::HashSet<String>,
    /// concept -> concepts one relationship away (either direction), for paths.
    adjacent: HashMap<i64, Vec<i64>>,
}

/// A concept set tested once per row: a dense bitset when the set's ids are
/// close together (the usual case for one branch of a vocabulary), else the
/// roaring bitmap.
pub(crate) enum Probe<'a> {
    Dense {
        base: i64,
        words: Vec<u64>,
    },
    Roaring {
        ancestor: i64,
        below: Option<&'a RoaringTreemap>,
    },
    Set(&'a RoaringTreemap),
}

impl<'a> Probe<'a> {
    /// Widest id span kept as a dense bitset (8 KiB).
    const DENSE_SPAN: u64 = 1 << 16;

    fn new(ancestor: i64, below: Option<&'a RoaringTreemap>) -> Probe<'a> {
        let (lo, hi) = match below.and_then(|b| Some((b.min()?, b.max()?))) {
            Some((lo, hi)) => (
                lo.min(ancestor.max(0) as u64),
                hi.max(ancestor.max(0) as u64),
            ),
            None => (ancestor.max(0) as u64, ancestor.max(0) as u64),
        };
        if ancestor < 0 || hi - lo >= Self::DENSE_SPAN {
            return Probe::Roaring { ancestor, below };
        }
        let mut words = vec![0u64; ((hi - lo) / 64 + 1) as usize];
        for v in below
            .into_iter()
            .flat_map(|b| b.iter())
            .chain([ancestor as u64])
        {
            let o = v - lo;
            words[(o / 64) as usize] |= 1 << (o % 64);
        }
        Probe::Dense {
            base: lo as i64,
            words,
        }
    }

    /// A probe of a set of concepts.
    pub(crate) fn set(set: &'a RoaringTreemap) -> Probe<'a> {
        match (set.min(), set.max()) {
            (Some(lo), Some(hi)) if hi - lo < Self::DENSE_SPAN => {
                let mut words = vec![0u64; ((hi - lo) / 64 + 1) as usize];
                for v in set.iter() {
                    let o = v - lo;
                    words[(o / 64) as usize] |= 1 << (o % 64);
                }
                Probe::Dense {
                    base: lo as i64,
                    words,
                }
            }
            _ => Probe::Set(set),
        }
    }

    #[inline]
    pub(crate) fn contains(&self, v: i64) -> bool {
        match self {
            Probe::Dense { base, words } => {
                let o = v.wrapping_sub(*base) as u64;
                words
                    .get((o / 64) as usize)
                    .is_some_and(|w| w & (1 << (o % 64)) != 0)
            }
            Probe::Roaring { ancestor, below } => {
                v == *ancestor || (v >= 0 && below.is_some_and(|b| b.contains(v as u64)))
            }
            Probe::Set(set) => v >= 0 && set.contains(v as u64),
        }
    }
}

impl VocabGraph {
    /// Builds the graph from (ancestor, descendant, min levels) rows and
    /// (concept_id_1, concept_id_2, relationship_id) rows. With no ancestor
    /// rows, the closure is computed from the `Is a` relationships.
    pub fn new(
        ancestors: Vec<(i64, i64, i64)>,
        relationships: Vec<(i64, i64, String)>,
        concepts: &[i64],
    ) -> VocabGraph {
        let ancestors = if ancestors.is_empty() {
            closure(&relationships, concepts)
        } else {
            ancestors
        };
        let mut g = VocabGraph::default();
        for (a, d, levels) in ancestors {
            g.down.entry(a).or_default().push((d, levels));
            g.up.entry(d).or_default().push((a, levels));
            if a >= 0 && d >= 0 {
                g.below.entry(a).or_default().insert(d as u64);
            }
        }
        for v in g.down.values_mut().chain(g.up.values_mut()) {
            v.sort_unstable_by_key(|&(c, l)| (l, c));
        }
        for (c1, c2, rel) in relationships {
            if c1 != c2 {
                g.adjacent.entry(c1).or_default().push(c2);
                g.adjacent.entry(c2).or_default().push(c1);
            }
            g.related.entry((c1, rel)).or_default().push(c2);
        }
        for v in g.related.values_mut().chain(g.adjacent.values_mut()) {
            v.sort_unstable();
            v.dedup();
        }
        g
    }

    /// The concepts one relationship away from `concept`, either direction.
    pub fn adjacent_to(&self, concept: i64) -> &[i64] {
        self.adjacent.get(&concept).map_or(&[], |v| v.as_slice())
    }

    /// The graph with the concepts' codes: (concept_id, vocabulary_id,
    /// concept_code); a code given twice names the concept given last.
    pub fn with_codes(mut self, codes: impl IntoIterator<Item = (i64, String, String)>) -> Self {
        for (id, vocabulary, code) in codes {
            let vocabulary = vocabulary.to_lowercase();
            self.vocabularies.insert(vocabulary.clone());
            self.codes.insert((vocabulary, code.trim().to_owned()), id);
        }
        self
    }

    /// The concept of a code in a vocabulary (vocabulary ids compare without case).
    pub fn concept_of(&self, vocabulary: &str, code: &str) -> Option<i64> {
        self.codes
            .get(&(vocabulary.to_lowercase(), code.trim().to_owned()))
            .copied()
    }

    /// Whether the vocabulary has the vocabulary id at all.
    pub fn has_vocabulary(&self, vocabulary: &str) -> bool {
        self.vocabularies.contains(&vocabulary.to_lowercase())
    }

    /// A concept and its descendants.
    pub fn descendants_of(&self, concept: i64) -> Vec<i64> {
        let mut out = vec![concept];
        if let Some(d) = self.down.get(&concept) {
            out.extend(d.iter().map(|&(c, _)| c).filter(|&c| c != concept));
        }
        out
    }

    /// The concepts `concept` is related to by `relationship`.
    pub fn related_to(&self, concept: i64, relationship: &str) -> &[i64] {
        self.related
            .get(&(concept, relationship.to_owned()))
            .map_or(&[], |v| v.as_slice())
    }

    /// True when `concept` is `ancestor` or one of its descendants.
    pub fn is_a(&self, concept: i64, ancestor: i64) -> bool {
        concept == ancestor
            || (concept >= 0
                && self
                    .below
                    .get(&ancestor)
                    .is_some_and(|b| b.contains(concept as u64)))
    }
}

/// The transitive closure of `Is a` with minimum levels, each concept its own ancestor.
fn closure(relationships: &[(i64, i64, String)], concepts: &[i64]) -> Vec<(i64, i64, i64)> {
    let mut parents: HashMap<i64, Vec<i64>> = HashMap::new();
    for (c1, c2, rel) in relationships {
        if rel == "Is a" {
            parents.entry(*c1).or_default().push(*c2);
        }
    }
    let mut all: Vec<i64> = concepts.to_vec();
    all.extend(parents.keys().copied());
    all.sort_unstable();
    all.dedup();
    let mut out = Vec::new();
    for &c in &all {
        let mut seen: HashMap<i64, i64> = HashMap::from([(c, 0)]);
        let mut queue = VecDeque::from([(c, 0i64)]);
        while let Some((x, l)) = queue.pop_front() {
            for &p in parents.get(&x).into_iter().flatten() {
                if let std::collections::hash_map::Entry::Vacant(e) = seen.entry(p) {
                    e.insert(l + 1);
                    queue.push_back((p, l + 1));
                }
            }
        }
        out.extend(seen.into_iter().map(|(a, l)| (a, c, l)));
    }
    out
}

fn constant(name: &str, e: &Expr) -> Result<ScalarValue> {
    match e {
        Expr::Literal(v, _) => Ok(v.clone()),
        Expr::Cast(c) => constant(name, &c.expr)?.cast_to(c.field.data_type()),
        Expr::Negative(inner) => constant(name, inner)?.arithmetic_negate(),
        _ => plan_err!("{name}: arguments must be constants"),
    }
}

fn concept_arg(name: &str, e: &Expr) -> Result<i64> {
    match constant(name, e)?.cast_to(&DataType::Int64) {
        Ok(ScalarValue::Int64(Some(v))) => Ok(v),
        _ => plan_err!("{name}: concept_id must be an integer"),
    }
}

fn mem_table(schema: Schema, columns: Vec<ArrayRef>) -> Result<Arc<dyn TableProvider>> {
    let schema = Arc::new(schema);
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// `descendants(concept_id)` or `ancestors(concept_id)`: (concept_id, levels).
#[derive(Debug)]
pub struct Hierarchy {
    graph: Arc<VocabGraph>,
    down: bool,
}

impl Hierarchy {
    /// `descendants` when `down`, else `ancestors`.
    pub fn new(graph: Arc<VocabGraph>, down: bool) -> Self {
        Self { graph, down }
    }

    /// The function's name.
    pub fn name(&self) -> &'static str {
        if self.down {
            "descendants"
        } else {
            "ancestors"
        }
    }

    /// The documentation of the function.
    pub fn documentation(&self) -> &'static Documentation {
        static DOWN: OnceLock<Documentation> = OnceLock::new();
        static UP: OnceLock<Documentation> = OnceLock::new();
        let (cell, what, example) = if self.down {
            (
                &DOWN,
                "descendants",
                "SELECT count(*) FROM ndb.condition_occurrence WHERE condition_concept_id IN (SELECT concept_id FROM descendants(1000046))",
            )
        } else {
            (
                &UP,
                "ancestors",
                "SELECT c.concept_code, a.levels FROM ancestors(3100020) a JOIN vocab.concept c USING (concept_id) ORDER BY levels",
            )
        };
        cell.get_or_init(|| {
            Documentation::builder(
                docs::VOCABULARY,
                format!("Table function: the {what} of a concept as rows (concept_id BIGINT, levels BIGINT), the concept itself included at level 0; levels is the minimum number of steps. From vocab.concept_ancestor, or the closure of 'Is a' relationships when the store has none."),
                format!("SELECT * FROM {what}(concept_id)"),
            )
            .with_argument("concept_id", "A constant concept id.")
            .with_sql_example(example)
            .build()
        })
    }
}

impl TableFunctionImpl for Hierarchy {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let [arg] = args.exprs() else {
            return plan_err!("{} takes one argument: concept_id", self.name());
        };
        let c = concept_arg(self.name(), arg)?;
        let map = if self.down {
            &self.graph.down
        } else {
            &self.graph.up
        };
        let rows: Vec<(i64, i64)> = map.get(&c).cloned().unwrap_or_else(|| vec![(c, 0)]);
        mem_table(
            Schema::new(vec![
                Field::new("concept_id", DataType::Int64, false),
                Field::new("levels", DataType::Int64, false),
            ]),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
    }
}

/// `related(concept_id, relationship_id)`: (concept_id, relationship_id).
#[derive(Debug)]
pub struct Related {
    graph: Arc<VocabGraph>,
}

impl Related {
    /// The table function over a graph.
    pub fn new(graph: Arc<VocabGraph>) -> Self {
        Self { graph }
    }

    /// The documentation of the function.
    pub fn documentation() -> &'static Documentation {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        DOC.get_or_init(|| {
            Documentation::builder(
                docs::VOCABULARY,
                "Table function: the concepts related to concept_id by relationship_id in vocab.concept_relationship, as rows (concept_id BIGINT, relationship_id TEXT).",
                "SELECT * FROM related(concept_id, relationship_id)",
            )
            .with_argument("concept_id", "A constant concept id.")
            .with_argument("relationship_id", "A constant relationship, for example 'Maps to' or 'Is a'.")
            .with_sql_example("SELECT * FROM related(35208414, 'Maps to')")
            .build()
        })
    }
}

impl TableFunctionImpl for Related {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let [c, r] = args.exprs() else {
            return plan_err!("related takes two arguments: concept_id, relationship_id");
        };
        let c = concept_arg("related", c)?;
        let r = match constant("related", r)? {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)) => s,
            _ => return plan_err!("related: relationship_id must be text"),
        };
        let ids = self
            .graph
            .related
            .get(&(c, r.clone()))
            .cloned()
            .unwrap_or_default();
        let n = ids.len();
        mem_table(
            Schema::new(vec![
                Field::new("concept_id", DataType::Int64, false),
                Field::new("relationship_id", DataType::Utf8, false),
            ]),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(vec![r; n])),
            ],
        )
    }
}

/// `is_a(concept_id, ancestor_concept_id)`.
#[derive(Debug)]
pub struct IsA {
    graph: Arc<VocabGraph>,
    signature: Signature,
}

impl IsA {
    /// The function over a graph.
    pub fn new(graph: Arc<VocabGraph>) -> Self {
        Self {
            graph,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl PartialEq for IsA {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.graph, &other.graph)
    }
}
impl Eq for IsA {}
impl std::hash::Hash for IsA {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "is_a".hash(state);
    }
}

impl ScalarUDFImpl for IsA {
    fn name(&self) -> &str {
        "is_a"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        if args.len() != 2 || !args.iter().all(|t| t.is_integer() || t == &DataType::Null) {
            return plan_err!("is_a takes (concept_id, ancestor_concept_id), both integers");
        }
        Ok(vec![DataType::Int64, DataType::Int64])
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match (&args.args[0], &args.args[1]) {
            (ColumnarValue::Scalar(c), ColumnarValue::Scalar(a)) => {
                let v = match (c, a) {
                    (ScalarValue::Int64(Some(c)), ScalarValue::Int64(Some(a))) => {
                        Some(self.graph.is_a(*c, *a))
                    }
                    _ => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::Boolean(v)))
            }
            // The common case: a column against one ancestor, a bitmap probe per row.
            (ColumnarValue::Array(c), ColumnarValue::Scalar(ScalarValue::Int64(a))) => {
                let c = c.as_primitive::<Int64Type>();
                let Some(a) = a else {
                    return Ok(ColumnarValue::Array(Arc::new(BooleanArray::new_null(
                        c.len(),
                    ))));
                };
                let probe = Probe::new(*a, self.graph.below.get(a));
                let values = c.values();
                let bits = BooleanBuffer::collect_bool(c.len(), |i| probe.contains(values[i]));
                let out = BooleanArray::new(bits, c.nulls().cloned());
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
            _ => {
                let arrays = ColumnarValue::values_to_arrays(&args.args)?;
                let (c, a) = (
                    arrays[0].as_primitive::<Int64Type>(),
                    arrays[1].as_primitive::<Int64Type>(),
                );
                let out: BooleanArray = c
                    .iter()
                    .zip(a.iter())
                    .map(|(c, a)| Some(self.graph.is_a(c?, a?)))
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
        }
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(DOC.get_or_init(|| {
            Documentation::builder(
                docs::VOCABULARY,
                "True when concept_id is ancestor_concept_id or one of its descendants. Against a constant ancestor it is a bitmap lookup per row, fast enough to filter hundreds of millions of rows.",
                "is_a(concept_id, ancestor_concept_id)",
            )
            .with_argument("concept_id", "The concept to test, usually a column.")
            .with_argument("ancestor_concept_id", "The ancestor, usually a constant.")
            .with_sql_example("SELECT count(DISTINCT person_id) FROM ndb.drug_exposure WHERE is_a(drug_concept_id, 2000024)  -- ATC M01A")
            .build()
        }))
    }
}

/// Disclosure classes of the vocabulary functions: reference data only.
pub const DISCLOSURE: &[(&str, crate::Disclosure)] = &[
    ("is_a", crate::Disclosure::Total),
    ("descendants", crate::Disclosure::Total),
    ("ancestors", crate::Disclosure::Total),
    ("related", crate::Disclosure::Total),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closure_from_is_a_has_self_rows_and_min_levels() {
        let rels = vec![
            (3, 2, "Is a".to_string()),
            (2, 1, "Is a".to_string()),
            (3, 1, "Is a".to_string()),
            (3, 9, "Maps to".to_string()),
        ];
        let g = VocabGraph::new(vec![], rels, &[1, 2, 3]);
        assert_eq!(g.down[&1], vec![(1, 0), (2, 1), (3, 1)]);
        assert_eq!(g.up[&3], vec![(3, 0), (1, 1), (2, 1)]);
        assert!(g.is_a(3, 1) && g.is_a(1, 1) && !g.is_a(1, 3) && !g.is_a(9, 3));
        assert_eq!(g.related[&(3, "Maps to".to_string())], vec![9]);
    }
}
