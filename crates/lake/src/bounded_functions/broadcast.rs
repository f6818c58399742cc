//! Constants repeated into columns. An operator that needs a column where the
//! plan has a literal repeats it once per row: a projected literal, a CASE
//! branch, an aggregate's or a window function's argument, a group or sort
//! key. A 1 MB literal over a batch of 8192 rows is 8 GB, made outside every
//! function and operator reservation (arrow panics past 2 GB of offsets).
//!
//! [`Repeats`] replaces each such literal by [`Repeat`], which reserves the
//! repetition in the query pool before making it and keeps it reserved while
//! the column lives. Literals that stay scalars are left alone: compared,
//! matched or listed (`=`, `LIKE`, `IN`) they are never repeated, and
//! functions reserve what they repeat of their arguments where they run.
//! Literals an aggregate needs as literals (`string_agg`'s delimiter, `lag`'s
//! default) cannot be replaced: together they may take [`PINNED_BUDGET`].
use std::sync::{Arc, Mutex};

use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, ScalarValue, resources_datafusion_err};
use datafusion::logical_expr::expr::{Case, ScalarFunction, WindowFunction};
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use super::{Claims, Guard, is_variable_width};

/// Bytes of the literals an aggregate or window function keeps as literals
/// (after its first argument), all together: each is repeated per row of
/// every batch it sees, 8192 rows a batch, uncounted.
pub const PINNED_BUDGET: u64 = 16 << 10;

/// A literal made into a column, its repetition reserved in the pool first.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct Repeat {
    guard: Arc<Guard>,
    signature: Signature,
}

impl Repeat {
    pub(super) fn new(guard: Arc<Guard>) -> Self {
        Self {
            guard,
            // Volatile: a later simplification must not fold it back into the literal.
            signature: Signature::any(1, Volatility::Volatile),
        }
    }
}

impl ScalarUDFImpl for Repeat {
    fn name(&self) -> &str {
        "repeat_constant"
    }

    /// The literal's own name: plans and result headings do not change.
    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        Ok(args[0].schema_name().to_string())
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let arg = &args.arg_fields[0];
        Ok(Arc::new(Field::new(
            self.name(),
            arg.data_type().clone(),
            arg.is_nullable(),
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.guard.check_wanted()?;
        let rows = args.number_rows;
        match &args.args[0] {
            ColumnarValue::Scalar(s) => {
                let bytes = (s.size() as u64).saturating_mul(rows as u64);
                let held = self.guard.reserve_as(
                    "constant column",
                    bytes,
                    &format!("a constant repeated over {rows} rows takes"),
                )?;
                let column = s.to_array_of_size(rows)?;
                held.resize(column.get_array_memory_size());
                column.to_data().claim(&Claims(Mutex::new(held)));
                Ok(ColumnarValue::Array(column))
            }
            array => Ok(array.clone()),
        }
    }
}

/// Puts [`Repeat`] where an operator would repeat a literal, and checks
/// [`PINNED_BUDGET`]. Runs after the simplifications that fold constants.
#[derive(Debug)]
pub(super) struct Repeats {
    repeat: Arc<ScalarUDF>,
}

impl Repeats {
    pub(super) fn new(guard: Arc<Guard>) -> Self {
        Self {
            repeat: Arc::new(ScalarUDF::new_from_impl(Repeat::new(guard))),
        }
    }

    fn repeat(&self, e: Expr) -> Transformed<Expr> {
        match e {
            Expr::Literal(v, m) if repeated_in_bytes(&v) => Transformed::yes(Expr::ScalarFunction(
                ScalarFunction::new_udf(self.repeat.clone(), vec![Expr::Literal(v, m)]),
            )),
            e => Transformed::no(e),
        }
    }

    /// One expression of a plan node; `whole_is_a_column` when the node makes a
    /// column of the whole expression (projection, group and sort keys).
    fn rewrite_expr(
        &self,
        e: Expr,
        whole_is_a_column: bool,
        pinned: &mut u64,
    ) -> Result<Transformed<Expr>> {
        let e = e.transform_up(|e| {
            Ok(match e {
                Expr::Case(Case {
                    expr,
                    when_then_expr,
                    else_expr,
                }) => {
                    let mut changed = false;
                    let mut branch = |b: Box<Expr>| {
                        let t = self.repeat(*b);
                        changed |= t.transformed;
                        Box::new(t.data)
                    };
                    let when_then_expr = when_then_expr
                        .into_iter()
                        .map(|(w, t)| (w, branch(t)))
                        .collect();
                    let else_expr = else_expr.map(&mut branch);
                    let case = Expr::Case(Case {
                        expr,
                        when_then_expr,
                        else_expr,
                    });
                    match changed {
                        true => Transformed::yes(case),
                        false => Transformed::no(case),
                    }
                }
                Expr::AggregateFunction(mut f) => {
                    let changed = self.first_argument(&mut f.params.args, pinned)?;
                    Transformed::new_transformed(Expr::AggregateFunction(f), changed)
                }
                Expr::WindowFunction(mut w) => {
                    let WindowFunction { params, .. } = w.as_mut();
                    let changed = self.first_argument(&mut params.args, pinned)?;
                    Transformed::new_transformed(Expr::WindowFunction(w), changed)
                }
                e => Transformed::no(e),
            })
        })?;
        if !whole_is_a_column {
            return Ok(e);
        }
        e.transform_data(|e| {
            Ok(match e {
                Expr::Alias(mut a) => {
                    let inner = self.repeat(*a.expr);
                    a.expr = Box::new(inner.data);
                    Transformed::new_transformed(Expr::Alias(a), inner.transformed)
                }
                e => self.repeat(e),
            })
        })
    }

    /// Repeats an aggregate's first argument; counts the literals after it.
    fn first_argument(&self, args: &mut [Expr], pinned: &mut u64) -> Result<bool> {
        let Some((first, rest)) = args.split_first_mut() else {
            return Ok(false);
        };
        for a in rest.iter() {
            if let Expr::Literal(v, _) = a
                && repeated_in_bytes(v)
            {
                *pinned = pinned.saturating_add(v.size() as u64);
                if *pinned > PINNED_BUDGET {
                    return Err(resources_datafusion_err!(
                        "the literal arguments kept by aggregate and window functions (such as string_agg's delimiter) come to more than {PINNED_BUDGET} bytes"
                    ));
                }
            }
        }
        let t = self.repeat(std::mem::replace(
            first,
            Expr::Literal(ScalarValue::Null, None),
        ));
        *first = t.data;
        Ok(t.transformed)
    }
}

/// A literal that costs bytes per row when repeated (not NULL, variable width).
fn repeated_in_bytes(v: &ScalarValue) -> bool {
    !v.is_null() && is_variable_width(&v.data_type())
}

impl OptimizerRule for Repeats {
    fn name(&self) -> &str {
        "bounded_constant_columns"
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let mut pinned = 0u64;
        plan.transform_up_with_subqueries(|p| {
            let whole_is_a_column = matches!(
                p,
                LogicalPlan::Projection(_)
                    | LogicalPlan::Aggregate(_)
                    | LogicalPlan::Window(_)
                    | LogicalPlan::Sort(_)
            );
            let p = p.map_expressions(|e| self.rewrite_expr(e, whole_is_a_column, &mut pinned))?;
            match p.transformed {
                true => p.map_data(|p| p.recompute_schema()),
                false => Ok(p),
            }
        })
    }
}
