//! Join order for lookups through a bridge table: `facts ⋈ bridge ⋈
//! filtered` is computed as `facts ⋈ (bridge ⋈ filtered)`.
//!
//! OHDSI-style SQL finds records by concept through the vocabulary:
//!
//! ```sql
//! FROM drug_exposure d
//! JOIN concept_ancestor a ON a.descendant_concept_id = d.drug_concept_id
//! JOIN concept c ON c.concept_id = a.ancestor_concept_id
//! WHERE c.concept_code = 'M01A'
//! ```
//!
//! DataFusion joins in the order written, so every record is first joined
//! to every ancestor of its concept (seven times the records) before the
//! filtered concept keeps a few. [`LookupsThroughBridges`] reassociates the
//! inner joins when the outer join's keys come only from the bridge (a
//! table, possibly filtered) and its other input is a filtered table: the
//! bridge and the filtered table are joined first, and the records meet
//! their small result. Inner joins reassociate without changing the
//! answer; the output columns keep their order. The facts side must not be
//! a filtered table itself, so the rule never undoes its own rewrite.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, Result};
use datafusion::logical_expr::{Expr, Join, JoinConstraint, JoinType, LogicalPlan, Projection};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

/// The logical optimizer rule; see the module documentation.
#[derive(Debug, Default)]
pub struct LookupsThroughBridges;

impl OptimizerRule for LookupsThroughBridges {
    fn name(&self) -> &str {
        "lookups_through_bridges"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        None
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        plan.transform_up(|node| match &node {
            LogicalPlan::Join(top) => match reassociate(top)? {
                Some(p) => Ok(Transformed::yes(p)),
                None => Ok(Transformed::no(node)),
            },
            _ => Ok(Transformed::no(node)),
        })
    }
}

/// True for a plain inner join on equalities (and perhaps a filter).
fn is_inner(j: &Join) -> bool {
    j.join_type == JoinType::Inner && j.join_constraint == JoinConstraint::On && !j.null_aware
}

/// The plan as a plain inner join, perhaps under a projection of some of
/// its columns (the optimizer prunes columns between joins).
fn inner(plan: &LogicalPlan) -> Option<&Join> {
    match plan {
        LogicalPlan::Join(j) if is_inner(j) => Some(j),
        LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) => {
            match p.input.as_ref() {
                LogicalPlan::Join(j) if is_inner(j) => Some(j),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A stored table under aliases and projections, and whether a filter
/// applies to it.
fn base_table(plan: &LogicalPlan) -> Option<bool> {
    match plan {
        LogicalPlan::TableScan(s) => Some(!s.filters.is_empty()),
        LogicalPlan::SubqueryAlias(a) => base_table(&a.input),
        LogicalPlan::Projection(p) => base_table(&p.input),
        LogicalPlan::Filter(f) => base_table(&f.input).map(|_| true),
        _ => None,
    }
}

fn filtered_table(plan: &LogicalPlan) -> bool {
    base_table(plan) == Some(true)
}

/// True when every column the expressions read belongs to the schema.
fn reads_only(exprs: &[&Expr], schema: &DFSchema) -> bool {
    exprs
        .iter()
        .all(|e| e.column_refs().iter().all(|c| schema.has_column(c)))
}

/// The reassociated join, or `None` when the pattern does not apply.
fn reassociate(top: &Join) -> Result<Option<LogicalPlan>> {
    if !is_inner(top) || top.filter.as_ref().is_some_and(Expr::is_volatile) {
        return Ok(None);
    }
    // (A ⋈ B) ⋈ C or (B ⋈ A) ⋈ C.
    if let Some(lower) = inner(&top.left)
        && filtered_table(&top.right)
        && let Some(plan) = reassociate_with(top, lower, &top.right, false)?
    {
        return Ok(Some(plan));
    }
    // C ⋈ (A ⋈ B) or C ⋈ (B ⋈ A).
    if let Some(lower) = inner(&top.right)
        && filtered_table(&top.left)
    {
        return reassociate_with(top, lower, &top.left, true);
    }
    Ok(None)
}

/// `top` joins the nested join `lower` with the filtered table `lookup`
/// (its left input when `lookup_left`): the lookup joins the bridge side of
/// `lower` first.
fn reassociate_with(
    top: &Join,
    lower: &Join,
    lookup: &Arc<LogicalPlan>,
    lookup_left: bool,
) -> Result<Option<LogicalPlan>> {
    let keys: Vec<&Expr> = top
        .on
        .iter()
        .map(|(l, r)| if lookup_left { r } else { l })
        .collect();
    let top_filter: Vec<&Expr> = top.filter.iter().collect();
    for (bridge, facts, bridge_left) in [
        (&lower.right, &lower.left, false),
        (&lower.left, &lower.right, true),
    ] {
        let (l, r) = if lookup_left {
            (Arc::clone(lookup), Arc::clone(bridge))
        } else {
            (Arc::clone(bridge), Arc::clone(lookup))
        };
        if base_table(bridge).is_none()
            || filtered_table(facts)
            || !reads_only(&keys, bridge.schema())
            || !l
                .schema()
                .join(r.schema())
                .is_ok_and(|s| reads_only(&top_filter, &s))
        {
            continue;
        }
        // Columns a projection between the joins dropped come back; a
        // clash of names leaves the joins as written.
        let Ok(looked_up) = join_like(top, l, r) else {
            return Ok(None);
        };
        let looked_up = Arc::new(looked_up);
        let (left, right) = if bridge_left {
            (looked_up, Arc::clone(facts))
        } else {
            (Arc::clone(facts), looked_up)
        };
        let Ok(joined) = join_like(lower, left, right) else {
            return Ok(None);
        };
        return in_order(joined, &top.schema).map(Some);
    }
    Ok(None)
}

/// An inner join with the condition of `like` between new inputs.
fn join_like(like: &Join, left: Arc<LogicalPlan>, right: Arc<LogicalPlan>) -> Result<LogicalPlan> {
    Ok(LogicalPlan::Join(Join::try_new(
        left,
        right,
        like.on.clone(),
        like.filter.clone(),
        JoinType::Inner,
        JoinConstraint::On,
        like.null_equality,
        false,
    )?))
}

/// The plan with its columns in the order of `schema` (a projection only
/// when the order differs).
fn in_order(plan: LogicalPlan, schema: &Arc<DFSchema>) -> Result<LogicalPlan> {
    if plan.schema().as_ref() == schema.as_ref() {
        return Ok(plan);
    }
    let exprs = schema
        .iter()
        .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
        .collect();
    Ok(LogicalPlan::Projection(Projection::try_new(
        exprs,
        Arc::new(plan),
    )?))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::prelude::SessionContext;

    use super::LookupsThroughBridges;

    fn context(rule: bool) -> SessionContext {
        let mut state = SessionStateBuilder::new().with_default_features();
        if rule {
            state = state.with_optimizer_rule(Arc::new(LookupsThroughBridges));
        }
        let ctx = SessionContext::new_with_state(state.build());
        let ints = |name: &str, v: Vec<i64>| (name.to_owned(), v);
        let table = |cols: Vec<(String, Vec<i64>)>, text: Option<(&str, Vec<&str>)>| {
            let mut fields: Vec<Field> = cols
                .iter()
                .map(|(n, _)| Field::new(n, DataType::Int64, false))
                .collect();
            let mut arrays: Vec<Arc<dyn datafusion::arrow::array::Array>> = cols
                .into_iter()
                .map(|(_, v)| Arc::new(Int64Array::from(v)) as _)
                .collect();
            if let Some((n, v)) = text {
                fields.push(Field::new(n, DataType::Utf8, false));
                arrays.push(Arc::new(StringArray::from(v)));
            }
            RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
        };
        // Facts: (person, concept); bridge: (ancestor, descendant); lookup:
        // concepts with codes.
        let facts = table(
            vec![
                ints("person_id", (0..40).map(|i| i % 7).collect()),
                ints("concept_id", (0..40).map(|i| i % 5).collect()),
            ],
            None,
        );
        let bridge = table(
            vec![
                ints("ancestor", vec![0, 1, 2, 3, 4, 10, 10, 11, 11, 11]),
                ints("descendant", vec![0, 1, 2, 3, 4, 0, 1, 2, 3, 1]),
            ],
            None,
        );
        let lookup = table(
            vec![ints("id", vec![0, 1, 2, 3, 4, 10, 11])],
            Some(("code", vec!["a", "b", "c", "d", "e", "X", "Y"])),
        );
        ctx.register_batch("facts", facts).unwrap();
        ctx.register_batch("bridge", bridge).unwrap();
        ctx.register_batch("lookup", lookup).unwrap();
        ctx
    }

    async fn answer(ctx: &SessionContext, sql: &str) -> (String, String) {
        let df = ctx.sql(sql).await.unwrap();
        let plan = df
            .clone()
            .into_optimized_plan()
            .unwrap()
            .display_indent()
            .to_string();
        let rows = pretty_format_batches(&df.collect().await.unwrap())
            .unwrap()
            .to_string();
        (rows, plan)
    }

    /// The reassociated joins give the answer of the joins as written (every
    /// column, in order), and the bridge meets the filtered table first.
    #[tokio::test]
    async fn lookups_join_the_bridge_first_with_the_same_answer() {
        for sql in [
            "SELECT * FROM facts f JOIN bridge b ON b.descendant = f.concept_id \
             JOIN lookup l ON l.id = b.ancestor WHERE l.code = 'Y' ORDER BY 1, 2, 3, 4",
            "SELECT * FROM bridge b JOIN facts f ON b.descendant = f.concept_id \
             JOIN lookup l ON l.id = b.ancestor AND l.code IN ('X', 'Y') ORDER BY 1, 2, 3, 4, 5",
            "SELECT f.person_id, l.code FROM lookup l JOIN (facts f JOIN bridge b ON b.descendant = f.concept_id) \
             ON l.id = b.ancestor WHERE l.code = 'X' ORDER BY 1, 2",
        ] {
            let (expected, before) = answer(&context(false), sql).await;
            let (got, after) = answer(&context(true), sql).await;
            assert_eq!(got, expected, "{sql}");
            // The third, nested the other way, may already be ordered by
            // DataFusion's own join flattening.
            assert!(
                before != after || sql.contains("lookup l JOIN ("),
                "not reassociated: {after}"
            );
            assert!(expected.lines().count() > 5, "{expected}");
        }
    }

    /// Without a filter on the lookup, or with the facts filtered, the
    /// joins stay as written.
    #[tokio::test]
    async fn unfiltered_lookups_stay_as_written() {
        for sql in [
            "SELECT * FROM facts f JOIN bridge b ON b.descendant = f.concept_id JOIN lookup l ON l.id = b.ancestor",
            "SELECT * FROM facts f JOIN bridge b ON b.descendant = f.concept_id JOIN lookup l ON l.id = b.ancestor \
             WHERE l.code = 'X' AND f.person_id = 3",
        ] {
            let (_, before) = answer(&context(false), sql).await;
            let (_, after) = answer(&context(true), sql).await;
            assert_eq!(before, after);
        }
    }
}
