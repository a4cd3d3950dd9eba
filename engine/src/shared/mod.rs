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
use datafusion::common::{DFSchemaRef, Result, internal_err};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{
    Extension, LogicalPlan, Projection, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
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

    fn of(plan: &LogicalPlan) -> Option<&SharedPlan> {
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
fn occurrences(plan: &LogicalPlan) -> Result<HashMap<LogicalPlan, usize>> {
    let mut counts: HashMap<LogicalPlan, usize> = HashMap::new();
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
            *counts.entry(n.clone()).or_default() += 1;
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(counts)
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
    done: HashMap<LogicalPlan, LogicalPlan>,
}

impl Sharer {
    fn rewrite(&mut self, plan: LogicalPlan) -> Result<LogicalPlan> {
        if SharedPlan::of(&plan).is_some() {
            return Ok(plan);
        }
        // A subquery expression must keep its Subquery node; its plan may be shared.
        if !matches!(plan, LogicalPlan::Subquery(_))
            && self.counts.get(&plan).copied().unwrap_or(0) >= 2
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
