//! Which sets of columns are unique in a plan's output: what lets a release
//! know that its input already holds at most one row per group and person.
//!
//! The analysis is conservative: a set it returns is unique (at most one
//! row for any combination of values, NULL counting as a value as GROUP BY
//! counts it), and a plan it does not know has no unique set. Sources of
//! uniqueness are GROUP BY and DISTINCT; filters, sorts, limits, aliases,
//! windows and projections of plain columns keep it; a join keeps one
//! side's sets when the other side is unique on columns it is joined by.

use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::{Distinct, Expr, ExprSchemable, JoinType, LogicalPlan, Operator};

/// At most this many sets are tracked per plan node.
const MOST: usize = 8;

/// Column positions, sorted, that are unique together.
pub(super) type Key = Vec<usize>;

/// The unique sets of columns of `plan`'s output.
pub(super) fn unique_keys(plan: &LogicalPlan) -> Vec<Key> {
    let mut keys = match plan {
        LogicalPlan::Aggregate(a) => {
            if a.group_expr
                .iter()
                .any(|g| matches!(g, Expr::GroupingSet(_)))
            {
                vec![]
            } else {
                vec![(0..a.group_expr.len()).collect()]
            }
        }
        LogicalPlan::Distinct(Distinct::All(input)) => {
            let mut k = vec![(0..input.schema().fields().len()).collect()];
            k.extend(unique_keys(input));
            k
        }
        LogicalPlan::Filter(f) => unique_keys(&f.input),
        LogicalPlan::Sort(s) => unique_keys(&s.input),
        LogicalPlan::Limit(l) => unique_keys(&l.input),
        LogicalPlan::Repartition(r) => unique_keys(&r.input),
        LogicalPlan::SubqueryAlias(s) => unique_keys(&s.input),
        LogicalPlan::Window(w) => unique_keys(&w.input),
        LogicalPlan::Projection(p) => {
            let input = p.input.schema();
            unique_keys(&p.input)
                .into_iter()
                .filter_map(|key| {
                    key.iter()
                        .map(|&i| {
                            let c = Column::from(input.qualified_field(i));
                            p.expr.iter().position(|e| is_column(e, &c))
                        })
                        .collect::<Option<Vec<usize>>>()
                })
                .map(sorted)
                .collect()
        }
        LogicalPlan::Join(j) => {
            let width = j.left.schema().fields().len();
            let left = unique_keys(&j.left);
            let right = unique_keys(&j.right);
            let shift = |k: &Key| k.iter().map(|i| i + width).collect::<Key>();
            // Whether a side is unique on columns it is joined by, so that a
            // row of the other side meets at most one of its rows.
            // (The pairs of `on` and the equalities of the filter.)
            let mut pairs: Vec<(&Expr, &Expr)> = j.on.iter().map(|(l, r)| (l, r)).collect();
            if let Some(f) = &j.filter {
                for c in conjuncts(f) {
                    if let Expr::BinaryExpr(b) = c
                        && b.op == Operator::Eq
                    {
                        pairs.push((&b.left, &b.right));
                        pairs.push((&b.right, &b.left));
                    }
                }
            }
            let at_most_one =
                |keys: &[Key], this: &DFSchema, other: &DFSchema, right_side: bool| {
                    let joined: Vec<usize> = pairs
                        .iter()
                        .filter_map(|&(l, r)| {
                            let (mine, theirs) = if right_side { (r, l) } else { (l, r) };
                            // The other side's value is fixed for a row of the
                            // other side: it reads only that side's columns.
                            let fixed = theirs
                                .column_refs()
                                .iter()
                                .all(|c| other.has_column(c) && !this.has_column(c));
                            // And the comparison is of equal types: coercion
                            // would cast the column, and a cast can map distinct
                            // values to one ('1' and '01' both to 1).
                            let same_type = matches!(
                                (mine.get_type(this), theirs.get_type(other)),
                                (Ok(a), Ok(b)) if a == b
                            );
                            let fixed = fixed && same_type;
                            match strip(mine) {
                                Expr::Column(c) if fixed => this.index_of_column(c).ok(),
                                _ => None,
                            }
                        })
                        .collect();
                    keys.iter().any(|k| k.iter().all(|i| joined.contains(i)))
                };
            let right_once = at_most_one(&right, j.right.schema(), j.left.schema(), true);
            let left_once = at_most_one(&left, j.left.schema(), j.right.schema(), false);
            match j.join_type {
                JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full => {
                    let mut k = Vec::new();
                    // A pair of rows is unique on the union of the sides'
                    // sets (not in a full join: two unmatched rows, one per
                    // side, may both be NULL on it).
                    if j.join_type != JoinType::Full {
                        for l in &left {
                            for r in &right {
                                k.push(sorted(l.iter().copied().chain(shift(r)).collect()));
                            }
                        }
                    }
                    let keeps_left = matches!(j.join_type, JoinType::Inner | JoinType::Left);
                    let keeps_right = matches!(j.join_type, JoinType::Inner | JoinType::Right);
                    if right_once && keeps_left {
                        k.extend(left.iter().cloned());
                    }
                    if left_once && keeps_right {
                        k.extend(right.iter().map(shift));
                    }
                    k
                }
                JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => left,
                JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => right,
            }
        }
        _ => vec![],
    };
    keys.sort_by_key(|k| k.len());
    keys.dedup();
    keys.truncate(MOST);
    keys
}

/// Whether `plan` holds at most one row for any values of the columns at
/// `columns`.
pub(super) fn is_unique_on(plan: &LogicalPlan, columns: &[usize]) -> bool {
    unique_keys(plan)
        .iter()
        .any(|k| k.iter().all(|i| columns.contains(i)))
}

fn sorted(mut k: Key) -> Key {
    k.sort_unstable();
    k.dedup();
    k
}

fn conjuncts(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::BinaryExpr(b) if b.op == Operator::And => {
            let mut v = conjuncts(&b.left);
            v.extend(conjuncts(&b.right));
            v
        }
        e => vec![e],
    }
}

fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => strip(&a.expr),
        e => e,
    }
}

fn is_column(e: &Expr, c: &Column) -> bool {
    matches!(strip(e), Expr::Column(x) if x == c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn keys(sql: &str) -> Vec<Key> {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t (p BIGINT, y BIGINT, v BIGINT) AS VALUES (1, 2020, 5), (1, 2020, 6), (2, 2021, 7)")
            .await
            .unwrap();
        ctx.sql("CREATE TABLE u (p BIGINT, w BIGINT) AS VALUES (1, 3), (1, 4)")
            .await
            .unwrap();
        let plan = ctx.state().create_logical_plan(sql).await.unwrap();
        unique_keys(&plan)
    }

    #[tokio::test]
    async fn group_by_and_distinct_are_unique() {
        assert_eq!(
            keys("SELECT p, y, count(*) FROM t GROUP BY p, y").await,
            vec![vec![0, 1]]
        );
        assert_eq!(
            keys("SELECT DISTINCT y, p FROM t").await.first(),
            Some(&vec![0, 1])
        );
        // A base table and a projection that drops a key column: nothing.
        assert!(keys("SELECT p, y FROM t").await.is_empty());
        assert!(
            keys("SELECT y, n FROM (SELECT p, y, count(*) AS n FROM t GROUP BY p, y) s")
                .await
                .is_empty()
        );
    }

    #[tokio::test]
    async fn joins_keep_a_side_joined_on_a_unique_key_of_the_other() {
        // u grouped by p is unique on p: t's groups stay unique.
        let k = keys(
            "SELECT a.p, a.y, b.n FROM (SELECT p, y FROM t GROUP BY p, y) a \
             LEFT JOIN (SELECT p, count(*) AS n FROM u GROUP BY p) b ON b.p = a.p",
        )
        .await;
        assert!(k.contains(&vec![0, 1]), "{k:?}");
        // Joined to u's rows (two per person): not unique on (p, y).
        let k = keys(
            "SELECT a.p, a.y, b.w FROM (SELECT p, y FROM t GROUP BY p, y) a \
             LEFT JOIN u b ON b.p = a.p",
        )
        .await;
        assert!(!k.contains(&vec![0, 1]), "{k:?}");
        // Joined to a text column by a number: coercion casts the text, and
        // distinct texts ('1', '01') meet the same number. Not trusted.
        let k = keys(
            "SELECT a.p, a.y FROM (SELECT p, y FROM t GROUP BY p, y) a \
             JOIN (SELECT DISTINCT c FROM (VALUES ('1'), ('01')) v(c)) b ON b.c = 1",
        )
        .await;
        assert!(!k.contains(&vec![0, 1]), "{k:?}");
        // Joined on a computed value of the unique side: not trusted.
        let k = keys(
            "SELECT a.p, a.y FROM (SELECT p, y FROM t GROUP BY p, y) a \
             JOIN (SELECT p FROM u GROUP BY p) b ON b.p + 0 = a.p",
        )
        .await;
        assert!(!k.contains(&vec![0, 1]), "{k:?}");
    }
}
