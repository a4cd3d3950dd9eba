//! The privacy layer: what an analyst's query may return.
//!
//! A rewrite of the logical plan, applied when a statement is prepared (so
//! Describe matches Execute). Person-level computation is allowed as long as
//! it stays within each person (joins on `person_id`, windows partitioned by
//! person, aggregates grouped by person, cohorts); what crosses persons is
//! refused, except the aggregates that are released (see `release`): every
//! released row is backed by at least k distinct persons plus a sticky noisy
//! margin, every released number by at least k contributing persons and an
//! effective k of them, with sticky noise; counts are rounded. Functions are
//! allowed by class (`functions`); division, casts and the functions that
//! could fail on data are made total, so errors carry no information.
//! The model is written down in docs/PRIVACY.md.

pub mod functions;
mod policy;
mod release;
mod total;
mod walk;

use std::cell::Cell;
use std::sync::Arc;

use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;

pub use policy::{NoiseKey, Policy, Role, TableRole};
pub use release::ReleaseStats;
pub use tsunagu_udfs::Disclosure;

/// The person column every person-level table shows.
pub const PERSON_ID: &str = "person_id";
/// The delivered key column of person-level tables.
pub const PERSON_KEY: &str = "person_key";

/// Why the layer refused a statement.
#[derive(Debug)]
pub enum Refusal {
    /// A privacy rule (SQLSTATE 42501).
    Rule { rule: &'static str, message: String },
    /// A construct analysts cannot use (SQLSTATE 0A000).
    Unsupported { rule: &'static str, message: String },
    /// Planning the rewritten statement failed.
    Plan(DataFusionError),
}

impl Refusal {
    fn rule(rule: &'static str, message: impl Into<String>) -> Self {
        Refusal::Rule {
            rule,
            message: message.into(),
        }
    }

    fn unsupported(rule: &'static str, message: impl Into<String>) -> Self {
        Refusal::Unsupported {
            rule,
            message: message.into(),
        }
    }
}

/// An analyst's statement after the rewrite.
#[derive(Debug)]
pub struct Guarded {
    /// The plan to run: what it returns is safe to release.
    pub plan: LogicalPlan,
    /// What its releases withheld, filled in while it runs.
    pub stats: Arc<ReleaseStats>,
}

fn walker<'a>(policy: &'a Policy, stats: &Arc<ReleaseStats>) -> walk::Walker<'a> {
    walk::Walker {
        policy,
        masks: release::Masks::new(release::Params::new(policy, stats.clone())),
        hidden: Cell::new(0),
    }
}

/// Rewrites an analyst's statement so that only non-disclosive aggregates leave.
pub fn guard(plan: &LogicalPlan, policy: &Policy) -> Result<Guarded, Refusal> {
    let stats = Arc::new(ReleaseStats::default());
    let w = walker(policy, &stats);
    let plan = w.statement(plan)?;
    let plan = walk::harden(plan, &w.masks)?;
    check_output(&plan)?;
    Ok(Guarded { plan, stats })
}

/// Checks an analyst's cohort definition: person-level rows, within-person rules.
pub fn guard_cohort(plan: &LogicalPlan, policy: &Policy) -> Result<LogicalPlan, Refusal> {
    let stats = Arc::new(ReleaseStats::default());
    let w = walker(policy, &stats);
    let plan = w.cohort(plan)?;
    Ok(walk::harden(plan, &w.masks)?)
}

/// No person set (bitmap) leaves as a value.
fn check_output(plan: &LogicalPlan) -> Result<(), Refusal> {
    use datafusion::arrow::datatypes::DataType;
    if plan.schema().fields().iter().any(|f| {
        matches!(
            f.data_type(),
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView
        )
    }) {
        return Err(Refusal::rule(
            "person set",
            "person sets (bitmaps) are not released; measure them with rb_cardinality",
        ));
    }
    Ok(())
}
