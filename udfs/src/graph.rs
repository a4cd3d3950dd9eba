//! Paths through the vocabulary graph: `concept_path(a, b [, max_steps])`.
//!
//! Every valid relationship of the store's vocabulary (`Is a`, `Maps to`,
//! `Has YJ code`, ...) joins two concepts, in either direction. The search
//! runs from both ends, one level at a time, always widening the smaller
//! frontier, so a path of n steps costs about twice the neighbourhood of
//! n/2 steps instead of the neighbourhood of n.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{Array, AsArray, Int64Builder, ListBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_datafusion_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::disclosure::Disclosure;
use crate::docs;
use crate::vocab::VocabGraph;

/// Disclosure classes of this module's functions.
pub const DISCLOSURE: &[(&str, Disclosure)] = &[
    ("concept_path", Disclosure::Total),
    ("concept_reachable", Disclosure::Total),
];

/// Steps allowed when the call does not say.
pub const DEFAULT_MAX_STEPS: i64 = 6;
/// Most steps a call may ask for.
pub const MOST_STEPS: i64 = 12;
/// Concepts one search may visit before it gives up (NULL).
const VISIT_BUDGET: usize = 200_000;

/// The concepts of a shortest path from `a` to `b` (both included) of at
/// most `max_steps` relationships; `None` when there is none, or when the
/// search would visit more than its budget.
pub fn shortest_path(graph: &VocabGraph, a: i64, b: i64, max_steps: i64) -> Option<Vec<i64>> {
    if a == b {
        return Some(vec![a]);
    }
    // concept -> (the concept it was reached from, steps from its end).
    let mut from_a: HashMap<i64, (i64, i64)> = HashMap::from([(a, (a, 0))]);
    let mut from_b: HashMap<i64, (i64, i64)> = HashMap::from([(b, (b, 0))]);
    let mut front_a = vec![a];
    let mut front_b = vec![b];
    let mut steps = 0;
    while steps < max_steps && !front_a.is_empty() && !front_b.is_empty() {
        steps += 1;
        let widen_a = front_a.len() <= front_b.len();
        let (front, seen, other) = if widen_a {
            (&mut front_a, &mut from_a, &from_b)
        } else {
            (&mut front_b, &mut from_b, &from_a)
        };
        let mut next = Vec::new();
        // The whole level is widened before choosing where the ends meet,
        // so the path found is a shortest one.
        let mut meet: Option<(i64, i64)> = None;
        for &c in front.iter() {
            let depth = seen[&c].1 + 1;
            for &n in graph.adjacent_to(c) {
                if seen.contains_key(&n) {
                    continue;
                }
                seen.insert(n, (c, depth));
                if seen.len() + other.len() > VISIT_BUDGET {
                    return None;
                }
                if let Some(&(_, there)) = other.get(&n)
                    && meet.is_none_or(|(_, best)| depth + there < best)
                {
                    meet = Some((n, depth + there));
                }
                next.push(n);
            }
        }
        if let Some((m, _)) = meet {
            return Some(join(&from_a, &from_b, m));
        }
        *front = next;
    }
    None
}

/// The path through the meeting concept `m`: back to `a`, then on to `b`.
fn join(from_a: &HashMap<i64, (i64, i64)>, from_b: &HashMap<i64, (i64, i64)>, m: i64) -> Vec<i64> {
    let mut path = vec![m];
    let mut c = m;
    while let Some(&(p, _)) = from_a.get(&c).filter(|&&(p, _)| p != c) {
        path.push(p);
        c = p;
    }
    path.reverse();
    let mut c = m;
    while let Some(&(p, _)) = from_b.get(&c).filter(|&&(p, _)| p != c) {
        path.push(p);
        c = p;
    }
    path
}

/// Shortest paths to one concept from every concept within some steps of
/// it: a breadth-first tree grown from that concept, with each member's
/// path to the root written out once.
#[derive(Debug)]
struct Toward {
    /// The members as a bitset from `lo`, when their span is at most
    /// [`Toward::DENSE_SPAN`]: a row out of reach is one bit test, and a
    /// member's number is the bits set before its own (`rank` per word).
    lo: i64,
    bits: Vec<u64>,
    rank: Vec<u32>,
    /// Member numbers by concept, when the span is wider.
    index: datafusion::common::HashMap<i64, u32>,
    /// Each member's path in `flat` (start, length), by member number.
    spans: Vec<(u32, u32)>,
    flat: Vec<i64>,
}

impl Toward {
    /// The tree of `root` out to `max_steps`; `None` past the visit budget.
    fn grow(graph: &VocabGraph, root: i64, max_steps: i64) -> Option<Toward> {
        // concept -> the next concept on its way to the root.
        let mut next: datafusion::common::HashMap<i64, i64> = Default::default();
        next.insert(root, root);
        let mut front = vec![root];
        for _ in 0..max_steps {
            let mut wider = Vec::new();
            for &c in &front {
                for &n in graph.adjacent_to(c) {
                    if let datafusion::common::hash_map::Entry::Vacant(e) = next.entry(n) {
                        e.insert(c);
                        wider.push(n);
                    }
                }
            }
            if next.len() > VISIT_BUDGET {
                return None;
            }
            if wider.is_empty() {
                break;
            }
            front = wider;
        }
        let mut members: Vec<i64> = next.keys().copied().collect();
        members.sort_unstable();
        let mut spans = Vec::with_capacity(members.len());
        let mut flat = Vec::new();
        for &m in &members {
            let start = flat.len() as u32;
            let (mut c, mut n) = (m, next[&m]);
            flat.push(m);
            while n != c {
                flat.push(n);
                c = n;
                n = next.get(&c).copied().unwrap_or(c);
            }
            spans.push((start, flat.len() as u32 - start));
        }
        let (lo, hi) = (
            members.first().copied().unwrap_or(root),
            members.last().copied().unwrap_or(root),
        );
        let mut tree = Toward {
            lo,
            bits: Vec::new(),
            rank: Vec::new(),
            index: Default::default(),
            spans,
            flat,
        };
        if hi.abs_diff(lo) < Self::DENSE_SPAN {
            let mut bits = vec![0u64; (hi.abs_diff(lo) / 64 + 1) as usize];
            for &c in &members {
                let o = c.abs_diff(lo);
                bits[(o / 64) as usize] |= 1 << (o % 64);
            }
            let mut before = 0u32;
            tree.rank = bits
                .iter()
                .map(|w| {
                    let r = before;
                    before += w.count_ones();
                    r
                })
                .collect();
            tree.bits = bits;
        } else {
            tree.index = members
                .iter()
                .enumerate()
                .map(|(i, &c)| (c, i as u32))
                .collect();
        }
        Some(tree)
    }

    /// Widest span of concept ids kept as a bitset (2 MiB, and 1 MiB of ranks).
    const DENSE_SPAN: u64 = 1 << 24;

    /// True when `c` is in reach.
    #[inline]
    fn contains(&self, c: i64) -> bool {
        if self.bits.is_empty() {
            return self.index.contains_key(&c);
        }
        let o = c.wrapping_sub(self.lo) as u64;
        self.bits
            .get((o / 64) as usize)
            .is_some_and(|w| w & (1 << (o % 64)) != 0)
    }

    /// The member number of `c`; `None` when `c` is out of reach.
    #[inline]
    fn member(&self, c: i64) -> Option<usize> {
        if self.bits.is_empty() {
            return self.index.get(&c).map(|&i| i as usize);
        }
        let o = c.wrapping_sub(self.lo) as u64;
        let w = (o / 64) as usize;
        let word = *self.bits.get(w)?;
        let bit = o % 64;
        if word & (1 << bit) == 0 {
            return None;
        }
        Some(self.rank[w] as usize + (word & ((1u64 << bit) - 1)).count_ones() as usize)
    }

    /// The path of member `i` to the root, both ends included.
    #[inline]
    fn path(&self, i: usize) -> &[i64] {
        let (start, len) = self.spans[i];
        &self.flat[start as usize..(start + len) as usize]
    }

    /// Appends the path from `from` to the root; false when `from` is out of reach.
    #[cfg(test)]
    fn append(&self, from: i64, out: &mut Vec<i64>) -> bool {
        let Some(i) = self.member(from) else {
            return false;
        };
        out.extend_from_slice(self.path(i));
        true
    }
}

/// The last tree grown for a constant `b`, kept for the next batches.
#[derive(Debug, Default)]
struct Trees {
    /// (b, steps, tree).
    last: std::sync::Mutex<Option<(i64, i64, Arc<Option<Toward>>)>>,
}

impl Trees {
    /// The tree toward `b` within `steps`, grown once for repeated calls.
    fn toward(&self, graph: &VocabGraph, b: i64, steps: i64) -> Arc<Option<Toward>> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((lb, ls, t)) = last.as_ref()
            && *lb == b
            && *ls == steps
        {
            return t.clone();
        }
        let t = Arc::new(Toward::grow(graph, b, steps));
        *last = Some((b, steps, t.clone()));
        t
    }
}

/// The constant `b` and steps of a call over a column `a`, when the call
/// has that shape.
fn column_against_constant(args: &ScalarFunctionArgs) -> Option<(&dyn Array, i64, i64)> {
    let constant = |i: usize| match args.args.get(i) {
        Some(ColumnarValue::Scalar(ScalarValue::Int64(Some(v)))) => Some(Some(*v)),
        None => Some(None),
        _ => None,
    };
    match (args.args.first(), constant(1), constant(2)) {
        (Some(ColumnarValue::Array(a)), Some(Some(b)), Some(steps)) if args.number_rows > 0 => {
            Some((
                a.as_ref(),
                b,
                steps.unwrap_or(DEFAULT_MAX_STEPS).clamp(0, MOST_STEPS),
            ))
        }
        _ => None,
    }
}

/// The rows of `a` (Int64) in reach of the tree: one bit test per row;
/// NULL rows are not in reach.
fn in_reach(tree: &Toward, a: &dyn Array) -> datafusion::arrow::buffer::BooleanBuffer {
    let a = a.as_primitive::<Int64Type>();
    let ids = a.values();
    let reach = datafusion::arrow::buffer::BooleanBuffer::collect_bool(ids.len(), |r| {
        tree.contains(ids[r])
    });
    match a.nulls() {
        Some(nulls) => &reach & nulls.inner(),
        None => reach,
    }
}

/// The arguments of each row (a, b, steps), `None` where one is NULL.
fn rows_of(args: &ScalarFunctionArgs) -> Result<(bool, Vec<Option<(i64, i64, i64)>>)> {
    let n = args.number_rows;
    let scalar = args
        .args
        .iter()
        .all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let rows = if scalar { 1 } else { n };
    let arrays = args
        .args
        .iter()
        .map(|a| a.to_array(rows))
        .collect::<Result<Vec<_>>>()?;
    let ints: Vec<_> = arrays
        .iter()
        .map(|a| a.as_primitive::<Int64Type>())
        .collect();
    Ok((
        scalar,
        (0..rows)
            .map(|r| {
                if ints.iter().any(|a| a.is_null(r)) {
                    return None;
                }
                let steps = ints
                    .get(2)
                    .map_or(DEFAULT_MAX_STEPS, |s| s.value(r))
                    .clamp(0, MOST_STEPS);
                Some((ints[0].value(r), ints[1].value(r), steps))
            })
            .collect(),
    ))
}

/// What both path functions hold: the graph and the last tree grown.
#[derive(Debug)]
struct Paths {
    graph: Arc<VocabGraph>,
    signature: Signature,
    trees: Trees,
}

impl Paths {
    fn new(graph: Arc<VocabGraph>) -> Self {
        Self {
            graph,
            signature: Signature::user_defined(Volatility::Immutable),
            trees: Trees::default(),
        }
    }

    /// The tree toward `b` within `steps`.
    fn toward(&self, b: i64, steps: i64) -> Arc<Option<Toward>> {
        self.trees.toward(&self.graph, b, steps)
    }
}

/// Two functions over the same graph are the same function.
impl PartialEq for Paths {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.graph, &other.graph)
    }
}
impl Eq for Paths {}
impl std::hash::Hash for Paths {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.graph).hash(state);
    }
}

/// `concept_path(a, b [, max_steps])`: the concept ids of a shortest path.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ConceptPath(Paths);

impl ConceptPath {
    /// The function over a graph.
    pub fn new(graph: Arc<VocabGraph>) -> Self {
        Self(Paths::new(graph))
    }
}

/// The arguments of the path functions: two or three integers, as BIGINT.
fn path_arguments(name: &str, args: &[DataType]) -> Result<Vec<DataType>> {
    if !(2..=3).contains(&args.len())
        || !args.iter().all(|t| t.is_integer() || t == &DataType::Null)
    {
        return plan_err!(
            "{name} takes (concept_id, concept_id) or (concept_id, concept_id, max_steps), all integers"
        );
    }
    Ok(vec![DataType::Int64; args.len()])
}

fn item() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Int64, true))
}

impl ScalarUDFImpl for ConceptPath {
    fn name(&self) -> &str {
        "concept_path"
    }
    fn signature(&self) -> &Signature {
        &self.0.signature
    }
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        path_arguments(self.name(), args)
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(item()))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        // The common case: a column against one concept. One tree from that
        // concept answers every row (a shortest path from each row's
        // concept, read back along the tree).
        if let Some((a, b, steps)) = column_against_constant(&args)
            && let Some(tree) = self.0.toward(b, steps).as_ref()
        {
            // Which rows are in reach (one bit test each, as `is_a`), then
            // the paths of those rows only; the offsets of the rows between
            // them are filled in runs.
            let valid = in_reach(tree, a);
            let ids = a.as_primitive::<Int64Type>().values();
            let mut offsets = vec![0i32; n + 1];
            let mut values: Vec<i64> = Vec::new();
            let mut filled = 0usize;
            for r in valid.set_indices() {
                let start = i32::try_from(values.len()).map_err(|_| {
                    exec_datafusion_err!("concept_path: too many paths in one batch")
                })?;
                offsets[filled + 1..=r].fill(start);
                if let Some(m) = tree.member(ids[r]) {
                    values.extend_from_slice(tree.path(m));
                }
                offsets[r + 1] = i32::try_from(values.len()).map_err(|_| {
                    exec_datafusion_err!("concept_path: too many paths in one batch")
                })?;
                filled = r + 1;
            }
            let end = offsets[filled];
            offsets[filled + 1..].fill(end);
            let list = datafusion::arrow::array::ListArray::try_new(
                item(),
                datafusion::arrow::buffer::OffsetBuffer::new(offsets.into()),
                Arc::new(datafusion::arrow::array::Int64Array::from(values)),
                Some(datafusion::arrow::buffer::NullBuffer::new(valid)),
            )?;
            return Ok(ColumnarValue::Array(Arc::new(list)));
        }
        let (scalar, rows) = rows_of(&args)?;
        let mut out = ListBuilder::new(Int64Builder::new()).with_field(item());
        // Rows repeat the same pair often (a concept per record): answer each pair once.
        let mut known: HashMap<(i64, i64, i64), Option<Vec<i64>>> = HashMap::new();
        for row in rows {
            let Some((a, b, steps)) = row else {
                out.append_null();
                continue;
            };
            let path = known
                .entry((a, b, steps))
                .or_insert_with(|| shortest_path(&self.0.graph, a, b, steps));
            match path {
                Some(p) => {
                    out.values().append_slice(p);
                    out.append(true);
                }
                None => out.append_null(),
            }
        }
        let list = Arc::new(out.finish());
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::List(list))
        } else {
            ColumnarValue::Array(list)
        })
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(DOC.get_or_init(|| {
            Documentation::builder(
                docs::VOCABULARY,
                format!(
                    "The concept ids of a shortest path between two concepts through the vocabulary's valid relationships (Is a, Maps to, Has YJ code, ...; either direction), both ends included; NULL when none has at most max_steps relationships (default {DEFAULT_MAX_STEPS}, at most {MOST_STEPS}) or the search would visit over {VISIT_BUDGET} concepts. Data-derived associations are rows of graph.edges."
                ),
                "concept_path(concept_id, concept_id [, max_steps])",
            )
            .with_argument("concept_id", "The two ends (integers).")
            .with_argument("max_steps", "Most relationships on the path (integer).")
            .with_sql_example(
                "SELECT c.concept_code, c.vocabulary_id FROM unnest(concept_path(7100030, 2000023)) AS p(id) JOIN vocab.concept c ON c.concept_id = p.id",
            )
            .build()
        }))
    }
}

/// `concept_reachable(a, b [, max_steps])`: whether `concept_path` finds a
/// path (true or false, never NULL; false when an argument is NULL).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ConceptReachable(Paths);

impl ConceptReachable {
    /// The function over a graph.
    pub fn new(graph: Arc<VocabGraph>) -> Self {
        Self(Paths::new(graph))
    }
}

impl ScalarUDFImpl for ConceptReachable {
    fn name(&self) -> &str {
        "concept_reachable"
    }
    fn signature(&self) -> &Signature {
        &self.0.signature
    }
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        path_arguments(self.name(), args)
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn return_field_from_args(
        &self,
        _: datafusion::logical_expr::ReturnFieldArgs,
    ) -> Result<Arc<Field>> {
        Ok(Arc::new(Field::new(self.name(), DataType::Boolean, false)))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::BooleanArray;
        if let Some((a, b, steps)) = column_against_constant(&args)
            && let Some(tree) = self.0.toward(b, steps).as_ref()
        {
            return Ok(ColumnarValue::Array(Arc::new(BooleanArray::new(
                in_reach(tree, a),
                None,
            ))));
        }
        let (scalar, rows) = rows_of(&args)?;
        let mut known: HashMap<(i64, i64, i64), bool> = HashMap::new();
        let reach: BooleanArray = rows
            .into_iter()
            .map(|row| {
                Some(row.is_some_and(|(a, b, steps)| {
                    *known
                        .entry((a, b, steps))
                        .or_insert_with(|| shortest_path(&self.0.graph, a, b, steps).is_some())
                }))
            })
            .collect();
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::Boolean(Some(reach.value(0))))
        } else {
            ColumnarValue::Array(Arc::new(reach))
        })
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(DOC.get_or_init(|| {
            Documentation::builder(
                docs::VOCABULARY,
                format!(
                    "True when concept_path(a, b, max_steps) finds a path (default {DEFAULT_MAX_STEPS} steps, at most {MOST_STEPS}); false otherwise, and when an argument is NULL. Against a constant concept it costs one bit test per row, as is_a; a filter `concept_path(...) IS NOT NULL` is planned as this function."
                ),
                "concept_reachable(concept_id, concept_id [, max_steps])",
            )
            .with_argument("concept_id", "The two ends (integers).")
            .with_argument("max_steps", "Most relationships on the path (integer).")
            .with_sql_example(
                "SELECT count(*) FROM ndb.condition_occurrence WHERE concept_reachable(condition_concept_id, 1000040, 2)",
            )
            .build()
        }))
    }
}

/// Plans a filter `concept_path(...) IS NOT NULL` (or `IS NULL`) as
/// `concept_reachable(...)` (or its negation): the paths are not written
/// when only their existence is asked. Filters only, so no output column
/// changes name.
#[derive(Debug, Default)]
pub struct PathFilters;

impl datafusion::optimizer::OptimizerRule for PathFilters {
    fn name(&self) -> &str {
        "concept_path_filters"
    }
    fn apply_order(&self) -> Option<datafusion::optimizer::ApplyOrder> {
        Some(datafusion::optimizer::ApplyOrder::TopDown)
    }
    fn supports_rewrite(&self) -> bool {
        true
    }
    fn rewrite(
        &self,
        plan: datafusion::logical_expr::LogicalPlan,
        config: &dyn datafusion::optimizer::OptimizerConfig,
    ) -> Result<datafusion::common::tree_node::Transformed<datafusion::logical_expr::LogicalPlan>>
    {
        use datafusion::common::tree_node::{Transformed, TreeNode};
        use datafusion::logical_expr::expr::ScalarFunction;
        use datafusion::logical_expr::{Expr, LogicalPlan};
        let LogicalPlan::Filter(filter) = plan else {
            return Ok(Transformed::no(plan));
        };
        let Some(reachable) = config
            .function_registry()
            .and_then(|r| r.udf("concept_reachable").ok())
        else {
            return Ok(Transformed::no(LogicalPlan::Filter(filter)));
        };
        let path_args = |e: &Expr| match e {
            Expr::ScalarFunction(f) if f.func.name() == "concept_path" => Some(f.args.clone()),
            _ => None,
        };
        let predicate = filter.predicate.clone().transform(|e| {
            Ok(match &e {
                Expr::IsNotNull(inner) => match path_args(inner) {
                    Some(args) => Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(
                        reachable.clone(),
                        args,
                    ))),
                    None => Transformed::no(e),
                },
                Expr::IsNull(inner) => match path_args(inner) {
                    Some(args) => Transformed::yes(Expr::Not(Box::new(Expr::ScalarFunction(
                        ScalarFunction::new_udf(reachable.clone(), args),
                    )))),
                    None => Transformed::no(e),
                },
                _ => Transformed::no(e),
            })
        })?;
        if !predicate.transformed {
            return Ok(Transformed::no(LogicalPlan::Filter(filter)));
        }
        let rewritten = datafusion::logical_expr::Filter::try_new(predicate.data, filter.input)?;
        Ok(Transformed::yes(LogicalPlan::Filter(rewritten)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain 1-2-3-4-5 with a branch 3-6-7 and a separate 8-9.
    fn graph() -> VocabGraph {
        let rel = |a: i64, b: i64| (a, b, "Is a".to_owned());
        VocabGraph::new(
            vec![(1, 1, 0)],
            vec![
                rel(1, 2),
                rel(2, 3),
                rel(3, 4),
                rel(4, 5),
                rel(3, 6),
                rel(6, 7),
                rel(8, 9),
            ],
            &[],
        )
    }

    #[test]
    fn shortest_paths_by_hand() {
        let g = graph();
        assert_eq!(shortest_path(&g, 1, 5, 6), Some(vec![1, 2, 3, 4, 5]));
        assert_eq!(shortest_path(&g, 5, 7, 6), Some(vec![5, 4, 3, 6, 7]));
        assert_eq!(shortest_path(&g, 7, 1, 6), Some(vec![7, 6, 3, 2, 1]));
        assert_eq!(shortest_path(&g, 2, 2, 0), Some(vec![2]));
        // Too far for the steps allowed, and unconnected.
        assert_eq!(shortest_path(&g, 1, 5, 3), None);
        assert_eq!(shortest_path(&g, 1, 5, 4), Some(vec![1, 2, 3, 4, 5]));
        assert_eq!(shortest_path(&g, 1, 9, 12), None);
        assert_eq!(shortest_path(&g, 1, 99, 12), None);
    }

    #[test]
    fn a_column_against_a_constant_gives_each_rows_shortest_path() {
        use datafusion::arrow::array::{Int64Array, ListArray};
        let f = ConceptPath::new(Arc::new(graph()));
        let column: Vec<Option<i64>> =
            vec![Some(1), None, Some(7), Some(9), Some(5), Some(1), None];
        let rows = column.len();
        for steps in [None, Some(2i64), Some(4)] {
            let mut args = vec![
                ColumnarValue::Array(Arc::new(Int64Array::from(column.clone()))),
                ColumnarValue::Scalar(ScalarValue::Int64(Some(5))),
            ];
            if let Some(s) = steps {
                args.push(ColumnarValue::Scalar(ScalarValue::Int64(Some(s))));
            }
            let field = |t: DataType| Arc::new(Field::new("x", t, true));
            let out = f
                .invoke_with_args(ScalarFunctionArgs {
                    arg_fields: args.iter().map(|_| field(DataType::Int64)).collect(),
                    args,
                    number_rows: rows,
                    return_field: field(DataType::List(item())),
                    config_options: Default::default(),
                })
                .unwrap()
                .to_array(rows)
                .unwrap();
            let out = out.as_any().downcast_ref::<ListArray>().unwrap();
            for (r, c) in column.iter().enumerate() {
                let want = c.and_then(|c| {
                    shortest_path(&graph(), c, 5, steps.unwrap_or(DEFAULT_MAX_STEPS))
                });
                let got = out
                    .is_valid(r)
                    .then(|| out.value(r).as_primitive::<Int64Type>().values().to_vec());
                // Both are shortest; the tree's may be another of the same length.
                assert_eq!(
                    got.as_ref().map(Vec::len),
                    want.as_ref().map(Vec::len),
                    "row {r} {steps:?}"
                );
                if let Some(p) = got {
                    assert_eq!((p[0], p[p.len() - 1]), (c.unwrap(), 5));
                }
            }
        }
    }

    #[test]
    fn reachable_is_whether_a_path_exists() {
        use datafusion::arrow::array::{BooleanArray, Int64Array};
        let f = ConceptReachable::new(Arc::new(graph()));
        let column: Vec<Option<i64>> = vec![Some(1), None, Some(7), Some(9), Some(5), Some(99)];
        let rows = column.len();
        let field = |t: DataType| Arc::new(Field::new("x", t, true));
        let call = |args: Vec<ColumnarValue>| {
            f.invoke_with_args(ScalarFunctionArgs {
                arg_fields: args.iter().map(|_| field(DataType::Int64)).collect(),
                args,
                number_rows: rows,
                return_field: field(DataType::Boolean),
                config_options: Default::default(),
            })
            .unwrap()
            .to_array(rows)
            .unwrap()
        };
        for steps in [2i64, 4, 6] {
            let want: Vec<bool> = column
                .iter()
                .map(|c| c.is_some_and(|c| shortest_path(&graph(), c, 5, steps).is_some()))
                .collect();
            // Against a constant (the tree), and against a column of it (searches).
            let constant = call(vec![
                ColumnarValue::Array(Arc::new(Int64Array::from(column.clone()))),
                ColumnarValue::Scalar(ScalarValue::Int64(Some(5))),
                ColumnarValue::Scalar(ScalarValue::Int64(Some(steps))),
            ]);
            let columns = call(vec![
                ColumnarValue::Array(Arc::new(Int64Array::from(column.clone()))),
                ColumnarValue::Array(Arc::new(Int64Array::from(vec![5; rows]))),
                ColumnarValue::Array(Arc::new(Int64Array::from(vec![steps; rows]))),
            ]);
            for got in [constant, columns] {
                let got = got.as_any().downcast_ref::<BooleanArray>().unwrap();
                assert_eq!(got.null_count(), 0);
                assert_eq!(
                    got.iter().map(Option::unwrap).collect::<Vec<_>>(),
                    want,
                    "{steps}"
                );
            }
        }
    }

    #[test]
    fn a_tree_over_far_apart_ids_finds_its_members_by_hash() {
        let far = 1i64 << 40;
        let rel = |a: i64, b: i64| (a, b, "Maps to".to_owned());
        let g = VocabGraph::new(vec![], vec![rel(1, far), rel(far, 5), rel(7, 8)], &[]);
        let tree = Toward::grow(&g, 5, 3).unwrap();
        assert!(tree.bits.is_empty(), "ids this far apart are not a bitset");
        let path = |from: i64| {
            let mut p = Vec::new();
            tree.append(from, &mut p).then_some(p)
        };
        assert_eq!(path(1), Some(vec![1, far, 5]));
        assert_eq!(path(far), Some(vec![far, 5]));
        assert_eq!(path(5), Some(vec![5]));
        assert_eq!(path(7), None);
        assert_eq!(path(-3), None);
    }

    #[test]
    fn a_tree_toward_one_concept_gives_paths_as_short() {
        let g = graph();
        for root in 1..=9 {
            for steps in 0..=6 {
                let tree = Toward::grow(&g, root, steps).unwrap();
                for from in 0..=10 {
                    let mut path = Vec::new();
                    let found = tree.append(from, &mut path);
                    match shortest_path(&g, from, root, steps) {
                        None => assert!(!found, "{from} -> {root} in {steps}: {path:?}"),
                        Some(want) => {
                            assert!(found, "{from} -> {root} in {steps}");
                            assert_eq!(
                                path.len(),
                                want.len(),
                                "{from} -> {root}: {path:?} {want:?}"
                            );
                            assert_eq!((path[0], *path.last().unwrap()), (from, root));
                            for w in path.windows(2) {
                                assert!(g.adjacent_to(w[0]).contains(&w[1]), "{path:?}");
                            }
                        }
                    }
                }
            }
        }
    }
}
