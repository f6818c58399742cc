//! Scalar functions bounded by the query memory pool. DataFusion's pool
//! accounts for operators' buffers (sorts, joins, aggregates), not for what
//! scalar functions return: `repeat`, `||` or `concat` nested a few levels deep
//! make gigabytes outside it. Every scalar function of a session is wrapped
//! (same name, same behaviour otherwise):
//!
//! - a function that can grow its input (`growth`) reserves the most its
//!   arguments can produce in the pool before it runs, and is refused when the
//!   pool has not that much free;
//! - every variable-width array a function returns is reserved in the pool
//!   for as long as it lives (arrow's buffer claims), so the strings of a
//!   nested expression or of many columns add up against one budget;
//! - calls on constants only are folded into literals while planning, which
//!   live in the plan and its text: they share [`CONSTANT_BUDGET`].
//!
//! - a function reserves what it may repeat of its constant arguments (one
//!   copy per row) while it runs.
//!
//! `a || b` is a binary operator, not a function: [`concat_op`] replaces it
//! by a bounded function with the operator's NULL rule. A literal an operator
//! repeats into a column is reserved by [`broadcast`].
mod broadcast;
mod concat_op;
mod growth;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::Array;
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, ScalarValue, plan_datafusion_err, resources_datafusion_err};
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
use datafusion::logical_expr::interval_arithmetic::Interval;
use datafusion::logical_expr::preimage::PreimageResult;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ExpressionPlacement, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, StructFieldMapping,
};
use datafusion::prelude::SessionContext;

use growth::Growth;

/// Calls on constants only (folded into literals while planning) may produce
/// this much in one query, all together. Folded literals live as long as the
/// plan and are copied into column names and plan text: ten 30 MB `repeat`s
/// under a `concat` took 2 GB that way. Constants this big have no use in a
/// query; a hundred `repeat`s of 60 MB are refused, not planned.
pub const CONSTANT_BUDGET: u64 = 8 << 20;

/// Wraps every scalar function of `ctx` and replaces `||` (call once per query:
/// the constant budget is the query's). Once `abandoned` is set (the query's
/// caller stopped waiting) every function call fails instead of running.
pub fn register(ctx: &SessionContext, abandoned: Arc<AtomicBool>) -> Result<()> {
    let guard = Arc::new(Guard {
        constants: AtomicU64::new(CONSTANT_BUDGET),
        pool: ctx.runtime_env().memory_pool.clone(),
        abandoned,
    });
    let state = ctx.state();
    let mut wrapped = HashMap::new();
    for udf in state.scalar_functions().values() {
        if wrapped.contains_key(udf.name()) {
            continue; // listed again under an alias
        }
        let bounded = Bounded::wrap(udf.clone(), guard.clone());
        ctx.register_udf(bounded.clone());
        wrapped.insert(udf.name().to_owned(), Arc::new(bounded));
    }
    let concat = wrapped.get("concat").cloned();
    let concat = concat.ok_or_else(|| plan_datafusion_err!("no concat function"))?;
    ctx.add_analyzer_rule(Arc::new(concat_op::Rewrite::new(ScalarUDF::new_from_impl(
        Bounded {
            inner: Arc::new(ScalarUDF::new_from_impl(concat_op::StrictConcat::new(
                concat,
            ))),
            growth: Some(Growth::Sum),
            guard: guard.clone(),
        },
    ))));
    ctx.add_optimizer_rule(Arc::new(concat_op::Rewrap::new(wrapped)));
    ctx.add_optimizer_rule(Arc::new(broadcast::Repeats::new(guard)));
    Ok(())
}

/// What one query's functions may still take.
#[derive(Debug)]
struct Guard {
    /// Bytes constant calls may still produce.
    constants: AtomicU64,
    pool: Arc<dyn MemoryPool>,
    abandoned: Arc<AtomicBool>,
}

impl Guard {
    /// Fails once the query is abandoned: a projection runs all its functions
    /// on a batch within one poll, with no yield where it could stop.
    fn check_wanted(&self) -> Result<()> {
        match self.abandoned.load(Ordering::Relaxed) {
            true => Err(datafusion::error::DataFusionError::Execution(
                "the query was cancelled".into(),
            )),
            false => Ok(()),
        }
    }

    fn take_constant(&self, n: u64) -> Result<()> {
        self.constants
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(n)
            })
            .map(|_| ())
            .map_err(|_| {
                resources_datafusion_err!(
                    "the constant expressions of this query would produce more than {CONSTANT_BUDGET} bytes"
                )
            })
    }

    /// Reserves `n` bytes in the pool for what `function` makes.
    fn reserve(&self, function: &str, n: u64, what: &str) -> Result<MemoryReservation> {
        self.reserve_as(&format!("{function}()"), n, &format!("{function}() {what}"))
    }

    /// Reserves `n` bytes for `consumer`; the refusal says "`refused` n bytes, …".
    fn reserve_as(&self, consumer: &str, n: u64, refused: &str) -> Result<MemoryReservation> {
        let held = MemoryConsumer::new(consumer).register(&self.pool);
        usize::try_from(n)
            .ok()
            .and_then(|n| held.try_grow(n).ok())
            .map(|()| held)
            .ok_or_else(|| {
                resources_datafusion_err!(
                    "{refused} {n} bytes, more than the {} bytes the query memory pool has free",
                    self.free_bytes()
                )
            })
    }

    /// For the refusal's message only: the pool is shared and moves.
    fn free_bytes(&self) -> usize {
        match self.pool.memory_limit() {
            MemoryLimit::Finite(n) => n.saturating_sub(self.pool.reserved()),
            _ => usize::MAX,
        }
    }
}

/// One budget per query: sessions never compare or hash it.
impl PartialEq for Guard {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}
impl Eq for Guard {}
impl std::hash::Hash for Guard {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::ptr::hash(self, state)
    }
}

/// Arrays whose size depends on their values, not only on their row count.
fn is_variable_width(t: &DataType) -> bool {
    !t.is_primitive()
        && !matches!(
            t,
            DataType::Boolean | DataType::Null | DataType::FixedSizeBinary(_)
        )
}

/// Hands the bytes reserved for one output to arrow's buffer claims, so they
/// are released when the last buffer of the output is dropped.
#[derive(Debug)]
struct Claims(Mutex<MemoryReservation>);

#[derive(Debug)]
struct Claim(MemoryReservation);

impl arrow_buffer::MemoryReservation for Claim {
    fn size(&self) -> usize {
        self.0.size()
    }

    fn resize(&mut self, new_size: usize) {
        self.0.resize(new_size)
    }
}

impl arrow_buffer::MemoryPool for Claims {
    fn reserve(&self, size: usize) -> Box<dyn arrow_buffer::MemoryReservation> {
        let held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let part = held.split(size.min(held.size()));
        // Reserved as a whole before; a buffer larger than the rest still counts.
        part.grow(size - part.size());
        Box::new(Claim(part))
    }

    fn available(&self) -> isize {
        0
    }

    fn used(&self) -> usize {
        0
    }

    fn capacity(&self) -> usize {
        0
    }
}

/// A scalar function, run under the query's [`Guard`]; everything else is the
/// wrapped function's.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    growth: Option<Growth>,
    guard: Arc<Guard>,
}

impl Bounded {
    fn wrap(inner: Arc<ScalarUDF>, guard: Arc<Guard>) -> ScalarUDF {
        let growth = Growth::of(inner.name());
        ScalarUDF::new_from_impl(Bounded {
            inner,
            growth,
            guard,
        })
    }

    fn implementation(&self) -> &dyn ScalarUDFImpl {
        self.inner.inner().as_ref()
    }
}

/// Bytes of the string literals in `e`.
fn literal_bytes(e: &Expr) -> u64 {
    let mut n = 0u64;
    let _ = e.apply(|e| {
        if let Expr::Literal(v, _) = e {
            n = n.saturating_add(v.size() as u64);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    n
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        let updated = self.implementation().with_updated_config(config)?;
        Some(Bounded::wrap(Arc::new(updated), self.guard.clone()))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn is_strict(&self) -> bool {
        self.implementation().is_strict()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.guard.check_wanted()?;
        let constant = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let reserved_before = match self.growth {
            Some(g) => {
                let bound = growth::output_bound(g, &args.args, args.number_rows)?;
                if constant {
                    self.guard.take_constant(bound)?;
                    None
                } else {
                    Some(self.guard.reserve(self.name(), bound, "could produce")?)
                }
            }
            None => None,
        };
        // Many functions make a column of each constant argument first.
        let repeated = match constant {
            true => 0,
            false => args.args.iter().fold(0u64, |n, a| match a {
                ColumnarValue::Scalar(s) if is_variable_width(&s.data_type()) => {
                    n.saturating_add((s.size() as u64).saturating_mul(args.number_rows as u64))
                }
                _ => n,
            }),
        };
        let _repeated = match repeated {
            0 => None,
            n => Some(self.guard.reserve(
                self.name(),
                n,
                "would repeat its constant arguments into",
            )?),
        };
        let out = self.inner.invoke_with_args(args)?;
        if let ColumnarValue::Array(a) = &out
            && is_variable_width(a.data_type())
        {
            let size = a.get_array_memory_size();
            drop(reserved_before);
            let held = self.guard.reserve(self.name(), size as u64, "made")?;
            a.to_data().claim(&Claims(Mutex::new(held)));
        }
        Ok(out)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        let result = self.implementation().simplify(args, info)?;
        // Some functions fold their constant arguments here, not by running.
        if let ExprSimplifyResult::Simplified(e) = &result
            && self.growth.is_some()
        {
            self.guard.take_constant(literal_bytes(e))?;
        }
        Ok(result)
    }

    fn preimage(
        &self,
        args: &[Expr],
        lit_expr: &Expr,
        info: &SimplifyContext,
    ) -> Result<PreimageResult> {
        self.implementation().preimage(args, lit_expr, info)
    }

    fn short_circuits(&self) -> bool {
        self.implementation().short_circuits()
    }

    fn conditional_arguments<'a>(
        &self,
        args: &'a [Expr],
    ) -> Option<(Vec<&'a Expr>, Vec<&'a Expr>)> {
        self.implementation().conditional_arguments(args)
    }

    fn evaluate_bounds(&self, input: &[&Interval]) -> Result<Interval> {
        self.implementation().evaluate_bounds(input)
    }

    fn propagate_constraints(
        &self,
        interval: &Interval,
        inputs: &[&Interval],
    ) -> Result<Option<Vec<Interval>>> {
        self.implementation()
            .propagate_constraints(interval, inputs)
    }

    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        self.implementation().output_ordering(inputs)
    }

    fn preserves_lex_ordering(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.implementation().preserves_lex_ordering(inputs)
    }

    fn strictly_order_preserving(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.implementation().strictly_order_preserving(inputs)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.implementation().coerce_types(arg_types)
    }

    fn struct_field_mapping(
        &self,
        literal_args: &[Option<ScalarValue>],
    ) -> Option<StructFieldMapping> {
        self.implementation().struct_field_mapping(literal_args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn placement(&self, args: &[ExpressionPlacement]) -> ExpressionPlacement {
        self.implementation().placement(args)
    }
}
