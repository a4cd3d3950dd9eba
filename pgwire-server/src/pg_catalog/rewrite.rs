//! PostgreSQL-only syntax in client catalog queries, rewritten into what
//! DataFusion plans: `OPERATOR(pg_catalog.~)` → `~`, `COLLATE x` dropped,
//! `pg_catalog.f(...)` → `f(...)`, `x::regclass` → `tsunagu_regclass(x)`,
//! `x::regtype` → `format_type(x)`, `::oid`/`::name`/`::"char"` casts to
//! plain types, `ARRAY(subquery)` → an `array_agg` subquery, and bare
//! `pg_class` → `pg_catalog.pg_class`.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    self, BinaryOperator, DataType, Expr, FunctionArguments, ObjectName, ObjectNamePart,
    visit_expressions_mut, visit_relations_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use tsunagu_engine::Statement;

fn parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => i.value.to_ascii_lowercase(),
            other => other.to_string().to_ascii_lowercase(),
        })
        .collect()
}

fn parse_expr(sql: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .ok()?
        .parse_expr()
        .ok()
}

/// Rewrites one statement in place (a no-op for statements without such syntax).
pub fn rewrite(statement: &mut Statement) {
    let Statement::Sql(DfStatement::Statement(s)) = statement else {
        return;
    };
    let s: &mut ast::Statement = s.as_mut();
    let mut catalog = false;
    let _ = visit_relations_mut(s, |name: &mut ObjectName| {
        let p = parts(name);
        if p.len() == 1 && p[0].starts_with("pg_") {
            name.0
                .insert(0, ObjectNamePart::Identifier(ast::Ident::new("pg_catalog")));
        }
        let p = parts(name);
        catalog |= p.iter().any(|p| p == "pg_catalog");
        // Set-returning functions used as tables: `pg_catalog.unnest(...)`.
        if p.len() == 2
            && p[0] == "pg_catalog"
            && matches!(p[1].as_str(), "unnest" | "generate_series")
        {
            name.0.remove(0);
        }
        ControlFlow::<()>::Continue(())
    });
    if catalog && let ast::Statement::Query(q) = s {
        blank_empty_selects(q.body.as_mut());
        name_columns_beside_wildcards(q.body.as_mut());
    }
    if let ast::Statement::Query(q) = s {
        name_function_columns(q.body.as_mut());
    }
    let _ = visit_expressions_mut(s, |e: &mut Expr| {
        if let Some(new) = rewrite_expr(e, catalog) {
            *e = new;
        }
        ControlFlow::<()>::Continue(())
    });
}

fn rewrite_expr(e: &mut Expr, catalog: bool) -> Option<Expr> {
    match e {
        Expr::Function(f) => {
            let p = parts(&f.name);
            if p.len() > 1 && p[0] == "pg_catalog" {
                let last = f.name.0.pop()?;
                f.name = ObjectName(vec![last]);
            }
            if p.last().map(String::as_str) == Some("array")
                && let FunctionArguments::Subquery(q) = &f.args
            {
                // ARRAY(SELECT x ...) is (SELECT array_agg(x) ...), correlation kept.
                if catalog && over_table_function(q) {
                    // Options arrays (`reloptions`) are always NULL here.
                    return parse_expr("NULL");
                }
                let mut q = q.clone();
                if wrap_single_item(&mut q, "array_agg") {
                    return Some(Expr::Subquery(q));
                }
            }
            None
        }
        Expr::BinaryOp { left, op, right } => {
            let BinaryOperator::PGCustomBinaryOperator(p) = op else {
                return None;
            };
            let new = match p.last().map(String::as_str) {
                Some("~") => BinaryOperator::PGRegexMatch,
                Some("~*") => BinaryOperator::PGRegexIMatch,
                Some("!~") => BinaryOperator::PGRegexNotMatch,
                Some("!~*") => BinaryOperator::PGRegexNotIMatch,
                Some("~~") => BinaryOperator::PGLikeMatch,
                Some("!~~") => BinaryOperator::PGNotLikeMatch,
                Some("=") => BinaryOperator::Eq,
                Some("<>") => BinaryOperator::NotEq,
                Some("<") => BinaryOperator::Lt,
                Some(">") => BinaryOperator::Gt,
                Some("<=") => BinaryOperator::LtEq,
                Some(">=") => BinaryOperator::GtEq,
                _ => return None,
            };
            Some(Expr::BinaryOp {
                left: left.clone(),
                op: new,
                right: right.clone(),
            })
        }
        Expr::Collate { expr, .. } => Some((**expr).clone()),
        Expr::Like {
            pattern,
            escape_char: escape @ Some(_),
            ..
        }
        | Expr::ILike {
            pattern,
            escape_char: escape @ Some(_),
            ..
        } => {
            // DataFusion escapes with a backslash only: translate the pattern.
            let c = match &escape.as_ref()?.value {
                ast::Value::SingleQuotedString(c) => c.clone(),
                _ => return None,
            };
            if c == "\\" {
                return None;
            }
            let c = c.replace('\'', "''");
            **pattern = parse_expr(&format!(
                "replace(replace({pattern}, '\\', '\\\\'), '{c}', '\\')"
            ))?;
            *escape = None;
            None
        }
        Expr::Subquery(q) if catalog && always_empty(q) => parse_expr("NULL"),
        Expr::Exists { subquery, negated } if catalog && always_empty(subquery) => {
            parse_expr(if *negated { "true" } else { "false" })
        }
        Expr::Subquery(q) if catalog => {
            // Catalog lookups as scalar subqueries return at most one row;
            // DataFusion plans correlated ones only when aggregated.
            let mut q = q.clone();
            wrap_single_item(&mut q, "max").then_some(Expr::Subquery(q))
        }
        Expr::Cast {
            expr, data_type, ..
        } => {
            let name = match data_type {
                DataType::Regclass => "regclass".to_owned(),
                DataType::Custom(n, _) => parts(n).last().cloned().unwrap_or_default(),
                _ => return None,
            };
            match name.as_str() {
                "regclass" => parse_expr(&format!("tsunagu_regclass({expr})")),
                "regtype" => parse_expr(&format!("format_type({expr}, NULL)")),
                "regproc" | "regprocedure" | "regnamespace" | "regrole" | "text" | "name"
                | "char" | "bpchar" | "varchar" => parse_expr(&format!("CAST({expr} AS TEXT)")),
                "oid" | "xid" | "regconfig" => parse_expr(&format!("CAST({expr} AS BIGINT)")),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Catalogs that are always empty in Tsunagu: no defaults, collations,
/// indexes, constraints, inheritance, triggers, rules, policies, publications.
const EMPTY: &[&str] = &[
    "pg_attrdef",
    "pg_collation",
    "pg_index",
    "pg_constraint",
    "pg_inherits",
    "pg_trigger",
    "pg_rewrite",
    "pg_policy",
    "pg_publication",
    "pg_publication_rel",
    "pg_publication_namespace",
    "pg_statistic_ext",
    "pg_partitioned_table",
    "pg_foreign_table",
    "pg_depend",
    "pg_sequence",
    "pg_auth_members",
    "pg_enum",
    "pg_range",
    "pg_extension",
    "pg_event_trigger",
];

/// A subquery over inner joins only, one of whose tables is an always-empty catalog.
fn always_empty(q: &ast::Query) -> bool {
    let ast::SetExpr::Select(select) = q.body.as_ref() else {
        return false;
    };
    let mut empty = false;
    for twj in &select.from {
        for j in &twj.joins {
            if !matches!(
                j.join_operator,
                ast::JoinOperator::Inner(_)
                    | ast::JoinOperator::Join(_)
                    | ast::JoinOperator::CrossJoin(_)
            ) {
                return false;
            }
        }
        let relations = std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation));
        for r in relations {
            if let ast::TableFactor::Table { name, .. } = r
                && parts(name)
                    .last()
                    .is_some_and(|n| EMPTY.contains(&n.as_str()))
            {
                empty = true;
            }
        }
    }
    // An aggregate over no rows still returns one row (count = 0).
    let counts = select
        .projection
        .iter()
        .any(|p| p.to_string().to_ascii_lowercase().contains("count("));
    empty && !counts
}

/// A SELECT over an always-empty catalog returns no rows: its select list
/// becomes NULLs, so that expressions over columns Tsunagu never fills need
/// not plan.
fn blank_empty_selects(body: &mut ast::SetExpr) {
    match body {
        ast::SetExpr::SetOperation { left, right, .. } => {
            blank_empty_selects(left);
            blank_empty_selects(right);
        }
        ast::SetExpr::Select(select) => {
            let probe = ast::Query {
                body: Box::new(ast::SetExpr::Select(select.clone())),
                ..empty_query()
            };
            if !always_empty(&probe) {
                return;
            }
            for (i, item) in select.projection.iter_mut().enumerate() {
                let alias = match item {
                    ast::SelectItem::ExprWithAlias { alias, .. } => alias.clone(),
                    _ => ast::Ident::new(format!("column{}", i + 1)),
                };
                if let Some(null) = parse_expr("NULL") {
                    *item = ast::SelectItem::ExprWithAlias { expr: null, alias };
                }
            }
        }
        _ => {}
    }
}

/// `SELECT n.oid, n.* ...` names `oid` twice, which PostgreSQL allows and
/// DataFusion does not: the explicit column is dropped, the wildcard keeps it.
fn name_columns_beside_wildcards(body: &mut ast::SetExpr) {
    let ast::SetExpr::Select(select) = body else {
        return;
    };
    let qualifiers: Vec<String> = select
        .projection
        .iter()
        .filter_map(|p| match p {
            ast::SelectItem::QualifiedWildcard(
                ast::SelectItemQualifiedWildcardKind::ObjectName(n),
                _,
            ) => parts(n).last().cloned(),
            _ => None,
        })
        .collect();
    if qualifiers.is_empty() {
        return;
    }
    select.projection.retain(|item| {
        !matches!(item, ast::SelectItem::UnnamedExpr(Expr::CompoundIdentifier(ids))
            if ids.len() == 2 && qualifiers.contains(&ids[0].value.to_ascii_lowercase()))
    });
}

/// Names unaliased function columns as PostgreSQL does (`count(*)` →
/// `count`, `current_user` → `current_user`), where the name stays unique.
fn name_function_columns(body: &mut ast::SetExpr) {
    let select = match body {
        ast::SetExpr::Select(select) => select,
        ast::SetExpr::SetOperation { left, .. } => return name_function_columns(left),
        _ => return,
    };
    let name_of = |item: &ast::SelectItem| -> Option<String> {
        match item {
            ast::SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.to_ascii_lowercase()),
            ast::SelectItem::UnnamedExpr(Expr::Identifier(i)) => Some(i.value.to_ascii_lowercase()),
            ast::SelectItem::UnnamedExpr(Expr::CompoundIdentifier(ids)) => {
                ids.last().map(|i| i.value.to_ascii_lowercase())
            }
            _ => None,
        }
    };
    let mut taken: Vec<String> = select.projection.iter().filter_map(name_of).collect();
    let wildcard = select.projection.iter().any(|p| {
        matches!(
            p,
            ast::SelectItem::Wildcard(_) | ast::SelectItem::QualifiedWildcard(..)
        )
    });
    if wildcard {
        return;
    }
    let mut named = Vec::new();
    for (i, item) in select.projection.iter().enumerate() {
        if let ast::SelectItem::UnnamedExpr(Expr::Function(f)) = item
            && f.over.is_none()
            && let Some(name) = parts(&f.name).last().cloned()
        {
            named.push((i, name));
        }
    }
    let count =
        |n: &String, named: &[(usize, String)]| named.iter().filter(|(_, m)| m == n).count();
    for (i, name) in named.clone() {
        if count(&name, &named) > 1 || taken.contains(&name) {
            continue;
        }
        if let ast::SelectItem::UnnamedExpr(e) = &select.projection[i] {
            select.projection[i] = ast::SelectItem::ExprWithAlias {
                expr: e.clone(),
                alias: ast::Ident::new(name.clone()),
            };
            taken.push(name);
        }
    }
}

fn empty_query() -> ast::Query {
    let Ok(ast::Statement::Query(q)) = Parser::new(&PostgreSqlDialect {})
        .try_with_sql("SELECT 1")
        .and_then(|mut p| p.parse_statement())
    else {
        unreachable!("a constant query parses")
    };
    *q
}

/// A subquery reading a set-returning function (`unnest(...)`).
fn over_table_function(q: &ast::Query) -> bool {
    let ast::SetExpr::Select(select) = q.body.as_ref() else {
        return false;
    };
    select.from.iter().any(|t| {
        matches!(&t.relation, ast::TableFactor::Table { args: Some(_), .. })
            || matches!(&t.relation, ast::TableFactor::Function { .. })
    })
}

/// Wraps the one select item of a simple query in an aggregate
/// (unless it already is one); false when the query is not that shape.
fn wrap_single_item(q: &mut ast::Query, aggregate: &str) -> bool {
    let ast::SetExpr::Select(select) = q.body.as_mut() else {
        return false;
    };
    if select.projection.len() != 1
        || !matches!(select.group_by, ast::GroupByExpr::Expressions(ref v, _) if v.is_empty())
    {
        return false;
    }
    let (expr, alias) = match &select.projection[0] {
        ast::SelectItem::UnnamedExpr(e) => (e.clone(), None),
        ast::SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), Some(alias.clone())),
        _ => return false,
    };
    if let Expr::Function(f) = &expr {
        let name = parts(&f.name).last().cloned().unwrap_or_default();
        if matches!(
            name.as_str(),
            "count"
                | "max"
                | "min"
                | "sum"
                | "avg"
                | "array_agg"
                | "string_agg"
                | "bool_and"
                | "bool_or"
        ) {
            return false;
        }
    }
    let Some(wrapped) = parse_expr(&format!("{aggregate}({expr})")) else {
        return false;
    };
    select.projection[0] = match alias {
        Some(alias) => ast::SelectItem::ExprWithAlias {
            expr: wrapped,
            alias,
        },
        None => ast::SelectItem::UnnamedExpr(wrapped),
    };
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut s =
            datafusion::sql::parser::DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {})
                .unwrap()
                .pop_front()
                .map(Statement::Sql)
                .unwrap();
        rewrite(&mut s);
        match s {
            Statement::Sql(s) => s.to_string(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn psql_describe_syntax_becomes_plain_sql() {
        let out = rewritten(
            "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(person)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid)",
        );
        assert_eq!(
            out,
            "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname ~ '^(person)$' AND pg_table_is_visible(c.oid)"
        );
        let out = rewritten(
            "SELECT 'ndb.person'::regclass, t.oid::pg_catalog.regtype::pg_catalog.text FROM pg_type t",
        );
        assert_eq!(
            out,
            "SELECT tsunagu_regclass('ndb.person'), CAST(format_type(t.oid, NULL) AS TEXT) FROM pg_catalog.pg_type t"
        );
        // PostgreSQL names function columns after the function.
        assert_eq!(
            rewritten("SELECT year_of_birth, count(*), max(x), max(y) FROM t GROUP BY 1"),
            "SELECT year_of_birth, count(*) AS count, max(x), max(y) FROM t GROUP BY 1"
        );
    }
}
