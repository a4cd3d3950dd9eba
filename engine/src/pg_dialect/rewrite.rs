//! PostgreSQL syntax DataFusion plans differently, rewritten in the parsed
//! statement before planning:
//!
//! - date constants in PostgreSQL's other input forms (`DATE '01-jan-2011'`,
//!   `CAST('Jan 5 2011' AS DATE)`, `'20110105'::date`) are written in ISO;
//! - a set-returning function in `FROM` names its column after the function,
//!   or after the table alias: `SELECT generate_series FROM generate_series(1, 3)`,
//!   `SELECT y FROM generate_series(1, 3) AS y` (DataFusion names it `value`);
//! - a query may return two columns of the same name (`SELECT count(*),
//!   count(*)`), which a DataFusion plan cannot: the repeated ones are
//!   planned under internal names, and [`OutputNames`] gives them back
//!   their name in the result.

use std::ops::ControlFlow;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr as LogicalExpr, LogicalPlan};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    DataType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, Query, SelectItem,
    SetExpr, Statement, TableFactor, UnaryOperator, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// Set-returning functions whose column PostgreSQL names after the function.
const NAMED_AFTER_FUNCTION: &[&str] = &["generate_series"];

struct SetReturningFunctions;

impl VisitorMut for SetReturningFunctions {
    type Break = ();

    fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name, alias, args, ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let function = name.to_string().to_ascii_lowercase();
        if args.is_none()
            || !NAMED_AFTER_FUNCTION.contains(&function.as_str())
            || alias.as_ref().is_some_and(|a| !a.columns.is_empty())
        {
            return ControlFlow::Continue(());
        }
        let column = match alias {
            Some(a) => a.name.clone(),
            None => Ident::with_quote('"', function),
        };
        let mut call = factor.clone();
        if let TableFactor::Table { alias, .. } = &mut call {
            *alias = None;
        }
        let sql = format!("SELECT * FROM (SELECT value AS {column} FROM {call}) AS {column}");
        if let Some(derived) = Parser::parse_sql(&PostgreSqlDialect {}, &sql)
            .ok()
            .and_then(|mut s| s.pop())
            .and_then(|s| match s {
                Statement::Query(q) => match *q.body {
                    SetExpr::Select(mut s) => s.from.pop().map(|t| t.relation),
                    _ => None,
                },
                _ => None,
            })
        {
            *factor = derived;
        }
        ControlFlow::Continue(())
    }
}

struct DateConstants;

/// An interval constant with a time of day (`INTERVAL '1 day 02:00:00'`,
/// `'-1 days +02:00:00'::interval`, as PostgreSQL writes intervals) in the
/// words DataFusion reads.
fn interval_constant(expr: &mut Expr) {
    let value = match expr {
        Expr::Interval(i) if i.leading_field.is_none() && i.last_field.is_none() => {
            match i.value.as_mut() {
                Expr::Value(v) => &mut v.value,
                _ => return,
            }
        }
        Expr::TypedString(t) if matches!(t.data_type, DataType::Interval { .. }) => {
            &mut t.value.value
        }
        Expr::Cast {
            expr: inner,
            data_type: DataType::Interval { .. },
            ..
        } => match inner.as_mut() {
            Expr::Value(v) => &mut v.value,
            _ => return,
        },
        _ => return,
    };
    if let Value::SingleQuotedString(text) = value
        && let Some((months, days, micros)) = super::interval_text::parse_with_time(text)
    {
        *text = format!("{months} months {days} days {micros} microseconds");
    }
}

impl VisitorMut for DateConstants {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        interval_constant(expr);
        let value = match expr {
            Expr::TypedString(t) if t.data_type == DataType::Date => &mut t.value.value,
            Expr::Cast {
                expr: inner,
                data_type: DataType::Date,
                ..
            } => match inner.as_mut() {
                Expr::Value(v) => &mut v.value,
                _ => return ControlFlow::Continue(()),
            },
            _ => return ControlFlow::Continue(()),
        };
        if let Value::SingleQuotedString(text) = value
            && let Some(iso) = super::date_input::to_iso(text)
        {
            *text = iso;
        }
        ControlFlow::Continue(())
    }
}

/// What a renamed output column is called.
#[derive(Debug, Clone)]
enum Name {
    /// The name of the column at this position (the same expression).
    SameAs(usize),
    /// The name DataFusion gives its expression (found in the plan).
    Expression(Option<String>),
}

/// Output columns that take another name than the plan gives them.
#[derive(Debug, Clone, Default)]
pub struct OutputNames {
    renames: Vec<(usize, Name)>,
    /// PostgreSQL's names of unaliased expressions, applied last.
    postgres: Vec<(super::column_names::Position, String)>,
}

fn internal_name(position: usize) -> String {
    format!("__tsunagu_column_{position}")
}

impl OutputNames {
    /// Finds in the plan the names of the expressions planned under internal names.
    pub fn resolve(&mut self, plan: &LogicalPlan) {
        for (at, name) in &mut self.renames {
            if let Name::Expression(found) = name {
                let internal = internal_name(*at);
                let _ = plan.apply(|p| {
                    for e in p.expressions() {
                        if let LogicalExpr::Alias(a) = e
                            && a.name == internal
                        {
                            *found = Some(a.expr.schema_name().to_string());
                            return Ok(TreeNodeRecursion::Stop);
                        }
                    }
                    Ok(TreeNodeRecursion::Continue)
                });
            }
        }
    }

    /// The result's column names, given the plan's.
    pub fn apply(&self, mut names: Vec<String>) -> Vec<String> {
        for (at, name) in &self.renames {
            let name = match name {
                Name::SameAs(first) => names.get(*first).cloned(),
                Name::Expression(n) => n.clone(),
            };
            if let (Some(slot), Some(name)) = (names.get_mut(*at), name) {
                *slot = name;
            }
        }
        let count = names.len();
        for (at, name) in &self.postgres {
            if let Some(slot) = at.index(count).and_then(|i| names.get_mut(i)) {
                slot.clone_from(name);
            }
        }
        names
    }

    /// Names unaliased expressions as PostgreSQL does.
    pub fn with_postgres_names(
        mut self,
        names: Vec<(super::column_names::Position, String)>,
    ) -> Self {
        self.postgres = names;
        self
    }
}

/// Whether planning failed because two output columns have the same name.
pub fn is_repeated_name(e: &datafusion::error::DataFusionError) -> bool {
    // DataFusion raises it as a plain planning error, told apart by its text.
    e.to_string()
        .contains("Projections require unique expression names")
}

/// Plans repeated names of the top-level select list under internal names:
/// those whose text repeats, or with `every_expression` every expression
/// (DataFusion names `DATE '2011-01-01'` and `CAST('2011-01-01' AS DATE)` alike).
pub fn repeated_names(statement: &mut DFStatement, every_expression: bool) -> OutputNames {
    let mut names = OutputNames::default();
    let DFStatement::Statement(statement) = statement else {
        return names;
    };
    let Statement::Query(query) = statement.as_mut() else {
        return names;
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return names;
    };
    if select.projection.iter().any(|i| {
        !matches!(
            i,
            SelectItem::UnnamedExpr(_) | SelectItem::ExprWithAlias { .. }
        )
    }) {
        return names;
    }
    let mut seen: Vec<(String, usize)> = Vec::new();
    for (i, item) in select.projection.iter_mut().enumerate() {
        let (key, given, expr) = match item {
            SelectItem::ExprWithAlias { expr, alias } => {
                let name = if alias.quote_style.is_some() {
                    alias.value.clone()
                } else {
                    alias.value.to_ascii_lowercase()
                };
                (format!("alias {name}"), Some(name), expr.clone())
            }
            SelectItem::UnnamedExpr(expr) => {
                // Columns of different tables already have distinct qualified names.
                if matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
                    continue;
                }
                (format!("expr {expr}"), None, expr.clone())
            }
            _ => continue,
        };
        let name = match (seen.iter().find(|(k, _)| *k == key), given) {
            (Some((_, first)), _) => Name::SameAs(*first),
            (None, None) if every_expression => Name::Expression(None),
            (None, _) => {
                seen.push((key, i));
                continue;
            }
        };
        *item = SelectItem::ExprWithAlias {
            expr,
            alias: Ident::with_quote('"', internal_name(i)),
        };
        names.renames.push((i, name));
    }
    names
}

/// Rewrites date constants and set-returning functions in a parsed statement
/// (and in the statement an `EXPLAIN` shows).
/// PostgreSQL's prefix operators `@` (absolute value), `|/` (square root)
/// and `||/` (cube root) as the functions DataFusion has, and `age(x)` as
/// `age(current_date, x)`. Applied after PostgreSQL's output names are
/// taken, so `SELECT @ x` is still named `?column?`.
struct PrefixOperators;

/// `name(args...)` as parsed.
fn call(name: &str, args: Vec<Expr>) -> Option<Expr> {
    let placeholders = vec!["NULL"; args.len()].join(", ");
    let mut e = super::lateral::parse_expr(&format!("{name}({placeholders})"))?;
    if let Expr::Function(f) = &mut e
        && let FunctionArguments::List(list) = &mut f.args
    {
        for (slot, a) in list.args.iter_mut().zip(args) {
            *slot = FunctionArg::Unnamed(FunctionArgExpr::Expr(a));
        }
    }
    Some(e)
}

impl VisitorMut for PrefixOperators {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let replaced = match expr {
            Expr::UnaryOp { op, expr: inner } => {
                let name = match op {
                    UnaryOperator::PGAbs => "abs",
                    UnaryOperator::PGSquareRoot => "sqrt",
                    UnaryOperator::PGCubeRoot => "cbrt",
                    _ => return ControlFlow::Continue(()),
                };
                call(name, vec![Expr::Nested(inner.clone())])
            }
            Expr::Function(f)
                if f.name.0.len() == 1
                    && f.name.0[0].as_ident().is_some_and(|i| {
                        i.quote_style.is_none() && i.value.eq_ignore_ascii_case("age")
                    }) =>
            {
                match &f.args {
                    FunctionArguments::List(list)
                        if list.args.len() == 1 && list.duplicate_treatment.is_none() =>
                    {
                        let FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) = &list.args[0] else {
                            return ControlFlow::Continue(());
                        };
                        // PostgreSQL: from midnight of the current date.
                        let today = super::lateral::parse_expr("CAST(CURRENT_DATE AS TIMESTAMP)");
                        today.and_then(|t| call("age", vec![t, x.clone()]))
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(e) = replaced {
            *expr = e;
        }
        ControlFlow::Continue(())
    }

    /// `generate_series(...)` in a select list gives rows, as in
    /// PostgreSQL, not one list: `unnest(generate_series(...))`, also
    /// inside an expression (`generate_series(1, 3) * 2`).
    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        fn series_to_rows(body: &mut SetExpr) {
            match body {
                SetExpr::Select(select) => {
                    for item in select.projection.iter_mut() {
                        let e = match item {
                            SelectItem::UnnamedExpr(e) => e,
                            SelectItem::ExprWithAlias { expr, .. } => expr,
                            _ => continue,
                        };
                        let _ = e.visit(&mut SeriesToRows::default());
                    }
                }
                SetExpr::SetOperation { left, right, .. } => {
                    series_to_rows(left);
                    series_to_rows(right);
                }
                SetExpr::Query(q) => series_to_rows(&mut q.body),
                _ => {}
            }
        }
        series_to_rows(&mut query.body);
        ControlFlow::Continue(())
    }
}

/// Wraps each `generate_series(...)` of an expression in `unnest`, except
/// inside a subquery or an `unnest` already.
#[derive(Default)]
struct SeriesToRows {
    /// For each expression being visited, whether it hides its calls.
    hides: Vec<bool>,
}

impl VisitorMut for SeriesToRows {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let hides = matches!(
            expr,
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. }
        ) || is_call_of(expr, "unnest");
        self.hides.push(hides);
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        self.hides.pop();
        if !self.hides.iter().any(|h| *h)
            && is_call_of(expr, "generate_series")
            && let Some(rows) = call("unnest", vec![expr.clone()])
        {
            *expr = rows;
        }
        ControlFlow::Continue(())
    }
}

/// Whether `e` calls the function `name` (unqualified, unquoted).
fn is_call_of(e: &Expr, name: &str) -> bool {
    matches!(e, Expr::Function(f)
        if f.name.0.len() == 1
            && f.name.0[0]
                .as_ident()
                .is_some_and(|i| i.quote_style.is_none() && i.value.eq_ignore_ascii_case(name)))
}

/// Rewrites PostgreSQL's prefix operators and one-argument `age` (see
/// [`PrefixOperators`]) and numeric constants (see
/// [`super::numeric_constants`]); run after the output names are taken.
pub fn rewrite_operators(statement: &mut DFStatement) {
    match statement {
        DFStatement::Statement(s) => {
            let _ = s.visit(&mut PrefixOperators);
            let _ = s.visit(&mut super::numeric_constants::NumericConstants);
        }
        DFStatement::Explain(e) => rewrite_operators(&mut e.statement),
        _ => {}
    }
}

pub fn rewrite(statement: &mut DFStatement) {
    match statement {
        DFStatement::Statement(s) => {
            super::lateral::rewrite(s);
            let _ = s.visit(&mut SetReturningFunctions);
            let _ = s.visit(&mut DateConstants);
        }
        DFStatement::Explain(e) => rewrite(&mut e.statement),
        _ => {}
    }
}
