//! One analyst session: a DataFusion `SessionContext` with the store's
//! schemas, the RWD functions and Tsunagu's settings.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;

use crate::error::{EngineError, Result};

/// A planned statement: what it returns and which parameters it takes.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The logical plan, with `$n` placeholders still in it.
    pub plan: LogicalPlan,
    /// Types of `$1`, `$2`, ... as inferred from the query (`None` when unknown).
    pub parameter_types: Vec<Option<DataType>>,
}

impl Prepared {
    /// The Arrow schema of the rows the statement returns.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(self.plan.schema().as_arrow().clone())
    }
}

/// One session over an opened store.
#[derive(Clone)]
pub struct Session {
    ctx: SessionContext,
}

impl Session {
    pub(crate) fn new(ctx: SessionContext) -> Self {
        Session { ctx }
    }

    /// The DataFusion context behind the session.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Splits SQL text into statements (PostgreSQL dialect).
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>> {
        Ok(DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {})?.into())
    }

    /// Plans one parsed statement.
    pub async fn plan_statement(&self, statement: Statement) -> Result<Prepared> {
        let state = self.ctx.state();
        let plan = state.statement_to_plan(statement).await?;
        check_read_only(&plan)?;
        let types = plan.get_parameter_types()?;
        let mut parameter_types = Vec::new();
        for n in 1..=types.len() {
            parameter_types.push(types.get(&format!("${n}")).cloned().flatten());
        }
        Ok(Prepared {
            plan,
            parameter_types,
        })
    }

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
        let plan = if params.is_empty() && prepared.parameter_types.is_empty() {
            prepared.plan.clone()
        } else {
            prepared
                .plan
                .clone()
                .with_param_values(ParamValues::from(params))?
        };
        let df = self.ctx.execute_logical_plan(plan).await?;
        Ok(df.execute_stream().await?)
    }

    /// Runs SQL text (one or more statements) and collects the last statement's rows.
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let mut last = Vec::new();
        for statement in self.parse(sql)? {
            let prepared = self.plan_statement(statement).await?;
            let df = self.ctx.execute_logical_plan(prepared.plan).await?;
            last = df.collect().await?;
        }
        Ok(last)
    }
}

/// The store is read-only: refuse plans that would write or create anything.
fn check_read_only(plan: &LogicalPlan) -> Result<()> {
    let what = match plan {
        LogicalPlan::Dml(d) => Some(d.op.to_string()),
        LogicalPlan::Ddl(d) => Some(d.name().to_string()),
        LogicalPlan::Copy(_) => Some("COPY".to_string()),
        _ => None,
    };
    match what {
        Some(w) => Err(EngineError::Unsupported(format!(
            "{w} is not supported: a Tsunagu store is read-only"
        ))),
        None => Ok(()),
    }
}
