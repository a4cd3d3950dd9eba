//! The analyst's plan, node by node: which relations hold person-level rows,
//! which operations stay within each person, and where an aggregate across
//! persons is released.

use std::cell::Cell;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, JoinType, Result as DfResult};
use datafusion::logical_expr::expr::{Exists, InSubquery, SetComparison};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::{conjunction, split_conjunction_owned};
use datafusion::logical_expr::{
    Aggregate, BinaryExpr, Distinct, DistinctOn, Expr, Filter, Join, LogicalPlan,
    LogicalPlanBuilder, Operator, Projection, Subquery, SubqueryAlias, TableScan, Union, Window,
};

use super::release::{self, Masks};
use super::{Policy, Refusal, TableRole};
use datafusion::arrow::datatypes::DataType;
use tsunagu_udfs::Disclosure;

/// What a relation's rows are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Reference data or released aggregates: free to use.
    Open,
    /// Rows that each belong to one person.
    Person,
    /// Rows of one person only: those of the enclosing query's current row.
    Bound,
}

/// A relation as the layer sees it.
#[derive(Debug, Clone)]
pub(super) struct Rel {
    kind: Kind,
    /// Positions of columns holding the person's `person_id`.
    persons: Vec<usize>,
    /// Positions of other person identifiers (`person_key`, outer-joined ids).
    keys: Vec<usize>,
    /// The person column was added by the layer, not selected by the query.
    hidden: bool,
}

impl Rel {
    fn open() -> Rel {
        Rel {
            kind: Kind::Open,
            persons: vec![],
            keys: vec![],
            hidden: false,
        }
    }

    fn is_open(&self) -> bool {
        self.kind == Kind::Open
    }
}

/// The identifier columns visible to expressions of one node.
struct Scope<'a> {
    schema: &'a DFSchema,
    persons: Vec<Column>,
    keys: Vec<Column>,
    outer: Option<&'a Outer>,
}

/// The enclosing query of a subquery.
#[derive(Debug, Clone, Default)]
struct Outer {
    /// Person columns of the enclosing row.
    persons: Vec<Column>,
    /// Every identifier of every enclosing level.
    ids: Vec<Column>,
}

/// Where an expression sits: whether a bare identifier column may appear there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pos {
    Free,
    Closed,
}

fn columns(schema: &DFSchema, at: &[usize]) -> Vec<Column> {
    at.iter()
        .filter(|&&i| i < schema.fields().len())
        .map(|&i| Column::from(schema.qualified_field(i)))
        .collect()
}

fn position(schema: &DFSchema, c: &Column) -> Option<usize> {
    schema.index_of_column(c).ok()
}

fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => strip(&a.expr),
        e => e,
    }
}

/// The analyst's plan rewriter.
pub(super) struct Walker<'a> {
    pub policy: &'a Policy,
    pub masks: Masks,
    pub hidden: Cell<usize>,
}

type Result<T> = std::result::Result<T, Refusal>;

impl From<datafusion::error::DataFusionError> for Refusal {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        Refusal::Plan(e)
    }
}

impl Walker<'_> {
    /// Rewrites a whole statement; its output must be open.
    pub fn statement(&self, plan: &LogicalPlan) -> Result<LogicalPlan> {
        let (plan, rel) = self.plan(plan, None)?;
        if !rel.is_open() {
            return Err(Refusal::rule(
                "row-level output",
                "analysts receive aggregates only, and this query returns rows of person-level tables; \
                 aggregate them across persons (for example count(DISTINCT person_id) ... GROUP BY ...)",
            ));
        }
        Ok(plan)
    }

    /// Rewrites a cohort definition; its output must be person-level rows.
    pub fn cohort(&self, plan: &LogicalPlan) -> Result<LogicalPlan> {
        let (plan, rel) = self.plan(plan, None)?;
        if rel.kind != Kind::Person || rel.hidden {
            return Err(Refusal::rule(
                "cohort definition",
                "a cohort is defined by a query returning person_id from person-level tables",
            ));
        }
        Ok(plan)
    }

    fn plan(&self, plan: &LogicalPlan, outer: Option<&Outer>) -> Result<(LogicalPlan, Rel)> {
        match plan {
            LogicalPlan::TableScan(scan) => self.scan(scan),
            LogicalPlan::Values(v) => {
                if v.schema.fields().iter().any(|f| is_binary(f.data_type())) {
                    return Err(bitmap_refusal());
                }
                Ok((plan.clone(), Rel::open()))
            }
            LogicalPlan::EmptyRelation(_) | LogicalPlan::DescribeTable(_) => {
                Ok((plan.clone(), Rel::open()))
            }
            LogicalPlan::Projection(p) => self.projection(p, outer),
            LogicalPlan::Filter(f) => self.filter(f, outer),
            LogicalPlan::Join(j) => self.join(j, &[], outer),
            LogicalPlan::Aggregate(a) => self.aggregate(a, outer),
            LogicalPlan::Window(w) => self.window(w, outer),
            LogicalPlan::SubqueryAlias(s) if is_store_view(&s.input) => {
                self.table(&s.alias, s.schema.as_ref(), plan.clone(), None)
            }
            LogicalPlan::SubqueryAlias(s) => {
                let (input, rel) = self.plan(&s.input, outer)?;
                let plan = LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(
                    Arc::new(input),
                    s.alias.clone(),
                )?);
                Ok((plan, rel))
            }
            LogicalPlan::Subquery(s) => {
                let (input, rel) = self.plan(&s.subquery, outer)?;
                let plan = LogicalPlan::Subquery(Subquery {
                    subquery: Arc::new(input),
                    outer_ref_columns: s.outer_ref_columns.clone(),
                    spans: s.spans.clone(),
                });
                Ok((plan, rel))
            }
            LogicalPlan::Sort(s) => {
                let (input, rel) = self.plan(&s.input, outer)?;
                if rel.kind == Kind::Person && s.fetch.is_some() {
                    return Err(limit_refusal());
                }
                let scope = self.scope(input.schema(), &rel, outer);
                let mut exprs = Vec::new();
                for e in plan.expressions() {
                    exprs.push(self.expr(e, &scope, Pos::Free)?);
                }
                Ok((plan.with_new_exprs(exprs, vec![input])?, rel))
            }
            LogicalPlan::Limit(l) => {
                let (input, rel) = self.plan(&l.input, outer)?;
                if rel.kind == Kind::Person {
                    return Err(limit_refusal());
                }
                Ok((plan.with_new_exprs(plan.expressions(), vec![input])?, rel))
            }
            LogicalPlan::Repartition(r) => {
                let (input, rel) = self.plan(&r.input, outer)?;
                Ok((plan.with_new_exprs(plan.expressions(), vec![input])?, rel))
            }
            LogicalPlan::Distinct(d) => self.distinct(d, outer),
            LogicalPlan::Union(u) => self.union(u, outer),
            LogicalPlan::Unnest(u) => {
                let (input, rel) = self.plan(&u.input, outer)?;
                let new = plan.with_new_exprs(plan.expressions(), vec![input.clone()])?;
                let map = |at: &[usize]| -> Vec<usize> {
                    columns(input.schema(), at)
                        .iter()
                        .filter_map(|c| position(new.schema(), c))
                        .collect()
                };
                let rel = Rel {
                    persons: map(&rel.persons),
                    keys: map(&rel.keys),
                    ..rel
                };
                if rel.kind == Kind::Person && rel.persons.is_empty() {
                    return Err(Refusal::rule(
                        "unnest",
                        "unnest over person-level rows must keep person_id",
                    ));
                }
                Ok((new, rel))
            }
            LogicalPlan::Explain(e) => {
                if e.verbose {
                    return Err(Refusal::unsupported(
                        "EXPLAIN VERBOSE",
                        "EXPLAIN VERBOSE is not available to analysts",
                    ));
                }
                let inner = self.statement(&e.plan)?;
                let plan = LogicalPlanBuilder::from(inner)
                    .explain(false, false)?
                    .build()?;
                Ok((plan, Rel::open()))
            }
            LogicalPlan::Analyze(_) => Err(Refusal::unsupported(
                "EXPLAIN ANALYZE",
                "EXPLAIN ANALYZE is not available to analysts: its row counts are not released aggregates",
            )),
            LogicalPlan::Statement(s) => {
                use datafusion::logical_expr::Statement as S;
                match s {
                    S::TransactionStart(_) | S::TransactionEnd(_) => {
                        Ok((plan.clone(), Rel::open()))
                    }
                    S::SetVariable(_) | S::ResetVariable(_) => Err(Refusal::rule(
                        "settings",
                        "analysts cannot change engine settings",
                    )),
                    _ => Err(Refusal::unsupported(
                        "prepared statements",
                        "SQL-level PREPARE/EXECUTE is not available to analysts; use the protocol's prepared statements",
                    )),
                }
            }
            LogicalPlan::Dml(_) | LogicalPlan::Ddl(_) | LogicalPlan::Copy(_) => Err(Refusal::rule(
                "writes",
                "writes, COPY and DDL are not available to analysts",
            )),
            LogicalPlan::RecursiveQuery(_) => Err(Refusal::unsupported(
                "recursive query",
                "recursive queries are not available to analysts",
            )),
            LogicalPlan::Extension(_) => Err(Refusal::unsupported(
                "extension",
                "this statement is not available to analysts",
            )),
        }
    }

    fn scope<'s>(&self, schema: &'s DFSchema, rel: &Rel, outer: Option<&'s Outer>) -> Scope<'s> {
        Scope {
            schema,
            persons: columns(schema, &rel.persons),
            keys: columns(schema, &rel.keys),
            outer,
        }
    }

    fn scan(&self, scan: &TableScan) -> Result<(LogicalPlan, Rel)> {
        if scan.fetch.is_some() {
            return Err(limit_refusal());
        }
        if scan.table_name.catalog() == Some(tsunagu_catalog::views::FILES_CATALOG) {
            return Err(Refusal::rule(
                "hidden table",
                "delivered files are read through the store's schemas only",
            ));
        }
        // A table function's scan is named `name()`: only classified ones.
        if scan.table_name.schema().is_none()
            && let Some(function) = scan.table_name.table().strip_suffix("()")
        {
            match super::functions::table(&function.to_ascii_lowercase()) {
                None => return Err(unclassified(function)),
                Some(Disclosure::Refused(why)) => {
                    return Err(Refusal::rule(
                        "function",
                        format!("{function}() is not available to analysts: {why}"),
                    ));
                }
                Some(_) => {}
            }
        }
        let full = DFSchema::try_from(scan.source.schema().as_ref().clone())?;
        self.table(
            &scan.table_name,
            &full,
            LogicalPlan::TableScan(scan.clone()),
            Some(scan),
        )
    }

    /// A table (a scan, or a store view inlined by the planner) by its role.
    fn table(
        &self,
        name: &datafusion::common::TableReference,
        full: &DFSchema,
        plan: LogicalPlan,
        scan: Option<&TableScan>,
    ) -> Result<(LogicalPlan, Rel)> {
        let shown = name.to_string();
        match self.policy.table_role(name, full) {
            TableRole::Hidden => Err(Refusal::rule(
                "hidden table",
                format!("table {shown} is not available to analysts"),
            )),
            TableRole::Public => {
                if name.table() == "cohorts" && name.schema().is_none_or(|s| s == "public") {
                    return Ok((self.mask_cohort_sizes(plan, scan)?, Rel::open()));
                }
                Ok((plan, Rel::open()))
            }
            TableRole::Person => {
                let Some(pid) = full
                    .fields()
                    .iter()
                    .position(|f| f.name() == super::PERSON_ID)
                else {
                    return Err(Refusal::rule(
                        "person-level table",
                        format!("table {shown} is person-level but has no person_id column"),
                    ));
                };
                let mut plan = plan;
                let mut hidden = false;
                if let Some(scan) = scan
                    && let Some(p) = &scan.projection
                    && !p.contains(&pid)
                {
                    let mut p = p.clone();
                    p.push(pid);
                    #[allow(deprecated)]
                    let rebuilt = TableScan::try_new(
                        scan.table_name.clone(),
                        scan.source.clone(),
                        Some(p),
                        scan.filters.clone(),
                        None,
                    )?;
                    plan = LogicalPlan::TableScan(rebuilt);
                    hidden = true;
                }
                let schema = plan.schema().clone();
                let at = |name: &str| -> Vec<usize> {
                    schema
                        .fields()
                        .iter()
                        .enumerate()
                        .filter(|(_, f)| f.name() == name)
                        .map(|(i, _)| i)
                        .collect()
                };
                // Identifiers by where they come from: the table's person
                // key, its record key (its first column, when that is an
                // `_id` other than a concept), and the record identifiers
                // of the CDM and of the policy.
                let record_key = full
                    .fields()
                    .first()
                    .map(|f| f.name().as_str())
                    .filter(|n| {
                        n.ends_with("_id") && *n != super::PERSON_ID && !n.ends_with("_concept_id")
                    });
                let mut keys = at(super::PERSON_KEY);
                keys.extend(
                    schema
                        .fields()
                        .iter()
                        .enumerate()
                        .filter(|(_, f)| {
                            Some(f.name().as_str()) == record_key
                                || self.policy.is_identifier(name, f.name())
                        })
                        .map(|(i, _)| i),
                );
                let rel = Rel {
                    kind: Kind::Person,
                    persons: at(super::PERSON_ID),
                    keys,
                    hidden,
                };
                Ok((plan, rel))
            }
        }
    }

    /// The `cohorts` table as analysts see it: sizes released like counts of
    /// their person sets.
    fn mask_cohort_sizes(
        &self,
        plan: LogicalPlan,
        scan: Option<&TableScan>,
    ) -> Result<LogicalPlan> {
        let refuse =
            || Refusal::unsupported("cohorts", "the cohorts table cannot be read this way");
        let scan = scan.ok_or_else(refuse)?;
        let provider = datafusion::datasource::source_as_provider(&scan.source)?;
        let Some(table) = provider
            .as_ref()
            .downcast_ref::<crate::cohorts::CohortsTable>()
        else {
            return Err(refuse());
        };
        let bitmap = datafusion::logical_expr::ScalarUDF::new_from_impl(
            crate::cohorts::CohortBitmap::new(table.store.clone(), table.viewer.clone()),
        );
        #[allow(deprecated)]
        let full = LogicalPlan::TableScan(TableScan::try_new(
            scan.table_name.clone(),
            scan.source.clone(),
            None,
            scan.filters.clone(),
            None,
        )?);
        let q = Some(scan.table_name.clone());
        let exprs = plan
            .schema()
            .fields()
            .iter()
            .map(|f| {
                if f.name() == "size" {
                    let set = bitmap.call(vec![Expr::Column(Column::new(q.clone(), "name"))]);
                    datafusion::logical_expr::cast(
                        self.masks.release_set(set),
                        f.data_type().clone(),
                    )
                    .alias_qualified(q.clone(), f.name())
                } else {
                    Expr::Column(Column::new(q.clone(), f.name()))
                }
            })
            .collect();
        Ok(LogicalPlan::Projection(Projection::try_new(
            exprs,
            Arc::new(full),
        )?))
    }

    fn projection(&self, p: &Projection, outer: Option<&Outer>) -> Result<(LogicalPlan, Rel)> {
        let (input, rel) = self.plan(&p.input, outer)?;
        let scope = self.scope(input.schema(), &rel, outer);
        let mut exprs = Vec::new();
        let mut out = Rel {
            persons: vec![],
            keys: vec![],
            hidden: false,
            ..rel.clone()
        };
        for (i, e) in p.expr.iter().enumerate() {
            let e = self.expr(e.clone(), &scope, Pos::Free)?;
            if let Expr::Column(c) = strip(&e) {
                if scope.persons.contains(c) {
                    out.persons.push(i);
                } else if scope.keys.contains(c) {
                    out.keys.push(i);
                }
            }
            exprs.push(e);
        }
        if rel.kind == Kind::Person && out.persons.is_empty() {
            let n = self.hidden.get() + 1;
            self.hidden.set(n);
            exprs.push(
                Expr::Column(scope.persons[0].clone()).alias(format!("__tsunagu_person_{n}")),
            );
            out.persons.push(exprs.len() - 1);
            out.hidden = true;
        } else if rel.hidden && out.persons.iter().all(|&i| is_hidden_name(&exprs[i])) {
            out.hidden = true;
        }
        let plan = LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(input))?);
        Ok((plan, out))
    }

    fn filter(&self, f: &Filter, outer: Option<&Outer>) -> Result<(LogicalPlan, Rel)> {
        let conjuncts = split_conjunction_owned(f.predicate.clone());
        let (input, mut rel) = match f.input.as_ref() {
            LogicalPlan::Join(j) => self.join(j, &conjuncts, outer)?,
            other => self.plan(other, outer)?,
        };
        let scope = self.scope(input.schema(), &rel, outer);
        let mut kept = Vec::new();
        let mut bound = false;
        for c in conjuncts {
            if let Some(outer) = outer
                && correlates_person(&c, &scope.persons, &outer.persons)
            {
                bound = true;
                kept.push(c);
                continue;
            }
            if equates_persons(&c, &scope.persons) || equates_records(&c, &scope.keys) {
                kept.push(c);
                continue;
            }
            kept.push(self.expr(c, &scope, Pos::Closed)?);
        }
        if bound && matches!(rel.kind, Kind::Person | Kind::Bound) {
            rel.kind = Kind::Bound;
        }
        let predicate = conjunction(kept).unwrap_or_else(|| datafusion::logical_expr::lit(true));
        let plan = LogicalPlan::Filter(Filter::try_new(predicate, Arc::new(input))?);
        Ok((plan, rel))
    }

    /// A join, with the conjuncts of a filter right above it (implicit joins).
    fn join(&self, j: &Join, above: &[Expr], outer: Option<&Outer>) -> Result<(LogicalPlan, Rel)> {
        let (left, l) = self.plan(&j.left, outer)?;
        let (right, r) = self.plan(&j.right, outer)?;
        let lw = left.schema().fields().len();
        let shift = |v: &[usize]| v.iter().map(|i| i + lw).collect::<Vec<_>>();
        let lp = columns(left.schema(), &l.persons);
        let rp = columns(right.schema(), &r.persons);
        let person_sides = [l.kind, r.kind]
            .iter()
            .filter(|k| **k != Kind::Open)
            .count();
        if person_sides == 2 {
            let mut matched = j.on.iter().any(|(a, b)| {
                matches!((strip(a), strip(b)), (Expr::Column(a), Expr::Column(b))
                    if (lp.contains(a) && rp.contains(b)) || (lp.contains(b) && rp.contains(a)))
            });
            let cross = |e: &Expr| {
                if let Expr::BinaryExpr(BinaryExpr {
                    left: a,
                    op: Operator::Eq,
                    right: b,
                }) = e
                    && let (Expr::Column(a), Expr::Column(b)) = (strip(a), strip(b))
                {
                    return (lp.contains(a) && rp.contains(b))
                        || (lp.contains(b) && rp.contains(a));
                }
                false
            };
            if !matched {
                let in_filter = j
                    .filter
                    .iter()
                    .flat_map(|f| split_conjunction_owned(f.clone()))
                    .any(|c| cross(&c));
                matched = in_filter || (j.join_type == JoinType::Inner && above.iter().any(cross));
            }
            if !matched {
                return Err(Refusal::rule(
                    "cross-person join",
                    "joins of person-level relations must match person_id (… ON a.person_id = b.person_id)",
                ));
            }
            if j.join_type == JoinType::Full {
                return Err(Refusal::unsupported(
                    "full outer join",
                    "FULL OUTER JOIN of person-level relations is not available to analysts; use LEFT JOIN or UNION ALL",
                ));
            }
        }
        // Identifiers visible to the join's own expressions: both sides,
        // whatever the join returns.
        let combined = left.schema().join(right.schema())?;
        let join_rel = Rel {
            kind: if person_sides == 0 {
                Kind::Open
            } else {
                Kind::Person
            },
            persons: l.persons.iter().copied().chain(shift(&r.persons)).collect(),
            keys: l.keys.iter().copied().chain(shift(&r.keys)).collect(),
            hidden: false,
        };
        let scope = self.scope(&combined, &join_rel, outer);
        let lscope = self.scope(left.schema(), &l, outer);
        let rscope = self.scope(right.schema(), &r, outer);
        let mut on = Vec::new();
        for (a, b) in &j.on {
            let is_match = matches!((strip(a), strip(b)), (Expr::Column(x), Expr::Column(y))
                if (lp.contains(x) && rp.contains(y)) || (lp.contains(y) && rp.contains(x)));
            let same_record = matches!((strip(a), strip(b)), (Expr::Column(x), Expr::Column(y))
                if x.name == y.name && lscope.keys.contains(x) && rscope.keys.contains(y));
            if is_match || same_record {
                on.push((a.clone(), b.clone()));
            } else {
                on.push((
                    self.expr(a.clone(), &lscope, Pos::Closed)?,
                    self.expr(b.clone(), &rscope, Pos::Closed)?,
                ));
            }
        }
        let filter = match &j.filter {
            None => None,
            Some(f) => {
                let mut kept = Vec::new();
                for c in split_conjunction_owned(f.clone()) {
                    if equates_persons(&c, &scope.persons) || equates_records(&c, &scope.keys) {
                        kept.push(c);
                    } else if let Some(o) = outer
                        && correlates_person(&c, &scope.persons, &o.persons)
                    {
                        kept.push(c);
                    } else {
                        kept.push(self.expr(c, &scope, Pos::Closed)?);
                    }
                }
                conjunction(kept)
            }
        };
        let plan = LogicalPlan::Join(Join::try_new(
            Arc::new(left),
            Arc::new(right),
            on,
            filter,
            j.join_type,
            j.join_constraint,
            j.null_equality,
            j.null_aware,
        )?);
        let kind = match (l.kind, r.kind) {
            (Kind::Open, Kind::Open) => Kind::Open,
            (Kind::Bound, _) | (_, Kind::Bound) => Kind::Bound,
            _ => Kind::Person,
        };
        let (persons, mut keys) = match j.join_type {
            JoinType::Inner => (join_rel.persons.clone(), join_rel.keys.clone()),
            JoinType::Left => (
                l.persons.clone(),
                join_rel
                    .keys
                    .iter()
                    .copied()
                    .chain(shift(&r.persons))
                    .collect(),
            ),
            JoinType::Right => (
                shift(&r.persons),
                join_rel
                    .keys
                    .iter()
                    .copied()
                    .chain(l.persons.clone())
                    .collect(),
            ),
            JoinType::Full => (
                vec![],
                join_rel
                    .persons
                    .iter()
                    .chain(&join_rel.keys)
                    .copied()
                    .collect(),
            ),
            JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => {
                (l.persons.clone(), l.keys.clone())
            }
            JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => {
                (r.persons.clone(), r.keys.clone())
            }
        };
        keys.sort_unstable();
        keys.dedup();
        if kind == Kind::Person && persons.is_empty() {
            // Only the optional side holds persons: its rows may lack one.
            return Err(Refusal::rule(
                "outer join",
                "an outer join that keeps reference rows without a person must be aggregated before person-level use; put the person-level table on the preserved side",
            ));
        }
        let rel = Rel {
            kind,
            persons,
            keys,
            hidden: l.hidden && r.hidden,
        };
        Ok((plan, rel))
    }

    fn aggregate(&self, a: &Aggregate, outer: Option<&Outer>) -> Result<(LogicalPlan, Rel)> {
        let (input, rel) = self.plan(&a.input, outer)?;
        let input = Arc::new(input);
        let scope = self.scope(input.schema(), &rel, outer);
        let mut group = Vec::new();
        let mut persons = Vec::new();
        let mut keys = Vec::new();
        for (i, g) in a.group_expr.iter().enumerate() {
            let g = self.expr(g.clone(), &scope, Pos::Free)?;
            if let Expr::Column(c) = strip(&g) {
                if scope.persons.contains(c) {
                    persons.push(i);
                } else if scope.keys.contains(c) {
                    keys.push(i);
                }
            }
            group.push(g);
        }
        let mut aggs = Vec::new();
        for e in &a.aggr_expr {
            aggs.push(self.expr(e.clone(), &scope, Pos::Free)?);
        }
        let new = Aggregate::try_new(input.clone(), group, aggs)?;
        match rel.kind {
            Kind::Open => Ok((LogicalPlan::Aggregate(new), Rel::open())),
            Kind::Bound => Ok((
                LogicalPlan::Aggregate(new),
                Rel {
                    kind: Kind::Bound,
                    persons,
                    keys,
                    hidden: false,
                },
            )),
            Kind::Person if !persons.is_empty() => Ok((
                LogicalPlan::Aggregate(new),
                Rel {
                    kind: Kind::Person,
                    persons,
                    keys,
                    hidden: false,
                },
            )),
            Kind::Person => {
                if new
                    .group_expr
                    .iter()
                    .any(|g| matches!(g, Expr::GroupingSet(_)))
                {
                    return Err(Refusal::unsupported(
                        "grouping sets",
                        "ROLLUP, CUBE and GROUPING SETS across persons are not yet released to analysts; \
                         run one query per grouping level (for example with UNION ALL)",
                    ));
                }
                if !keys.is_empty() {
                    return Err(Refusal::rule(
                        "identifier in GROUP BY",
                        "GROUP BY person_key returns one row per person; group by person_id inside the query and aggregate across persons at the end",
                    ));
                }
                for e in &new.aggr_expr {
                    if let Expr::AggregateFunction(f) = strip(e) {
                        let name = f.func.name().to_ascii_lowercase();
                        if !release::is_releasable(&name) {
                            return Err(Refusal::rule(
                                "aggregate not released",
                                format!(
                                    "{name}() across persons is not released to analysts: MIN/MAX, percentiles and value lists can reveal one person's values; \
                                     use count, sum or avg (for example count persons in bands of the value)"
                                ),
                            ));
                        }
                    }
                }
                let person = Expr::Column(scope.persons[0].clone());
                let is_id = |e: &Expr| match strip(e) {
                    Expr::Column(c) if scope.persons.contains(c) => release::IdKind::Person,
                    Expr::Column(c) if scope.keys.contains(c) => release::IdKind::Key,
                    _ => release::IdKind::Value,
                };
                match release::release(&new, person, &self.masks, &is_id) {
                    Err(message) => Err(Refusal::rule("aggregate not released", message)),
                    Ok(plan) => Ok((plan?, Rel::open())),
                }
            }
        }
    }

    fn window(&self, w: &Window, outer: Option<&Outer>) -> Result<(LogicalPlan, Rel)> {
        let (input, rel) = self.plan(&w.input, outer)?;
        let scope = self.scope(input.schema(), &rel, outer);
        let mut exprs = Vec::new();
        for e in &w.window_expr {
            if rel.kind == Kind::Person {
                let partitioned =
                    match strip(e) {
                        Expr::WindowFunction(f) => f.params.partition_by.iter().any(
                            |p| matches!(strip(p), Expr::Column(c) if scope.persons.contains(c)),
                        ),
                        _ => false,
                    };
                if !partitioned {
                    return Err(Refusal::rule(
                        "cross-person window",
                        format!(
                            "window functions over person-level rows must be PARTITION BY person_id: {}",
                            e.schema_name()
                        ),
                    ));
                }
            }
            exprs.push(self.expr(e.clone(), &scope, Pos::Free)?);
        }
        let plan = LogicalPlan::Window(Window::try_new(exprs, Arc::new(input))?);
        Ok((plan, rel))
    }

    fn distinct(&self, d: &Distinct, outer: Option<&Outer>) -> Result<(LogicalPlan, Rel)> {
        match d {
            Distinct::All(input) => {
                let (input, rel) = self.plan(input, outer)?;
                if rel.kind == Kind::Person && rel.hidden {
                    return Err(Refusal::rule(
                        "DISTINCT over persons",
                        "DISTINCT over person-level rows must keep person_id in the select list (SELECT DISTINCT person_id, ...); \
                         to count distinct values across persons use count(DISTINCT ...)",
                    ));
                }
                Ok((LogicalPlan::Distinct(Distinct::All(Arc::new(input))), rel))
            }
            Distinct::On(on) => {
                let (input, rel) = self.plan(&on.input, outer)?;
                let input = Arc::new(input);
                let scope = self.scope(input.schema(), &rel, outer);
                if rel.kind == Kind::Person
                    && !on
                        .on_expr
                        .iter()
                        .any(|e| matches!(strip(e), Expr::Column(c) if scope.persons.contains(c)))
                {
                    return Err(Refusal::rule(
                        "DISTINCT over persons",
                        "DISTINCT ON over person-level rows must include person_id",
                    ));
                }
                let mut on_expr = Vec::new();
                for e in &on.on_expr {
                    on_expr.push(self.expr(e.clone(), &scope, Pos::Free)?);
                }
                let mut select = Vec::new();
                for e in &on.select_expr {
                    select.push(self.expr(e.clone(), &scope, Pos::Free)?);
                }
                let sort = match &on.sort_expr {
                    None => None,
                    Some(s) => {
                        let mut v = Vec::new();
                        for s in s {
                            v.push(s.with_expr(self.expr(s.expr.clone(), &scope, Pos::Free)?));
                        }
                        Some(v)
                    }
                };
                let new = DistinctOn::try_new(on_expr, select.clone(), sort, input.clone())?;
                let mut out = Rel {
                    persons: vec![],
                    keys: vec![],
                    ..rel.clone()
                };
                for (i, e) in select.iter().enumerate() {
                    if let Expr::Column(c) = strip(e) {
                        if scope.persons.contains(c) {
                            out.persons.push(i);
                        } else if scope.keys.contains(c) {
                            out.keys.push(i);
                        }
                    }
                }
                if rel.kind == Kind::Person && out.persons.is_empty() {
                    return Err(Refusal::rule(
                        "DISTINCT over persons",
                        "DISTINCT ON over person-level rows must select person_id",
                    ));
                }
                Ok((LogicalPlan::Distinct(Distinct::On(new)), out))
            }
        }
    }

    fn union(&self, u: &Union, outer: Option<&Outer>) -> Result<(LogicalPlan, Rel)> {
        let mut inputs = Vec::new();
        let mut rels = Vec::new();
        for i in &u.inputs {
            let (p, r) = self.plan(i, outer)?;
            inputs.push(Arc::new(p));
            rels.push(r);
        }
        let refuse = || {
            Refusal::rule(
                "set operation over persons",
                "set operations over person-level rows must keep person_id in the same column of every branch",
            )
        };
        let first = rels[0].clone();
        let out = if rels.iter().all(Rel::is_open) {
            Rel::open()
        } else if rels.iter().all(|r| r.kind == first.kind) {
            let common: Vec<usize> = first
                .persons
                .iter()
                .copied()
                .filter(|p| rels.iter().all(|r| r.persons.contains(p)))
                .collect();
            if common.is_empty() {
                return Err(refuse());
            }
            // A column that is an identifier in any branch is one in the union.
            let mut keys: Vec<usize> = rels
                .iter()
                .flat_map(|r| r.keys.iter().chain(&r.persons).copied())
                .filter(|i| !common.contains(i))
                .collect();
            keys.sort_unstable();
            keys.dedup();
            Rel {
                kind: first.kind,
                persons: common,
                keys,
                hidden: rels.iter().any(|r| r.hidden),
            }
        } else {
            return Err(refuse());
        };
        let plan = LogicalPlan::Union(Union::try_new_with_loose_types(inputs)?);
        Ok((plan, out))
    }

    /// Rewrites a subquery of an expression in the scope of its enclosing row.
    fn subquery(&self, s: &Subquery, scope: &Scope) -> Result<(Subquery, Rel)> {
        let mut ids: Vec<Column> = scope.persons.iter().chain(&scope.keys).cloned().collect();
        if let Some(o) = scope.outer {
            ids.extend(o.ids.iter().cloned());
        }
        let outer = Outer {
            persons: scope.persons.clone(),
            ids,
        };
        let (plan, rel) = self.plan(&s.subquery, Some(&outer))?;
        if rel.kind == Kind::Person && !plan.all_out_ref_exprs().is_empty() {
            return Err(Refusal::rule(
                "correlated subquery",
                "a correlated subquery over person-level rows must match the person (… WHERE t.person_id = outer.person_id)",
            ));
        }
        Ok((
            Subquery {
                subquery: Arc::new(plan),
                outer_ref_columns: s.outer_ref_columns.clone(),
                spans: s.spans.clone(),
            },
            rel,
        ))
    }

    /// Checks and rewrites one expression: identifiers only where allowed,
    /// no functions analysts may not call, subqueries rewritten.
    fn expr(&self, e: Expr, scope: &Scope, pos: Pos) -> Result<Expr> {
        let id_refusal = |what: &str| {
            Refusal::rule(
                "person identifier in an expression",
                format!(
                    "{what} may only be selected, joined on (a.person_id = b.person_id), grouped by, tested with IS NULL, \
                     or counted (count(DISTINCT person_id)); it cannot be filtered, compared or computed with"
                ),
            )
        };
        match e {
            Expr::Column(c) => {
                let is_id = scope.persons.contains(&c) || scope.keys.contains(&c);
                if is_id && pos == Pos::Closed {
                    return Err(id_refusal(&c.name));
                }
                Ok(Expr::Column(c))
            }
            Expr::OuterReferenceColumn(f, c) => {
                if scope.outer.is_some_and(|o| o.ids.contains(&c)) && pos == Pos::Closed {
                    return Err(id_refusal(&c.name));
                }
                Ok(Expr::OuterReferenceColumn(f, c))
            }
            Expr::Alias(mut a) => {
                *a.expr = self.expr(*a.expr, scope, pos)?;
                Ok(Expr::Alias(a))
            }
            Expr::IsNull(x) => Ok(Expr::IsNull(Box::new(self.expr(*x, scope, Pos::Free)?))),
            Expr::IsNotNull(x) => Ok(Expr::IsNotNull(Box::new(self.expr(
                *x,
                scope,
                Pos::Free,
            )?))),
            Expr::ScalarFunction(mut f) => {
                let name = f.func.name().to_ascii_lowercase();
                let extra = |n: &str| self.policy.functions.get(n).copied();
                match super::functions::scalar(&name, &extra) {
                    None => return Err(unclassified(&name)),
                    Some(Disclosure::Refused(why)) => {
                        return Err(Refusal::rule(
                            "function",
                            format!("{name}() is not available to analysts: {why}"),
                        ));
                    }
                    Some(Disclosure::ConstantArguments(at)) => {
                        for &i in at {
                            if f.args.get(i).is_some_and(|a| !is_constant(a)) {
                                return Err(Refusal::rule(
                                    "function",
                                    format!(
                                        "argument {} of {name}() must be a constant: a value from the data could make it fail on that data",
                                        i + 1
                                    ),
                                ));
                            }
                        }
                    }
                    Some(Disclosure::PersonSet) => {
                        if f.args.iter().any(|a| is_constant_set(a, scope.schema)) {
                            return Err(Refusal::rule(
                                "person set",
                                format!(
                                    "{name}() takes person sets built in the query (rb_build_agg, cohort_bitmap), not constants or parameters"
                                ),
                            ));
                        }
                    }
                    Some(Disclosure::Total | Disclosure::Hardened) => {}
                }
                if name == "cohort_bitmap"
                    && let Some(bitmap) = f
                        .func
                        .inner()
                        .downcast_ref::<crate::cohorts::CohortBitmap>()
                    && let Some(Expr::Literal(datafusion::common::ScalarValue::Utf8(Some(n)), _)) =
                        f.args.first().map(strip)
                {
                    bitmap
                        .check(n)
                        .map_err(|e| Refusal::rule("cohort owner", e.to_string()))?;
                }
                let free_arg = if name == "rb_contains" { Some(1) } else { None };
                if name == "rb_contains" && !f.args.get(1).is_some_and(|a| is_person(a, scope)) {
                    return Err(Refusal::rule(
                        "person set",
                        "rb_contains(bitmap, person_id) tests the person of the current row; it cannot probe other values",
                    ));
                }
                let mut args = Vec::new();
                for (i, a) in f.args.into_iter().enumerate() {
                    let p = if Some(i) == free_arg {
                        Pos::Free
                    } else {
                        Pos::Closed
                    };
                    if !name.starts_with("rb_") && is_bitmap(&a, scope.schema) {
                        return Err(bitmap_refusal());
                    }
                    args.push(self.expr(a, scope, p)?);
                }
                f.args = args;
                Ok(Expr::ScalarFunction(f))
            }
            Expr::AggregateFunction(mut f) => {
                let name = f.func.name().to_ascii_lowercase();
                match super::functions::aggregate(&name) {
                    None => return Err(unclassified(&name)),
                    Some(Disclosure::Refused(why)) => {
                        return Err(Refusal::rule(
                            "function",
                            format!("{name}() is not available to analysts: {why}"),
                        ));
                    }
                    Some(Disclosure::PersonSet)
                        if name != "rb_build_agg"
                            && f.params
                                .args
                                .iter()
                                .any(|a| is_constant_set(a, scope.schema)) =>
                    {
                        return Err(bitmap_refusal());
                    }
                    _ => {}
                }
                if name == "rb_build_agg"
                    && !f.params.args.first().is_some_and(|a| is_person(a, scope))
                {
                    return Err(Refusal::rule(
                        "person set",
                        "rb_build_agg builds person sets from person_id only",
                    ));
                }
                let free = matches!(name.as_str(), "count" | "approx_distinct" | "rb_build_agg");
                let mut args = Vec::new();
                for a in f.params.args {
                    if !name.starts_with("rb_") && is_bitmap(&a, scope.schema) {
                        return Err(bitmap_refusal());
                    }
                    args.push(self.expr(a, scope, if free { Pos::Free } else { Pos::Closed })?);
                }
                f.params.args = args;
                if let Some(filter) = f.params.filter.take() {
                    f.params.filter = Some(Box::new(self.expr(*filter, scope, Pos::Closed)?));
                }
                let mut order = Vec::new();
                for s in f.params.order_by {
                    let e = self.expr(s.expr.clone(), scope, Pos::Closed)?;
                    order.push(s.with_expr(e));
                }
                f.params.order_by = order;
                Ok(Expr::AggregateFunction(f))
            }
            Expr::WindowFunction(mut w) => {
                let name = w.fun.name().to_ascii_lowercase();
                match super::functions::window(&name) {
                    None => return Err(unclassified(&name)),
                    Some(Disclosure::Refused(why)) => {
                        return Err(Refusal::rule(
                            "function",
                            format!("{name}() is not available to analysts: {why}"),
                        ));
                    }
                    _ => {}
                }
                let mut args = Vec::new();
                for a in std::mem::take(&mut w.params.args) {
                    args.push(self.expr(a, scope, Pos::Closed)?);
                }
                w.params.args = args;
                let mut part = Vec::new();
                for a in std::mem::take(&mut w.params.partition_by) {
                    part.push(self.expr(a, scope, Pos::Free)?);
                }
                w.params.partition_by = part;
                let mut order = Vec::new();
                for s in std::mem::take(&mut w.params.order_by) {
                    let e = self.expr(s.expr.clone(), scope, Pos::Free)?;
                    order.push(s.with_expr(e));
                }
                w.params.order_by = order;
                if let Some(filter) = w.params.filter.take() {
                    w.params.filter = Some(Box::new(self.expr(*filter, scope, Pos::Closed)?));
                }
                Ok(Expr::WindowFunction(w))
            }
            Expr::InSubquery(InSubquery {
                expr,
                subquery,
                negated,
            }) => {
                let (subquery, rel) = self.subquery(&subquery, scope)?;
                let expr = match rel.kind {
                    Kind::Person => {
                        let ok = matches!(strip(&expr), Expr::Column(c) if scope.persons.contains(c))
                            && rel.persons.contains(&0)
                            && !rel.hidden;
                        if !ok {
                            return Err(Refusal::rule(
                                "subquery over persons",
                                "IN (subquery over person-level rows) must compare person_id with person_id (… WHERE person_id IN (SELECT person_id FROM …))",
                            ));
                        }
                        *expr
                    }
                    _ => self.expr(*expr, scope, Pos::Closed)?,
                };
                Ok(Expr::InSubquery(InSubquery::new(
                    Box::new(expr),
                    subquery,
                    negated,
                )))
            }
            Expr::Exists(Exists { subquery, negated }) => {
                let (subquery, rel) = self.subquery(&subquery, scope)?;
                if rel.kind == Kind::Person {
                    return Err(Refusal::rule(
                        "subquery over persons",
                        "EXISTS over person-level rows must be correlated on the person (… WHERE t.person_id = outer.person_id)",
                    ));
                }
                Ok(Expr::Exists(Exists { subquery, negated }))
            }
            Expr::ScalarSubquery(s) => {
                let (subquery, rel) = self.subquery(&s, scope)?;
                if rel.kind == Kind::Person {
                    return Err(Refusal::rule(
                        "subquery over persons",
                        "a scalar subquery over person-level rows must aggregate across persons or be correlated on the person",
                    ));
                }
                Ok(Expr::ScalarSubquery(subquery))
            }
            Expr::SetComparison(SetComparison {
                expr,
                subquery,
                op,
                quantifier,
            }) => {
                let (subquery, rel) = self.subquery(&subquery, scope)?;
                if rel.kind == Kind::Person {
                    return Err(Refusal::rule(
                        "subquery over persons",
                        "ANY/ALL over person-level rows is not available to analysts",
                    ));
                }
                let expr = self.expr(*expr, scope, Pos::Closed)?;
                Ok(Expr::SetComparison(SetComparison {
                    expr: Box::new(expr),
                    subquery,
                    op,
                    quantifier,
                }))
            }
            other => {
                let mut failure = None;
                let out = other
                    .map_children(|child| {
                        if failure.is_some() {
                            return Ok(Transformed::no(child));
                        }
                        if is_bitmap(&child, scope.schema) {
                            failure = Some(bitmap_refusal());
                            return Ok(Transformed::no(child));
                        }
                        match self.expr(child.clone(), scope, Pos::Closed) {
                            Ok(e) => Ok(Transformed::yes(e)),
                            Err(r) => {
                                failure = Some(r);
                                Ok(Transformed::no(child))
                            }
                        }
                    })
                    .map_err(Refusal::Plan)?;
                match failure {
                    Some(r) => Err(r),
                    None => Ok(out.data),
                }
            }
        }
    }
}

/// A store table as the SQL planner inlines it: a plan over delivered files
/// only, with no alias inside (queries always reach files through such views).
fn is_store_view(plan: &LogicalPlan) -> bool {
    let mut files = false;
    let mut other = false;
    let _ = plan.apply(|node| {
        match node {
            LogicalPlan::TableScan(t) => {
                if t.table_name.catalog() == Some(tsunagu_catalog::views::FILES_CATALOG) {
                    files = true;
                } else {
                    other = true;
                }
            }
            LogicalPlan::SubqueryAlias(_) | LogicalPlan::Aggregate(_) => other = true,
            _ => {}
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    files && !other
}

/// A bare person column of the current row (or of the enclosing row).
fn is_person(e: &Expr, scope: &Scope) -> bool {
    match strip(e) {
        Expr::Column(c) => scope.persons.contains(c),
        Expr::OuterReferenceColumn(_, c) => scope.outer.is_some_and(|o| o.persons.contains(c)),
        _ => false,
    }
}

fn is_hidden_name(e: &Expr) -> bool {
    match e {
        Expr::Alias(a) => a.name.starts_with("__tsunagu_person"),
        Expr::Column(c) => c.name.starts_with("__tsunagu_person"),
        _ => false,
    }
}

/// Whether an expression's value is a person set (a bitmap).
fn is_bitmap(e: &Expr, schema: &DFSchema) -> bool {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::logical_expr::ExprSchemable;
    if matches!(e, Expr::Literal(..) | Expr::Placeholder(_)) {
        return false;
    }
    matches!(
        e.get_type(schema),
        Ok(DataType::Binary | DataType::LargeBinary | DataType::BinaryView)
    )
}

fn is_binary(t: &datafusion::arrow::datatypes::DataType) -> bool {
    use datafusion::arrow::datatypes::DataType;
    matches!(
        t,
        DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_)
    )
}

/// A person set given as a constant or a parameter, not built in the query.
fn is_constant_set(e: &Expr, schema: &DFSchema) -> bool {
    use datafusion::logical_expr::ExprSchemable;
    matches!(strip(e), Expr::Placeholder(_))
        || (is_constant(e) && e.get_type(schema).is_ok_and(|t| is_binary(&t)))
}

/// A constant: a literal, possibly cast.
fn is_constant(e: &Expr) -> bool {
    match strip(e) {
        Expr::Literal(..) => true,
        Expr::Cast(c) => is_constant(&c.expr),
        Expr::TryCast(c) => is_constant(&c.expr),
        _ => false,
    }
}

fn unclassified(name: &str) -> Refusal {
    Refusal::rule(
        "function",
        format!("{name}() is not available to analysts: it has no disclosure class"),
    )
}

fn bitmap_refusal() -> Refusal {
    Refusal::rule(
        "person set",
        "person sets (bitmaps) can only be combined with rb_and, rb_or, rb_andnot, rb_xor and measured with rb_cardinality",
    )
}

fn limit_refusal() -> Refusal {
    Refusal::rule(
        "LIMIT over persons",
        "LIMIT or a top-N over person-level rows picks rows across persons; limit the released aggregate instead",
    )
}

/// The two columns of `a = b`, if that is what the expression is.
fn column_equality(e: &Expr) -> Option<(&Column, &Column)> {
    if let Expr::BinaryExpr(BinaryExpr {
        left,
        op: Operator::Eq,
        right,
    }) = e
        && let (Expr::Column(a), Expr::Column(b)) = (strip(left), strip(right))
    {
        return Some((a, b));
    }
    None
}

/// `a.person_id = b.person_id` between two person columns of one relation.
fn equates_persons(e: &Expr, persons: &[Column]) -> bool {
    column_equality(e).is_some_and(|(a, b)| a != b && persons.contains(a) && persons.contains(b))
}

/// `a.visit_occurrence_id = b.visit_occurrence_id`: the same record identifier
/// on both sides (an identity join).
fn equates_records(e: &Expr, keys: &[Column]) -> bool {
    column_equality(e)
        .is_some_and(|(a, b)| a != b && a.name == b.name && keys.contains(a) && keys.contains(b))
}

/// `t.person_id = outer.person_id`: a subquery bound to the enclosing person.
fn correlates_person(e: &Expr, persons: &[Column], outer: &[Column]) -> bool {
    if let Expr::BinaryExpr(BinaryExpr {
        left,
        op: Operator::Eq,
        right,
    }) = e
    {
        let pair = |a: &Expr, b: &Expr| {
            matches!((strip(a), strip(b)), (Expr::Column(x), Expr::OuterReferenceColumn(_, y))
                if persons.contains(x) && outer.contains(y))
        };
        return pair(left, right) || pair(right, left);
    }
    false
}

/// Division, casts and functions that cannot fail on data: `a / b` divides
/// by `NULLIF(b, 0)`, casts become `TRY_CAST`, `make_date` returns NULL for
/// impossible dates, `power` computes in floating point; `rb_cardinality`
/// is released like a count.
pub(super) fn harden(plan: LogicalPlan, masks: &Masks) -> DfResult<LogicalPlan> {
    plan.transform_up_with_subqueries(|node| {
        let names = NamePreserver::new(&node);
        node.map_expressions(|e| {
            let name = names.save(&e);
            let t = e.transform_up(|e| match e {
                Expr::BinaryExpr(BinaryExpr { left, op, right })
                    if matches!(op, Operator::Divide | Operator::Modulo) =>
                {
                    let right = datafusion::functions::expr_fn::nullif(
                        *right,
                        datafusion::logical_expr::lit(0),
                    );
                    Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr {
                        left,
                        op,
                        right: Box::new(right),
                    })))
                }
                Expr::Cast(c) => Ok(Transformed::yes(Expr::TryCast(
                    datafusion::logical_expr::TryCast {
                        expr: c.expr,
                        field: c.field,
                    },
                ))),
                Expr::ScalarFunction(mut f) => match f.func.name() {
                    "rb_cardinality" if f.args.len() == 1 => {
                        Ok(Transformed::yes(masks.release_set(f.args.remove(0))))
                    }
                    "make_date" if f.args.len() == 3 => {
                        Ok(Transformed::yes(super::total::make_date(f.args)))
                    }
                    "power" => {
                        f.args = f
                            .args
                            .into_iter()
                            .map(|a| datafusion::logical_expr::cast(a, DataType::Float64))
                            .collect();
                        Ok(Transformed::yes(Expr::ScalarFunction(f)))
                    }
                    _ => Ok(Transformed::no(Expr::ScalarFunction(f))),
                },
                e => Ok(Transformed::no(e)),
            })?;
            Ok(t.update_data(|e| name.restore(e)))
        })
    })
    .map(|t| t.data)
}
