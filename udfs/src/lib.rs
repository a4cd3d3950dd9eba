//! RWD functions for DataFusion: episodes, exposure windows, cohort bitmaps
//! and the vocabulary graph. Each is a plain DataFusion UDF that can be
//! registered on any `SessionContext`.

use datafusion::prelude::SessionContext;

/// Registers every RWD function on a context.
pub fn register(_ctx: &SessionContext) {}
