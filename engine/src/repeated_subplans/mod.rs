//! Shared subplans: a part of a query that appears more than once (a CTE
//! referenced several times, the same view joined and filtered the same way
//! in a subquery) is computed once and read by every reference.
//!
//! DataFusion inlines each reference to a CTE, so a study that refers to
//! its `dispensing` CTE four times scans, filters and maps the dispensing
//! table four times. [`ShareRepeatedSubplans`] is a logical optimizer rule
//! that finds identical subtrees doing real work (a filter, join, aggregate,
//! window, sort or unnest over stored data) and wraps each in a
//! [`SharedPlan`] node. [`SharingQueryPlanner`] plans every occurrence of one
//! node onto the same [`SharedExec`] state, which runs the subplan once,
//! keeps its result in the memory pool and spills it to disk when the pool
//! is full.
//!
//! Sharing stops filters and projections from being pushed into the shared
//! part (the optimizer treats the node as opaque); its inside is optimized
//! as usual. Subtrees with volatile functions, outer references or recursive
//! queries are never shared.

mod exec;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchemaRef, Result, internal_err};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    Extension, JoinType, LogicalPlan, Projection, UserDefinedLogicalNode,
    UserDefinedLogicalNodeCore,
};
use datafusion::optimizer::{Optimizer, OptimizerConfig, OptimizerRule};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use datafusion::prelude::Expr;

pub use exec::SharedExec;

/// Adds subplan sharing to a session state: the rule first among the
/// optimizer rules, and the planner that executes shared nodes.
pub fn install(builder: SessionStateBuilder) -> SessionStateBuilder {
    let mut rules = Optimizer::new().rules;
    rules.insert(0, Arc::new(ShareRepeatedSubplans));
    builder
        .with_optimizer_rules(rules)
        .with_query_planner(Arc::new(SharingQueryPlanner))
}

/// The shared subplans of one plan fragment read on a cluster worker: the
/// occurrences of one shared subplan in the fragment read one run. Put in
/// the configuration of the session a fragment is decoded with, one per
/// fragment (see `plan_codec`).
#[derive(Debug, Default)]
pub struct FragmentRuns(std::sync::Mutex<HashMap<u64, Arc<exec::SharedRun>>>);

impl FragmentRuns {
    /// An occurrence of the shared subplan `id` over `input`, reading the
    /// run of the fragment's other occurrences of `id`.
    pub fn occurrence(&self, id: u64, input: Arc<dyn ExecutionPlan>) -> Result<SharedExec> {
        let run = self
            .0
            .lock()
            .map_err(|_| datafusion::common::DataFusionError::Internal("shared plans".into()))?
            .entry(id)
            .or_insert_with(|| Arc::new(exec::SharedRun::new(id)))
            .clone();
        Ok(SharedExec::new(input, run))
    }
}

/// A subplan computed once for all of its occurrences in a query.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub struct SharedPlan {
    /// Identifies the occurrences of one shared subplan.
    pub id: u64,
    /// The shared subplan.
    pub input: Arc<LogicalPlan>,
}

impl SharedPlan {
    fn wrap(input: LogicalPlan) -> LogicalPlan {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        LogicalPlan::Extension(Extension {
            node: Arc::new(SharedPlan {
                id: NEXT.fetch_add(1, Ordering::Relaxed),
                input: Arc::new(input),
            }),
        })
    }

    /// The shared subplan node, if `plan` is one.
    pub fn of(plan: &LogicalPlan) -> Option<&SharedPlan> {
        match plan {
            LogicalPlan::Extension(e) => e.node.as_any().downcast_ref::<SharedPlan>(),
            _ => None,
        }
    }
}

impl UserDefinedLogicalNodeCore for SharedPlan {
    fn name(&self) -> &str {
        "SharedPlan"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SharedPlan: id={}", self.id)
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        match inputs.pop() {
            Some(input) if inputs.is_empty() => Ok(SharedPlan {
                id: self.id,
                input: Arc::new(input),
            }),
            _ => internal_err!("SharedPlan takes exactly one input"),
        }
    }
}

/// The optimizer rule that shares repeated subplans (see the module docs).
#[derive(Debug, Default)]
pub struct ShareRepeatedSubplans;

impl OptimizerRule for ShareRepeatedSubplans {
    fn name(&self) -> &str {
        "share_repeated_subplans"
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let mut recursive = false;
        plan.apply_with_subqueries(|n| {
            recursive = matches!(n, LogicalPlan::RecursiveQuery(_));
            Ok(if recursive {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        })?;
        if recursive {
            return Ok(Transformed::no(plan));
        }
        let counts = occurrences(&plan)?;
        if !counts.values().any(|&c| c >= 2) {
            return Ok(Transformed::no(plan));
        }
        let mut sharer = Sharer {
            counts,
            reach: reached_by_filters(&plan)?,
            done: HashMap::new(),
        };
        let shared = sharer.rewrite(plan)?;
        if sharer.done.is_empty() {
            return Ok(Transformed::no(shared));
        }
        Ok(Transformed::yes(unwrap_single(shared)?))
    }
}

/// How often each subtree occurs, a shared node's inside counted once.
/// Subtrees that compare equal but read different tables are left out:
/// plans compare scans by name, and every call of a table function
/// (`cohort('a')`, `cohort('b')`) scans a table of the function's name.
///
/// Subtrees are first counted by [`fingerprint`], computed once per node;
/// only those whose fingerprint repeats are hashed and compared whole.
/// Hashing every subtree whole costs the size of each, which grows with
/// the square of a plan's depth (a chain of hundreds of joins).
fn occurrences(plan: &LogicalPlan) -> Result<HashMap<LogicalPlan, usize>> {
    let mut prints = HashMap::new();
    let mut by_print: HashMap<u64, usize> = HashMap::new();
    visit_occurrences(plan, |n| {
        *by_print.entry(fingerprint(n, &mut prints)?).or_default() += 1;
        Ok(())
    })?;
    let mut counts: HashMap<LogicalPlan, usize> = HashMap::new();
    if !by_print.values().any(|&c| c >= 2) {
        return Ok(counts);
    }
    let mut tables: HashMap<LogicalPlan, Vec<usize>> = HashMap::new();
    let mut ambiguous = HashSet::new();
    visit_occurrences(plan, |n| {
        if by_print.get(&fingerprint(n, &mut prints)?) < Some(&2) {
            return Ok(());
        }
        let read = scanned_tables(n)?;
        match tables.get(n) {
            Some(t) if *t != read => {
                ambiguous.insert(n.clone());
            }
            Some(_) => {}
            None => {
                tables.insert(n.clone(), read);
            }
        }
        *counts.entry(n.clone()).or_default() += 1;
        Ok(())
    })?;
    counts.retain(|p, _| !ambiguous.contains(p));
    Ok(counts)
}

/// Calls `f` on every subtree that may be shared, in the order
/// [`occurrences`] counts them: scans, empty relations and values are left
/// out, and a shared node's inside is visited once.
fn visit_occurrences(
    plan: &LogicalPlan,
    mut f: impl FnMut(&LogicalPlan) -> Result<()>,
) -> Result<()> {
    let mut seen = HashSet::new();
    plan.apply_with_subqueries(|n| {
        if let Some(s) = SharedPlan::of(n) {
            return Ok(if seen.insert(s.id) {
                TreeNodeRecursion::Continue
            } else {
                TreeNodeRecursion::Jump
            });
        }
        if !matches!(
            n,
            LogicalPlan::TableScan(_) | LogicalPlan::EmptyRelation(_) | LogicalPlan::Values(_)
        ) {
            f(n)?;
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(())
}

/// A hash of a subtree, made of the node's own text (as EXPLAIN shows it)
/// and its inputs' and subqueries' fingerprints, each computed once and
/// kept by node address. Equal subtrees have equal fingerprints; unequal
/// ones rarely do, and are told apart by comparing them whole.
fn fingerprint(plan: &LogicalPlan, prints: &mut HashMap<*const LogicalPlan, u64>) -> Result<u64> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let address = plan as *const LogicalPlan;
    if let Some(&print) = prints.get(&address) {
        return Ok(print);
    }
    let mut hasher = DefaultHasher::new();
    plan.display().to_string().hash(&mut hasher);
    for input in plan.inputs() {
        fingerprint(input, prints)?.hash(&mut hasher);
    }
    plan.apply_subqueries(|sub| {
        fingerprint(sub, prints)?.hash(&mut hasher);
        Ok(TreeNodeRecursion::Jump)
    })?;
    let print = hasher.finish();
    // A subquery node is made for the walk and dropped after it: its
    // address may be reused by another.
    if !matches!(plan, LogicalPlan::Subquery(_)) {
        prints.insert(address, print);
    }
    Ok(print)
}

/// The tables a subtree scans, in order, by the identity of their providers.
fn scanned_tables(plan: &LogicalPlan) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    plan.apply_with_subqueries(|n| {
        if let LogicalPlan::TableScan(t) = n {
            let id = match datafusion::datasource::source_as_provider(&t.source) {
                Ok(p) => Arc::as_ptr(&p) as *const () as usize,
                Err(_) => Arc::as_ptr(&t.source) as *const () as usize,
            };
            out.push(id);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(out)
}

/// How a filter above a subtree's occurrence can affect it.
#[derive(Debug, Default, Clone, Copy)]
struct Reach {
    /// Occurrences the filter is pushed into.
    filtered: usize,
    /// Occurrences joined to a filtered input (the join restricts them).
    restricted: usize,
}

/// How many occurrences of each subtree a filter above it reaches: the
/// columns its conjuncts read (those without subqueries, which become
/// joins) are followed down projections, aliases, filters and the sides of
/// inner joins that hold them; the other side of such a join, or of one
/// with a filter inside an input, is restricted by it. A subtree every occurrence of which is filtered is not shared:
/// each filter is pushed to the scans beneath it (a join read by two CTEs
/// that filter it differently), while sharing would compute and hold it
/// whole. Where the filters are the same, the filtered subtree is itself
/// repeated and shared.
fn reached_by_filters(plan: &LogicalPlan) -> Result<HashMap<LogicalPlan, Reach>> {
    let mut reach = HashMap::new();
    reached(plan, &HashSet::new(), false, &mut reach)?;
    Ok(reach)
}

fn reached(
    plan: &LogicalPlan,
    columns: &HashSet<Column>,
    restricted: bool,
    reach: &mut HashMap<LogicalPlan, Reach>,
) -> Result<()> {
    let passes = matches!(
        plan,
        LogicalPlan::Filter(_)
            | LogicalPlan::Projection(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::TableScan(_)
    ) || matches!(plan, LogicalPlan::Join(j) if j.join_type == JoinType::Inner);
    if passes && !columns.is_empty() {
        reach.entry(plan.clone()).or_default().filtered += 1;
    } else if passes && restricted {
        reach.entry(plan.clone()).or_default().restricted += 1;
    }
    let none = HashSet::new();
    let mut below: Vec<(&LogicalPlan, HashSet<Column>, bool)> = Vec::new();
    match plan {
        LogicalPlan::Filter(f) => {
            let mut cols = columns.clone();
            for c in split_conjunction(&f.predicate) {
                if !c.exists(|e| Ok(is_subquery(e)))? {
                    cols.extend(c.column_refs().into_iter().cloned());
                }
            }
            below.push((&f.input, cols, restricted));
        }
        LogicalPlan::Projection(p) => {
            let cols = p
                .schema
                .columns()
                .iter()
                .zip(&p.expr)
                .filter(|(c, _)| columns.contains(c))
                .flat_map(|(_, e)| e.column_refs().into_iter().cloned())
                .collect();
            below.push((&p.input, cols, restricted));
        }
        LogicalPlan::SubqueryAlias(a) => {
            let cols = a
                .schema
                .columns()
                .iter()
                .zip(a.input.schema().columns())
                .filter(|(c, _)| columns.contains(c))
                .map(|(_, inner)| inner)
                .collect();
            below.push((&a.input, cols, restricted));
        }
        LogicalPlan::Join(j) if j.join_type == JoinType::Inner => {
            let sides = [&j.left, &j.right].map(|side| {
                columns
                    .iter()
                    .filter(|c| side.schema().has_column(c))
                    .cloned()
                    .collect::<HashSet<Column>>()
            });
            // A side is restricted by a filter reaching the other side, or
            // already pushed into it.
            let filtered = [
                !sides[0].is_empty() || reduced(&j.left)?,
                !sides[1].is_empty() || reduced(&j.right)?,
            ];
            let [left, right] = sides;
            below.push((&j.left, left, restricted || filtered[1]));
            below.push((&j.right, right, restricted || filtered[0]));
        }
        other => {
            for input in other.inputs() {
                below.push((input, none.clone(), false));
            }
        }
    }
    for (input, cols, restricted) in below {
        reached(input, &cols, restricted, reach)?;
    }
    plan.apply_subqueries(|sub| {
        reached(sub, &none, false, reach)?;
        Ok(TreeNodeRecursion::Jump)
    })?;
    Ok(())
}

/// True when the plan holds a filter or aggregation of its own (its size
/// is bounded by something other than its inputs' product).
fn reduced(plan: &LogicalPlan) -> Result<bool> {
    plan.exists(|n| {
        Ok(match n {
            LogicalPlan::Filter(_) | LogicalPlan::Aggregate(_) | LogicalPlan::Distinct(_) => true,
            LogicalPlan::TableScan(t) => !t.filters.is_empty(),
            _ => false,
        })
    })
}

fn is_subquery(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Exists(_) | Expr::InSubquery(_) | Expr::ScalarSubquery(_)
    )
}

/// True when every run of the plan gives the same rows: no volatile
/// function, no window (ties may be numbered either way), no `LIMIT`, no
/// recursive query's work table. Such a plan referred to twice is always
/// computed once, as PostgreSQL computes a CTE once; a plan read twice by
/// design (the halves of a split `EXISTS`) must be one.
pub fn repeatable(plan: &LogicalPlan) -> Result<bool> {
    let mut ok = true;
    plan.apply_with_subqueries(|n| {
        let work_table = matches!(n, LogicalPlan::TableScan(t)
            if datafusion::datasource::source_as_provider(&t.source)
                .is_ok_and(|p| p.is::<datafusion::datasource::cte_worktable::CteWorkTable>()));
        if work_table
            || matches!(n, LogicalPlan::Limit(_) | LogicalPlan::Window(_))
            || n.expressions().iter().any(Expr::is_volatile)
        {
            ok = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(ok)
}

/// True when `plan` does real work over stored data and computing it once
/// gives every occurrence the same rows.
fn shareable(plan: &LogicalPlan) -> Result<bool> {
    let (mut work, mut data, mut ok) = (false, false, true);
    plan.apply_with_subqueries(|n| {
        match n {
            _ if SharedPlan::of(n).is_some() => {
                data = true;
                return Ok(TreeNodeRecursion::Jump);
            }
            LogicalPlan::TableScan(_) => data = true,
            LogicalPlan::Filter(_)
            | LogicalPlan::Join(_)
            | LogicalPlan::Aggregate(_)
            | LogicalPlan::Window(_)
            | LogicalPlan::Distinct(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Unnest(_) => work = true,
            LogicalPlan::Extension(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Ddl(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::Explain(_)
            | LogicalPlan::Analyze(_)
            | LogicalPlan::DescribeTable(_)
            | LogicalPlan::RecursiveQuery(_) => ok = false,
            _ => {}
        }
        if n.expressions().iter().any(Expr::is_volatile) {
            ok = false;
        }
        Ok(if ok {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    })?;
    // Outer references of the subtree's own nodes tie it to one row of an
    // enclosing query; those inside its subqueries may point into it.
    plan.apply(|n| {
        if n.expressions().iter().any(Expr::contains_outer) {
            ok = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(ok && work && data)
}

struct Sharer {
    counts: HashMap<LogicalPlan, usize>,
    reach: HashMap<LogicalPlan, Reach>,
    done: HashMap<LogicalPlan, LogicalPlan>,
}

impl Sharer {
    /// False when filters reach into every occurrence, or restrict through
    /// joins every occurrence of a join that reduces nothing by itself.
    fn worth_sharing(&self, plan: &LogicalPlan, count: usize) -> Result<bool> {
        let r = self.reach.get(plan).copied().unwrap_or_default();
        if r.filtered >= count {
            return Ok(false);
        }
        Ok(r.filtered + r.restricted < count || reduced(plan)?)
    }

    fn rewrite(&mut self, plan: LogicalPlan) -> Result<LogicalPlan> {
        if SharedPlan::of(&plan).is_some() {
            return Ok(plan);
        }
        // A subquery expression must keep its Subquery node; its plan may be shared.
        let count = self.counts.get(&plan).copied().unwrap_or(0);
        if !matches!(plan, LogicalPlan::Subquery(_))
            && count >= 2
            && (self.worth_sharing(&plan, count)? || !repeatable(&plan)?)
            && shareable(&plan)?
        {
            if let Some(node) = self.done.get(&plan) {
                return Ok(node.clone());
            }
            let key = plan.clone();
            let node = SharedPlan::wrap(self.children(plan)?);
            self.done.insert(key, node.clone());
            return Ok(node);
        }
        self.children(plan)
    }

    fn children(&mut self, plan: LogicalPlan) -> Result<LogicalPlan> {
        let subquery = matches!(plan, LogicalPlan::Subquery(_));
        let plan = plan
            .map_children(|c| {
                let c = self.rewrite(c)?;
                // Subquery rules read the subquery's output from its top node.
                if subquery && SharedPlan::of(&c).is_some() {
                    let columns = c.schema().columns().into_iter().map(Expr::Column);
                    return Ok(Transformed::yes(LogicalPlan::Projection(
                        Projection::try_new(columns.collect(), Arc::new(c))?,
                    )));
                }
                Ok(Transformed::yes(c))
            })?
            .data;
        Ok(plan
            .map_subqueries(|s| Ok(Transformed::yes(self.rewrite(s)?)))?
            .data)
    }
}

/// Removes shared nodes left with one occurrence (a subtree repeated only
/// inside another shared subtree, which now runs once).
fn unwrap_single(plan: LogicalPlan) -> Result<LogicalPlan> {
    let mut uses: HashMap<u64, usize> = HashMap::new();
    plan.apply_with_subqueries(|n| {
        if let Some(s) = SharedPlan::of(n) {
            let count = uses.entry(s.id).or_default();
            *count += 1;
            if *count > 1 {
                return Ok(TreeNodeRecursion::Jump);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    if uses.values().all(|&c| c > 1) {
        return Ok(plan);
    }
    Ok(plan
        .transform_down_with_subqueries(|n| match SharedPlan::of(&n) {
            Some(s) if uses.get(&s.id) == Some(&1) => {
                Ok(Transformed::yes(s.input.as_ref().clone()))
            }
            _ => Ok(Transformed::no(n)),
        })?
        .data)
}

/// The query planner of Tsunagu sessions: DataFusion's, with shared nodes
/// planned onto one [`SharedExec`] state per query.
#[derive(Debug, Default)]
pub struct SharingQueryPlanner;

#[async_trait]
impl QueryPlanner for SharingQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn datafusion::catalog::Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let shared = Arc::new(SharedPlanner::default());
        DefaultPhysicalPlanner::with_extension_planners(vec![shared])
            .create_physical_plan(logical_plan, session)
            .await
    }
}

/// Plans the shared nodes of one query.
#[derive(Debug, Default)]
struct SharedPlanner {
    runs: std::sync::Mutex<HashMap<u64, Arc<exec::SharedRun>>>,
}

#[async_trait]
impl ExtensionPlanner for SharedPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn datafusion::catalog::Session,
        _planning_ctx: &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(shared) = node.as_any().downcast_ref::<SharedPlan>() else {
            return Ok(None);
        };
        let [input] = physical_inputs else {
            return internal_err!("SharedPlan takes exactly one input");
        };
        let run = self
            .runs
            .lock()
            .map_err(|_| datafusion::common::DataFusionError::Internal("shared plans".into()))?
            .entry(shared.id)
            .or_insert_with(|| Arc::new(exec::SharedRun::new(shared.id)))
            .clone();
        Ok(Some(Arc::new(SharedExec::new(input.clone(), run))))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::physical_plan::collect;
    use datafusion::prelude::SessionContext;

    use super::{SharedExec, install};

    /// 200,000 rows: person 0..20,000, value 0..199,999.
    fn table() -> Arc<MemTable> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("person_id", DataType::Int64, false),
            Field::new("value", DataType::Int64, false),
        ]));
        let batches = (0..20)
            .map(|b| {
                let values: Vec<i64> = (b * 10_000..(b + 1) * 10_000).collect();
                let persons: Vec<i64> = values.iter().map(|v| v % 20_000).collect();
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(Int64Array::from(persons)),
                        Arc::new(Int64Array::from(values)),
                    ],
                )
                .unwrap()
            })
            .collect();
        Arc::new(MemTable::try_new(schema, vec![batches]).unwrap())
    }

    fn context(shared: bool, memory_limit: Option<usize>) -> SessionContext {
        let mut runtime = RuntimeEnvBuilder::new();
        if let Some(limit) = memory_limit {
            runtime = runtime.with_memory_limit(limit, 1.0);
        }
        let mut state = SessionStateBuilder::new()
            .with_default_features()
            .with_runtime_env(runtime.build_arc().unwrap());
        if shared {
            state = install(state);
        }
        let ctx = SessionContext::new_with_state(state.build());
        ctx.register_table("t", table()).unwrap();
        ctx
    }

    /// Runs `sql`, returning the sorted rows and the SharedExec nodes.
    async fn run(ctx: &SessionContext, sql: &str) -> (String, Vec<(u64, usize, usize)>) {
        let plan = ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let batches = collect(plan.clone(), ctx.task_ctx()).await.unwrap();
        let mut shared = Vec::new();
        let mut stack = vec![plan];
        while let Some(p) = stack.pop() {
            if let Some(s) = p.downcast_ref::<SharedExec>() {
                let m = p.metrics().unwrap();
                shared.push((
                    s.id(),
                    m.spill_count().unwrap_or(0),
                    m.spilled_rows().unwrap_or(0),
                ));
            }
            stack.extend(p.children().into_iter().cloned());
        }
        let text = pretty_format_batches(&batches).unwrap().to_string();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort();
        (lines.join("\n"), shared)
    }

    const REPEATED: &str = "
        WITH busy AS (
            SELECT person_id, count(*) AS n, sum(value) AS total
              FROM t WHERE value % 3 <> 0 GROUP BY person_id
        )
        SELECT 'all' AS part, count(*) AS persons, sum(total) AS total FROM busy
        UNION ALL
        SELECT 'many', count(*), sum(total) FROM busy WHERE n >= 7
        UNION ALL
        SELECT 'few', (SELECT count(*) FROM busy WHERE n < 7), NULL";

    /// Two calls of one table function scan tables of the same name; their
    /// equal-looking aggregates are different subplans (the sums are
    /// computed by hand: 1 + ... + n = n(n + 1)/2).
    #[tokio::test]
    async fn table_function_calls_with_different_arguments_are_not_shared() {
        let ctx = context(true, None);
        let (rows, shared) = run(
            &ctx,
            "SELECT a.s AS a, b.s AS b \
             FROM (SELECT sum(value) AS s FROM generate_series(1, 1000)) a, \
                  (SELECT sum(value) AS s FROM generate_series(1, 2000)) b",
        )
        .await;
        assert!(rows.contains("| 500500 | 2001000 |"), "{rows}");
        assert!(shared.is_empty());
        // The same call twice is still computed once.
        let (rows, shared) = run(
            &ctx,
            "WITH g AS (SELECT sum(value) AS s FROM generate_series(1, 1000)) \
             SELECT a.s AS a, b.s AS b FROM g a, g b",
        )
        .await;
        assert!(rows.contains("| 500500 | 500500 |"), "{rows}");
        assert_eq!(shared.len(), 2, "{shared:?}");
    }

    #[tokio::test]
    async fn a_repeated_cte_runs_once_and_gives_the_same_answer() {
        let (plain, none) = run(&context(false, None), REPEATED).await;
        let (shared, nodes) = run(&context(true, None), REPEATED).await;
        assert!(none.is_empty());
        assert_eq!(plain, shared);
        assert!(plain.contains("| all  | 20000"), "{plain}");
        // Three occurrences of one shared subplan.
        assert_eq!(nodes.len(), 3, "{nodes:?}");
        assert!(nodes.iter().all(|n| n.0 == nodes[0].0));
    }

    /// A shared join (whose build side runs once per plan) read by two
    /// occurrences, and a shared aggregate by person joined with itself on
    /// the person (its partitions read as the aggregate left them): the
    /// answers of the same plans without sharing.
    #[tokio::test]
    async fn shared_joins_and_partitioned_results_give_the_unshared_answers() {
        for sql in [
            "WITH j AS (SELECT a.person_id, a.value FROM t a
                          JOIN (SELECT person_id FROM t WHERE value < 50) b ON a.person_id = b.person_id
                         WHERE a.value % 5 = 0)
             SELECT count(*), sum(value) FROM j
             UNION ALL SELECT count(DISTINCT person_id), max(value) FROM j",
            "WITH g AS (SELECT person_id, count(*) AS n, sum(value) AS s
                          FROM t WHERE value % 3 <> 0 GROUP BY person_id)
             SELECT count(*), sum(a.s - b.n) FROM g a JOIN g b ON a.person_id = b.person_id",
        ] {
            let (plain, none) = run(&context(false, None), sql).await;
            let (shared, nodes) = run(&context(true, None), sql).await;
            assert!(none.is_empty());
            assert!(nodes.len() >= 2, "{sql}: {nodes:?}");
            assert_eq!(plain, shared, "{sql}");
        }
    }

    #[tokio::test]
    async fn a_shared_result_larger_than_its_memory_share_spills_to_disk() {
        let sql = "
            WITH kept AS (SELECT person_id, value FROM t WHERE value % 2 = 0)
            SELECT count(*), sum(value) FROM kept
            UNION ALL SELECT count(DISTINCT person_id), sum(value) FROM kept WHERE value > 1000";
        let (plain, _) = run(&context(false, None), sql).await;
        let (shared, nodes) = run(&context(true, Some(2 << 20)), sql).await;
        assert_eq!(plain, shared);
        assert!(plain.contains("| 100000   | 9999900000 "), "{plain}");
        assert!(!nodes.is_empty());
        let spilled: usize = nodes.iter().map(|n| n.2).sum();
        assert!(spilled > 0, "{nodes:?}");
    }

    #[tokio::test]
    async fn volatile_and_cheap_repeats_are_not_shared() {
        let volatile = "WITH r AS (SELECT value FROM t WHERE value < 10 AND random() >= 0)
                        SELECT count(*) FROM r UNION ALL SELECT count(*) FROM r";
        let (_, nodes) = run(&context(true, None), volatile).await;
        assert!(nodes.is_empty(), "{nodes:?}");
        let scan = "WITH s AS (SELECT value FROM t)
                    SELECT count(*) FROM s UNION ALL SELECT sum(value) FROM s";
        let (_, nodes) = run(&context(true, None), scan).await;
        assert!(nodes.is_empty(), "{nodes:?}");
    }

    /// Filters that cannot reach a repeated CTE leave it shared; a CTE
    /// numbering rows is computed once however it is filtered.
    #[tokio::test]
    async fn filters_elsewhere_and_numbered_rows_keep_sharing() {
        let elsewhere = "WITH c AS (SELECT a.person_id FROM t a JOIN t b ON a.person_id = b.person_id
                                     WHERE b.value > 2)
                         SELECT count(*) FROM c JOIN t p ON p.person_id = c.person_id WHERE p.value = 1
                         UNION ALL
                         SELECT count(*) FROM c JOIN t p ON p.person_id = c.person_id WHERE p.value = 3";
        let (rows, nodes) = run(&context(true, None), elsewhere).await;
        assert!(!nodes.is_empty(), "not shared");
        assert_eq!(rows, run(&context(false, None), elsewhere).await.0);
        let numbered = "WITH x AS (SELECT person_id, value, row_number() OVER (ORDER BY value) AS rn
                                     FROM t a JOIN t b USING (person_id, value))
                        SELECT count(*) FROM x a JOIN x b ON a.rn = b.rn AND a.person_id <> b.person_id
                         WHERE a.value > 0 AND b.value > 0";
        let (rows, nodes) = run(&context(true, None), numbered).await;
        assert!(!nodes.is_empty(), "not shared");
        assert!(rows.contains("| 0 "), "{rows}");
    }

    /// A join restricted at every occurrence by differently filtered
    /// partners, and reducing nothing itself, is not shared (it would be
    /// held whole); an aggregate filtered on its results is.
    #[tokio::test]
    async fn restricted_joins_are_not_held_and_filtered_aggregates_are_shared() {
        let restricted = "WITH j AS (SELECT a.person_id, c.person_id AS other
                                       FROM t a JOIN t b ON a.person_id = b.person_id
                                       JOIN t c ON c.value = b.value)
                          SELECT count(*) FROM j WHERE other = 1
                          UNION ALL SELECT count(*) FROM j WHERE other = 2";
        let (rows, nodes) = run(&context(true, None), restricted).await;
        assert!(nodes.is_empty(), "{nodes:?}");
        assert_eq!(rows, run(&context(false, None), restricted).await.0);
        let grouped = "WITH g AS (SELECT person_id, count(*) AS n FROM t WHERE value > 0 GROUP BY person_id)
                       SELECT count(*) FROM g WHERE n > 1 UNION ALL SELECT count(*) FROM g WHERE n > 2";
        let (rows, nodes) = run(&context(true, None), grouped).await;
        assert!(!nodes.is_empty(), "not shared");
        assert_eq!(rows, run(&context(false, None), grouped).await.0);
    }

    /// A join read by two CTEs that filter it differently is not shared
    /// (each filter reaches the scans); the answer is the same.
    #[tokio::test]
    async fn a_join_filtered_differently_is_not_shared() {
        let sql = "WITH j AS (SELECT a.person_id, a.value, b.value AS other
                                FROM t a JOIN t b ON a.person_id = b.person_id)
                   SELECT count(*) FROM j WHERE value = 1
                   UNION ALL SELECT count(*) FROM j WHERE other = 2";
        let (rows, nodes) = run(&context(true, None), sql).await;
        assert!(nodes.is_empty(), "{nodes:?}");
        assert_eq!(rows, run(&context(false, None), sql).await.0);
    }
}
