//! Planning: a statement into a prepared plan, through the privacy layer
//! for analysts and viewers ([`super::guard`]), with PostgreSQL's names and
//! announced types, and a refused or failing statement audited.

use super::*;

impl Session {
    /// Plans one parsed statement; for analysts, through the privacy layer.
    /// A refused or failing statement is audited here.
    pub async fn plan_statement(&self, statement: Statement) -> Result<Prepared> {
        let sql = statement_text(&statement);
        match self.plan_checked(statement, sql.clone()).await {
            Ok(p) => Ok(p),
            Err(e) => {
                let (decision, rule) = match &e {
                    EngineError::Refused { rule, .. } => {
                        (Decision::Refused, Some(rule.to_string()))
                    }
                    other => (Decision::Error, Some(other.audit_class())),
                };
                self.log(&sql, decision, rule, None, 0)?;
                Err(e)
            }
        }
    }

    pub(super) async fn plan_checked(&self, statement: Statement, sql: String) -> Result<Prepared> {
        let analyst = self.role() != Role::Steward;
        if self.role() == Role::Viewer
            && let Some(what) = match &statement {
                Statement::CreateCohort { .. } => Some("CREATE COHORT"),
                Statement::DropCohort { .. } => Some("DROP COHORT"),
                Statement::CreateResult { .. } => Some("CREATE RESULT"),
                Statement::ReleaseResult { .. } => Some("RELEASE RESULT"),
                _ => None,
            }
        {
            return Err(EngineError::Refused {
                code: "42501",
                rule: "read-only role",
                message: format!(
                    "{what} is refused to the viewer role, which only reads [rule: read-only role]"
                ),
            });
        }
        if self.project().is_some() {
            self.open_project("a statement")?;
        }
        let statement = match statement {
            Statement::Sql(s) => s,
            Statement::Project { command, .. } => {
                if self.role() != Role::Steward {
                    return Err(EngineError::Refused {
                        code: "42501",
                        rule: "steward command",
                        message: format!(
                            "{} is a steward's command [rule: steward command]",
                            command.name()
                        ),
                    });
                }
                return Ok(Prepared::new(
                    LogicalPlanBuilder::empty(false).build()?,
                    sql,
                    Some(Action::Project(command)),
                ));
            }
            Statement::CreateResult { name, query } => {
                cohorts::check_name(&name)?;
                self.open_project("CREATE RESULT")?;
                let mut inner = self.parse(&query)?;
                let Some(Statement::Sql(inner)) = inner.pop().filter(|_| inner.is_empty()) else {
                    return Err(EngineError::Unsupported(
                        "CREATE RESULT: the definition must be one query".into(),
                    ));
                };
                let inner = self.plan_raw(inner).await?;
                if inner.action.is_some() || !inner.parameter_types.is_empty() {
                    return Err(EngineError::Unsupported(
                        "CREATE RESULT: the definition must be a query without parameters".into(),
                    ));
                }
                let plan = if analyst {
                    guard(|| privacy::guard(&inner.plan, &self.analyst_policy()))?.plan
                } else {
                    inner.plan.clone()
                };
                return Ok(Prepared::new(
                    LogicalPlanBuilder::empty(false).build()?,
                    sql,
                    Some(Action::CreateResult {
                        name,
                        definition: query.trim().to_owned(),
                        query: plan,
                        by_rules: analyst,
                    }),
                ));
            }
            Statement::ReleaseResult { name, purpose } => {
                cohorts::check_name(&name)?;
                self.open_project("RELEASE RESULT")?;
                return Ok(Prepared::new(
                    LogicalPlanBuilder::empty(false).build()?,
                    sql,
                    Some(Action::ReleaseResult { name, purpose }),
                ));
            }
            Statement::CreateCohort { name, query } => {
                cohorts::check_name(&name)?;
                let mut inner = self.parse(&query)?;
                let Some(Statement::Sql(inner)) = inner.pop().filter(|_| inner.is_empty()) else {
                    return Err(EngineError::Unsupported(
                        "CREATE COHORT: the definition must be one query".into(),
                    ));
                };
                let inner = self.plan_raw(inner).await?;
                let inner_plan = if analyst {
                    guard(|| privacy::guard_cohort(&inner.plan, &self.analyst_policy()))?
                } else {
                    inner.plan.clone()
                };
                if inner.action.is_some() {
                    return Err(EngineError::Unsupported(
                        "CREATE COHORT: the definition must be a query".into(),
                    ));
                }
                if !inner.parameter_types.is_empty() {
                    return Err(EngineError::Unsupported(
                        "CREATE COHORT: the query cannot take parameters".into(),
                    ));
                }
                let schema = inner.schema();
                cohorts::cohort_rows(&schema, &[])?;
                return Ok(Prepared::new(
                    LogicalPlanBuilder::empty(false).build()?,
                    sql,
                    Some(Action::CreateCohort {
                        name,
                        definition: query.trim().to_owned(),
                        query: inner_plan,
                    }),
                ));
            }
            Statement::DropCohort { name, if_exists } => {
                cohorts::check_name(&name)?;
                return Ok(Prepared::new(
                    LogicalPlanBuilder::empty(false).build()?,
                    sql,
                    Some(Action::DropCohort { name, if_exists }),
                ));
            }
        };
        let mut prepared = self.plan_raw(statement).await?;
        prepared.sql = sql;
        if analyst {
            let guarded = guard(|| privacy::guard(&prepared.plan, &self.analyst_policy()))?;
            prepared.plan = guarded.plan;
            prepared.release = Some(guarded.stats);
            prepared.result_schema =
                result_schema::announced(&self.ctx.state(), &prepared.plan, &prepared.names);
        }
        if self.results.is_some() {
            prepared.reusable = self.store_tables.read_only_by(&prepared.plan);
            // Answers are kept for the whole store only.
            prepared.repeatable = prepared.reusable
                && self.project().is_none()
                && crate::result_cache::calls_only_immutable(&prepared.plan);
        }
        Ok(prepared)
    }

    /// The schema unqualified table names are looked up in.
    pub(super) fn default_schema(&self) -> String {
        self.ctx
            .state_ref()
            .read()
            .config()
            .options()
            .catalog
            .default_schema
            .clone()
    }

    /// Plans SQL as written, with no privacy rewrite.
    pub(super) async fn plan_raw(&self, mut statement: SqlStatement) -> Result<Prepared> {
        let state = self.ctx.state();
        crate::designs::expand(&mut statement)?;
        pg_dialect::rewrite::rewrite(&mut statement);
        let postgres = pg_dialect::column_names::postgres_names(&statement);
        pg_dialect::rewrite::rewrite_operators(&mut statement);
        let mut retry = statement.clone();
        let mut names = rewrite::repeated_names(&mut statement, false);
        let written = retry.clone();
        let plan = match state.statement_to_plan(statement).await {
            Err(e) if rewrite::is_repeated_name(&e) => {
                names = rewrite::repeated_names(&mut retry, true);
                state.statement_to_plan(retry).await
            }
            plan => plan,
        }
        .map_err(|e| lookup::planning_error(&state, &written, e))?;
        let mut names = names.with_postgres_names(postgres);
        names.resolve(&plan);
        check_read_only(&plan)?;
        let types = plan.get_parameter_types()?;
        let mut parameter_types = Vec::new();
        for n in 1..=types.len() {
            parameter_types.push(types.get(&format!("${n}")).cloned().flatten());
        }
        let result_schema = result_schema::announced(&state, &plan, &names);
        Ok(Prepared {
            plan,
            parameter_types,
            action: None,
            sql: String::new(),
            release: None,
            names,
            result_schema,
            reusable: false,
            repeatable: false,
        })
    }
}

/// The store is read-only: refuse plans that would write or create anything.
pub(super) fn check_read_only(plan: &LogicalPlan) -> Result<()> {
    let what = match plan {
        LogicalPlan::Dml(d) => Some(d.op.to_string()),
        LogicalPlan::Ddl(d) => Some(d.name().to_string()),
        LogicalPlan::Copy(_) => Some("COPY".to_string()),
        _ => None,
    };
    match what {
        Some(w) => Err(EngineError::Refused {
            code: "0A000",
            rule: "read-only",
            message: format!(
                "{w} is not supported: a Tsunagu store is read-only [rule: read-only]"
            ),
        }),
        None => Ok(()),
    }
}
