//! Sorts within a person: a sort whose input already arrives ordered by
//! person (the person layout's files are sorted by `person_id` and event
//! date) only needs to order the rows of each person.
//!
//! DataFusion plans such a sort as a full [`SortExec`] of its partition,
//! which sorts every batch and then merges them all; it uses
//! [`PartialSortExec`] (which sorts each run of equal prefix values as it
//! arrives, and merges nothing) only over unbounded inputs. [`PersonSorts`]
//! makes the same replacement over bounded inputs when the ordered prefix
//! starts with the person number: runs are one person's rows, so what
//! `PartialSortExec` holds at a time stays small. A window
//! `PARTITION BY person_id, drug_concept_id ORDER BY start_date` over the
//! layout thus sorts within persons instead of across the whole table.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::sorts::partial_sort::PartialSortExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};

/// Column names that carry the person number.
const PERSON: [&str; 2] = ["person_id", tsunagu_catalog::layout::PERSON_ID];

/// The physical optimizer rule sorting within persons.
#[derive(Debug, Default)]
pub struct PersonSorts;

impl PhysicalOptimizerRule for PersonSorts {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(sort) = node.downcast_ref::<SortExec>() else {
                return Ok(Transformed::no(node));
            };
            let by_person = sort
                .expr()
                .first()
                .expr
                .downcast_ref::<Column>()
                .is_some_and(|c| PERSON.contains(&c.name()));
            if !by_person {
                return Ok(Transformed::no(node));
            }
            let input = sort.input();
            let ordered = input.equivalence_properties();
            let exprs = sort.expr();
            let mut prefix = 0;
            while prefix < exprs.len() && ordered.ordering_satisfy(exprs[..=prefix].to_vec())? {
                prefix += 1;
            }
            if prefix == 0 || prefix == exprs.len() {
                return Ok(Transformed::no(node));
            }
            let partial = PartialSortExec::new(exprs.clone(), Arc::clone(input), prefix)
                .with_preserve_partitioning(sort.preserve_partitioning())
                .with_fetch(sort.fetch());
            Ok(Transformed::yes(Arc::new(partial) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "person_sorts"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
