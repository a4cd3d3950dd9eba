//! Engine errors as Postgres error messages: the SQLSTATE and the message
//! (values removed) come from the engine.

use datafusion::error::DataFusionError;
use pgwire::error::{ErrorInfo, PgWireError};
use tsunagu_engine::EngineError;

/// A wire error for an engine error.
pub fn to_pg(e: EngineError) -> PgWireError {
    let code = e.sqlstate();
    let message = e.client_message();
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message,
    )))
}

/// A wire error for a DataFusion error raised while streaming.
pub fn from_datafusion(e: DataFusionError) -> PgWireError {
    to_pg(EngineError::DataFusion(e))
}
