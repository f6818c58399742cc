//! How many bytes a growing string function can produce, computed from its
//! arguments before it runs: `repeat('x', 2000000000)` is refused before it
//! allocates, not after.
use arrow::array::{ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use datafusion::common::Result;
use datafusion::logical_expr::ColumnarValue;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Growth {
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
    pub(super) fn of(name: &str) -> Option<Growth> {
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
pub(super) fn output_bound(growth: Growth, args: &[ColumnarValue], rows: usize) -> Result<u64> {
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
