//! Study designs as table functions: `SELECT * FROM sccs(exposure =>
//! 'ATC:M01A', outcome => 'ICD10:K92.2')`.
//!
//! A design is a parameterised query of the study library (`sql/designs/`).
//! A call in `FROM` is expanded, in the parsed statement before planning,
//! into the design's query with the arguments written in, so the result is
//! planned, guarded (the analyst's release rules) and audited like the
//! analyst's own SQL. Parameters are declared in the design's header:
//!
//! ```text
//! -- param NAME KIND DEFAULT description
//! ```
//!
//! with KIND `codes` (`'VOCABULARY:CODE,CODE,-CODE'`, written into the
//! query as `{NAME}` = `'VOCABULARY', 'CODE', ...` for `in_concept_set`
//! and `{NAME.label}` = `'CODE,CODE,-CODE'`), `integer`, `date`
//! (`'YYYY-MM-DD'`), or `source` (a source schema of the store); `-` is no
//! default.

use std::ops::ControlFlow;

use datafusion::error::DataFusionError;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, SetExpr, Statement, TableFactor, UnaryOperator, Value,
    VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::error::{EngineError, Result};

/// The designs: (function name, query with its parameter header).
pub const DESIGNS: &[(&str, &str)] = &[
    ("sccs", include_str!("../../sql/designs/sccs.sql")),
    ("new_users", include_str!("../../sql/designs/new_users.sql")),
    (
        "sequence_symmetry",
        include_str!("../../sql/designs/sequence_symmetry.sql"),
    ),
    (
        "prevalence_incidence",
        include_str!("../../sql/designs/prevalence_incidence.sql"),
    ),
    (
        "linked_outcome",
        include_str!("../../sql/designs/linked_outcome.sql"),
    ),
    (
        "feasibility_funnel",
        include_str!("../../sql/designs/feasibility_funnel.sql"),
    ),
];

/// One declared parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub kind: Kind,
    pub default: Option<String>,
    pub description: String,
}

/// What a parameter takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Codes,
    Integer,
    Date,
    Source,
}

/// A design's parameters, from its header.
pub fn params(query: &str) -> Vec<Param> {
    query
        .lines()
        .filter_map(|l| l.trim().strip_prefix("-- param "))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next()?.to_owned();
            let kind = match words.next()? {
                "codes" => Kind::Codes,
                "integer" => Kind::Integer,
                "date" => Kind::Date,
                "source" => Kind::Source,
                _ => return None,
            };
            let default = words.next().filter(|d| *d != "-").map(str::to_owned);
            Some(Param {
                name,
                kind,
                default,
                description: words.collect::<Vec<_>>().join(" "),
            })
        })
        .collect()
}

fn invalid(design: &str, message: impl std::fmt::Display) -> EngineError {
    EngineError::DataFusion(DataFusionError::Plan(format!("{design}: {message}")))
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The constant an argument gives, as text.
fn constant(design: &str, name: &str, e: &Expr) -> Result<String> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Ok(s.clone()),
            Value::Number(n, _) => Ok(n.clone()),
            _ => Err(invalid(design, format!("{name} must be a constant"))),
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => Ok(format!("-{}", constant(design, name, expr)?)),
        Expr::Nested(e) => constant(design, name, e),
        _ => Err(invalid(design, format!("{name} must be a constant"))),
    }
}

/// The design's query with the call's arguments written in.
pub fn instantiate(design: &str, query: &str, args: &[FunctionArg]) -> Result<String> {
    let params = params(query);
    let mut given: Vec<Option<String>> = vec![None; params.len()];
    for (i, arg) in args.iter().enumerate() {
        let (slot, e) = match arg {
            FunctionArg::Named { name, arg, .. }
            | FunctionArg::ExprNamed {
                arg,
                name: Expr::Identifier(name),
                ..
            } => {
                let Some(slot) = params
                    .iter()
                    .position(|p| p.name.eq_ignore_ascii_case(&name.value))
                else {
                    let known: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
                    return Err(invalid(
                        design,
                        format!("no parameter {}; it takes {}", name.value, known.join(", ")),
                    ));
                };
                (slot, arg)
            }
            FunctionArg::Unnamed(arg) if i < params.len() => (i, arg),
            _ => {
                return Err(invalid(
                    design,
                    format!("takes at most {} arguments", params.len()),
                ));
            }
        };
        if given[slot].is_some() {
            return Err(invalid(
                design,
                format!("{} is given twice", params[slot].name),
            ));
        }
        let FunctionArgExpr::Expr(e) = e else {
            return Err(invalid(
                design,
                format!("{} must be a constant", params[slot].name),
            ));
        };
        given[slot] = Some(constant(design, &params[slot].name, e)?);
    }
    // What each placeholder becomes; written in one pass over the template,
    // so nothing an argument brings is read as a placeholder.
    let mut values: Vec<(String, String)> = Vec::new();
    for (p, value) in params.iter().zip(given) {
        let Some(value) = value.or_else(|| p.default.clone()) else {
            return Err(invalid(
                design,
                format!("{} is required ({})", p.name, p.description),
            ));
        };
        match p.kind {
            Kind::Integer => {
                let n: i64 = value
                    .parse()
                    .map_err(|_| invalid(design, format!("{} must be an integer", p.name)))?;
                values.push((p.name.clone(), format!("({n})")));
            }
            Kind::Date => {
                let Ok(day) = chrono::NaiveDate::parse_from_str(&value, "%Y-%m-%d") else {
                    return Err(invalid(
                        design,
                        format!("{} must be a date 'YYYY-MM-DD'", p.name),
                    ));
                };
                values.push((p.name.clone(), format!("DATE '{}'", day.format("%Y-%m-%d"))));
            }
            Kind::Source => {
                if value.is_empty() || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    return Err(invalid(
                        design,
                        format!("{} must name a source schema", p.name),
                    ));
                }
                values.push((p.name.clone(), value));
            }
            Kind::Codes => {
                let Some((vocabulary, codes)) = value.split_once(':') else {
                    return Err(invalid(
                        design,
                        format!(
                            "{} takes 'VOCABULARY:CODE[,CODE...]', for example 'ATC:M01A'",
                            p.name
                        ),
                    ));
                };
                let codes: Vec<&str> = codes
                    .split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect();
                if codes.is_empty() {
                    return Err(invalid(design, format!("{} names no code", p.name)));
                }
                let mut list = vec![quote(vocabulary.trim())];
                list.extend(codes.iter().map(|c| quote(c)));
                values.push((format!("{}.label", p.name), quote(&codes.join(","))));
                values.push((p.name.clone(), list.join(", ")));
            }
        }
    }
    let mut sql = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(open) = rest.find('{') {
        sql.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            return Err(invalid(design, "the design has an unclosed placeholder"));
        };
        let name = &rest[open + 1..open + close];
        let Some((_, value)) = values.iter().find(|(n, _)| n == name) else {
            return Err(invalid(
                design,
                format!("the design uses an undeclared {{{name}}}"),
            ));
        };
        sql.push_str(value);
        rest = &rest[open + close + 1..];
    }
    sql.push_str(rest);
    Ok(sql)
}

struct Expand {
    error: Option<EngineError>,
}

impl VisitorMut for Expand {
    type Break = ();

    fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name,
            alias,
            args: Some(args),
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let function = name.to_string().to_ascii_lowercase();
        let Some((design, query)) = DESIGNS.iter().find(|(n, _)| *n == function) else {
            return ControlFlow::Continue(());
        };
        let expanded = instantiate(design, query, &args.args).and_then(|sql| {
            let wrapped = format!("SELECT * FROM ({sql}) AS {design}");
            let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, &wrapped)
                .map_err(|e| invalid(design, format!("the design does not parse: {e}")))?;
            if statements.len() != 1 {
                return Err(invalid(design, "the design is not one query"));
            }
            match statements.pop() {
                Some(Statement::Query(q)) => match *q.body {
                    SetExpr::Select(mut s) if s.from.len() == 1 && s.from[0].joins.is_empty() => {
                        s.from.pop().map(|t| t.relation)
                    }
                    _ => None,
                },
                _ => None,
            }
            .ok_or_else(|| invalid(design, "the design is not a query"))
        });
        match expanded {
            Ok(mut derived) => {
                if let (TableFactor::Derived { alias: a, .. }, Some(given)) =
                    (&mut derived, alias.clone())
                {
                    *a = Some(given);
                }
                *factor = derived;
                ControlFlow::Continue(())
            }
            Err(e) => {
                self.error = Some(e);
                ControlFlow::Break(())
            }
        }
    }
}

/// Expands the design calls of a parsed statement.
pub fn expand(statement: &mut DFStatement) -> Result<()> {
    match statement {
        DFStatement::Statement(s) => {
            let mut v = Expand { error: None };
            let _ = s.visit(&mut v);
            if let Some(e) = v.error {
                return Err(e);
            }
        }
        DFStatement::Explain(e) => expand(&mut e.statement)?,
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(sql: &str) -> Result<String> {
        let mut s = datafusion::sql::parser::DFParser::parse_sql(sql)
            .map_err(|e| EngineError::Unsupported(e.to_string()))?
            .pop_front()
            .ok_or_else(|| EngineError::Unsupported("empty".into()))?;
        expand(&mut s)?;
        Ok(s.to_string())
    }

    #[test]
    fn every_design_declares_its_parameters_and_uses_them() {
        for (name, query) in DESIGNS {
            let params = params(query);
            assert!(!params.is_empty(), "{name}");
            for p in &params {
                assert!(
                    query.contains(&format!("{{{}", p.name)),
                    "{name}: {} unused",
                    p.name
                );
            }
        }
    }

    #[test]
    fn calls_expand_into_the_design_with_the_arguments_written_in() {
        let sql = call("SELECT * FROM sccs(exposure => 'ATC:M01A,-M01AH', outcome => 'ICD10:K92.2', risk_end => 60) s").unwrap();
        assert!(
            sql.contains("in_concept_set(drug_concept_id, 'ATC', 'M01A', '-M01AH')"),
            "{sql}"
        );
        assert!(sql.contains("'ICD10', 'K92.2'"), "{sql}");
        assert!(sql.contains("60"), "{sql}");
        assert!(!sql.contains('{'), "{sql}");
        // Positional arguments follow the declared order.
        assert!(call("SELECT * FROM sccs('ATC:M01A', 'ICD10:K92.2')").is_ok());
        // EXPLAIN shows the expanded design.
        let sql = call("EXPLAIN SELECT * FROM sccs('ATC:M01A', 'ICD10:K92.2')").unwrap();
        assert!(sql.contains("in_concept_set"), "{sql}");
    }

    #[test]
    fn bad_calls_name_the_design_and_the_parameter() {
        let e = call("SELECT * FROM sccs(exposure => 'ATC:M01A')")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sccs: outcome is required"), "{e}");
        let e = call("SELECT * FROM sccs(exposure => 'M01A', outcome => 'ICD10:K92.2')")
            .unwrap_err()
            .to_string();
        assert!(e.contains("exposure takes 'VOCABULARY:CODE"), "{e}");
        let e = call(
            "SELECT * FROM sccs(exposure => 'ATC:M01A', outcome => 'ICD10:K92.2', risk_end => 'x')",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("risk_end must be an integer"), "{e}");
        let e = call("SELECT * FROM sccs(exposure => 'ATC:M01A', outcome => 'ICD10:K92.2', source => 'a; b')")
            .unwrap_err()
            .to_string();
        assert!(e.contains("source must name a source schema"), "{e}");
        let e = call("SELECT * FROM sccs(nope => 1)")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no parameter nope"), "{e}");
        let e = call("SELECT * FROM sccs('ATC:M01A', exposure => 'ATC:M01A')")
            .unwrap_err()
            .to_string();
        assert!(e.contains("exposure is given twice"), "{e}");
    }

    #[test]
    fn arguments_cannot_become_sql() {
        // A placeholder inside an argument stays text.
        let sql =
            call("SELECT * FROM sccs(exposure => 'ATC:{outcome}', outcome => 'x'') OR 1=1 --:y')")
                .unwrap();
        assert!(sql.contains("'ATC', '{outcome}'"), "{sql}");
        assert!(sql.contains("'x'') OR 1=1 --'"), "{sql}");
        // A negative integer is a number, not the start of a comment.
        let sql =
            call("SELECT * FROM new_users('ATC:M01A', 'ATC:N02BE01', 'ICD10:K92.2', -5)").unwrap();
        assert!(sql.contains("-(-5)"), "{sql}");
    }
}
