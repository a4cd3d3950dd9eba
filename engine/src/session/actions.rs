//! Side effects of commands: saving and dropping cohorts, creating and
//! releasing project results, steward project commands.

use super::*;

impl Session {
    /// Performs a statement's side effect.
    pub(super) async fn act(&self, action: &Action) -> Result<()> {
        if self.role() == Role::Viewer && !matches!(action, Action::Project(_)) {
            // Prepared before the session lowered its role to viewer.
            return Err(EngineError::Refused {
                code: "42501",
                rule: "read-only role",
                message: format!(
                    "{} is refused to the viewer role, which only reads [rule: read-only role]",
                    action.name()
                ),
            });
        }
        match action {
            Action::Project(command) => {
                let Some(admin) = read(&self.admin).clone() else {
                    return Err(EngineError::Unsupported(format!(
                        "{} is not available in this session",
                        command.name()
                    )));
                };
                command.run(&admin, self).await
            }
            Action::CreateResult {
                name,
                definition,
                query,
                by_rules,
            } => {
                let project = self.open_project("CREATE RESULT")?;
                let measures = crate::projects::outputs::measures(query);
                let df = self.ctx.execute_logical_plan(query.clone()).await?;
                let schema = Arc::new(df.schema().as_arrow().clone());
                let batches = df.collect().await?;
                let meta = crate::projects::outputs::ResultMeta {
                    name: name.clone(),
                    query: definition.clone(),
                    user: self.user(),
                    created_at: crate::projects::now(),
                    released_by_rules: *by_rules,
                    measures,
                };
                project.outputs.save_result(&meta, schema, &batches)?;
                project.show_results(&self.ctx, self.login_role() == Role::Steward)
            }
            Action::ReleaseResult { name, purpose } => {
                let project = self.open_project("RELEASE RESULT")?;
                let policy = self.policy();
                let request = project.outputs.request_release(
                    &project.id,
                    name,
                    purpose,
                    &self.user(),
                    policy.k,
                    policy.rounding,
                )?;
                project.show_results(&self.ctx, self.login_role() == Role::Steward)?;
                let failed: Vec<String> = request
                    .checks
                    .iter()
                    .filter(|c| !c.passed)
                    .map(|c| format!("{}: {}", c.check, c.detail))
                    .collect();
                if failed.is_empty() {
                    return Ok(());
                }
                Err(EngineError::Refused {
                    code: "42501",
                    rule: "output check",
                    message: format!(
                        "release request {} for result \"{name}\" failed its checks and was not filed for review: {} [rule: output check]",
                        request.id,
                        failed.join("; ")
                    ),
                })
            }
            Action::CreateCohort {
                name,
                definition,
                query,
            } => {
                let df = self.ctx.execute_logical_plan(query.clone()).await?;
                let schema = Arc::new(df.schema().as_arrow().clone());
                let batches = df.collect().await?;
                let (rows, size) = cohorts::cohort_rows(&schema, &batches)?;
                let meta = CohortMeta {
                    name: name.clone(),
                    owner: self.user(),
                    created_at: chrono::Utc::now()
                        .format("%Y-%m-%d %H:%M:%S UTC")
                        .to_string(),
                    definition: definition.clone(),
                    size,
                    store: String::new(),
                    lineage: String::new(),
                    delivery: 0,
                };
                self.cohort_store().save(meta, rows)?;
                Ok(())
            }
            Action::DropCohort { name, if_exists } => {
                let owner = self
                    .cohort_store()
                    .list()?
                    .into_iter()
                    .find(|m| &m.name == name);
                if self.role() != Role::Steward && owner.is_some_and(|m| m.owner != self.user()) {
                    return Err(EngineError::Refused {
                        code: "42501",
                        rule: "cohort owner",
                        message: format!(
                            "cohort {name:?} belongs to another user; analysts drop only their own cohorts [rule: cohort owner]"
                        ),
                    });
                }
                if !self.cohort_store().drop_cohort(name)? && !if_exists {
                    return Err(EngineError::Unsupported(format!(
                        "cohort {name:?} does not exist"
                    )));
                }
                Ok(())
            }
        }
    }
}
