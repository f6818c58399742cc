//! Every operator's output yields to the scheduler now and then, not only
//! the scans'. DataFusion makes leaves cooperative; an operator that
//! multiplies rows (a cross join) can then run for minutes inside one poll,
//! and a timed-out query keeps its thread and its slot until it ends. With
//! each operator's stream spending the task's budget, a cancelled query stops
//! within a few batches.
use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;

/// The last physical optimizer rule: wraps every operator with children in a [`CooperativeExec`].
#[derive(Debug, Default)]
pub struct YieldEverywhere;

impl PhysicalOptimizerRule for YieldEverywhere {
    fn name(&self) -> &str {
        "YieldEverywhere"
    }

    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let wrap = !node.children().is_empty() && node.name() != "CooperativeExec";
            Ok(if wrap {
                Transformed::yes(Arc::new(CooperativeExec::new(node)) as Arc<dyn ExecutionPlan>)
            } else {
                Transformed::no(node)
            })
        })
        .map(|t| t.data)
    }

    fn schema_check(&self) -> bool {
        true
    }
}
