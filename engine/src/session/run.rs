//! Running: a prepared plan with its parameters bound, executed as an
//! audited stream (the end logged with rows and cells); answers of
//! repeatable statements kept per snapshot.

use super::*;

impl Session {
    /// Plans SQL text holding exactly one statement.
    pub async fn prepare(&self, sql: &str) -> Result<Prepared> {
        let mut statements = self.parse(sql)?;
        if statements.len() != 1 {
            return Err(EngineError::Unsupported(format!(
                "expected one SQL statement, found {}",
                statements.len()
            )));
        }
        self.plan_statement(statements.remove(0)).await
    }

    /// Runs a prepared statement with parameter values, streaming its rows.
    pub async fn execute(
        &self,
        prepared: &Prepared,
        params: Vec<ScalarValue>,
    ) -> Result<SendableRecordBatchStream> {
        let key = match self.answer_key(prepared, &params) {
            Ok(key) => key,
            Err(e) => return Err(self.failed(prepared, e)),
        };
        if let Some((cache, key)) = &key
            && let Some(answer) = cache.get(key)
        {
            let stream = crate::result_cache::replay(&answer, prepared.schema());
            return Ok(Box::pin(crate::audit::Audited::known(
                stream,
                Box::new(self.clone()),
                prepared.sql.clone(),
                answer.cells,
            )));
        }
        let started = self.start(prepared, params).await;
        match started {
            Ok(stream) => {
                let stream = match key {
                    Some((cache, key)) => cache.fill(key, stream, prepared.release.clone()),
                    None => stream,
                };
                Ok(Box::pin(crate::audit::Audited::new(
                    stream,
                    Box::new(self.clone()),
                    prepared.sql.clone(),
                    prepared.release.clone(),
                )))
            }
            Err(e) => Err(self.failed(prepared, e)),
        }
    }

    /// Audits a statement that failed to start; what the client is told.
    pub(super) fn failed(&self, prepared: &Prepared, e: EngineError) -> EngineError {
        let class = e.audit_class();
        if let Err(a) = self.log(&prepared.sql, Decision::Error, Some(class.clone()), None, 0) {
            return a;
        }
        if (prepared.release.is_some() || self.role() != Role::Steward) && class == "execution" {
            // An analyst learns nothing from why a statement failed on the data.
            log::debug!("a statement failed on the data: {e}");
            return EngineError::DataFusion(datafusion::error::DataFusionError::Execution(
                "the query failed while reading the data (details are withheld from analysts)"
                    .into(),
            ));
        }
        e
    }

    /// Where a repeatable statement's answer is kept, and under which key;
    /// `None` for other statements.
    pub(super) fn answer_key(
        &self,
        prepared: &Prepared,
        params: &[ScalarValue],
    ) -> Result<
        Option<(
            Arc<crate::result_cache::ResultCache>,
            crate::result_cache::Key,
        )>,
    > {
        let Some(cache) = &self.results else {
            return Ok(None);
        };
        if !prepared.repeatable || prepared.action.is_some() || self.project().is_some() {
            return Ok(None);
        }
        let plan = bound(prepared, params.to_vec())?;
        let (user, role) = {
            let id = self.identity();
            (id.user.clone(), id.role)
        };
        Ok(Some((
            cache.clone(),
            crate::result_cache::Key {
                plan,
                user,
                role,
                default_schema: self.default_schema(),
                settings: self.settings.load(Ordering::Relaxed),
            },
        )))
    }

    pub(super) async fn start(
        &self,
        prepared: &Prepared,
        params: Vec<ScalarValue>,
    ) -> Result<SendableRecordBatchStream> {
        if self.project().is_some() {
            // A statement prepared before its project closed does not run after.
            self.open_project("a statement")?;
        }
        if let Some(action) = &prepared.action {
            self.act(action).await?;
            return Ok(Box::pin(EmptyRecordBatchStream::new(prepared.schema())));
        }
        let plan = bound(prepared, params)?;
        let (stream, state) = if matches!(plan, LogicalPlan::Statement(_)) {
            // Session statements (`SET`, SQL-level `EXECUTE`) act on the context.
            self.settings.store(next_epoch(), Ordering::Relaxed);
            self.settings_changed();
            let df = self.ctx.execute_logical_plan(plan.clone()).await?;
            (df.execute_stream().await?, self.ctx.state())
        } else {
            let state = self.query_state();
            let df = datafusion::prelude::DataFrame::new(state.clone(), plan.clone());
            (df.execute_stream().await?, state)
        };
        let cluster = state
            .config()
            .get_extension::<crate::Membership>()
            .map(|m| {
                let now = (m.generation)();
                (m, now)
            });
        let stream = crate::retry::with_retry(stream, state, plan.clone(), cluster);
        let stream = crate::damaged::name_damaged_files(stream, plan, self.roots.clone());
        Ok(result_schema::conformed(stream, prepared.schema()))
    }

    /// The state a query runs in: the session's, with a memory pool of its
    /// own (drawing on the shared one) when the session limits each query.
    pub(super) fn query_state(&self) -> datafusion::execution::SessionState {
        let state = self.ctx.state();
        let limit = self.query_memory.load(std::sync::atomic::Ordering::Relaxed);
        if limit == 0 {
            return state;
        }
        let mut runtime = state.runtime_env().as_ref().clone();
        runtime.memory_pool = Arc::new(crate::query_memory::QueryPool::new(
            limit,
            runtime.memory_pool.clone(),
        ));
        datafusion::execution::session_state::SessionStateBuilder::new_from_existing(state)
            .with_runtime_env(Arc::new(runtime))
            .build()
    }

    /// Runs SQL text (one or more statements) and collects the last statement's rows.
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let mut last = Vec::new();
        let mut statements = self.statements(sql)?;
        while let Some(next) = statements.next().await {
            let (_, stream) = next?;
            last = datafusion::physical_plan::common::collect(stream).await?;
        }
        Ok(last)
    }

    /// The statements of SQL text, each planned and started in turn by
    /// [`Statements::next`]: the one driver of parse → plan → guard → run
    /// for callers that take text (the CLI, the .slt runner, [`Session::sql`],
    /// and the wire server, which plans with [`Statements::plan_next`] and
    /// runs each statement under its connection's limits).
    pub fn statements(&self, sql: &str) -> Result<Statements<'_>> {
        Ok(Statements {
            session: self,
            pending: self.parse(sql)?.into(),
        })
    }
}

/// SQL text's statements, run one at a time (see [`Session::statements`]).
pub struct Statements<'a> {
    session: &'a Session,
    pending: std::collections::VecDeque<Statement>,
}

impl Statements<'_> {
    /// Plans and starts the next statement: its prepared form and its rows.
    /// A statement is planned only once the one before it was started, so
    /// it sees what that one did (a cohort it saved); drain each stream
    /// before asking for the next.
    pub async fn next(&mut self) -> Option<Result<(Prepared, SendableRecordBatchStream)>> {
        let prepared = match self.plan_next().await? {
            Ok(prepared) => prepared,
            Err(e) => return Some(Err(e)),
        };
        Some(
            self.session
                .execute(&prepared, vec![])
                .await
                .map(|stream| (prepared, stream)),
        )
    }

    /// Plans the next statement without starting it, for a caller that
    /// runs it itself ([`Session::execute`]) under limits of its own.
    pub async fn plan_next(&mut self) -> Option<Result<Prepared>> {
        let statement = self.pending.pop_front()?;
        Some(self.session.plan_statement(statement).await)
    }

    /// The next statement, not yet planned.
    pub fn peek(&self) -> Option<&Statement> {
        self.pending.front()
    }

    /// Takes the next statement out unplanned: one the caller answers
    /// itself (a client's session command such as `SHOW`).
    pub fn take_next(&mut self) -> Option<Statement> {
        self.pending.pop_front()
    }

    /// Rewrites every statement not yet planned (a client's catalog names).
    pub fn rewrite(&mut self, f: impl FnMut(&mut Statement)) {
        self.pending.iter_mut().for_each(f);
    }

    /// How many statements are left.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// No statement is left.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// A prepared statement's plan with its parameters' values in place.
pub(super) fn bound(prepared: &Prepared, params: Vec<ScalarValue>) -> Result<LogicalPlan> {
    if params.is_empty() && prepared.parameter_types.is_empty() {
        return Ok(prepared.plan.clone());
    }
    Ok(prepared
        .plan
        .clone()
        .with_param_values(ParamValues::from(params))?)
}
