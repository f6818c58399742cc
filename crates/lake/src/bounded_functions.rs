//! SQL string functions whose output can dwarf their input (`repeat('x',
//! 2000000000)`), wrapped so the output size is bounded before it is
//! allocated. DataFusion's memory pool accounts for operators' buffers, not
//! for scalar functions' results: without this, one expression allocates
//! gigabytes outside the pool. Registered over the built-ins, same names.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::{Result, exec_err};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};
use datafusion::prelude::SessionContext;

/// One call may produce at most this many bytes beyond twice its largest argument.
pub const GROWTH_ALLOWANCE: u64 = 64 << 20;

/// Calls on constants only (folded into literals while planning) may produce
/// this much in one query, all together. Folded literals live as long as the
/// plan and are copied into column names and plan text: ten 30 MB `repeat`s
/// under a `concat` took 2 GB that way. Constants this big have no use in a
/// query; a hundred `repeat`s of 60 MB are refused, not planned.
pub const CONSTANT_BUDGET: u64 = 8 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// repeat(s, n): len(s) × n.
    Repeat,
    /// lpad/rpad(s, n[, fill]): n characters, up to 4 bytes each.
    Pad,
    /// replace(s, from, to): every non-overlapping `from` becomes `to`.
    Replace,
    /// regexp_replace(s, re, rep[, flags]): a match per position at most, each
    /// replaced by `rep` with each group reference as long as `s`.
    RegexpReplace,
    /// concat / concat_ws: the sum of the arguments.
    Sum,
}

impl Growth {
    fn of(name: &str) -> Option<Growth> {
        Some(match name {
            "repeat" => Growth::Repeat,
            "lpad" | "rpad" => Growth::Pad,
            "replace" => Growth::Replace,
            "regexp_replace" => Growth::RegexpReplace,
            "concat" | "concat_ws" => Growth::Sum,
            _ => return None,
        })
    }
}

/// Replaces the built-in growing functions of `ctx` by bounded ones, sharing
/// one [`CONSTANT_BUDGET`] (register once per query).
pub fn register(ctx: &SessionContext) -> Result<()> {
    let constants = Arc::new(Budget(AtomicU64::new(CONSTANT_BUDGET)));
    for name in [
        "repeat",
        "lpad",
        "rpad",
        "replace",
        "regexp_replace",
        "concat",
        "concat_ws",
    ] {
        let inner = ctx.udf(name)?;
        let growth = Growth::of(name).expect("listed above");
        ctx.register_udf(ScalarUDF::new_from_impl(Bounded {
            inner,
            growth,
            constants: constants.clone(),
        }));
    }
    Ok(())
}

/// Bytes constant calls may still produce in this query.
#[derive(Debug)]
struct Budget(AtomicU64);

impl Budget {
    fn take(&self, n: u64) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(n)
            })
            .is_ok()
    }
}

// One budget per query: sessions never compare or hash it.
impl PartialEq for Budget {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}
impl Eq for Budget {}
impl std::hash::Hash for Budget {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::ptr::hash(self, state)
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    growth: Growth,
    constants: Arc<Budget>,
}

/// A per-row figure of one argument: scalars are not broadcast (a 1 MB
/// literal over 8192 rows would itself be the 8 GB this module prevents).
enum PerRow {
    Same(u64),
    Each(Vec<u64>),
}

impl PerRow {
    fn at(&self, i: usize) -> u64 {
        match self {
            PerRow::Same(v) => *v,
            PerRow::Each(v) => v.get(i).copied().unwrap_or(0),
        }
    }

    fn total(&self, rows: usize) -> u64 {
        match self {
            PerRow::Same(v) => v.saturating_mul(rows as u64),
            PerRow::Each(v) => v.iter().fold(0, |a, b| a.saturating_add(*b)),
        }
    }
}

/// Maps an argument to one figure per row, computing on one value for scalars.
fn per_row(v: &ColumnarValue, f: impl Fn(&ArrayRef) -> Result<Vec<u64>>) -> Result<PerRow> {
    Ok(match v {
        ColumnarValue::Scalar(s) => PerRow::Same(f(&s.to_array_of_size(1)?)?[0]),
        ColumnarValue::Array(a) => PerRow::Each(f(a)?),
    })
}

/// Byte lengths of a string argument (nulls count 0).
fn byte_lengths(array: &ArrayRef) -> Result<Vec<u64>> {
    match array.data_type() {
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::Dictionary(..) => integers(&arrow::compute::kernels::length::length(array)?),
        // Numbers and the like print short; count their display width generously.
        _ => Ok(vec![32; array.len()]),
    }
}

fn integers(array: &ArrayRef) -> Result<Vec<u64>> {
    let a = cast(array, &DataType::Int64)?;
    Ok(a.as_primitive::<Int64Type>()
        .iter()
        .map(|v| v.unwrap_or(0).max(0) as u64)
        .collect())
}

/// Group references (`\1`, `$1`, `${name}`) a replacement string may hold.
fn references(array: &ArrayRef) -> Result<Vec<u64>> {
    let a = cast(array, &DataType::Utf8)?;
    Ok(a.as_string::<i32>()
        .iter()
        .map(|s| {
            s.map_or(0, |s| {
                s.bytes().filter(|b| *b == b'\\' || *b == b'$').count() as u64
            })
        })
        .collect())
}

/// The largest output these arguments can produce, in bytes, summed over the rows.
fn output_bound(growth: Growth, args: &[ColumnarValue], rows: usize) -> Result<u64> {
    let n = rows.max(1);
    let arg = |i: usize, f: fn(&ArrayRef) -> Result<Vec<u64>>| -> Result<PerRow> {
        match args.get(i) {
            Some(a) => per_row(a, f),
            None => Ok(PerRow::Same(0)),
        }
    };
    let lens = |i: usize| arg(i, byte_lengths);
    let row_sum = |f: &dyn Fn(usize) -> u64| (0..n).map(f).fold(0u64, u64::saturating_add);
    Ok(match growth {
        Growth::Repeat => {
            let (s, k) = (lens(0)?, arg(1, integers)?);
            row_sum(&|i| s.at(i).saturating_mul(k.at(i)))
        }
        Growth::Pad => {
            let (s, k) = (lens(0)?, arg(1, integers)?);
            row_sum(&|i| s.at(i).max(k.at(i).saturating_mul(4)))
        }
        Growth::Replace => {
            let (s, from, to) = (lens(0)?, lens(1)?, lens(2)?);
            row_sum(&|i| {
                let (s, from) = (s.at(i), from.at(i));
                // An empty `from` matches between every two bytes.
                let matches = s.checked_div(from).unwrap_or(s + 1);
                s.saturating_add(matches.saturating_mul(to.at(i)))
            })
        }
        Growth::RegexpReplace => {
            let (s, rep, refs) = (lens(0)?, lens(2)?, arg(2, references)?);
            row_sum(&|i| {
                let s = s.at(i);
                let each = rep.at(i).saturating_add(refs.at(i).saturating_mul(s));
                s.saturating_add((s + 1).saturating_mul(each))
            })
        }
        Growth::Sum => {
            let mut total = 0u64;
            for i in 0..args.len() {
                total = total.saturating_add(lens(i)?.total(n));
            }
            total
        }
    })
}

/// Bytes of the largest argument: output may grow to a few times it.
fn largest_argument(args: &[ColumnarValue], rows: usize) -> Result<u64> {
    let mut most = 0;
    for a in args {
        most = most.max(per_row(a, byte_lengths)?.total(rows.max(1)));
    }
    Ok(most)
}

// Delegates everything to the built-in; only `invoke_with_args` checks first.
impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let bound = output_bound(self.growth, &args.args, rows)?;
        let allowed =
            GROWTH_ALLOWANCE.saturating_add(largest_argument(&args.args, rows)?.saturating_mul(2));
        if bound > allowed {
            return exec_err!(
                "{}() could produce {bound} bytes, over the {allowed}-byte limit for one call",
                self.name()
            );
        }
        let constant = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        if constant && !self.constants.take(bound) {
            return exec_err!(
                "the constant expressions of this query would produce more than {CONSTANT_BUDGET} bytes"
            );
        }
        self.inner.invoke_with_args(args)
    }
}
