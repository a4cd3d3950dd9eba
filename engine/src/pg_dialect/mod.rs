//! PostgreSQL's SQL on DataFusion. Analysts connect with PostgreSQL clients
//! and write PostgreSQL (by hand, or rendered by OHDSI SqlRender); where
//! DataFusion 55 answers differently from PostgreSQL 15, the difference is
//! closed here, each with DataFusion's own extension point:
//!
//! - [`operators`]: an `ExprPlanner` for date arithmetic (`date - date` is
//!   days, `date + 365 * INTERVAL '1 day'`) and `EXTRACT` (a numeric);
//! - [`age`]: `age(a, b)`, the symbolic difference of two timestamps;
//! - [`functions`]: `sign`, `ceiling`, `date_part` returning `double precision`,
//!   and [`interval_mul`];
//! - [`formatting`]: `to_char`, `to_date` and `to_timestamp` with
//!   PostgreSQL's templates (`'0000'`, `'YYYY-MM-DD'`);
//! - [`numeric_constants`]: `0.1` and `1e3` as exact `numeric` constants,
//!   and [`float_and_numeric`]: a `double precision` meeting a `numeric`
//!   (in a comparison, `CASE`, `coalesce`, `UNION`) is `double precision`;
//! - [`integer_casts`]: `2.5::int` rounded as PostgreSQL rounds it;
//! - [`date_input`]: date literals read as PostgreSQL reads them
//!   (`DATE '01-jan-2011'`);
//! - [`subquery_values`]: an analyzer rule for `EXISTS` and `IN (subquery)`
//!   used as values, and subqueries inside aggregations;
//! - [`rewrite`]: the parsed statement, for date constants, set-returning
//!   functions' column names and repeated output column names;
//! - [`result_schema`]: the result's schema as announced before execution
//!   (the analyzed plan's), and batches made to match it;
//! - [`float_text`]: floats as PostgreSQL writes them;
//! - [`interval_text`]: intervals as PostgreSQL writes them, and
//!   [`datetime_text`] timestamps and times;
//! - [`numeric_aggregates`]: an analyzer rule for `sum` of `bigint` and
//!   `avg` of integers as `numeric`, and [`numeric_division`] for a
//!   `numeric` divided at PostgreSQL's scale, and [`numeric_variance`] for
//!   `variance` and `stddev` of integers as `numeric`;
//! - [`percentile_disc`]: `percentile_disc(f) WITHIN GROUP (ORDER BY x)`;
//! - [`column_names`]: PostgreSQL's names for unaliased output expressions
//!   (`count`, `case`, `?column?`).
//!
//! `docs/SQL_API.md` lists what is matched and what still differs.

pub mod age;
pub mod arithmetic;
pub mod bounded_lengths;
pub mod column_names;
pub mod date_input;
pub mod datetime_text;
pub mod float_and_numeric;
pub mod float_text;
pub mod formatting;
pub mod functions;
pub mod integer_casts;
pub mod interval_mul;
pub mod interval_text;
pub mod lateral;
pub mod numeric_aggregates;
pub mod numeric_constants;
pub mod numeric_division;
pub mod numeric_variance;
pub mod operators;
pub mod percentile_disc;
pub mod result_schema;
pub mod rewrite;
pub mod subquery_values;

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result};
use datafusion::execution::SessionStateDefaults;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::planner::ExprPlanner;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::optimizer::AnalyzerRule;
use datafusion::optimizer::analyzer::Analyzer;
use datafusion::optimizer::analyzer::type_coercion::TypeCoercion;
use datafusion::prelude::SessionContext;

/// Installs PostgreSQL's planning on a session state being built (after
/// `with_default_features`): its operators first; the aggregates' types
/// before DataFusion's type coercion, its other analyzer rules last.
pub fn install(builder: SessionStateBuilder) -> SessionStateBuilder {
    let mut planners: Vec<Arc<dyn ExprPlanner>> = vec![Arc::new(operators::PgOperators)];
    planners.extend(SessionStateDefaults::default_expr_planners());
    let mut rules = Analyzer::new().rules;
    let coercion = rules
        .iter()
        .position(|r| r.name() == AnalyzerRule::name(&TypeCoercion::new()))
        .unwrap_or(0);
    // In this order: aggregates, then quotients typed as numerics; then
    // floats meeting numerics; then casts to integers rounded; then
    // DataFusion's coercion.
    rules.insert(coercion, Arc::new(integer_casts::RoundedIntegerCasts));
    rules.insert(coercion, Arc::new(float_and_numeric::FloatsOverNumerics));
    rules.insert(coercion, Arc::new(numeric_division::NumericDivision));
    rules.insert(coercion, Arc::new(numeric_aggregates::NumericAggregates));
    builder
        .with_expr_planners(planners)
        .with_analyzer_rules(rules)
        .with_analyzer_rule(Arc::new(subquery_values::SubqueriesAsValues))
        .with_analyzer_rule(Arc::new(date_input::DateCasts))
        .with_analyzer_rule(Arc::new(arithmetic::CheckedIntegerArithmetic))
}

/// Rewrites every node of `plan` (subqueries included) bottom-up with `f`.
/// Once a node is rewritten, every node visited after it (its ancestors
/// among them) recomputes its schema from its inputs' new types.
pub(crate) fn retype_up(
    plan: LogicalPlan,
    f: impl Fn(LogicalPlan) -> Result<Transformed<LogicalPlan>>,
) -> Result<LogicalPlan> {
    let retyped = std::cell::Cell::new(false);
    plan.transform_up_with_subqueries(|p| {
        let t = f(p)?;
        retyped.set(retyped.get() || t.transformed);
        if retyped.get() {
            t.data.recompute_schema().map(Transformed::yes)
        } else {
            Ok(t)
        }
    })
    .map(|t| t.data)
}

/// Rewrites each expression of one plan node bottom-up with `f`, given the
/// schema the node's expressions are typed against, keeping their output
/// names. A leaf, or a node of more than two inputs, is left as it is.
pub(crate) fn rewrite_expressions(
    p: LogicalPlan,
    f: impl Fn(Expr, &DFSchema) -> Result<Transformed<Expr>>,
) -> Result<Transformed<LogicalPlan>> {
    let Some(schema) = inputs_schema(&p) else {
        return Ok(Transformed::no(p));
    };
    let names = NamePreserver::new(&p);
    p.map_expressions(|e| {
        let name = names.save(&e);
        Ok(e.transform_up(|e| f(e, &schema))?
            .update_data(|e| name.restore(e)))
    })
}

/// The schema a node's expressions are typed against: its input's, or both
/// inputs' of a join; `None` for a leaf or a node of more inputs.
pub(crate) fn inputs_schema(p: &LogicalPlan) -> Option<DFSchema> {
    match p.inputs().as_slice() {
        [one] => Some(one.schema().as_ref().clone()),
        [l, r] => {
            let mut both = l.schema().as_ref().clone();
            both.merge(r.schema());
            Some(both)
        }
        _ => None,
    }
}

/// Registers PostgreSQL's functions (names and types) on a context.
pub fn register(ctx: &SessionContext) {
    for f in functions::functions() {
        ctx.register_udf(f);
    }
    for f in formatting::functions() {
        ctx.register_udf(f);
    }
    for f in bounded_lengths::functions() {
        ctx.register_udf(f);
    }
    for f in arithmetic::functions() {
        ctx.register_udf(f);
    }
    ctx.register_udf(interval_mul::interval_mul().as_ref().clone());
    ctx.register_udf(age::age());
    ctx.register_udf(numeric_division::numeric_div().as_ref().clone());
    ctx.register_udaf(numeric_aggregates::numeric_avg().as_ref().clone());
    for m in [
        numeric_variance::Moment::VarSamp,
        numeric_variance::Moment::VarPop,
        numeric_variance::Moment::StddevSamp,
        numeric_variance::Moment::StddevPop,
    ] {
        ctx.register_udaf(numeric_variance::numeric_moment(m).as_ref().clone());
    }
    ctx.register_udaf(percentile_disc::percentile_disc().as_ref().clone());
    ctx.register_udaf(
        datafusion::functions_aggregate::variance::var_samp_udaf()
            .as_ref()
            .clone()
            .with_aliases(["variance"]),
    );
}
