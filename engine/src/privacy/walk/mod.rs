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
use crate::pg_dialect::numeric_division::NUMERIC_DIV;
use datafusion::arrow::datatypes::DataType;
use tsunagu_udfs::Disclosure;

mod expressions;
mod relations;

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

/// Division, arithmetic, casts and functions that cannot fail on data:
/// `a / b` divides by `NULLIF(b, 0)` (and `mod(a, b)` is `a % NULLIF(b, 0)`,
/// a numeric division divides by `NULLIF(b, 0)`); `+ - * / %` of integers
/// and decimals are NULL where they would overflow; casts become
/// `TRY_CAST`, `make_date` returns NULL for impossible dates, `power`
/// computes in floating point; `rb_cardinality` is released like a count.
pub(super) fn harden(plan: LogicalPlan, masks: &Masks) -> DfResult<LogicalPlan> {
    plan.transform_up_with_subqueries(|node| {
        let names = NamePreserver::new(&node);
        let schema = crate::pg_dialect::inputs_schema(&node);
        let total = |left: Expr, op: Operator, right: Expr| -> Expr {
            schema
                .as_ref()
                .and_then(|s| crate::pg_dialect::arithmetic::total(&left, op, &right, s))
                .unwrap_or_else(|| {
                    Expr::BinaryExpr(BinaryExpr::new(Box::new(left), op, Box::new(right)))
                })
        };
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
                    Ok(Transformed::yes(total(*left, op, right)))
                }
                Expr::BinaryExpr(BinaryExpr { left, op, right })
                    if matches!(op, Operator::Plus | Operator::Minus | Operator::Multiply) =>
                {
                    let e = total(*left, op, *right);
                    Ok(if matches!(e, Expr::BinaryExpr(_)) {
                        Transformed::no(e)
                    } else {
                        Transformed::yes(e)
                    })
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
                    NUMERIC_DIV if f.args.len() == 2 => {
                        let right = datafusion::functions::expr_fn::nullif(
                            f.args.remove(1),
                            datafusion::logical_expr::lit(0),
                        );
                        f.args.push(right);
                        Ok(Transformed::yes(Expr::ScalarFunction(f)))
                    }
                    "mod" if f.args.len() == 2 => {
                        let right = datafusion::functions::expr_fn::nullif(
                            f.args.remove(1),
                            datafusion::logical_expr::lit(0),
                        );
                        Ok(Transformed::yes(total(
                            f.args.remove(0),
                            Operator::Modulo,
                            right,
                        )))
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
