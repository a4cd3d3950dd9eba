//! What a failed plan lacks: a table or function the statement names that
//! the session does not know, found by looking each name up (DataFusion
//! reports both as untyped planning errors). A known function called with
//! arguments it does not accept is typed by its error (`ErrorKind::of`).

use std::ops::ControlFlow;

use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::sql::parser::Statement as SqlStatement;
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArguments, ObjectName, TableFactor, Visit, Visitor, visit_expressions,
};

use crate::error::{EngineError, ErrorKind};

/// The error of a statement that failed to plan, typed as an undefined
/// table or function when one of its names does not resolve.
pub(super) fn planning_error(
    state: &SessionState,
    statement: &SqlStatement,
    e: DataFusionError,
) -> EngineError {
    if !matches!(e.find_root(), DataFusionError::Plan(_)) {
        return e.into();
    }
    if unknown_table(state, statement) {
        return EngineError::Undefined(ErrorKind::UndefinedTable, e);
    }
    if unknown_function(state, statement) {
        return EngineError::Undefined(ErrorKind::UndefinedFunction, e);
    }
    e.into()
}

/// True when a table the statement reads is in no schema the session sees.
fn unknown_table(state: &SessionState, statement: &SqlStatement) -> bool {
    let Ok(references) = state.resolve_table_references(statement) else {
        return false;
    };
    let options = state.config_options();
    let (catalog, schema) = (
        options.catalog.default_catalog.as_str(),
        options.catalog.default_schema.as_str(),
    );
    let calls = table_function_calls(statement);
    references.into_iter().any(|reference| {
        // A call `FROM f(...)` is a function, looked up as one.
        if calls.contains(&reference.to_string()) {
            return false;
        }
        let resolved = reference.clone().resolve(catalog, schema);
        match state.schema_for_ref(reference) {
            Ok(provider) => !provider.table_exist(&resolved.table),
            Err(_) => true,
        }
    })
}

/// Names the SQL planner reads itself, not from the function registry.
const PLANNED_BY_SQL: &[&str] = &[
    "unnest",
    "unnest_outer",
    "grouping",
    "struct",
    "make_map",
    "exists",
];

/// The names of the table functions a statement calls (`FROM f(...)`).
fn table_function_calls(statement: &SqlStatement) -> Vec<String> {
    struct Calls(Vec<String>);
    impl Visitor for Calls {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table {
                name,
                args: Some(_),
                ..
            } = factor
                && let Some(name) = function_name(name)
            {
                self.0.push(name);
            }
            ControlFlow::Continue(())
        }
    }
    let SqlStatement::Statement(statement) = statement else {
        return Vec::new();
    };
    let mut calls = Calls(Vec::new());
    let _ = statement.visit(&mut calls);
    calls.0
}

/// A function's name as the registry holds it: unquoted parts in lower
/// case, joined by dots.
fn function_name(name: &ObjectName) -> Option<String> {
    let mut parts = Vec::with_capacity(name.0.len());
    for part in &name.0 {
        parts.push(crate::pg_dialect::column_names::ident(part.as_ident()?));
    }
    Some(parts.join("."))
}

/// True when the statement calls a function the session has not registered.
fn unknown_function(state: &SessionState, statement: &SqlStatement) -> bool {
    if table_function_calls(statement)
        .iter()
        .any(|name| !state.table_functions().contains_key(name))
    {
        return true;
    }
    let SqlStatement::Statement(statement) = statement else {
        return false;
    };
    let known = |name: &str| {
        state.scalar_functions().contains_key(name)
            || state.aggregate_functions().contains_key(name)
            || state.window_functions().contains_key(name)
            || state.higher_order_functions().contains_key(name)
            || PLANNED_BY_SQL.contains(&name)
    };
    let found = visit_expressions(statement.as_ref(), |expr| match expr {
        // Without parentheses (`LOCALTIME`) an unknown name is a column.
        Expr::Function(f) if !matches!(f.args, FunctionArguments::None) => {
            let Some(name) = function_name(&f.name) else {
                return ControlFlow::Continue(());
            };
            if known(&name) {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        }
        _ => ControlFlow::Continue(()),
    });
    found.is_break()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;
    use datafusion::sql::parser::DFParser;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;

    fn statement(sql: &str) -> SqlStatement {
        DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {})
            .unwrap()
            .pop_front()
            .unwrap()
    }

    async fn kind(ctx: &SessionContext, sql: &str) -> ErrorKind {
        let state = ctx.state();
        let statement = statement(sql);
        let e = state
            .statement_to_plan(statement.clone())
            .await
            .expect_err(sql);
        planning_error(&state, &statement, e).kind()
    }

    #[tokio::test]
    async fn names_that_do_not_resolve_are_typed() {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t (a INT) AS VALUES (1)")
            .await
            .unwrap();
        for (sql, want) in [
            ("SELECT * FROM nope", ErrorKind::UndefinedTable),
            ("SELECT * FROM public.nope", ErrorKind::UndefinedTable),
            ("SELECT * FROM nowhere.t", ErrorKind::UndefinedTable),
            ("SELECT no_such_fn(a) FROM t", ErrorKind::UndefinedFunction),
            (
                "SELECT a FROM t GROUP BY a HAVING NoSuch(a) > 1",
                ErrorKind::UndefinedFunction,
            ),
            ("SELECT b FROM t", ErrorKind::UndefinedColumn),
            ("SELECT sqrt(a, a, a) FROM t", ErrorKind::UndefinedFunction),
            (
                "SELECT * FROM no_such_series(1, 3)",
                ErrorKind::UndefinedFunction,
            ),
        ] {
            assert_eq!(kind(&ctx, sql).await, want, "{sql}");
        }
        // A table function is not a missing table.
        assert!(ctx.sql("SELECT * FROM generate_series(1, 3)").await.is_ok());
        let state = ctx.state();
        assert!(unknown_table(
            &state,
            &statement("SELECT * FROM generate_series(1, 3) g, nope")
        ));
        assert!(!unknown_table(
            &state,
            &statement("SELECT * FROM generate_series(1, 3)")
        ));
    }
}
