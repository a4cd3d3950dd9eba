//! RWD functions for DataFusion: episodes, exposure windows, cohort bitmaps
//! and the vocabulary graph. Each is a plain DataFusion UDF that can be
//! registered on any `SessionContext`; none depends on Tsunagu's catalog.

pub mod bitmaps;
pub mod docs;
pub mod episodes;
pub mod windows;

use std::sync::Arc;

use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};
use datafusion::prelude::SessionContext;

/// Every scalar RWD function.
pub fn scalar_functions() -> Vec<Arc<ScalarUDF>> {
    let mut v = vec![
        Arc::new(ScalarUDF::new_from_impl(windows::InWindow::default())),
        Arc::new(ScalarUDF::new_from_impl(windows::OverlapDays::default())),
        Arc::new(ScalarUDF::new_from_impl(windows::WindowDays::default())),
    ];
    for name in ["rb_and", "rb_or", "rb_andnot", "rb_xor"] {
        v.push(Arc::new(ScalarUDF::new_from_impl(bitmaps::RbSetOp::new(
            name,
        ))));
    }
    for name in ["rb_cardinality", "rb_contains", "rb_to_array"] {
        v.push(Arc::new(ScalarUDF::new_from_impl(bitmaps::RbRead::new(
            name,
        ))));
    }
    v
}

/// Every aggregate RWD function.
pub fn aggregate_functions() -> Vec<Arc<AggregateUDF>> {
    let mut v = vec![Arc::new(AggregateUDF::new_from_impl(
        episodes::Episodes::default(),
    ))];
    for name in ["rb_build_agg", "rb_or_agg", "rb_and_agg"] {
        v.push(Arc::new(AggregateUDF::new_from_impl(bitmaps::RbAgg::new(
            name,
        ))));
    }
    v
}

/// Every window RWD function.
pub fn window_functions() -> Vec<Arc<WindowUDF>> {
    vec![Arc::new(WindowUDF::new_from_impl(
        episodes::EpisodeNumber::default(),
    ))]
}

/// Registers every RWD function on a context.
pub fn register(ctx: &SessionContext) {
    for f in scalar_functions() {
        ctx.register_udf(f.as_ref().clone());
    }
    for f in aggregate_functions() {
        ctx.register_udaf(f.as_ref().clone());
    }
    for f in window_functions() {
        ctx.register_udwf(f.as_ref().clone());
    }
}
