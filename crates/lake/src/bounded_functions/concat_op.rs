//! `a || b` as a bounded function. DataFusion runs the operator with its own
//! kernel, outside any function, so chains of `||` escaped the bounds of
//! `concat`. After type coercion (both sides one string type) [`Rewrite`]
//! turns each string `||` into [`StrictConcat`], run under the same guard as
//! `concat`; [`Rewrap`] puts back the bounded version of any function an
//! optimizer rule rebuilt from the built-ins.
use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, make_array, new_null_array};
use arrow::buffer::NullBuffer;
use arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::{AnalyzerRule, OptimizerConfig, OptimizerRule};

use super::Bounded;

/// `concat` with the operator's rule: NULL if either side is NULL
/// (`concat` skips NULLs instead).
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct StrictConcat {
    concat: Arc<ScalarUDF>,
    signature: Signature,
}

impl StrictConcat {
    pub(super) fn new(concat: Arc<ScalarUDF>) -> Self {
        Self {
            concat,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for StrictConcat {
    fn name(&self) -> &str {
        "string_concat"
    }

    /// The operator's own column name, so `SELECT a || b` keeps its heading.
    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        Ok(format!(
            "{} || {}",
            args[0].schema_name(),
            args[1].schema_name()
        ))
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.concat.return_type(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let out_type = args.return_type().clone();
        let rows = args.number_rows;
        let mut nulls: Option<NullBuffer> = None;
        for a in &args.args {
            match a {
                ColumnarValue::Scalar(s) if s.is_null() => {
                    return Ok(
                        match args
                            .args
                            .iter()
                            .all(|a| matches!(a, ColumnarValue::Scalar(_)))
                        {
                            true => ColumnarValue::Scalar(ScalarValue::try_from(&out_type)?),
                            false => ColumnarValue::Array(new_null_array(&out_type, rows)),
                        },
                    );
                }
                ColumnarValue::Scalar(_) => {}
                ColumnarValue::Array(a) => nulls = NullBuffer::union(nulls.as_ref(), a.nulls()),
            }
        }
        let out = self.concat.invoke_with_args(args)?;
        Ok(match (out, nulls) {
            (ColumnarValue::Array(a), Some(nulls)) => {
                let data = a.to_data().into_builder().nulls(Some(nulls)).build()?;
                ColumnarValue::Array(make_array(data))
            }
            (out, _) => out,
        })
    }
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Replaces string `||` by the bounded [`StrictConcat`]; runs after type coercion.
#[derive(Debug)]
pub(super) struct Rewrite {
    op: Arc<ScalarUDF>,
}

impl Rewrite {
    pub(super) fn new(op: ScalarUDF) -> Self {
        Self { op: Arc::new(op) }
    }

    fn rewrite(&self, plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
        let mut schema = merge_schema(&plan.inputs());
        if let LogicalPlan::TableScan(ts) = &plan {
            schema.merge(&DFSchema::try_from_qualified_schema(
                ts.table_name.clone(),
                &ts.source.schema(),
            )?);
        }
        let plan = plan.map_expressions(|e| {
            e.transform_up(|e| match e {
                Expr::BinaryExpr(BinaryExpr {
                    left,
                    op: Operator::StringConcat,
                    right,
                }) if is_text(&left.get_type(&schema)?) && is_text(&right.get_type(&schema)?) => {
                    Ok(Transformed::yes(Expr::ScalarFunction(
                        ScalarFunction::new_udf(self.op.clone(), vec![*left, *right]),
                    )))
                }
                e => Ok(Transformed::no(e)),
            })
        })?;
        if plan.transformed {
            plan.map_data(|p| p.recompute_schema())
        } else {
            Ok(plan)
        }
    }
}

impl AnalyzerRule for Rewrite {
    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> Result<LogicalPlan> {
        Ok(plan.transform_up_with_subqueries(|p| self.rewrite(p))?.data)
    }

    fn name(&self) -> &str {
        "bounded_string_concat"
    }
}

/// Puts the query's bounded functions back where an optimizer rule built an
/// expression from the built-in ones (`concat`'s simplification does).
#[derive(Debug)]
pub(super) struct Rewrap {
    bounded: HashMap<String, Arc<ScalarUDF>>,
}

impl Rewrap {
    pub(super) fn new(bounded: HashMap<String, Arc<ScalarUDF>>) -> Self {
        Self { bounded }
    }
}

impl OptimizerRule for Rewrap {
    fn name(&self) -> &str {
        "rewrap_bounded_functions"
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        plan.transform_up_with_subqueries(|p| {
            p.map_expressions(|e| {
                e.transform_up(|e| match e {
                    Expr::ScalarFunction(f) => match self.bounded.get(f.func.name()) {
                        Some(b) if !f.func.inner().is::<Bounded>() => Ok(Transformed::yes(
                            Expr::ScalarFunction(ScalarFunction::new_udf(b.clone(), f.args)),
                        )),
                        _ => Ok(Transformed::no(Expr::ScalarFunction(f))),
                    },
                    e => Ok(Transformed::no(e)),
                })
            })
        })
    }
}
