//! The privacy layer: what an analyst's query may return.
//!
//! A rewrite of the logical plan, applied when a statement is prepared (so
//! Describe matches Execute). Person-level computation is allowed as long as
//! it stays within each person (joins on `person_id`, windows partitioned by
//! person, aggregates grouped by person, cohorts); what crosses persons is
//! refused, except the aggregates that are released (see `release`): every
//! released row is backed by at least k distinct persons plus a sticky noisy
//! margin, every released number by at least k contributing persons and an
//! effective k of them, with sticky noise; counts are rounded. Functions are
//! allowed by class (`functions`); division, casts and the functions that
//! could fail on data are made total, so errors carry no information.
//! The model is written down in docs/PRIVACY.md.

mod contributions;

/// Functions the privacy layer and projects put in a statement's plan with
/// state of that statement (its policy, counters of what was released, a
/// project's key or population): plans holding them run where they were
/// made.
const STATEMENT_FUNCTIONS: &[&str] = &[
    "tsunagu_keep",
    "tsunagu_release",
    "tsunagu_release_set",
    "tsunagu_person_hash",
    "tsunagu_pseudonym",
    "tsunagu_in_population",
];

/// The functions among [`STATEMENT_FUNCTIONS`] that take what any machine
/// can compute (aggregates, person numbers) and must run where the
/// statement was guarded: the release. The others are applied to rows of
/// persons where they are read: a project's pseudonyms and population on
/// the machine that planned the statement, the keyed person hash that seeds
/// the noise also on a cluster's workers (see [`PERSON_HASH`]).
const RELEASE_FUNCTIONS: &[&str] = &["tsunagu_keep", "tsunagu_release", "tsunagu_release_set"];

/// The keyed person hash, the one function holding state of a statement
/// that a cluster's workers run: they are given its half of the store's
/// key ([`PersonHashKey`]) and register it with [`person_hash_udf`].
pub const PERSON_HASH: &str = "tsunagu_person_hash";

/// Whether a function of this name holds state of its statement.
pub fn is_statement_function(name: &str) -> bool {
    STATEMENT_FUNCTIONS.contains(&name)
}

/// Whether a function of this name is one of the release functions (see
/// [`RELEASE_FUNCTIONS`]).
pub fn is_release_function(name: &str) -> bool {
    RELEASE_FUNCTIONS.contains(&name)
}

/// Whether a function of this name holds state of its statement that only
/// the machine that planned it has: all but [`PERSON_HASH`].
pub fn runs_only_where_planned(name: &str) -> bool {
    is_statement_function(name) && name != PERSON_HASH
}

/// The keyed person hash under `key`, as a cluster's worker registers it.
pub fn person_hash_udf(key: PersonHashKey) -> datafusion::logical_expr::ScalarUDF {
    datafusion::logical_expr::ScalarUDF::new_from_impl(release::PersonHash::new(key))
}

/// Whether `plan` calls a function holding state of its statement (see
/// [`STATEMENT_FUNCTIONS`]), in any expression or subquery.
pub fn holds_statement_state(plan: &datafusion::logical_expr::LogicalPlan) -> bool {
    calls_any(plan, is_statement_function)
}

/// Whether `plan` calls a function holding state of its statement that
/// only this machine has, other than the release functions (a project's key
/// or population).
pub fn holds_state_beyond_release(plan: &datafusion::logical_expr::LogicalPlan) -> bool {
    calls_any(plan, |name| {
        runs_only_where_planned(name) && !is_release_function(name)
    })
}

fn calls_any(plan: &datafusion::logical_expr::LogicalPlan, which: impl Fn(&str) -> bool) -> bool {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::Expr;
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        let _ = node.apply_expressions(|e| {
            e.apply(|x| {
                if let Expr::ScalarFunction(f) = x
                    && which(f.name())
                {
                    found = true;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        });
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

/// The privacy layer's scalar functions that hold no state of a
/// statement, as the rewrite puts them in plans (the total `make_date` and
/// arithmetic).
pub fn plan_scalar_functions() -> Vec<std::sync::Arc<datafusion::logical_expr::ScalarUDF>> {
    std::iter::once(total::make_date_udf())
        .chain(crate::pg_dialect::arithmetic::functions())
        .map(std::sync::Arc::new)
        .collect()
}

/// The privacy layer's functions that hold no state of a statement, as the
/// rewrite puts them in plans: what a process running plan fragments of a
/// guarded statement registers.
pub fn plan_functions() -> Vec<std::sync::Arc<datafusion::logical_expr::AggregateUDF>> {
    vec![std::sync::Arc::new(
        datafusion::logical_expr::AggregateUDF::new_from_impl(contributions::Contributions::new()),
    )]
}
pub mod functions;
mod policy;
mod release;
mod total;
pub use total::{TotalExpressions, total_function};
mod unique;
mod walk;

use std::cell::Cell;
use std::sync::Arc;

use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;

pub use policy::{NoiseKey, Policy, Role, Stricter, TableRole};
pub use release::{PersonHashKey, ReleaseStats};
pub use tsunagu_udfs::Disclosure;

/// The person column every person-level table shows.
pub const PERSON_ID: &str = "person_id";
/// The delivered key column of person-level tables.
pub const PERSON_KEY: &str = "person_key";

/// Why the layer refused a statement.
#[derive(Debug)]
pub enum Refusal {
    /// A privacy rule (SQLSTATE 42501).
    Rule { rule: &'static str, message: String },
    /// A construct analysts cannot use (SQLSTATE 0A000).
    Unsupported { rule: &'static str, message: String },
    /// Planning the rewritten statement failed.
    Plan(DataFusionError),
}

impl Refusal {
    fn rule(rule: &'static str, message: impl Into<String>) -> Self {
        Refusal::Rule {
            rule,
            message: message.into(),
        }
    }

    fn unsupported(rule: &'static str, message: impl Into<String>) -> Self {
        Refusal::Unsupported {
            rule,
            message: message.into(),
        }
    }
}

/// An analyst's statement after the rewrite.
#[derive(Debug)]
pub struct Guarded {
    /// The plan to run: what it returns is safe to release.
    pub plan: LogicalPlan,
    /// What its releases withheld, filled in while it runs.
    pub stats: Arc<ReleaseStats>,
}

fn walker<'a>(policy: &'a Policy, stats: &Arc<ReleaseStats>) -> walk::Walker<'a> {
    walk::Walker {
        policy,
        masks: release::Masks::new(release::Params::new(policy, stats.clone())),
        hidden: Cell::new(0),
    }
}

/// Rewrites an analyst's statement so that only non-disclosive aggregates leave.
pub fn guard(plan: &LogicalPlan, policy: &Policy) -> Result<Guarded, Refusal> {
    let stats = Arc::new(ReleaseStats::default());
    let w = walker(policy, &stats);
    let plan = w.statement(plan)?;
    let plan = walk::harden(plan, &w.masks)?;
    check_output(&plan)?;
    Ok(Guarded { plan, stats })
}

/// Checks an analyst's cohort definition: person-level rows, within-person rules.
pub fn guard_cohort(plan: &LogicalPlan, policy: &Policy) -> Result<LogicalPlan, Refusal> {
    let stats = Arc::new(ReleaseStats::default());
    let w = walker(policy, &stats);
    let plan = w.cohort(plan)?;
    Ok(walk::harden(plan, &w.masks)?)
}

/// No person set (bitmap) leaves as a value.
fn check_output(plan: &LogicalPlan) -> Result<(), Refusal> {
    use datafusion::arrow::datatypes::DataType;
    if plan.schema().fields().iter().any(|f| {
        matches!(
            f.data_type(),
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView
        )
    }) {
        return Err(Refusal::rule(
            "person set",
            "person sets (bitmaps) are not released; measure them with rb_cardinality",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Each rule on plans of a bare DataFusion context: `guard` is a plain
    //! function from plan to plan.

    use super::*;
    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    /// `t(person_id, v, code)`: person-level; `r(code, label)`: reference data.
    async fn context() -> SessionContext {
        let ctx = SessionContext::new();
        crate::pg_dialect::register(&ctx);
        let t = Arc::new(Schema::new(vec![
            Field::new("person_id", DataType::Int64, false),
            Field::new("v", DataType::Int64, true),
            Field::new("code", DataType::Utf8, true),
        ]));
        let ids: Vec<i64> = (0..40).collect();
        let batch = RecordBatch::try_new(
            t.clone(),
            vec![
                Arc::new(Int64Array::from(ids.clone())),
                Arc::new(Int64Array::from(
                    ids.iter().map(|i| i % 7).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from_iter_values(
                    ids.iter().map(|i| format!("c{}", i % 3)),
                )),
            ],
        )
        .unwrap();
        ctx.register_table(
            "t",
            Arc::new(MemTable::try_new(t, vec![vec![batch]]).unwrap()),
        )
        .unwrap();
        let r = Arc::new(Schema::new(vec![
            Field::new("code", DataType::Utf8, false),
            Field::new("label", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            r.clone(),
            vec![
                Arc::new(StringArray::from(vec!["c0", "c1", "c2"])),
                Arc::new(StringArray::from(vec!["zero", "one", "two"])),
            ],
        )
        .unwrap();
        ctx.register_table(
            "r",
            Arc::new(MemTable::try_new(r, vec![vec![batch]]).unwrap()),
        )
        .unwrap();
        ctx
    }

    async fn check(sql: &str) -> Result<Guarded, Refusal> {
        let ctx = context().await;
        let plan = ctx.state().create_logical_plan(sql).await.unwrap();
        guard(&plan, &Policy::default())
    }

    async fn rule(sql: &str) -> &'static str {
        match check(sql).await {
            Err(Refusal::Rule { rule, .. } | Refusal::Unsupported { rule, .. }) => rule,
            Err(Refusal::Plan(e)) => panic!("{sql}: {e}"),
            Ok(g) => panic!("{sql}: allowed\n{}", g.plan.display_indent()),
        }
    }

    #[tokio::test]
    async fn rows_of_persons_do_not_leave() {
        assert_eq!(rule("SELECT v FROM t").await, "row-level output");
        assert_eq!(
            rule("SELECT DISTINCT v FROM t").await,
            "DISTINCT over persons"
        );
        assert_eq!(rule("SELECT v FROM t LIMIT 1").await, "LIMIT over persons");
    }

    #[tokio::test]
    async fn identifiers_only_join_group_and_count() {
        assert_eq!(
            rule("SELECT count(*) FROM t WHERE person_id = 3").await,
            "person identifier in an expression"
        );
        assert_eq!(
            rule("SELECT count(*) FROM t a JOIN t b ON a.v = b.v").await,
            "cross-person join"
        );
        assert_eq!(
            rule("SELECT count(*) FROM (SELECT person_id, v FROM t UNION ALL SELECT person_id, person_id AS v FROM t) u WHERE v = 1").await,
            "person identifier in an expression"
        );
        assert!(
            check("SELECT count(*) FROM t a JOIN t b ON a.person_id = b.person_id")
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn only_windows_within_a_person() {
        assert_eq!(
            rule("SELECT count(*) FROM (SELECT row_number() OVER (ORDER BY v) AS n FROM t) w")
                .await,
            "cross-person window"
        );
        assert!(
            check("SELECT count(*) FROM (SELECT person_id, row_number() OVER (PARTITION BY person_id ORDER BY v) AS n FROM t) w WHERE n = 1")
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn across_persons_only_released_aggregates() {
        assert_eq!(rule("SELECT min(v) FROM t").await, "aggregate not released");
        assert_eq!(
            rule("SELECT count(DISTINCT v) FROM t").await,
            "aggregate not released"
        );
        // Within a person any aggregate; across persons, the release.
        let g =
            check("SELECT avg(m) FROM (SELECT person_id, min(v) AS m FROM t GROUP BY person_id) x")
                .await
                .unwrap();
        let text = format!("{}", g.plan.display_indent());
        assert!(text.contains("tsunagu_release"), "{text}");
        let g = check("SELECT code, count(*) FROM t GROUP BY code")
            .await
            .unwrap();
        let text = format!("{}", g.plan.display_indent());
        assert!(
            text.contains("tsunagu_keep") && text.contains("__tsunagu_p"),
            "{text}"
        );
    }

    /// The guarded plan's text and its result, printed.
    async fn released(sql: &str) -> (String, String) {
        let ctx = context().await;
        let policy = Policy {
            secret: Some(NoiseKey([7; 32])),
            ..Default::default()
        };
        let plan = ctx.state().create_logical_plan(sql).await.unwrap();
        let g = guard(&plan, &policy).unwrap();
        let text = format!("{}", g.plan.display_indent());
        let batches = ctx
            .execute_logical_plan(g.plan)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let shown = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        (text, shown)
    }

    #[tokio::test]
    async fn rows_already_one_per_person_skip_the_per_person_step() {
        let aggregates = |text: &str| text.matches("Aggregate:").count();
        let (two_steps, expected) =
            released("SELECT code, count(*) AS n, sum(v + 10) AS s, avg(v + 10) AS a FROM t GROUP BY code ORDER BY code").await;
        assert_eq!(aggregates(&two_steps), 2, "{two_steps}");
        // Grouped by person and code first: each row is already one person's
        // contribution to its code, so the release adds one aggregate, not two,
        // and releases exactly the same numbers (same persons, same values).
        let (one_step, shown) = released(
            "SELECT code, count(*) AS n, sum(v + 10) AS s, avg(v + 10) AS a \
               FROM (SELECT person_id, code, min(v) AS v FROM t GROUP BY person_id, code) x \
              GROUP BY code ORDER BY code",
        )
        .await;
        assert_eq!(aggregates(&one_step), 2, "{one_step}");
        assert_eq!(shown, expected);
        // Every code released, every number present.
        let cells: Vec<usize> = expected
            .lines()
            .filter(|l| l.starts_with("| c") && !l.starts_with("| code"))
            .map(|l| l.split('|').filter(|c| !c.trim().is_empty()).count())
            .collect();
        assert_eq!(cells, vec![4, 4, 4], "{expected}");
        // Grouped by person, code and value: several rows per person and code
        // are possible, so the per-person step stays.
        let (kept, shown) = released(
            "SELECT code, count(*) AS n, sum(v + 10) AS s, avg(v + 10) AS a \
               FROM (SELECT person_id, code, v FROM t GROUP BY person_id, code, v) x \
              GROUP BY code ORDER BY code",
        )
        .await;
        assert_eq!(aggregates(&kept), 3, "{kept}");
        assert_eq!(shown, expected);
    }

    #[tokio::test]
    async fn reference_data_is_free_and_functions_need_a_class() {
        assert!(check("SELECT label FROM r WHERE code = 'c1'").await.is_ok());
        assert_eq!(
            rule("SELECT count(*) FROM t WHERE random() > 0.5").await,
            "function"
        );
        assert_eq!(
            rule("SELECT count(*) FROM t WHERE chr(v) = 'a'").await,
            "function"
        );
        assert_eq!(
            rule("SELECT count(*) FROM t WHERE regexp_like(code, code)").await,
            "function"
        );
        assert!(
            check("SELECT count(*) FROM t WHERE regexp_like(code, '^c')")
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn divisions_by_a_zero_of_the_data_are_null_for_analysts() {
        // v is 0 for persons 0, 7, 14, ...: unguarded, the statement fails.
        let sql = "SELECT code, count(mod(100, v)) AS m, count(tsunagu_numeric_div(100, v)) AS d \
                   FROM t GROUP BY code ORDER BY code";
        let ctx = context().await;
        let unguarded = ctx.sql(sql).await.unwrap().collect().await;
        assert!(unguarded.is_err(), "{unguarded:?}");
        // Guarded, a zero divisor is NULL: both count the persons whose v is
        // not 0, the same persons, released alike.
        let (text, shown) = released(sql).await;
        assert!(text.matches("nullif").count() >= 2, "{text}");
        let rows: Vec<Vec<&str>> = shown
            .lines()
            .filter(|l| l.starts_with("| c") && !l.starts_with("| code"))
            .map(|l| {
                l.split('|')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .collect();
        assert_eq!(rows.len(), 3, "{shown}");
        assert!(rows.iter().all(|r| r.len() == 3 && r[1] == r[2]), "{shown}");
    }

    #[tokio::test]
    async fn data_dependent_failures_are_made_total() {
        let g = check("SELECT sum(100 / v), count(*) FROM t WHERE CAST(code AS INT) IS NULL")
            .await
            .unwrap();
        let text = format!("{}", g.plan.display_indent());
        assert!(
            text.contains("nullif") && text.contains("TRY_CAST"),
            "{text}"
        );
        assert_eq!(
            rule("EXPLAIN ANALYZE SELECT count(*) FROM t").await,
            "EXPLAIN ANALYZE"
        );
        assert_eq!(rule("INSERT INTO r VALUES ('x', 'y')").await, "writes");
    }
}
