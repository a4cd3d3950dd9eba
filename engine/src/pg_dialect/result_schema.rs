//! The schema of a statement's result as a client learns it before
//! execution (at Describe), and the batches that follow made to match it.
//!
//! A logical plan's schema before analysis can differ from what runs: a
//! `CASE` mixing integer and float branches is typed by its first branch
//! until type coercion. The announced schema is therefore the analyzed
//! plan's, and every batch is cast to it, so the type a client is told is
//! always the type it is sent.

use std::sync::Arc;

use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Result;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

use super::rewrite::OutputNames;

/// The result schema of `plan` as it will run, with the output names.
pub fn announced(state: &SessionState, plan: &LogicalPlan, names: &OutputNames) -> SchemaRef {
    let analyzed =
        state
            .analyzer()
            .execute_and_check(plan.clone(), state.config_options(), |_, _| {});
    let schema = match &analyzed {
        Ok(p) => p.schema().as_arrow().clone(),
        Err(_) => plan.schema().as_arrow().clone(),
    };
    let renamed = names.apply(schema.fields().iter().map(|f| f.name().clone()).collect());
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(renamed)
        .map(|(f, name)| f.as_ref().clone().with_name(name).with_nullable(true))
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// One batch with the announced schema: its columns cast where they differ.
fn conform(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.num_columns() != schema.fields().len() {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                cast(c, f.data_type())
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// The stream with the announced schema.
pub fn conformed(
    stream: SendableRecordBatchStream,
    schema: SchemaRef,
) -> SendableRecordBatchStream {
    if stream.schema().fields().len() != schema.fields().len() {
        return stream;
    }
    let target = schema.clone();
    Box::pin(RecordBatchStreamAdapter::new(
        schema,
        stream.map(move |b| b.and_then(|b| conform(b, &target))),
    ))
}
