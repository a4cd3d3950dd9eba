//! A `LATERAL` subquery that takes the first rows of each outer row
//! (`CROSS JOIN LATERAL (SELECT ... WHERE c.person_id = p.person_id ORDER BY
//! d LIMIT 1) AS x`), which DataFusion 55 cannot plan (it decorrelates a
//! lateral subquery only without `LIMIT`), rewritten in the parsed
//! statement as a join with the first rows of every key:
//!
//! ```sql
//! JOIN (SELECT <items>, <keys> FROM (SELECT <items>, c.person_id AS k0,
//!         row_number() OVER (PARTITION BY c.person_id ORDER BY d) AS rn
//!       FROM ... WHERE <the other conditions>) WHERE rn <= 1) AS x
//!   ON x.k0 = p.person_id
//! ```
//!
//! `LEFT JOIN LATERAL (...) ON ...` stays a left join. A subquery that also
//! refers to the outer row through other conditions (`c.start_date >=
//! p.index_date`) takes its first rows per distinct value of the outer
//! columns it refers to, the outer relations read once more for them:
//!
//! ```sql
//! JOIN (SELECT <items>, o.k0, o.k1 FROM (SELECT <items>, o.k0, o.k1,
//!         row_number() OVER (PARTITION BY o.k0, o.k1 ORDER BY d) AS rn
//!       FROM (SELECT DISTINCT p.person_id AS k0, p.index_date AS k1
//!             FROM <the outer relations>) AS o, ...
//!       WHERE c.person_id = o.k0 AND c.start_date >= o.k1 AND ...)
//!       WHERE rn <= 1) AS x
//!   ON x.k0 = p.person_id AND x.k1 IS NOT DISTINCT FROM p.index_date
//! ```
//!
//! A subquery that refers to the outer row in its select list, `ORDER BY`
//! or a nested subquery, groups, aggregates, or lists `*` is left as
//! written. A `*` over the join leaves out the key columns added.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, ExcludeSelectItem, Expr, GroupByExpr, Ident, Join, JoinConstraint,
    JoinOperator, LimitClause, ObjectName, OrderByKind, Query, Select, SelectItem, SetExpr,
    TableFactor, TableWithJoins, Value, Visit, VisitMut, Visitor, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// Aggregates: a subquery computing one is left as written.
const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "stddev",
    "variance",
    "median",
];

struct Laterals {
    /// Rewritten laterals so far (their columns are numbered by it).
    count: usize,
}

/// Rewrites the `LATERAL ... LIMIT n` subqueries of a statement.
pub fn rewrite(statement: &mut datafusion::sql::sqlparser::ast::Statement) {
    let _ = statement.visit(&mut Laterals { count: 0 });
}

impl VisitorMut for Laterals {
    type Break = ();

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        rewrite_body(&mut query.body, self);
        ControlFlow::Continue(())
    }
}

fn rewrite_body(body: &mut SetExpr, laterals: &mut Laterals) {
    match body {
        SetExpr::Select(select) => rewrite_select(select, laterals),
        SetExpr::SetOperation { left, right, .. } => {
            rewrite_body(left, laterals);
            rewrite_body(right, laterals);
        }
        _ => {}
    }
}

fn rewrite_select(select: &mut Select, laterals: &mut Laterals) {
    let mut hidden: Vec<(Option<Ident>, Vec<Ident>)> = Vec::new();
    // `FROM a, LATERAL (...) x`: joined to what comes before it.
    let mut i = 1;
    while i < select.from.len() {
        let is_lateral = select.from[i].joins.is_empty()
            && matches!(
                select.from[i].relation,
                TableFactor::Derived { lateral: true, .. }
            );
        if is_lateral {
            let item = select.from.remove(i);
            let outer = select.from[i - 1].clone();
            select.from[i - 1].joins.push(Join {
                relation: item.relation,
                global: false,
                join_operator: JoinOperator::CrossJoin(JoinConstraint::None),
            });
            if let Some(done) = rewrite_join(select.from[i - 1].joins.last_mut(), &outer, laterals)
            {
                hidden.push(done);
            } else {
                // Left as written: put back where it was.
                if let Some(join) = select.from[i - 1].joins.pop() {
                    select.from.insert(
                        i,
                        TableWithJoins {
                            relation: join.relation,
                            joins: Vec::new(),
                        },
                    );
                }
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    for table in select.from.iter_mut() {
        for j in 0..table.joins.len() {
            let outer = TableWithJoins {
                relation: table.relation.clone(),
                joins: table.joins[..j].to_vec(),
            };
            if let Some(done) = rewrite_join(table.joins.get_mut(j), &outer, laterals) {
                hidden.push(done);
            }
        }
    }
    if hidden.is_empty() {
        return;
    }
    // A `*` over the join leaves out the keys added.
    for item in select.projection.iter_mut() {
        let (qualifier, options) = match item {
            SelectItem::Wildcard(o) => (None, o),
            SelectItem::QualifiedWildcard(kind, o) => (Some(kind.to_string()), o),
            _ => continue,
        };
        let mut names: Vec<ObjectName> = Vec::new();
        for (alias, keys) in &hidden {
            let applies = match (&qualifier, alias) {
                (None, _) => true,
                (Some(q), Some(a)) => q.eq_ignore_ascii_case(&a.value),
                (Some(_), None) => false,
            };
            if applies {
                names.extend(keys.iter().map(|k| ObjectName::from(vec![k.clone()])));
            }
        }
        if names.is_empty() {
            continue;
        }
        match options.opt_exclude.take() {
            None => {}
            Some(ExcludeSelectItem::Single(n)) => names.push(n),
            Some(ExcludeSelectItem::Multiple(more)) => names.extend(more),
        }
        options.opt_exclude = Some(ExcludeSelectItem::Multiple(names));
    }
}

/// Rewrites one join when it is a lateral subquery of the form handled;
/// gives its alias and the key columns it added.
fn rewrite_join(
    join: Option<&mut Join>,
    outer: &TableWithJoins,
    laterals: &mut Laterals,
) -> Option<(Option<Ident>, Vec<Ident>)> {
    let join = join?;
    let TableFactor::Derived {
        lateral: true,
        subquery,
        alias,
        sample: None,
    } = &join.relation
    else {
        return None;
    };
    if alias.as_ref().is_some_and(|a| !a.columns.is_empty()) {
        return None;
    }
    let (on, left) = match &join.join_operator {
        JoinOperator::CrossJoin(JoinConstraint::None) => (None, false),
        JoinOperator::Join(JoinConstraint::On(e)) | JoinOperator::Inner(JoinConstraint::On(e)) => {
            (Some(e.clone()), false)
        }
        JoinOperator::Left(JoinConstraint::On(e))
        | JoinOperator::LeftOuter(JoinConstraint::On(e)) => (Some(e.clone()), true),
        _ => return None,
    };
    let n = laterals.count;
    let plan = FirstRows::of(subquery, n, outer)?;
    let alias_name = alias.as_ref().map(|a| a.name.clone());
    let qualifier = alias_name
        .as_ref()
        .map(|a| format!("{a}."))
        .unwrap_or_default();
    let mut condition: Vec<String> = plan
        .keys
        .iter()
        .zip(&plan.outer)
        .zip(&plan.null_safe)
        .map(|((k, outer), null_safe)| {
            if *null_safe {
                format!("({qualifier}{k} IS NOT DISTINCT FROM {outer})")
            } else {
                format!("{qualifier}{k} = {outer}")
            }
        })
        .collect();
    if let Some(on) = on {
        condition.push(format!("({on})"));
    }
    let condition = parse_expr(&condition.join(" AND "))?;
    let query = parse_query(&plan.sql)?;
    join.relation = TableFactor::Derived {
        lateral: false,
        subquery: Box::new(query),
        alias: alias.clone(),
        sample: None,
    };
    join.join_operator = if left {
        JoinOperator::LeftOuter(JoinConstraint::On(condition))
    } else {
        JoinOperator::Inner(JoinConstraint::On(condition))
    };
    laterals.count += 1;
    Some((alias_name, plan.keys))
}

/// The first rows of every key, as SQL.
struct FirstRows {
    sql: String,
    /// The key columns added to the subquery's output.
    keys: Vec<Ident>,
    /// The outer expression each key equals.
    outer: Vec<Expr>,
    /// For each key, whether it matches the outer value as `IS NOT
    /// DISTINCT FROM`: a key taken from the outer row that no equality
    /// with an inner column constrains (its NULL may have first rows).
    null_safe: Vec<bool>,
}

impl FirstRows {
    fn of(query: &Query, n: usize, outer_from: &TableWithJoins) -> Option<FirstRows> {
        if query.with.is_some() || query.fetch.is_some() || !query.locks.is_empty() {
            return None;
        }
        let (limit, offset) = match &query.limit_clause {
            Some(LimitClause::LimitOffset {
                limit: Some(limit),
                offset,
                limit_by,
            }) if limit_by.is_empty() => (
                integer(limit)?,
                match offset {
                    Some(o) => integer(&o.value)?,
                    None => 0,
                },
            ),
            _ => return None,
        };
        let SetExpr::Select(select) = query.body.as_ref() else {
            return None;
        };
        let grouped = match &select.group_by {
            GroupByExpr::Expressions(e, m) => !e.is_empty() || !m.is_empty(),
            GroupByExpr::All(_) => true,
        };
        if grouped
            || select.having.is_some()
            || select.distinct.is_some()
            || select.top.is_some()
            || !select.named_window.is_empty()
            || select.qualify.is_some()
            || select.from.is_empty()
        {
            return None;
        }
        let inner = inner_names(select);
        // The output columns: each item named.
        let mut items = Vec::new();
        let mut names = Vec::new();
        let mut exprs = Vec::new();
        for item in &select.projection {
            let (expr, name) = match item {
                SelectItem::ExprWithAlias { expr, alias } => (expr, alias.clone()),
                SelectItem::UnnamedExpr(e @ Expr::Identifier(i)) => (e, i.clone()),
                SelectItem::UnnamedExpr(e @ Expr::CompoundIdentifier(parts)) => {
                    (e, parts.last()?.clone())
                }
                _ => return None,
            };
            if refers_outside(expr, &inner) || calls_aggregate(expr) {
                return None;
            }
            items.push(format!("{expr} AS {name}"));
            names.push(name);
            exprs.push(expr.clone());
        }
        // The conditions: equalities with the outer row become keys.
        let mut keys = Vec::new();
        let mut outer = Vec::new();
        let mut rest = Vec::new();
        let mut correlated: Vec<Expr> = Vec::new();
        let mut outer_relation: Option<String> = None;
        if let Some(selection) = &select.selection {
            for c in conjuncts(selection) {
                if let Expr::BinaryOp {
                    left,
                    op: BinaryOperator::Eq,
                    right,
                } = c
                {
                    let (l, r) = (refers_outside(left, &inner), refers_outside(right, &inner));
                    let pair = match (l, r) {
                        (false, true) if is_outer_column(right, &inner) => Some((left, right)),
                        (true, false) if is_outer_column(left, &inner) => Some((right, left)),
                        _ => None,
                    };
                    if let Some((k, o)) = pair {
                        keys.push(k.as_ref().clone());
                        outer.push(o.as_ref().clone());
                        continue;
                    }
                }
                if refers_outside(c, &inner) {
                    correlated.push(c.clone());
                    continue;
                }
                rest.push(c.to_string());
            }
        }
        if keys.is_empty() && correlated.is_empty() {
            return None;
        }
        // Other conditions on the outer row: first rows per distinct value
        // of the outer columns referred to, read from the outer relations.
        let mut null_safe = vec![false; keys.len()];
        if !correlated.is_empty() {
            let known = names_of(std::slice::from_ref(outer_from));
            let mut columns: Vec<Expr> = Vec::new();
            for e in outer.iter().chain(&correlated) {
                for c in outer_columns(e, &inner)? {
                    let qualifier = match &c {
                        Expr::CompoundIdentifier(parts) => {
                            parts[parts.len() - 2].value.to_lowercase()
                        }
                        _ => return None,
                    };
                    if !known.contains(&qualifier) {
                        return None;
                    }
                    if !columns.iter().any(|k| same_column(k, &c)) {
                        columns.push(c);
                    }
                }
            }
            let relation = Ident::with_quote('"', format!("__tsunagu_lateral{n}_outer"));
            let names: Vec<Ident> = (0..columns.len())
                .map(|i| Ident::with_quote('"', format!("__tsunagu_lateral{n}_o{i}")))
                .collect();
            let distinct = columns
                .iter()
                .zip(&names)
                .map(|(c, name)| format!("{c} AS {name}"))
                .collect::<Vec<_>>()
                .join(", ");
            outer_relation = Some(format!(
                "(SELECT DISTINCT {distinct} FROM {outer_from}) AS {relation}"
            ));
            let as_inner = |e: &Expr| {
                let mut e = e.clone();
                let _ = VisitMut::visit(
                    &mut e,
                    &mut ToOuterRelation {
                        columns: &columns,
                        relation: &relation,
                        names: &names,
                    },
                );
                e
            };
            for (k, o) in keys.iter().zip(&outer) {
                rest.push(format!("{k} = {}", as_inner(o)));
            }
            for c in &correlated {
                rest.push(as_inner(c).to_string());
            }
            keys = names
                .iter()
                .map(|name| Expr::CompoundIdentifier(vec![relation.clone(), name.clone()]))
                .collect();
            null_safe = columns
                .iter()
                .map(|c| !outer.iter().any(|o| same_column(o, c)))
                .collect();
            outer = columns;
        }
        let order = match &query.order_by {
            None => String::new(),
            Some(o) => {
                if refers_outside_order(o, &inner) {
                    return None;
                }
                let OrderByKind::Expressions(list) = &o.kind else {
                    return None;
                };
                // Inside the window, `ORDER BY 2` and an output name are
                // the item's expression.
                let mut list = list.clone();
                for e in list.iter_mut() {
                    let item = match &e.expr {
                        Expr::Value(_) => integer(&e.expr)
                            .and_then(|k| usize::try_from(k).ok()?.checked_sub(1))
                            .and_then(|k| exprs.get(k)),
                        Expr::Identifier(i) => names
                            .iter()
                            .position(|n| n.value.eq_ignore_ascii_case(&i.value))
                            .map(|k| &exprs[k]),
                        _ => None,
                    };
                    if let Some(item) = item {
                        e.expr = item.clone();
                    } else if matches!(e.expr, Expr::Value(_)) {
                        return None;
                    }
                }
                let terms: Vec<String> = list.iter().map(|e| e.to_string()).collect();
                format!(" ORDER BY {}", terms.join(", "))
            }
        };
        let key_names: Vec<Ident> = (0..keys.len())
            .map(|i| Ident::with_quote('"', format!("__tsunagu_lateral{n}_k{i}")))
            .collect();
        let rn = Ident::with_quote('"', format!("__tsunagu_lateral{n}_rn"));
        let key_list = keys.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        let from = outer_relation
            .into_iter()
            .chain(select.from.iter().map(|t| t.to_string()))
            .collect::<Vec<_>>()
            .join(", ");
        let mut inner_items = items.clone();
        for (k, name) in key_list.iter().zip(&key_names) {
            inner_items.push(format!("{k} AS {name}"));
        }
        inner_items.push(format!(
            "row_number() OVER (PARTITION BY {}{order}) AS {rn}",
            key_list.join(", ")
        ));
        let filter = if rest.is_empty() {
            String::new()
        } else {
            // Each condition parenthesized, whatever its operators.
            let rest: Vec<String> = rest.iter().map(|c| format!("({c})")).collect();
            format!(" WHERE {}", rest.join(" AND "))
        };
        let outer_items = names
            .iter()
            .chain(&key_names)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {outer_items} FROM (SELECT {} FROM {from}{filter}) AS \"__tsunagu_lateral{n}\" \
             WHERE {rn} > {offset} AND {rn} <= {}",
            inner_items.join(", "),
            offset + limit
        );
        Some(FirstRows {
            sql,
            keys: key_names,
            outer,
            null_safe,
        })
    }
}

/// The names rows of a select's `FROM` are qualified with.
fn inner_names(select: &Select) -> HashSet<String> {
    names_of(&select.from)
}

/// The names rows of these relations are qualified with.
fn names_of(from: &[TableWithJoins]) -> HashSet<String> {
    let mut names = HashSet::new();
    let mut add = |f: &TableFactor| match f {
        TableFactor::Table { name, alias, .. } => {
            match alias {
                Some(a) => names.insert(a.name.value.to_lowercase()),
                None => names.insert(
                    name.0
                        .last()
                        .and_then(|p| p.as_ident())
                        .map(|i| i.value.to_lowercase())
                        .unwrap_or_default(),
                ),
            };
        }
        TableFactor::Derived { alias: Some(a), .. }
        | TableFactor::TableFunction { alias: Some(a), .. }
        | TableFactor::Function { alias: Some(a), .. }
        | TableFactor::UNNEST { alias: Some(a), .. } => {
            names.insert(a.name.value.to_lowercase());
        }
        _ => {}
    };
    for t in from {
        add(&t.relation);
        for j in &t.joins {
            add(&j.relation);
        }
    }
    names
}

/// Finds qualified columns whose qualifier is not one of the inner names
/// (and any subquery, whose names are not followed).
struct Outside<'a> {
    inner: &'a HashSet<String>,
}

impl Visitor for Outside<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::CompoundIdentifier(parts)
                if parts.len() >= 2
                    && !self
                        .inner
                        .contains(&parts[parts.len() - 2].value.to_lowercase()) =>
            {
                ControlFlow::Break(())
            }
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                ControlFlow::Break(())
            }
            _ => ControlFlow::Continue(()),
        }
    }
}

fn refers_outside(e: &Expr, inner: &HashSet<String>) -> bool {
    e.visit(&mut Outside { inner }).is_break()
}

fn refers_outside_order(
    o: &datafusion::sql::sqlparser::ast::OrderBy,
    inner: &HashSet<String>,
) -> bool {
    o.visit(&mut Outside { inner }).is_break()
}

/// `outer.column`: a qualified column of the outer row.
fn is_outer_column(e: &Expr, inner: &HashSet<String>) -> bool {
    matches!(e, Expr::CompoundIdentifier(parts)
        if parts.len() >= 2 && !inner.contains(&parts[parts.len() - 2].value.to_lowercase()))
}

/// The outer columns `e` refers to; `None` if it refers to the outer row
/// otherwise (through a subquery).
fn outer_columns(e: &Expr, inner: &HashSet<String>) -> Option<Vec<Expr>> {
    struct Columns<'a> {
        inner: &'a HashSet<String>,
        found: Vec<Expr>,
    }
    impl Visitor for Columns<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            match expr {
                Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                    ControlFlow::Break(())
                }
                e if is_outer_column(e, self.inner) => {
                    self.found.push(e.clone());
                    ControlFlow::Continue(())
                }
                _ => ControlFlow::Continue(()),
            }
        }
    }
    let mut v = Columns {
        inner,
        found: Vec::new(),
    };
    if e.visit(&mut v).is_break() {
        return None;
    }
    Some(v.found)
}

/// Whether two qualified columns are the same (names compared as
/// PostgreSQL folds unquoted ones).
fn same_column(a: &Expr, b: &Expr) -> bool {
    a.to_string().to_lowercase() == b.to_string().to_lowercase()
}

/// Rewrites outer columns as the columns of the relation of their
/// distinct values.
struct ToOuterRelation<'a> {
    columns: &'a [Expr],
    relation: &'a Ident,
    names: &'a [Ident],
}

impl VisitorMut for ToOuterRelation<'_> {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if !matches!(expr, Expr::CompoundIdentifier(_)) {
            return ControlFlow::Continue(());
        }
        if let Some(i) = self.columns.iter().position(|c| same_column(c, expr)) {
            *expr = Expr::CompoundIdentifier(vec![self.relation.clone(), self.names[i].clone()]);
        }
        ControlFlow::Continue(())
    }
}

fn calls_aggregate(e: &Expr) -> bool {
    struct Aggregate;
    impl Visitor for Aggregate {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            match expr {
                Expr::Function(f)
                    if f.over.is_none()
                        && f.name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| {
                            AGGREGATES.contains(&i.value.to_lowercase().as_str())
                        }) =>
                {
                    ControlFlow::Break(())
                }
                _ => ControlFlow::Continue(()),
            }
        }
    }
    e.visit(&mut Aggregate).is_break()
}

/// The conditions of `a AND b AND ...`.
fn conjuncts(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            let mut all = conjuncts(left);
            all.extend(conjuncts(right));
            all
        }
        Expr::Nested(inner)
            if matches!(
                inner.as_ref(),
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            conjuncts(inner)
        }
        _ => vec![e],
    }
}

fn integer(e: &Expr) -> Option<u64> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

/// An expression parsed as PostgreSQL writes it.
pub(super) fn parse_expr(sql: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .ok()?
        .parse_expr()
        .ok()
}

fn parse_query(sql: &str) -> Option<Query> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .ok()?
        .parse_query()
        .ok()
        .map(|q| *q)
}
