//! The relations of a plan: scans of tables, projections, filters, joins,
//! aggregates, windows, DISTINCT and UNION, each rewritten with what its
//! rows are.

use super::*;

impl Walker<'_> {
    pub(super) fn scope<'s>(
        &self,
        schema: &'s DFSchema,
        rel: &Rel,
        outer: Option<&'s Outer>,
    ) -> Scope<'s> {
        Scope {
            schema,
            persons: columns(schema, &rel.persons),
            keys: columns(schema, &rel.keys),
            outer,
        }
    }

    pub(super) fn scan(&self, scan: &TableScan) -> Result<(LogicalPlan, Rel)> {
        if scan.fetch.is_some() {
            return Err(limit_refusal());
        }
        if scan.table_name.catalog() == Some(tsunagu_catalog::views::FILES_CATALOG) {
            return Err(Refusal::rule(
                "hidden table",
                "delivered files are read through the store's schemas only",
            ));
        }
        // A table function's scan is named `name()`: only classified ones.
        if scan.table_name.schema().is_none()
            && let Some(function) = scan.table_name.table().strip_suffix("()")
        {
            match crate::privacy::functions::table(&function.to_ascii_lowercase()) {
                None => return Err(unclassified(function)),
                Some(Disclosure::Refused(why)) => {
                    return Err(Refusal::rule(
                        "function",
                        format!("{function}() is not available to analysts: {why}"),
                    ));
                }
                Some(_) => {}
            }
        }
        let full = DFSchema::try_from(scan.source.schema().as_ref().clone())?;
        self.table(
            &scan.table_name,
            &full,
            LogicalPlan::TableScan(scan.clone()),
            Some(scan),
        )
    }

    /// A table (a scan, or a store view inlined by the planner) by its role.
    pub(super) fn table(
        &self,
        name: &datafusion::common::TableReference,
        full: &DFSchema,
        plan: LogicalPlan,
        scan: Option<&TableScan>,
    ) -> Result<(LogicalPlan, Rel)> {
        let shown = name.to_string();
        match self.policy.table_role(name, full) {
            TableRole::Hidden => Err(Refusal::rule(
                "hidden table",
                format!("table {shown} is not available to analysts"),
            )),
            TableRole::Public => {
                if name.table() == "cohorts" && name.schema().is_none_or(|s| s == "public") {
                    return Ok((self.mask_cohort_sizes(plan, scan)?, Rel::open()));
                }
                Ok((plan, Rel::open()))
            }
            TableRole::Person => {
                let Some(pid) = full
                    .fields()
                    .iter()
                    .position(|f| f.name() == crate::privacy::PERSON_ID)
                else {
                    return Err(Refusal::rule(
                        "person-level table",
                        format!("table {shown} is person-level but has no person_id column"),
                    ));
                };
                let mut plan = plan;
                let mut hidden = false;
                if let Some(scan) = scan
                    && let Some(p) = &scan.projection
                    && !p.contains(&pid)
                {
                    let mut p = p.clone();
                    p.push(pid);
                    #[allow(deprecated)]
                    let rebuilt = TableScan::try_new(
                        scan.table_name.clone(),
                        scan.source.clone(),
                        Some(p),
                        scan.filters.clone(),
                        None,
                    )?;
                    plan = LogicalPlan::TableScan(rebuilt);
                    hidden = true;
                }
                let schema = plan.schema().clone();
                let at = |name: &str| -> Vec<usize> {
                    schema
                        .fields()
                        .iter()
                        .enumerate()
                        .filter(|(_, f)| f.name() == name)
                        .map(|(i, _)| i)
                        .collect()
                };
                // Identifiers by where they come from: the table's person
                // key, its record key (its first column, when that is an
                // `_id` other than a concept), and the record identifiers
                // of the CDM and of the policy.
                let record_key = full
                    .fields()
                    .first()
                    .map(|f| f.name().as_str())
                    .filter(|n| {
                        n.ends_with("_id")
                            && *n != crate::privacy::PERSON_ID
                            && !n.ends_with("_concept_id")
                    });
                let mut keys = at(crate::privacy::PERSON_KEY);
                keys.extend(
                    schema
                        .fields()
                        .iter()
                        .enumerate()
                        .filter(|(_, f)| {
                            Some(f.name().as_str()) == record_key
                                || self.policy.is_identifier(name, f.name())
                        })
                        .map(|(i, _)| i),
                );
                let rel = Rel {
                    kind: Kind::Person,
                    persons: at(crate::privacy::PERSON_ID),
                    keys,
                    hidden,
                };
                Ok((plan, rel))
            }
        }
    }

    /// The `cohorts` table as analysts see it: sizes released like counts of
    /// their person sets.
    pub(super) fn mask_cohort_sizes(
        &self,
        plan: LogicalPlan,
        scan: Option<&TableScan>,
    ) -> Result<LogicalPlan> {
        let refuse =
            || Refusal::unsupported("cohorts", "the cohorts table cannot be read this way");
        let scan = scan.ok_or_else(refuse)?;
        let provider = datafusion::datasource::source_as_provider(&scan.source)?;
        let Some(table) = provider
            .as_ref()
            .downcast_ref::<crate::cohorts::CohortsTable>()
        else {
            return Err(refuse());
        };
        let bitmap = datafusion::logical_expr::ScalarUDF::new_from_impl(
            crate::cohorts::CohortBitmap::new(table.store.clone(), table.viewer.clone()),
        );
        #[allow(deprecated)]
        let full = LogicalPlan::TableScan(TableScan::try_new(
            scan.table_name.clone(),
            scan.source.clone(),
            None,
            scan.filters.clone(),
            None,
        )?);
        let q = Some(scan.table_name.clone());
        let exprs = plan
            .schema()
            .fields()
            .iter()
            .map(|f| {
                if f.name() == "size" {
                    let set = bitmap.call(vec![Expr::Column(Column::new(q.clone(), "name"))]);
                    datafusion::logical_expr::cast(
                        self.masks.release_set(set),
                        f.data_type().clone(),
                    )
                    .alias_qualified(q.clone(), f.name())
                } else {
                    Expr::Column(Column::new(q.clone(), f.name()))
                }
            })
            .collect();
        Ok(LogicalPlan::Projection(Projection::try_new(
            exprs,
            Arc::new(full),
        )?))
    }

    pub(super) fn projection(
        &self,
        p: &Projection,
        outer: Option<&Outer>,
    ) -> Result<(LogicalPlan, Rel)> {
        let (input, rel) = self.plan(&p.input, outer)?;
        let scope = self.scope(input.schema(), &rel, outer);
        let mut exprs = Vec::new();
        let mut out = Rel {
            persons: vec![],
            keys: vec![],
            hidden: false,
            ..rel.clone()
        };
        for (i, e) in p.expr.iter().enumerate() {
            let e = self.expr(e.clone(), &scope, Pos::Free)?;
            if let Expr::Column(c) = strip(&e) {
                if scope.persons.contains(c) {
                    out.persons.push(i);
                } else if scope.keys.contains(c) {
                    out.keys.push(i);
                }
            }
            exprs.push(e);
        }
        if rel.kind == Kind::Person && out.persons.is_empty() {
            let n = self.hidden.get() + 1;
            self.hidden.set(n);
            exprs.push(
                Expr::Column(scope.persons[0].clone()).alias(format!("__tsunagu_person_{n}")),
            );
            out.persons.push(exprs.len() - 1);
            out.hidden = true;
        } else if rel.hidden && out.persons.iter().all(|&i| is_hidden_name(&exprs[i])) {
            out.hidden = true;
        }
        let plan = LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(input))?);
        Ok((plan, out))
    }

    pub(super) fn filter(&self, f: &Filter, outer: Option<&Outer>) -> Result<(LogicalPlan, Rel)> {
        let conjuncts = split_conjunction_owned(f.predicate.clone());
        let (input, mut rel) = match f.input.as_ref() {
            LogicalPlan::Join(j) => self.join(j, &conjuncts, outer)?,
            other => self.plan(other, outer)?,
        };
        let scope = self.scope(input.schema(), &rel, outer);
        let mut kept = Vec::new();
        let mut bound = false;
        for c in conjuncts {
            if let Some(outer) = outer
                && correlates_person(&c, &scope.persons, &outer.persons)
            {
                bound = true;
                kept.push(c);
                continue;
            }
            if equates_persons(&c, &scope.persons) || equates_records(&c, &scope.keys) {
                kept.push(c);
                continue;
            }
            kept.push(self.expr(c, &scope, Pos::Closed)?);
        }
        if bound && matches!(rel.kind, Kind::Person | Kind::Bound) {
            rel.kind = Kind::Bound;
        }
        let predicate = conjunction(kept).unwrap_or_else(|| datafusion::logical_expr::lit(true));
        let plan = LogicalPlan::Filter(Filter::try_new(predicate, Arc::new(input))?);
        Ok((plan, rel))
    }

    /// A join, with the conjuncts of a filter right above it (implicit joins).
    pub(super) fn join(
        &self,
        j: &Join,
        above: &[Expr],
        outer: Option<&Outer>,
    ) -> Result<(LogicalPlan, Rel)> {
        let (left, l) = self.plan(&j.left, outer)?;
        let (right, r) = self.plan(&j.right, outer)?;
        let lw = left.schema().fields().len();
        let shift = |v: &[usize]| v.iter().map(|i| i + lw).collect::<Vec<_>>();
        let lp = columns(left.schema(), &l.persons);
        let rp = columns(right.schema(), &r.persons);
        let person_sides = [l.kind, r.kind]
            .iter()
            .filter(|k| **k != Kind::Open)
            .count();
        if person_sides == 2 {
            let mut matched = j.on.iter().any(|(a, b)| {
                matches!((strip(a), strip(b)), (Expr::Column(a), Expr::Column(b))
                    if (lp.contains(a) && rp.contains(b)) || (lp.contains(b) && rp.contains(a)))
            });
            let cross = |e: &Expr| {
                if let Expr::BinaryExpr(BinaryExpr {
                    left: a,
                    op: Operator::Eq,
                    right: b,
                }) = e
                    && let (Expr::Column(a), Expr::Column(b)) = (strip(a), strip(b))
                {
                    return (lp.contains(a) && rp.contains(b))
                        || (lp.contains(b) && rp.contains(a));
                }
                false
            };
            if !matched {
                let in_filter = j
                    .filter
                    .iter()
                    .flat_map(|f| split_conjunction_owned(f.clone()))
                    .any(|c| cross(&c));
                matched = in_filter || (j.join_type == JoinType::Inner && above.iter().any(cross));
            }
            if !matched {
                return Err(Refusal::rule(
                    "cross-person join",
                    "joins of person-level relations must match person_id (… ON a.person_id = b.person_id)",
                ));
            }
            if j.join_type == JoinType::Full {
                return Err(Refusal::unsupported(
                    "full outer join",
                    "FULL OUTER JOIN of person-level relations is not available to analysts; use LEFT JOIN or UNION ALL",
                ));
            }
        }
        // Identifiers visible to the join's own expressions: both sides,
        // whatever the join returns.
        let combined = left.schema().join(right.schema())?;
        let join_rel = Rel {
            kind: if person_sides == 0 {
                Kind::Open
            } else {
                Kind::Person
            },
            persons: l.persons.iter().copied().chain(shift(&r.persons)).collect(),
            keys: l.keys.iter().copied().chain(shift(&r.keys)).collect(),
            hidden: false,
        };
        let scope = self.scope(&combined, &join_rel, outer);
        let lscope = self.scope(left.schema(), &l, outer);
        let rscope = self.scope(right.schema(), &r, outer);
        let mut on = Vec::new();
        for (a, b) in &j.on {
            let is_match = matches!((strip(a), strip(b)), (Expr::Column(x), Expr::Column(y))
                if (lp.contains(x) && rp.contains(y)) || (lp.contains(y) && rp.contains(x)));
            let same_record = matches!((strip(a), strip(b)), (Expr::Column(x), Expr::Column(y))
                if x.name == y.name && lscope.keys.contains(x) && rscope.keys.contains(y));
            if is_match || same_record {
                on.push((a.clone(), b.clone()));
            } else {
                on.push((
                    self.expr(a.clone(), &lscope, Pos::Closed)?,
                    self.expr(b.clone(), &rscope, Pos::Closed)?,
                ));
            }
        }
        let filter = match &j.filter {
            None => None,
            Some(f) => {
                let mut kept = Vec::new();
                for c in split_conjunction_owned(f.clone()) {
                    if equates_persons(&c, &scope.persons) || equates_records(&c, &scope.keys) {
                        kept.push(c);
                    } else if let Some(o) = outer
                        && correlates_person(&c, &scope.persons, &o.persons)
                    {
                        kept.push(c);
                    } else {
                        kept.push(self.expr(c, &scope, Pos::Closed)?);
                    }
                }
                conjunction(kept)
            }
        };
        let plan = LogicalPlan::Join(Join::try_new(
            Arc::new(left),
            Arc::new(right),
            on,
            filter,
            j.join_type,
            j.join_constraint,
            j.null_equality,
            j.null_aware,
        )?);
        let kind = match (l.kind, r.kind) {
            (Kind::Open, Kind::Open) => Kind::Open,
            (Kind::Bound, _) | (_, Kind::Bound) => Kind::Bound,
            _ => Kind::Person,
        };
        let (persons, mut keys) = match j.join_type {
            JoinType::Inner => (join_rel.persons.clone(), join_rel.keys.clone()),
            JoinType::Left => (
                l.persons.clone(),
                join_rel
                    .keys
                    .iter()
                    .copied()
                    .chain(shift(&r.persons))
                    .collect(),
            ),
            JoinType::Right => (
                shift(&r.persons),
                join_rel
                    .keys
                    .iter()
                    .copied()
                    .chain(l.persons.clone())
                    .collect(),
            ),
            JoinType::Full => (
                vec![],
                join_rel
                    .persons
                    .iter()
                    .chain(&join_rel.keys)
                    .copied()
                    .collect(),
            ),
            JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => {
                (l.persons.clone(), l.keys.clone())
            }
            JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => {
                (r.persons.clone(), r.keys.clone())
            }
        };
        keys.sort_unstable();
        keys.dedup();
        if kind == Kind::Person && persons.is_empty() {
            // Only the optional side holds persons: its rows may lack one.
            return Err(Refusal::rule(
                "outer join",
                "an outer join that keeps reference rows without a person must be aggregated before person-level use; put the person-level table on the preserved side",
            ));
        }
        let rel = Rel {
            kind,
            persons,
            keys,
            hidden: l.hidden && r.hidden,
        };
        Ok((plan, rel))
    }

    pub(super) fn aggregate(
        &self,
        a: &Aggregate,
        outer: Option<&Outer>,
    ) -> Result<(LogicalPlan, Rel)> {
        let (input, rel) = self.plan(&a.input, outer)?;
        let input = Arc::new(input);
        let scope = self.scope(input.schema(), &rel, outer);
        let mut group = Vec::new();
        let mut persons = Vec::new();
        let mut keys = Vec::new();
        for (i, g) in a.group_expr.iter().enumerate() {
            let g = self.expr(g.clone(), &scope, Pos::Free)?;
            if let Expr::Column(c) = strip(&g) {
                if scope.persons.contains(c) {
                    persons.push(i);
                } else if scope.keys.contains(c) {
                    keys.push(i);
                }
            }
            group.push(g);
        }
        let mut aggs = Vec::new();
        for e in &a.aggr_expr {
            aggs.push(self.expr(e.clone(), &scope, Pos::Free)?);
        }
        let new = Aggregate::try_new(input.clone(), group, aggs)?;
        match rel.kind {
            Kind::Open => Ok((LogicalPlan::Aggregate(new), Rel::open())),
            Kind::Bound => Ok((
                LogicalPlan::Aggregate(new),
                Rel {
                    kind: Kind::Bound,
                    persons,
                    keys,
                    hidden: false,
                },
            )),
            Kind::Person if !persons.is_empty() => Ok((
                LogicalPlan::Aggregate(new),
                Rel {
                    kind: Kind::Person,
                    persons,
                    keys,
                    hidden: false,
                },
            )),
            Kind::Person => {
                if new
                    .group_expr
                    .iter()
                    .any(|g| matches!(g, Expr::GroupingSet(_)))
                {
                    return Err(Refusal::unsupported(
                        "grouping sets",
                        "ROLLUP, CUBE and GROUPING SETS across persons are not yet released to analysts; \
                         run one query per grouping level (for example with UNION ALL)",
                    ));
                }
                if !keys.is_empty() {
                    return Err(Refusal::rule(
                        "identifier in GROUP BY",
                        "GROUP BY person_key returns one row per person; group by person_id inside the query and aggregate across persons at the end",
                    ));
                }
                for e in &new.aggr_expr {
                    if let Expr::AggregateFunction(f) = strip(e) {
                        let name = f.func.name().to_ascii_lowercase();
                        if !release::is_releasable(&name) {
                            return Err(Refusal::rule(
                                "aggregate not released",
                                format!(
                                    "{name}() across persons is not released to analysts: MIN/MAX, percentiles and value lists can reveal one person's values; \
                                     use count, sum or avg (for example count persons in bands of the value)"
                                ),
                            ));
                        }
                    }
                }
                let person = Expr::Column(scope.persons[0].clone());
                let is_id = |e: &Expr| match strip(e) {
                    Expr::Column(c) if scope.persons.contains(c) => release::IdKind::Person,
                    Expr::Column(c) if scope.keys.contains(c) => release::IdKind::Key,
                    _ => release::IdKind::Value,
                };
                match release::release(&new, person, &self.masks, &is_id) {
                    Err(message) => Err(Refusal::rule("aggregate not released", message)),
                    Ok(plan) => Ok((plan?, Rel::open())),
                }
            }
        }
    }

    pub(super) fn window(&self, w: &Window, outer: Option<&Outer>) -> Result<(LogicalPlan, Rel)> {
        let (input, rel) = self.plan(&w.input, outer)?;
        let scope = self.scope(input.schema(), &rel, outer);
        let mut exprs = Vec::new();
        for e in &w.window_expr {
            if rel.kind == Kind::Person {
                let partitioned =
                    match strip(e) {
                        Expr::WindowFunction(f) => f.params.partition_by.iter().any(
                            |p| matches!(strip(p), Expr::Column(c) if scope.persons.contains(c)),
                        ),
                        _ => false,
                    };
                if !partitioned {
                    return Err(Refusal::rule(
                        "cross-person window",
                        format!(
                            "window functions over person-level rows must be PARTITION BY person_id: {}",
                            e.schema_name()
                        ),
                    ));
                }
            }
            exprs.push(self.expr(e.clone(), &scope, Pos::Free)?);
        }
        let plan = LogicalPlan::Window(Window::try_new(exprs, Arc::new(input))?);
        Ok((plan, rel))
    }

    pub(super) fn distinct(
        &self,
        d: &Distinct,
        outer: Option<&Outer>,
    ) -> Result<(LogicalPlan, Rel)> {
        match d {
            Distinct::All(input) => {
                let (input, rel) = self.plan(input, outer)?;
                if rel.kind == Kind::Person && rel.hidden {
                    return Err(Refusal::rule(
                        "DISTINCT over persons",
                        "DISTINCT over person-level rows must keep person_id in the select list (SELECT DISTINCT person_id, ...); \
                         to count distinct values across persons use count(DISTINCT ...)",
                    ));
                }
                Ok((LogicalPlan::Distinct(Distinct::All(Arc::new(input))), rel))
            }
            Distinct::On(on) => {
                let (input, rel) = self.plan(&on.input, outer)?;
                let input = Arc::new(input);
                let scope = self.scope(input.schema(), &rel, outer);
                if rel.kind == Kind::Person
                    && !on
                        .on_expr
                        .iter()
                        .any(|e| matches!(strip(e), Expr::Column(c) if scope.persons.contains(c)))
                {
                    return Err(Refusal::rule(
                        "DISTINCT over persons",
                        "DISTINCT ON over person-level rows must include person_id",
                    ));
                }
                let mut on_expr = Vec::new();
                for e in &on.on_expr {
                    on_expr.push(self.expr(e.clone(), &scope, Pos::Free)?);
                }
                let mut select = Vec::new();
                for e in &on.select_expr {
                    select.push(self.expr(e.clone(), &scope, Pos::Free)?);
                }
                let sort = match &on.sort_expr {
                    None => None,
                    Some(s) => {
                        let mut v = Vec::new();
                        for s in s {
                            v.push(s.with_expr(self.expr(s.expr.clone(), &scope, Pos::Free)?));
                        }
                        Some(v)
                    }
                };
                let new = DistinctOn::try_new(on_expr, select.clone(), sort, input.clone())?;
                let mut out = Rel {
                    persons: vec![],
                    keys: vec![],
                    ..rel.clone()
                };
                for (i, e) in select.iter().enumerate() {
                    if let Expr::Column(c) = strip(e) {
                        if scope.persons.contains(c) {
                            out.persons.push(i);
                        } else if scope.keys.contains(c) {
                            out.keys.push(i);
                        }
                    }
                }
                if rel.kind == Kind::Person && out.persons.is_empty() {
                    return Err(Refusal::rule(
                        "DISTINCT over persons",
                        "DISTINCT ON over person-level rows must select person_id",
                    ));
                }
                Ok((LogicalPlan::Distinct(Distinct::On(new)), out))
            }
        }
    }

    pub(super) fn union(&self, u: &Union, outer: Option<&Outer>) -> Result<(LogicalPlan, Rel)> {
        let mut inputs = Vec::new();
        let mut rels = Vec::new();
        for i in &u.inputs {
            let (p, r) = self.plan(i, outer)?;
            inputs.push(Arc::new(p));
            rels.push(r);
        }
        let refuse = || {
            Refusal::rule(
                "set operation over persons",
                "set operations over person-level rows must keep person_id in the same column of every branch",
            )
        };
        let first = rels[0].clone();
        let out = if rels.iter().all(Rel::is_open) {
            Rel::open()
        } else if rels.iter().all(|r| r.kind == first.kind) {
            let common: Vec<usize> = first
                .persons
                .iter()
                .copied()
                .filter(|p| rels.iter().all(|r| r.persons.contains(p)))
                .collect();
            if common.is_empty() {
                return Err(refuse());
            }
            // A column that is an identifier in any branch is one in the union.
            let mut keys: Vec<usize> = rels
                .iter()
                .flat_map(|r| r.keys.iter().chain(&r.persons).copied())
                .filter(|i| !common.contains(i))
                .collect();
            keys.sort_unstable();
            keys.dedup();
            Rel {
                kind: first.kind,
                persons: common,
                keys,
                hidden: rels.iter().any(|r| r.hidden),
            }
        } else {
            return Err(refuse());
        };
        let plan = LogicalPlan::Union(Union::try_new_with_loose_types(inputs)?);
        Ok((plan, out))
    }
}
