//! Expressions within a relation: which stay within a person, which
//! aggregate across persons (and are released), and subqueries.

use super::*;

impl Walker<'_> {
    /// Rewrites a subquery of an expression in the scope of its enclosing row.
    pub(super) fn subquery(&self, s: &Subquery, scope: &Scope) -> Result<(Subquery, Rel)> {
        let mut ids: Vec<Column> = scope.persons.iter().chain(&scope.keys).cloned().collect();
        if let Some(o) = scope.outer {
            ids.extend(o.ids.iter().cloned());
        }
        let outer = Outer {
            persons: scope.persons.clone(),
            ids,
        };
        let (plan, rel) = self.plan(&s.subquery, Some(&outer))?;
        if rel.kind == Kind::Person && !plan.all_out_ref_exprs().is_empty() {
            return Err(Refusal::rule(
                "correlated subquery",
                "a correlated subquery over person-level rows must match the person (… WHERE t.person_id = outer.person_id)",
            ));
        }
        Ok((
            Subquery {
                subquery: Arc::new(plan),
                outer_ref_columns: s.outer_ref_columns.clone(),
                spans: s.spans.clone(),
            },
            rel,
        ))
    }

    /// Checks and rewrites one expression: identifiers only where allowed,
    /// no functions analysts may not call, subqueries rewritten.
    pub(super) fn expr(&self, e: Expr, scope: &Scope, pos: Pos) -> Result<Expr> {
        let id_refusal = |what: &str| {
            Refusal::rule(
                "person identifier in an expression",
                format!(
                    "{what} may only be selected, joined on (a.person_id = b.person_id), grouped by, tested with IS NULL, \
                     or counted (count(DISTINCT person_id)); it cannot be filtered, compared or computed with"
                ),
            )
        };
        match e {
            Expr::Column(c) => {
                let is_id = scope.persons.contains(&c) || scope.keys.contains(&c);
                if is_id && pos == Pos::Closed {
                    return Err(id_refusal(&c.name));
                }
                Ok(Expr::Column(c))
            }
            Expr::OuterReferenceColumn(f, c) => {
                if scope.outer.is_some_and(|o| o.ids.contains(&c)) && pos == Pos::Closed {
                    return Err(id_refusal(&c.name));
                }
                Ok(Expr::OuterReferenceColumn(f, c))
            }
            Expr::Alias(mut a) => {
                *a.expr = self.expr(*a.expr, scope, pos)?;
                Ok(Expr::Alias(a))
            }
            // A pattern from the data could fail to compile on that data.
            Expr::BinaryExpr(b)
                if matches!(
                    b.op,
                    datafusion::logical_expr::Operator::RegexMatch
                        | datafusion::logical_expr::Operator::RegexIMatch
                        | datafusion::logical_expr::Operator::RegexNotMatch
                        | datafusion::logical_expr::Operator::RegexNotIMatch
                ) && !super::is_constant(&b.right) =>
            {
                Err(Refusal::rule(
                    "function",
                    format!(
                        "the pattern of {} must be a constant: a pattern from the data could make it fail on that data",
                        b.op
                    ),
                ))
            }
            Expr::SimilarTo(l) if !super::is_constant(&l.pattern) => Err(Refusal::rule(
                "function",
                "the pattern of SIMILAR TO must be a constant: a pattern from the data could make it fail on that data",
            )),
            Expr::IsNull(x) => Ok(Expr::IsNull(Box::new(self.expr(*x, scope, Pos::Free)?))),
            Expr::IsNotNull(x) => Ok(Expr::IsNotNull(Box::new(self.expr(
                *x,
                scope,
                Pos::Free,
            )?))),
            Expr::ScalarFunction(mut f) => {
                let name = f.func.name().to_ascii_lowercase();
                let extra = |n: &str| self.policy.functions.get(n).copied();
                match crate::privacy::functions::scalar(&name, &extra) {
                    None => return Err(unclassified(&name)),
                    Some(Disclosure::Refused(why)) => {
                        return Err(Refusal::rule(
                            "function",
                            format!("{name}() is not available to analysts: {why}"),
                        ));
                    }
                    Some(Disclosure::ConstantArguments(at)) => {
                        for &i in at {
                            if f.args.get(i).is_some_and(|a| !is_constant(a)) {
                                return Err(Refusal::rule(
                                    "function",
                                    format!(
                                        "argument {} of {name}() must be a constant: a value from the data could make it fail on that data",
                                        i + 1
                                    ),
                                ));
                            }
                        }
                    }
                    Some(Disclosure::PersonSet) => {
                        if f.args.iter().any(|a| is_constant_set(a, scope.schema)) {
                            return Err(Refusal::rule(
                                "person set",
                                format!(
                                    "{name}() takes person sets built in the query (rb_build_agg, cohort_bitmap), not constants or parameters"
                                ),
                            ));
                        }
                    }
                    Some(Disclosure::Total | Disclosure::Hardened) => {}
                }
                if name == "cohort_bitmap"
                    && let Some(bitmap) = f
                        .func
                        .inner()
                        .downcast_ref::<crate::cohorts::CohortBitmap>()
                    && let Some(Expr::Literal(datafusion::common::ScalarValue::Utf8(Some(n)), _)) =
                        f.args.first().map(strip)
                {
                    bitmap
                        .check(n)
                        .map_err(|e| Refusal::rule("cohort owner", e.to_string()))?;
                }
                let free_arg = if name == "rb_contains" { Some(1) } else { None };
                if name == "rb_contains" && !f.args.get(1).is_some_and(|a| is_person(a, scope)) {
                    return Err(Refusal::rule(
                        "person set",
                        "rb_contains(bitmap, person_id) tests the person of the current row; it cannot probe other values",
                    ));
                }
                let mut args = Vec::new();
                for (i, a) in f.args.into_iter().enumerate() {
                    let p = if Some(i) == free_arg {
                        Pos::Free
                    } else {
                        Pos::Closed
                    };
                    if !name.starts_with("rb_") && is_bitmap(&a, scope.schema) {
                        return Err(bitmap_refusal());
                    }
                    args.push(self.expr(a, scope, p)?);
                }
                f.args = args;
                Ok(Expr::ScalarFunction(f))
            }
            Expr::AggregateFunction(mut f) => {
                let name = f.func.name().to_ascii_lowercase();
                match crate::privacy::functions::aggregate(&name) {
                    None => return Err(unclassified(&name)),
                    Some(Disclosure::Refused(why)) => {
                        return Err(Refusal::rule(
                            "function",
                            format!("{name}() is not available to analysts: {why}"),
                        ));
                    }
                    Some(Disclosure::ConstantArguments(at)) => {
                        for &i in at {
                            if f.params.args.get(i).is_some_and(|a| !is_constant(a)) {
                                return Err(Refusal::rule(
                                    "function",
                                    format!(
                                        "argument {} of {name}() must be a constant: a value from the data could make it fail on that data",
                                        i + 1
                                    ),
                                ));
                            }
                        }
                    }
                    Some(Disclosure::PersonSet)
                        if name != "rb_build_agg"
                            && f.params
                                .args
                                .iter()
                                .any(|a| is_constant_set(a, scope.schema)) =>
                    {
                        return Err(bitmap_refusal());
                    }
                    _ => {}
                }
                if name == "rb_build_agg"
                    && !f.params.args.first().is_some_and(|a| is_person(a, scope))
                {
                    return Err(Refusal::rule(
                        "person set",
                        "rb_build_agg builds person sets from person_id only",
                    ));
                }
                let free = matches!(name.as_str(), "count" | "approx_distinct" | "rb_build_agg");
                let mut args = Vec::new();
                for a in f.params.args {
                    if !name.starts_with("rb_") && is_bitmap(&a, scope.schema) {
                        return Err(bitmap_refusal());
                    }
                    args.push(self.expr(a, scope, if free { Pos::Free } else { Pos::Closed })?);
                }
                f.params.args = args;
                if let Some(filter) = f.params.filter.take() {
                    f.params.filter = Some(Box::new(self.expr(*filter, scope, Pos::Closed)?));
                }
                let mut order = Vec::new();
                for s in f.params.order_by {
                    let e = self.expr(s.expr.clone(), scope, Pos::Closed)?;
                    order.push(s.with_expr(e));
                }
                f.params.order_by = order;
                Ok(Expr::AggregateFunction(f))
            }
            Expr::WindowFunction(mut w) => {
                let name = w.fun.name().to_ascii_lowercase();
                match crate::privacy::functions::window(&name) {
                    None => return Err(unclassified(&name)),
                    Some(Disclosure::Refused(why)) => {
                        return Err(Refusal::rule(
                            "function",
                            format!("{name}() is not available to analysts: {why}"),
                        ));
                    }
                    _ => {}
                }
                let mut args = Vec::new();
                for a in std::mem::take(&mut w.params.args) {
                    args.push(self.expr(a, scope, Pos::Closed)?);
                }
                w.params.args = args;
                let mut part = Vec::new();
                for a in std::mem::take(&mut w.params.partition_by) {
                    part.push(self.expr(a, scope, Pos::Free)?);
                }
                w.params.partition_by = part;
                let mut order = Vec::new();
                for s in std::mem::take(&mut w.params.order_by) {
                    let e = self.expr(s.expr.clone(), scope, Pos::Free)?;
                    order.push(s.with_expr(e));
                }
                w.params.order_by = order;
                if let Some(filter) = w.params.filter.take() {
                    w.params.filter = Some(Box::new(self.expr(*filter, scope, Pos::Closed)?));
                }
                Ok(Expr::WindowFunction(w))
            }
            Expr::InSubquery(InSubquery {
                expr,
                subquery,
                negated,
            }) => {
                let (subquery, rel) = self.subquery(&subquery, scope)?;
                let expr = match rel.kind {
                    Kind::Person => {
                        let ok = matches!(strip(&expr), Expr::Column(c) if scope.persons.contains(c))
                            && rel.persons.contains(&0)
                            && !rel.hidden;
                        if !ok {
                            return Err(Refusal::rule(
                                "subquery over persons",
                                "IN (subquery over person-level rows) must compare person_id with person_id (… WHERE person_id IN (SELECT person_id FROM …))",
                            ));
                        }
                        *expr
                    }
                    _ => self.expr(*expr, scope, Pos::Closed)?,
                };
                Ok(Expr::InSubquery(InSubquery::new(
                    Box::new(expr),
                    subquery,
                    negated,
                )))
            }
            Expr::Exists(Exists { subquery, negated }) => {
                let (subquery, rel) = self.subquery(&subquery, scope)?;
                if rel.kind == Kind::Person {
                    return Err(Refusal::rule(
                        "subquery over persons",
                        "EXISTS over person-level rows must be correlated on the person (… WHERE t.person_id = outer.person_id)",
                    ));
                }
                Ok(Expr::Exists(Exists { subquery, negated }))
            }
            Expr::ScalarSubquery(s) => {
                let (subquery, rel) = self.subquery(&s, scope)?;
                if rel.kind == Kind::Person {
                    return Err(Refusal::rule(
                        "subquery over persons",
                        "a scalar subquery over person-level rows must aggregate across persons or be correlated on the person",
                    ));
                }
                Ok(Expr::ScalarSubquery(subquery))
            }
            Expr::SetComparison(SetComparison {
                expr,
                subquery,
                op,
                quantifier,
            }) => {
                let (subquery, rel) = self.subquery(&subquery, scope)?;
                if rel.kind == Kind::Person {
                    return Err(Refusal::rule(
                        "subquery over persons",
                        "ANY/ALL over person-level rows is not available to analysts",
                    ));
                }
                let expr = self.expr(*expr, scope, Pos::Closed)?;
                Ok(Expr::SetComparison(SetComparison {
                    expr: Box::new(expr),
                    subquery,
                    op,
                    quantifier,
                }))
            }
            other => {
                let mut failure = None;
                let out = other
                    .map_children(|child| {
                        if failure.is_some() {
                            return Ok(Transformed::no(child));
                        }
                        if is_bitmap(&child, scope.schema) {
                            failure = Some(bitmap_refusal());
                            return Ok(Transformed::no(child));
                        }
                        match self.expr(child.clone(), scope, Pos::Closed) {
                            Ok(e) => Ok(Transformed::yes(e)),
                            Err(r) => {
                                failure = Some(r);
                                Ok(Transformed::no(child))
                            }
                        }
                    })
                    .map_err(Refusal::Plan)?;
                match failure {
                    Some(r) => Err(r),
                    None => Ok(out.data),
                }
            }
        }
    }
}
